"""The edgellm backend against the engine's contract (`edgellm.load`), with a tiny stand-in engine: options reach
`load`, engine errors become one line, a model the engine does not run becomes "not measured"."""

import sys
import types

import pytest

from edgebench import EdgebenchError
from edgebench.backends import GenerationSettings, ModelNotSupportedError, ModelRef, create_backend
from edgebench.runner import run_benchmark


class EdgeLLMError(Exception):
    pass


class UnsupportedModelError(EdgeLLMError):
    pass


class ContextLengthError(EdgeLLMError):
    pass


class Tokenizer:
    def encode(self, text):
        return [ord(c) for c in text]

    def decode_bytes(self, ids):
        return "".join(chr(i) for i in ids).encode("utf-8")

    def is_eog(self, token):
        return token == 0


class Generator:
    """Yields a fixed reply, stopping early (without yielding its end token) unless ignore_eos."""
    def __init__(self, reply, device, max_context):
        self.reply, self.device, self.max_context = reply, device, max_context
        self.tokenizer = Tokenizer()
        self.closed = False

    def generate(self, prompt_ids, max_new_tokens, ignore_eos=False):
        for i, token in enumerate(self.reply if not ignore_eos else self.reply * max_new_tokens):
            if i >= max_new_tokens:
                return
            if token == "!":
                raise EdgeLLMError("kernel launch failed")
            yield ord(token)

    def build_info(self):
        return f"fake {self.device} build"

    def close(self):
        self.closed = True


@pytest.fixture
def engine(monkeypatch):
    """A stand-in `edgellm` package; `calls` records every load()."""
    calls = []
    fake = types.ModuleType("edgellm")
    fake.__version__ = "0.0-test"
    fake.errors = types.SimpleNamespace(EdgeLLMError=EdgeLLMError, UnsupportedModelError=UnsupportedModelError,
                                        ContextLengthError=ContextLengthError)

    def load(path, device="auto", max_context=2048, threads=None, quantized=True, library=None):
        calls.append(dict(path=path, device=device, max_context=max_context, threads=threads, quantized=quantized,
                          library=library))
        if "gemma" in path:
            raise UnsupportedModelError("architecture gemma2 is not implemented")
        if "broken" in path:
            raise EdgeLLMError("tensor blk.0.attn_q.weight is truncated")
        fake.last = Generator(fake.reply, "cuda" if device == "cuda" else "cpu", max_context)
        return fake.last

    fake.load, fake.calls, fake.reply = load, calls, "hi."
    monkeypatch.setitem(sys.modules, "edgellm", fake)
    monkeypatch.setitem(sys.modules, "edgellm.errors", fake.errors)
    return fake


def model(name="m"):
    return ModelRef(name=name, gguf_path=f"/models/{name}.gguf", info={})


def test_settings_and_options_reach_load_and_every_yielded_token_counts(engine):
    settings = GenerationSettings(max_new_tokens=8, num_ctx=512, threads=3)
    rows = run_benchmark(create_backend("edgellm", quantized=False), model(), {"p": "Hello"}, settings, 2, 0)
    assert engine.calls[0] == dict(path="/models/m.gguf", device="auto", max_context=512, threads=3, quantized=False,
                                   library=None)
    assert [r["generated_tokens"] for r in rows] == [3, 3] and rows[0]["done_reason"] == "stop"
    assert rows[0]["token_ids"] == [ord(c) for c in "hi."] and rows[0]["engine_build"] == "fake cpu build"
    assert engine.last.closed


def test_a_built_library_means_the_gpu(engine):
    backend = create_backend("edgellm", library="/build/libedgellm.so")
    backend.load(model(), GenerationSettings())
    assert engine.calls[0]["device"] == "cuda" and engine.calls[0]["library"] == "/build/libedgellm.so"
    assert backend.device() == "cuda"


def test_ignore_eos_decodes_exactly_max_new_tokens(engine):
    rows = run_benchmark(create_backend("edgellm"), model(), {"p": "Hello"},
                         GenerationSettings(max_new_tokens=7, ignore_eos=True), 1, 0)
    assert rows[0]["generated_tokens"] == 7 and rows[0]["done_reason"] == "length"


def test_an_unsupported_model_is_not_measured_and_other_engine_errors_are_one_line(engine):
    with pytest.raises(ModelNotSupportedError, match="EdgeLLM does not run gemma: architecture gemma2"):
        create_backend("edgellm").load(model("gemma"), GenerationSettings())
    with pytest.raises(EdgebenchError, match="EdgeLLM could not load /models/broken.gguf: tensor"):
        create_backend("edgellm").load(model("broken"), GenerationSettings())
    engine.reply = "ab!"
    backend = create_backend("edgellm")
    with pytest.raises(EdgebenchError, match="EdgeLLM failed during generation: kernel launch failed"):
        run_benchmark(backend, model(), {"p": "Hello"}, GenerationSettings(), 1, 0)
    assert engine.last.closed  # released even so


def test_a_prompt_beyond_the_context_is_one_line(engine):
    backend = create_backend("edgellm")
    backend.load(model(), GenerationSettings(num_ctx=16))
    with pytest.raises(EdgebenchError, match="exceed the context of 16"):
        list(backend.generate("a long prompt", GenerationSettings(max_new_tokens=8, num_ctx=16)))
