"""Fixtures of the engine's tests. They use only the engine itself, gguf, synthgguf and (where installed) torch and
llama-cpp-python: never the harness. Shared ones (smollm2_gguf, tiny_gguf, kernel_library) are in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def cuda_device() -> None:
    """Skips without a CUDA device (asked of the driver, as edgellm.load(device="auto") does)."""
    from edgellm.cuda import device_count

    if device_count() == 0:
        pytest.skip("no CUDA device")


@pytest.fixture
def torch_cuda(cuda_device):
    """torch with a CUDA device, for tests that hand the kernels device buffers."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    return torch


def render_chat(path: Path, prompt: str) -> str:
    """The GGUF's own chat template with one user message and the generation prompt (Jinja, as llama.cpp's Python
    bindings and the harness render it); a leading BOS text is left to the tokenizer's add_bos rule."""
    import jinja2.sandbox

    from edgellm.gguf import field, open_gguf

    reader = open_gguf(path)
    tokens = field(reader, "tokenizer.ggml.tokens")

    def token_text(key: str) -> str:
        idx = field(reader, key)
        return tokens[idx] if idx is not None else ""

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    bos = token_text("tokenizer.ggml.bos_token_id")
    text = env.from_string(field(reader, "tokenizer.chat_template")).render(
        messages=[{"role": "user", "content": prompt}], add_generation_prompt=True, bos_token=bos,
        eos_token=token_text("tokenizer.ggml.eos_token_id"))
    return text[len(bos):] if bos and text.startswith(bos) else text


@pytest.fixture(scope="session")
def smollm2_cpu(smollm2_gguf):
    """SmolLM2 on the CPU engine (int8 weights, the harness's default), loaded once for the session."""
    import edgellm

    with edgellm.load(smollm2_gguf, device="cpu", max_context=512) as gen:
        yield gen


@pytest.fixture(scope="session")
def chat_text():
    """render_chat(path, prompt) -> the text an engine receives for a chat prompt."""
    return render_chat


def write_tiny_synthetic(path: Path, quant: str = "Q8_0", **shape) -> Path:
    """A one-block synthetic llama (random weights; a vocabulary of 512: the byte tokens and a few merges) in a shape
    the GPU kernels take unless `shape` overrides it (Preset fields, e.g. head_dim=256)."""
    import dataclasses

    from synthgguf import synthetic

    preset = dataclasses.replace(synthetic.Preset("llama", 512, 1, 8, 2, 512, 512, True, 0), **shape)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(synthetic.PRESETS, "tiny-test", preset)
        synthetic.write_synthetic("tiny-test", path, quant=quant)
    return path


@pytest.fixture(scope="session")
def tiny_synthetic():
    """write_tiny_synthetic(path, quant="Q8_0", **shape) -> path."""
    return write_tiny_synthetic
