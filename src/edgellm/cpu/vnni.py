"""AVX-512 VNNI's vpdpbusd from numba: LLVM's loop vectorizer does not produce it from plain code (it stops at
vpmaddwd), so the integer kernels reach it through an intrinsic written in LLVM IR. `AVAILABLE` says whether this
CPU has it and it is not switched off (EDGELLM_CPU_NO_VNNI=1 takes the portable kernels, to measure or check them on
a CPU that has it); panel_dot is compiled only where it is (numba's on-disk cache is keyed by the CPU's features, so
a cache written here is never loaded on a CPU without them).

`panel_dot` is one 16-row panel of a weight matrix against one token's 16-bit activations (two int8 digits each), all
blocks of the row: per block and digit, 4 activations' digits broadcast to the 16 lanes and one vpdpbusd per quad of
weights (int32 sums), the digits' sums joined as 254 hi + lo, then the block's scales in float32 (weights' d and m,
activations' d and scaled sum). Weight layouts (edgellm.cpu.int8_matmul):
  NIBBLES: 4-bit weights, two quads per byte vector (low nibbles quad j, high nibbles quad j + 4 of a 32-block)
  BYTES:   one byte per weight, blocks of 32;  BYTES16: the same with blocks of 16 (Q6_K, unpacked)
  SIX_BITS: Q6_K at 6 bits a weight, per 32 columns 4 vectors of low nibbles and 2 of top 2-bit fields, rebuilt
           into the BYTES16 quads in registers; d holds the file's int8 scales (16 bytes per block of 16) and m one
           super scale per 256 columns and row, from which d = super * scale and m = 0 - 32 d are formed in float32
           (the exact values BYTES16 stores, so the same products and sums)
  K_NIBBLES: Q4_K's NIBBLES weights with the file's 6-bit scales and mins instead of float ones: per block 16 bytes
           (scale | top 2 bits of min << 6) and 8 bytes of the mins' low 4 bits (row i low nibble, row i + 8 high),
           and per 256 columns and row the super scale and super min (m); d = super * scale and m = -(super min * min)
           - 0 d are formed in float32, the values NIBBLES stores
Scales are float16 (HALF_SCALES, when that holds them exactly) or float32, 16 per block (one per row).
`panel_dot_portable` is the same for CPUs without VNNI (AVX2, arm64): each vpdpbusd written out in plain vector IR
(16-bit products, neighbours added: LLVM's vpmaddwd on x86, the target's own instructions elsewhere), float32 scales
only.
"""

from __future__ import annotations

import os

import llvmlite.binding as llvm
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic


def _host_has(*features: str) -> bool:
    try:
        host = llvm.get_host_cpu_features()
    except RuntimeError:  # not every platform reports its features
        return False
    return all(host.get(f, False) for f in features)


NO_VNNI_SWITCH = "EDGELLM_CPU_NO_VNNI"
AVAILABLE = _host_has("avx512f", "avx512bw", "avx512vnni", "f16c") and os.environ.get(NO_VNNI_SWITCH, "") in ("", "0")

NIBBLES, BYTES, BYTES16, SIX_BITS, K_NIBBLES = 0, 1, 2, 3, 4
LANES = 16  # rows of a panel: one int32 (then float32) sum per row in a 512-bit vector

_I8, _I16, _I32, _I64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
_I32X16 = ir.VectorType(_I32, 16)
_I8X64 = ir.VectorType(_I8, 64)
_F32X16 = ir.VectorType(ir.FloatType(), 16)
_F16X16 = ir.VectorType(ir.HalfType(), 16)
_SPLAT = ir.Constant(_I32X16, [0] * 16)


def _splat(builder, value, vector_type):
    one = builder.insert_element(ir.Constant(vector_type, None), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, one, _SPLAT)


def _dpbusd_generic(builder, acc, weights, quads):
    """vpdpbusd's arithmetic in plain vector IR, which LLVM lowers for any target (AVX2, arm64 NEON, ...): per lane,
    the four u8 weights times the four s8 activations, summed into the int32 lane. Written as products of 16-bit
    values whose even and odd neighbours are added, the pattern LLVM turns into vpmaddwd on x86 (the products are
    exact in 32 bits: |u8 x s8| <= 255 * 127)."""
    i32x64 = ir.VectorType(_I32, 64)
    w = builder.zext(builder.bitcast(weights, _I8X64), i32x64)
    x = builder.sext(builder.bitcast(quads, _I8X64), i32x64)
    products = builder.mul(w, x)

    def pairs(v, n):
        even = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, n), [2 * i for i in range(n)]))
        odd = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, n), [2 * i + 1 for i in range(n)]))
        return builder.add(even, odd)

    return builder.add(acc, pairs(pairs(products, 32), 16))


def _panel_dot(generic, u, d, m, x, xd, xs, layout, half_scales, out):
    """The typing and code of panel_dot (generic=False: vpdpbusd) and panel_dot_portable (plain vector IR)."""
    sig = types.void(u, d, m, x, xd, xs, layout, half_scales, out)

    def codegen(context, builder, signature, args):
        arrays = [context.make_array(t)(context, builder, a) if isinstance(t, types.Array) else None
                  for t, a in zip(signature.args, args)]
        u_arr, d_arr, m_arr, x_arr, xd_arr, xs_arr, _, _, out_arr = arrays
        layout_v, half_v = args[6], args[7]
        if generic:
            def dot(acc, weights, quads):
                return _dpbusd_generic(builder, acc, weights, quads)
        else:
            dpbusd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I32X16, [_I32X16] * 3),
                                                    "llvm.x86.avx512.vpdpbusd.512")

            def dot(acc, weights, quads):
                return builder.call(dpbusd, [acc, weights, quads])
        n_blocks = cgutils.unpack_tuple(builder, d_arr.shape, 2)[0]
        u_ptr = builder.bitcast(u_arr.data, _I32X16.as_pointer())       # one 64-byte vector per index
        d_bytes = cgutils.unpack_tuple(builder, d_arr.strides, 2)[0]
        m_bytes = cgutils.unpack_tuple(builder, m_arr.strides, 2)[0]
        d_base, m_base = builder.ptrtoint(d_arr.data, _I64), builder.ptrtoint(m_arr.data, _I64)
        x_quads = builder.bitcast(x_arr.data, _I32.as_pointer())
        xd_ptr, xs_ptr = xd_arr.data, xs_arr.data
        acc = cgutils.alloca_once_value(builder, ir.Constant(_F32X16, None))
        low_mask = ir.Constant(_I8X64, [0x0F] * 64)
        four = ir.Constant(_I8X64, [4] * 64)
        is_half = builder.icmp_unsigned("!=", builder.zext(half_v, _I64), ir.Constant(_I64, 0))

        def scales(base, b):
            return load_scales(builder.add(base, builder.mul(b, d_bytes)))

        def load_scales(ptr):
            """16 float32 scales at address ptr, stored as float16 or float32 (is_half)."""
            if generic:  # float32 only: no half-precision conversion, which would need F16C or a library call
                return builder.load(builder.inttoptr(ptr, _F32X16.as_pointer()), align=4)
            with builder.if_else(is_half) as (then, otherwise):
                with then:
                    half = builder.load(builder.inttoptr(ptr, _F16X16.as_pointer()), align=2)
                    from_half = builder.fpext(half, _F32X16)
                    then_block = builder.block
                with otherwise:
                    from_float = builder.load(builder.inttoptr(ptr, _F32X16.as_pointer()), align=4)
                    else_block = builder.block
            phi = builder.phi(_F32X16)
            phi.add_incoming(from_half, then_block)
            phi.add_incoming(from_float, else_block)
            return phi

        def digit_quad(quad_index, digit):
            """The 4 activations' hi (digit 0) or lo (digit 1) bytes of quad quad_index, as one int32: a block's 8
            hi quads come before its 8 lo quads (edgellm.cpu.int8_matmul.quantize_activations)."""
            block = builder.lshr(quad_index, ir.Constant(_I64, 3))
            within = builder.and_(quad_index, ir.Constant(_I64, 7))
            at = builder.add(builder.add(builder.shl(block, ir.Constant(_I64, 4)), within),
                             ir.Constant(_I64, 8 * digit))
            return builder.load(builder.gep(x_quads, [at]), align=1)

        def step(sums, weights, quad_index):
            """Both digits' products of one quad of weights: two vpdpbusd."""
            return tuple(dot(sums[digit], weights, _splat(builder, digit_quad(quad_index, digit), _I32X16))
                         for digit in (0, 1))

        def block_sum(b, kind):
            """int32 lane sums of block b for one layout (unrolled over its quads), the digits joined: 254 hi + lo
            (exact: at most 32 * 255 * 32384 in a lane)."""
            sums = (ir.Constant(_I32X16, None), ir.Constant(_I32X16, None))
            if kind == NIBBLES:
                for j in range(4):
                    packed = builder.load(builder.gep(u_ptr, [builder.add(builder.mul(b, ir.Constant(_I64, 4)),
                                                                           ir.Constant(_I64, j))]), align=1)
                    bytes_ = builder.bitcast(packed, _I8X64)
                    low = builder.bitcast(builder.and_(bytes_, low_mask), _I32X16)
                    high = builder.bitcast(builder.lshr(bytes_, four), _I32X16)
                    first = builder.mul(b, ir.Constant(_I64, 8))
                    sums = step(sums, low, builder.add(first, ir.Constant(_I64, j)))
                    sums = step(sums, high, builder.add(first, ir.Constant(_I64, j + 4)))
            else:
                quads = 8 if kind == BYTES else 4
                for j in range(quads):
                    index = builder.add(builder.mul(b, ir.Constant(_I64, quads)), ir.Constant(_I64, j))
                    sums = step(sums, builder.load(builder.gep(u_ptr, [index]), align=1), index)
            return builder.add(builder.mul(sums[0], ir.Constant(_I32X16, [254] * 16)), sums[1])

        fmuladd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_F32X16, [_F32X16] * 3),
                                                 "llvm.fmuladd.v16f32")

        def accumulate(isum, wd, wm, x_scale, x_sum):
            """acc += isum * (wd * xd) + wm * xs: one block's float32 scaling, in this order, as one multiply-add the
            target fuses or not and no other fast-math freedom: layouts whose scales are formed in registers
            (SIX_BITS, K_NIBBLES), where fast math would fold their forming into the scaling, round as the layouts
            that read them from memory (BYTES16, NIBBLES)."""
            xd_v, xs_v = _splat(builder, x_scale, _F32X16), _splat(builder, x_sum, _F32X16)
            term = builder.call(fmuladd, [builder.sitofp(isum, _F32X16), builder.fmul(wd, xd_v),
                                          builder.fmul(wm, xs_v)])
            builder.store(builder.fadd(builder.load(acc), term), acc)

        def k_scales(b):
            """K_NIBBLES: block b's 16 scales and mins (6 bits each) from its 24 bytes, times the super scales."""
            i8x16, i8x8 = ir.VectorType(_I8, 16), ir.VectorType(_I8, 8)
            at = builder.add(d_base, builder.mul(b, d_bytes))
            first = builder.load(builder.inttoptr(at, i8x16.as_pointer()), align=1)
            lows = builder.load(builder.inttoptr(builder.add(at, ir.Constant(_I64, 16)), i8x8.as_pointer()), align=1)
            scale = builder.and_(first, ir.Constant(i8x16, [0x3F] * 16))
            min_top = builder.shl(builder.lshr(first, ir.Constant(i8x16, [6] * 16)), ir.Constant(i8x16, [4] * 16))
            min_low = builder.shuffle_vector(builder.and_(lows, ir.Constant(i8x8, [0x0F] * 8)),
                                             builder.lshr(lows, ir.Constant(i8x8, [4] * 8)),
                                             ir.Constant(ir.VectorType(_I32, 16), list(range(16))))
            minimum = builder.or_(min_low, min_top)
            sup_at = builder.add(m_base, builder.mul(builder.lshr(b, ir.Constant(_I64, 3)), m_bytes))
            half_width = builder.select(is_half, ir.Constant(_I64, 32), ir.Constant(_I64, 64)) if not generic \
                else ir.Constant(_I64, 64)
            wd = builder.fmul(load_scales(sup_at), builder.uitofp(builder.zext(scale, _I32X16), _F32X16))
            mins = builder.fmul(load_scales(builder.add(sup_at, half_width)),
                                builder.uitofp(builder.zext(minimum, _I32X16), _F32X16))
            wm = builder.fsub(builder.fneg(mins), builder.fmul(ir.Constant(_F32X16, [0.0] * 16), wd))
            return wd, wm

        def run(kind):
            block = 16 if kind == BYTES16 else 32
            with cgutils.for_range(builder, n_blocks) as loop:
                b = loop.index
                isum = block_sum(b, NIBBLES if kind == K_NIBBLES else kind)
                act = builder.udiv(builder.mul(b, ir.Constant(_I64, block)), ir.Constant(_I64, 32))
                x_scale = builder.load(builder.gep(xd_ptr, [act]))
                if block == 32:
                    pair = builder.mul(b, ir.Constant(_I64, 2))
                    x_sum = builder.fadd(builder.load(builder.gep(xs_ptr, [pair])),
                                         builder.load(builder.gep(xs_ptr, [builder.add(pair, ir.Constant(_I64, 1))])))
                else:
                    x_sum = builder.load(builder.gep(xs_ptr, [b]))
                wd, wm = k_scales(b) if kind == K_NIBBLES else (scales(d_base, b), scales(m_base, b))
                accumulate(isum, wd, wm, x_scale, x_sum)

        def six_bit_quad(nibbles, tops, j):
            """Quad j (0..7) of a 32-column group as 64 bytes of values 0..63: its low 4 bits from nibble vector
            j % 4 (low or high nibbles), its top 2 from bits 2 (j // 2) of top vector j % 2, moved to bits 4-5 by
            a 32-bit shift (what crosses a byte boundary is masked off)."""
            vec = nibbles[j % 4]
            low = builder.and_(vec, low_mask) if j < 4 else builder.lshr(vec, four)
            shift = 4 - 2 * (j // 2)
            top = tops[j % 2]
            if shift > 0:
                top = builder.shl(top, ir.Constant(_I32X16, [shift] * 16))
            elif shift < 0:
                top = builder.lshr(top, ir.Constant(_I32X16, [-shift] * 16))
            high = builder.and_(builder.bitcast(top, _I8X64), ir.Constant(_I8X64, [0x30] * 64))
            return builder.bitcast(builder.or_(low, high), _I32X16)

        def run_six_bits():
            """SIX_BITS: two blocks of 16 per step (one 32-column group: 6 vectors), each scaled as BYTES16's."""
            i8x16 = ir.VectorType(_I8, 16)
            sub_ptr = builder.bitcast(d_arr.data, i8x16.as_pointer())       # 16 int8 scales per block
            with cgutils.for_range(builder, builder.udiv(n_blocks, ir.Constant(_I64, 2))) as loop:
                g = loop.index
                vecs = [builder.load(builder.gep(u_ptr, [builder.add(builder.mul(g, ir.Constant(_I64, 6)),
                                                                     ir.Constant(_I64, k))]), align=1)
                        for k in range(6)]
                nibbles = [builder.bitcast(v, _I8X64) for v in vecs[:4]]
                x_scale = builder.load(builder.gep(xd_ptr, [g]))
                for half in (0, 1):
                    sums = (ir.Constant(_I32X16, None), ir.Constant(_I32X16, None))
                    for j in range(4 * half, 4 * half + 4):
                        quad = builder.add(builder.mul(g, ir.Constant(_I64, 8)), ir.Constant(_I64, j))
                        sums = step(sums, six_bit_quad(nibbles, vecs[4:], j), quad)
                    isum = builder.add(builder.mul(sums[0], ir.Constant(_I32X16, [254] * 16)), sums[1])
                    b = builder.add(builder.mul(g, ir.Constant(_I64, 2)), ir.Constant(_I64, half))
                    sub = builder.sitofp(builder.sext(builder.load(builder.gep(sub_ptr, [b]), align=1), _I32X16),
                                         _F32X16)
                    sup_at = builder.add(m_base, builder.mul(builder.lshr(b, ir.Constant(_I64, 4)), m_bytes))
                    wd = builder.fmul(load_scales(sup_at), sub)
                    wm = builder.fsub(ir.Constant(_F32X16, [0.0] * 16),
                                      builder.fmul(ir.Constant(_F32X16, [32.0] * 16), wd))
                    accumulate(isum, wd, wm, x_scale, builder.load(builder.gep(xs_ptr, [b])))

        layout64 = builder.zext(layout_v, _I64) if layout_v.type.width < 64 else layout_v
        runs = [(NIBBLES, lambda: run(NIBBLES)), (K_NIBBLES, lambda: run(K_NIBBLES)), (BYTES, lambda: run(BYTES)),
                (SIX_BITS, run_six_bits)]

        def dispatch(i):
            """The code of the layout the call names; the last one (BYTES16) when it names none of the others."""
            if i == len(runs):
                run(BYTES16)
                return
            kind, emit = runs[i]
            with builder.if_else(builder.icmp_unsigned("==", layout64, ir.Constant(_I64, kind))) as (then, otherwise):
                with then:
                    emit()
                with otherwise:
                    dispatch(i + 1)

        dispatch(0)
        builder.store(builder.load(acc), builder.bitcast(out_arr.data, _F32X16.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def panel_dot(typingctx, u, d, m, x, xd, xs, layout, half_scales, out):
    """out[0:16] (float32, contiguous) = the 16 rows of one panel . one token's activations.
    u: uint8 [vectors, 64] (C-contiguous rows); d, m: uint8 [blocks, 64 or 32] (16 float32 or float16 per block);
    x: int8 [2C] contiguous (per block of 32 activations their hi digits, then their lo digits); xd: float32 [C / 32];
    xs: float32 [C / 16]; layout: NIBBLES, BYTES, BYTES16 or SIX_BITS; half_scales: whether d and m (SIX_BITS: m)
    hold float16."""
    return _panel_dot(False, u, d, m, x, xd, xs, layout, half_scales, out)


@intrinsic
def panel_dot_portable(typingctx, u, d, m, x, xd, xs, layout, half_scales, out):
    """panel_dot without VNNI: the same layouts and arithmetic in plain vector IR (float32 scales: half-precision
    conversion needs F16C on x86)."""
    return _panel_dot(True, u, d, m, x, xd, xs, layout, half_scales, out)


# The matrix kernels live here, next to the intrinsics they inline: numba's on-disk cache checks only the source file
# of the cached function, so a kernel cached in another module would keep running an old panel_dot after this file
# changed.
@njit(parallel=True, cache=True)
def panel_matmul_vnni(u, d, m, xq, xd, xs, layout, half_scales, out):
    """out [T, panels * 16] = x @ w.T from int8_matmul.quantize_activations' xq, xd, xs and a PanelMatrix (u, d,
    m), one panel_dot per (panel, token): a panel's weights (16 rows) are read from memory once and from L1/L2 for the
    batch's other tokens."""
    T = xq.shape[0]
    for p in prange(u.shape[0]):
        for t in range(T):
            panel_dot(u[p], d[p], m[p], xq[t], xd[t], xs[t], layout, half_scales, out[t, p * LANES:(p + 1) * LANES])


@njit(parallel=True, cache=True)
def panel_matmul(u, d, m, xq, xd, xs, layout, half_scales, out):
    """panel_matmul_vnni for CPUs without VNNI: panel_dot_portable, the same arithmetic in plain vector code."""
    T = xq.shape[0]
    for p in prange(u.shape[0]):
        for t in range(T):
            panel_dot_portable(u[p], d[p], m[p], xq[t], xd[t], xs[t], layout, half_scales,
                               out[t, p * LANES:(p + 1) * LANES])
