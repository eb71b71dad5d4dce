"""Scaling analysis and the success criteria on small hand-made tables."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgebench.analysis import Criteria, criteria_table, greedy_agreement, loglog_fit, peak_bandwidth_gbs
from edgebench.config import load
from edgebench.records import to_table

ROOT = Path(__file__).resolve().parents[2]
PLAN = Criteria(engine="edgellm", reference="ollama")


def scaling_rows(values):
    return pd.DataFrame([{"testbed": "t", "backend": b, "model": m, "decode_tok_s_mean": v, "loglog_slope": np.nan,
                          "loglog_r2": np.nan} for b, m, v in values])


def summary_rows(cvs):
    return pd.DataFrame([{"backend": "edgellm", "model": "m", "prompt_id": p, "decode_tok_s_cv": cv}
                         for p, cv in cvs])


def test_performance_passes_only_when_every_model_is_measured_and_fast_enough():
    base = [("ollama", "a", 100.0), ("ollama", "b", 50.0)]
    both = criteria_table(scaling_rows(base + [("edgellm", "a", 160.0), ("edgellm", "b", 80.0)]),
                          summary_rows([("p", 0.01)]), PLAN)
    assert both.loc[0, "status"] == "PASS" and both.loc[0, "value"] == pytest.approx(1.6)
    slow = criteria_table(scaling_rows(base + [("edgellm", "a", 160.0), ("edgellm", "b", 60.0)]),
                          summary_rows([("p", 0.01)]), PLAN)
    assert slow.loc[0, "status"] == "FAIL"
    missing = criteria_table(scaling_rows(base + [("edgellm", "a", 160.0)]), summary_rows([("p", 0.01)]), PLAN)
    assert missing.loc[0, "status"] == "NOT MEASURED" and "not measured on: b" in missing.loc[0, "detail"]


def test_reproducibility_uses_the_worst_coefficient_of_variation():
    crit = criteria_table(scaling_rows([]).reindex(columns=["testbed", "backend", "model", "decode_tok_s_mean",
                                                             "loglog_slope", "loglog_r2"]),
                          summary_rows([("p1", 0.01), ("p2", 0.07)]), PLAN)
    row = crit[crit.criterion == 4].iloc[0]
    assert row["status"] == "FAIL" and row["value"] == pytest.approx(0.07)


def test_accuracy_reads_the_fp32_cases_of_the_kernel_accuracy_table():
    empty = scaling_rows([]).reindex(columns=["testbed", "backend", "model", "decode_tok_s_mean", "loglog_slope",
                                              "loglog_r2"])
    # Columns as kernels/tests/attention_accuracy.cu writes them; relative-metric (fp16/bf16) rows do not count.
    acc = pd.DataFrame({"metric": ["absolute", "absolute", "relative"], "max_abs_err": [2e-7, 6e-6, 1e-3]})
    row = criteria_table(empty, summary_rows([("p", 0.01)]), PLAN, kernel_accuracy=acc).query("criterion == 2").iloc[0]
    assert row["status"] == "PASS" and row["value"] == pytest.approx(6e-6)
    acc.loc[1, "max_abs_err"] = 3e-5
    row = criteria_table(empty, summary_rows([("p", 0.01)]), PLAN, kernel_accuracy=acc).query("criterion == 2").iloc[0]
    assert row["status"] == "FAIL"
    none = criteria_table(empty, summary_rows([("p", 0.01)]), PLAN).query("criterion == 2").iloc[0]
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


def test_synthetic_config_judges_edgellm_against_its_llama_cpp_baseline_with_numbers(config_schema):
    """config/synthetic.yaml (llama.cpp baseline): criterion 1 is PASS or FAIL with the ratio, never NOT MEASURED."""
    config = load(ROOT / "config" / "synthetic.yaml", config_schema)
    criteria = Criteria.from_config(config["criteria"])
    assert (criteria.engine, criteria.reference) == ("edgellm", "llamacpp")
    models = list(config["models"])
    fast = [("llamacpp", m, 100.0) for m in models] + [("edgellm", m, 200.0) for m in models]
    row = criteria_table(scaling_rows(fast), summary_rows([("p", 0.01)]), criteria).iloc[0]
    assert row["status"] == "PASS" and row["value"] == pytest.approx(2.0)
    slow = [("llamacpp", m, 100.0) for m in models] + [("edgellm", m, 120.0) for m in models]
    row = criteria_table(scaling_rows(slow), summary_rows([("p", 0.01)]), criteria).iloc[0]
    assert row["status"] == "FAIL" and row["value"] == pytest.approx(1.2) and "1.20x" in row["detail"]


def test_thresholds_come_from_the_config():
    rows = scaling_rows([("llamacpp", "a", 100.0), ("edgellm", "a", 120.0)])
    lenient = Criteria(engine="edgellm", reference="llamacpp", min_speedup=1.1)
    assert criteria_table(rows, summary_rows([("p", 0.01)]), lenient).iloc[0]["status"] == "PASS"
    strict = Criteria(engine="edgellm", reference="llamacpp", max_cv=0.005)
    assert criteria_table(rows, summary_rows([("p", 0.01)]), strict).query("criterion == 4").iloc[0]["status"] == "FAIL"


def run_rows(backend, ids_by_prompt, synthetic=False, sha="ab" * 32, temperature=0.0):
    return [{"testbed": "t", "backend": backend, "model": "m", "gguf_sha256": sha, "prompt_id": p,
             "token_ids": ids, "is_warmup": False, "setting_temperature": temperature, "synthetic": synthetic}
            for p, ids in ids_by_prompt.items()]


def test_greedy_agreement_compares_the_common_prefix_on_the_same_gguf():
    runs = pd.DataFrame(run_rows("edgellm", {"a": [1, 2, 3, 4], "b": [5, 6, 7, 8]})
                        + run_rows("llamacpp", {"a": [1, 2, 3, 4], "b": [5, 6, 9, 8]})
                        + run_rows("llamacpp", {"a": [9, 9, 9, 9]}, sha="cd" * 32))  # another file: not compared
    agree = greedy_agreement(runs, "edgellm").set_index("prompt_id")
    assert len(agree) == 2
    assert agree.loc["a", "agreement"] == 1.0
    assert agree.loc["b", "agreement"] == pytest.approx(0.5)  # after a difference the texts differ: not counted


def test_an_early_stop_on_one_side_counts_as_a_difference():
    runs = pd.DataFrame(run_rows("edgellm", {"a": [1, 2]}) + run_rows("llamacpp", {"a": [1, 2, 3, 4]}))
    assert greedy_agreement(runs, "edgellm")["agreement"].item() == pytest.approx(0.5)


def test_accuracy_criterion_from_token_agreement_and_the_kernel_gate():
    crit = Criteria(engine="edgellm", reference="llamacpp", min_token_agreement=0.9)
    empty = scaling_rows([]).reindex(columns=["testbed", "backend", "model", "decode_tok_s_mean", "loglog_slope",
                                              "loglog_r2"])
    runs = pd.DataFrame(run_rows("edgellm", {"a": list(range(10))}) + run_rows("llamacpp", {"a": list(range(10))}))
    row = criteria_table(empty, summary_rows([("p", 0.01)]), crit, runs=runs).query("criterion == 2").iloc[0]
    assert row["status"] == "PASS" and row["value"] == 1.0 and "10 of 10 tokens" in row["detail"]
    gate = pd.DataFrame({"metric": ["absolute"], "max_abs_err": [3e-5]})  # the gate fails: so does the criterion
    row = criteria_table(empty, summary_rows([("p", 0.01)]), crit, runs=runs, kernel_accuracy=gate).iloc[1]
    assert row["status"] == "FAIL" and "kernel gate" in row["detail"]
    diverging = pd.DataFrame(run_rows("edgellm", {"a": [0, 1, 2, 3]}) + run_rows("llamacpp", {"a": [0, 1, 9, 9]}))
    row = criteria_table(empty, summary_rows([("p", 0.01)]), crit, runs=diverging).iloc[1]
    assert row["status"] == "FAIL" and row["value"] == pytest.approx(0.5)


def test_synthetic_models_and_sampled_runs_are_not_compared():
    runs = pd.DataFrame(run_rows("edgellm", {"a": [1, 2]}, synthetic=True) + run_rows("llamacpp", {"a": [3, 4]},
                                                                                      synthetic=True)
                        + run_rows("edgellm", {"b": [1, 2]}, temperature=0.8)
                        + run_rows("llamacpp", {"b": [3, 4]}, temperature=0.8))
    assert greedy_agreement(runs, "edgellm").empty
