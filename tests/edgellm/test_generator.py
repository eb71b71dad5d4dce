"""The rules edgellm.Generator keeps once for every device (the stop at an end-of-generation token, the context
check before any device work, closing), and how load() picks a device and finds the kernel library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgellm
from edgellm.errors import ContextLengthError, EdgeLLMError

EOS = 2


class Tokenizer:
    def is_eog(self, token: int) -> bool:
        return token == EOS


class ScriptedEngine:
    """A device engine whose greedy chain is a fixed script; it records how many choices were asked of it."""

    device = "fake"
    config = None
    max_context = 16

    def __init__(self, script):
        self.script, self.chosen, self.greedy_calls, self.closed = script, 0, 0, 0

    def greedy(self, prompt_ids, max_new_tokens):
        self.greedy_calls += 1
        for token in self.script[:max_new_tokens]:
            self.chosen += 1
            yield token

    def logits(self, token_ids):
        return np.zeros((len(token_ids), 4), np.float32)

    def build_info(self) -> str:
        return "scripted"

    def close(self) -> None:
        self.closed += 1


def generator(script) -> tuple[edgellm.Generator, ScriptedEngine]:
    engine = ScriptedEngine(script)
    return edgellm.Generator(engine, Tokenizer(), Path("fake.gguf")), engine


def test_an_end_of_generation_token_is_neither_yielded_nor_counted():
    gen, engine = generator([5, 6, EOS, 7, 8])
    assert list(gen.generate([1], 5)) == [5, 6]
    assert engine.chosen == 3  # nothing is asked of the device after the stop


def test_ignore_eos_yields_every_choice_up_to_the_limit():
    gen, _ = generator([5, 6, EOS, 7, 8])
    assert list(gen.generate([1], 4, ignore_eos=True)) == [5, 6, EOS, 7]


def test_a_prompt_beyond_the_context_is_refused_when_asked_before_any_device_work():
    gen, engine = generator([5] * 16)
    with pytest.raises(ContextLengthError, match=r"prompt \(10 tokens\) \+ 7 new tokens exceed the context of 16"):
        gen.generate(list(range(10)), 7)  # raises at the call, not at the first next()
    with pytest.raises(ContextLengthError):
        gen.logits(list(range(17)))
    with pytest.raises(EdgeLLMError, match="empty prompt"):
        gen.generate([], 3)
    assert engine.greedy_calls == 0
    assert list(gen.generate(list(range(10)), 6, ignore_eos=True)) == [5] * 6  # exactly full is allowed
    assert list(gen.generate([1], 0)) == []


def test_errors_derive_from_one_base():
    for cls in (edgellm.UnsupportedModelError, edgellm.ModelFileError, edgellm.KernelError,
                edgellm.ContextLengthError):
        assert issubclass(cls, edgellm.EdgeLLMError)


def test_close_is_idempotent_and_a_context_manager():
    gen, engine = generator([5])
    with gen as same:
        assert same is gen and gen.build_info() == "scripted"
    gen.close()
    assert engine.closed == 1
    with pytest.raises(EdgeLLMError, match="closed"):
        gen.generate([1], 1)


def test_auto_is_the_cpu_without_a_cuda_device_or_without_the_library(monkeypatch, tmp_path):
    from edgellm.cuda import library
    from edgellm.loader import resolve_device

    built = tmp_path / "libedgellm.so"
    built.write_bytes(b"")
    monkeypatch.setattr(library, "device_count", lambda: 0)
    assert resolve_device("auto", built) == "cpu"
    monkeypatch.setattr(library, "device_count", lambda: 1)
    assert resolve_device("auto", built) == "cuda"
    assert resolve_device("auto", tmp_path / "absent.so") == "cpu"
    assert resolve_device("cuda", tmp_path / "absent.so") == "cuda"  # asked for: the GPU engine says what is missing
    with pytest.raises(EdgeLLMError, match="device 'gpu': choose one of auto, cpu, cuda"):
        resolve_device("gpu")


def test_the_library_is_found_by_argument_then_environment_then_package_then_checkout(monkeypatch, tmp_path):
    from edgellm.cuda import library

    packaged, checkout = tmp_path / "pkg" / "libedgellm.so", tmp_path / "build" / "libedgellm.so"
    monkeypatch.setattr(library, "PACKAGED", packaged)
    monkeypatch.setattr(library, "CHECKOUT_BUILD", checkout)
    monkeypatch.delenv("EDGELLM_LIB", raising=False)
    assert library.library_path() == checkout  # nothing built: where a build is expected
    checkout.parent.mkdir()
    checkout.write_bytes(b"")
    assert library.library_path() == checkout
    packaged.parent.mkdir()
    packaged.write_bytes(b"")
    assert library.library_path() == packaged
    monkeypatch.setenv("EDGELLM_LIB", str(tmp_path / "env.so"))
    assert library.library_path() == tmp_path / "env.so"
    assert library.library_path(tmp_path / "arg.so") == tmp_path / "arg.so"
    assert not edgellm.cuda.available(tmp_path / "arg.so")


def test_a_source_checkout_builds_into_build():
    from edgellm.cuda import library

    repo = Path(__file__).resolve().parents[2]
    assert library.CHECKOUT_BUILD == repo / "build" / "libedgellm.so"


def test_load_refuses_a_bad_device_or_context_in_one_line(tiny_gguf):
    with pytest.raises(EdgeLLMError, match="device 'tpu'"):
        edgellm.load(tiny_gguf, device="tpu")
    with pytest.raises(EdgeLLMError, match="max_context is 0"):
        edgellm.load(tiny_gguf, max_context=0)


def test_load_on_the_cpu_gives_the_generator_interface(tmp_path, tiny_synthetic):
    path = tiny_synthetic(tmp_path / "tiny.gguf")
    with edgellm.load(path, device="cpu", max_context=32, threads=1) as gen:
        assert isinstance(gen, edgellm.Generator) and gen.device == "cpu" and gen.max_context == 32
        assert gen.config.n_layers == 1
        assert gen.build_info().startswith("cpu numba ") and "int8" in gen.build_info()
        ids = gen.tokenizer.encode("Hello world")
        assert gen.logits(ids).shape == (len(ids), gen.config.vocab_size)
        assert len(list(gen.generate(ids, 5, ignore_eos=True))) == 5
        assert isinstance(gen.tokenizer.decode_bytes(ids), bytes)
