"""The CPU engine's decode step over every layer in one compiled call.

Through edgellm.cpu.model's Python layer loop a decode step makes about 16 kernel calls and 20 array operations a
layer, each with its dispatch, which on many cores are a large part of a small model's step (docs/performance.md). Here the same kernels, called in the same order on the same buffers, run from
one compiled loop over the layers, so a step costs one dispatch: its logits are bit for bit those of the Python loop
(tests/edgellm/test_cpu_decode_step.py). Only the quantized weights (every matrix a PanelMatrix, the engine's
default) take this path; the float32 reference and the prompt's tiles stay on the Python loop.

numba's on-disk cache checks only the source file of the cached function, while this step compiles the kernels of
three other modules into itself: `_SOURCES`' digest is part of the compiled step's closure, which numba's cache key
includes, so an edit to any of them compiles the step again instead of loading a stale one.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange
from numba.typed import List

from ..gguf.config import Config
from . import int8_matmul, kernels, vnni
from .int8_matmul import ACT_BLOCK, SUM_BLOCK, PanelMatrix, quantize_activations_serial

SWITCH = "EDGELLM_CPU_FUSED_STEP"  # 0: every step through the Python loop (to compare the two)
POOL_SWITCH = "EDGELLM_CPU_POOLED_STEP"  # 0: the fused step with one parallel region per phase
# Threads from which the step runs on the pool: starting a parallel region costs about 10 us on 16 cores and 1.5 us on
# 2 (measured), so below this the regions cost little and the spinning pool would gain little.
POOL_FROM_THREADS = 4

_SOURCES = (vnni, int8_matmul, kernels)
_DIGEST = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in _SOURCES)).hexdigest()
# The kernel this CPU runs (vnni.AVAILABLE is fixed per process); it is part of the cache key below with the digest.
_MATMUL = vnni.parts_matmul_vnni if vnni.AVAILABLE else vnni.parts_matmul
_DOT = vnni.panel_dot if vnni.AVAILABLE else vnni.panel_dot_portable


def enabled() -> bool:
    return os.environ.get(SWITCH, "1") not in ("0", "")


def _make_linear(digest: str, uses_vnni: bool):
    @njit(cache=True)
    def linear(x, U, D, M, meta, first, count, threads, out, xq, xd, xs):
        """model.linear for quantized parts first..first+count-1 of the plan: x quantized once, the parts' products
        in one parallel region into their padded columns, a gap left by a part's last panel closed. Returns the
        filled columns."""
        if digest == "" or uses_vnni != vnni.AVAILABLE:  # never true: ties the cache key to the kernels' sources
            return 0
        T, C = x.shape
        q, qd, qs = xq[:T, :2 * C], xd[:T, :C // ACT_BLOCK], xs[:T, :C // SUM_BLOCK]
        quantize_activations_serial(x, q, qd, qs)
        _MATMUL(U, D, M, meta, first, count, threads, q, qd, qs, out[:T])
        col = real = 0
        for i in range(first, first + count):  # close the gap a part's last panel left (tiny shapes only)
            rows = meta[i, 2]
            if col != real:
                out[:T, real:real + rows] = out[:T, col:col + rows].copy()
            col += meta[i, 3] * vnni.LANES
            real += rows
        return real

    return linear


def _make_gate_up(digest: str, uses_vnni: bool):
    @njit(parallel=True, cache=True)
    def gate_up_activation(x, U, D, M, meta, i, threads, out, hidden, gelu, ffn, xq, xd, xs):
        """_linear of one stacked [gate | up] matrix (hidden a whole number of panels) with the activation in the
        same parallel region: each item computes gate panel p and up panel p + hidden / 16 (the rows whose products
        the activation joins), then those 16 values of ffn, as kernels.swiglu or kernels.geglu would."""
        if digest == "" or uses_vnni != vnni.AVAILABLE:  # never true: ties the cache key to the kernels' sources
            return
        T, C = x.shape
        q, qd, qs = xq[:T, :2 * C], xd[:T, :C // ACT_BLOCK], xs[:T, :C // SUM_BLOCK]
        quantize_activations_serial(x, q, qd, qs)
        u, d, m, layout, half = U[i], D[i], M[i], meta[i, 0], meta[i, 1] != 0
        gates = hidden // vnni.LANES
        run = max(1, min(16, gates // (4 * threads)))
        for r in prange((gates + run - 1) // run):
            for p in range(r * run, min((r + 1) * run, gates)):
                for t in range(T):
                    _DOT(u[p], d[p], m[p], q[t], qd[t], qs[t], layout, half,
                         out[t, p * vnni.LANES:(p + 1) * vnni.LANES])
                    _DOT(u[gates + p], d[gates + p], m[gates + p], q[t], qd[t], qs[t], layout, half,
                         out[t, hidden + p * vnni.LANES:hidden + (p + 1) * vnni.LANES])
                    for e in range(p * vnni.LANES, (p + 1) * vnni.LANES):
                        if gelu:
                            ffn[t, e] = kernels.gelu_times(out[t, e], out[t, hidden + e])
                        else:
                            ffn[t, e] = kernels.silu_times(out[t, e], out[t, hidden + e])

    return gate_up_activation


# A compiled function that the step calls is compiled into it; each carries the digest in its own cache key.
_linear = _make_linear(_DIGEST, vnni.AVAILABLE)
_gate_up_activation = _make_gate_up(_DIGEST, vnni.AVAILABLE)


def _make_step(digest: str, uses_vnni: bool):
    @njit(cache=True)
    def step(start, threads, x, h, qkv, q, k, v, att, att_flat, o, gate_up, ffn, f, xq, xd, xs,
             U, D, M, meta, mats, attn_norm, ffn_norm, bqkv, q_norm, k_norm, post_attn, post_ffn, local,
             k_cache, v_cache, cos, sin, cos_local, sin_local,
             eps, scale, softcap, window, hidden, neox, gelu):
        """Every layer for the token in x [1, dim] at position `start` (model._forward_tile's loop for one token)."""
        if digest == "" or uses_vnni != vnni.AVAILABLE:  # never true: ties the cache key to the kernels' sources
            return
        for layer in range(mats.shape[0]):
            first_qkv, n_qkv, wo, first_gu, n_gu, down = mats[layer]
            c = cos_local[start:start + 1] if local[layer] else cos[start:start + 1]
            s = sin_local[start:start + 1] if local[layer] else sin[start:start + 1]
            kernels.rmsnorm(x, attn_norm[layer], eps, h)
            real = _linear(h, U, D, M, meta, first_qkv, n_qkv, threads, qkv, xq, xd, xs)
            if bqkv.shape[1]:
                qkv[:1, :real] += bqkv[layer]
            if q_norm.shape[1]:
                kernels.rmsnorm_heads(q, q_norm[layer], eps)
                kernels.rmsnorm_heads(k, k_norm[layer], eps)
            kernels.apply_rope(q, c, s, neox)
            kernels.apply_rope(k, c, s, neox)
            k_cache[layer, start:start + 1] = k
            v_cache[layer, start:start + 1] = v
            kernels.flash_attention(q, k_cache[layer, :start + 1], v_cache[layer, :start + 1], start, scale, att,
                                    window if local[layer] else 0, softcap)
            real = _linear(att_flat, U, D, M, meta, wo, 1, threads, o, xq, xd, xs)
            if post_attn.shape[1]:
                kernels.rmsnorm(o[:1, :real], post_attn[layer], eps, o[:1, :real])
            x += o[:1, :real]
            kernels.rmsnorm(x, ffn_norm[layer], eps, h)
            if n_gu == 1 and hidden % vnni.LANES == 0:
                _gate_up_activation(h, U, D, M, meta, first_gu, threads, gate_up, hidden, gelu, ffn, xq, xd, xs)
            else:
                real = _linear(h, U, D, M, meta, first_gu, n_gu, threads, gate_up, xq, xd, xs)
                if gelu:
                    kernels.geglu(gate_up[:1, :real], hidden, ffn)
                else:
                    kernels.swiglu(gate_up[:1, :real], hidden, ffn)
            real = _linear(ffn, U, D, M, meta, down, 1, threads, f, xq, xd, xs)
            if post_ffn.shape[1]:
                kernels.rmsnorm(f[:1, :real], post_ffn[layer], eps, f[:1, :real])
            x += f[:1, :real]

    return step


_STEP = _make_step(_DIGEST, vnni.AVAILABLE)


@dataclass
class FusedDecode:
    """The step's arguments for one model and RunState, gathered once: every quantized matrix of every layer in
    typed lists (their arrays, not copies), per-layer vectors stacked, views of the state's buffers. `pooled`: run
    on a pool of threads that meet at barriers (edgellm.cpu.pooled_step) where more than one thread runs."""

    args: tuple
    pooled: bool = True
    pool_from_threads: int = POOL_FROM_THREADS
    barrier: np.ndarray = field(default_factory=lambda: np.zeros(4, np.int64))

    def run(self, start: int) -> None:
        """The layers for the token in the state's x[0] at position `start` (its k and v appended to the cache)."""
        threads = numba.get_num_threads()
        if self.pooled and threads >= self.pool_from_threads:
            from .pooled_step import _POOLED

            if _POOLED(start, threads, self.barrier, *self.args) == 0:
                return
            self.pooled = False  # the threads did not all run at once (nothing was done): one region per phase
        _STEP(start, threads, *self.args)


def _stacked(vectors: list) -> np.ndarray:
    """Per-layer vectors as one float32 [layers, width] array; [layers, 0] where the model has none."""
    if vectors[0] is None:
        return np.zeros((len(vectors), 0), np.float32)
    return np.ascontiguousarray(np.stack(vectors).astype(np.float32, copy=False))


def plan(cfg: Config, weights, state) -> FusedDecode | None:
    """The fused step for this model and state, or None where it does not apply (the float32 reference, a matrix
    kept in float32, a model whose layers differ in which optional vectors they have, EDGELLM_CPU_FUSED_STEP=0)."""
    if not enabled() or not weights.quantized:
        return None
    layers = weights.layers
    for name in ("bqkv", "q_norm", "k_norm", "post_attn_norm", "post_ffn_norm"):
        if len({getattr(lw, name) is None for lw in layers}) != 1:
            return None
    U, D, M, meta, mats = List(), List(), List(), [], []

    def add(parts) -> tuple[int, int]:
        first = len(meta)
        for w in parts:
            if not isinstance(w, PanelMatrix) or w.vnni != vnni.AVAILABLE:
                raise _NotFusable
            U.append(np.ascontiguousarray(w.u))
            D.append(np.ascontiguousarray(w.d))
            M.append(np.ascontiguousarray(w.m))
            meta.append((w.layout, int(w.half_scales), w.rows, w.u.shape[0]))
        return first, len(parts)

    try:
        for lw in layers:
            qkv, gate_up = add(lw.wqkv), add(lw.w_gate_up)
            mats.append((*qkv, add([lw.wo])[0], *gate_up, add([lw.w_down])[0]))
    except _NotFusable:
        return None
    buf = state.buffers
    H, Hkv, Dh = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    q_end, k_end = H * Dh, (H + Hkv) * Dh
    row = buf.qkv[0]
    att = buf.att[:1]
    cos, sin = state.rope
    cos_local, sin_local = state.rope_local
    args = (buf.x[:1], buf.h[:1], buf.qkv, row[:q_end].reshape(1, H, Dh), row[q_end:k_end].reshape(1, Hkv, Dh),
            row[k_end:k_end + Hkv * Dh].reshape(1, Hkv, Dh), att, att.reshape(1, H * Dh), buf.o, buf.gate_up,
            buf.ffn[:1], buf.f, buf.acts.xq, buf.acts.xd, buf.acts.xs,
            U, D, M, np.array(meta, np.int64).reshape(-1, 4), np.array(mats, np.int64).reshape(-1, 6),
            _stacked([lw.attn_norm for lw in layers]), _stacked([lw.ffn_norm for lw in layers]),
            _stacked([lw.bqkv for lw in layers]), _stacked([lw.q_norm for lw in layers]),
            _stacked([lw.k_norm for lw in layers]), _stacked([lw.post_attn_norm for lw in layers]),
            _stacked([lw.post_ffn_norm for lw in layers]),
            np.array([cfg.is_local_layer(i) for i in range(len(layers))], np.bool_),
            state.k_cache, state.v_cache, cos, sin, cos_local, sin_local,
            float(cfg.norm_eps), np.float32(cfg.scale), np.float32(cfg.attn_softcap), int(cfg.sliding_window),
            int(cfg.hidden_dim), cfg.rope_style == "neox", cfg.activation == "gelu_tanh")
    return FusedDecode(args, pooled=os.environ.get(POOL_SWITCH, "1") not in ("0", ""))


class _NotFusable(Exception):
    pass
