"""The context sweep's figures and table: what each backend measured at each prompt length, per model.

Only runs with `context_tokens` (the sweep's), timed runs only. A run whose engine reported another prompt length
(`prompt_tokens_mismatch`) is left out of the figures and counted in the table, never plotted as if it were N.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .plots import _with_labels, backend_palette, not_measured, save
from .stats import ratio_ci


def context_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Timed context runs whose reported prompt length is the requested one."""
    if "context_tokens" not in runs:
        return runs.iloc[0:0]
    r = runs[runs["context_tokens"].notna() & ~runs["is_warmup"].astype(bool)]
    return _with_labels(r[~r["prompt_tokens_mismatch"].fillna(True).astype(bool)])


def _per_length(runs: pd.DataFrame, column: str) -> pd.DataFrame:
    return (runs.dropna(subset=[column]).groupby(["model_label", "backend", "context_tokens"])[column]
            .agg(["mean", "std"]).reset_index())


def _lines(runs: pd.DataFrame, column: str, png, title: str, ylabel: str, logy: bool) -> None:
    stats = _per_length(runs, column)
    if stats.empty:
        return not_measured(png, title, f"no context run measured {column}")
    models = list(dict.fromkeys(stats["model_label"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5.0 * len(models), 3.8), squeeze=False)
    palette = backend_palette(stats["backend"])
    for ax, model in zip(axes[0], models):
        for backend, g in stats[stats["model_label"] == model].groupby("backend"):
            g = g.sort_values("context_tokens")
            ax.errorbar(g["context_tokens"], g["mean"], yerr=np.nan_to_num(g["std"]), marker="o", capsize=3,
                        label=backend, color=palette[backend])
        ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("prompt length (tokens, model's tokenizer)")
        ax.set_ylabel(ylabel)
        ax.set_title(model, fontsize=10)
        ax.legend(title="backend", fontsize=8)
    fig.suptitle(title)
    save(fig, png)


def ttft_vs_length(runs: pd.DataFrame, png, testbed: str) -> None:
    _lines(context_runs(runs), "ttft_ms", png, f"Time to first token vs prompt length on {testbed}",
           "TTFT (ms, mean ± std)", logy=True)


def prefill_vs_length(runs: pd.DataFrame, png, testbed: str) -> None:
    _lines(context_runs(runs), "prefill_tok_s", png, f"Prefill throughput vs prompt length on {testbed}",
           "prompt tokens / TTFT (tok/s)", logy=True)


def decode_vs_depth(runs: pd.DataFrame, png, testbed: str) -> None:
    _lines(context_runs(runs), "decode_tok_s", png, f"Decode throughput vs cache depth on {testbed}",
           "decode tok/s after the prompt (mean ± std)", logy=False)


def memory_vs_length(runs: pd.DataFrame, png, testbed: str) -> None:
    r = context_runs(runs)
    gpu = r.dropna(subset=["gpu_mem_peak_mb"]) if "gpu_mem_peak_mb" in r else r.iloc[0:0]
    column, label = ("gpu_mem_peak_mb", "peak GPU memory, whole device (MB)") if len(gpu) else \
        ("host_rss_peak_mb", "peak host RSS of the harness (MB); no GPU")
    _lines(r, column, png, f"Peak memory vs prompt length on {testbed}", label, logy=False)


def speedup_table(runs: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Each backend's mean prefill and decode tok/s over the baseline's, per model and length, with 95% CIs."""
    r = context_runs(runs)
    rows = []
    for (model, tokens), g in r.groupby(["model_label", "context_tokens"]):
        base = g[g["backend"] == baseline]
        for backend, b in g[g["backend"] != baseline].groupby("backend"):
            row = {"model_label": model, "context_tokens": int(tokens), "backend": backend, "baseline": baseline}
            for metric in ("prefill_tok_s", "decode_tok_s"):
                point, lo, hi = ratio_ci(b[metric], base[metric])
                row.update({f"{metric}_speedup": point, f"{metric}_speedup_ci95_lo": lo,
                            f"{metric}_speedup_ci95_hi": hi})
            rows.append(row)
    return pd.DataFrame(rows)


def speedup_vs_length(runs: pd.DataFrame, baseline: str, png, testbed: str) -> None:
    sp = speedup_table(runs, baseline)
    title = f"Speedup over {baseline} vs prompt length on {testbed}"
    if sp.empty:
        return not_measured(png, title, f"no backend other than {baseline} ran the context sweep")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    palette = backend_palette(sp["backend"])
    for ax, metric, what in zip(axes, ("prefill_tok_s", "decode_tok_s"), ("prefill", "decode")):
        for (model, backend), g in sp.groupby(["model_label", "backend"]):
            g = g.sort_values("context_tokens")
            col = f"{metric}_speedup"
            yerr = np.vstack([g[col] - g[f"{col}_ci95_lo"], g[f"{col}_ci95_hi"] - g[col]])
            ax.errorbar(g["context_tokens"], g[col], yerr=np.nan_to_num(yerr), marker="o", capsize=3,
                        label=f"{backend}, {model}", color=palette[backend])
        ax.axhline(1.0, color="0.3", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("prompt length (tokens)")
        ax.set_ylabel(f"{what} tok/s / {baseline}'s (95% CI)")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    save(fig, png)


def context_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per backend x model x length: every timed run's measured means, and the runs flagged."""
    if "context_tokens" not in runs:
        return pd.DataFrame()
    r = runs[runs["context_tokens"].notna() & ~runs["is_warmup"].astype(bool)]
    rows = []
    for (backend, model, tokens), g in r.groupby(["backend", "model", "context_tokens"]):
        ok = g[~g["prompt_tokens_mismatch"].fillna(True).astype(bool)]
        rows.append({
            "backend": backend, "model": model, "context_tokens": int(tokens), "runs": len(g),
            "runs_prompt_mismatch": len(g) - len(ok),
            "reported_prompt_tokens": ", ".join(str(int(v)) for v in sorted(g["prompt_tokens"].dropna().unique())),
            "num_ctx": int(g["setting_num_ctx"].iloc[0]),
            "ttft_ms_mean": ok["ttft_ms"].mean(), "prefill_tok_s_mean": ok["prefill_tok_s"].mean(),
            "decode_tok_s_mean": ok["decode_tok_s"].mean(), "decode_tok_s_std": ok["decode_tok_s"].std(),
            "itl_p50_ms": ok["itl_p50_ms"].median(), "itl_p99_ms": ok["itl_p99_ms"].median(),
            "gpu_mem_peak_mb": ok["gpu_mem_peak_mb"].max(), "host_rss_peak_mb": ok["host_rss_peak_mb"].max(),
            "gpu_energy_j_per_token_mean": ok["gpu_energy_j_per_token"].mean(),
        })
    return pd.DataFrame(rows)
