"""The run record: one row per run (warm-up runs kept and flagged), its Parquet schema written down once.

Units are in the column names. Token arrival times are the harness's clock; `engine_*` columns are what the engine
itself reported (Ollama's nanosecond durations as sent; llama.cpp's perf counters converted to ns), kept as a
cross-check. Columns that could not be measured are null, never zero.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Iterable, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from . import EdgebenchError
from .atomic import Temporary, prepare_target

SCHEMA_VERSION = "3"  # 2: context_tokens, prompt_tokens_mismatch; 3: the Ollama server's runner and settings

_f64, _i64, _str, _bool = pa.float64(), pa.int64(), pa.string(), pa.bool_()

RUN_FIELDS: list[tuple[str, pa.DataType]] = [
    # what ran
    ("testbed", _str), ("backend", _str), ("model", _str), ("prompt_id", _str), ("prompt_text", _str),
    ("prompt_rendered", _str),
    # a context run's prompt length in the model's tokenizer (null for the named prompts), and whether a count the
    # engine reported (prompt_tokens, engine_prompt_eval_count) differs from it
    ("context_tokens", _i64), ("prompt_tokens_mismatch", _bool),
    ("run_index", _i64), ("is_warmup", _bool), ("timestamp_utc", _str),
    # what the harness measured
    ("prompt_tokens", _i64), ("generated_tokens", _i64), ("done_reason", _str), ("stream_arrivals", _i64),
    # true: the timed request had to open a new connection to the server (its set-up is inside this run's TTFT)
    ("new_connection", _bool),
    ("ttft_ms", _f64), ("e2e_ms", _f64), ("decode_tok_s", _f64), ("prefill_tok_s", _f64),
    ("itl_mean_ms", _f64), ("itl_p50_ms", _f64), ("itl_p99_ms", _f64), ("jitter_ms", _f64),
    ("itl_ms", pa.list_(_f64)), ("token_times_ms", pa.list_(_f64)), ("token_ids", pa.list_(_i64)),
    # what the engine reported about itself
    ("engine_total_duration_ns", _i64), ("engine_load_duration_ns", _i64), ("engine_prompt_eval_count", _i64),
    ("engine_prompt_eval_duration_ns", _i64), ("engine_eval_count", _i64), ("engine_eval_duration_ns", _i64),
    ("engine_stream_chunks", _i64), ("engine_decode_tok_s", _f64),
    ("engine_name", _str), ("engine_version", _str), ("engine_build", _str), ("engine_device", _str),
    # the Ollama server (null for other backends): the runner's command line and the settings that change what a
    # long context costs, from the server process's environment ("unset": read, not set; "unknown": not readable)
    ("ollama_runner", _str), ("ollama_flash_attention", _str), ("ollama_kv_cache_type", _str),
    ("ollama_num_parallel", _str), ("ollama_settings_source", _str),
    # resources (GPU columns null without a GPU)
    ("host_rss_peak_mb", _f64), ("host_cpu_time_s", _f64),
    ("gpu_mem_baseline_mb", _f64), ("gpu_mem_peak_mb", _f64), ("gpu_proc_mem_peak_mb", _f64),
    ("gpu_power_mean_w", _f64), ("gpu_power_peak_w", _f64), ("gpu_energy_j", _f64), ("gpu_energy_j_per_token", _f64),
    ("gpu_sm_clock_mean_mhz", _f64), ("gpu_throttle_reasons", _i64),
    # the model
    ("ollama_tag", _str), ("gguf_path", _str), ("gguf_sha256", _str), ("gguf_size_bytes", _i64),
    ("architecture", _str), ("parameter_count", _i64), ("quantization", _str), ("synthetic", _bool),
    # the settings
    ("setting_max_new_tokens", _i64), ("setting_temperature", _f64), ("setting_seed", _i64), ("setting_num_ctx", _i64),
    ("setting_prompt_format", _str), ("setting_ignore_eos", _bool), ("setting_threads", _i64),
    # the machine and the code
    ("host", _str), ("cpu_model", _str), ("cpu_cores_physical", _i64), ("cpu_cores_logical", _i64), ("os", _str),
    ("python_version", _str), ("edgebench_version", _str), ("git_commit", _str), ("gpu_name", _str),
    ("gpu_driver", _str), ("gpu_cuda_driver", _str), ("gpu_memory_total_mb", _f64), ("config_hash", _str),
]
RUN_SCHEMA = pa.schema(RUN_FIELDS)
RUN_COLUMNS = [name for name, _ in RUN_FIELDS]


def to_table(rows: Iterable[dict]) -> pa.Table:
    rows = list(rows)
    unknown = set().union(*(r.keys() for r in rows)) - set(RUN_COLUMNS) if rows else set()
    if unknown:
        raise ValueError(f"run rows carry columns missing from RUN_SCHEMA: {sorted(unknown)}")
    columns = {name: [r.get(name) for r in rows] for name in RUN_COLUMNS}
    table = pa.table(columns, schema=RUN_SCHEMA)
    return table.replace_schema_metadata({b"edgebench_schema_version": SCHEMA_VERSION.encode()})


def _redacted(obj):
    """Metadata with the user info of every URL in it removed: a password in an Ollama URL is never stored."""
    from .backends.ollama import redact_url

    if isinstance(obj, str):
        return redact_url(obj)
    if isinstance(obj, dict):
        return {k: _redacted(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_redacted(v) for v in obj]
    return obj


def _plain(value):
    """JSON for the journal: numpy scalars as numbers, NaN as null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value if isinstance(value, (int, float, bool, type(None))) else str(value)


class RunWriter:
    """Runs go to disk as they are measured; the Parquet file appears, atomically, once all of them are in.

    The journal (one JSON line per run, flushed to disk) is a temporary file beside the output, created before the
    first run: a destination that cannot be written fails before any measurement, and a disk that fills up fails
    at the run that could not be written, not after the whole benchmark. After such a failure the runs measured so
    far stay in `<output>.partial.jsonl`. An interrupted benchmark (Ctrl-C, SIGTERM) leaves no output at all.
    """

    def __init__(self, path: str | Path, extra_metadata: Optional[dict] = None):
        self.target = prepare_target(path)
        self.extra_metadata = extra_metadata  # read at close: a caller may still add to it
        self.rows: list[dict] = []
        self._journal: Optional[Temporary] = Temporary(self.target)
        self._file = os.fdopen(os.dup(self._journal.fd), "w")
        self._synced = 0  # the journal's length after the last run known to be on disk

    @property
    def partial_path(self) -> Path:
        return self.target.with_name(self.target.name + ".partial.jsonl")

    def add(self, row: dict) -> None:
        self.rows.append(row)
        try:
            self._file.write(self._line(row))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._synced = self._file.tell()
        except OSError as exc:
            raise self._failed(exc.strerror or str(exc), len(self.rows) - 1) from None

    @staticmethod
    def _line(row: dict) -> str:
        return json.dumps({k: ([_plain(x) for x in v] if isinstance(v, list) else _plain(v))
                           for k, v in row.items()}, sort_keys=True) + "\n"

    def _failed(self, reason: str, kept: int) -> EdgebenchError:
        """Keep the journal's complete lines where the user can find them, and say so in one line."""
        where = "none of them could be kept"
        with contextlib.suppress(OSError, ValueError):
            self._file.close()
        if self._journal is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._journal.fd, self._synced)  # no half line of the run that failed
        if self._journal is not None and kept:
            try:
                os.replace(self._journal.path, self.partial_path)
                where = f"they are in {self.partial_path} (one JSON line each)"
            except OSError:
                pass
        if self._journal is not None:
            self._journal.discard()
            self._journal = None
        return EdgebenchError(f"cannot write the runs to {self.target}: {reason}; "
                              f"{kept} runs were measured before, {where}")

    def close(self) -> None:
        """Write the Parquet file (atomically) and drop the journal."""
        if self._journal is None:
            return
        table = to_table(self.rows)
        if self.extra_metadata:
            meta = dict(table.schema.metadata or {})
            meta[b"edgebench_extra"] = json.dumps(_redacted(self.extra_metadata), sort_keys=True,
                                                  default=str).encode()
            table = table.replace_schema_metadata(meta)
        out = None
        try:
            self._file.close()
            out = Temporary(self.target)
            pq.write_table(table, out.path)
            out.commit()
        except (OSError, EdgebenchError) as exc:
            if out is not None:
                out.discard()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise self._failed(reason, len(self.rows)) from None
        self._journal.discard()
        self._journal = None

    def discard(self) -> None:
        """No output: what an interrupted or failed benchmark leaves."""
        with contextlib.suppress(OSError):
            self._file.close()
        if self._journal is not None:
            self._journal.discard()
            self._journal = None

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def write_runs(rows: Iterable[dict], path: str | Path, extra_metadata: dict | None = None) -> None:
    with RunWriter(path, extra_metadata) as writer:
        for row in rows:
            writer.add(row)


def read_schema_version(path: str | Path) -> str | None:
    meta = pq.read_schema(path).metadata or {}
    value = meta.get(b"edgebench_schema_version")
    return value.decode() if value else None
