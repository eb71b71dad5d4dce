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
`panel_tile` (and `panel_tile_portable`) is the prompt's form: one panel against a tile of tokens, each block of
weights and its float32 scales unpacked once, TILE_UNITS 32-column units at a time, into a stack scratch in the BYTES
(or BYTES16) form, and every token of the tile run over that, TILE_TOKENS tokens at a time per load of a unit from
the scratch; each token's blocks are scaled and summed in panel_dot's order, so its products are panel_dot's bit for
bit.
"""

from __future__ import annotations

import os

import llvmlite.binding as llvm
import numpy as np
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


class _Emitter:
    """The IR pieces both intrinsics are made of, for one function being generated: loading a block's weights and
    scales in any layout, one block's integer sums against one token, and its float32 scaling."""

    def __init__(self, builder, generic, half_v):
        self.builder, self.generic = builder, generic
        self.is_half = builder.icmp_unsigned("!=", builder.zext(half_v, _I64), ir.Constant(_I64, 0))
        if generic:
            def dot(acc, weights, quads):
                return _dpbusd_generic(builder, acc, weights, quads)
        else:
            dpbusd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I32X16, [_I32X16] * 3),
                                                    "llvm.x86.avx512.vpdpbusd.512")

            def dot(acc, weights, quads):
                return builder.call(dpbusd, [acc, weights, quads])
        self.dot = dot
        self.fmuladd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_F32X16, [_F32X16] * 3),
                                                      "llvm.fmuladd.v16f32")
        self.low_mask = ir.Constant(_I8X64, [0x0F] * 64)
        self.four = ir.Constant(_I8X64, [4] * 64)

    def const(self, value):
        return ir.Constant(_I64, value)

    def load_scales(self, ptr, may_be_half=True):
        """16 float32 scales at address ptr (an integer), stored as float16 or float32 (is_half; float32 only when
        not may_be_half)."""
        builder = self.builder
        if self.generic or not may_be_half:  # generic: no half-precision conversion (F16C or a library call)
            return builder.load(builder.inttoptr(ptr, _F32X16.as_pointer()), align=4)
        with builder.if_else(self.is_half) as (then, otherwise):
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

    def block_quads(self, kind, u_ptr, b):
        """Block b's weights (NIBBLES, BYTES, BYTES16) as (quad vector, quad index within the block) pairs."""
        builder = self.builder
        if kind == NIBBLES:
            quads = []
            for j in range(4):
                packed = builder.load(builder.gep(u_ptr, [builder.add(builder.mul(b, self.const(4)), self.const(j))]),
                                      align=1)
                bytes_ = builder.bitcast(packed, _I8X64)
                quads.append((builder.bitcast(builder.and_(bytes_, self.low_mask), _I32X16), j))
                quads.append((builder.bitcast(builder.lshr(bytes_, self.four), _I32X16), j + 4))
            return quads
        count = 8 if kind == BYTES else 4
        return [(builder.load(builder.gep(u_ptr, [builder.add(builder.mul(b, self.const(count)), self.const(j))]),
                              align=1), j) for j in range(count)]

    def block_sum(self, quads, first_quad, x_quads):
        """int32 lane sums of one block against one token: per quad both digits' products (two vpdpbusd), the
        digits joined as 254 hi + lo (exact: at most 32 * 255 * 32384 in a lane). first_quad: the block's first quad
        index in the token's activations at x_quads (int32 pointer)."""
        builder = self.builder
        sums = [ir.Constant(_I32X16, None), ir.Constant(_I32X16, None)]
        for weights, j in quads:
            quad_index = builder.add(first_quad, self.const(j))
            for digit in (0, 1):
                x = self.digit_quad(x_quads, quad_index, digit)
                sums[digit] = self.dot(sums[digit], weights, _splat(builder, x, _I32X16))
        return builder.add(builder.mul(sums[0], ir.Constant(_I32X16, [254] * 16)), sums[1])

    def digit_quad(self, x_quads, quad_index, digit):
        """The 4 activations' hi (digit 0) or lo (digit 1) bytes of quad quad_index, as one int32: a block's 8
        hi quads come before its 8 lo quads (edgellm.cpu.int8_matmul.quantize_activations)."""
        builder = self.builder
        block = builder.lshr(quad_index, self.const(3))
        within = builder.and_(quad_index, self.const(7))
        at = builder.add(builder.add(builder.shl(block, self.const(4)), within), self.const(8 * digit))
        return builder.load(builder.gep(x_quads, [at]), align=1)

    def accumulate(self, acc, isum, wd, wm, x_scale, x_sum):
        """acc += isum * (wd * xd) + wm * xs: one block's float32 scaling, in this order, as one multiply-add the
        target fuses or not and no other fast-math freedom: layouts whose scales are formed in registers
        (SIX_BITS, K_NIBBLES), where fast math would fold their forming into the scaling, round as the layouts
        that read them from memory (BYTES16, NIBBLES)."""
        builder = self.builder
        xd_v, xs_v = _splat(builder, x_scale, _F32X16), _splat(builder, x_sum, _F32X16)
        term = builder.call(self.fmuladd, [builder.sitofp(isum, _F32X16), builder.fmul(wd, xd_v),
                                           builder.fmul(wm, xs_v)])
        return builder.fadd(acc, term)

    def k_scales(self, d_base, d_bytes, m_base, m_bytes, b):
        """K_NIBBLES: block b's 16 scales and mins (6 bits each) from its 24 bytes, times the super scales."""
        builder = self.builder
        i8x16, i8x8 = ir.VectorType(_I8, 16), ir.VectorType(_I8, 8)
        at = builder.add(d_base, builder.mul(b, d_bytes))
        first = builder.load(builder.inttoptr(at, i8x16.as_pointer()), align=1)
        lows = builder.load(builder.inttoptr(builder.add(at, self.const(16)), i8x8.as_pointer()), align=1)
        scale = builder.and_(first, ir.Constant(i8x16, [0x3F] * 16))
        min_top = builder.shl(builder.lshr(first, ir.Constant(i8x16, [6] * 16)), ir.Constant(i8x16, [4] * 16))
        min_low = builder.shuffle_vector(builder.and_(lows, ir.Constant(i8x8, [0x0F] * 8)),
                                         builder.lshr(lows, ir.Constant(i8x8, [4] * 8)),
                                         ir.Constant(ir.VectorType(_I32, 16), list(range(16))))
        minimum = builder.or_(min_low, min_top)
        sup_at = builder.add(m_base, builder.mul(builder.lshr(b, self.const(3)), m_bytes))
        half_width = self.const(64) if self.generic else \
            builder.select(self.is_half, self.const(32), self.const(64))
        wd = builder.fmul(self.load_scales(sup_at), builder.uitofp(builder.zext(scale, _I32X16), _F32X16))
        mins = builder.fmul(self.load_scales(builder.add(sup_at, half_width)),
                            builder.uitofp(builder.zext(minimum, _I32X16), _F32X16))
        wm = builder.fsub(builder.fneg(mins), builder.fmul(ir.Constant(_F32X16, [0.0] * 16), wd))
        return wd, wm

    def six_bit_group(self, u_ptr, g):
        """SIX_BITS: the 8 quads (values 0..63) of 32-column group g from its 6 vectors. Quad j's low 4 bits are
        in nibble vector j % 4 (low or high nibbles), its top 2 in bits 2 (j // 2) of top vector j % 2, moved to
        bits 4-5 by a 32-bit shift (what crosses a byte boundary is masked off)."""
        builder = self.builder
        vecs = [builder.load(builder.gep(u_ptr, [builder.add(builder.mul(g, self.const(6)), self.const(k))]),
                             align=1) for k in range(6)]
        nibbles, tops = [builder.bitcast(v, _I8X64) for v in vecs[:4]], vecs[4:]
        quads = []
        for j in range(8):
            vec = nibbles[j % 4]
            low = builder.and_(vec, self.low_mask) if j < 4 else builder.lshr(vec, self.four)
            shift = 4 - 2 * (j // 2)
            top = tops[j % 2]
            if shift > 0:
                top = builder.shl(top, ir.Constant(_I32X16, [shift] * 16))
            elif shift < 0:
                top = builder.lshr(top, ir.Constant(_I32X16, [-shift] * 16))
            high = builder.and_(builder.bitcast(top, _I8X64), ir.Constant(_I8X64, [0x30] * 64))
            quads.append(builder.bitcast(builder.or_(low, high), _I32X16))
        return quads

    def six_bit_scales(self, d_arr, m_base, m_bytes, b):
        """SIX_BITS: block b's (16 columns) d = super * int8 scale and m = 0 - 32 d, the values BYTES16 stores."""
        builder = self.builder
        sub_ptr = builder.bitcast(d_arr.data, ir.VectorType(_I8, 16).as_pointer())   # 16 int8 scales per block
        sub = builder.sitofp(builder.sext(builder.load(builder.gep(sub_ptr, [b]), align=1), _I32X16), _F32X16)
        sup_at = builder.add(m_base, builder.mul(builder.lshr(b, self.const(4)), m_bytes))
        wd = builder.fmul(self.load_scales(sup_at), sub)
        wm = builder.fsub(ir.Constant(_F32X16, [0.0] * 16), builder.fmul(ir.Constant(_F32X16, [32.0] * 16), wd))
        return wd, wm

    def dispatch(self, layout_v, emit):
        """emit(kind) for the layout the call names; BYTES16 when it names none of the others."""
        builder = self.builder
        layout64 = builder.zext(layout_v, _I64) if layout_v.type.width < 64 else layout_v
        kinds = [NIBBLES, K_NIBBLES, BYTES, SIX_BITS]

        def branch(i):
            if i == len(kinds):
                emit(BYTES16)
                return
            with builder.if_else(builder.icmp_unsigned("==", layout64, self.const(kinds[i]))) as (then, otherwise):
                with then:
                    emit(kinds[i])
                with otherwise:
                    branch(i + 1)

        branch(0)


def _unit_blocks(e, kind, w, g):
    """The weight blocks of 32-column unit g in memory (one block, or two of 16 columns: BYTES16, SIX_BITS), each as
    (quads: (vector, quad index within the unit), wd, wm)."""
    builder = e.builder
    if kind in (NIBBLES, K_NIBBLES):
        quads = e.block_quads(NIBBLES, w.u_ptr, g)
        return [(quads, *(e.k_scales(w.d_base, w.d_bytes, w.m_base, w.m_bytes, g) if kind == K_NIBBLES
                          else (w.scales(w.d_base, w.d_bytes, g), w.scales(w.m_base, w.m_bytes, g))))]
    if kind == BYTES:
        return [(e.block_quads(BYTES, w.u_ptr, g), w.scales(w.d_base, w.d_bytes, g), w.scales(w.m_base, w.m_bytes, g))]
    blocks = []
    six = e.six_bit_group(w.u_ptr, g) if kind == SIX_BITS else None
    for h in (0, 1):
        b = builder.add(builder.mul(g, e.const(2)), e.const(h))
        if kind == SIX_BITS:
            quads = [(six[j], j) for j in range(4 * h, 4 * h + 4)]
            wd, wm = e.six_bit_scales(w.d_arr, w.m_base, w.m_bytes, b)
        else:
            quads = [(v, j + 4 * h) for v, j in e.block_quads(BYTES16, w.u_ptr, b)]
            wd, wm = w.scales(w.d_base, w.d_bytes, b), w.scales(w.m_base, w.m_bytes, b)
        blocks.append((quads, wd, wm))
    return blocks


def _scale_unit(e, acc, blocks, g, x_quads, xd_ptr, xs_ptr):
    """acc after unit g's blocks against one token (activations at x_quads, xd_ptr, xs_ptr), in column order."""
    builder = e.builder
    x_scale = builder.load(builder.gep(xd_ptr, [g]))
    pair = builder.mul(g, e.const(2))
    for h, (quads, wd, wm) in enumerate(blocks):
        isum = e.block_sum(quads, builder.mul(g, e.const(8)), x_quads)
        if len(blocks) == 1:
            x_sum = builder.fadd(builder.load(builder.gep(xs_ptr, [pair])),
                                 builder.load(builder.gep(xs_ptr, [builder.add(pair, e.const(1))])))
        else:
            x_sum = builder.load(builder.gep(xs_ptr, [builder.add(pair, e.const(h))]))
        acc = e.accumulate(acc, isum, wd, wm, x_scale, x_sum)
    return acc


class _PanelWeights:
    """One panel's arrays as the IR sees them (u as 64-byte vectors, d and m as byte addresses)."""

    def __init__(self, e, u_arr, d_arr, m_arr):
        builder = e.builder
        self.e, self.d_arr = e, d_arr
        self.n_blocks = cgutils.unpack_tuple(builder, d_arr.shape, 2)[0]
        self.u_ptr = builder.bitcast(u_arr.data, _I32X16.as_pointer())       # one 64-byte vector per index
        self.d_bytes = cgutils.unpack_tuple(builder, d_arr.strides, 2)[0]
        self.m_bytes = cgutils.unpack_tuple(builder, m_arr.strides, 2)[0]
        self.d_base, self.m_base = builder.ptrtoint(d_arr.data, _I64), builder.ptrtoint(m_arr.data, _I64)

    def scales(self, base, row_bytes, b):
        return self.e.load_scales(self.e.builder.add(base, self.e.builder.mul(b, row_bytes)))

    def units(self, kind):
        """32-column units of the panel."""
        if kind in (BYTES16, SIX_BITS):
            return self.e.builder.udiv(self.n_blocks, self.e.const(2))
        return self.n_blocks


def _arrays(context, builder, signature, args):
    return [context.make_array(t)(context, builder, a) if isinstance(t, types.Array) else None
            for t, a in zip(signature.args, args)]


def _panel_dot(generic, u, d, m, x, xd, xs, layout, half_scales, out):
    """The typing and code of panel_dot (generic=False: vpdpbusd) and panel_dot_portable (plain vector IR)."""
    sig = types.void(u, d, m, x, xd, xs, layout, half_scales, out)

    def codegen(context, builder, signature, args):
        u_arr, d_arr, m_arr, x_arr, xd_arr, xs_arr, _, _, out_arr = _arrays(context, builder, signature, args)
        e = _Emitter(builder, generic, args[7])
        w = _PanelWeights(e, u_arr, d_arr, m_arr)
        x_quads = builder.bitcast(x_arr.data, _I32.as_pointer())
        acc = cgutils.alloca_once_value(builder, ir.Constant(_F32X16, None))

        def run(kind):
            with cgutils.for_range(builder, w.units(kind)) as loop:
                g = loop.index
                builder.store(_scale_unit(e, builder.load(acc), _unit_blocks(e, kind, w, g), g, x_quads,
                                          xd_arr.data, xs_arr.data), acc)

        e.dispatch(args[6], run)
        builder.store(builder.load(acc), builder.bitcast(out_arr.data, _F32X16.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen


# Columns of a panel unpacked at a time by panel_tile, in 32-column units: 512 columns of 16 rows are 8 KB of one-byte
# weights and up to 4 KB of float32 scales, which stay in L1 beside the tokens' activations while the tile passes over
# them (fewer units store and reload each token's sums more often; more leave L1).
TILE_UNITS = 16
# Tokens that share one load of a unit's unpacked weights from the scratch, their sums in as many registers
# (docs/performance.md: 4 took a 32-token tile of a Q4_K matrix in 0.75x the time of 1 on 2 cores, 8 no less than 4,
# 6 twice as long; Llama 3.2 1B's TTFT on 16 cores 0.90x llama.cpp's against 0.97x with 1).
TILE_TOKENS = 4


def _panel_tile(generic, u, d, m, x, xd, xs, layout, half_scales, out):
    """The typing and code of panel_tile (generic=False: vpdpbusd) and panel_tile_portable (plain vector IR)."""
    sig = types.void(u, d, m, x, xd, xs, layout, half_scales, out)

    def codegen(context, builder, signature, args):
        u_arr, d_arr, m_arr, x_arr, xd_arr, xs_arr, _, _, out_arr = _arrays(context, builder, signature, args)
        e = _Emitter(builder, generic, args[7])
        w = _PanelWeights(e, u_arr, d_arr, m_arr)
        n_tokens = cgutils.unpack_tuple(builder, x_arr.shape, 2)[0]

        def row_address(arr, t):
            return builder.add(builder.ptrtoint(arr.data, _I64),
                               builder.mul(t, cgutils.unpack_tuple(builder, arr.strides, 2)[0]))

        # the chunk's weights as BYTES (one block a unit) or BYTES16 (two), with float32 scales: 8 quad vectors a
        # unit, and per block 16 d and 16 m
        weights = cgutils.alloca_once(builder, _I32X16, size=TILE_UNITS * 8)
        wd_ram = cgutils.alloca_once(builder, _F32X16, size=TILE_UNITS * 2)
        wm_ram = cgutils.alloca_once(builder, _F32X16, size=TILE_UNITS * 2)

        def run(kind):
            per_unit = 2 if kind in (BYTES16, SIX_BITS) else 1
            units = w.units(kind)
            chunks = builder.udiv(builder.add(units, e.const(TILE_UNITS - 1)), e.const(TILE_UNITS))
            with cgutils.for_range(builder, chunks) as chunk_loop:
                first = builder.mul(chunk_loop.index, e.const(TILE_UNITS))
                left = builder.sub(units, first)
                count = builder.select(builder.icmp_unsigned("<", left, e.const(TILE_UNITS)), left,
                                       e.const(TILE_UNITS))
                with cgutils.for_range(builder, count) as unpack_loop:       # once per tile of tokens
                    local = unpack_loop.index
                    for h, (quads, wd, wm) in enumerate(_unit_blocks(e, kind, w, builder.add(first, local))):
                        for vector, j in quads:
                            at = builder.add(builder.mul(local, e.const(8)), e.const(j))
                            builder.store(vector, builder.gep(weights, [at]))
                        at = builder.add(builder.mul(local, e.const(per_unit)), e.const(h))
                        builder.store(wd, builder.gep(wd_ram, [at]))
                        builder.store(wm, builder.gep(wm_ram, [at]))
                def token_pass(tokens):
                    """The chunk's units against the given tokens: each unit's weights and scales are loaded from the
                    scratch once for all of them (one accumulator a token)."""
                    ptrs, accs = [], []
                    for t in tokens:
                        ptrs.append((
                            builder.inttoptr(builder.add(row_address(x_arr, t), builder.mul(first, e.const(64))),
                                             _I32.as_pointer()),
                            builder.inttoptr(builder.add(row_address(xd_arr, t), builder.mul(first, e.const(4))),
                                             ir.FloatType().as_pointer()),
                            builder.inttoptr(builder.add(row_address(xs_arr, t), builder.mul(first, e.const(8))),
                                             ir.FloatType().as_pointer()),
                            builder.inttoptr(row_address(out_arr, t), _F32X16.as_pointer())))
                        # the first chunk starts from 0 as panel_dot does; the others go on from the sums stored
                        acc = cgutils.alloca_once(builder, _F32X16)
                        builder.store(ir.Constant(_F32X16, None), acc)
                        with builder.if_then(builder.icmp_unsigned("!=", chunk_loop.index, e.const(0))):
                            builder.store(builder.load(ptrs[-1][3], align=4), acc)
                        accs.append(acc)
                    with cgutils.for_range(builder, count) as unit_loop:
                        local = unit_loop.index
                        blocks = []
                        for h in range(per_unit):
                            quads = [(builder.load(builder.gep(weights, [builder.add(builder.mul(local, e.const(8)),
                                                                                      e.const(j))])), j)
                                     for j in range(4 * h, 4 * h + (8 if per_unit == 1 else 4))]
                            at = builder.add(builder.mul(local, e.const(per_unit)), e.const(h))
                            blocks.append((quads, builder.load(builder.gep(wd_ram, [at])),
                                           builder.load(builder.gep(wm_ram, [at]))))
                        for acc, (x_quads, xd_ptr, xs_ptr, _) in zip(accs, ptrs):
                            builder.store(_scale_unit(e, builder.load(acc), blocks, local, x_quads, xd_ptr, xs_ptr),
                                          acc)
                    for acc, (_, _, _, out_ptr) in zip(accs, ptrs):
                        builder.store(builder.load(acc), out_ptr, align=4)

                # TILE_TOKENS tokens a pass, then the rest one at a time
                passes = builder.udiv(n_tokens, e.const(TILE_TOKENS))
                with cgutils.for_range(builder, passes) as pass_loop:
                    t0 = builder.mul(pass_loop.index, e.const(TILE_TOKENS))
                    token_pass([builder.add(t0, e.const(k)) for k in range(TILE_TOKENS)])
                rest = builder.mul(passes, e.const(TILE_TOKENS))
                with cgutils.for_range(builder, builder.sub(n_tokens, rest)) as token_loop:
                    token_pass([builder.add(rest, token_loop.index)])

        e.dispatch(args[6], run)
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


@intrinsic
def panel_tile(typingctx, u, d, m, x, xd, xs, layout, half_scales, out):
    """out[t, 0:16] (float32, rows C-contiguous) = the 16 rows of one panel . token t's activations, for every token
    of x [T, 2C] (xd [T, C / 32], xs [T, C / 16]; other arguments as panel_dot's): the panel's columns TILE_UNITS
    units at a time are unpacked once (integers and float32 block scales, into a scratch on the stack) and every
    token goes over them. Each token's blocks are scaled and summed in panel_dot's order, so out[t] is bit for bit
    panel_dot's for token t."""
    return _panel_tile(False, u, d, m, x, xd, xs, layout, half_scales, out)


@intrinsic
def panel_tile_portable(typingctx, u, d, m, x, xd, xs, layout, half_scales, out):
    """panel_tile without VNNI: panel_dot_portable's arithmetic, the tile's unpacking as panel_tile's."""
    return _panel_tile(True, u, d, m, x, xd, xs, layout, half_scales, out)


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


@njit(parallel=True, cache=True)
def panel_tile_matmul_vnni(u, d, m, xq, xd, xs, layout, half_scales, out):
    """panel_matmul_vnni for several tokens (a prompt's tile): one panel_tile per panel, which unpacks each block of
    weights and scales once for all the tokens."""
    for p in prange(u.shape[0]):
        panel_tile(u[p], d[p], m[p], xq, xd, xs, layout, half_scales, out[:, p * LANES:(p + 1) * LANES])


@njit(parallel=True, cache=True)
def panel_tile_matmul(u, d, m, xq, xd, xs, layout, half_scales, out):
    """panel_tile_matmul_vnni for CPUs without VNNI."""
    for p in prange(u.shape[0]):
        panel_tile_portable(u[p], d[p], m[p], xq, xd, xs, layout, half_scales, out[:, p * LANES:(p + 1) * LANES])


# The decode step's products (edgellm.cpu.decode_step): the parts of one projection (q/k/v of different types, say)
# from typed lists of their panels, all panels in one parallel region: on many cores a region's start costs about as
# much as a small matrix's product. Each parallel item is a run of panels of one part, so that the lists (whose every
# access is a call) are read once per run, not once per panel.
@njit(cache=True)
def _runs(meta, first, count, threads):
    """Panels per run, and the runs of matrices first..first+count-1 (meta[:, 3]: panels): about four per thread
    (numba's thread count, an argument: a compiled function that asks numba for it cannot be cached)."""
    total = 0
    for i in range(first, first + count):
        total += meta[i, 3]
    run = max(1, min(16, total // (4 * threads)))
    runs = 0
    for i in range(first, first + count):
        runs += (meta[i, 3] + run - 1) // run
    return run, runs


@njit(cache=True)
def _run_at(meta, first, run, r):
    """(matrix, its first panel of run r, the matrix's first output column)."""
    i, col = first, 0
    while r >= (meta[i, 3] + run - 1) // run:
        r -= (meta[i, 3] + run - 1) // run
        col += meta[i, 3] * LANES
        i += 1
    return i, r * run, col


@njit(parallel=True, cache=True)
def parts_matmul_vnni(U, D, M, meta, first, count, threads, xq, xd, xs, out):
    """out [T, padded columns of all parts] = x @ [parts].T for matrices first..first+count-1 of U, D, M (a
    PanelMatrix's u, d, m each; meta [matrix] = layout, half scales, rows, panels), one panel_dot per (panel, token)
    as panel_matmul_vnni computes them, each part's columns after the previous part's padded ones."""
    T = xq.shape[0]
    run, runs = _runs(meta, first, count, threads)
    for r in prange(runs):
        i, p0, col = _run_at(meta, first, run, np.int64(r))  # a prange index may be unsigned
        u, d, m, layout, half = U[i], D[i], M[i], meta[i, 0], meta[i, 1] != 0
        for p in range(p0, min(p0 + run, meta[i, 3])):
            for t in range(T):
                panel_dot(u[p], d[p], m[p], xq[t], xd[t], xs[t], layout, half,
                          out[t, col + p * LANES:col + (p + 1) * LANES])


@njit(parallel=True, cache=True)
def parts_matmul(U, D, M, meta, first, count, threads, xq, xd, xs, out):
    """parts_matmul_vnni for CPUs without VNNI."""
    T = xq.shape[0]
    run, runs = _runs(meta, first, count, threads)
    for r in prange(runs):
        i, p0, col = _run_at(meta, first, run, np.int64(r))
        u, d, m, layout, half = U[i], D[i], M[i], meta[i, 0], meta[i, 1] != 0
        for p in range(p0, min(p0 + run, meta[i, 3])):
            for t in range(T):
                panel_dot_portable(u[p], d[p], m[p], xq[t], xd[t], xs[t], layout, half,
                                   out[t, col + p * LANES:col + (p + 1) * LANES])
