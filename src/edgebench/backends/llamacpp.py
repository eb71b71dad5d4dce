"""llama.cpp embedded in-process through llama-cpp-python: the engine inside Ollama, without the server around it.

All layers go to the GPU when the build supports one; on a CPU the thread count is set explicitly (the library's
default is half the cores). Greedy decoding; the end-of-sequence token stops the run unless `ignore_eos` is set,
which llama.cpp allows (fixed-length decoding) and Ollama does not.
"""

from __future__ import annotations

import contextlib
import os
from typing import Generator, Optional

import psutil

from .. import EdgebenchError
from .base import Backend, Completion, GenerationSettings, ModelRef, Token


def import_llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise EdgebenchError("the llamacpp backend needs llama-cpp-python: pip install -e '.[llamacpp]' "
                             "(see the README's set-up)") from None
    return llama_cpp


def default_threads() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


@contextlib.contextmanager
def quiet_stderr():
    """llama.cpp logs model loading to fd 2 even with verbose=False; keep the terminal for the progress bar."""
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class LlamaCppBackend(Backend):
    name = "llamacpp"

    def __init__(self, n_gpu_layers: Optional[int] = None, flash_attn: Optional[bool] = None,
                 logits_all: bool = False):
        self.lib = import_llama_cpp()
        self.gpu = bool(self.lib.llama_supports_gpu_offload())
        self.n_gpu_layers = (-1 if self.gpu else 0) if n_gpu_layers is None else n_gpu_layers
        self.flash_attn = self.gpu if flash_attn is None else flash_attn
        self.logits_all = logits_all
        self.llm = None

    def load(self, model: ModelRef, settings: GenerationSettings) -> None:
        if model.gguf_path is None:
            raise EdgebenchError(f"the llamacpp backend needs a GGUF file for model {model.name!r}")
        if not os.path.isfile(model.gguf_path):
            raise EdgebenchError(f"GGUF file not found: {model.gguf_path}")
        threads = settings.threads or default_threads()
        try:
            with quiet_stderr():
                self.llm = self.lib.Llama(
                    model_path=str(model.gguf_path), n_gpu_layers=self.n_gpu_layers, n_ctx=settings.num_ctx,
                    n_batch=min(512, settings.num_ctx), n_threads=threads, n_threads_batch=threads,
                    seed=settings.seed, flash_attn=self.flash_attn, logits_all=self.logits_all, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise EdgebenchError(f"llama.cpp could not load {model.gguf_path}: {exc}") from None
        self.threads = threads

    def tokenize(self, text: str) -> list[int]:
        """As llama.cpp tokenizes a prompt: BOS only where the GGUF asks for it, special tokens recognised."""
        add_bos = self.llm._model.add_bos_token() if hasattr(self.llm._model, "add_bos_token") else True
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def generate(self, prompt: str, settings: GenerationSettings) -> Generator[Token, None, Completion]:
        llm = self.llm
        tokens = self.tokenize(prompt)
        if len(tokens) + settings.max_new_tokens > settings.num_ctx:
            raise EdgebenchError(f"prompt ({len(tokens)} tokens) + {settings.max_new_tokens} new tokens exceed "
                                 f"the context of {settings.num_ctx}")
        # Without a reset, llama-cpp-python reuses the KV cache of a previous run's common prefix and the prompt
        # would not be processed again: every run must do the same work.
        llm.reset()
        ctx = llm._ctx.ctx
        self.lib.llama_perf_context_reset(ctx)
        vocab = self.lib.llama_model_get_vocab(llm._model.model)
        n = 0
        done_reason = "length"
        for tok in llm.generate(tokens, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
            if not settings.ignore_eos and self.lib.llama_vocab_is_eog(vocab, tok):
                done_reason = "stop"
                break
            n += 1
            yield Token(llm.detokenize([tok]).decode("utf-8", "replace"), tok)
            if n >= settings.max_new_tokens:
                break
        perf = self.lib.llama_perf_context(ctx)
        engine = {
            "engine_prompt_eval_count": int(perf.n_p_eval),
            "engine_prompt_eval_duration": int(perf.t_p_eval_ms * 1e6),
            "engine_eval_count": int(perf.n_eval),
            "engine_eval_duration": int(perf.t_eval_ms * 1e6),
        }
        return Completion(prompt_tokens=len(tokens), generated_tokens=n, done_reason=done_reason, engine=engine)

    def logits(self, token_ids: list[int]):
        """Teacher-forced logits of every position, shape [len(token_ids), vocab] (needs logits_all=True)."""
        import numpy as np

        if not self.logits_all:
            raise EdgebenchError("create the backend with logits_all=True to read every position's logits")
        self.llm.reset()
        self.llm.eval(token_ids)
        return np.array(self.llm.scores[: len(token_ids)], dtype=np.float32)

    def unload(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None

    def versions(self) -> dict:
        info = self.lib.llama_print_system_info()
        return {"engine_name": "llama.cpp", "engine_version": f"llama-cpp-python {self.lib.__version__}",
                "engine_build": info.decode() if isinstance(info, bytes) else str(info)}

    def device(self) -> str:
        return "cuda" if self.gpu and self.n_gpu_layers != 0 else "cpu"
