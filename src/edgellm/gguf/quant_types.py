"""The GGUF tensor types the engine reads, with their block sizes taken from `gguf.GGML_QUANT_SIZES` (the gguf
package's copy of ggml's own table), never retyped here."""

from __future__ import annotations

import gguf

# Types that may appear in the supported models' files (the CPU engine reads all of them).
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K")
# The quantized ones among them: per block of weights a few small integers and a scale (and an offset).
QUANTIZED_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K")


def block_size(qtype: str) -> tuple[int, int]:
    """(weights per block, bytes per block) of a GGML type name, e.g. Q4_0 -> (32, 18)."""
    return gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]


def type_id(qtype: str) -> int:
    """ggml's numeric id of a type name (the id the CUDA kernels' edgellm_qtype uses)."""
    return int(gguf.GGMLQuantizationType[qtype])
