"""The integer kernels of the CPU engine: 16-bit activations (two int8 digits) against the weights' panels, in both
layouts (VNNI and portable), for every supported quant type; the generated instructions."""

import platform
import re

import gguf
import numpy as np
import pytest
from gguf.quants import quantize
from numba import njit

from edgellm.cpu import vnni
from edgellm.cpu.int8_matmul import ACT_BLOCK, ACT_MAX, ActivationBuffers, dequantized_rows, padded_rows, to_panels
from edgellm.cpu.quant import repack
from edgellm.gguf.quant_types import QUANTIZED_TYPES

T = gguf.GGMLQuantizationType
ROWS, COLS = 40, 512  # 40 rows: the last 16-row panel is padded
LAYOUTS = [pytest.param(False, id="portable"),
           pytest.param(True, id="vnni", marks=pytest.mark.skipif(not vnni.AVAILABLE, reason="no AVX-512 VNNI"))]


def quantized_matrix(qtype: str, rng, cols: int = COLS):
    """Real blocks: quantized by gguf where it can; K-quants as random bytes with sane fp16 scales."""
    if qtype in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"):
        raw = quantize(rng.standard_normal((ROWS, cols)).astype(np.float32), T[qtype])
    else:
        raw = rng.integers(0, 256, (ROWS * cols // 256, gguf.GGML_QUANT_SIZES[T[qtype]][1]), dtype=np.uint8)
        scale = np.full((raw.shape[0], 1), 0.01, np.float16).view(np.uint8)
        if qtype == "Q6_K":
            raw[:, -2:] = scale
        else:  # d and dmin lead the block
            raw[:, 0:4] = np.concatenate([scale, scale], axis=1)
    return repack(qtype, raw.reshape(ROWS, -1), ROWS, cols)


def activations(rng, tokens=3, cols: int = COLS) -> np.ndarray:
    x = rng.standard_normal((tokens, cols)).astype(np.float32)
    x[:, 7] *= 40.0  # an outlier, as real residual streams have
    return x


def integer_activations(buf: ActivationBuffers, tokens: int) -> np.ndarray:
    """The 16-bit integers u = 254 hi + lo of the activations, [tokens, COLS]."""
    digits = buf.xq[:tokens, :2 * COLS].astype(np.int64).reshape(tokens, -1, 2, ACT_BLOCK)
    return (254 * digits[:, :, 0] + digits[:, :, 1]).reshape(tokens, COLS)


def dequantized_activations(buf: ActivationBuffers, tokens: int) -> np.ndarray:
    u = integer_activations(buf, tokens).astype(np.float64).reshape(tokens, -1, ACT_BLOCK)
    return (u * buf.xd[:tokens, :COLS // ACT_BLOCK, None]).reshape(tokens, COLS)


@pytest.mark.parametrize("vnni_layout", LAYOUTS)
@pytest.mark.parametrize("qtype", QUANTIZED_TYPES)
def test_integer_product_is_exact_on_the_quantized_activations(qtype, vnni_layout):
    """The integer sums are exact: the product equals (quantized activations) @ (dequantized weights) up to float32
    rounding of the per-block scaling."""
    rng = np.random.default_rng(3)
    qt = quantized_matrix(qtype, rng)
    w = to_panels(qt, vnni_layout=vnni_layout)
    x = activations(rng)
    buf = ActivationBuffers(4, COLS)
    buf.quantize(x)
    out = np.full((3, padded_rows(w)), np.nan, np.float32)
    got = buf.matmul(w, out)
    exact = dequantized_activations(buf, 3) @ qt.dequantize().astype(np.float64).T
    assert got.shape == (3, ROWS)
    assert np.abs(got - exact).max() <= 2e-6 * np.abs(exact).max()
    # against float32 activations only the 16-bit rounding of x differs
    float_exact = x.astype(np.float64) @ qt.dequantize().astype(np.float64).T
    assert np.abs(got - float_exact).max() <= 1e-4 * np.abs(float_exact).max()


@pytest.mark.parametrize("vnni_layout", LAYOUTS)
@pytest.mark.parametrize("qtype", QUANTIZED_TYPES)
def test_rows_of_the_panels_are_the_dequantized_rows(qtype, vnni_layout):
    qt = quantized_matrix(qtype, np.random.default_rng(4))
    rows = np.array([0, 17, 39, 5])
    np.testing.assert_array_equal(dequantized_rows(to_panels(qt, vnni_layout=vnni_layout), rows),
                                  qt.dequantize()[rows])


@pytest.mark.parametrize("vnni_layout", LAYOUTS)
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "bytes"])
@pytest.mark.parametrize("qtype", QUANTIZED_TYPES)
def test_a_tile_of_tokens_gives_each_tokens_one_token_product_bit_for_bit(qtype, packed, vnni_layout):
    """The prefill kernel (vnni.panel_tile: each block unpacked once for the tile's tokens, TILE_UNITS 32-column
    units at a time) gives every token the decode kernel's (vnni.panel_dot) bits; columns over several chunks, the
    last one partial where the type allows (K-quants come in 256 columns)."""
    rng = np.random.default_rng(11)
    for cols in ((768,) if qtype.endswith("_K") else (96, 800)):
        w = to_panels(quantized_matrix(qtype, rng, cols), vnni_layout=vnni_layout, packed=packed)
        tokens = 5
        buf = ActivationBuffers(tokens, cols)
        x = activations(rng, tokens, cols)
        buf.quantize(x)
        tile = buf.matmul(w, np.full((tokens, padded_rows(w)), np.nan, np.float32))
        for t in range(tokens):
            buf.quantize(x[t:t + 1])
            one = buf.matmul(w, np.full((1, padded_rows(w)), np.nan, np.float32))
            np.testing.assert_array_equal(tile[t].view(np.uint32), one[0].view(np.uint32))


PACKED = {"Q6_K": (vnni.SIX_BITS, vnni.BYTES16), "Q4_K": (vnni.K_NIBBLES, vnni.NIBBLES)}


@pytest.mark.parametrize("vnni_layout", LAYOUTS)
@pytest.mark.parametrize("qtype", list(PACKED))
def test_packed_k_quant_panels_give_the_unpacked_layouts_products_bit_for_bit(qtype, vnni_layout):
    """Q6_K at 6 bits a weight (low nibbles + 2-bit top plane) and Q4_K, both with the file's integer scales and
    super scales, unpacked in registers: exactly the products of the layouts that store float scales (and Q6_K one
    byte a weight), and the same dequantized rows."""
    rng = np.random.default_rng(7)
    qt = quantized_matrix(qtype, rng)
    packed = to_panels(qt, vnni_layout=vnni_layout)
    reference = to_panels(qt, vnni_layout=vnni_layout, packed=False)
    assert (packed.layout, reference.layout) == PACKED[qtype]
    buf = ActivationBuffers(4, COLS)
    for tokens in (1, 3):
        buf.quantize(activations(rng, tokens))
        got = buf.matmul(packed, np.full((tokens, padded_rows(packed)), np.nan, np.float32))
        want = buf.matmul(reference, np.full((tokens, padded_rows(reference)), np.nan, np.float32))
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    rows = np.array([0, 17, 39, 5])
    np.testing.assert_array_equal(dequantized_rows(packed, rows), dequantized_rows(reference, rows))


@pytest.mark.parametrize("vnni_layout", LAYOUTS)
def test_q6_k_panels_store_six_bits_a_weight_and_the_files_scales(vnni_layout):
    """6 bits of weight, an int8 scale per 16 weights and one float16 (VNNI) or float32 (portable) per 256: 6.5625
    bits a weight with VNNI, as the GGUF file's 210 bytes per 256, or 6.625."""
    w = to_panels(quantized_matrix("Q6_K", np.random.default_rng(8)), vnni_layout=vnni_layout)
    weights = padded_rows(w) * COLS
    assert w.u.nbytes * 8 == 6 * weights
    assert w.d.nbytes * 8 == weights // 2
    assert w.m.nbytes * 8 == weights // 256 * (16 if vnni_layout else 32)
    assert w.half_scales == vnni_layout
    file_bits = 8 * gguf.GGML_QUANT_SIZES[T.Q6_K][1] / 256
    assert w.nbytes * 8 / weights == (file_bits if vnni_layout else file_bits + 16 / 256)


@pytest.mark.parametrize("vnni_layout", LAYOUTS)
def test_q4_k_panels_store_four_bits_a_weight_and_the_files_scales(vnni_layout):
    """4 bits of weight, a 6-bit scale and a 6-bit min per 32 weights (24 bytes per block of a 16-row panel), a super
    scale and min per 256: 4.5 bits a weight with VNNI (float16 super scales), as the GGUF file's 144 bytes per 256,
    or 4.625 (float32)."""
    w = to_panels(quantized_matrix("Q4_K", np.random.default_rng(9)), vnni_layout=vnni_layout)
    weights = padded_rows(w) * COLS
    assert w.u.nbytes * 8 == 4 * weights
    assert w.d.nbytes * 8 == weights * 12 // 32
    assert w.m.nbytes * 8 == weights // 256 * 2 * (16 if vnni_layout else 32)
    file_bits = 8 * gguf.GGML_QUANT_SIZES[T.Q4_K][1] / 256
    assert w.nbytes * 8 / weights == (file_bits if vnni_layout else file_bits + 32 / 256)


def test_activations_are_16_bit_integers_as_two_int8_digits():
    rng = np.random.default_rng(5)
    x = activations(rng, tokens=2)
    x[1, 32:64] = 0.0  # a block of zeros: scale 0, digits 0
    buf = ActivationBuffers(2, COLS)
    buf.quantize(x)
    blocks = x.reshape(2, -1, ACT_BLOCK)
    np.testing.assert_allclose(buf.xd[:2, :COLS // ACT_BLOCK], np.abs(blocks).max(2) / ACT_MAX, rtol=1e-6)
    assert np.abs(buf.xq[:2, :2 * COLS].astype(int)).max() <= 127
    u = integer_activations(buf, 2)
    assert np.abs(u).max() == ACT_MAX  # the largest of each block reaches the top of the range
    assert not u[1, 32:64].any()
    assert np.abs(dequantized_activations(buf, 2) - x).max() <= buf.xd[:2].max() / 2 * (1 + 1e-4)
    sums = u.astype(np.float64).reshape(2, -1, 16).sum(2) * np.repeat(buf.xd[:2, :COLS // 32], 2, 1)
    np.testing.assert_allclose(buf.xs[:2, :COLS // 16], sums, rtol=1e-6)


def instructions(asm: str) -> dict:
    names = ("vpdpbusd", "vpdpwssd", "vpmaddubsw", "vpmaddwd", "vpmulld")
    return {n: len(re.findall(rf"\b{n}\b", asm)) for n in names}


@pytest.mark.skipif(not vnni.AVAILABLE, reason="no AVX-512 VNNI")
def test_the_vnni_kernel_is_vpdpbusd():
    @njit
    def one_panel(u, d, m, x, xd, xs, layout, half, out):
        vnni.panel_dot(u, d, m, x, xd, xs, layout, half, out)

    w = to_panels(quantized_matrix("Q4_1", np.random.default_rng(6)), vnni_layout=True)
    buf = ActivationBuffers(1, COLS)
    buf.quantize(activations(np.random.default_rng(7), tokens=1))
    out = np.zeros(16, np.float32)
    one_panel(w.u[0], w.d[0], w.m[0], buf.xq[0], buf.xd[0], buf.xs[0], w.layout, w.half_scales, out)
    found = instructions("\n".join(one_panel.inspect_asm().values()))
    print("VNNI panel kernel:", found)
    assert found["vpdpbusd"] > 0


def test_the_portable_kernel_is_vector_code():
    """The kernel for CPUs without VNNI (its arithmetic is checked by the exactness test above): on x86 the
    compiler turns its 16-bit products with neighbours added into vpmaddwd (or vpdpwssd where the CPU has it)."""
    @njit
    def one_panel(u, d, m, x, xd, xs, layout, half, out):
        vnni.panel_dot_portable(u, d, m, x, xd, xs, layout, half, out)

    qt = quantized_matrix("Q8_0", np.random.default_rng(6))
    w = to_panels(qt, vnni_layout=False)
    buf = ActivationBuffers(1, COLS)
    buf.quantize(activations(np.random.default_rng(7), tokens=1))
    out = np.zeros(16, np.float32)
    one_panel(w.u[0], w.d[0], w.m[0], buf.xq[0], buf.xd[0], buf.xs[0], w.layout, w.half_scales, out)
    exact = dequantized_activations(buf, 1) @ qt.dequantize()[:16].astype(np.float64).T
    assert np.abs(out - exact[0]).max() <= 2e-6 * np.abs(exact).max()
    found = instructions("\n".join(one_panel.inspect_asm().values()))
    print("portable panel kernel:", found)
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert found["vpmaddwd"] + found["vpdpwssd"] > 0
    assert found["vpdpbusd"] == 0


@pytest.mark.slow
def test_without_vnni_the_engine_takes_the_portable_kernels_and_computes_the_same_logits(tmp_path):
    """EDGELLM_CPU_NO_VNNI=1 stands for a CPU without VNNI (AVX2 only, arm64): the panels in the portable layout,
    the plain-code kernel, and the same logits as the VNNI kernel up to float32 rounding (here, where both run)."""
    import os
    import subprocess
    import sys

    from synthgguf import synthetic

    import edgellm

    path = tmp_path / "tiny-q4km.gguf"
    preset = synthetic.Preset(arch="llama", dim=256, layers=2, heads=4, kv_heads=2, ffn=512, vocab=512, tied=True,
                              published=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(synthetic.PRESETS, "tiny-portable", preset)
        synthetic.write_synthetic("tiny-portable", path, quant="Q4_K_M")
    tokens = list(range(1, 40))
    script = ("import sys, numpy as np, edgellm\n"
              f"gen = edgellm.load({str(path)!r}, device='cpu', max_context=64)\n"
              "print(gen.build_info())\n"
              f"np.save(sys.argv[1], gen.logits({tokens!r}))\n")
    out = tmp_path / "portable.npy"
    done = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True,
                          env=dict(os.environ, EDGELLM_CPU_NO_VNNI="1"))
    assert done.returncode == 0, done.stderr
    assert "portable integer dot products" in done.stdout
    portable = np.load(out)
    reference = edgellm.load(path, device="cpu", max_context=64, quantized=False).logits(tokens)
    assert np.abs(portable - reference).max() <= 1e-3 * np.abs(reference).max()
    if vnni.AVAILABLE:
        here = edgellm.load(path, device="cpu", max_context=64).logits(tokens)
        # the same integer sums; only the float32 scaling's order differs, carried through the layers
        assert np.abs(portable - here).max() <= 1e-4 * np.abs(here).max()
