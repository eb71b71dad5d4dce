"""GGUF quant blocks split by field for the GPU kernels (kernels/edgellm_gemv.h): the same bytes, regrouped.

A GGUF quantized matrix is rows of blocks, each block its fields back to back (Q4_0: a fp16 scale then 16 bytes of
nibbles, 18 bytes in all). The GPU reads each field with aligned, coalesced loads when every field has an array of
its own; `planar` makes those arrays (in block order) and `blocks` puts them back. Nothing is added or dropped:
the arrays hold exactly the file's bytes (tested), so the weights stay as compact as in the GGUF, and exactly the
model's values.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelFileError, UnsupportedModelError
from ..gguf.quant_types import block_size
from ..gguf.quant_types import type_id as ggml_type_id

# Per type, the fields of one block as ggml lays them out: (name, first byte, end byte). The block sizes themselves
# come from gguf (edgellm.gguf.quant_types); the fields cover a block exactly (tested).
FIELDS = {
    "Q4_0": (("d", 0, 2), ("qs", 2, 18)),
    "Q4_1": (("d", 0, 4), ("qs", 4, 20)),
    "Q5_0": (("d", 0, 2), ("qh", 2, 6), ("qs", 6, 22)),
    "Q8_0": (("d", 0, 2), ("qs", 2, 34)),
    "Q4_K": (("d", 0, 4), ("scales", 4, 16), ("qs", 16, 144)),
    "Q6_K": (("qs", 0, 128), ("qh", 128, 192), ("scales", 192, 208), ("d", 208, 210)),
}
GPU_TYPES = tuple(FIELDS)
# The architectures whose forward pass the GPU kernels implement: every one the GGUF reader supports (phi3's fused
# matrices as row views, the gemmas' GeGLU, post-norms, soft-caps, sliding windows and gemma3's Q/K norms).
GPU_ARCHITECTURES = ("llama", "qwen2", "phi3", "gemma2", "gemma3")
GPU_HEAD_DIMS = (64, 96, 128, 256)


def refuse_architecture(architecture: str) -> None:
    """UnsupportedModelError for a model the GPU kernels would compute wrongly; called before any device work."""
    if architecture not in GPU_ARCHITECTURES:
        raise UnsupportedModelError(f"architecture {architecture!r} has no GPU kernels in EdgeLLM (they implement "
                                    f"{', '.join(GPU_ARCHITECTURES)})")


def _layout(qtype: str):
    """(weights per block, bytes per block, fields) of a type the GPU kernels read."""
    if qtype not in FIELDS:
        raise UnsupportedModelError(f"quant type {qtype} has no GPU kernel (supported: {', '.join(GPU_TYPES)})")
    return (*block_size(qtype), FIELDS[qtype])


def block_weights(qtype: str) -> int:
    return _layout(qtype)[0]


def block_bytes(qtype: str) -> int:
    return _layout(qtype)[1]


def row_range(qtype: str, fields: dict[str, np.ndarray], rows: int, first: int, end: int) -> dict[str, np.ndarray]:
    """Rows first..end-1 of a matrix of `rows` rows in planar fields: each field's blocks of those rows, a
    contiguous slice (blocks are row-major), so a fused matrix (phi3's attn_qkv, its ffn_up of gate then up) is read as
    the file stores it, in parts."""
    if not 0 <= first < end <= rows:
        raise ModelFileError(f"{qtype} matrix of {rows} rows has no rows {first}..{end - 1}")
    out = {}
    for name, array in fields.items():
        per_row = array.size // rows
        out[name] = array[first * per_row:end * per_row]
    return out


def planar(qtype: str, raw: np.ndarray, rows: int, cols: int) -> dict[str, np.ndarray]:
    """raw: the matrix's bytes as the GGUF stores them (uint8, rows * cols / block * block bytes).
    Returns one contiguous uint8 array per field, blocks in row-major order."""
    block, per_block, fields = _layout(qtype)
    if cols % block:
        raise UnsupportedModelError(f"{qtype} matrix with {cols} columns: not a multiple of its block of {block}")
    n_blocks = rows * cols // block
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    if raw.size != n_blocks * per_block:
        raise ModelFileError(f"{qtype} [{rows}, {cols}]: expected {n_blocks * per_block} bytes, got {raw.size}")
    b = raw.reshape(n_blocks, per_block)
    return {name: np.ascontiguousarray(b[:, lo:hi]).reshape(-1) for name, lo, hi in fields}


def blocks(qtype: str, fields: dict[str, np.ndarray]) -> np.ndarray:
    """The inverse of `planar`: the GGUF bytes."""
    _, _, spec = _layout(qtype)
    widths = {name: hi - lo for name, lo, hi in spec}
    n_blocks = fields[spec[0][0]].size // widths[spec[0][0]]
    return np.concatenate([fields[name].reshape(n_blocks, widths[name]) for name, _, _ in spec], axis=1).reshape(-1)


def type_id(qtype: str) -> int:
    """The kernels' edgellm_qtype of a type they read (ggml's id)."""
    _layout(qtype)
    return ggml_type_id(qtype)
