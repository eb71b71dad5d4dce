"""The concurrency sweep's statistics: one row per testbed x backend x model x concurrency, from the timed requests.

- output_tok_s: every timed request's generated tokens / the point's window (start of the timed requests to the end
  of the last one), i.e. what the server delivered to all clients together; requests_s likewise.
- TTFT, ITL, TPOT and E2E percentiles over the requests (ITL over every gap of every request).
- goodput (DistServe's term, as vLLM's `bench serve --goodput` and MLPerf Inference's server scenario use it): the
  share of requests that met both latency limits of a class, TTFT <= ttft_ms and TPOT <= tpot_ms, and those requests
  per second. A server that is fast on average but keeps some users waiting shows it here, not in tok/s. A request of
  one token has no TPOT and is judged on its TTFT alone.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# MLPerf Inference's Llama 3.1 8B benchmark: the limits of its server (conversational) and interactive scenarios.
DEFAULT_LIMITS = {"conversational": {"ttft_ms": 2000.0, "tpot_ms": 100.0},
                  "interactive": {"ttft_ms": 500.0, "tpot_ms": 30.0}}
IN_PROCESS_NOTE = "in-process engine: one request at a time, concurrency 1 only"
KEYS = ["testbed", "backend", "model", "concurrency"]


def _pct(values, q: float) -> float:
    values = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    return float(np.percentile(values, q)) if values.size else math.nan


def met_limits(requests: pd.DataFrame, ttft_ms: float, tpot_ms: float) -> pd.Series:
    """Whether each request met both limits (a request without a TPOT: its TTFT alone)."""
    ttft_ok = requests["ttft_ms"].le(ttft_ms)
    tpot_ok = requests["tpot_ms"].isna() | requests["tpot_ms"].le(tpot_ms)
    return ttft_ok & tpot_ok & requests["stream_arrivals"].gt(0)


def summarize(requests: pd.DataFrame, limits: dict | None = None) -> pd.DataFrame:
    limits = limits or DEFAULT_LIMITS
    timed = requests[~requests["is_warmup"].astype(bool)]
    rows = []
    for key, g in timed.groupby(KEYS, sort=True):
        window = float(g["window_s"].iloc[0])
        itl = [x for gaps in g["itl_ms"] if gaps is not None for x in gaps]
        in_process = bool(g["in_process"].iloc[0])
        row = dict(zip(KEYS, key))
        row.update({
            "label": g["model"].iloc[0] + (" (synthetic)" if bool(g["synthetic"].iloc[0]) else ""),
            "in_process": in_process, "note": IN_PROCESS_NOTE if in_process else "",
            "clients": int(g["client_index"].nunique()), "requests": len(g), "window_s": window,
            "output_tokens": int(g["generated_tokens"].sum()),
            "output_tok_s": g["generated_tokens"].sum() / window if window > 0 else math.nan,
            "requests_s": len(g) / window if window > 0 else math.nan,
            "early_stops": int((g["done_reason"] == "stop").sum()),
        })
        for name, column in (("ttft", "ttft_ms"), ("tpot", "tpot_ms"), ("e2e", "e2e_ms")):
            for q in (50, 90, 99):
                row[f"{name}_p{q}_ms"] = _pct(g[column], q)
        for q in (50, 90, 99):
            row[f"itl_p{q}_ms"] = _pct(itl, q)
        for cls, lim in limits.items():
            met = met_limits(g, lim["ttft_ms"], lim["tpot_ms"])
            row[f"goodput_{cls}"] = float(met.mean())
            row[f"goodput_{cls}_req_s"] = met.sum() / window if window > 0 else math.nan
            row[f"limit_{cls}_ttft_ms"], row[f"limit_{cls}_tpot_ms"] = lim["ttft_ms"], lim["tpot_ms"]
        rows.append(row)
    return pd.DataFrame(rows)


def table_for_paper(summary: pd.DataFrame, limits: dict | None = None) -> pd.DataFrame:
    limits = limits or DEFAULT_LIMITS
    if summary.empty:
        return pd.DataFrame(columns=["backend", "model", "N", "tok/s", "req/s", "TTFT p50", "TTFT p99", "ITL p50",
                                     "ITL p99"] + [f"goodput {c}" for c in limits] + ["note"])
    s = summary.sort_values(["backend", "model", "concurrency"])
    out = pd.DataFrame({"backend": s["backend"], "model": s["label"], "N": s["concurrency"],
                        "tok/s": s["output_tok_s"], "req/s": s["requests_s"], "TTFT p50": s["ttft_p50_ms"],
                        "TTFT p99": s["ttft_p99_ms"], "ITL p50": s["itl_p50_ms"], "ITL p99": s["itl_p99_ms"]})
    for cls in limits:
        out[f"goodput {cls}"] = [f"{100 * v:.0f}%" for v in s[f"goodput_{cls}"]]
    out["note"] = s["note"]
    return out
