"""The fused decode step on a pool of threads that meet at barriers: one parallel region a step instead of five or six
a layer.

Each of the step's threads runs the whole layer loop and takes its share of every phase (its panels of a matrix
product, its attention heads, its blocks of an activation quantization); the phases are separated by spin barriers
instead of each starting a parallel region (about ten microseconds on 16 cores, measured; ggml's thread pool works
this way). Thread 0 alone does the small serial parts (norms, RoPE, the cache append, residuals). Every value is
computed by the same code as in edgellm.cpu.decode_step, so the logits are the same bit for bit.

The barriers need every thread of the region running at once: numba's OpenMP and workqueue layers give each of n
iterations of a prange over n its own thread; TBB may not. A rendezvous before any work waits a bounded time for all
threads; where they do not all arrive, the step returns without having changed anything and the engine goes back to
the region-per-phase step for good.
"""

from __future__ import annotations

import platform

from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import kernels, vnni
from .decode_step import _DIGEST
from .int8_matmul import ACT_BLOCK, SUM_BLOCK, _quantize_block

# The dot product this CPU runs, chosen here (not imported) so that what this module compiles in depends only on its
# own source and on the modules of the digest.
_DOT = vnni.panel_dot if vnni.AVAILABLE else vnni.panel_dot_portable
RENDEZVOUS_SPINS = 20_000_000  # pause instructions: 0.53 s on the 2-core test machine, far beyond a thread's start


@intrinsic
def _atomic_add(typingctx, array, index, value):
    """array[index] += value atomically (sequentially consistent); returns the old value. array: int64 [n]."""
    sig = types.int64(array, index, types.int64)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [args[1]])
        return builder.atomic_rmw("add", ptr, context.cast(builder, args[2], signature.args[2], types.int64),
                                  "seq_cst")

    return sig, codegen


@intrinsic
def _atomic_load(typingctx, array, index):
    """array[index] read with acquire ordering (int64 [n])."""
    sig = types.int64(array, index)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [args[1]])
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")


@intrinsic
def _compare_and_set(typingctx, array, index, expected, value):
    """array[index] = value if it holds `expected` (atomically, sequentially consistent); whether it did."""
    sig = types.boolean(array, index, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary, [args[1]])
        old_and_ok = builder.cmpxchg(ptr, args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(old_and_ok, 1)

    return sig, codegen


@intrinsic
def _pause(typingctx):
    """The spin-wait hint (x86 `pause`); nothing elsewhere."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True)
def _barrier(state, n):
    """All n threads wait here until the last arrives (state[0]: arrivals, state[1]: generation)."""
    generation = _atomic_load(state, 1)
    if _atomic_add(state, 0, 1) == n - 1:
        _atomic_add(state, 0, -n)
        _atomic_add(state, 1, 1)
    else:
        while _atomic_load(state, 1) == generation:
            _pause()


PENDING, STARTED, GAVE_UP = 0, 1, 2


@njit(cache=True)
def _rendezvous(state, n):
    """Whether all n threads are running at once (state[2]: arrivals, state[3]: the outcome). The last to arrive
    sets STARTED, a thread that waited RENDEZVOUS_SPINS sets GAVE_UP; only the first of the two takes, so every thread
    of the region, however late, reads the same outcome."""
    if _atomic_add(state, 2, 1) == n - 1:
        _compare_and_set(state, 3, PENDING, STARTED)
    spins = 0
    while _atomic_load(state, 3) == PENDING:
        if spins > RENDEZVOUS_SPINS:
            _compare_and_set(state, 3, PENDING, GAVE_UP)
        _pause()
        spins += 1
    return _atomic_load(state, 3) == STARTED


@njit(cache=True)
def _share(total, n, tid):
    """Thread tid's contiguous range of total items split n ways."""
    return tid * total // n, (tid + 1) * total // n


# The helpers that run other modules' kernels are not cached on their own: a cached copy would keep an old kernel
# after its module changed; the pooled step that inlines them is cached under the kernels' digest.
@njit
def _quantize_share(x, xq, xd, xs, n, tid):
    C = x.shape[1]
    q, qd, qs = xq[:1, :2 * C], xd[:1, :C // ACT_BLOCK], xs[:1, :C // SUM_BLOCK]
    first, end = _share(C // ACT_BLOCK, n, tid)
    for a in range(first, end):
        _quantize_block(x, 0, a, q, qd, qs)


@njit
def _product_share(U, D, M, meta, first, count, x_cols, xq, xd, xs, out, n, tid):
    """Thread tid's panels of matrices first..first+count-1 (all panels of the parts in a row, split n ways)."""
    q, qd, qs = xq[0, :2 * x_cols], xd[0, :x_cols // ACT_BLOCK], xs[0, :x_cols // SUM_BLOCK]
    total = 0
    for i in range(first, first + count):
        total += meta[i, 3]
    lo, hi = _share(total, n, tid)
    base = col = 0
    for i in range(first, first + count):
        panels = meta[i, 3]
        p0, p1 = max(lo - base, 0), min(hi - base, panels)
        if p0 < p1:
            u, d, m, layout, half = U[i], D[i], M[i], meta[i, 0], meta[i, 1] != 0
            for p in range(p0, p1):
                _DOT(u[p], d[p], m[p], q, qd, qs, layout, half,
                     out[0, col + p * vnni.LANES:col + (p + 1) * vnni.LANES])
        base += panels
        col += panels * vnni.LANES


@njit
def _quantized_product(x, U, D, M, meta, first, count, xq, xd, xs, out, state, n, tid):
    """x's activations quantized (each thread its blocks), then the product with matrices first..first+count-1
    (each thread its panels), a barrier after each."""
    _quantize_share(x, xq, xd, xs, n, tid)
    _barrier(state, n)
    _product_share(U, D, M, meta, first, count, x.shape[1], xq, xd, xs, out, n, tid)
    _barrier(state, n)


@njit(cache=True)
def _add_into(x, y):
    """x += y for [1, n] rows, elementwise in float32. (Written out: an in-place `x += ...` on an array from
    outside a prange loop would make numba treat x as a reduction variable, private to each thread.)"""
    for i in range(x.shape[1]):
        x[0, i] += y[0, i]


@njit(cache=True)
def _add_bias(x, bias, n):
    for i in range(n):
        x[0, i] += bias[i]


@njit
def _close_gaps(meta, first, count, out):
    """model.linear's closing of the gap a part's last panel leaves (tiny shapes only); returns the filled columns."""
    col = real = 0
    for i in range(first, first + count):
        rows = meta[i, 2]
        if col != real:
            out[:1, real:real + rows] = out[:1, col:col + rows].copy()
        col += meta[i, 3] * vnni.LANES
        real += rows
    return real


def _make_pooled(digest: str, uses_vnni: bool):
    @njit(parallel=True, cache=True)
    def pooled(start, threads, state, x, h, qkv, q, k, v, att, att_flat, o, gate_up, ffn, f, xq, xd, xs,
               U, D, M, meta, mats, attn_norm, ffn_norm, bqkv, q_norm, k_norm, post_attn, post_ffn, local,
               k_cache, v_cache, cos, sin, cos_local, sin_local,
               eps, scale, softcap, window, hidden, neox, gelu):
        """decode_step's step on `threads` threads; returns how many threads found that they did not all start at once
        (then nothing was done)."""
        if digest == "" or uses_vnni != vnni.AVAILABLE:  # never true: ties the cache key to the kernels' sources
            return 1
        state[2] = 0
        state[3] = 0
        failed = 0
        n = threads
        H, Hkv = q.shape[1], k.shape[1]
        group = H // Hkv
        for tid in prange(n):
            if not _rendezvous(state, n):
                failed += 1
                continue
            for layer in range(mats.shape[0]):
                first_qkv, n_qkv, wo, first_gu, n_gu, down = mats[layer]
                if tid == 0:
                    kernels.rmsnorm(x, attn_norm[layer], eps, h)
                _barrier(state, n)
                _quantized_product(h, U, D, M, meta, first_qkv, n_qkv, xq, xd, xs, qkv, state, n, tid)
                if tid == 0:
                    real = _close_gaps(meta, first_qkv, n_qkv, qkv)
                    if bqkv.shape[1]:
                        _add_bias(qkv, bqkv[layer], real)
                    if q_norm.shape[1]:
                        kernels.rmsnorm_heads(q, q_norm[layer], eps)
                        kernels.rmsnorm_heads(k, k_norm[layer], eps)
                    c = cos_local[start:start + 1] if local[layer] else cos[start:start + 1]
                    s = sin_local[start:start + 1] if local[layer] else sin[start:start + 1]
                    kernels.apply_rope(q, c, s, neox)
                    kernels.apply_rope(k, c, s, neox)
                    k_cache[layer, start:start + 1] = k
                    v_cache[layer, start:start + 1] = v
                _barrier(state, n)
                n_keys = start + 1
                first_key = max(0, n_keys - window) if (window > 0 and local[layer]) else 0
                lo, hi = _share(H, n, tid)
                for head in range(lo, hi):
                    kernels.attend(q[0, head], k_cache[layer, :n_keys], v_cache[layer, :n_keys], head // group,
                                   first_key, n_keys, scale, softcap, att[0, head])
                _barrier(state, n)
                _quantized_product(att_flat, U, D, M, meta, wo, 1, xq, xd, xs, o, state, n, tid)
                if tid == 0:
                    real = _close_gaps(meta, wo, 1, o)
                    if post_attn.shape[1]:
                        kernels.rmsnorm(o[:1, :real], post_attn[layer], eps, o[:1, :real])
                    _add_into(x, o[:1, :real])
                    kernels.rmsnorm(x, ffn_norm[layer], eps, h)
                _barrier(state, n)
                _quantized_product(h, U, D, M, meta, first_gu, n_gu, xq, xd, xs, gate_up, state, n, tid)
                if tid == 0:
                    real = _close_gaps(meta, first_gu, n_gu, gate_up)
                _barrier(state, n)
                lo, hi = _share(hidden, n, tid)
                for e in range(lo, hi):
                    if gelu:
                        ffn[0, e] = kernels.gelu_times(gate_up[0, e], gate_up[0, hidden + e])
                    else:
                        ffn[0, e] = kernels.silu_times(gate_up[0, e], gate_up[0, hidden + e])
                _barrier(state, n)
                _quantized_product(ffn, U, D, M, meta, down, 1, xq, xd, xs, f, state, n, tid)
                if tid == 0:
                    real = _close_gaps(meta, down, 1, f)
                    if post_ffn.shape[1]:
                        kernels.rmsnorm(f[:1, :real], post_ffn[layer], eps, f[:1, :real])
                    _add_into(x, f[:1, :real])
                _barrier(state, n)
        return failed

    return pooled


_POOLED = _make_pooled(_DIGEST, vnni.AVAILABLE)
