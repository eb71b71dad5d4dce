"""The CPU engine: the forward pass of edgellm.cpu.model over one KV cache, greedy choice with numpy's argmax.

It knows nothing of tokenizers or end-of-generation tokens: `greedy` is the raw chain of argmax choices, and
edgellm.Generator adds the stopping rule that is the same on every device.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from ..gguf.config import Config
from . import kernels
from .model import RunState, forward
from .weights import Weights, read_weights


class CpuEngine:
    device = "cpu"

    def __init__(self, config: Config, weights: Weights, max_context: int):
        self.config, self.weights, self.max_context = config, weights, max_context
        self.state = RunState.allocate(config, max_context)

    @classmethod
    def from_reader(cls, reader, config: Config, max_context: int, threads: Optional[int] = None,
                    quantized: bool = True) -> "CpuEngine":
        """quantized=True (default) keeps the GGUF's blocks losslessly repacked to int8 weights with float32 scales:
        about 1.25 bytes per weight instead of 4, so less memory traffic per token (the faster path) and large models
        fit in memory. quantized=False dequantizes every matrix to float32 (the plain reference path). Both compute
        with float32 activations. threads: numba's thread count (default: every core numba found)."""
        weights = read_weights(reader, config, quantized)
        kernels.set_threads(threads)
        return cls(config, weights, max_context)

    def logits(self, token_ids: list[int]) -> np.ndarray:
        """Teacher-forced logits of every position, [len(token_ids), vocab], from an empty cache."""
        self.state.pos = 0
        return forward(self.config, self.weights, self.state, np.asarray(token_ids, dtype=np.int64))

    def greedy(self, prompt_ids: list[int], max_new_tokens: int) -> Iterator[int]:
        """Prefill the prompt at once, then decode one token at a time; yields each argmax as it is chosen. A token
        is fed back only when the next one is asked for, so a caller that stops early leaves no step unused."""
        self.state.pos = 0
        logits = forward(self.config, self.weights, self.state, np.asarray(prompt_ids, dtype=np.int64),
                         all_logits=False)
        for i in range(max_new_tokens):
            token = int(np.argmax(logits[-1]))
            yield token
            if i + 1 < max_new_tokens:
                logits = forward(self.config, self.weights, self.state, np.array([token], dtype=np.int64),
                                 all_logits=False)

    def build_info(self) -> str:
        import numba

        weights = "int8 (repacked GGUF blocks)" if self.weights.quantized else "float32 (dequantized)"
        return f"cpu numba {numba.__version__}, {numba.get_num_threads()} threads, {weights}"

    def close(self) -> None:
        """Drops the weights and the cache (the memory returns when nothing else holds them)."""
        self.weights = self.state = None
