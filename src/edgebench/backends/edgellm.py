"""EdgeLLM, our engine, in-process through `edgellm.load`: it reads the very GGUF file the other engines run.

This adapter is the only place where the harness meets the engine: the engine's errors become one-line
EdgebenchErrors (a model it does not implement: ModelNotSupportedError, recorded as not measured), and the
compiled CUDA kernels, when a job runs on a GPU, arrive as the `library` option from the pipeline's build step.
"""

from __future__ import annotations

import codecs
from typing import Generator, Literal, Optional

from .. import EdgebenchError
from .base import Backend, BuildStep, Completion, GenerationSettings, ModelNotSupportedError, ModelRef, Token


def import_edgellm():
    try:
        import edgellm
        import edgellm.errors
    except ImportError as exc:
        raise EdgebenchError(f"the edgellm backend needs the edgellm package ({exc})") from None
    return edgellm


class EdgeLLMBackend(Backend):
    name = "edgellm"
    # kernels/Makefile builds the engine's CUDA library (and the kernels' own test and benchmark binaries).
    build_step = BuildStep(rule="compile_kernels", sources="kernels",
                           products=("libedgellm.so", "attention_accuracy", "attention_bench", "gemm_accuracy",
                                     "prefill_accuracy"),
                           option_products=(("library", "libedgellm.so"),))

    def __init__(self, device: Literal["auto", "cpu", "cuda"] = "auto", quantized: bool = True,
                 library: Optional[str] = None):
        """device: where it runs (auto: the GPU when the engine finds one and its kernels, else the CPU);
        quantized: int8 weights (the GGUF's blocks repacked) or float32; library: the compiled CUDA kernels (on a
        GPU job, the pipeline's build); given with device auto, the job runs on the GPU, never silently on the CPU."""
        if device not in ("auto", "cpu", "cuda"):
            raise EdgebenchError(f"the edgellm backend's device must be auto, cpu or cuda, not {device!r}")
        self.requested_device = "cuda" if (library and device == "auto") else device
        self.quantized = quantized
        self.library = library
        self.engine = None

    @classmethod
    def needs_build(cls, options: dict, on_gpu: bool) -> bool:
        device = options.get("device", "auto")
        return device == "cuda" or (device == "auto" and on_gpu)

    def load(self, model: ModelRef, settings: GenerationSettings) -> None:
        if model.gguf_path is None:
            raise EdgebenchError(f"the edgellm backend needs a GGUF file for model {model.name!r}")
        edgellm = import_edgellm()
        errors = edgellm.errors
        try:
            self.engine = edgellm.load(str(model.gguf_path), device=self.requested_device,
                                       max_context=settings.num_ctx, threads=settings.threads,
                                       quantized=self.quantized, library=self.library)
        except errors.UnsupportedModelError as exc:
            raise ModelNotSupportedError(f"EdgeLLM does not run {model.name}: {exc}") from None
        except errors.EdgeLLMError as exc:
            raise EdgebenchError(f"EdgeLLM could not load {model.gguf_path}: {exc}") from None

    def generate(self, prompt: str, settings: GenerationSettings) -> Generator[Token, None, Completion]:
        if settings.temperature != 0:
            raise EdgebenchError("the edgellm backend decodes greedily; set temperature 0")
        engine = self.engine
        errors = import_edgellm().errors
        tokens = engine.tokenizer.encode(prompt)
        if len(tokens) + settings.max_new_tokens > engine.max_context:
            raise EdgebenchError(f"prompt ({len(tokens)} tokens) + {settings.max_new_tokens} new tokens exceed "
                                 f"the context of {engine.max_context}")
        decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a token may end inside a UTF-8 character
        n = 0
        try:
            # The engine never yields its end-of-generation token: every token it yields counts, on every device.
            for token in engine.generate(tokens, settings.max_new_tokens, ignore_eos=settings.ignore_eos):
                n += 1
                yield Token(decoder.decode(engine.tokenizer.decode_bytes([token])), int(token))
        except errors.EdgeLLMError as exc:
            raise EdgebenchError(f"EdgeLLM failed during generation: {exc}") from None
        reason = "length" if n >= settings.max_new_tokens else "stop"
        return Completion(prompt_tokens=len(tokens), generated_tokens=n, done_reason=reason)

    def unload(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.engine = None

    def versions(self) -> dict:
        edgellm = import_edgellm()
        return {"engine_name": "edgellm", "engine_version": f"edgellm {edgellm.__version__}",
                "engine_build": self.engine.build_info() if self.engine is not None else None}

    def device(self) -> str:
        return self.engine.device if self.engine is not None else "cpu"
