"""The paper's figures (seaborn), each saved as PNG and PDF. Synthetic models are labelled as such everywhere.

A quantity that was not measured on a testbed gives a figure that says so, rather than no figure or a zero.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .atomic import atomic_path  # noqa: E402

sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)
# Every figure colours a backend with backend_palette() at full saturation (seaborn's categorical plots would dull
# it), so that a backend looks the same in a line, a bar and a box.


def backend_palette(names=()) -> dict:
    """One colour per backend name, the same in every figure and testbed comparison: the registry's backends in
    its order, then any other name found in the results, sorted."""
    from .backends import REGISTRY

    known = list(REGISTRY) + sorted(set(names) - set(REGISTRY))
    colours = sns.color_palette("colorblind", 10)
    return {name: colours[i % len(colours)] for i, name in enumerate(known)}


def model_label(model: str, synthetic) -> str:
    return f"{model} (synthetic)" if bool(synthetic) else model


def save(fig, png: str | Path) -> None:
    """PNG (for the report) and PDF (for the paper) beside it, both written atomically."""
    png = Path(png)
    for path in (png, png.with_suffix(".pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], dpi=200, bbox_inches="tight")
    plt.close(fig)


def not_measured(png, title: str, reason: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 2.2))
    ax.axis("off")
    ax.text(0.5, 0.62, title, ha="center", va="center", fontsize=13, weight="bold")
    ax.text(0.5, 0.3, f"NOT MEASURED: {reason}", ha="center", va="center", fontsize=10, color="0.35", wrap=True)
    save(fig, png)


def _with_labels(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["model_label"] = [model_label(m, s) for m, s in zip(df["model"], df["synthetic"])]
    return df


def throughput_vs_size(scaling: pd.DataFrame, png, testbed: str) -> None:
    df = _with_labels(scaling.dropna(subset=["parameter_count", "decode_tok_s_mean"]))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    palette = backend_palette(df["backend"])
    for backend, g in df.groupby("backend"):
        g = g.sort_values("parameter_count")
        yerr = np.vstack([g["decode_tok_s_mean"] - g["decode_tok_s_ci95_lo"],
                          g["decode_tok_s_ci95_hi"] - g["decode_tok_s_mean"]])
        ax.errorbar(g["parameter_count"], g["decode_tok_s_mean"], yerr=np.nan_to_num(yerr), marker="o",
                    capsize=3, label=backend, color=palette[backend])
        for _, r in g.iterrows():
            ax.annotate(r["model_label"], (r["parameter_count"], r["decode_tok_s_mean"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("decode throughput (tok/s, mean, 95% CI)")
    ax.set_title(f"Decode throughput vs model size on {testbed}")
    ax.legend(title="backend")
    save(fig, png)


def speedup(scaling: pd.DataFrame, png, testbed: str) -> None:
    df = _with_labels(scaling[(scaling["backend"] != scaling["baseline"]) & scaling["speedup"].notna()])
    if df.empty:
        baseline = scaling["baseline"].iloc[0] if len(scaling) else "the baseline"
        return not_measured(png, f"Speedup over {baseline} on {testbed}",
                            f"no backend other than {baseline} ran on the same models")
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    df = df.sort_values("parameter_count")
    order = list(dict.fromkeys(df["model_label"]))
    backends = sorted(df["backend"].unique())
    width = 0.8 / len(backends)
    for i, backend in enumerate(backends):
        g = df[df["backend"] == backend].set_index("model_label").reindex(order)
        x = np.arange(len(order)) + (i - (len(backends) - 1) / 2) * width
        yerr = np.vstack([g["speedup"] - g["speedup_ci95_lo"], g["speedup_ci95_hi"] - g["speedup"]])
        ax.bar(x, g["speedup"], width, yerr=np.nan_to_num(yerr), capsize=3, label=backend,
               color=backend_palette(backends)[backend])
    ax.axhline(1.0, color="0.3", lw=1)
    ax.set_xticks(np.arange(len(order)), order, rotation=30, ha="right")
    ax.set_ylabel(f"speedup over {df['baseline'].iloc[0]} (decode tok/s, 95% CI)")
    ax.set_title(f"Speedup per model on {testbed}")
    ax.legend(title="backend")
    save(fig, png)


def latency_distribution(runs: pd.DataFrame, png, testbed: str) -> None:
    timed = _with_labels(runs[~runs["is_warmup"]])
    itl = timed[["model_label", "backend", "itl_ms", "parameter_count"]].explode("itl_ms").dropna(subset=["itl_ms"])
    if itl.empty:
        return not_measured(png, f"Inter-token latency on {testbed}", "no run produced two tokens or more")
    itl["itl_ms"] = itl["itl_ms"].astype(float)
    order = list(dict.fromkeys(itl.sort_values("parameter_count")["model_label"]))
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    sns.boxenplot(data=itl, x="model_label", y="itl_ms", hue="backend", order=order, ax=ax, showfliers=True,
                  palette=backend_palette(itl["backend"]), saturation=1)
    ax.set_yscale("log")
    ax.set_xlabel("")
    ax.set_ylabel("inter-token latency (ms)")
    ax.set_title(f"Inter-token latency distribution (all timed runs) on {testbed}")
    ax.tick_params(axis="x", rotation=30)
    save(fig, png)


def ttft(runs: pd.DataFrame, png, testbed: str) -> None:
    timed = _with_labels(runs[~runs["is_warmup"]].dropna(subset=["ttft_ms"]))
    if timed.empty:
        return not_measured(png, f"Time to first token on {testbed}", "no run produced a token")
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    sns.boxplot(data=timed, x="prompt_id", y="ttft_ms", hue="backend", ax=ax,
                palette=backend_palette(timed["backend"]), saturation=1)
    ax.set_yscale("log")
    ax.set_xlabel("prompt")
    ax.set_ylabel("time to first token (ms)")
    models = ", ".join(dict.fromkeys(timed["model_label"]))
    ax.set_title(f"TTFT per prompt on {testbed}\n({models})", fontsize=10)
    save(fig, png)


def memory_vs_size(summary: pd.DataFrame, png, testbed: str) -> None:
    s = _with_labels(summary[summary["prompt_id"] == "all"])
    gpu = s.dropna(subset=["gpu_mem_peak_mb"])
    column, label = ("gpu_mem_peak_mb", "peak GPU memory, whole device (MB)") if len(gpu) else \
        ("host_rss_peak_mb", "peak host RSS of the harness process (MB); no GPU on this testbed")
    s = s.dropna(subset=[column])
    if s.empty:
        return not_measured(png, f"Peak memory on {testbed}", "no memory samples")
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    sns.scatterplot(data=s, x="parameter_count", y=column, hue="backend", style="backend", s=70, ax=ax,
                    palette=backend_palette(s["backend"]))
    for _, r in s.iterrows():
        ax.annotate(r["model_label"], (r["parameter_count"], r[column]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel(label)
    ax.set_title(f"Peak memory vs model size on {testbed}")
    save(fig, png)


def energy_per_token(summary: pd.DataFrame, png, testbed: str) -> None:
    s = _with_labels(summary[summary["prompt_id"] == "all"].dropna(subset=["gpu_energy_j_per_token_mean"]))
    if s.empty:
        return not_measured(png, f"Energy per token on {testbed}",
                            "no NVIDIA GPU energy counter on this testbed")
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    s = s.sort_values("parameter_count")
    sns.barplot(data=s, x="model_label", y="gpu_energy_j_per_token_mean", hue="backend", ax=ax,
                palette=backend_palette(s["backend"]), saturation=1)
    ax.set_xlabel("")
    ax.set_ylabel("GPU energy per generated token (J)")
    ax.set_title(f"Energy per token (NVML total-energy counter) on {testbed}")
    ax.tick_params(axis="x", rotation=30)
    save(fig, png)


def throughput_by_testbed(scalings: list[pd.DataFrame], png) -> None:
    df = _with_labels(pd.concat(scalings, ignore_index=True))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    # Colour is the backend, as in every other figure; the testbed is the line style.
    sns.lineplot(data=df.sort_values("parameter_count"), x="parameter_count", y="decode_tok_s_mean",
                 hue="backend", style="testbed", markers=True, ax=ax, palette=backend_palette(df["backend"]))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("decode throughput (tok/s, mean)")
    ax.set_title("Decode throughput vs model size across testbeds")
    save(fig, png)
