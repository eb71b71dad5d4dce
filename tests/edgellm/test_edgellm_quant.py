"""The int8 repacking of GGUF blocks reproduces gguf's dequantization bit for bit, for every supported type."""

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize, quantize

from edgellm.cpu.quant import linear_q, repack
from edgellm.gguf.quant_types import QUANTIZED_TYPES

T = gguf.GGMLQuantizationType
ROWS, COLS = 8, 512


def raw_blocks(qtype: str, rng) -> np.ndarray:
    """Real blocks: quantized by gguf where it can; K-quants as random bytes with sane fp16 scales."""
    if qtype in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"):
        return quantize(rng.standard_normal((ROWS, COLS)).astype(np.float32), T[qtype])
    block_bytes, _ = gguf.GGML_QUANT_SIZES[T[qtype]][1], None
    raw = rng.integers(0, 256, (ROWS * COLS // 256, block_bytes), dtype=np.uint8)
    scale = np.full((raw.shape[0], 1), 0.01, np.float16).view(np.uint8)
    if qtype == "Q6_K":
        raw[:, -2:] = scale
    else:  # d and dmin lead the block
        raw[:, 0:2] = scale
        raw[:, 2:4] = scale
    return raw.reshape(ROWS, -1)


@pytest.mark.parametrize("qtype", QUANTIZED_TYPES)
def test_repack_is_lossless(qtype):
    raw = raw_blocks(qtype, np.random.default_rng(1))
    expected = dequantize(raw, T[qtype]).reshape(ROWS, COLS)
    qt = repack(qtype, raw, ROWS, COLS)
    assert qt.q.dtype == np.int8 and qt.q.shape == (ROWS, COLS)
    np.testing.assert_array_equal(qt.dequantize(), expected)


@pytest.mark.parametrize("qtype", QUANTIZED_TYPES)
def test_quantized_matmul_matches_the_dequantized_one(qtype):
    rng = np.random.default_rng(2)
    qt = repack(qtype, raw_blocks(qtype, rng), ROWS, COLS)
    x = rng.standard_normal((3, COLS)).astype(np.float32)
    exact = x.astype(np.float64) @ qt.dequantize().astype(np.float64).T
    got = linear_q(x, qt)
    assert np.abs(got - exact).max() <= 1e-5 * np.abs(exact).max()
