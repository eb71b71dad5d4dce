"""The transformer forward pass on the CPU, one step after another (after llama2.c's `forward`).

Three plain structures: the Config (edgellm.gguf), the Weights (edgellm.cpu.weights) and the RunState below
(the KV cache and scratch).
`forward` processes any number of new tokens at once: the whole prompt in prefill, one token in decode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ContextLengthError
from ..gguf.config import Config
from . import kernels as K
from .quant import QTensor, linear_q
from .weights import Matrix, Weights


@dataclass
class RunState:
    k_cache: np.ndarray  # [layers, max_seq, Hkv, D]
    v_cache: np.ndarray
    pos: int = 0         # tokens already in the cache

    @classmethod
    def allocate(cls, cfg: Config, max_seq: int) -> "RunState":
        shape = (cfg.n_layers, max_seq, cfg.n_kv_heads, cfg.head_dim)
        return cls(np.zeros(shape, np.float32), np.zeros(shape, np.float32))

    @property
    def capacity(self) -> int:
        return self.k_cache.shape[1]


def linear(x: np.ndarray, w: Matrix) -> np.ndarray:
    """x @ w.T. Quantized weights: their int8 repacking times float32 activations (edgellm.cpu.quant). float32 weights:
    one token through numba's parallel matrix-vector kernel, several through BLAS."""
    if isinstance(w, QTensor):
        return linear_q(x, w)
    if x.shape[0] == 1:
        out = np.empty((1, w.shape[0]), np.float32)
        K.matvec(w, x[0], out[0])
        return out
    return x @ w.T


def linear_stacked(x: np.ndarray, parts: list[Matrix]) -> np.ndarray:
    return linear(x, parts[0]) if len(parts) == 1 else np.concatenate([linear(x, w) for w in parts], axis=1)


def embed(table: Matrix, tokens: np.ndarray) -> np.ndarray:
    if isinstance(table, QTensor):
        r, c = len(tokens), table.q.shape[1]
        q = table.q[tokens].reshape(r, -1, table.block).astype(np.float32)
        return (table.d[tokens][:, :, None] * q + table.m[tokens][:, :, None]).reshape(r, c)
    return table[tokens].astype(np.float32)


def forward(cfg: Config, w: Weights, state: RunState, tokens: np.ndarray, all_logits: bool = True) -> np.ndarray:
    """Run `tokens` (at positions state.pos, state.pos+1, ...) through the model and append them to the cache.
    Returns logits [T, vocab], or [1, vocab] for the last position only when all_logits is False."""
    T = len(tokens)
    start = state.pos
    if start + T > state.capacity:
        raise ContextLengthError(f"the KV cache holds {state.capacity} tokens; {start + T} were asked for")
    H, Hkv, D = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    q_end, k_end = H * D, H * D + Hkv * D
    scale = np.float32(1.0 / math.sqrt(D))
    cos, sin = K.rope_tables(np.arange(start, start + T), D, cfg.rope_base, w.rope_freq_factors)
    neox = cfg.rope_style == "neox"

    # 1. token embeddings
    x = embed(w.token_embd, tokens)                                  # [T, dim]
    h = np.empty_like(x)
    att = np.empty((T, H, D), np.float32)
    ffn = np.empty((T, cfg.hidden_dim), np.float32)

    for layer, lw in enumerate(w.layers):
        # 2. attention: norm, one stacked QKV projection (+ qwen2's biases), RoPE on q and k
        K.rmsnorm(x, lw.attn_norm, cfg.norm_eps, h)
        qkv = linear_stacked(h, lw.wqkv)
        if lw.bqkv is not None:
            qkv += lw.bqkv
        q = np.ascontiguousarray(qkv[:, :q_end]).reshape(T, H, D)
        k = np.ascontiguousarray(qkv[:, q_end:k_end]).reshape(T, Hkv, D)
        v = qkv[:, k_end:].reshape(T, Hkv, D)
        K.apply_rope(q, cos, sin, neox)
        K.apply_rope(k, cos, sin, neox)
        # 3. append k, v to the cache, then FlashAttention-2 style attention over everything cached so far
        state.k_cache[layer, start:start + T] = k
        state.v_cache[layer, start:start + T] = v
        K.flash_attention(q, state.k_cache[layer, :start + T], state.v_cache[layer, :start + T], start, scale, att)
        # 4. output projection and residual
        x += linear(att.reshape(T, H * D), lw.wo)
        # 5. SwiGLU feed-forward and residual
        K.rmsnorm(x, lw.ffn_norm, cfg.norm_eps, h)
        K.swiglu(linear_stacked(h, lw.w_gate_up), cfg.hidden_dim, ffn)
        x += linear(ffn, lw.w_down)

    state.pos = start + T
    # 6. final norm and the LM head
    if not all_logits:
        x = x[-1:]
        h = h[-1:]
    K.rmsnorm(x, w.output_norm, cfg.norm_eps, h)
    return linear(h, w.output)
