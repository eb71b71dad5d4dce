"""Statistics of timed runs per (testbed, backend, model, prompt), plus each model's pooled "all" prompts row.

The "all" row pools the named prompts only: a context sweep's runs (context_tokens set) are rows of their own, one
per length, so that long prompts do not change the named prompts' statistics.

Warm-up runs are excluded here (they stay in runs.parquet, flagged). Definitions are those of edgebench.stats.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .stats import describe, jitter_ms

GROUP = ["testbed", "backend", "model"]
RUN_METRICS = ["decode_tok_s", "ttft_ms", "e2e_ms", "prefill_tok_s"]
# Columns that are the same in every run of a group and describe it.
CARRIED = ["parameter_count", "quantization", "architecture", "synthetic", "gguf_sha256", "gguf_size_bytes",
           "engine_name", "engine_version", "engine_device", "gpu_name", "setting_max_new_tokens", "ollama_tag",
           "context_tokens", "setting_num_ctx"]


def _summarise_group(g: pd.DataFrame) -> dict:
    out: dict = {"runs": len(g)}
    for col in CARRIED:
        if col in g:
            vals = g[col].dropna().unique()
            out[col] = vals[0] if len(vals) else None
    for metric in RUN_METRICS:
        out.update(describe(g[metric].astype(float).to_numpy(), metric))
    itl_lists = [np.asarray(v, dtype=float) for v in g["itl_ms"] if v is not None and len(v)]
    pooled = np.concatenate(itl_lists) if itl_lists else np.array([])
    for q in (50, 95, 99):
        out[f"itl_p{q}_ms"] = float(np.percentile(pooled, q)) if pooled.size else math.nan
    out["itl_mean_ms"] = float(pooled.mean()) if pooled.size else math.nan
    out["jitter_ms"] = jitter_ms(itl_lists)
    out["generated_tokens_mean"] = float(g["generated_tokens"].mean())
    out["prompt_tokens_mean"] = _mean_or_nan(g.get("prompt_tokens"))
    mismatch = g.get("prompt_tokens_mismatch")
    out["prompt_tokens_mismatches"] = int(mismatch.fillna(False).astype(bool).sum()) if mismatch is not None else 0
    out["early_stops"] = int((g["done_reason"] == "stop").sum())
    out["engine_decode_tok_s_mean"] = _mean_or_nan(g.get("engine_decode_tok_s"))
    out["gpu_mem_peak_mb"] = _max_or_nan(g.get("gpu_mem_peak_mb"))
    out["gpu_proc_mem_peak_mb"] = _max_or_nan(g.get("gpu_proc_mem_peak_mb"))
    out["gpu_power_mean_w"] = _mean_or_nan(g.get("gpu_power_mean_w"))
    out["gpu_energy_j_per_token_mean"] = _mean_or_nan(g.get("gpu_energy_j_per_token"))
    out["host_rss_peak_mb"] = _max_or_nan(g.get("host_rss_peak_mb"))
    return out


def _mean_or_nan(s) -> float:
    if s is None:
        return math.nan
    s = pd.to_numeric(s, errors="coerce").dropna()
    return float(s.mean()) if len(s) else math.nan


def _max_or_nan(s) -> float:
    if s is None:
        return math.nan
    s = pd.to_numeric(s, errors="coerce").dropna()
    return float(s.max()) if len(s) else math.nan


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    timed = runs[~runs["is_warmup"].astype(bool)]
    rows = []
    for keys, g in timed.groupby(GROUP + ["prompt_id"], sort=True, dropna=False):
        rows.append({**dict(zip(GROUP + ["prompt_id"], keys)), **_summarise_group(g)})
    named = timed[timed["context_tokens"].isna()] if "context_tokens" in timed else timed
    for keys, g in named.groupby(GROUP, sort=True, dropna=False):
        rows.append({**dict(zip(GROUP, keys)), "prompt_id": "all", **_summarise_group(g)})
    return pd.DataFrame(rows)


def format_table(summary: pd.DataFrame) -> str:
    """The short table the CLI prints at the end of a benchmark."""
    cols = {"backend": "backend", "model": "model", "prompt_id": "prompt", "runs": "runs",
            "decode_tok_s_mean": "tok/s", "decode_tok_s_std": "±std", "decode_tok_s_cv": "cv",
            "ttft_ms_p50": "TTFT p50 ms", "itl_p50_ms": "ITL p50", "itl_p95_ms": "p95", "itl_p99_ms": "p99",
            "jitter_ms": "jitter ms", "generated_tokens_mean": "tokens", "early_stops": "eos stops"}
    t = summary[list(cols)].rename(columns=cols)
    return t.to_string(index=False, float_format=lambda v: f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}")
