"""One source for the quant blocks: gguf.GGML_QUANT_SIZES. The engine's Python tables take their sizes from it, and
the kernels' C header (kernels/edgellm_quant_blocks.h) is checked against it and against the Python field layout."""

from __future__ import annotations

import re
from pathlib import Path

import gguf
import numpy as np
import pytest

from edgellm.cpu.quant import repack
from edgellm.cuda.layout import FIELDS, GPU_TYPES, block_bytes, block_weights
from edgellm.gguf.quant_types import QUANTIZED_TYPES, block_size

HEADER = Path(__file__).resolve().parents[2] / "kernels" / "edgellm_quant_blocks.h"


def header_constants() -> dict[str, int]:
    """EDGELLM_* integer macros of the header, one alias level resolved (EDGELLM_Q4_0_WEIGHTS EDGELLM_QK)."""
    raw = dict(re.findall(r"^#define\s+(EDGELLM_\w+)\s+(\w+)", HEADER.read_text(), re.M))
    return {name: int(raw.get(value, value)) for name, value in raw.items() if not name.endswith("_H")}


def sizes(qtype: str) -> tuple[int, int]:
    return gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]


@pytest.mark.parametrize("qtype", QUANTIZED_TYPES)
def test_python_block_sizes_are_ggufs(qtype):
    assert block_size(qtype) == sizes(qtype)


@pytest.mark.parametrize("qtype", GPU_TYPES)
def test_the_kernels_header_agrees_with_gguf_and_the_python_layout(qtype):
    c = header_constants()
    weights, nbytes = sizes(qtype)
    assert (c[f"EDGELLM_{qtype}_WEIGHTS"], c[f"EDGELLM_{qtype}_BYTES"]) == (weights, nbytes)
    assert (block_weights(qtype), block_bytes(qtype)) == (weights, nbytes)
    header_fields = {name.removeprefix(f"EDGELLM_{qtype}_").removesuffix("_BYTES").lower(): value
                     for name, value in c.items() if name.startswith(f"EDGELLM_{qtype}_")
                     and name not in (f"EDGELLM_{qtype}_WEIGHTS", f"EDGELLM_{qtype}_BYTES")}
    assert header_fields == {name: end - start for name, start, end in FIELDS[qtype]}
    # The fields tile a block: back to back, from its first byte to its last.
    spans = sorted((start, end) for _, start, end in FIELDS[qtype])
    assert spans[0][0] == 0 and spans[-1][1] == nbytes
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_the_header_names_exactly_the_types_the_gpu_reads():
    named = {m.group(1) for name in header_constants() if (m := re.match(r"EDGELLM_(\w+?)_WEIGHTS$", name))}
    assert named == set(GPU_TYPES)


def test_repack_refuses_a_type_it_does_not_know():
    with pytest.raises(ValueError, match="IQ2_XXS"):
        repack("IQ2_XXS", np.zeros((1, 66), np.uint8), 1, 256)
