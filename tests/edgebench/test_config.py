"""Config validation: one line naming the key for every bad input, defaults from one place."""

import pytest

from edgebench import EdgebenchError, defaults
from edgebench.config import resolve_testbed, validate


def config(**extra):
    return {"models": {"m": {"path": "x.gguf"}}, "backends": {"llamacpp": {}}, **extra}


@pytest.mark.parametrize("section, value", [
    ("models", {"..": {"path": "x.gguf"}}), ("models", {".": {"path": "x.gguf"}}),
    ("models", {".hidden": {"path": "x.gguf"}}), ("testbed", ".."), ("testbed", ".cache"),
    ("testbeds", {"..": {}}), ("compare_testbeds", [".."]),
])
def test_names_that_would_leave_or_hide_in_results_are_refused(config_schema, section, value):
    with pytest.raises(EdgebenchError, match=f"config key {section}.*is not a usable name.*starting with a dot"):
        validate(config(**{section: value}), config_schema)


def test_dotted_names_inside_are_still_fine(config_schema):
    validate(config(models={"qwen2.5-0.5b": {"path": "x.gguf"}}, testbed="h100-80gb"), config_schema)


def test_backend_options_are_checked_against_the_backend(config_schema):
    with pytest.raises(EdgebenchError, match=r"config key backends.llamacpp.device: the llamacpp backend takes no "
                                             r"option 'device' \(its options: .*n_gpu_layers"):
        validate(config(backends={"llamacpp": {"device": "cpu"}}), config_schema)
    with pytest.raises(EdgebenchError, match="config key backends.edgellm.device: 'gpu' is not one of"):
        validate(config(backends={"edgellm": {"device": "gpu"}}), config_schema)
    with pytest.raises(EdgebenchError, match="config key backends.vllm: unknown backend"):
        validate(config(backends={"vllm": {}}), config_schema)
    validate(config(backends={"edgellm": {"device": "cuda", "quantized": False, "ignore_eos": True}}), config_schema)


@pytest.mark.parametrize("nvcc", ["true; touch /tmp/PWNED; false #", "$(id)", "nvcc`id`", "-Xfoo", "a|b"])
def test_nvcc_must_be_a_path(config_schema, nvcc):
    with pytest.raises(EdgebenchError, match="config key kernels.nvcc: .* is not a path to a compiler"):
        validate(config(kernels={"nvcc": nvcc}), config_schema)


def test_nvcc_may_be_a_path_with_spaces(config_schema):
    assert validate(config(kernels={"nvcc": "/opt/cuda 13/bin/nvcc"}), config_schema)["kernels"]["nvcc"] == \
        "/opt/cuda 13/bin/nvcc"


def test_prompts_and_bandwidths_extend_the_shared_defaults(config_schema):
    filled = validate(config(gpu_peak_bandwidth_gbs={"L40S": 864, "H200": 4900}), config_schema)
    assert filled["prompts"] == defaults.PROMPTS
    assert filled["gpu_peak_bandwidth_gbs"]["L40S"] == 864 and filled["gpu_peak_bandwidth_gbs"]["H200"] == 4900
    assert filled["gpu_peak_bandwidth_gbs"]["Tesla T4"] == defaults.GPU_PEAK_BANDWIDTH_GBS["Tesla T4"]
    own = validate(config(prompts={"x": "Hi"}), config_schema)
    assert own["prompts"] == {"x": "Hi"}


def test_criteria_default_to_the_baseline_and_the_other_backend(config_schema):
    filled = validate(config(backends={"llamacpp": {}, "edgellm": {}}, baseline="llamacpp"), config_schema)
    assert filled["criteria"]["reference"] == "llamacpp" and filled["criteria"]["engine"] == "edgellm"
    assert filled["criteria"]["min_speedup"] == 1.5 and filled["criteria"]["max_kernel_error"] == 1e-5
    with pytest.raises(EdgebenchError, match="config key criteria.engine: 'ollama' is not one of the backends"):
        validate(config(criteria={"engine": "ollama"}), config_schema)


def test_auto_testbed_is_resolved_to_this_machine(monkeypatch):
    import edgebench.provenance

    monkeypatch.setattr(edgebench.provenance, "testbed_name", lambda: "cpu-2c")
    cfg = {"testbed": "auto"}
    assert resolve_testbed(cfg) == "cpu-2c" and cfg["testbed"] == "cpu-2c"
    assert resolve_testbed({"testbed": "h200"}) == "h200"
