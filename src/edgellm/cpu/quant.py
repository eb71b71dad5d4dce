"""Quantized weights for the CPU: a lossless repacking of GGUF blocks, and integer dot products like llama.cpp's.

Every supported GGUF quant type is, per block of B weights, `w = d * q + m` with small integers q, a scale d and an
offset m (0 for the symmetric types). We unpack the bit fields once at load into
    q: int8 [rows, cols], d: float32 [rows, cols / B], m: float32 [rows, cols / B]
which reproduces `gguf.quants.dequantize` bit for bit (tested) at 1 byte per weight plus scales.
  Q4_0 B=32 q=nibble-8 | Q4_1 B=32 q=nibble, m | Q5_0 B=32 q=5 bits-16 | Q5_1 B=32 q=5 bits, m | Q8_0 B=32 int8
  Q4_K B=32 d=d*scale, m=-dmin*min | Q5_K the same with 5-bit q | Q6_K B=16 d=d*scale, q=6 bits-32

Activations stay float32 (llama.cpp quantizes them to int8 on a CPU; we do not): each output is
sum over weight blocks of d * (q . x over the block) + m * (sum of x over the block).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from gguf import QK_K
from numba import njit, prange

from ..gguf.quant_types import QUANTIZED_TYPES, block_size


@dataclass
class QTensor:
    q: np.ndarray       # int8 [rows, cols]
    d: np.ndarray       # float32 [rows, cols // block]
    m: np.ndarray       # float32 [rows, cols // block] (zeros for symmetric types)
    block: int          # weights per scale
    qtype: str
    # Q6_K: the file's integer scales, int8 [rows, cols / 16], and super-block scales, float32 [rows, cols / 256],
    # with d = super * scales exactly (an f16 times an int8 is exact in float32). Q4_K: its 6-bit scales and mins,
    # uint8 [rows, cols / 32, 2], and super scale and min, float32 [rows, cols / 256, 2], d = super * scale and
    # m = -(super min * min). The packed panels store these instead of d and m.
    sub_scales: Optional[np.ndarray] = None
    super_scales: Optional[np.ndarray] = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape

    @property
    def nbytes(self) -> int:
        return self.q.nbytes + self.d.nbytes + self.m.nbytes

    def dequantize(self) -> np.ndarray:
        r, c = self.q.shape
        q = self.q.reshape(r, c // self.block, self.block).astype(np.float32)
        return (self.d[:, :, None] * q + self.m[:, :, None]).reshape(r, c)


def _f16(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b).view(np.float16).astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """[n, 16] bytes -> [n, 32]: the low nibbles are elements 0..15, the high nibbles 16..31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _bits(qh: np.ndarray, count: int) -> np.ndarray:
    """[n, count/8] bytes of packed bits (little endian) -> [n, count] of 0/1."""
    return np.unpackbits(qh, axis=-1, bitorder="little")[:, :count]


def _k_scales(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K: 12 bytes -> 8 six-bit scales and 8 six-bit mins (ggml's get_scale_min_k4)."""
    s = scales.reshape(-1, 3, 4)
    d, m, md = s[:, 0], s[:, 1], s[:, 2]
    sc = np.concatenate([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], axis=-1)
    mn = np.concatenate([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], axis=-1)
    return sc.astype(np.float32), mn.astype(np.float32)


def _unpack(qtype: str, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """blocks: [n_blocks, bytes per block] -> q [n, per block], d and m [n, sub-blocks], sub-block size."""
    n = blocks.shape[0]
    if qtype == "Q8_0":
        return blocks[:, 2:].view(np.int8), _f16(blocks[:, :2]), np.zeros((n, 1), np.float32), 32
    if qtype == "Q4_0":
        return _nibbles(blocks[:, 2:]).astype(np.int8) - 8, _f16(blocks[:, :2]), np.zeros((n, 1), np.float32), 32
    if qtype == "Q4_1":
        return _nibbles(blocks[:, 4:]).astype(np.int8), _f16(blocks[:, :2]), _f16(blocks[:, 2:4]), 32
    if qtype == "Q5_0":
        q = _nibbles(blocks[:, 6:]) | (_bits(blocks[:, 2:6], 32) << 4)
        return q.astype(np.int8) - 16, _f16(blocks[:, :2]), np.zeros((n, 1), np.float32), 32
    if qtype == "Q5_1":
        q = _nibbles(blocks[:, 8:]) | (_bits(blocks[:, 4:8], 32) << 4)
        return q.astype(np.int8), _f16(blocks[:, :2]), _f16(blocks[:, 2:4]), 32
    if qtype in ("Q4_K", "Q5_K"):
        d, dmin = _f16(blocks[:, :2]), _f16(blocks[:, 2:4])
        sc, mn = _k_scales(blocks[:, 4:16])
        qs = blocks[:, 48:] if qtype == "Q5_K" else blocks[:, 16:]
        # 4 groups of 32 bytes; each gives 32 low-nibble then 32 high-nibble weights (8 sub-blocks of 32).
        g = qs.reshape(n, 4, 32)
        q = np.stack([g & 0x0F, g >> 4], axis=2).reshape(n, QK_K)
        if qtype == "Q5_K":
            qh = blocks[:, 16:48]  # 32 bytes; bit j of byte i belongs to sub-block j, element i
            q = q | (np.stack([(qh >> j) & 1 for j in range(8)], axis=1).reshape(n, QK_K) << 4)
        return q.astype(np.int8), d * sc, -(dmin * mn), 32
    if qtype == "Q6_K":
        ql, qh, scales, d = blocks[:, :128], blocks[:, 128:192], blocks[:, 192:208].view(np.int8), _f16(blocks[:, 208:])
        # Two halves of 128 weights; in each, 64 bytes of ql (low 4 bits) and 32 bytes of qh (2 bits each).
        lo = ql.reshape(n, 2, 1, 64) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)
        lo = (lo & 0x0F).reshape(n, 2, 4, 32)
        hi = qh.reshape(n, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)
        hi = (hi & 0x03).reshape(n, 2, 4, 32)
        q = (lo | (hi << 4)).astype(np.int8).reshape(n, QK_K) - 32
        return q, d * scales.astype(np.float32), np.zeros((n, 16), np.float32), 16
    raise ValueError(qtype)


def repack(qtype: str, raw: np.ndarray, rows: int, cols: int) -> QTensor:
    """raw: the tensor's bytes as the GGUF stores them ([rows, bytes per row], uint8)."""
    if qtype not in QUANTIZED_TYPES:
        raise ValueError(f"{qtype} is not a quantized type the CPU engine repacks")
    _, bytes_per_block = block_size(qtype)
    blocks = np.ascontiguousarray(raw).reshape(-1, bytes_per_block)
    q, d, m, sub = _unpack(qtype, blocks)
    nsub = cols // sub
    m = np.broadcast_to(m, d.shape) if m.shape != d.shape else m
    sub_scales = super_scales = None
    if qtype == "Q6_K":
        sub_scales = np.ascontiguousarray(blocks[:, 192:208].view(np.int8).reshape(rows, nsub))
        super_scales = np.ascontiguousarray(_f16(blocks[:, 208:]).reshape(rows, cols // QK_K))
    elif qtype == "Q4_K":
        sc, mn = _k_scales(blocks[:, 4:16])
        sub_scales = np.ascontiguousarray(np.stack([sc, mn], axis=-1).astype(np.uint8).reshape(rows, nsub, 2))
        super_scales = np.ascontiguousarray(np.concatenate([_f16(blocks[:, :2]), _f16(blocks[:, 2:4])], axis=1)
                                            .reshape(rows, cols // QK_K, 2))
    return QTensor(q=np.ascontiguousarray(q.reshape(rows, cols)),
                   d=np.ascontiguousarray(d.reshape(rows, nsub), dtype=np.float32),
                   m=np.ascontiguousarray(m.reshape(rows, nsub), dtype=np.float32),
                   block=sub, qtype=qtype, sub_scales=sub_scales, super_scales=super_scales)


@njit(parallel=True, fastmath=True, cache=True)
def qmatmul(wq, wd, wm, x, xsum, out):
    """out[t, r] = sum_b wd[r,b] * (wq[r, b-block] . x[t, b-block]) + wm[r,b] * xsum[t,b], rows over the threads.
    The int8 weights are widened to float32 in registers, so only 1 byte per weight (plus scales) crosses the
    memory bus; each weight block is read once for all T tokens."""
    R, C = wq.shape
    nb = wd.shape[1]
    B = C // nb
    T = x.shape[0]
    for r in prange(R):
        wr = wq[r]
        for t in range(T):
            out[t, r] = 0.0
        for b in range(nb):
            base = b * B
            for t in range(T):
                s = np.float32(0.0)
                for i in range(B):
                    s += np.float32(wr[base + i]) * x[t, base + i]
                out[t, r] += wd[r, b] * s + wm[r, b] * xsum[t, b]


def linear_q(x: np.ndarray, w: QTensor) -> np.ndarray:
    """x [T, C] float32 @ w.T with the weights in their repacked int8 form."""
    T, C = x.shape
    xsum = x.reshape(T, C // w.block, w.block).sum(axis=2, dtype=np.float32) if w.m.any() else \
        np.zeros((T, C // w.block), np.float32)
    out = np.empty((T, w.q.shape[0]), np.float32)
    qmatmul(w.q, w.d, w.m, np.ascontiguousarray(x, dtype=np.float32), xsum, out)
    return out
