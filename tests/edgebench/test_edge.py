"""The edge-deployment recommendation: what fits each profile (measured peak + margin), the recommendation, the
Pareto front, and the memory figure that applies where the testbed has no GPU."""

from pathlib import Path

import pandas as pd
import pytest

from edgebench import EdgebenchError, defaults
from edgebench.config import validate
from edgebench.edge import (GPU_DEVICE, GPU_PROCESS, HOST_RSS, NOT_MEASURED, EdgeSettings, edge_table,
                            latex_caption, memory_figure, pareto_figure, pareto_front, recommendations)

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
GIB = 1024.0


def _runs(backend, model, decode, ttft, params, tokens=512, n=3, testbed="h200", gpu_proc=None, gpu=None,
          rss=None, mismatch=False):
    return [{"testbed": testbed, "backend": backend, "model": model, "synthetic": False, "context_tokens": tokens,
             "is_warmup": False, "prompt_tokens_mismatch": mismatch, "decode_tok_s": decode + i - (n - 1) / 2,
             "ttft_ms": ttft, "parameter_count": params, "quantization": "Q4_K_M", "gpu_proc_mem_peak_mb": gpu_proc,
             "gpu_mem_peak_mb": gpu, "host_rss_peak_mb": rss} for i in range(n)]


def _frame(*groups):
    return pd.DataFrame([row for g in groups for row in g])


def _settings(**kw):
    section = {"default_profiles": False,
               "profiles": {"small": {"label": "Small 4 GB", "memory_gib": 4}, "big": {"memory_gib": 24}}, **kw}
    return EdgeSettings.from_config(section, [128, 512])


def test_defaults_are_the_six_profiles_at_the_largest_swept_length():
    s = EdgeSettings.from_config(None, [2048, 512])
    assert s.context_tokens == 2048
    assert [p.name for p in s.profiles] == list(defaults.EDGE_PROFILES)
    assert {p.label: p.memory_gib for p in s.profiles}["Jetson Orin Nano 8 GB"] == 8
    assert (s.min_decode_tok_s, s.max_ttft_ms) == (20.0, 1000.0)
    assert s.required_mib(1000) == pytest.approx(1000 * (1 + defaults.EDGE_RUNTIME_MARGIN_FRACTION)
                                                 + defaults.EDGE_RUNTIME_MARGIN_MIB)


def test_a_config_adds_profiles_and_overrides_targets_and_margin():
    s = EdgeSettings.from_config({"context": 512, "profiles": {"pi": {"memory_gib": 2}},
                                  "targets": {"min_decode_tok_s": 5}, "runtime_margin": {"fraction": 0, "mib": 0}},
                                 [512, 4096])
    assert s.context_tokens == 512 and s.profiles[-1].name == "pi" and len(s.profiles) == 7
    assert s.min_decode_tok_s == 5 and s.max_ttft_ms == 1000 and s.required_mib(100) == 100


@pytest.mark.parametrize("section, contexts, words", [
    (None, [], "needs a context sweep"),
    ({"context": 1024}, [512, 4096], "edge.context: 1024 is not one of the swept contexts (512, 4096)"),
    ({"default_profiles": False}, [512], "no device profile"),
    ({"profiles": {"x": {"memory_gib": 0}}}, [512], "edge.profiles.x.memory_gib"),
])
def test_an_unusable_section_is_one_line(section, contexts, words):
    with pytest.raises(EdgebenchError, match="config key edge") as err:
        EdgeSettings.from_config(section, contexts)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_the_schema_takes_the_edge_section_and_refuses_unknown_keys():
    base = {"models": {"m": {"path": "m.gguf"}}, "backends": {"llamacpp": {}}, "contexts": [512]}
    validate({**base, "edge": {"context": 512, "profiles": {"orin": {"memory_gib": 8}},
                               "targets": {"max_ttft_ms": 500}}}, SCHEMA)
    with pytest.raises(EdgebenchError, match="edge"):
        validate({**base, "edge": {"profiles": {"orin": {"memory": 8}}}}, SCHEMA)


def test_a_model_fits_when_its_measured_peak_plus_the_margin_is_within_the_budget():
    s = _settings(runtime_margin={"fraction": 0.1, "mib": 512})
    just = (4 * GIB - 512) / 1.1
    runs = _frame(_runs("llamacpp", "fits", 50, 100, 1e9, gpu_proc=just),
                  _runs("llamacpp", "over", 60, 100, 2e9, gpu_proc=just + 1))
    t = edge_table(runs, s)
    small = t[t["profile"] == "small"].set_index("model")
    assert bool(small.loc["fits", "fits"]) and not bool(small.loc["over", "fits"])
    assert small.loc["over", "verdict"].startswith("does not fit: needs")
    assert t[t["profile"] == "big"]["fits"].all()


def test_the_recommendation_is_the_largest_model_that_fits_and_meets_both_targets():
    s = _settings()
    runs = _frame(_runs("llamacpp", "1b", 200, 50, 1e9, gpu_proc=1500),
                  _runs("edgellm", "1b", 300, 80, 1e9, gpu_proc=1400),
                  _runs("llamacpp", "3b", 90, 300, 3e9, gpu_proc=2800),
                  _runs("llamacpp", "8b", 15, 400, 8e9, gpu_proc=6000),        # fits "big" but too slow
                  _runs("edgellm", "7b", 40, 2500, 7e9, gpu_proc=5500))        # fits "big", TTFT too long
    t = edge_table(runs, s)
    chosen = t[t["recommended"]].set_index("profile")
    assert chosen.loc["small", "model"] == "3b" and chosen.loc["big", "model"] == "3b"
    big = t[t["profile"] == "big"].set_index(["backend", "model"])
    assert "decode 15.0 < 20 tok/s" in big.loc[("llamacpp", "8b"), "verdict"]
    assert "TTFT 2500.0 > 1000 ms" in big.loc[("edgellm", "7b"), "verdict"]
    assert t.groupby("profile")["recommended"].sum().eq(1).all()
    # Of the same model, the faster backend wins a tie on size.
    tie = edge_table(_frame(_runs("llamacpp", "1b", 200, 50, 1e9, gpu_proc=1500),
                            _runs("edgellm", "1b", 300, 80, 1e9, gpu_proc=1400)), s)
    assert set(tie[tie["recommended"]]["backend"]) == {"edgellm"}


def test_speeds_are_the_testbeds_means_never_scaled_and_every_row_names_the_testbed():
    s = _settings()
    runs = _frame(_runs("llamacpp", "1b", 200, 50, 1e9, gpu_proc=1500, testbed="h200"))
    t = edge_table(runs, s)
    assert (t["decode_tok_s_mean"] == runs["decode_tok_s"].mean()).all()
    assert (t["ttft_ms_mean"] == 50).all() and (t["measured_on"] == "h200").all()
    assert "measured on h200, not on the profiles' devices" in latex_caption(s, "h200")


def test_no_recommendation_says_why():
    s = _settings()
    slow = edge_table(_frame(_runs("llamacpp", "1b", 5, 50, 1e9, gpu_proc=1500)), s)
    assert recommendations(slow, s)["recommended"].tolist() == [
        "none: no fitting model meets the targets (the fastest that fits: 1b on llamacpp, decode 5.0 tok/s, "
        "TTFT 50.0 ms)"] * 2
    huge = edge_table(_frame(_runs("llamacpp", "70b", 50, 50, 7e10, gpu_proc=90 * GIB)), s)
    assert recommendations(huge, s)["recommended"].iloc[0] == "none: no measured model fits"
    empty = edge_table(_frame(_runs("llamacpp", "1b", 50, 50, 1e9, gpu_proc=100, tokens=128)), s)
    assert recommendations(empty, s)["recommended"].iloc[0] == "none: no model was measured at 512 tokens"


def test_the_summary_carries_the_measured_numbers_behind_the_choice():
    s = _settings()
    t = edge_table(_frame(_runs("llamacpp", "1b", 200, 50, 1e9, gpu_proc=1500)), s)
    r = recommendations(t, s).iloc[0]
    assert r["recommended"] == "1b on llamacpp" and r["decode_tok_s"] == 200 and r["ttft_ms"] == 50
    assert r["peak_memory_mib"] == 1500 and r["required_mib"] == s.required_mib(1500) and r["fitting"] == 1


def test_runs_whose_engine_reported_another_prompt_length_are_left_out():
    s = _settings()
    t = edge_table(_frame(_runs("ollama", "1b", 200, 50, 1e9, gpu=1500, mismatch=True)), s)
    assert t.empty


def test_the_memory_figure_prefers_the_process_then_the_whole_gpu():
    assert memory_figure(pd.DataFrame(_runs("llamacpp", "m", 1, 1, 1, gpu_proc=700, gpu=9000)), "llamacpp") == \
        (700.0, GPU_PROCESS)
    assert memory_figure(pd.DataFrame(_runs("ollama", "m", 1, 1, 1, gpu=9000, rss=50)), "ollama") == \
        (9000.0, GPU_DEVICE)


def test_without_a_gpu_an_in_process_engine_counts_its_rss_and_the_ollama_server_is_missing():
    assert memory_figure(pd.DataFrame(_runs("edgellm", "m", 1, 1, 1, rss=420)), "edgellm") == (420.0, HOST_RSS)
    assert memory_figure(pd.DataFrame(_runs("ollama", "m", 1, 1, 1, rss=80)), "ollama") == (None, NOT_MEASURED)
    assert memory_figure(pd.DataFrame(_runs("someengine", "m", 1, 1, 1, rss=80)), "someengine")[0] is None
    s = _settings()
    t = edge_table(_frame(_runs("ollama", "1b", 200, 50, 1e9, rss=80)), s)
    assert t["fits"].isna().all() and not t["recommended"].any() and t["pareto"].isna().all()
    assert (t["verdict"] == "memory not measured: cannot say whether it fits").all()
    assert recommendations(t, s)["recommended"].iloc[0] == "none: no peak memory was measured"


def test_the_pareto_front_keeps_only_points_nothing_beats_on_both():
    speed = pd.Series([100, 50, 120, 40, 90, None])
    memory = pd.Series([1000, 500, 2000, 600, 1000, 10])
    assert pareto_front(speed, memory) == [True, True, True, False, False, None]


def test_the_figure_is_written_and_says_when_nothing_can_be_placed(tmp_path):
    s = _settings()
    runs = _frame(_runs("llamacpp", "1b", 200, 50, 1e9, gpu_proc=1500),
                  _runs("edgellm", "3b", 90, 3000, 3e9, gpu_proc=2800))
    pareto_figure(runs, s, tmp_path / "edge.png", "h200")
    assert (tmp_path / "edge.png").stat().st_size > 10_000 and (tmp_path / "edge.pdf").is_file()
    pareto_figure(_frame(_runs("ollama", "1b", 200, 50, 1e9, rss=80)), s, tmp_path / "none.png", "cpu-2c")
    assert (tmp_path / "none.png").is_file()
