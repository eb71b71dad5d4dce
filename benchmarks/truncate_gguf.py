"""Copy a GGUF keeping only its first N transformer blocks: the same metadata, tokenizer and tensor bytes.

    python benchmarks/truncate_gguf.py IN.gguf OUT.gguf --layers 12

A real model's weights in a file small enough to carry to a GPU machine (SmolLM2-135M at 11 of its 30 blocks is
56 MB): the blocks kept are byte for byte the original's and the block count is rewritten, so every engine reads it
as a shallower model of the same architecture. Written to a temporary file and renamed, never half-written.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import gguf

_BLOCK = re.compile(r"^blk\.(\d+)\.")


def truncate(src: Path, dst: Path, layers: int) -> int:
    """Writes dst with the first `layers` blocks of src; returns the number of tensors written."""
    reader = gguf.GGUFReader(str(src))
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    count_key = gguf.Keys.LLM.BLOCK_COUNT.format(arch=arch)
    total = int(reader.fields[count_key].contents())
    if not 1 <= layers <= total:
        raise ValueError(f"--layers must be between 1 and {total} (the model's block count), not {layers}")
    kept = [t for t in reader.tensors if not (m := _BLOCK.match(t.name)) or int(m.group(1)) < layers]

    tmp = dst.with_name(dst.name + ".part")
    writer = gguf.GGUFWriter(str(tmp), arch, endianess=reader.endianess)
    try:
        for field in reader.fields.values():
            # The architecture and the GGUF.* header fields are written by the writer itself.
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                continue
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            value = layers if field.name == count_key else field.contents()
            writer.add_key_value(field.name, value, vtype, sub_type=sub)
        for t in kept:
            writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t in kept:
            writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
        writer.close()
        os.replace(tmp, dst)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return len(kept)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="the GGUF to read")
    p.add_argument("dst", type=Path, help="the GGUF to write")
    p.add_argument("--layers", type=int, required=True, help="transformer blocks to keep, from the first")
    args = p.parse_args()
    if not args.src.is_file():
        print(f"error: {args.src} does not exist", file=sys.stderr)
        return 2
    try:
        n = truncate(args.src, args.dst, args.layers)
    except (ValueError, KeyError, OSError) as exc:  # a file that is not a GGUF, a model without blocks, a bad path
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.dst}: {args.layers} blocks, {n} tensors, {args.dst.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
