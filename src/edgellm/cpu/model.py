"""The transformer forward pass on the CPU, one step after another (after llama2.c's `forward`).

Three plain structures: the Config (edgellm.gguf), the Weights (edgellm.cpu.weights) and the RunState below
(the KV cache and scratch).
`forward` processes any number of new tokens at once: the whole prompt in prefill, one token in decode.
"""

from __future__ import annotations

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
    scale = np.float32(cfg.scale)
    attn_softcap = np.float32(cfg.attn_softcap)
    positions = np.arange(start, start + T)
    factors = w.rope_factors_for(cfg, state.capacity)
    rope = K.rope_tables(positions, D, cfg.rope_base, factors, cfg.rope_attn_factor)
    # local (sliding-window) layers may rotate with a base of their own (gemma3)
    rope_local = rope if not cfg.rope_base_local else \
        K.rope_tables(positions, D, cfg.rope_base_local, factors, cfg.rope_attn_factor)
    neox = cfg.rope_style == "neox"
    activation = K.geglu if cfg.activation == "gelu_tanh" else K.swiglu

    # 1. token embeddings (gemma scales them by sqrt(dim))
    x = embed(w.token_embd, tokens)                                  # [T, dim]
    if cfg.embedding_scale != 1.0:
        x *= np.float32(cfg.embedding_scale)
    h = np.empty_like(x)
    att = np.empty((T, H, D), np.float32)
    ffn = np.empty((T, cfg.hidden_dim), np.float32)

    for layer, lw in enumerate(w.layers):
        local = cfg.is_local_layer(layer)
        cos, sin = rope_local if local else rope
        # 2. attention: norm, one stacked QKV projection (+ qwen2's biases; gemma3 norms each head), RoPE on q and k
        K.rmsnorm(x, lw.attn_norm, cfg.norm_eps, h)
        qkv = linear_stacked(h, lw.wqkv)
        if lw.bqkv is not None:
            qkv += lw.bqkv
        q = np.ascontiguousarray(qkv[:, :q_end]).reshape(T, H, D)
        k = np.ascontiguousarray(qkv[:, q_end:k_end]).reshape(T, Hkv, D)
        v = qkv[:, k_end:].reshape(T, Hkv, D)
        if lw.q_norm is not None:
            K.rmsnorm(q.reshape(T * H, D), lw.q_norm, cfg.norm_eps, q.reshape(T * H, D))
            K.rmsnorm(k.reshape(T * Hkv, D), lw.k_norm, cfg.norm_eps, k.reshape(T * Hkv, D))
        K.apply_rope(q, cos, sin, neox)
        K.apply_rope(k, cos, sin, neox)
        # 3. append k, v to the cache, then FlashAttention-2 style attention over everything cached so far (only the
        # last `sliding_window` positions in a local layer)
        state.k_cache[layer, start:start + T] = k
        state.v_cache[layer, start:start + T] = v
        window = cfg.sliding_window if local else 0
        K.flash_attention(q, state.k_cache[layer, :start + T], state.v_cache[layer, :start + T], start, scale, att,
                          window, attn_softcap)
        # 4. output projection (gemma: normed) and residual
        o = linear(att.reshape(T, H * D), lw.wo)
        if lw.post_attn_norm is not None:
            K.rmsnorm(o, lw.post_attn_norm, cfg.norm_eps, o)
        x += o
        # 5. SwiGLU or GeGLU feed-forward (gemma: normed) and residual
        K.rmsnorm(x, lw.ffn_norm, cfg.norm_eps, h)
        activation(linear_stacked(h, lw.w_gate_up), cfg.hidden_dim, ffn)
        f = linear(ffn, lw.w_down)
        if lw.post_ffn_norm is not None:
            K.rmsnorm(f, lw.post_ffn_norm, cfg.norm_eps, f)
        x += f

    state.pos = start + T
    # 6. final norm, the LM head (gemma2: soft-capped logits)
    if not all_logits:
        x = x[-1:]
        h = h[-1:]
    K.rmsnorm(x, w.output_norm, cfg.norm_eps, h)
    logits = linear(h, w.output)
    if cfg.final_softcap:
        cap = np.float32(cfg.final_softcap)
        logits = cap * np.tanh(logits / cap)
    return logits
