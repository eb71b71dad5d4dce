import math

import numpy as np
import pytest
import scipy.stats

from edgebench.stats import bootstrap_ci, describe, jitter_ms, ratio_ci


def test_percentiles_interpolate_linearly_on_a_known_sample():
    d = describe(np.arange(1, 101, dtype=float), "x")
    # Type-7 interpolation: position (n-1)*q; for 1..100, p95 = 95.05 and p99 = 99.01.
    assert d["x_p50"] == pytest.approx(50.5)
    assert d["x_p95"] == pytest.approx(95.05)
    assert d["x_p99"] == pytest.approx(99.01)
    assert d["x_min"] == 1 and d["x_max"] == 100


def test_mean_std_cv_match_scipy():
    rng = np.random.default_rng(1)
    x = rng.gamma(3.0, 2.0, size=257)
    d = describe(x, "v")
    assert d["v_mean"] == pytest.approx(np.mean(x))
    assert d["v_std"] == pytest.approx(scipy.stats.tstd(x))
    assert d["v_cv"] == pytest.approx(scipy.stats.variation(x, ddof=1))
    for q in (50, 95, 99):
        assert d[f"v_p{q}"] == pytest.approx(scipy.stats.scoreatpercentile(x, q))


def test_no_outlier_removal_before_percentiles():
    x = [10.0] * 99 + [1000.0]
    d = describe(x, "x")
    assert d["x_max"] == 1000.0
    assert d["x_p99"] == pytest.approx(10.0 + 0.01 * 990.0)  # the outlier pulls p99 as it should


def test_bootstrap_ci_agrees_with_scipy_percentile_bootstrap():
    rng = np.random.default_rng(7)
    x = rng.normal(100.0, 5.0, size=200)
    lo, hi = bootstrap_ci(x)
    ref = scipy.stats.bootstrap((x,), np.mean, method="percentile", n_resamples=10_000,
                                random_state=np.random.default_rng(3)).confidence_interval
    assert lo < x.mean() < hi
    assert lo == pytest.approx(ref.low, abs=0.15)
    assert hi == pytest.approx(ref.high, abs=0.15)
    # and it is reproducible: same seed, same interval
    assert bootstrap_ci(x) == (lo, hi)


def test_ci_of_one_sample_is_missing_not_zero():
    assert all(math.isnan(v) for v in bootstrap_ci([3.0]))
    d = describe([3.0], "x")
    assert math.isnan(d["x_std"]) and d["x_mean"] == 3.0


def test_jitter_is_the_pooled_std_of_inter_token_latencies():
    runs = [[1.0, 2.0, 3.0], [10.0, 12.0]]
    assert jitter_ms(runs) == pytest.approx(np.std([1, 2, 3, 10, 12], ddof=1))


def test_ratio_ci_brackets_the_ratio_of_means():
    rng = np.random.default_rng(0)
    a, b = rng.normal(300, 10, 100), rng.normal(200, 10, 100)
    point, lo, hi = ratio_ci(a, b)
    assert point == pytest.approx(a.mean() / b.mean())
    assert lo < point < hi and hi - lo < 0.1
