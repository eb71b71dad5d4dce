"""numba kernels for the CPU path: FlashAttention-2 style attention, RMSNorm, RoPE, SwiGLU and GeGLU.

Attention follows FlashAttention-2's forward pass: for each (query, head) the keys are visited in tiles; a running
maximum `m` and running sum `l` of the softmax are kept with an unnormalised accumulator, rescaled by exp(m_old -
m_new) whenever the maximum grows, and divided by `l` once at the end. The score matrix is never materialised.
Causal masking is by position: the query at absolute position p sees keys 0..p, or only the last `window` of them
(p - window + 1 .. p) in a sliding-window layer. A soft-cap (gemma2) bends each scaled score s to cap * tanh(s / cap)
before the softmax, as llama.cpp does. Grouped-query attention maps query
head h to key/value head h // (H / Hkv). The same kernel serves prefill (T queries) and decode (T = 1 over a cache).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

KEY_TILE = 64  # keys per tile: a tile's K and V rows (2 x 64 x 128 x 4 bytes) stay in L1/L2


@njit(cache=True)
def attend(q, k, v, kvh, first_key, n_keys, scale, softcap, out):
    """One query vector q [D] against keys/values first_key..n_keys-1 of KV head kvh (k, v: [S, Hkv, D]) -> out [D].
    softcap > 0: each score s becomes softcap * tanh(s / softcap)."""
    D = q.shape[0]
    m = np.float32(-np.inf)
    l = np.float32(0.0)
    acc = np.zeros(D, dtype=np.float32)
    scores = np.empty(KEY_TILE, dtype=np.float32)
    for tile_start in range(first_key, n_keys, KEY_TILE):
        tile_end = min(tile_start + KEY_TILE, n_keys)
        tile_max = np.float32(-np.inf)
        for j in range(tile_start, tile_end):
            s = np.float32(0.0)
            for d in range(D):
                s += q[d] * k[j, kvh, d]
            s *= scale
            if softcap > 0:
                s = np.float32(softcap * math.tanh(s / softcap))
            scores[j - tile_start] = s
            if s > tile_max:
                tile_max = s
        m_new = max(m, tile_max)
        correction = np.float32(math.exp(m - m_new))  # exp(-inf) = 0 on the first tile
        l *= correction
        for d in range(D):
            acc[d] *= correction
        for j in range(tile_start, tile_end):
            p = np.float32(math.exp(scores[j - tile_start] - m_new))
            l += p
            for d in range(D):
                acc[d] += p * v[j, kvh, d]
        m = m_new
    inv = np.float32(1.0) / l
    for d in range(D):
        out[d] = acc[d] * inv


@njit(parallel=True, cache=True)
def flash_attention(q, k, v, start_pos, scale, out, window=0, softcap=0.0):
    """q: [T, H, D] queries at absolute positions start_pos..start_pos+T-1; k, v: [S, Hkv, D] with
    S >= start_pos + T (the cache); out: [T, H, D]. float32 in, float32 accumulation.
    One (query, head) pair per parallel item; causal: the query at position p sees keys 0..p, only the last `window`
    of them when window > 0. softcap > 0: scores soft-capped (see attend)."""
    T, H, D = q.shape
    group = H // k.shape[1]
    for item in prange(T * H):
        t = item // H
        h = item % H
        n_keys = start_pos + t + 1
        first = max(0, n_keys - window) if window > 0 else 0
        attend(q[t, h], k, v, h // group, first, n_keys, scale, softcap, out[t, h])


@njit(cache=True)
def _rmsnorm_row(x, t, weight, eps, out):
    n = x.shape[1]
    ss = 0.0
    for i in range(n):
        ss += np.float64(x[t, i]) * np.float64(x[t, i])
    scale = np.float32(1.0 / math.sqrt(ss / n + eps))
    for i in range(n):
        out[t, i] = x[t, i] * scale * weight[i]


@njit(cache=True)
def rmsnorm(x, weight, eps, out):
    """out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight, the mean taken in float64 as ggml does."""
    for t in range(x.shape[0]):
        _rmsnorm_row(x, t, weight, eps, out)


@njit(parallel=True, cache=True)
def rmsnorm_rows(x, weight, eps, out):
    """rmsnorm with the rows in parallel (a prompt's tile; one row is too little work for more than one core)."""
    for t in prange(x.shape[0]):
        _rmsnorm_row(x, t, weight, eps, out)


def rope_tables(positions: np.ndarray, head_dim: int, base: float, freq_factors=None,
                attn_factor: float = 1.0) -> tuple[np.ndarray, ...]:
    """cos and sin [T, head_dim/2] of theta = pos * base^(-2i/d) / factor_i (llama3 scaling and phi3's long/short
    factors via the factors), both times attn_factor (phi3's rope.scaling.attn_factor; ggml's rope mscale)."""
    inv_freq = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors.astype(np.float64)
    theta = positions.astype(np.float64)[:, None] * inv_freq[None, :]
    return (attn_factor * np.cos(theta)).astype(np.float32), (attn_factor * np.sin(theta)).astype(np.float32)


@njit(cache=True)
def apply_rope(x, cos, sin, neox):
    """Rotate x [T, heads, D] in place. neox: pairs (i, i + D/2); otherwise adjacent pairs (2i, 2i+1)."""
    T, n_heads, D = x.shape
    half = D // 2
    for item in range(T * n_heads):
        t = item // n_heads
        h = item % n_heads
        for i in range(half):
            if neox:
                a, b = i, i + half
            else:
                a, b = 2 * i, 2 * i + 1
            x0 = x[t, h, a]
            x1 = x[t, h, b]
            x[t, h, a] = x0 * cos[t, i] - x1 * sin[t, i]
            x[t, h, b] = x0 * sin[t, i] + x1 * cos[t, i]


# The activations run in parallel over runs of ACTIVATION_RUN elements of a row: a prompt's tile holds hundreds of
# thousands of them, and a decode step's few thousand exponentials would otherwise wait on one core.
ACTIVATION_RUN = 512


@njit(parallel=True, cache=True)
def swiglu(gate_up, hidden, out):
    """out = silu(gate) * up, with gate_up = [gate | up] along the last axis."""
    T = gate_up.shape[0]
    runs = (hidden + ACTIVATION_RUN - 1) // ACTIVATION_RUN
    for item in prange(T * runs):
        t = item // runs
        first = (item % runs) * ACTIVATION_RUN
        for i in range(first, min(first + ACTIVATION_RUN, hidden)):
            out[t, i] = silu_times(gate_up[t, i], gate_up[t, hidden + i])


GELU_TANH_C = math.sqrt(2.0 / math.pi)


@njit(cache=True)
def silu_times(g, up):
    """silu(g) * up in float32 (SwiGLU's element; the fused decode step computes it with this same function)."""
    return g / (np.float32(1.0) + np.float32(math.exp(-g))) * up


@njit(cache=True)
def gelu_times(g, up):
    """gelu(g) * up, GELU's tanh approximation (GeGLU's element)."""
    inner = GELU_TANH_C * (g + 0.044715 * g * g * g)
    return np.float32(0.5 * g * (1.0 + math.tanh(inner))) * up


@njit(parallel=True, cache=True)
def geglu(gate_up, hidden, out):
    """out = gelu(gate) * up with GELU's tanh approximation (gemma's gelu_pytorch_tanh, ggml's gelu), gate_up = [gate
    | up] along the last axis."""
    T = gate_up.shape[0]
    runs = (hidden + ACTIVATION_RUN - 1) // ACTIVATION_RUN
    for item in prange(T * runs):
        t = item // runs
        first = (item % runs) * ACTIVATION_RUN
        for i in range(first, min(first + ACTIVATION_RUN, hidden)):
            out[t, i] = gelu_times(gate_up[t, i], gate_up[t, hidden + i])


@njit(parallel=True, fastmath=True, cache=True)
def matvec(w, x, out):
    """out = w @ x for one token (decode): rows split over the threads, each row a vectorised dot product."""
    rows, cols = w.shape
    for r in prange(rows):
        s = np.float32(0.0)
        for c in range(cols):
            s += w[r, c] * x[c]
        out[r] = s


def set_threads(n: int | None) -> int:
    """numba's thread count for the parallel kernels (default: all it found)."""
    if n:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return numba.get_num_threads()


@njit(cache=True)
def rmsnorm_heads(x, weight, eps):
    """In place over x [T, heads, D]: each head's vector normed as rmsnorm does (gemma3's q and k norms)."""
    T, n_heads, D = x.shape
    for t in range(T):
        for h in range(n_heads):
            ss = 0.0
            for i in range(D):
                ss += np.float64(x[t, h, i]) * np.float64(x[t, h, i])
            scale = np.float32(1.0 / math.sqrt(ss / D + eps))
            for i in range(D):
                x[t, h, i] = x[t, h, i] * scale * weight[i]
