"""EdgeLLM, our engine, in-process: it reads the very GGUF file the other engines run."""

from __future__ import annotations

import codecs
from typing import Generator

from .. import EdgebenchError
from .base import Backend, Completion, GenerationSettings, ModelRef, Token


class EdgeLLMBackend(Backend):
    name = "edgellm"

    def __init__(self, device: str = "auto", quantized: bool = True):
        self.requested_device = device
        self.quantized = quantized
        self.engine = None

    def load(self, model: ModelRef, settings: GenerationSettings) -> None:
        if model.gguf_path is None:
            raise EdgebenchError(f"the edgellm backend needs a GGUF file for model {model.name!r}")
        device = resolve_device(self.requested_device)
        if device == "cuda":
            from edgellm.cuda_engine import CudaGenerator

            self.engine = CudaGenerator.from_gguf(model.gguf_path, max_context=settings.num_ctx)
            return
        from edgellm.engine import Engine

        self.engine = Engine.from_gguf(model.gguf_path, device=device, max_context=settings.num_ctx,
                                       threads=settings.threads, quantized=self.quantized)

    def generate(self, prompt: str, settings: GenerationSettings) -> Generator[Token, None, Completion]:
        if settings.temperature != 0:
            raise EdgebenchError("the edgellm backend decodes greedily; set temperature 0")
        engine = self.engine
        tokens = engine.tokenizer.encode(prompt)
        if len(tokens) + settings.max_new_tokens > engine.max_context:
            raise EdgebenchError(f"prompt ({len(tokens)} tokens) + {settings.max_new_tokens} new tokens exceed "
                                 f"the context of {engine.max_context}")
        decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a token may end inside a UTF-8 character
        n = 0
        for token in engine.generate(tokens, settings.max_new_tokens, ignore_eos=settings.ignore_eos):
            n += 1
            yield Token(decoder.decode(engine.tokenizer.decode_bytes([token])), token)
        reason = "length" if n >= settings.max_new_tokens else "stop"
        return Completion(prompt_tokens=len(tokens), generated_tokens=n, done_reason=reason)

    def unload(self) -> None:
        if self.engine is not None and hasattr(self.engine, "close"):
            self.engine.close()
        self.engine = None

    def versions(self) -> dict:
        import edgellm

        version = {"engine_name": "edgellm", "engine_version": f"edgellm {edgellm.__version__}"}
        if self.device() == "cuda":
            return {**version, "engine_build": "cuda kernels (libedgellm), GGUF blocks as stored, CUDA graph"}
        import numba

        weights = "int8 (repacked GGUF blocks)" if self.quantized else "float32 (dequantized)"
        return {**version,
                "engine_build": f"cpu numba {numba.__version__}, {numba.get_num_threads()} threads, {weights}"}

    def device(self) -> str:
        return self.engine.device if self.engine is not None else "cpu"


def resolve_device(requested: str) -> str:
    """auto: the GPU when one is present and the CUDA kernels are built, else the CPU."""
    if requested != "auto":
        return requested
    from edgellm.cuda_attention import library_path

    from ..monitor import gpu_identity

    return "cuda" if gpu_identity().get("gpu_name") and library_path().is_file() else "cpu"
