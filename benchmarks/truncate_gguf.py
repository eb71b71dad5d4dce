"""Copy a GGUF keeping only its first N transformer blocks: the same metadata, tokenizer and tensor bytes.

    python benchmarks/truncate_gguf.py IN.gguf OUT.gguf --layers 12 [--vocab 4096]

A real model's weights in a file small enough to carry to a GPU machine (SmolLM2-135M at 11 of its 30 blocks is
56 MB): the blocks kept are byte for byte the original's and the block count is rewritten, so every engine reads it
as a shallower model of the same architecture. Written to a temporary file and renamed, never half-written.

--vocab N also keeps only the first N tokens: the first N rows of the embedding (and of an untied output matrix),
byte for byte, and the first N entries of the tokenizer's tables; a BPE merge table keeps the merges whose two parts
and result are among them. For models whose embedding dwarfs the blocks kept (Gemma 3 270M: 170 of its 253 MB).
Refused unless every special token and every byte piece (SentencePiece's byte fallback, byte-level BPE's alphabet)
is among the first N: the kept tokenizer then still encodes any text, into ids below N.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import gguf

_BLOCK = re.compile(r"^blk\.(\d+)\.")


_VOCAB_ROWS = ("token_embd.weight", "output.weight")  # tensors with one row per token
_VOCAB_TABLES = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")
_MERGES = "tokenizer.ggml.merges"
_TOKEN_BYTE = 6  # llama.cpp's LLAMA_TOKEN_TYPE_BYTE


def _check_vocab(reader: gguf.GGUFReader, vocab: int) -> None:
    """Refuses a `vocab` whose first tokens would not make a whole tokenizer."""
    model = reader.fields["tokenizer.ggml.model"].contents()
    if model not in ("llama", "gpt2"):
        raise ValueError(f"--vocab needs a SentencePiece (llama) or byte-level BPE (gpt2) vocabulary, not {model!r}")
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    if not 1 <= vocab <= len(tokens):
        raise ValueError(f"--vocab must be between 1 and {len(tokens)} (the vocabulary's size), not {vocab}")
    if model == "llama":
        types = reader.fields["tokenizer.ggml.token_type"].contents()
        needed = [i for i, t in enumerate(types) if t == _TOKEN_BYTE]
    else:
        from edgellm.gguf.tokenizer import byte_alphabet

        # The byte pieces the file has (bytes that never occur in UTF-8 text may have none).
        index = {t: i for i, t in enumerate(tokens)}
        needed = [index[c] for c in byte_alphabet().values() if c in index]
    needed += [int(f.contents()) for name, f in reader.fields.items()
               if name.startswith("tokenizer.ggml.") and name.endswith("_token_id")]
    if needed and max(needed) >= vocab:
        raise ValueError(f"--vocab {vocab} would drop token {max(needed)}, a special or byte token: "
                         f"keep at least {max(needed) + 1}")


def _kept_merges(merges: list[str], tokens: list[str]) -> list[str]:
    known = set(tokens)
    return [m for m in merges if (parts := m.split(" ", 1)) and len(parts) == 2 and parts[0] in known
            and parts[1] in known and parts[0] + parts[1] in known]


def truncate(src: Path, dst: Path, layers: int, vocab: int | None = None) -> int:
    """Writes dst with the first `layers` blocks of src (and the first `vocab` tokens); returns the tensors written."""
    reader = gguf.GGUFReader(str(src))
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    count_key = gguf.Keys.LLM.BLOCK_COUNT.format(arch=arch)
    vocab_key = gguf.Keys.LLM.VOCAB_SIZE.format(arch=arch)
    total = int(reader.fields[count_key].contents())
    if not 1 <= layers <= total:
        raise ValueError(f"--layers must be between 1 and {total} (the model's block count), not {layers}")
    if vocab is not None:
        _check_vocab(reader, vocab)
    kept = [t for t in reader.tensors if not (m := _BLOCK.match(t.name)) or int(m.group(1)) < layers]

    def data(t):
        # Quantized rows are whole blocks: the first `vocab` rows of the byte array are those tokens' rows.
        return t.data[:vocab] if vocab is not None and t.name in _VOCAB_ROWS else t.data

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
            if vocab is not None and field.name in _VOCAB_TABLES:
                value = value[:vocab]
            elif vocab is not None and field.name == _MERGES:
                value = _kept_merges(value, reader.fields["tokenizer.ggml.tokens"].contents()[:vocab])
            elif vocab is not None and field.name == vocab_key:
                value = vocab
            writer.add_key_value(field.name, value, vtype, sub_type=sub)
        for t in kept:
            d = data(t)
            writer.add_tensor_info(t.name, d.shape, d.dtype, d.nbytes, t.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t in kept:
            writer.write_tensor_data(data(t), tensor_endianess=reader.endianess)
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
    p.add_argument("--vocab", type=int, help="tokens to keep, from the first")
    args = p.parse_args()
    if not args.src.is_file():
        print(f"error: {args.src} does not exist", file=sys.stderr)
        return 2
    try:
        n = truncate(args.src, args.dst, args.layers, args.vocab)
    except (ValueError, KeyError, OSError) as exc:  # a file that is not a GGUF, a model without blocks, a bad path
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tokens = f", {args.vocab} tokens" if args.vocab is not None else ""
    print(f"{args.dst}: {args.layers} blocks{tokens}, {n} tensors, {args.dst.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
