"""The one interface of the engine on every device: a tokenizer, a context, greedy generation, teacher-forced
logits. The device-specific part (edgellm.cpu.CpuEngine, edgellm.cuda.engine.CudaEngine) only chains greedy choices;
the rules that must not differ between devices live here once: the context check before any device work, and the
stop at an end-of-generation token, which is never yielded nor counted (unless ignore_eos)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from .errors import ContextLengthError, EdgeLLMError
from .gguf.config import Config
from .gguf.spm import SpmTokenizer
from .gguf.tokenizer import Tokenizer


class DeviceEngine(Protocol):
    """What a device contributes: the raw greedy chain and teacher-forced logits over its own KV cache."""

    device: str
    config: Config
    max_context: int

    def greedy(self, prompt_ids: list[int], max_new_tokens: int) -> Iterator[int]: ...

    def logits(self, token_ids: list[int]) -> np.ndarray: ...

    def build_info(self) -> str: ...

    def close(self) -> None: ...


class Generator:
    """A loaded model (edgellm.load). Also a context manager: leaving the `with` block closes it."""

    def __init__(self, engine: DeviceEngine, tokenizer: Tokenizer | SpmTokenizer, path: Path):
        self._engine: DeviceEngine | None = engine
        self.tokenizer = tokenizer
        self.path = path
        self.device: str = engine.device
        self.config: Config = engine.config
        self.max_context: int = engine.max_context

    def _open_engine(self) -> DeviceEngine:
        if self._engine is None:
            raise EdgeLLMError(f"the generator of {self.path.name} is closed")
        return self._engine

    def _check_room(self, n_prompt: int, max_new_tokens: int) -> None:
        if n_prompt == 0:
            raise EdgeLLMError("an empty prompt: generation starts from at least one token")
        if max_new_tokens < 0:
            raise EdgeLLMError(f"max_new_tokens is {max_new_tokens}; it cannot be negative")
        if n_prompt + max_new_tokens > self.max_context:
            raise ContextLengthError(f"prompt ({n_prompt} tokens) + {max_new_tokens} new tokens exceed the context "
                                     f"of {self.max_context}")

    def generate(self, prompt_ids, max_new_tokens: int, ignore_eos: bool = False) -> Iterator[int]:
        """Greedy tokens after the prompt, yielded as they are chosen. An end-of-generation token
        (tokenizer.is_eog) ends the generation and is neither yielded nor counted, unless ignore_eos. Bad arguments
        (an empty prompt, a prompt and max_new_tokens beyond max_context) raise here, before any device work."""
        prompt = [int(t) for t in prompt_ids]
        self._check_room(len(prompt), max_new_tokens)
        return self._generate(self._open_engine(), prompt, max_new_tokens, ignore_eos)

    def _generate(self, engine: DeviceEngine, prompt: list[int], max_new_tokens: int,
                  ignore_eos: bool) -> Iterator[int]:
        if max_new_tokens == 0:
            return
        chain = engine.greedy(prompt, max_new_tokens)
        try:
            for token in chain:
                if not ignore_eos and self.tokenizer.is_eog(token):
                    return
                yield token
        finally:
            chain.close()

    def logits(self, token_ids) -> np.ndarray:
        """Teacher-forced logits of every position, float32 [len(token_ids), vocab], from an empty cache."""
        ids = [int(t) for t in token_ids]
        self._check_room(len(ids), 0)
        return self._open_engine().logits(ids)

    def build_info(self) -> str:
        """What ran, in one line: the device, the kernels and the weights' form."""
        return self._open_engine().build_info()

    def close(self) -> None:
        """Releases the weights (and the GPU's memory). Closing twice is harmless."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    def __enter__(self) -> "Generator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._engine is None else self.device
        return f"<edgellm.Generator {self.path.name} ({state}, context {self.max_context})>"
