"""The run record: one row per run (warm-up runs kept and flagged), its Parquet schema written down once.

Units are in the column names. Token arrival times are the harness's clock; `engine_*` columns are what the engine
itself reported (Ollama's nanosecond durations as sent; llama.cpp's perf counters converted to ns), kept as a
cross-check. Columns that could not be measured are null, never zero.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_path

SCHEMA_VERSION = "1"

_f64, _i64, _str, _bool = pa.float64(), pa.int64(), pa.string(), pa.bool_()

RUN_FIELDS: list[tuple[str, pa.DataType]] = [
    # what ran
    ("testbed", _str), ("backend", _str), ("model", _str), ("prompt_id", _str), ("prompt_text", _str),
    ("prompt_rendered", _str), ("run_index", _i64), ("is_warmup", _bool), ("timestamp_utc", _str),
    # what the harness measured
    ("prompt_tokens", _i64), ("generated_tokens", _i64), ("done_reason", _str), ("stream_arrivals", _i64),
    ("ttft_ms", _f64), ("e2e_ms", _f64), ("decode_tok_s", _f64), ("prefill_tok_s", _f64),
    ("itl_mean_ms", _f64), ("itl_p50_ms", _f64), ("itl_p99_ms", _f64), ("jitter_ms", _f64),
    ("itl_ms", pa.list_(_f64)), ("token_times_ms", pa.list_(_f64)), ("token_ids", pa.list_(_i64)),
    # what the engine reported about itself
    ("engine_total_duration_ns", _i64), ("engine_load_duration_ns", _i64), ("engine_prompt_eval_count", _i64),
    ("engine_prompt_eval_duration_ns", _i64), ("engine_eval_count", _i64), ("engine_eval_duration_ns", _i64),
    ("engine_stream_chunks", _i64), ("engine_decode_tok_s", _f64),
    ("engine_name", _str), ("engine_version", _str), ("engine_build", _str), ("engine_device", _str),
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


def write_runs(rows: Iterable[dict], path: str | Path, extra_metadata: dict | None = None) -> None:
    table = to_table(rows)
    if extra_metadata:
        meta = dict(table.schema.metadata or {})
        meta[b"edgebench_extra"] = json.dumps(extra_metadata, sort_keys=True, default=str).encode()
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_schema_version(path: str | Path) -> str | None:
    meta = pq.read_schema(path).metadata or {}
    value = meta.get(b"edgebench_schema_version")
    return value.decode() if value else None
