"""Summary statistics of benchmark samples, defined once for every table and figure.

- Percentiles interpolate linearly between order statistics (numpy's default, "type 7"); no outlier removal first.
- std is the sample standard deviation (ddof=1); the coefficient of variation is std / mean.
- Jitter is the standard deviation of the inter-token latency (ms), pooled over the runs it summarises.
- The 95% confidence interval of the mean is a percentile bootstrap with a fixed seed, so reruns give the same table.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20260101


def bootstrap_ci(samples: Sequence[float], level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED, statistic=np.mean) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic`; (nan, nan) for fewer than two samples."""
    x = np.asarray(samples, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    stats = statistic(x[idx], axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def describe(samples: Sequence[float], prefix: str) -> dict[str, float]:
    """mean, std, min, max, p50/p95/p99, cv and the bootstrap CI of the mean, as `{prefix}_{stat}` keys."""
    x = np.asarray(samples, dtype=np.float64)
    x = x[~np.isnan(x)]
    out: dict[str, float] = {f"{prefix}_n": float(x.size)}
    if x.size == 0:
        for k in ("mean", "std", "min", "max", "p50", "p95", "p99", "cv", "ci95_lo", "ci95_hi"):
            out[f"{prefix}_{k}"] = math.nan
        return out
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else math.nan
    p50, p95, p99 = (float(v) for v in np.percentile(x, [50, 95, 99]))
    lo, hi = bootstrap_ci(x)
    out.update({
        f"{prefix}_mean": mean, f"{prefix}_std": std, f"{prefix}_min": float(x.min()), f"{prefix}_max": float(x.max()),
        f"{prefix}_p50": p50, f"{prefix}_p95": p95, f"{prefix}_p99": p99,
        f"{prefix}_cv": std / mean if mean else math.nan,
        f"{prefix}_ci95_lo": lo, f"{prefix}_ci95_hi": hi,
    })
    return out


def jitter_ms(itl_lists: Sequence[Sequence[float]]) -> float:
    """Standard deviation (ddof=1) of all inter-token latencies of the given runs, pooled."""
    pooled = np.concatenate([np.asarray(v, dtype=np.float64) for v in itl_lists]) if len(itl_lists) else np.array([])
    return float(pooled.std(ddof=1)) if pooled.size > 1 else math.nan


def ratio_ci(numerator: Sequence[float], denominator: Sequence[float], level: float = 0.95,
             resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """Ratio of means of two independent samples with a percentile bootstrap CI (each resampled on its own)."""
    a = np.asarray(numerator, dtype=np.float64)
    b = np.asarray(denominator, dtype=np.float64)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        return (math.nan, math.nan, math.nan)
    point = float(a.mean() / b.mean())
    if a.size < 2 or b.size < 2:
        return (point, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    ra = a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
    rb = b[rng.integers(0, b.size, size=(resamples, b.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(ra / rb, [alpha, 1.0 - alpha])
    return (point, float(lo), float(hi))
