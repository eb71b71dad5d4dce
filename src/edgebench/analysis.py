"""Scaling analysis and the plan's four success criteria, from measured runs only.

Definitions (also in the report):
- speedup of a backend on a model: mean decode tok/s of its timed runs over the baseline's on the same model and
  testbed, with a bootstrap 95% CI (each side resampled on its own).
- memory-bandwidth utilisation (MBU): GGUF bytes x decode tok/s / the GPU's peak bandwidth. Batch-1 decode reads
  every weight once per token, so this is the share of the card's bandwidth that weights alone use (KV-cache reads
  are left out, which makes it a lower bound). Only where the GPU's peak bandwidth is known (config).
- scaling efficiency of a model: (tok/s x GGUF bytes) / the same product for the backend's smallest model. 1.0 means
  throughput fell exactly in proportion to the bytes read per token (ideal memory-bound scaling); below 1.0, the
  larger model lost more than its size explains.
- log-log fit: log10(tok/s) = a + b log10(parameters) per backend; b = -1 is ideal memory-bound scaling.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from .stats import ratio_ci

PASS, FAIL, NOT_MEASURED = "PASS", "FAIL", "NOT MEASURED"


def peak_bandwidth_gbs(gpu_name: Optional[str], table: dict[str, float]) -> Optional[float]:
    """The longest key of `table` contained in the GPU's name (so "H100 80GB HBM3" beats "H100")."""
    if not gpu_name:
        return None
    hits = [k for k in table if k.lower() in gpu_name.lower()]
    return float(table[max(hits, key=len)]) if hits else None


def loglog_fit(params: np.ndarray, tok_s: np.ndarray) -> tuple[float, float, float]:
    """(slope, intercept, r^2) of log10(tok/s) against log10(parameters); NaNs with fewer than 3 models."""
    ok = (params > 0) & (tok_s > 0) & np.isfinite(tok_s)
    x, y = np.log10(params[ok]), np.log10(tok_s[ok])
    if x.size < 3 or np.ptp(x) == 0:
        return (math.nan, math.nan, math.nan)
    slope, intercept = np.polyfit(x, y, 1)
    pred = intercept + slope * x
    ss_res, ss_tot = float(((y - pred) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    return (float(slope), float(intercept), 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan)


def scaling_table(runs: pd.DataFrame, summary: pd.DataFrame, baseline: str,
                  bandwidths: dict[str, float]) -> pd.DataFrame:
    timed = runs[~runs["is_warmup"].astype(bool)]
    overall = summary[summary["prompt_id"] == "all"].copy()
    rows = []
    for _, s in overall.iterrows():
        mine = timed[(timed.testbed == s.testbed) & (timed.backend == s.backend) & (timed.model == s.model)]
        base = timed[(timed.testbed == s.testbed) & (timed.backend == baseline) & (timed.model == s.model)]
        speedup = ratio_ci(mine["decode_tok_s"], base["decode_tok_s"]) if len(base) else (math.nan,) * 3
        peak = peak_bandwidth_gbs(s.get("gpu_name"), bandwidths) if s.get("engine_device") == "cuda" else None
        size = float(s["gguf_size_bytes"]) if pd.notna(s.get("gguf_size_bytes")) else math.nan
        tok_s = float(s["decode_tok_s_mean"])
        rows.append({
            "testbed": s.testbed, "backend": s.backend, "model": s.model,
            "parameter_count": s.get("parameter_count"), "gguf_size_bytes": size,
            "quantization": s.get("quantization"), "synthetic": bool(s.get("synthetic") or False),
            "engine_device": s.get("engine_device"), "gpu_name": s.get("gpu_name"),
            "decode_tok_s_mean": tok_s, "decode_tok_s_ci95_lo": s["decode_tok_s_ci95_lo"],
            "decode_tok_s_ci95_hi": s["decode_tok_s_ci95_hi"], "decode_tok_s_cv": s["decode_tok_s_cv"],
            "baseline": baseline, "speedup": speedup[0], "speedup_ci95_lo": speedup[1],
            "speedup_ci95_hi": speedup[2],
            "peak_bandwidth_gbs": peak,
            "mbu": (size * tok_s / (peak * 1e9)) if peak and size == size else math.nan,
        })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["scaling_efficiency"] = math.nan
    table["loglog_slope"] = table["loglog_intercept"] = table["loglog_r2"] = math.nan
    for _, g in table.groupby(["testbed", "backend"]):
        g = g.dropna(subset=["gguf_size_bytes"])
        if g.empty:
            continue
        smallest = g.loc[g["gguf_size_bytes"].idxmin()]
        ref = smallest["decode_tok_s_mean"] * smallest["gguf_size_bytes"]
        table.loc[g.index, "scaling_efficiency"] = g["decode_tok_s_mean"] * g["gguf_size_bytes"] / ref
        slope, intercept, r2 = loglog_fit(g["parameter_count"].to_numpy(float), g["decode_tok_s_mean"].to_numpy())
        table.loc[g.index, ["loglog_slope", "loglog_intercept", "loglog_r2"]] = (slope, intercept, r2)
    return table.sort_values(["testbed", "backend", "parameter_count"]).reset_index(drop=True)


def criteria_table(scaling: pd.DataFrame, summary: pd.DataFrame, engine: str = "edgellm",
                   reference: str = "ollama", kernel_accuracy: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """The plan's success criteria, each PASS / FAIL / NOT MEASURED with the numbers behind it."""
    rows = []

    # 1. Performance: EdgeLLM >= 1.5x Ollama on all models.
    mine = scaling[scaling.backend == engine].set_index(["testbed", "model"])["decode_tok_s_mean"]
    ref = scaling[scaling.backend == reference].set_index(["testbed", "model"])["decode_tok_s_mean"]
    both = mine.index.intersection(ref.index)
    if len(both) == 0:
        rows.append(_criterion(1, "Performance", f"{engine} >= 1.5x {reference} decode tok/s on every model",
                               NOT_MEASURED, None, 1.5,
                               f"needs both {engine} and {reference} runs on the same models"))
    else:
        ratios = (mine[both] / ref[both])
        worst = ratios.idxmin()
        detail = "; ".join(f"{m}: {r:.2f}x" for (_, m), r in ratios.items())
        missing = sorted({m for _, m in ref.index.difference(mine.index)})
        status = FAIL if (ratios < 1.5).any() else (NOT_MEASURED if missing else PASS)
        if missing:
            detail += f"; {engine} not measured on: {', '.join(missing)}"
        rows.append(_criterion(1, "Performance", f"{engine} >= 1.5x {reference} decode tok/s on every model",
                               status, float(ratios.min()), 1.5, f"lowest on {worst[1]}; {detail}"))

    # 2. Accuracy: max error < 1e-5 on all model sizes (the fp32 kernel accuracy test).
    if kernel_accuracy is None or kernel_accuracy.empty:
        rows.append(_criterion(2, "Accuracy", "max abs error < 1e-5 (fp32 attention kernels, all shapes)",
                               NOT_MEASURED, None, 1e-5, "no kernel accuracy results on this testbed (GPU only)"))
    else:
        # The cases computed in fp32 arithmetic (kernels/tests/attention_accuracy.cu marks them "absolute"): the
        # fp32 prefill path and CUDA-core decode over every KV dtype.
        fp32 = kernel_accuracy[kernel_accuracy["metric"] == "absolute"]
        worst = float(fp32["max_abs_err"].max()) if len(fp32) else math.nan
        status = NOT_MEASURED if not len(fp32) else PASS if worst < 1e-5 else FAIL
        rows.append(_criterion(2, "Accuracy", "max abs error < 1e-5 (fp32 attention kernels, all shapes)",
                               status, worst, 1e-5, f"{len(fp32)} fp32 cases against float64"))

    # 3. Scaling: near-linear -- time per token proportional to model size, i.e. log-log slope within 0.2 of -1.
    eng = scaling[scaling.backend == engine].drop_duplicates(["testbed"])
    if eng.empty or eng["loglog_slope"].isna().all():
        rows.append(_criterion(3, "Scaling", f"{engine}: log-log slope of tok/s vs parameters within -1 +/- 0.2",
                               NOT_MEASURED, None, -1.0, "needs at least 3 model sizes"))
    else:
        slope = float(eng["loglog_slope"].iloc[0])
        rows.append(_criterion(3, "Scaling", f"{engine}: log-log slope of tok/s vs parameters within -1 +/- 0.2",
                               PASS if abs(slope + 1.0) <= 0.2 else FAIL, slope, -1.0,
                               f"r^2 {float(eng['loglog_r2'].iloc[0]):.3f}"))

    # 4. Reproducibility: < 5% variation (coefficient of variation of decode tok/s) across runs.
    per_prompt = summary[summary["prompt_id"] != "all"].dropna(subset=["decode_tok_s_cv"])
    if per_prompt.empty:
        rows.append(_criterion(4, "Reproducibility", "CV of decode tok/s < 5% in every backend x model x prompt",
                               NOT_MEASURED, None, 0.05, "needs at least 2 timed runs"))
    else:
        worst = per_prompt.loc[per_prompt["decode_tok_s_cv"].idxmax()]
        rows.append(_criterion(4, "Reproducibility", "CV of decode tok/s < 5% in every backend x model x prompt",
                               PASS if per_prompt["decode_tok_s_cv"].max() < 0.05 else FAIL,
                               float(worst["decode_tok_s_cv"]), 0.05,
                               f"worst: {worst['backend']} {worst['model']} {worst['prompt_id']}"))
    return pd.DataFrame(rows)


def _criterion(number, name, rule, status, value, threshold, detail) -> dict:
    return {"criterion": number, "name": name, "rule": rule, "status": status,
            "value": value if value is None or np.isfinite(value) else None, "threshold": threshold,
            "detail": detail}
