"""Scaling analysis and the success criteria on small hand-made tables."""

import numpy as np
import pandas as pd
import pytest

from edgebench.analysis import criteria_table, loglog_fit, peak_bandwidth_gbs
from edgebench.records import to_table


def scaling_rows(values):
    return pd.DataFrame([{"testbed": "t", "backend": b, "model": m, "decode_tok_s_mean": v, "loglog_slope": np.nan,
                          "loglog_r2": np.nan} for b, m, v in values])


def summary_rows(cvs):
    return pd.DataFrame([{"backend": "edgellm", "model": "m", "prompt_id": p, "decode_tok_s_cv": cv}
                         for p, cv in cvs])


def test_performance_passes_only_when_every_model_is_measured_and_fast_enough():
    base = [("ollama", "a", 100.0), ("ollama", "b", 50.0)]
    both = criteria_table(scaling_rows(base + [("edgellm", "a", 160.0), ("edgellm", "b", 80.0)]),
                          summary_rows([("p", 0.01)]))
    assert both.loc[0, "status"] == "PASS" and both.loc[0, "value"] == pytest.approx(1.6)
    slow = criteria_table(scaling_rows(base + [("edgellm", "a", 160.0), ("edgellm", "b", 60.0)]),
                          summary_rows([("p", 0.01)]))
    assert slow.loc[0, "status"] == "FAIL"
    missing = criteria_table(scaling_rows(base + [("edgellm", "a", 160.0)]), summary_rows([("p", 0.01)]))
    assert missing.loc[0, "status"] == "NOT MEASURED" and "not measured on: b" in missing.loc[0, "detail"]


def test_reproducibility_uses_the_worst_coefficient_of_variation():
    crit = criteria_table(scaling_rows([]).reindex(columns=["testbed", "backend", "model", "decode_tok_s_mean",
                                                             "loglog_slope", "loglog_r2"]),
                          summary_rows([("p1", 0.01), ("p2", 0.07)]))
    row = crit[crit.criterion == 4].iloc[0]
    assert row["status"] == "FAIL" and row["value"] == pytest.approx(0.07)


def test_accuracy_reads_the_fp32_cases_of_the_kernel_accuracy_table():
    empty = scaling_rows([]).reindex(columns=["testbed", "backend", "model", "decode_tok_s_mean", "loglog_slope",
                                              "loglog_r2"])
    # Columns as kernels/tests/attention_accuracy.cu writes them; relative-metric (fp16/bf16) rows do not count.
    acc = pd.DataFrame({"metric": ["absolute", "absolute", "relative"], "max_abs_err": [2e-7, 6e-6, 1e-3]})
    row = criteria_table(empty, summary_rows([("p", 0.01)]), kernel_accuracy=acc).query("criterion == 2").iloc[0]
    assert row["status"] == "PASS" and row["value"] == pytest.approx(6e-6)
    acc.loc[1, "max_abs_err"] = 3e-5
    row = criteria_table(empty, summary_rows([("p", 0.01)]), kernel_accuracy=acc).query("criterion == 2").iloc[0]
    assert row["status"] == "FAIL"
    none = criteria_table(empty, summary_rows([("p", 0.01)])).query("criterion == 2").iloc[0]
    assert none["status"] == "NOT MEASURED"


def test_loglog_fit_recovers_a_power_law():
    params = np.array([1e8, 1e9, 1e10])
    slope, intercept, r2 = loglog_fit(params, 5e10 / params)
    assert slope == pytest.approx(-1.0) and r2 == pytest.approx(1.0)
    assert np.isnan(loglog_fit(params[:2], params[:2])[0])  # fewer than 3 sizes: no fit


def test_peak_bandwidth_prefers_the_most_specific_name():
    table = {"H100": 2000, "H100 80GB HBM3": 3350}
    assert peak_bandwidth_gbs("NVIDIA H100 80GB HBM3", table) == 3350
    assert peak_bandwidth_gbs(None, table) is None


def test_a_run_file_without_runs_is_valid():
    assert to_table([]).num_rows == 0
