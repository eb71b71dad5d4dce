"""Python binding of the decoder's small CUDA operations (kernels/edgellm_ops.h) through ctypes.

Pointers are device pointers (integers); positions and token ids live in device memory (int32) so that a captured
decode step can be replayed. Errors become KernelError (Library.check).
"""

from __future__ import annotations

import ctypes

from .gemv import QMatrix
from .library import Library, LibrarySpec

P, I, I64, F = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
SIGNATURES = {
    "edgellm_rmsnorm": [P, P, P, I, I, F, P],
    "edgellm_rope": [P, I, I, I, I64, P, F, P, I, F, P],
    "edgellm_swiglu": [P, P, I, I, P],
    "edgellm_add": [P, P, I64, P],
    "edgellm_argmax": [P, I, P, P],
    "edgellm_embed": [ctypes.POINTER(QMatrix), P, P, P],
    "edgellm_kv_append": [P, P, I, I, I64, P, P],
    "edgellm_geglu": [P, P, I, I, P],
    "edgellm_rmsnorm_add": [P, P, P, I, I, F, P],
    "edgellm_rmsnorm_heads": [P, I, I, I, I64, P, F, P],
    "edgellm_softcap": [P, I64, F, P],
    "edgellm_scale": [P, I64, F, P],
}


class DecoderOps:
    def __init__(self, library: LibrarySpec = None):
        self.library = Library.load(library)
        self.library.bind(SIGNATURES)
        self.lib = self.library.lib

    def _call(self, name: str, *args) -> None:
        self.library.check(getattr(self.lib, name)(*args), name.removeprefix("edgellm_"))

    def rmsnorm(self, x: int, weight: int, out: int, rows: int, n: int, eps: float, stream: int = 0) -> None:
        self._call("edgellm_rmsnorm", x, weight, out, rows, n, eps, stream)

    def rope(self, x: int, rows: int, heads: int, head_dim: int, row_stride: int, pos: int, base: float,
             freq_factors: int | None = None, neox: bool = False, stream: int = 0, attn_factor: float = 1.0) -> None:
        self._call("edgellm_rope", x, rows, heads, head_dim, row_stride, pos, base, freq_factors, int(neox),
                   attn_factor, stream)

    def geglu(self, gate_up: int, out: int, rows: int, hidden: int, stream: int = 0) -> None:
        self._call("edgellm_geglu", gate_up, out, rows, hidden, stream)

    def rmsnorm_add(self, x: int, y: int, weight: int, rows: int, n: int, eps: float, stream: int = 0) -> None:
        self._call("edgellm_rmsnorm_add", x, y, weight, rows, n, eps, stream)

    def rmsnorm_heads(self, x: int, rows: int, heads: int, head_dim: int, row_stride: int, weight: int, eps: float,
                      stream: int = 0) -> None:
        self._call("edgellm_rmsnorm_heads", x, rows, heads, head_dim, row_stride, weight, eps, stream)

    def softcap(self, x: int, n: int, cap: float, stream: int = 0) -> None:
        self._call("edgellm_softcap", x, n, cap, stream)

    def swiglu(self, gate_up: int, out: int, rows: int, hidden: int, stream: int = 0) -> None:
        self._call("edgellm_swiglu", gate_up, out, rows, hidden, stream)

    def add(self, x: int, y: int, n: int, stream: int = 0) -> None:
        self._call("edgellm_add", x, y, n, stream)

    def argmax(self, logits: int, n: int, out: int, stream: int = 0) -> None:
        self._call("edgellm_argmax", logits, n, out, stream)

    def embed(self, table: QMatrix, token: int, out: int, stream: int = 0) -> None:
        self._call("edgellm_embed", ctypes.byref(table), token, out, stream)

    def kv_append(self, src: int, cache: int, rows: int, width: int, cache_row_stride: int, pos: int,
                  stream: int = 0) -> None:
        self._call("edgellm_kv_append", src, cache, rows, width, cache_row_stride, pos, stream)
