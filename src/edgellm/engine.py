"""EdgeLLM's Python API: load a GGUF, read teacher-forced logits, generate greedily token by token."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from . import cpu_kernels
from .errors import UnsupportedModelError
from .gguf_loader import open_gguf, read_config, read_weights
from .model import RunState, forward
from .tokenizer import Tokenizer


class Engine:
    def __init__(self, config, weights, tokenizer: Tokenizer, device: str, path: Path, max_context: int):
        self.config, self.weights, self.tokenizer = config, weights, tokenizer
        self.device, self.path, self.max_context = device, path, max_context
        self.state = RunState.allocate(config, max_context)

    @classmethod
    def from_gguf(cls, path: str | os.PathLike, device: str = "cpu", max_context: int = 2048,
                  threads: Optional[int] = None, quantized: bool = True) -> "Engine":
        """quantized=True (default) keeps the GGUF's blocks losslessly repacked to int8 weights with float32 scales:
        about 1.25 bytes per weight instead of 4, so less memory traffic per token (the faster path) and large models
        fit in memory. quantized=False dequantizes every matrix to float32 (the plain reference path). Both compute
        with float32 activations."""
        if device != "cpu":
            raise UnsupportedModelError(f"device {device!r}: this engine runs on the CPU; the GPU engine is "
                                        f"edgellm.cuda_engine.CudaGenerator")
        reader = open_gguf(path)
        config = read_config(reader)
        tokenizer = Tokenizer.from_gguf(reader)
        weights = read_weights(reader, config, quantized)
        cpu_kernels.set_threads(threads)
        return cls(config, weights, tokenizer, device, Path(path), min(max_context, config.context_length))

    def reset(self) -> None:
        self.state.pos = 0

    def logits(self, token_ids) -> np.ndarray:
        """Teacher-forced logits of every position, [len(token_ids), vocab], from an empty cache."""
        self.reset()
        return forward(self.config, self.weights, self.state, np.asarray(token_ids, dtype=np.int64))

    def generate(self, token_ids, max_new_tokens: int, ignore_eos: bool = False) -> Iterator[int]:
        """Prefill the prompt at once, then greedy-decode one token at a time; yields each token as it is chosen.
        Stops at an end-of-generation token unless ignore_eos."""
        self.reset()
        if len(token_ids) + max_new_tokens > self.max_context:
            raise ValueError(f"{len(token_ids)} prompt + {max_new_tokens} new tokens exceed the context of "
                             f"{self.max_context}")
        logits = forward(self.config, self.weights, self.state, np.asarray(token_ids, dtype=np.int64),
                         all_logits=False)
        for _ in range(max_new_tokens):
            token = int(np.argmax(logits[-1]))
            if not ignore_eos and self.tokenizer.is_eog(token):
                return
            yield token
            logits = forward(self.config, self.weights, self.state, np.array([token], dtype=np.int64),
                             all_logits=False)
