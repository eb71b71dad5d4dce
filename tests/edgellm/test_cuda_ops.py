"""The decoder's small CUDA operations against the CPU engine's own kernels (the reference of their semantics).

Argument checks run without a GPU; the values are compared on a GPU (marked `gpu`).
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

from edgellm.cpu import kernels as K
from edgellm.cuda.layout import GPU_TYPES, planar
from edgellm.errors import KernelError

ALIGNED = 1 << 20


@pytest.fixture(scope="module")
def ops(kernel_library):
    from edgellm.cuda.ops import DecoderOps

    return DecoderOps(kernel_library)


@pytest.mark.slow
def test_bad_arguments_are_refused_before_any_launch(ops):
    with pytest.raises(KernelError, match="rope: invalid argument"):
        ops.rope(ALIGNED, 1, 8, 63, 8 * 63, ALIGNED, 10000.0)  # odd head dim
    with pytest.raises(KernelError, match="rope: invalid argument"):
        ops.rope(ALIGNED, 1, 8, 64, 100, ALIGNED, 10000.0)  # rows overlap
    with pytest.raises(KernelError, match="kv_append: invalid argument"):
        ops.kv_append(ALIGNED, ALIGNED, 1, 512, 256, ALIGNED)
    with pytest.raises(KernelError, match="argmax: invalid argument"):
        ops.argmax(ALIGNED, 0, ALIGNED)


def _cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch


@pytest.mark.gpu
def test_norm_rope_swiglu_add_argmax_match_the_cpu_engine(ops):
    torch = _cuda()
    rng = np.random.default_rng(0)
    rows, heads, d, n = 5, 4, 64, 256
    x = rng.standard_normal((rows, n)).astype(np.float32)
    w = rng.standard_normal(n).astype(np.float32)
    ref = np.empty_like(x)
    K.rmsnorm(x, w, 1e-5, ref)
    xt, wt, out = torch.from_numpy(x).cuda(), torch.from_numpy(w).cuda(), torch.empty(rows, n, device="cuda")
    ops.rmsnorm(xt.data_ptr(), wt.data_ptr(), out.data_ptr(), rows, n, 1e-5)
    torch.cuda.synchronize()
    assert np.abs(out.cpu().numpy() - ref).max() < 1e-5

    for neox in (False, True):
        q = rng.standard_normal((rows, heads, d)).astype(np.float32)
        factors = rng.uniform(1, 8, d // 2).astype(np.float32)
        cos, sin = K.rope_tables(np.arange(1000, 1000 + rows), d, 500000.0, factors)
        ref = q.copy()
        K.apply_rope(ref, cos, sin, neox)
        qt = torch.from_numpy(q).cuda()
        pos = torch.tensor([1000], dtype=torch.int32, device="cuda")
        ft = torch.from_numpy(factors).cuda()
        ops.rope(qt.data_ptr(), rows, heads, d, heads * d, pos.data_ptr(), 500000.0, ft.data_ptr(), neox)
        torch.cuda.synchronize()
        assert np.abs(qt.cpu().numpy() - ref).max() < 1e-5

    gu = rng.standard_normal((rows, 2 * n)).astype(np.float32)
    ref = np.empty((rows, n), np.float32)
    K.swiglu(gu, n, ref)
    gut, o = torch.from_numpy(gu).cuda(), torch.empty(rows, n, device="cuda")
    ops.swiglu(gut.data_ptr(), o.data_ptr(), rows, n)
    a, b = torch.ones(1000, device="cuda"), torch.arange(1000, dtype=torch.float32, device="cuda")
    ops.add(a.data_ptr(), b.data_ptr(), 1000)
    logits = torch.from_numpy(rng.standard_normal(151936).astype(np.float32)).cuda()
    logits[77777] = 100.0
    logits[99999] = 100.0  # a tie: the lower index wins, as numpy's argmax
    best = torch.zeros(1, dtype=torch.int32, device="cuda")
    ops.argmax(logits.data_ptr(), logits.numel(), best.data_ptr())
    # Off the 16-byte alignment of the vector loads and with a length that is no multiple of 4: the scalar path,
    # maximum in the last element.
    odd = torch.from_numpy(rng.standard_normal(1003).astype(np.float32)).cuda()
    odd[1002] = 50.0
    best_odd = torch.zeros(1, dtype=torch.int32, device="cuda")
    ops.argmax(odd[1:].data_ptr(), 1002, best_odd.data_ptr())
    # Aligned with a tail past the last whole group of 4: a maximum in the tail tied with one in the vector part
    # (the lower index wins across the two paths).
    tail = torch.from_numpy(rng.standard_normal(4099).astype(np.float32)).cuda()
    tail[4097] = tail[4000] = 61.0
    best_tail = torch.zeros(1, dtype=torch.int32, device="cuda")
    ops.argmax(tail.data_ptr(), 4099, best_tail.data_ptr())
    torch.cuda.synchronize()
    assert np.abs(o.cpu().numpy() - ref).max() < 1e-5
    assert torch.equal(a.cpu(), 1 + torch.arange(1000, dtype=torch.float32))
    assert int(best.item()) == 77777
    assert int(best_odd.item()) == 1001
    assert int(best_tail.item()) == 4000


@pytest.mark.gpu
def test_the_gemma_and_phi3_operations_match_the_cpu_engine(ops):
    """GeGLU, the post-norm with its residual, per-head Q/K norms, the logit soft-cap and RoPE's attention factor."""
    torch = _cuda()
    rng = np.random.default_rng(1)
    rows, hidden, n, heads, d = 3, 512, 640, 4, 256
    gu = (3 * rng.standard_normal((rows, 2 * hidden))).astype(np.float32)
    ref = np.empty((rows, hidden), np.float32)
    K.geglu(gu, hidden, ref)
    gut, o = torch.from_numpy(gu).cuda(), torch.empty(rows, hidden, device="cuda")
    ops.geglu(gut.data_ptr(), o.data_ptr(), rows, hidden)

    x = rng.standard_normal((rows, n)).astype(np.float32)
    y = (5 * rng.standard_normal((rows, n))).astype(np.float32)
    w = rng.uniform(0.5, 1.5, n).astype(np.float32)
    normed = np.empty_like(y)
    K.rmsnorm(y, w, 1e-6, normed)
    xt, yt, wt = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda(), torch.from_numpy(w).cuda()
    ops.rmsnorm_add(xt.data_ptr(), yt.data_ptr(), wt.data_ptr(), rows, n, 1e-6)

    qk = rng.standard_normal((rows, heads, d)).astype(np.float32)
    hw = rng.uniform(0.5, 1.5, d).astype(np.float32)
    qk_ref = qk.copy()
    K.rmsnorm_heads(qk_ref, hw, 1e-6)
    # heads of one row strided as q inside a wider row (row stride heads * d + 64)
    wide = np.zeros((rows, heads * d + 64), np.float32)
    wide[:, :heads * d] = qk.reshape(rows, -1)
    qkt, hwt = torch.from_numpy(wide).cuda(), torch.from_numpy(hw).cuda()
    ops.rmsnorm_heads(qkt.data_ptr(), rows, heads, d, heads * d + 64, hwt.data_ptr(), 1e-6)

    logits = (40 * rng.standard_normal(1000)).astype(np.float32)
    cap = np.float32(30.0)
    lt = torch.from_numpy(logits).cuda()
    ops.softcap(lt.data_ptr(), 1000, 30.0)

    q = rng.standard_normal((rows, 8, 96)).astype(np.float32)
    factors = rng.uniform(1, 8, 48).astype(np.float32)
    cos, sin = K.rope_tables(np.arange(700, 700 + rows), 96, 10000.0, factors, 1.19)
    rope_ref = q.copy()
    K.apply_rope(rope_ref, cos, sin, True)
    qt, ft = torch.from_numpy(q).cuda(), torch.from_numpy(factors).cuda()
    pos = torch.tensor([700], dtype=torch.int32, device="cuda")
    ops.rope(qt.data_ptr(), rows, 8, 96, 8 * 96, pos.data_ptr(), 10000.0, ft.data_ptr(), True, attn_factor=1.19)
    torch.cuda.synchronize()
    assert np.abs(o.cpu().numpy() - ref).max() < 1e-5 * max(1.0, float(np.abs(ref).max()))
    assert np.abs(xt.cpu().numpy() - (x + normed)).max() < 1e-5
    got = qkt.cpu().numpy()
    assert np.abs(got[:, :heads * d].reshape(rows, heads, d) - qk_ref).max() < 1e-5
    assert not got[:, heads * d:].any()  # nothing written past the heads
    assert np.abs(lt.cpu().numpy() - cap * np.tanh(logits / cap)).max() < 1e-4
    assert np.abs(qt.cpu().numpy() - rope_ref).max() < 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("qtype", GPU_TYPES)
def test_embedding_rows_dequantize_exactly_as_gguf(ops, qtype):
    torch = _cuda()
    from test_gpu_layout import random_blocks

    from edgellm.cuda.gemv import Gemv

    rows, cols = 7, 512
    raw = random_blocks(qtype, rows, cols, seed=3)
    fields = {k: torch.from_numpy(v.copy()).cuda() for k, v in planar(qtype, raw, rows, cols).items()}
    table = Gemv.matrix(qtype, rows, cols, {k: v.data_ptr() for k, v in fields.items()})
    ref = dequantize(raw, GGMLQuantizationType[qtype]).reshape(rows, cols)
    out = torch.empty(cols, device="cuda")
    for token in (0, 5):
        tok = torch.tensor([token], dtype=torch.int32, device="cuda")
        ops.embed(table, tok.data_ptr(), out.data_ptr())
        torch.cuda.synchronize()
        assert np.array_equal(out.cpu().numpy(), ref[token].astype(np.float32))


@pytest.mark.gpu
def test_kv_append_writes_fp16_rows_at_the_device_position(ops):
    torch = _cuda()
    cache = torch.zeros(16, 256, dtype=torch.float16, device="cuda")
    src = torch.randn(2, 128, device="cuda")
    pos = torch.tensor([5], dtype=torch.int32, device="cuda")
    ops.kv_append(src.data_ptr(), cache.data_ptr(), 2, 128, 256, pos.data_ptr())
    torch.cuda.synchronize()
    assert torch.equal(cache[5:7, :128], src.half())
    assert not cache[:5].any() and not cache[7:].any() and not cache[5:7, 128:].any()
