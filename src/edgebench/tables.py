"""Paper tables: CSV with every column, LaTeX (booktabs) with the columns a reader needs."""

from __future__ import annotations

import math

import pandas as pd

from .atomic import atomic_path


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "--"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def mean_pm(mean, std) -> str:
    return "--" if mean is None or mean != mean else f"{mean:.1f} $\\pm$ {std:.1f}" if std == std else f"{mean:.1f}"


def latex_table(df: pd.DataFrame, caption: str, label: str) -> str:
    escape = lambda s: str(s).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")  # noqa: E731
    cols = list(df.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{" + "l" * 2 + "r" * (len(cols) - 2) + "}",
             r"\toprule", " & ".join(escape(c) for c in cols) + r" \\", r"\midrule"]
    for _, row in df.iterrows():
        lines.append(" & ".join(v if "$" in str(v) else escape(_fmt(v)) for v in row.tolist()) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{escape(caption)}}}", rf"\label{{{label}}}",
              r"\end{table}", ""]
    return "\n".join(lines)


def summary_for_paper(summary: pd.DataFrame) -> pd.DataFrame:
    s = summary[summary["prompt_id"] == "all"].sort_values(["backend", "parameter_count"])
    return pd.DataFrame({
        "model": s["model"] + s["synthetic"].map(lambda x: " (synthetic)" if x else ""),
        "backend": s["backend"],
        "params (M)": s["parameter_count"] / 1e6,
        "tok/s": [mean_pm(m, d) for m, d in zip(s["decode_tok_s_mean"], s["decode_tok_s_std"])],
        "TTFT p50 (ms)": s["ttft_ms_p50"],
        "ITL p50 (ms)": s["itl_p50_ms"], "ITL p95": s["itl_p95_ms"], "ITL p99": s["itl_p99_ms"],
        "jitter (ms)": s["jitter_ms"],
        "peak GPU mem (MB)": s["gpu_mem_peak_mb"],
    })


def write_csv(df: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_text(text: str, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
