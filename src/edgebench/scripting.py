"""Glue for workflow/scripts: log to the rule's log file, and turn a known error into one line and exit 1."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from . import EdgebenchError


@contextlib.contextmanager
def rule_context(smk) -> Iterator[None]:
    """Send the script's output to its rule's log; an EdgebenchError becomes one line on stderr and exit 1."""
    log_path = smk.log[0] if len(smk.log) else None
    log = open(log_path, "w") if log_path else sys.stderr
    try:
        with contextlib.redirect_stdout(log):
            yield
    except EdgebenchError as exc:
        print(f"error: {exc}", file=log)
        print(f"edgebench: error in rule {smk.rule}: {exc}", file=sys.__stderr__)
        raise SystemExit(1) from None
    finally:
        if log is not sys.stderr:
            log.close()
