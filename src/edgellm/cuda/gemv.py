"""Python binding of the quantized matrix-vector kernels (kernels/edgellm_gemv.h) through ctypes.

Weights are the planar fields of edgellm.cuda.layout already on the device (pointers); activations are fp32 and are
quantized on the device first, as the kernels take them. Errors become KernelError (Library.check).
"""

from __future__ import annotations

import ctypes

import numpy as np

from .layout import type_id
from .library import Library, LibrarySpec


def activation_bytes(cols: int) -> int:
    """Bytes of the quantized activations of `cols` values (EDGELLM_ACT_BYTES: 512 per 256 values, the last padded)."""
    return (cols + 255) // 256 * 512


def activation_digits(xq: np.ndarray, cols: int) -> np.ndarray:
    """The int8 digits [cols / 32, 2, 32] (per chunk: its 32 high digits, then its 32 low) of quantized activations
    read back from the device: xq holds them in groups of 8 chunks, each four 128-byte planes of 16 bytes a chunk
    (hi 0-15, hi 16-31, lo 0-15, lo 16-31; EDGELLM_ACT_OFFSET in edgellm_gemv.h)."""
    groups = xq.reshape(-1, 2, 2, 8, 16)  # group, lo, half, chunk, byte
    return groups.transpose(0, 3, 1, 2, 4).reshape(-1, 2, 32)[: cols // 32]


class QMatrix(ctypes.Structure):
    _fields_ = [("qs", ctypes.c_void_p), ("qh", ctypes.c_void_p), ("scales", ctypes.c_void_p),
                ("d", ctypes.c_void_p), ("qtype", ctypes.c_int), ("rows", ctypes.c_int), ("cols", ctypes.c_int)]


class Gemv:
    def __init__(self, library: LibrarySpec = None):
        self.library = Library.load(library)
        self.library.bind({
            "edgellm_quantize_activations": [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                             ctypes.c_void_p],
            "edgellm_gemv": [ctypes.POINTER(QMatrix), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_void_p],
        })
        self.lib = self.library.lib

    def quantize(self, x: int, cols: int, xq: int, xds: int, stream: int = 0) -> None:
        """x: fp32 [cols] -> xq: activation_bytes(cols) bytes (per 32 values, the int8 digits of u = round(x / scale)
        = 254 hi + lo, in the planes activation_digits reads), xds: float2 [cols / 32] (scale, scale * sum of u).
        edgellm_gemv.h."""
        self.library.check(self.lib.edgellm_quantize_activations(x, cols, xq, xds, stream), "activation quantize")

    @staticmethod
    def matrix(qtype: str, rows: int, cols: int, fields: dict[str, int]) -> QMatrix:
        """fields: device pointers of the planar arrays by name (qs, d, and scales/qh where the type has them)."""
        return QMatrix(fields.get("qs"), fields.get("qh"), fields.get("scales"), fields.get("d"), type_id(qtype),
                       rows, cols)

    def gemv(self, matrix: QMatrix, xq: int, xds: int, y: int, stream: int = 0) -> None:
        """y: fp32 [rows] = W x."""
        self.library.check(self.lib.edgellm_gemv(ctypes.byref(matrix), xq, xds, y, stream), "quantized gemv")
