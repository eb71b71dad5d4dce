"""Integer matrix products on the CPU: 16-bit activations, as two int8 digits, times the weights' small integers.

Weights (from a QTensor, w = d * q + m per block) are stored as *row panels*: 16 rows side by side, each row's
weights in groups of 4 consecutive columns ("quads"), so that one 64-byte vector holds one quad of each of the 16
rows. The integers are made unsigned (q + offset, the offset folded into m), as the u8 x s8 integer dot-product
instructions (vpdpbusd, vpmaddubsw) want them. Activations are quantized per block of 32 with one float scale,
d = max|x| / ACT_MAX and u = round(x / d), and each u is stored as two int8 digits u = 254 hi + lo.

A block of 32 weights of 16 rows against one token's 32 activations is then 8 vector steps per digit, each four
u8 x s8 products summed into 16 int32 lanes (one lane per row, the token's quad broadcast to all of them): no
horizontal sums; the two digits' sums are joined as 254 hi + lo once per block. With AVX-512 VNNI each step is one
vpdpbusd (edgellm.cpu.vnni); elsewhere the same steps in plain vector code that LLVM lowers for the CPU at hand
(vpmaddwd on x86). The weights' and the activations' scales are applied once per block, in float32:
    out[t, r] = sum over blocks b of  wd[r, b] * xd[t, b] * (u[r, b] . xu[t, b])  +  wm[r, b] * xd[t, b] * sum(xu[t, b])
In a batch (prefill) each weight block is read once for all its tokens and stays in L1 while they pass over it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from . import vnni
from .quant import QTensor

LANES = vnni.LANES  # rows per panel: 16 int32 sums fill one 512-bit register
QUAD = 4            # products summed into one int32 lane per step
ACT_BLOCK = 32      # activations per scale
# Activations are 16-bit integers, |u| <= ACT_MAX, as two int8 digits u = 254 hi + lo with |hi|, |lo| <= 127 (at
# 32385 = 127.5 * 254, hi could round to 128), as the GPU engine holds them. int8 activations (Q8_0's rounding, as
# llama.cpp's CPU path takes them) move the top-1 choice between near-tied logits against float32 activations at a few
# percent of positions (benchmarks/cpu_agreement.py --sensitivity: every kind of product contributes); 16 bits round
# about 250x finer, for twice the integer steps and the same weight traffic.
ACT_MAX = 254 * 127 + 126
SUM_BLOCK = 16      # activations per stored sum (the smallest weight block, Q6_K's)

# q + offset >= 0 for every type (the signed ones); the unsigned types have offset 0
UNSIGNED_OFFSET = {"Q8_0": 128, "Q4_0": 8, "Q5_0": 16, "Q6_K": 32}


FOUR_BIT = ("Q4_0", "Q4_1", "Q4_K")  # unsigned values 0..15: two per byte in the VNNI layout


@dataclass
class PanelMatrix:
    u: np.ndarray       # uint8 [panels, vectors, 64]: quad c of rows 16p..16p+15, row after row (two quads per
                        # vector in NIBBLES: low nibbles quad j, high nibbles quad j + 4 of each 32-block)
    d: np.ndarray       # [panels, cols / block, 64 or 32]: the 16 rows' scales of each block as raw bytes (uint8)
    m: np.ndarray       # of float32, or float16 where that holds them exactly (half_scales); m has the offset folded in
    rows: int           # real rows (the last panel is padded with zero rows)
    block: int          # weights per scale (32, or 16 for Q6_K)
    qtype: str
    layout: int         # vnni.NIBBLES, BYTES, BYTES16, SIX_BITS or K_NIBBLES (d: integer scales, m: super scales)
    half_scales: bool
    vnni: bool          # for the VNNI kernel (vnni.panel_dot), else the portable one (vnni.panel_dot_portable)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.d.shape[1] * self.block

    @property
    def nbytes(self) -> int:
        return self.u.nbytes + self.d.nbytes + self.m.nbytes


def _by_panel(a: np.ndarray, panels: int) -> np.ndarray:
    """[panels * 16, n] -> [panels, n, 16]: one value per row of the panel, side by side."""
    return np.ascontiguousarray(a.reshape(panels, LANES, -1).transpose(0, 2, 1))


def _float16_exact(*arrays: np.ndarray) -> bool:
    """Whether float16 holds every value of the arrays exactly (then the VNNI kernel takes them in half precision)."""
    return all(np.array_equal(a.astype(np.float16).astype(np.float32), a) for a in arrays)


def _six_bit_panels(quads: np.ndarray, qt: QTensor, padded: int, vnni_layout: bool) -> PanelMatrix:
    """Q6_K's panels at 6 bits a weight (vnni.SIX_BITS): per 32 columns, the 8 quad vectors (values 0..63) become 4
    vectors of their low 4 bits (quad j in the low nibbles, quad j + 4 in the high ones) and 2 vectors of their top 2
    bits (vector k holds quads k, k + 2, k + 4, k + 6 in bits 0-1, 2-3, 4-5, 6-7). The scales are the file's own:
    one int8 per 16 weights of a row (in d) and one float per 256 (in m: float16 for the VNNI kernel, float32 for the
    portable one); the kernels rebuild d = super * int8 and m = 0 - 32 d in float32, the values BYTES16 stores."""
    panels, vectors, _ = quads.shape
    q = quads.reshape(panels, vectors // 8, 8, 64)
    low, high = q & 0x0F, q >> 4
    nibbles = low[:, :, :4] | (low[:, :, 4:] << 4)
    tops = np.stack([high[:, :, k] | (high[:, :, k + 2] << 2) | (high[:, :, k + 4] << 4) | (high[:, :, k + 6] << 6)
                     for k in (0, 1)], axis=2)
    u = np.ascontiguousarray(np.concatenate([nibbles, tops], axis=2).reshape(panels, -1, 64))
    rows = qt.q.shape[0]
    sub = np.zeros((padded, qt.sub_scales.shape[1]), np.int8)
    sub[:rows] = qt.sub_scales
    sup = np.zeros((padded, qt.super_scales.shape[1]), np.float32)
    sup[:rows] = qt.super_scales
    half = bool(vnni_layout and _float16_exact(sup))
    sup = _by_panel(sup, panels).astype(np.float16 if half else np.float32)
    return PanelMatrix(u=u, d=_by_panel(sub, panels).view(np.uint8),
                       m=np.ascontiguousarray(sup).view(np.uint8).reshape(panels, sup.shape[1], -1), rows=rows,
                       block=qt.block, qtype=qt.qtype, layout=vnni.SIX_BITS, half_scales=half, vnni=bool(vnni_layout))


def _k_nibble_scales(qt: QTensor, padded: int, panels: int, vnni_layout: bool):
    """Q4_K's scales for vnni.K_NIBBLES: per block of 32 and panel, 16 bytes scale | (min >> 4) << 6 and 8 bytes of
    the mins' low 4 bits (row i in the low nibble of byte i, row i + 8 in its high nibble); per 256 columns the 16
    rows' super scales, then their super mins (float16 for the VNNI kernel, float32 for the portable one)."""
    rows = qt.q.shape[0]
    sub = np.zeros((padded,) + qt.sub_scales.shape[1:], np.uint8)
    sub[:rows] = qt.sub_scales
    scale, minimum = _by_panel(sub[..., 0], panels), _by_panel(sub[..., 1], panels)     # [panels, blocks, 16]
    low = minimum & 0x0F
    d = np.concatenate([scale | ((minimum >> 4) << 6), low[..., :8] | (low[..., 8:] << 4)], axis=-1)
    sup = np.zeros((padded,) + qt.super_scales.shape[1:], np.float32)
    sup[:rows] = qt.super_scales
    half = bool(vnni_layout and _float16_exact(sup))
    sup = np.stack([_by_panel(sup[..., 0], panels), _by_panel(sup[..., 1], panels)], axis=2)  # [panels, n, 2, 16]
    m = np.ascontiguousarray(sup.astype(np.float16 if half else np.float32)).view(np.uint8)
    return np.ascontiguousarray(d), m.reshape(panels, sup.shape[1], -1), half


def to_panels(qt: QTensor, vnni_layout: bool | None = None, packed: bool = True) -> PanelMatrix:
    """The panel form of a repacked GGUF matrix, 4-bit weights two per byte, Q6_K's at 6 bits (packed=False:
    one byte each, BYTES16, the reference the packed form is checked against). vnni_layout (default: whether this CPU
    has VNNI) is for the VNNI kernel, which also takes the scales in float16 where float16 holds them exactly (the
    portable kernel keeps float32: converting half precision needs F16C on x86)."""
    vnni_layout = vnni.AVAILABLE if vnni_layout is None else vnni_layout
    rows, cols = qt.q.shape
    if cols % ACT_BLOCK or qt.block % SUM_BLOCK:
        raise ValueError(f"{qt.qtype} matrix of {cols} columns, blocks of {qt.block}: the integer path needs "
                         f"columns in blocks of {ACT_BLOCK}")
    offset = UNSIGNED_OFFSET.get(qt.qtype, 0)
    padded = -(-rows // LANES) * LANES
    panels = padded // LANES
    u = np.zeros((padded, cols), np.uint8)
    u[:rows] = (qt.q.astype(np.int16) + offset).astype(np.uint8)
    d = np.zeros((padded, qt.d.shape[1]), np.float32)
    m = np.zeros_like(d)
    d[:rows] = qt.d
    m[:rows] = qt.m - offset * qt.d
    # [panel, quad, row, column]
    quads = u.reshape(panels, LANES, cols // QUAD, QUAD).transpose(0, 2, 1, 3).reshape(panels, cols // QUAD, 64)
    if packed and qt.qtype == "Q6_K" and qt.sub_scales is not None:
        return _six_bit_panels(quads, qt, padded, bool(vnni_layout))
    layout = vnni.BYTES16 if qt.block == 16 else vnni.BYTES
    if qt.qtype in FOUR_BIT:
        blocks = quads.reshape(panels, cols // ACT_BLOCK, 2, 4, 64)  # [.., first or second half of the 8 quads, ..]
        quads = blocks[:, :, 0] | (blocks[:, :, 1] << 4)
        layout = vnni.NIBBLES
    if packed and qt.qtype == "Q4_K" and qt.sub_scales is not None:
        d, m, half = _k_nibble_scales(qt, padded, panels, bool(vnni_layout))
        return PanelMatrix(u=np.ascontiguousarray(quads.reshape(panels, -1, 64)), d=d, m=m, rows=rows,
                           block=qt.block, qtype=qt.qtype, layout=vnni.K_NIBBLES, half_scales=half,
                           vnni=bool(vnni_layout))
    d, m = _by_panel(d, panels), _by_panel(m, panels)
    half = bool(vnni_layout and _float16_exact(d, m))
    scale_type = np.float16 if half else np.float32
    d = np.ascontiguousarray(d.astype(scale_type)).view(np.uint8).reshape(panels, d.shape[1], -1)
    m = np.ascontiguousarray(m.astype(scale_type)).view(np.uint8).reshape(panels, m.shape[1], -1)
    return PanelMatrix(u=np.ascontiguousarray(quads.reshape(panels, -1, 64)), d=d, m=m, rows=rows, block=qt.block,
                       qtype=qt.qtype, layout=layout, half_scales=half, vnni=bool(vnni_layout))


def dequantized_rows(w: PanelMatrix, rows: np.ndarray) -> np.ndarray:
    """float32 [len(rows), cols]: rows of w (an embedding lookup), in any layout."""
    panel, lane = rows // LANES, rows % LANES
    n, blocks = len(rows), w.d.shape[1]
    u = w.u[panel]                                                                       # [n, vectors, 64]
    if w.layout == vnni.SIX_BITS:
        u = _six_bit_quads(u)
    quads = u.reshape(n, u.shape[1], LANES, QUAD)[np.arange(n), :, lane]                 # [n, vectors, 4]
    if w.layout in (vnni.NIBBLES, vnni.K_NIBBLES):
        halves = np.stack([quads & 0x0F, quads >> 4], axis=2)                            # [n, vectors, 2, 4]
        q = halves.reshape(n, blocks, 4, 2, QUAD).transpose(0, 1, 3, 2, 4).reshape(n, -1)
    else:
        q = quads.reshape(n, -1)
    scale_type = np.float16 if w.half_scales else np.float32

    def per_row(s):
        s = s.view(scale_type)
        return s[panel].reshape(n, -1, LANES)[np.arange(n), :, lane].astype(np.float32)   # [n, blocks]

    if w.layout == vnni.SIX_BITS:
        sub = w.d.view(np.int8)[panel].reshape(n, blocks, LANES)[np.arange(n), :, lane].astype(np.float32)
        sup = per_row(w.m)                                                     # [n, blocks / 16]
        d = np.repeat(sup, blocks // sup.shape[1], axis=1) * sub
        m = np.float32(0.0) - np.float32(UNSIGNED_OFFSET["Q6_K"]) * d
    elif w.layout == vnni.K_NIBBLES:
        codes = w.d[panel]                                                              # [n, blocks, 24]
        low = np.concatenate([codes[..., 16:] & 0x0F, codes[..., 16:] >> 4], axis=-1)
        scale = (codes[..., :16] & 0x3F)[np.arange(n), :, lane].astype(np.float32)
        minimum = (low | ((codes[..., :16] >> 6) << 4))[np.arange(n), :, lane].astype(np.float32)
        sup = w.m.view(scale_type)[panel].reshape(n, -1, 2, LANES)[np.arange(n), :, :, lane].astype(np.float32)
        per_super = blocks // sup.shape[1]
        d = np.repeat(sup[:, :, 0], per_super, axis=1) * scale
        m = -(np.repeat(sup[:, :, 1], per_super, axis=1) * minimum) - np.float32(0.0) * d
    else:
        d, m = per_row(w.d), per_row(w.m)
    return (q.reshape(n, blocks, -1) * d[:, :, None] + m[:, :, None]).reshape(n, -1).astype(np.float32)


def _six_bit_quads(u: np.ndarray) -> np.ndarray:
    """[..., 6 per 32 columns, 64] SIX_BITS vectors -> [..., 8 per 32 columns, 64] quad vectors of values 0..63."""
    packed = u.reshape(*u.shape[:-2], -1, 6, 64)
    nibbles, tops = packed[..., :4, :], packed[..., 4:, :]
    low = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-2)                        # quads 0..7
    high = np.stack([(tops[..., j % 2, :] >> (2 * (j // 2))) & 0x03 for j in range(8)], axis=-2)
    return (low | (high << 4)).reshape(*u.shape[:-2], -1, 64)


@njit(cache=True)
def _quantize_block(x, t, a, xq, xd, xs):
    """Block a (32 activations) of token t: its scale, its two digits per activation, its two half-block sums."""
    base = a * ACT_BLOCK
    amax = np.float32(0.0)
    for i in range(base, base + ACT_BLOCK):
        amax = max(amax, abs(x[t, i]))
    d = amax / np.float32(ACT_MAX)
    inv = np.float32(1.0) / d if d > 0 else np.float32(0.0)
    xd[t, a] = d
    for half in range(ACT_BLOCK // SUM_BLOCK):
        s = np.int32(0)
        for e in range(half * SUM_BLOCK, (half + 1) * SUM_BLOCK):
            # np.rint rounds half to even as round() does, without round()'s conversion to an integer and back
            # (the same values; about 1.5x faster in this loop)
            u = np.rint(x[t, base + e] * inv)
            hi = np.rint(u / np.float32(254.0))
            xq[t, 2 * base + e] = np.int8(hi)
            xq[t, 2 * base + ACT_BLOCK + e] = np.int8(u - np.float32(254.0) * hi)
            s += np.int32(u)
        xs[t, a * 2 + half] = d * np.float32(s)


@njit(parallel=True, cache=True)
def quantize_activations(x, xq, xd, xs):
    """x float32 [T, C] -> xq int8 [T, 2C]: per block of 32, u = round(x / d) with d = max|x| / ACT_MAX (xd [T, C/32])
    written as its two int8 digits u = 254 hi + lo (the block's 32 hi, then its 32 lo); xs [T, C/16] the scaled sums
    d * sum(u) of each half block (for the weights' offsets m). The blocks in parallel: a prompt's tile has
    thousands."""
    T, C = x.shape
    blocks = C // ACT_BLOCK
    for item in prange(T * blocks):
        _quantize_block(x, item // blocks, item % blocks, xq, xd, xs)


@njit(cache=True)
def quantize_activations_serial(x, xq, xd, xs):
    """quantize_activations on the calling thread, the same values: one token's few hundred blocks take less time
    than waking the other threads."""
    T, C = x.shape
    for t in range(T):
        for a in range(C // ACT_BLOCK):
            _quantize_block(x, t, a, xq, xd, xs)


class ActivationBuffers:
    """The quantized activations of up to `max_tokens` tokens of up to `max_cols` columns and the kernel's scratch,
    allocated once per model: quantize once, multiply with every matrix that reads the same activations."""

    def __init__(self, max_tokens: int, max_cols: int):
        self.xq = np.zeros((max_tokens, 2 * max_cols), np.int8)  # two digits per activation
        self.xd = np.zeros((max_tokens, max_cols // ACT_BLOCK), np.float32)
        self.xs = np.zeros((max_tokens, max_cols // SUM_BLOCK), np.float32)
        self.T = self.C = 0

    def quantize(self, x: np.ndarray) -> None:
        T, C = x.shape
        self.T, self.C = T, C
        quantize = quantize_activations if T > 1 else quantize_activations_serial
        quantize(x, self.xq[:T, :2 * C], self.xd[:T, :C // ACT_BLOCK], self.xs[:T, :C // SUM_BLOCK])

    def matmul(self, w: PanelMatrix, out: np.ndarray) -> np.ndarray:
        """out [T, >= padded rows] (C-contiguous rows) = the quantized activations @ w.T; returns out[:, :rows]."""
        T, C = self.T, self.C
        xq, xd, xs = self.xq[:T, :2 * C], self.xd[:T, :C // ACT_BLOCK], self.xs[:T, :C // SUM_BLOCK]
        if T == 1:  # decode: one pass over each panel, its blocks unpacked in registers
            kernel = vnni.panel_matmul_vnni if w.vnni else vnni.panel_matmul
        else:       # a tile of tokens: each block unpacked once for all of them (the same bits as one at a time)
            kernel = vnni.panel_tile_matmul_vnni if w.vnni else vnni.panel_tile_matmul
        kernel(w.u, w.d, w.m, xq, xd, xs, w.layout, w.half_scales, out)
        return out[:, :w.rows]


def padded_rows(w: PanelMatrix) -> int:
    return w.u.shape[0] * LANES
