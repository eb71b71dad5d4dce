"""GGUF blocks regrouped by field for the GPU, and the quantized matrix-vector kernels on them.

The layout is checked here on real bytes (a round trip to the very same bytes, no byte added); the kernels' argument
checks run without a GPU; their products are checked against a float64 reference on a GPU (marked `gpu`).
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from edgellm.errors import KernelError, UnsupportedModelError
from edgellm.cuda.gemv import activation_bytes, activation_digits
from edgellm.cuda.layout import GPU_TYPES, block_bytes, block_weights, blocks, planar

ALIGNED = 1 << 20  # a fake 16-byte aligned device address: argument checks never dereference it


def random_blocks(qtype: str, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Random quant blocks with finite, small fp16 scales (any bit pattern is a valid block otherwise)."""
    rng = np.random.default_rng(seed)
    block = block_weights(qtype)
    raw = rng.integers(0, 256, rows * cols // block * block_bytes(qtype), dtype=np.uint8)
    fields = planar(qtype, raw, rows, cols)
    scales = fields["d"].view(np.float16)
    scales[:] = rng.uniform(0.001, 0.02, scales.size).astype(np.float16)
    return blocks(qtype, fields)


@pytest.mark.parametrize("qtype", GPU_TYPES)
def test_planar_is_the_same_bytes_regrouped(qtype):
    rows, cols = 3, 512
    raw = random_blocks(qtype, rows, cols)
    fields = planar(qtype, raw, rows, cols)
    assert sum(f.nbytes for f in fields.values()) == raw.nbytes  # never more (nor fewer) bytes than the file
    assert np.array_equal(blocks(qtype, fields), raw)
    # Every field starts each block at a multiple of its own width: 16-byte loads of qs stay aligned.
    assert fields["qs"].size % 16 == 0


def test_planar_on_a_real_gguf_matrix(smollm2_gguf):
    reader = GGUFReader(smollm2_gguf)
    tensor = next(t for t in reader.tensors if t.tensor_type == GGMLQuantizationType.Q4_1)
    cols, rows = (int(n) for n in tensor.shape[:2])
    raw = np.asarray(tensor.data).reshape(-1).view(np.uint8)
    fields = planar("Q4_1", raw, rows, cols)
    assert sum(f.nbytes for f in fields.values()) == raw.nbytes
    assert np.array_equal(blocks("Q4_1", fields), raw)


def test_unsupported_types_and_shapes_are_refused_by_name():
    with pytest.raises(UnsupportedModelError, match="Q5_K"):
        planar("Q5_K", np.zeros(176, np.uint8), 1, 256)
    with pytest.raises(UnsupportedModelError, match="multiple of its block"):
        planar("Q4_K", np.zeros(144, np.uint8), 1, 200)


@pytest.fixture(scope="module")
def gemv(kernel_library):
    from edgellm.cuda.gemv import Gemv

    return Gemv(kernel_library)


@pytest.mark.slow
def test_gemv_arguments_are_checked_before_any_launch(gemv):
    fields = {"qs": ALIGNED, "d": ALIGNED, "scales": ALIGNED, "qh": ALIGNED}
    with pytest.raises(KernelError, match="invalid argument"):  # K types need whole super-blocks
        gemv.gemv(gemv.matrix("Q4_K", 8, 288, fields), ALIGNED, ALIGNED, ALIGNED)
    with pytest.raises(KernelError, match="invalid argument"):  # Q6_K without its high bits
        gemv.gemv(gemv.matrix("Q6_K", 8, 256, {**fields, "qh": None}), ALIGNED, ALIGNED, ALIGNED)
    with pytest.raises(KernelError, match="invalid argument"):  # a misaligned activation vector
        gemv.gemv(gemv.matrix("Q4_0", 8, 64, fields), ALIGNED + 4, ALIGNED, ALIGNED)
    with pytest.raises(KernelError, match="invalid argument"):
        gemv.quantize(ALIGNED, 48, ALIGNED, ALIGNED)  # not a multiple of 32


@pytest.mark.gpu
@pytest.mark.parametrize("qtype", GPU_TYPES)
# Rows of 512 values take the row-per-warp kernel; 2048 and 4864 the K-sliced one with a chunk per lane (2 and 5
# warps, the last one partly idle), 18944 (Qwen2.5 7B's FFN) with two chunks per lane.
@pytest.mark.parametrize("cols", [512, 2048, 4864, 18944])
def test_gemv_matches_float64_on_the_quantized_activations(gemv, qtype, cols):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rows = 300  # not a multiple of any kernel's rows per block
    raw = random_blocks(qtype, rows, cols, seed=1)
    fields = {k: torch.from_numpy(v.copy()).cuda() for k, v in planar(qtype, raw, rows, cols).items()}
    x = torch.randn(cols, device="cuda", dtype=torch.float32)
    xq = torch.empty(activation_bytes(cols), device="cuda", dtype=torch.int8)  # two int8 digits per value
    xds = torch.empty(cols // 32, 2, device="cuda", dtype=torch.float32)
    y = torch.empty(rows, device="cuda", dtype=torch.float32)
    gemv.quantize(x.data_ptr(), cols, xq.data_ptr(), xds.data_ptr())
    m = gemv.matrix(qtype, rows, cols, {k: v.data_ptr() for k, v in fields.items()})
    gemv.gemv(m, xq.data_ptr(), xds.data_ptr(), y.data_ptr())
    torch.cuda.synchronize()
    w = dequantize(raw, GGMLQuantizationType[qtype]).reshape(rows, cols).astype(np.float64)
    digits = activation_digits(xq.cpu().numpy(), cols).astype(np.float64)  # per chunk: 32 high, then 32 low
    u = 254 * digits[:, 0] + digits[:, 1]
    scale, scaled_sum = xds.cpu().numpy().astype(np.float64).T
    assert np.abs(u).max() <= 32384
    x_used = (u * scale[:, None]).reshape(-1)  # the activations the kernel multiplies
    np.testing.assert_allclose(scaled_sum, u.sum(axis=1) * scale, rtol=1e-6)
    ref = w @ x_used
    err = np.abs(y.cpu().numpy() - ref).max() / np.abs(ref).max()
    assert err < 1e-5, f"{qtype}: relative error {err:.3g}"
    # And the activation quantization itself is within 16-bit resolution of the float input: half a step of s.
    assert np.abs(x_used - x.cpu().numpy()).max() <= scale.max() / 2 + 1e-7


def test_activation_digits_reads_the_plane_layout_of_edgellm_act_offset():
    """activation_digits inverts EDGELLM_ACT_OFFSET (edgellm_gemv.h): digit e of chunk c, hi or lo, at group c // 8's
    plane 2 lo + e // 16, 16 bytes a chunk; the last group of 28 chunks padded to 8."""
    cols = 28 * 32
    assert activation_bytes(cols) == 4 * 512 and activation_bytes(256) == 512
    xq = np.zeros(activation_bytes(cols), np.int8)
    want = np.random.default_rng(0).integers(-127, 128, (cols // 32, 2, 32)).astype(np.int8)
    for c in range(cols // 32):
        for lo in range(2):
            for e in range(32):
                xq[(c >> 3) * 512 + (2 * lo + (e >> 4)) * 128 + (c & 7) * 16 + (e & 15)] = want[c, lo, e]
    np.testing.assert_array_equal(activation_digits(xq, cols), want)
