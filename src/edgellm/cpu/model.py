"""The transformer forward pass on the CPU, one step after another (after llama2.c's `forward`).

Three plain structures: the Config (edgellm.gguf), the Weights (edgellm.cpu.weights) and the RunState below
(the KV cache, the rope tables and every work buffer, allocated once per model).
`forward` processes any number of new tokens: the prompt in tiles of up to PREFILL_TILE tokens (each tile's matrix
products are matrix-matrix products over the tile), one token in decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import ContextLengthError
from ..gguf.config import Config
from . import decode_step
from . import kernels as K
from .int8_matmul import ActivationBuffers, PanelMatrix, dequantized_rows, padded_rows
from .weights import Matrix, Weights

# Prompt tokens per pass through the layers: a tile's integer activations (tile x widest input) stay in L2 while every
# 16-row panel of a weight matrix passes over them.
PREFILL_TILE = 64


def _width(parts: list[Matrix]) -> int:
    """Output columns of a (stacked) projection, each part padded to whole 16-row panels."""
    return sum(padded_rows(w) if isinstance(w, PanelMatrix) else w.shape[0] for w in parts)


@dataclass
class Buffers:
    """Activations of one tile of tokens; every matrix product writes into one of these."""
    x: np.ndarray          # [tile, dim] the residual stream
    h: np.ndarray          # [tile, dim] normed input of a block
    qkv: np.ndarray        # [tile, q + k + v (padded)]
    att: np.ndarray        # [tile, H, D]
    o: np.ndarray          # [tile, dim (padded)]
    gate_up: np.ndarray    # [tile, 2 * hidden (padded)]
    ffn: np.ndarray        # [tile, hidden]
    f: np.ndarray          # [tile, dim (padded)]
    logits: np.ndarray     # [1, vocab (padded)] of the last token
    acts: ActivationBuffers

    @classmethod
    def allocate(cls, cfg: Config, w: Weights, tile: int) -> "Buffers":
        widths = dict(qkv=max(_width(lw.wqkv) for lw in w.layers), o=max(_width([lw.wo]) for lw in w.layers),
                      gate_up=max(_width(lw.w_gate_up) for lw in w.layers),
                      f=max(_width([lw.w_down]) for lw in w.layers))
        f32 = np.float32
        widest_input = max(cfg.dim, cfg.n_heads * cfg.head_dim, cfg.hidden_dim)
        return cls(x=np.zeros((tile, cfg.dim), f32), h=np.zeros((tile, cfg.dim), f32),
                   qkv=np.zeros((tile, widths["qkv"]), f32), att=np.zeros((tile, cfg.n_heads, cfg.head_dim), f32),
                   o=np.zeros((tile, widths["o"]), f32), gate_up=np.zeros((tile, widths["gate_up"]), f32),
                   ffn=np.zeros((tile, cfg.hidden_dim), f32), f=np.zeros((tile, widths["f"]), f32),
                   logits=np.zeros((1, _width([w.output])), f32), acts=ActivationBuffers(tile, widest_input))


@dataclass
class RunState:
    k_cache: np.ndarray  # [layers, max_seq, Hkv, D]
    v_cache: np.ndarray
    rope: tuple          # cos, sin [max_seq, D/2] of every position
    rope_local: tuple    # the same for the local (sliding-window) layers
    buffers: Buffers
    pos: int = 0         # tokens already in the cache
    fused: Optional[decode_step.FusedDecode] = None  # a decode step's layers in one compiled call, where it applies

    @classmethod
    def allocate(cls, cfg: Config, w: Weights, max_seq: int) -> "RunState":
        shape = (cfg.n_layers, max_seq, cfg.n_kv_heads, cfg.head_dim)
        positions = np.arange(max_seq)
        factors = w.rope_factors_for(cfg, max_seq)
        rope = K.rope_tables(positions, cfg.head_dim, cfg.rope_base, factors, cfg.rope_attn_factor)
        # local (sliding-window) layers may rotate with a base of their own (gemma3)
        rope_local = rope if not cfg.rope_base_local else \
            K.rope_tables(positions, cfg.head_dim, cfg.rope_base_local, factors, cfg.rope_attn_factor)
        state = cls(np.zeros(shape, np.float32), np.zeros(shape, np.float32), rope, rope_local,
                    Buffers.allocate(cfg, w, min(PREFILL_TILE, max_seq)))
        state.fused = decode_step.plan(cfg, w, state)
        return state

    @property
    def capacity(self) -> int:
        return self.k_cache.shape[1]


def linear(x: np.ndarray, parts: list[Matrix], out: np.ndarray, acts: ActivationBuffers) -> np.ndarray:
    """x @ [parts].T into out, part after part; returns out's filled columns [T, sum of rows]. Quantized parts: x
    quantized to 16-bit integers once for all of them, integer products (edgellm.cpu.int8_matmul). float32 parts: one
    token through numba's parallel matrix-vector kernel, several through BLAS."""
    T = x.shape[0]
    if any(isinstance(w, PanelMatrix) for w in parts):
        acts.quantize(x)
    col = real = 0
    for w in parts:
        if isinstance(w, PanelMatrix):
            acts.matmul(w, out[:T, col:col + padded_rows(w)])
            rows = w.rows
        else:
            rows = w.shape[0]
            if T == 1:
                K.matvec(w, x[0], out[0, col:col + rows])
            else:
                np.matmul(x, w.T, out=out[:T, col:col + rows])
        if col != real:  # the previous part did not fill its last 16-row panel (tiny shapes only): close the gap
            out[:T, real:real + rows] = out[:T, col:col + rows].copy()
        col += _width([w])
        real += rows
    return out[:T, :real]


def embed(table: Matrix, tokens: np.ndarray, out: np.ndarray) -> None:
    if isinstance(table, PanelMatrix):
        out[:] = dequantized_rows(table, tokens)
    else:
        out[:] = table[tokens]


def forward(cfg: Config, w: Weights, state: RunState, tokens: np.ndarray, all_logits: bool = True) -> np.ndarray:
    """Run `tokens` (at positions state.pos, state.pos+1, ...) through the model and append them to the cache.
    Returns logits [T, vocab] (a new array), or [1, vocab] of the last position only when all_logits is False (a
    view of the state's buffer, valid until the next call)."""
    T = len(tokens)
    if state.pos + T > state.capacity:
        raise ContextLengthError(f"the KV cache holds {state.capacity} tokens; {state.pos + T} were asked for")
    tile = state.buffers.x.shape[0]
    result = np.empty((T, cfg.vocab_size), np.float32) if all_logits else None
    for first in range(0, T, tile):
        chunk = tokens[first:first + tile]
        mode = "all" if all_logits else ("last" if first + tile >= T else "none")
        logits = _forward_tile(cfg, w, state, chunk, mode)
        if all_logits:
            result[first:first + len(chunk)] = logits
    return result if all_logits else logits


def _forward_tile(cfg: Config, w: Weights, state: RunState, tokens: np.ndarray, logits: str) -> np.ndarray:
    """One tile of at most PREFILL_TILE tokens; logits "all" [T, vocab], of the "last" token [1, vocab], or "none"."""
    T = len(tokens)
    start = state.pos
    buf = state.buffers
    x, h = buf.x[:T], buf.h[:T]

    # 1. token embeddings (gemma scales them by sqrt(dim))
    embed(w.token_embd, tokens, x)                                    # [T, dim]
    if cfg.embedding_scale != 1.0:
        x *= np.float32(cfg.embedding_scale)
    # 2-5. the layers: a decode step in one compiled call where it applies (the same kernels in the same order)
    if T == 1 and state.fused is not None:
        state.fused.run(start)
    else:
        _layers(cfg, w, state, T, start)

    state.pos = start + T
    if logits == "none":
        return buf.logits[:0]
    # 6. final norm, the LM head (gemma2: soft-capped logits): every position's, or the last one's into its buffer
    if logits == "all":
        K.rmsnorm_rows(x, w.output_norm, cfg.norm_eps, h)
        out = linear(h, [w.output], np.empty((T, _width([w.output])), np.float32), buf.acts)
    else:
        K.rmsnorm(x[-1:], w.output_norm, cfg.norm_eps, h[:1])
        out = linear(h[:1], [w.output], buf.logits, buf.acts)
    if cfg.final_softcap:
        cap = np.float32(cfg.final_softcap)
        out = cap * np.tanh(out / cap)
    return out


def _layers(cfg: Config, w: Weights, state: RunState, T: int, start: int) -> None:
    """Steps 2-5 of _forward_tile for its T tokens, whose embeddings are in the state's x[:T]."""
    buf = state.buffers
    H, Hkv, D = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    q_end, k_end = H * D, H * D + Hkv * D
    scale = np.float32(cfg.scale)
    attn_softcap = np.float32(cfg.attn_softcap)
    neox = cfg.rope_style == "neox"
    activation = K.geglu if cfg.activation == "gelu_tanh" else K.swiglu
    rmsnorm = K.rmsnorm_rows if T > 1 else K.rmsnorm
    x, h, att, ffn = buf.x[:T], buf.h[:T], buf.att[:T], buf.ffn[:T]
    for layer, lw in enumerate(w.layers):
        local = cfg.is_local_layer(layer)
        cos, sin = state.rope_local if local else state.rope
        cos, sin = cos[start:start + T], sin[start:start + T]
        # 2. attention: norm, one stacked QKV projection (+ qwen2's biases; gemma3 norms each head), RoPE on q and k
        rmsnorm(x, lw.attn_norm, cfg.norm_eps, h)
        qkv = linear(h, lw.wqkv, buf.qkv, buf.acts)
        if lw.bqkv is not None:
            qkv += lw.bqkv
        q = qkv[:, :q_end].reshape(T, H, D)
        k = qkv[:, q_end:k_end].reshape(T, Hkv, D)
        v = qkv[:, k_end:].reshape(T, Hkv, D)
        if lw.q_norm is not None:
            K.rmsnorm_heads(q, lw.q_norm, cfg.norm_eps)
            K.rmsnorm_heads(k, lw.k_norm, cfg.norm_eps)
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
        o = linear(att.reshape(T, H * D), [lw.wo], buf.o, buf.acts)
        if lw.post_attn_norm is not None:
            rmsnorm(o, lw.post_attn_norm, cfg.norm_eps, o)
        x += o
        # 5. SwiGLU or GeGLU feed-forward (gemma: normed) and residual
        rmsnorm(x, lw.ffn_norm, cfg.norm_eps, h)
        activation(linear(h, lw.w_gate_up, buf.gate_up, buf.acts), cfg.hidden_dim, ffn)
        f = linear(ffn, [lw.w_down], buf.f, buf.acts)
        if lw.post_ffn_norm is not None:
            rmsnorm(f, lw.post_ffn_norm, cfg.norm_eps, f)
        x += f
