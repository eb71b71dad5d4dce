"""GGUF quant blocks split by field for the GPU kernels (kernels/edgellm_gemv.h): the same bytes, regrouped.

A GGUF quantized matrix is rows of blocks, each block its fields back to back (Q4_0: a fp16 scale then 16 bytes of
nibbles, 18 bytes in all). The GPU reads each field with aligned, coalesced loads when every field has an array of
its own; `planar` makes those arrays (in block order) and `blocks` puts them back. Nothing is added or dropped:
the arrays hold exactly the file's bytes (tested), so the weights stay as compact as in the GGUF, and exactly the
model's values.
"""

from __future__ import annotations

import numpy as np

from .errors import UnsupportedModelError

# Per type: weights per block, ggml type id, and the fields (name, first byte, end byte) of one block.
LAYOUTS = {
    "Q4_0": (32, 2, (("d", 0, 2), ("qs", 2, 18))),
    "Q4_1": (32, 3, (("d", 0, 4), ("qs", 4, 20))),
    "Q5_0": (32, 6, (("d", 0, 2), ("qh", 2, 6), ("qs", 6, 22))),
    "Q8_0": (32, 8, (("d", 0, 2), ("qs", 2, 34))),
    "Q4_K": (256, 12, (("d", 0, 4), ("scales", 4, 16), ("qs", 16, 144))),
    "Q6_K": (256, 14, (("qs", 0, 128), ("qh", 128, 192), ("scales", 192, 208), ("d", 208, 210))),
}
GPU_TYPES = tuple(LAYOUTS)


def _layout(qtype: str):
    if qtype not in LAYOUTS:
        raise UnsupportedModelError(f"quant type {qtype} has no GPU kernel (supported: {', '.join(GPU_TYPES)})")
    return LAYOUTS[qtype]


def block_bytes(qtype: str) -> int:
    return max(end for _, _, end in _layout(qtype)[2])


def planar(qtype: str, raw: np.ndarray, rows: int, cols: int) -> dict[str, np.ndarray]:
    """raw: the matrix's bytes as the GGUF stores them (uint8, rows * cols / block * block bytes).
    Returns one contiguous uint8 array per field, blocks in row-major order."""
    block, _, fields = _layout(qtype)
    if cols % block:
        raise UnsupportedModelError(f"{qtype} matrix with {cols} columns: not a multiple of its block of {block}")
    per_block = max(end for _, _, end in fields)
    n_blocks = rows * cols // block
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    if raw.size != n_blocks * per_block:
        raise ValueError(f"{qtype} [{rows}, {cols}]: expected {n_blocks * per_block} bytes, got {raw.size}")
    b = raw.reshape(n_blocks, per_block)
    return {name: np.ascontiguousarray(b[:, lo:hi]).reshape(-1) for name, lo, hi in fields}


def blocks(qtype: str, fields: dict[str, np.ndarray]) -> np.ndarray:
    """The inverse of `planar`: the GGUF bytes."""
    _, _, spec = _layout(qtype)
    widths = {name: hi - lo for name, lo, hi in spec}
    n_blocks = fields[spec[0][0]].size // widths[spec[0][0]]
    return np.concatenate([fields[name].reshape(n_blocks, widths[name]) for name, _, _ in spec], axis=1).reshape(-1)


def type_id(qtype: str) -> int:
    return _layout(qtype)[1]
