"""The CPU engine: the forward pass of edgellm.cpu.model over one KV cache, greedy choice with numpy's argmax.

It knows nothing of tokenizers or end-of-generation tokens: `greedy` is the raw chain of argmax choices, and
edgellm.Generator adds the stopping rule that is the same on every device.

Nothing is compiled or allocated inside a generation: the kernels come from numba's on-disk cache (or are compiled
once), the work buffers are the RunState's, and the constructor's warm-up runs every code path once (a prefill
tile and a decode step) before the first request.
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from ..gguf.config import Config
from . import kernels, vnni
from .model import RunState, forward
from .weights import Weights, read_weights


class CpuEngine:
    device = "cpu"

    def __init__(self, config: Config, weights: Weights, max_context: int, threads: Optional[int] = None):
        self.config, self.weights, self.max_context = config, weights, max_context
        self.threads = threads
        self.state = RunState.allocate(config, weights, max_context)
        self.warm_up()

    def warm_up(self) -> None:
        """Every kernel in every shape a request uses, once: a two-token prefill (the batched path) with its last
        logits, then a decode step (on the pool of threads and with one region per phase); teacher-forced logits of
        two tokens. The cache is left empty."""
        threads = kernels.set_threads(self.threads)
        if self.max_context >= 3:
            self.state.pos = 0
            forward(self.config, self.weights, self.state, np.zeros(2, np.int64), all_logits=False)
            forward(self.config, self.weights, self.state, np.zeros(1, np.int64), all_logits=False)
            fused = self.state.fused
            if fused is not None and fused.pooled and threads >= fused.pool_from_threads and self.max_context >= 4:
                # the step with one region per phase too: a pool that cannot start falls back to it mid-generation
                fused.pooled = False
                forward(self.config, self.weights, self.state, np.zeros(1, np.int64), all_logits=False)
                fused.pooled = True
        if self.max_context >= 2:
            self.logits([0, 0])
        self.state.pos = 0

    @classmethod
    def from_reader(cls, reader, config: Config, max_context: int, threads: Optional[int] = None,
                    quantized: bool = True) -> "CpuEngine":
        """quantized=True (default) keeps the GGUF's blocks losslessly repacked to int8 weights with float32 scales:
        about 1.25 bytes per weight instead of 4, so less memory traffic per token (the faster path) and large models
        fit in memory; their products take 16-bit integer activations as two int8 digits (edgellm.cpu.int8_matmul).
        quantized=False dequantizes every matrix to float32 and keeps float32 activations (the reference path).
        threads: numba's thread count (default: every core numba found), set again at every call because numba
        keeps it per calling thread."""
        weights = read_weights(reader, config, quantized)
        return cls(config, weights, max_context, threads)

    def logits(self, token_ids: list[int]) -> np.ndarray:
        """Teacher-forced logits of every position, [len(token_ids), vocab], from an empty cache."""
        kernels.set_threads(self.threads)
        self.state.pos = 0
        return forward(self.config, self.weights, self.state, np.asarray(token_ids, dtype=np.int64))

    def greedy(self, prompt_ids: list[int], max_new_tokens: int) -> Iterator[int]:
        """Prefill the prompt at once, then decode one token at a time; yields each argmax as it is chosen. A token
        is fed back only when the next one is asked for, so a caller that stops early leaves no step unused."""
        kernels.set_threads(self.threads)
        self.state.pos = 0
        logits = forward(self.config, self.weights, self.state, np.asarray(prompt_ids, dtype=np.int64),
                         all_logits=False)
        step = np.zeros(1, np.int64)
        for i in range(max_new_tokens):
            token = int(np.argmax(logits[-1]))
            yield token
            if i + 1 < max_new_tokens:
                kernels.set_threads(self.threads)  # the consumer may resume this generator on another thread
                step[0] = token
                logits = forward(self.config, self.weights, self.state, step, all_logits=False)

    def build_info(self) -> str:
        import numba

        weights = (f"int8 weights x 16-bit activations ({'AVX-512 VNNI' if vnni.AVAILABLE else 'portable'} integer "
                   f"dot products)") if self.weights.quantized else "float32 (dequantized)"
        return f"cpu numba {numba.__version__}, {numba.get_num_threads()} threads, {weights}"

    def close(self) -> None:
        """Drops the weights and the cache (the memory returns when nothing else holds them)."""
        self.weights = self.state = None
