"""Scaling analysis and the plan's four success criteria, from measured runs only. Which backend the criteria judge,
against which, and their thresholds come from the config (`criteria`); nothing here names an engine.

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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Criteria:
    """Which backend the criteria judge, against which, and their thresholds (the config's `criteria` section, with
    `reference` already resolved from `baseline` by edgebench.config)."""
    engine: Optional[str]
    reference: str
    min_speedup: float = 1.5
    min_token_agreement: float = 0.9
    max_kernel_error: float = 1e-5
    scaling_slope: float = -1.0
    scaling_tolerance: float = 0.2
    max_cv: float = 0.05

    @classmethod
    def from_config(cls, section: dict) -> "Criteria":
        return cls(**section)


def greedy_agreement(runs: pd.DataFrame, engine: str) -> pd.DataFrame:
    """The engine's greedy tokens against every other backend's on the same GGUF file and prompt, from the token
    ids the harness records: one row per (testbed, model, prompt, other backend) with `agreement` = the length of
    the common prefix over the longer sequence (after the first difference the two continue from different texts,
    so only the prefix is compared; an early stop on one side counts as a difference).

    Only timed greedy runs (temperature 0) with token ids (Ollama's stream carries none), and no synthetic model
    (random weights put near-ties everywhere: their tokens say nothing about arithmetic)."""
    cols = ["testbed", "backend", "model", "gguf_sha256", "prompt_id", "token_ids"]
    usable = runs[~runs["is_warmup"].astype(bool) & (runs["setting_temperature"] == 0)
                  & ~runs["synthetic"].fillna(False).astype(bool) & runs["token_ids"].notna()]
    rows = []
    # Greedy decoding repeats exactly; the first timed run stands for the others.
    first = usable[cols].drop_duplicates(["testbed", "backend", "model", "prompt_id"])
    mine = first[first.backend == engine]
    for _, a in mine.iterrows():
        others = first[(first.testbed == a.testbed) & (first.prompt_id == a.prompt_id) & (first.backend != engine)
                       & ((first.gguf_sha256 == a.gguf_sha256) if pd.notna(a.gguf_sha256) else
                          (first.model == a.model))]
        for _, b in others.iterrows():
            x, y = list(a.token_ids), list(b.token_ids)
            longest = max(len(x), len(y))
            if longest == 0:
                continue
            prefix = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            rows.append({"testbed": a.testbed, "model": a.model, "prompt_id": a.prompt_id, "other": b.backend,
                         "matching_tokens": prefix, "tokens": longest, "agreement": prefix / longest})
    return pd.DataFrame(rows, columns=["testbed", "model", "prompt_id", "other", "matching_tokens", "tokens",
                                       "agreement"])


def criteria_table(scaling: pd.DataFrame, summary: pd.DataFrame, criteria: Criteria,
                   runs: Optional[pd.DataFrame] = None,
                   kernel_accuracy: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """The plan's success criteria, each PASS / FAIL / NOT MEASURED with the numbers behind it."""
    return pd.DataFrame([
        _performance(scaling, criteria),
        _accuracy(runs, kernel_accuracy, criteria),
        _scaling(scaling, criteria),
        _reproducibility(summary, criteria),
    ])


def _performance(scaling: pd.DataFrame, c: Criteria) -> dict:
    """1. The engine's decode tok/s at least min_speedup times the reference's, on every model."""
    engine, reference, threshold = c.engine, c.reference, c.min_speedup
    rule = f"{engine} >= {threshold:g}x {reference} decode tok/s on every model"
    if engine is None:
        return _criterion(1, "Performance", f">= {threshold:g}x {reference} decode tok/s on every model",
                          NOT_MEASURED, None, threshold, f"needs a backend other than {reference}")
    mine = scaling[scaling.backend == engine].set_index(["testbed", "model"])["decode_tok_s_mean"]
    ref = scaling[scaling.backend == reference].set_index(["testbed", "model"])["decode_tok_s_mean"]
    both = mine.index.intersection(ref.index)
    if len(both) == 0:
        return _criterion(1, "Performance", rule, NOT_MEASURED, None, threshold,
                          f"needs both {engine} and {reference} runs on the same models")
    ratios = mine[both] / ref[both]
    worst = ratios.idxmin()
    detail = "; ".join(f"{m}: {r:.2f}x" for (_, m), r in ratios.items())
    missing = sorted({m for _, m in ref.index.difference(mine.index)})
    status = FAIL if (ratios < threshold).any() else (NOT_MEASURED if missing else PASS)
    if missing:
        detail += f"; {engine} not measured on: {', '.join(missing)}"
    return _criterion(1, "Performance", rule, status, float(ratios.min()), threshold,
                      f"lowest on {worst[1]}; {detail}")


def _kernel_gate(kernel_accuracy: Optional[pd.DataFrame], c: Criteria) -> Optional[tuple[str, float, str]]:
    """(status, worst fp32 error, detail) of an engine's kernel gate, None where it did not run."""
    if kernel_accuracy is None or kernel_accuracy.empty:
        return None
    # The cases computed in fp32 arithmetic (kernels/tests/attention_accuracy.cu marks them "absolute").
    fp32 = kernel_accuracy[kernel_accuracy["metric"] == "absolute"]
    if not len(fp32):
        return None
    worst = float(fp32["max_abs_err"].max())
    return (PASS if worst < c.max_kernel_error else FAIL, worst,
            f"kernel gate: {len(fp32)} fp32 cases, max abs error {worst:.2g} (< {c.max_kernel_error:g})")


def _accuracy(runs: Optional[pd.DataFrame], kernel_accuracy: Optional[pd.DataFrame], c: Criteria) -> dict:
    """2. The engine's greedy tokens agree with another backend's on the same GGUF, and its kernel gate (where it
    ran) passes."""
    gate = _kernel_gate(kernel_accuracy, c)
    agree = greedy_agreement(runs, c.engine) if (runs is not None and c.engine is not None) else pd.DataFrame()
    if agree.empty:
        if gate is None:
            return _criterion(2, "Accuracy", f"greedy tokens agree with another backend on >= "
                              f"{c.min_token_agreement:.0%} of the tokens", NOT_MEASURED, None,
                              c.min_token_agreement, "needs the engine and another backend that records token ids "
                              "(not Ollama) on the same real GGUF at temperature 0, or a kernel gate")
        status, worst, detail = gate
        return _criterion(2, "Accuracy", f"kernel gate: max abs error < {c.max_kernel_error:g} (fp32 cases)",
                          status, worst, c.max_kernel_error, detail + "; no greedy-token comparison")
    low = agree.loc[agree["agreement"].idxmin()]
    status = PASS if agree["agreement"].min() >= c.min_token_agreement else FAIL
    detail = (f"{len(agree)} comparisons, lowest {low.model} {low.prompt_id} against {low.other}: "
              f"{low.matching_tokens} of {low.tokens} tokens")
    rule = f"{c.engine}'s greedy tokens agree with another backend's on >= {c.min_token_agreement:.0%} of them"
    if gate is not None:
        rule += ", and its kernel gate passes"
        status = FAIL if FAIL in (status, gate[0]) else status
        detail += "; " + gate[2]
    return _criterion(2, "Accuracy", rule, status, float(low.agreement), c.min_token_agreement, detail)


def _scaling(scaling: pd.DataFrame, c: Criteria) -> dict:
    """3. Near-linear scaling: time per token proportional to model size (log-log slope near -1)."""
    rule = (f"{c.engine}: log-log slope of tok/s vs parameters within {c.scaling_slope:g} +/- "
            f"{c.scaling_tolerance:g}")
    eng = scaling[scaling.backend == c.engine].drop_duplicates(["testbed"]) if len(scaling) else scaling
    if eng.empty or eng["loglog_slope"].isna().all():
        return _criterion(3, "Scaling", rule, NOT_MEASURED, None, c.scaling_slope, "needs at least 3 model sizes")
    slope = float(eng["loglog_slope"].iloc[0])
    return _criterion(3, "Scaling", rule, PASS if abs(slope - c.scaling_slope) <= c.scaling_tolerance else FAIL,
                      slope, c.scaling_slope, f"r^2 {float(eng['loglog_r2'].iloc[0]):.3f}")


def _reproducibility(summary: pd.DataFrame, c: Criteria) -> dict:
    """4. Reproducibility: the coefficient of variation of decode tok/s across runs, every backend x model x prompt."""
    rule = f"CV of decode tok/s < {c.max_cv:.0%} in every backend x model x prompt"
    per_prompt = summary[summary["prompt_id"] != "all"].dropna(subset=["decode_tok_s_cv"])
    if per_prompt.empty:
        return _criterion(4, "Reproducibility", rule, NOT_MEASURED, None, c.max_cv, "needs at least 2 timed runs")
    worst = per_prompt.loc[per_prompt["decode_tok_s_cv"].idxmax()]
    return _criterion(4, "Reproducibility", rule, PASS if per_prompt["decode_tok_s_cv"].max() < c.max_cv else FAIL,
                      float(worst["decode_tok_s_cv"]), c.max_cv,
                      f"worst: {worst['backend']} {worst['model']} {worst['prompt_id']}")


def _criterion(number, name, rule, status, value, threshold, detail) -> dict:
    return {"criterion": number, "name": name, "rule": rule, "status": status,
            "value": value if value is None or np.isfinite(value) else None, "threshold": threshold,
            "detail": detail}
