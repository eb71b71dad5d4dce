"""The concurrency sweep's figures: what each backend delivered, and how long its users waited, as more clients share
the server. One panel per model; in-process engines appear at N = 1 only (they run one request at a time)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import NullFormatter, ScalarFormatter

from .plots import backend_palette, not_measured, save


def _concurrency_axis(ax, levels) -> None:
    """Clients on a log-2 axis, labelled with the numbers that ran."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(levels))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("concurrent clients (closed loop)")


def _panels(summary: pd.DataFrame, rows: int, height: float = 3.6):
    labels = list(dict.fromkeys(summary["label"]))
    fig, axes = plt.subplots(rows, len(labels), figsize=(5.0 * len(labels), height * rows), squeeze=False)
    return fig, axes, labels


def throughput_vs_concurrency(summary: pd.DataFrame, png, testbed: str, limits: dict) -> None:
    """Aggregate output tok/s (top) and goodput, the share of requests meeting each class's limits (bottom)."""
    title = f"Throughput and goodput vs concurrency ({testbed})"
    if summary.empty:
        return not_measured(png, title, "no concurrency point was measured")
    fig, axes, labels = _panels(summary, 2)
    palette = backend_palette(summary["backend"])
    styles = ["-", "--", ":", "-."]
    for col, label in enumerate(labels):
        for backend, g in summary[summary["label"] == label].groupby("backend"):
            g = g.sort_values("concurrency")
            axes[0][col].plot(g["concurrency"], g["output_tok_s"], marker="o", color=palette[backend], label=backend)
            for i, cls in enumerate(limits):
                axes[1][col].plot(g["concurrency"], 100 * g[f"goodput_{cls}"], marker="o", color=palette[backend],
                                  linestyle=styles[i % len(styles)], label=f"{backend}, {cls}")
        axes[0][col].set_title(label, fontsize=10)
        axes[0][col].set_ylabel("output tok/s, all clients")
        axes[1][col].set_ylabel("goodput (% of requests)")
        axes[1][col].set_ylim(-5, 105)
        for ax in axes[:, col]:
            _concurrency_axis(ax, summary["concurrency"].unique())
            ax.legend(fontsize=7)
    fig.suptitle(title)
    save(fig, png)


def latency_vs_concurrency(summary: pd.DataFrame, png, testbed: str) -> None:
    """TTFT (top) and ITL (bottom) at the 50th, 90th and 99th percentiles of the requests."""
    title = f"TTFT and ITL percentiles vs concurrency ({testbed})"
    if summary.empty:
        return not_measured(png, title, "no concurrency point was measured")
    fig, axes, labels = _panels(summary, 2)
    palette = backend_palette(summary["backend"])
    for col, label in enumerate(labels):
        for backend, g in summary[summary["label"] == label].groupby("backend"):
            g = g.sort_values("concurrency")
            for q, style in ((50, "-"), (90, "--"), (99, ":")):
                axes[0][col].plot(g["concurrency"], g[f"ttft_p{q}_ms"], marker="o", linestyle=style,
                                  color=palette[backend], label=f"{backend} p{q}")
                axes[1][col].plot(g["concurrency"], g[f"itl_p{q}_ms"], marker="o", linestyle=style,
                                  color=palette[backend], label=f"{backend} p{q}")
        axes[0][col].set_title(label, fontsize=10)
        axes[0][col].set_ylabel("TTFT (ms)")
        axes[1][col].set_ylabel("ITL (ms)")
        for ax in axes[:, col]:
            _concurrency_axis(ax, summary["concurrency"].unique())
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=7)
    fig.suptitle(title)
    save(fig, png)
