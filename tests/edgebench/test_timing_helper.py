"""tests/timing.py: a timing check taken again after a late measurement, and failing when every attempt fails."""

import pytest
from timing import within_attempts


def test_the_first_pass_ends_it_and_a_check_that_always_fails_still_fails():
    calls = []

    def late_once():
        calls.append(1)
        assert len(calls) > 1, "late"
        return "ok"

    assert within_attempts(3, late_once) == "ok" and len(calls) == 2
    calls.clear()

    def always_late():
        calls.append(1)
        raise AssertionError("late")

    with pytest.raises(AssertionError, match="late"):
        within_attempts(3, always_late)
    assert len(calls) == 3
