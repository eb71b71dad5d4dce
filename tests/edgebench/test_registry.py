"""The backend registry: each backend's options come from its constructor, build steps are declared by backends."""

import pytest

from edgebench import EdgebenchError
from edgebench.backends import REGISTRY, build_inputs, build_steps, check_options, create_backend, option_schema


def test_every_backend_offers_its_constructor_keywords_and_ignore_eos():
    assert set(option_schema("ollama")["properties"]) >= {"url", "timeout_s", "retries", "ignore_eos"}
    assert set(option_schema("llamacpp")["properties"]) == {"n_gpu_layers", "flash_attn", "logits_all", "ignore_eos"}
    edgellm = option_schema("edgellm")["properties"]
    assert edgellm["device"] == {"enum": ["auto", "cpu", "cuda"]} and edgellm["quantized"] == {"type": "boolean"}
    assert "library" not in edgellm  # filled by its build step, not by a config
    for name in REGISTRY:
        assert option_schema(name)["additionalProperties"] is False


def test_an_option_the_backend_does_not_take_is_one_line_naming_it():
    with pytest.raises(EdgebenchError, match="the llamacpp backend takes no option 'device'"):
        check_options("llamacpp", {"device": "cpu"})
    with pytest.raises(EdgebenchError, match="the llamacpp backend takes no option 'device'"):
        create_backend("llamacpp", device="cpu")  # before llama-cpp-python is even imported
    with pytest.raises(EdgebenchError, match="unknown backend 'vllm'"):
        create_backend("vllm")


def test_a_build_step_is_declared_by_its_backend_and_asked_for_per_job():
    steps = {step.rule: step for step in build_steps()}
    assert set(steps) == {"compile_kernels"}
    assert "libedgellm.so" in steps["compile_kernels"].products
    assert build_inputs("edgellm", {}, on_gpu=True) == {"library": "libedgellm.so"}
    assert build_inputs("edgellm", {"device": "cuda"}, on_gpu=False) == {"library": "libedgellm.so"}
    assert build_inputs("edgellm", {"device": "cpu"}, on_gpu=True) == {}
    assert build_inputs("edgellm", {}, on_gpu=False) == {}
    assert build_inputs("llamacpp", {}, on_gpu=True) == {}
