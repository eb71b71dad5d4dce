"""The decode step's GEMVs that do the next operation in their epilogue instead of a launch of its own.

- edgellm_gemv_qkv_rope: Q/K/V products with RoPE and the KV-cache append. Its reference is the pair of launches it
  replaces, edgellm_gemv_many then edgellm_rope_append: the same values bit for bit (Q in fp32, K and V in the fp16
  caches), for Q, K and V of one quant type (one launch) and of several (Q4_K_M's V is often Q6_K), with biases and
  llama3 frequency factors; and so is its table form, edgellm_gemv_qkv_rope_table, with the rotation's cos and sin
  made by edgellm_rope_table.
- edgellm_gemv_swiglu_quantize: gate/up with SwiGLU, then the output quantized for the down projection by the last
  block of each chunk. Its reference is edgellm_gemv_swiglu then edgellm_quantize_activations, bit for bit, and its
  counters are zero again after every call.
Argument checks run without a GPU.
"""

from __future__ import annotations

import ctypes

import pytest

from edgellm.cuda.gemv import QMatrix, activation_bytes
from edgellm.cuda.layout import planar, type_id
from edgellm.errors import KernelError

from test_gpu_layout import ALIGNED, random_blocks

P, I, F = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
QM3 = QMatrix * 3
SIGNATURES = {
    "edgellm_quantize_activations": [P, I, P, P, P],
    "edgellm_gemv_many": [P, P, P, I, I, P, P, P],
    "edgellm_rope_append": [P, P, P, P, P, I, I, I, P, F, P, I, F, P],
    "edgellm_gemv_qkv_rope": [P, P, P, P, P, I, P, F, P, F, P, P, P],
    "edgellm_gemv_qkv_rope_table": [P, P, P, P, P, I, P, P, P, P, P],
    "edgellm_rope_table": [P, I, F, P, F, P, P],
    "edgellm_gemv_swiglu": [P, P, P, P, P, P],
    "edgellm_gemv_swiglu_quantize": [P, P, P, P, P, P, P, P, P],
}


@pytest.fixture(scope="module")
def lib(kernel_library):
    from edgellm.cuda.library import Library

    library = Library.load(kernel_library)
    library.bind(SIGNATURES)
    return library


def pointers(values) -> ctypes.Array:
    return (ctypes.c_void_p * len(values))(*values)


def matrix_pointers(ms: ctypes.Array) -> ctypes.Array:
    return (ctypes.POINTER(QMatrix) * len(ms))(*[ctypes.pointer(m) for m in ms])


@pytest.mark.slow
def test_bad_arguments_are_refused_before_any_launch(lib):
    m = QMatrix(ALIGNED, None, None, ALIGNED, 8, 64, 64)  # Q8_0, 64 x 64
    ms = matrix_pointers(QM3(m, m, m))
    args = [ms, None, ALIGNED, ALIGNED, ALIGNED]
    with pytest.raises(KernelError, match="invalid argument"):  # an odd head dimension
        lib.check(lib.lib.edgellm_gemv_qkv_rope(*args, 63, ALIGNED, 10000.0, None, 1.0, ALIGNED, ALIGNED, None), "qkv")
    with pytest.raises(KernelError, match="invalid argument"):  # rows that are not whole heads
        lib.check(lib.lib.edgellm_gemv_qkv_rope(*args, 48, ALIGNED, 10000.0, None, 1.0, ALIGNED, ALIGNED, None), "qkv")
    with pytest.raises(KernelError, match="invalid argument"):  # no position
        lib.check(lib.lib.edgellm_gemv_qkv_rope(*args, 64, None, 10000.0, None, 1.0, ALIGNED, ALIGNED, None), "qkv")
    with pytest.raises(KernelError, match="invalid argument"):  # the table form without a table
        lib.check(lib.lib.edgellm_gemv_qkv_rope_table(*args, 64, ALIGNED, None, ALIGNED, ALIGNED, None), "qkv")
    with pytest.raises(KernelError, match="invalid argument"):  # a table of an odd head dimension
        lib.check(lib.lib.edgellm_rope_table(ALIGNED, 63, 10000.0, None, 1.0, ALIGNED, None), "table")


@pytest.mark.gpu
# phi3's scaled RoPE (attention factor 1.19) with the last mix
@pytest.mark.parametrize("types,attn_factor", [(("Q8_0", "Q8_0", "Q8_0"), 1.0), (("Q4_K", "Q4_K", "Q6_K"), 1.0),
                                               (("Q4_0", "Q5_0", "Q4_1"), 1.19)])
@pytest.mark.parametrize("table", [False, True], ids=["computed", "table"])
def test_fused_epilogue_is_bit_for_bit_the_two_launches_it_replaces(lib, types, attn_factor, table):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    n_heads, n_kv, head_dim, cols, pos, context = 8, 2, 64, 512, 37, 64
    rows = (n_heads * head_dim, n_kv * head_dim, n_kv * head_dim)
    keep, ms = [], []
    for j, (qtype, r) in enumerate(zip(types, rows)):
        fields = {k: torch.from_numpy(v.copy()).cuda()
                  for k, v in planar(qtype, random_blocks(qtype, r, cols, seed=j), r, cols).items()}
        keep.append(fields)
        ms.append(QMatrix(*(fields[k].data_ptr() if k in fields else None for k in ("qs", "qh", "scales", "d")),
                          type_id(qtype), r, cols))
    ms = QM3(*ms)
    bias = [torch.randn(r, device="cuda") for r in rows]
    factors = torch.rand(head_dim // 2, device="cuda") * 4 + 1  # llama3-style frequency divisors
    x = torch.randn(cols, device="cuda")
    xq = torch.zeros(activation_bytes(cols), device="cuda", dtype=torch.int8)
    xds = torch.empty(cols // 32, 2, device="cuda")
    p = torch.tensor([pos], device="cuda", dtype=torch.int32)
    lib.check(lib.lib.edgellm_quantize_activations(x.data_ptr(), cols, xq.data_ptr(), xds.data_ptr(), None), "quantize")

    def caches():
        return [torch.zeros(context, n_kv * head_dim, device="cuda", dtype=torch.float16) for _ in range(2)]

    # Reference: the products, then RoPE and the append.
    y = [torch.empty(r, device="cuda") for r in rows]
    kc, vc = caches()
    lib.check(lib.lib.edgellm_gemv_many(matrix_pointers(ms), pointers([t.data_ptr() for t in y]),
                                        pointers([b.data_ptr() for b in bias]), 3, 0, xq.data_ptr(), xds.data_ptr(),
                                        None), "gemv_many")
    lib.check(lib.lib.edgellm_rope_append(y[0].data_ptr(), y[1].data_ptr(), y[2].data_ptr(), kc.data_ptr(),
                                          vc.data_ptr(), n_heads, n_kv, head_dim, p.data_ptr(), 500000.0,
                                          factors.data_ptr(), 0, attn_factor, None), "rope_append")
    # Fused.
    q = torch.empty(rows[0], device="cuda")
    kf, vf = caches()
    if table:
        cos_sin = torch.full((head_dim // 2, 2), float("nan"), device="cuda")
        lib.check(lib.lib.edgellm_rope_table(p.data_ptr(), head_dim, 500000.0, factors.data_ptr(), attn_factor,
                                             cos_sin.data_ptr(), None), "rope_table")
        lib.check(lib.lib.edgellm_gemv_qkv_rope_table(matrix_pointers(ms), pointers([b.data_ptr() for b in bias]),
                                                      q.data_ptr(), kf.data_ptr(), vf.data_ptr(), head_dim,
                                                      p.data_ptr(), cos_sin.data_ptr(), xq.data_ptr(), xds.data_ptr(),
                                                      None), "qkv_rope_table")
    else:
        lib.check(lib.lib.edgellm_gemv_qkv_rope(matrix_pointers(ms), pointers([b.data_ptr() for b in bias]),
                                                q.data_ptr(), kf.data_ptr(), vf.data_ptr(), head_dim, p.data_ptr(),
                                                500000.0, factors.data_ptr(), attn_factor, xq.data_ptr(),
                                                xds.data_ptr(), None), "qkv_rope")
    torch.cuda.synchronize()
    assert torch.equal(q, y[0])
    assert torch.equal(kf, kc) and torch.equal(vf, vc)  # row `pos` written, every other row untouched
    assert kf[pos].abs().sum() > 0 and kf[pos - 1].abs().sum() == 0
    # And RoPE did rotate: the cache's K is not the plain product.
    assert not torch.equal(kf[pos].float(), y[1].half().float())


def device_matrix(torch, qtype: str, rows: int, cols: int, seed: int):
    """A random matrix's planar fields on the device (kept alive by the caller) and its QMatrix."""
    fields = {k: torch.from_numpy(v.copy()).cuda()
              for k, v in planar(qtype, random_blocks(qtype, rows, cols, seed=seed), rows, cols).items()}
    m = QMatrix(*(fields[k].data_ptr() if k in fields else None for k in ("qs", "qh", "scales", "d")),
                type_id(qtype), rows, cols)
    return fields, m


@pytest.mark.slow
def test_swiglu_quantize_refuses_bad_arguments_before_any_launch(lib):
    m = QMatrix(ALIGNED, None, None, ALIGNED, 8, 64, 64)
    other = ALIGNED + (1 << 16)
    call = lib.lib.edgellm_gemv_swiglu_quantize
    with pytest.raises(KernelError, match="invalid argument"):  # the next activations are this call's own
        lib.check(call(ctypes.byref(m), ctypes.byref(m), ALIGNED, ALIGNED, ALIGNED, ALIGNED, other, ALIGNED, None), "q")
    with pytest.raises(KernelError, match="invalid argument"):  # no counters
        lib.check(call(ctypes.byref(m), ctypes.byref(m), ALIGNED, ALIGNED, ALIGNED, other, other, None, None), "q")
    odd = QMatrix(ALIGNED, None, None, ALIGNED, 8, 48, 64)  # rows not a multiple of 32
    with pytest.raises(KernelError, match="invalid argument"):
        lib.check(call(ctypes.byref(odd), ctypes.byref(odd), ALIGNED, ALIGNED, ALIGNED, other, other, ALIGNED, None),
                  "q")


@pytest.mark.gpu
@pytest.mark.parametrize("qtype", ["Q4_K", "Q8_0", "Q4_0"])
def test_swiglu_quantize_is_bit_for_bit_the_two_launches_it_replaces(lib, qtype):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    hidden, cols = 1056, 512  # 33 chunks of outputs
    keep_g, gate = device_matrix(torch, qtype, hidden, cols, 1)
    keep_u, up = device_matrix(torch, qtype, hidden, cols, 2)
    x = torch.randn(cols, device="cuda")
    xq = torch.zeros(activation_bytes(cols), device="cuda", dtype=torch.int8)
    xds = torch.empty(cols // 32, 2, device="cuda")
    lib.check(lib.lib.edgellm_quantize_activations(x.data_ptr(), cols, xq.data_ptr(), xds.data_ptr(), None), "quantize")

    def outputs():
        # zeros: the padding of the activations' last group is never written, and the outputs are compared whole
        return (torch.empty(hidden, device="cuda"),
                torch.zeros(activation_bytes(hidden), device="cuda", dtype=torch.int8),
                torch.empty(hidden // 32, 2, device="cuda"))

    y, nq, nds = outputs()
    lib.check(lib.lib.edgellm_gemv_swiglu(ctypes.byref(gate), ctypes.byref(up), xq.data_ptr(), xds.data_ptr(),
                                          y.data_ptr(), None), "swiglu")
    lib.check(lib.lib.edgellm_quantize_activations(y.data_ptr(), hidden, nq.data_ptr(), nds.data_ptr(), None), "q")
    counters = torch.zeros(hidden // 32, device="cuda", dtype=torch.int32)
    for _ in range(2):  # the second call finds the counters the first one left
        fy, fq, fds = outputs()
        lib.check(lib.lib.edgellm_gemv_swiglu_quantize(ctypes.byref(gate), ctypes.byref(up), xq.data_ptr(),
                                                       xds.data_ptr(), fy.data_ptr(), fq.data_ptr(), fds.data_ptr(),
                                                       counters.data_ptr(), None), "swiglu_quantize")
        torch.cuda.synchronize()
        assert torch.equal(fy, y) and torch.equal(fq, nq) and torch.equal(fds, nds)
        assert int(counters.abs().sum()) == 0
