"""The ctypes binding of the CUDA attention kernels.

Without a GPU the library still loads and validates its arguments before any CUDA call, which pins the binding's
struct layouts against the C header: a field out of place would turn these refusals into other answers.
On a GPU (marked `gpu`), prefill and decode through the binding match a float64 reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgellm.cuda.attention import Attention, Shape
from edgellm.cuda.library import Library
from edgellm.errors import KernelError


@pytest.fixture(scope="module")
def kernels(kernel_library) -> Attention:
    return Attention(kernel_library)


def test_a_missing_library_is_one_clear_error(tmp_path):
    with pytest.raises(KernelError, match="make kernels"):
        Library.load(tmp_path / "libedgellm.so")


SHAPE = Shape(batch=1, n_heads=8, n_kv_heads=2, head_dim=128)
ALIGNED = 1 << 20  # a fake, 16-byte aligned device address: validation never dereferences it


@pytest.mark.slow
def test_prefill_arguments_are_validated_field_by_field(kernels):
    with pytest.raises(KernelError, match="invalid argument"):  # a null pointer
        kernels.prefill(0, ALIGNED, ALIGNED, ALIGNED, SHAPE, 16, 16)
    with pytest.raises(KernelError, match="unsupported head dim"):
        kernels.prefill(ALIGNED, ALIGNED, ALIGNED, ALIGNED, Shape(1, 8, 2, 80), 16, 16)
    with pytest.raises(KernelError, match="invalid argument"):  # a negative window
        kernels.prefill(ALIGNED, ALIGNED, ALIGNED, ALIGNED, Shape(1, 8, 2, 128, window=-1), 16, 16)
    with pytest.raises(KernelError, match="invalid argument"):  # causal with fewer keys than queries
        kernels.prefill(ALIGNED, ALIGNED, ALIGNED, ALIGNED, SHAPE, 32, 16)
    with pytest.raises(KernelError, match="invalid argument"):  # heads not a multiple of KV heads
        kernels.prefill(ALIGNED, ALIGNED, ALIGNED, ALIGNED, Shape(1, 9, 2, 128), 16, 16)
    with pytest.raises(KernelError, match="invalid argument"):  # a misaligned tensor for the 16-byte copies
        kernels.prefill(ALIGNED + 2, ALIGNED, ALIGNED, ALIGNED, SHAPE, 16, 16, dtype="f16")


@pytest.mark.slow
def test_decode_arguments_and_workspace_are_validated(kernels):
    args = kernels.decode_args(ALIGNED, ALIGNED, ALIGNED, ALIGNED, SHAPE, seq_k=1000)
    need = kernels.workspace_bytes(SHAPE, 8)
    # Counters (rounded to 4) then partial outputs and log-sum-exps of 8 splits of 8 heads.
    assert need == 8 * 4 + 8 * 8 * (128 + 1) * 4
    assert kernels.workspace_bytes(SHAPE, 1) == 0
    with pytest.raises(KernelError, match="workspace"):
        kernels.decode(args, "f16", num_splits=8, workspace=0, workspace_bytes=0)
    with pytest.raises(KernelError, match="workspace"):
        kernels.decode(args, "f16", num_splits=8, workspace=ALIGNED, workspace_bytes=need - 4)
    with pytest.raises(KernelError, match="invalid argument"):  # more splits than built
        kernels.decode(args, "f16", num_splits=257, workspace=ALIGNED, workspace_bytes=1 << 30)
    bad = kernels.decode_args(ALIGNED, ALIGNED, ALIGNED, ALIGNED, Shape(1, 8, 2, 80), seq_k=1000)
    with pytest.raises(KernelError, match="unsupported head dim"):
        kernels.decode(bad, "f16")


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch


def _reference(q, k, v, causal: bool):
    """float64 attention, q [sq, H, D], k/v [sk, KVH, D]."""
    sq, h, d = q.shape
    sk, kvh, _ = k.shape
    group = h // kvh
    out = np.empty((sq, h, d))
    for head in range(h):
        s = q[:, head] @ k[:, head // group].T / np.sqrt(d)
        if causal:
            s[np.triu(np.ones((sq, sk), bool), k=sk - sq + 1)] = -np.inf
        p = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, head] = (p / p.sum(axis=1, keepdims=True)) @ v[:, head // group]
    return out


@pytest.mark.gpu
def test_prefill_and_decode_through_the_binding_match_float64(kernels):
    torch = _torch_cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)
    sq = sk = 300
    q = torch.rand(sq, 8, 128, device="cuda", generator=gen, dtype=torch.float32) * 2 - 1
    k = torch.rand(sk, 2, 128, device="cuda", generator=gen, dtype=torch.float32) * 2 - 1
    v = torch.rand(sk, 2, 128, device="cuda", generator=gen, dtype=torch.float32) * 2 - 1
    o = torch.empty_like(q)
    kernels.prefill(q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), SHAPE, sq, sk, dtype="f32")
    torch.cuda.synchronize()
    ref = _reference(q.double().cpu().numpy(), k.double().cpu().numpy(), v.double().cpu().numpy(), True)
    assert np.abs(o.double().cpu().numpy() - ref).max() < 1e-5

    q1 = q[-1:].contiguous()
    o1 = torch.empty_like(q1)
    args = kernels.decode_args(q1.data_ptr(), k.data_ptr(), v.data_ptr(), o1.data_ptr(), SHAPE, seq_k=sk)
    splits = kernels.splits(args, "f32")
    ws = torch.zeros(max(1, kernels.workspace_bytes(SHAPE, splits)), dtype=torch.uint8, device="cuda")
    kernels.decode(args, "f32", splits, ws.data_ptr(), ws.numel())
    torch.cuda.synchronize()
    assert np.abs(o1.double().cpu().numpy()[0] - ref[-1]).max() < 1e-5
