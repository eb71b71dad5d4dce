"""Python binding of the CUDA attention kernels (kernels/edgellm_attention.h) through ctypes.

Arguments are device pointers (integers, e.g. `tensor.data_ptr()`) and strides in elements; nothing is copied and
nothing synchronises: calls enqueue on `stream` (0: the default stream). A nonzero return code of the library
becomes a KernelError naming the call and the reason (Library.check).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from .library import Library, LibrarySpec

F32, F16, BF16 = 0, 1, 2
DTYPES = {"f32": F32, "f16": F16, "bf16": BF16}


class Layout(ctypes.Structure):
    _fields_ = [("batch_stride", ctypes.c_int64), ("row_stride", ctypes.c_int64), ("head_stride", ctypes.c_int64)]


class PrefillArgs(ctypes.Structure):
    _fields_ = [("q", ctypes.c_void_p), ("k", ctypes.c_void_p), ("v", ctypes.c_void_p), ("o", ctypes.c_void_p),
                ("q_layout", Layout), ("k_layout", Layout), ("v_layout", Layout), ("o_layout", Layout),
                ("batch", ctypes.c_int), ("seq_q", ctypes.c_int), ("seq_k", ctypes.c_int),
                ("n_heads", ctypes.c_int), ("n_kv_heads", ctypes.c_int), ("head_dim", ctypes.c_int),
                ("softmax_scale", ctypes.c_float), ("causal", ctypes.c_int), ("window", ctypes.c_int),
                ("softcap", ctypes.c_float)]


class DecodeArgs(ctypes.Structure):
    _fields_ = [("q", ctypes.c_void_p), ("k", ctypes.c_void_p), ("v", ctypes.c_void_p), ("o", ctypes.c_void_p),
                ("q_layout", Layout), ("k_layout", Layout), ("v_layout", Layout), ("o_layout", Layout),
                ("batch", ctypes.c_int), ("seq_k", ctypes.c_int), ("n_heads", ctypes.c_int),
                ("n_kv_heads", ctypes.c_int), ("head_dim", ctypes.c_int), ("softmax_scale", ctypes.c_float),
                ("window", ctypes.c_int), ("softcap", ctypes.c_float)]


def contiguous(rows: int, heads: int, head_dim: int) -> Layout:
    """[batch, rows, heads, head_dim] stored densely."""
    return Layout(rows * heads * head_dim, heads * head_dim, head_dim)


@dataclass
class Shape:
    """window > 0: sliding-window attention (the last `window` keys of each query); softcap > 0: soft-capped scores
    (edgellm_attention.h); query_scale 0: 1/sqrt(head_dim)."""
    batch: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    window: int = 0
    softcap: float = 0.0
    query_scale: float = 0.0

    @property
    def scale(self) -> float:
        return self.query_scale or self.head_dim ** -0.5


class Attention:
    """Prefill and decode attention through the library handle."""

    def __init__(self, library: LibrarySpec = None):
        self.library = Library.load(library)
        lib = self.lib = self.library.lib
        lib.edgellm_attention_prefill.argtypes = [ctypes.POINTER(PrefillArgs), ctypes.c_int, ctypes.c_void_p]
        lib.edgellm_attention_decode.argtypes = [ctypes.POINTER(DecodeArgs), ctypes.c_int, ctypes.c_int,
                                                 ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        lib.edgellm_decode_workspace_bytes.argtypes = [ctypes.c_int] * 4
        lib.edgellm_decode_workspace_bytes.restype = ctypes.c_size_t
        lib.edgellm_decode_splits.argtypes = [ctypes.POINTER(DecodeArgs), ctypes.c_int]

    def prefill(self, q: int, k: int, v: int, o: int, shape: Shape, seq_q: int, seq_k: int, dtype: str = "f16",
                layouts: tuple[Layout, Layout, Layout, Layout] | None = None, causal: bool = True,
                stream: int = 0) -> None:
        """Attention of seq_q queries (the last positions) against seq_k keys; dense layouts unless given."""
        ql, kl, vl, ol = layouts or (contiguous(seq_q, shape.n_heads, shape.head_dim),
                                     contiguous(seq_k, shape.n_kv_heads, shape.head_dim),
                                     contiguous(seq_k, shape.n_kv_heads, shape.head_dim),
                                     contiguous(seq_q, shape.n_heads, shape.head_dim))
        args = PrefillArgs(q, k, v, o, ql, kl, vl, ol, shape.batch, seq_q, seq_k, shape.n_heads, shape.n_kv_heads,
                           shape.head_dim, shape.scale, int(causal), shape.window, shape.softcap)
        self.library.check(self.lib.edgellm_attention_prefill(ctypes.byref(args), DTYPES[dtype], stream),
                           "attention prefill")

    def decode_args(self, q: int, k: int, v: int, o: int, shape: Shape, seq_k: int,
                    kv_layout: Layout | None = None) -> DecodeArgs:
        """One query per sequence; q and o fp32 [batch, n_heads, head_dim]; K/V in kv_layout (dense by default)."""
        qo = contiguous(1, shape.n_heads, shape.head_dim)
        kv = kv_layout or contiguous(seq_k, shape.n_kv_heads, shape.head_dim)
        return DecodeArgs(q, k, v, o, qo, kv, kv, qo, shape.batch, seq_k, shape.n_heads, shape.n_kv_heads,
                          shape.head_dim, shape.scale, shape.window, shape.softcap)

    def workspace_bytes(self, shape: Shape, num_splits: int) -> int:
        return self.lib.edgellm_decode_workspace_bytes(shape.batch, shape.n_heads, shape.head_dim, num_splits)

    def splits(self, args: DecodeArgs, kv_dtype: str = "f16") -> int:
        return self.lib.edgellm_decode_splits(ctypes.byref(args), DTYPES[kv_dtype])

    def decode(self, args: DecodeArgs, kv_dtype: str = "f16", num_splits: int = 0, workspace: int = 0,
               workspace_bytes: int = 0, stream: int = 0) -> None:
        """The workspace (zeroed once before its first use) must hold workspace_bytes(shape, num_splits)."""
        self.library.check(self.lib.edgellm_attention_decode(ctypes.byref(args), DTYPES[kv_dtype], num_splits,
                                                             workspace, workspace_bytes, stream), "attention decode")
