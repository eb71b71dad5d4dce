"""Edge-deployment recommendation: which measured models fit each device profile's memory, and which to deploy.

Everything here comes from the context sweep's timed runs at one prompt length (the config's `edge.context`), on
the testbed they were measured on. A profile contributes only its memory budget: the speeds in the table are the
testbed's, never scaled to the profile's device, and every row names the testbed.

Memory is the peak measured at that context, the largest over the timed runs, taken as follows:
- the GPU memory of the benchmark process (NVML's per-process figure) where it was measured: an in-process engine;
- else the whole GPU's peak (NVML): an engine in another process (the Ollama server); it includes anything else
  that held GPU memory at the time, so it errs on the side of not fitting;
- without a GPU, the benchmark process's peak host RSS when the engine ran inside it (llama.cpp embedded, EdgeLLM
  on the CPU): weights, KV cache and the Python harness together;
- otherwise (the Ollama server on a testbed without a GPU: its memory is in another process) the memory is missing
  and the model is neither counted as fitting nor as not fitting.

A model fits a profile when peak * (1 + margin fraction) + margin MiB <= the budget. The recommendation is the
largest model (parameters) that fits and meets both service targets (decode tok/s and TTFT, means of the timed
runs); a tie goes to the faster decode. The Pareto front is over decode tok/s (higher) and peak memory (lower).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

from . import EdgebenchError, defaults

MIB_PER_GIB = 1024.0

GPU_PROCESS = "GPU memory of the benchmark process (NVML)"
GPU_DEVICE = "whole-GPU peak (NVML; engine in another process)"
HOST_RSS = "host RSS peak of the benchmark process (no GPU; engine in-process, harness included)"
NOT_MEASURED = "not measured (no GPU; the engine's memory is in another process)"


@dataclass(frozen=True)
class Profile:
    name: str
    label: str
    memory_gib: float
    note: str = ""

    @property
    def budget_mib(self) -> float:
        return self.memory_gib * MIB_PER_GIB


@dataclass(frozen=True)
class EdgeSettings:
    """The config's `edge` section with the defaults of edgebench.defaults filled in."""
    context_tokens: int
    profiles: tuple[Profile, ...]
    min_decode_tok_s: float = defaults.EDGE_MIN_DECODE_TOK_S
    max_ttft_ms: float = defaults.EDGE_MAX_TTFT_MS
    margin_fraction: float = defaults.EDGE_RUNTIME_MARGIN_FRACTION
    margin_mib: float = defaults.EDGE_RUNTIME_MARGIN_MIB

    @classmethod
    def from_config(cls, section: Optional[dict], contexts: list[int]) -> "EdgeSettings":
        """One clear error where the section cannot be used: no sweep, a context the sweep does not run."""
        section = dict(section or {})
        lengths = sorted(int(c) for c in contexts or [])
        if not lengths:
            raise EdgebenchError("config key edge: the edge recommendation needs a context sweep (`contexts`); "
                                 "it judges models at one of its lengths")
        context = int(section.get("context", lengths[-1]))
        if context not in lengths:
            raise EdgebenchError(f"config key edge.context: {context} is not one of the swept contexts "
                                 f"({', '.join(map(str, lengths))})")
        table = dict(defaults.EDGE_PROFILES) if section.get("default_profiles", True) else {}
        table.update(section.get("profiles") or {})
        if not table:
            raise EdgebenchError("config key edge.profiles: no device profile to judge (default_profiles is false "
                                 "and none is given)")
        profiles = []
        for name, spec in table.items():
            memory = spec.get("memory_gib")
            if not isinstance(memory, (int, float)) or isinstance(memory, bool) or memory <= 0:
                raise EdgebenchError(f"config key edge.profiles.{name}.memory_gib: a positive number of GiB, "
                                     f"not {memory!r}")
            profiles.append(Profile(name, str(spec.get("label") or name), float(memory), str(spec.get("note", ""))))
        targets = section.get("targets") or {}
        margin = section.get("runtime_margin") or {}
        return cls(context_tokens=context, profiles=tuple(profiles),
                   min_decode_tok_s=float(targets.get("min_decode_tok_s", defaults.EDGE_MIN_DECODE_TOK_S)),
                   max_ttft_ms=float(targets.get("max_ttft_ms", defaults.EDGE_MAX_TTFT_MS)),
                   margin_fraction=float(margin.get("fraction", defaults.EDGE_RUNTIME_MARGIN_FRACTION)),
                   margin_mib=float(margin.get("mib", defaults.EDGE_RUNTIME_MARGIN_MIB)))

    def required_mib(self, peak_mib: Optional[float]) -> Optional[float]:
        if peak_mib is None or pd.isna(peak_mib):
            return None
        return float(peak_mib) * (1.0 + self.margin_fraction) + self.margin_mib

    def largest_peak_that_fits(self, profile: Profile) -> float:
        """The measured peak at which a model just fits the profile (the figure's budget lines)."""
        return (profile.budget_mib - self.margin_mib) / (1.0 + self.margin_fraction)

    def describe_margin(self) -> str:
        return f"measured peak x {1 + self.margin_fraction:g} + {self.margin_mib:g} MiB"


def engine_in_process(backend: str) -> bool:
    """Whether the backend's engine runs inside the benchmark process, so that its host RSS is the engine's memory.
    A backend declares otherwise with `runs_in_process = False`; a name the registry does not know is not assumed."""
    from .backends import REGISTRY, backend_class

    if backend not in REGISTRY:
        return False
    try:
        return bool(getattr(backend_class(backend), "runs_in_process", True))
    except EdgebenchError:
        return False


def memory_figure(runs: pd.DataFrame, backend: str) -> tuple[Optional[float], str]:
    """The peak memory that applies to these runs (one backend x model at one context) and where it came from."""
    for column, source in (("gpu_proc_mem_peak_mb", GPU_PROCESS), ("gpu_mem_peak_mb", GPU_DEVICE)):
        values = runs[column].dropna() if column in runs else pd.Series(dtype=float)
        if len(values):
            return float(values.max()), source
    if engine_in_process(backend):
        values = runs["host_rss_peak_mb"].dropna() if "host_rss_peak_mb" in runs else pd.Series(dtype=float)
        if len(values):
            return float(values.max()), HOST_RSS
    return None, NOT_MEASURED


def measured_points(runs: pd.DataFrame, context_tokens: int) -> pd.DataFrame:
    """One row per backend x model at the context: measured means, peak memory and its source, the Pareto flag."""
    from .context_figures import context_runs

    r = context_runs(runs)
    r = r[r["context_tokens"] == context_tokens]
    rows = []
    for (backend, model), g in r.groupby(["backend", "model"], sort=True):
        peak, source = memory_figure(g, backend)
        rows.append({
            "measured_on": ", ".join(sorted(g["testbed"].dropna().unique())) if "testbed" in g else None,
            "backend": backend, "model": model, "model_label": g["model_label"].iloc[0],
            "parameter_count": _first(g, "parameter_count"), "quantization": _first(g, "quantization"),
            "context_tokens": int(context_tokens), "runs": len(g),
            "decode_tok_s_mean": g["decode_tok_s"].mean(), "decode_tok_s_std": g["decode_tok_s"].std(),
            "ttft_ms_mean": g["ttft_ms"].mean(), "ttft_ms_std": g["ttft_ms"].std(),
            "peak_memory_mib": peak, "memory_source": source,
        })
    points = pd.DataFrame(rows)
    if len(points):
        points["pareto"] = pareto_front(points["decode_tok_s_mean"], points["peak_memory_mib"])
    return points


def _first(g: pd.DataFrame, column: str):
    values = g[column].dropna() if column in g else []
    return values.iloc[0] if len(values) else None


def pareto_front(speed: pd.Series, memory: pd.Series) -> list[Optional[bool]]:
    """True for points no other point beats on both (higher decode tok/s, lower memory, one strictly); None where
    either number is missing (a point that cannot be placed is neither on the front nor off it)."""
    known = [(i, s, m) for i, (s, m) in enumerate(zip(speed, memory)) if not (pd.isna(s) or pd.isna(m))]
    flags: list[Optional[bool]] = [None] * len(speed)
    for i, s, m in known:
        flags[i] = not any(s2 >= s and m2 <= m and (s2 > s or m2 < m) for j, s2, m2 in known if j != i)
    return flags


def _verdict(row: dict, settings: EdgeSettings, profile: Profile) -> str:
    if row["fits"] is None:
        return "memory not measured: cannot say whether it fits"
    if not row["fits"]:
        return f"does not fit: needs {row['required_mib']:.0f} MiB of {profile.budget_mib:.0f}"
    misses = []
    if not row["meets_decode"]:
        misses.append(f"decode {_num(row['decode_tok_s_mean'])} < {settings.min_decode_tok_s:g} tok/s")
    if not row["meets_ttft"]:
        misses.append(f"TTFT {_num(row['ttft_ms_mean'])} > {settings.max_ttft_ms:g} ms")
    return "fits, meets the targets" if not misses else "fits, misses " + " and ".join(misses)


def _num(v) -> str:
    return "not measured" if v is None or pd.isna(v) else f"{v:.1f}"


def edge_table(runs: pd.DataFrame, settings: EdgeSettings) -> pd.DataFrame:
    """One row per profile x backend x model measured at the context: fits, meets the targets, recommended."""
    points = measured_points(runs, settings.context_tokens)
    rows = []
    for profile in settings.profiles:
        block = []
        for p in points.to_dict("records"):
            required = settings.required_mib(p["peak_memory_mib"])
            fits = None if required is None else bool(required <= profile.budget_mib)
            decode, ttft = p["decode_tok_s_mean"], p["ttft_ms_mean"]
            row = {"profile": profile.name, "profile_label": profile.label, "budget_mib": profile.budget_mib,
                   "profile_note": profile.note, **p, "required_mib": required, "fits": fits,
                   "meets_decode": bool(not pd.isna(decode) and decode >= settings.min_decode_tok_s),
                   "meets_ttft": bool(not pd.isna(ttft) and ttft <= settings.max_ttft_ms),
                   "min_decode_tok_s": settings.min_decode_tok_s, "max_ttft_ms": settings.max_ttft_ms,
                   "margin": settings.describe_margin(), "recommended": False}
            row["meets_targets"] = row["meets_decode"] and row["meets_ttft"]
            row["verdict"] = _verdict(row, settings, profile)
            block.append(row)
        _recommend(block)
        # The recommendation first, then what fits (fastest first), then what does not fit or was not measured.
        block.sort(key=lambda r: (not r["recommended"], r["fits"] is not True, -_or(r["decode_tok_s_mean"], -1)))
        rows += block
    # In the order a reader takes them: the device, the verdict, what it rests on, then the details.
    columns = ["profile_label", "verdict", "backend", "model_label", "decode_tok_s_mean", "ttft_ms_mean",
               "peak_memory_mib", "required_mib", "budget_mib", "measured_on", "context_tokens", "memory_source",
               "pareto", "fits", "meets_decode", "meets_ttft", "meets_targets", "recommended", "runs",
               "decode_tok_s_std", "ttft_ms_std", "parameter_count", "quantization", "model", "profile", "margin",
               "min_decode_tok_s", "max_ttft_ms", "profile_note"]
    return pd.DataFrame(rows, columns=columns)


def _recommend(block: list[dict]) -> None:
    """Mark the largest model that fits and meets the targets (ties: the faster decode) as the recommendation."""
    eligible = [r for r in block if r["fits"] and r["meets_targets"]]
    if eligible:
        best = max(eligible, key=lambda r: (_or(r["parameter_count"], -1), _or(r["decode_tok_s_mean"], -1)))
        best["recommended"] = True
        best["verdict"] = "recommended: " + best["verdict"]


def _or(value, fallback):
    return fallback if value is None or pd.isna(value) else value


def recommendations(table: pd.DataFrame, settings: EdgeSettings) -> pd.DataFrame:
    """One row per profile: the recommended backend and model with the measured numbers behind the choice, or why
    there is none."""
    rows = []
    for profile in settings.profiles:
        block = table[table["profile"] == profile.name]
        chosen = block[block["recommended"]]
        fitting = block[block["fits"].eq(True)]
        row = {"profile": profile.label, "budget_gib": profile.memory_gib,
               "measured_on": ", ".join(sorted(block["measured_on"].dropna().unique())) or None,
               "context_tokens": settings.context_tokens, "fitting": len(fitting),
               "memory_not_measured": int(block["fits"].isna().sum())}
        if len(chosen):
            c = chosen.iloc[0]
            row.update({"recommended": f"{c['model_label']} on {c['backend']}", "decode_tok_s": c["decode_tok_s_mean"],
                        "ttft_ms": c["ttft_ms_mean"], "peak_memory_mib": c["peak_memory_mib"],
                        "required_mib": c["required_mib"]})
        else:
            row.update({"recommended": "none: " + _why_none(block, settings), "decode_tok_s": None, "ttft_ms": None,
                        "peak_memory_mib": None, "required_mib": None})
        rows.append(row)
    return pd.DataFrame(rows)


def _why_none(block: pd.DataFrame, settings: EdgeSettings) -> str:
    if block.empty:
        return f"no model was measured at {settings.context_tokens} tokens"
    if not block["fits"].eq(True).any():
        return "no measured model fits" if block["fits"].notna().any() else "no peak memory was measured"
    fitting = block[block["fits"].eq(True)].sort_values("decode_tok_s_mean", ascending=False)
    best = fitting.iloc[0]
    return (f"no fitting model meets the targets (the fastest that fits: {best['model_label']} on {best['backend']}, "
            f"decode {_num(best['decode_tok_s_mean'])} tok/s, TTFT {_num(best['ttft_ms_mean'])} ms)")


def pareto_figure(runs: pd.DataFrame, settings: EdgeSettings, png, testbed: str) -> None:
    """Decode tok/s against measured peak memory at the context, the Pareto front, and where each profile's budget
    (less the margin) and the decode target fall. Speeds are the testbed's, never scaled."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from .plots import backend_palette, not_measured, save

    points = measured_points(runs, settings.context_tokens)
    title = f"Decode tok/s vs peak memory at {settings.context_tokens} tokens, measured on {testbed}"
    placed = points.dropna(subset=["decode_tok_s_mean", "peak_memory_mib"]) if len(points) else points
    if placed.empty:
        reason = (f"no run at {settings.context_tokens} tokens" if points.empty else
                  "no peak memory was measured for any run (" + "; ".join(sorted(set(points["memory_source"]))) + ")")
        return not_measured(png, title, reason)
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    palette = backend_palette(placed["backend"])
    for backend, g in placed.groupby("backend"):
        meets = g["ttft_ms_mean"] <= settings.max_ttft_ms
        if meets.any():
            ax.scatter(g["peak_memory_mib"][meets], g["decode_tok_s_mean"][meets], color=palette[backend], s=40,
                       label=f"{backend}", zorder=3)
        if (~meets).any():
            ax.scatter(g["peak_memory_mib"][~meets], g["decode_tok_s_mean"][~meets], facecolors="none", s=40,
                       edgecolors=palette[backend], label=f"{backend}, TTFT > {settings.max_ttft_ms:g} ms", zorder=3)
        for _, r in g.iterrows():
            ax.annotate(r["model_label"], (r["peak_memory_mib"], r["decode_tok_s_mean"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    front = placed[placed["pareto"].eq(True)].sort_values("peak_memory_mib")
    ax.step(front["peak_memory_mib"], front["decode_tok_s_mean"], where="post", color="0.3", lw=1, ls="--",
            marker="o", markersize=11, markerfacecolor="none", label="Pareto front", zorder=2)
    ax.axhline(settings.min_decode_tok_s, color="tab:red", lw=1, ls=":",
               label=f"decode target {settings.min_decode_tok_s:g} tok/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = ax.get_xlim()
    # Profiles of one budget share a line (A100 and H100 80 GB).
    by_budget: dict[float, list[str]] = {}
    for p in settings.profiles:
        by_budget.setdefault(settings.largest_peak_that_fits(p), []).append(p.label)
    lines = [(x, " / ".join(labels)) for x, labels in by_budget.items()]
    for x, label in lines:
        if x > 0:
            ax.axvline(x, color="0.6", lw=0.8)
            ax.annotate(label, (x, 0.98), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                        va="top", ha="right", color="0.35")
    # Every budget on the axis, so that the headroom of a small model on a large device shows too.
    ax.set_xlim(min([lo / 1.5] + [x / 1.3 for x, _ in lines if x > 0]), max([hi] + [x * 1.3 for x, _ in lines]))
    # Labelled ticks at 1, 2 and 5 of each decade, in plain MiB: log-scale minor labels collide over decades.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    sources = sorted(set(placed["memory_source"]))
    ax.set_xlabel("peak memory (MiB): " + "; ".join(sources), fontsize=8)
    ax.set_ylabel(f"decode tok/s on {testbed} (mean of timed runs)")
    ax.set_title(title + "\nspeeds are this testbed's, not the profiles' devices'; budget lines: "
                 f"largest peak that fits ({settings.describe_margin()})", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    save(fig, png)


def latex_caption(settings: EdgeSettings, testbed: str) -> str:
    return (f"Edge-deployment recommendation at {settings.context_tokens} prompt tokens. Speeds and peak memory were "
            f"measured on {testbed}, not on the profiles' devices, and are not scaled to them. A model fits when "
            f"{settings.describe_margin()} is within the budget; targets: decode at least "
            f"{settings.min_decode_tok_s:g} tok/s and TTFT at most {settings.max_ttft_ms:g} ms (means of the timed "
            f"runs). Recommended: the largest model that fits and meets both.")
