"""Outputs: readable by the group as the umask says, stale temporaries cleaned, destinations checked by writing,
runs on disk as they are measured, and a failed write one line that keeps what was measured."""

import fcntl
import json
import os
import stat

import pyarrow.parquet as pq
import pytest

from edgebench import EdgebenchError
from edgebench.atomic import atomic_path, check_writable, write_json
from edgebench.records import SCHEMA_VERSION, RunWriter, read_schema_version, write_runs
from edgebench.runner import no_token_note


def _row(i: int) -> dict:
    return {"backend": "ollama", "model": "m", "prompt_id": "p", "run_index": i, "is_warmup": False,
            "stream_arrivals": 3, "ttft_ms": 1.5, "itl_ms": [1.0, float("nan")]}


def test_outputs_honour_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_json({"a": 1}, tmp_path / "a.json")
        write_runs([_row(0)], tmp_path / "r.parquet")
    finally:
        os.umask(old)
    for name in ("a.json", "r.parquet"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name


def test_a_stale_temporary_of_the_same_output_is_removed_and_a_live_one_kept(tmp_path):
    stale = tmp_path / ".k.parquet.abcd1234.tmp"
    stale.write_bytes(b"complete but never renamed")
    live = tmp_path / ".k.parquet.live0000.tmp"
    live.write_bytes(b"another writer's")
    other = tmp_path / ".other.parquet.abcd1234.tmp"
    other.write_bytes(b"not ours")
    with open(live) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with atomic_path(tmp_path / "k.parquet") as tmp:
            tmp.write_bytes(b"new")
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / "k.parquet").read_bytes() == b"new"


@pytest.mark.parametrize("where", ["/proc/x.parquet", "/sys/x.parquet"])
def test_a_destination_that_access_calls_writable_is_checked_by_writing(where):
    with pytest.raises(EdgebenchError, match=f"cannot write {where}"):
        check_writable(where)


def test_a_failed_write_is_one_line_and_keeps_the_runs_measured(tmp_path, monkeypatch):
    out = tmp_path / "runs.parquet"
    writer = RunWriter(out)
    writer.add(_row(0))
    writer.add(_row(1))
    real_fsync = os.fsync

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(EdgebenchError) as info:
        writer.add(_row(2))
    monkeypatch.setattr(os, "fsync", real_fsync)
    message = str(info.value)
    assert "\n" not in message and "No space left on device" in message and "2 runs were measured" in message
    partial = tmp_path / "runs.parquet.partial.jsonl"
    assert [json.loads(line)["run_index"] for line in partial.read_text().splitlines()] == [0, 1]
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_runs_are_on_disk_as_they_complete_and_an_interruption_leaves_nothing(tmp_path):
    out = tmp_path / "runs.parquet"
    with pytest.raises(KeyboardInterrupt):
        with RunWriter(out) as writer:
            writer.add(_row(0))
            journal = next(tmp_path.glob(".runs.parquet.*.tmp"))
            assert json.loads(journal.read_text())["run_index"] == 0
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_password_in_a_url_never_reaches_the_parquet(tmp_path):
    out = tmp_path / "r.parquet"
    write_runs([_row(0)], out, extra_metadata={"backend_options": {"url": "http://alice:s3cret@gpu-host:11434"}})
    meta = pq.read_schema(out).metadata
    assert b"s3cret" not in meta[b"edgebench_extra"] and b"http://gpu-host:11434" in meta[b"edgebench_extra"]
    assert read_schema_version(out) == SCHEMA_VERSION
    assert pq.read_table(out).num_rows == 1


def test_runs_without_a_token_are_named_in_one_line():
    rows = [_row(0), {**_row(1), "stream_arrivals": 0}]
    note = no_token_note(rows)
    assert "1 of 2 runs generated no token" in note and "--prompt-format chat" in note and "--ignore-eos" in note
    assert "\n" not in note
    assert no_token_note([_row(0)]) is None
