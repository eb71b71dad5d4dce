"""What a GGUF file is: architecture, parameter count, quantization, checksum, chat template. The harness's one
reader of GGUF fields (through the `gguf` package)."""

from __future__ import annotations

import collections
import hashlib
import os
from pathlib import Path

from . import EdgebenchError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def open_reader(path: str | os.PathLike):
    """A GGUFReader, or one clear error for a missing, truncated or corrupt file."""
    import gguf

    p = Path(path)
    if not p.is_file():
        raise EdgebenchError(f"GGUF file not found: {p}")
    try:
        return gguf.GGUFReader(p)
    except Exception as exc:  # noqa: BLE001 - gguf raises ValueError, IndexError, struct errors... on bad files
        raise EdgebenchError(f"{p} is not a readable GGUF file ({type(exc).__name__}: {exc})") from None


def field_value(reader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def describe_gguf(path: str | os.PathLike, with_sha256: bool = True) -> dict:
    """The model record's GGUF part: what every result row carries so that it is meaningful on its own."""
    import gguf

    reader = open_reader(path)
    arch = field_value(reader, "general.architecture", "unknown")
    file_type = field_value(reader, "general.file_type")
    try:
        quant = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_") if file_type is not None else None
    except ValueError:
        quant = None
    types = collections.Counter(t.tensor_type.name for t in reader.tensors)
    if quant is None and types:
        quant = types.most_common(1)[0][0]
    return {
        "gguf_path": str(Path(path).resolve()),
        "gguf_size_bytes": Path(path).stat().st_size,
        "gguf_sha256": sha256_file(path) if with_sha256 else None,
        "architecture": arch,
        "gguf_name": field_value(reader, "general.name"),
        "parameter_count": int(sum(int(t.n_elements) for t in reader.tensors)),
        "quantization": quant,
        "tensor_types": dict(types),
        "n_layers": field_value(reader, f"{arch}.block_count"),
        "d_model": field_value(reader, f"{arch}.embedding_length"),
        "context_length": field_value(reader, f"{arch}.context_length"),
        "synthetic": bool(field_value(reader, "edgebench.synthetic", False)),
    }


def token_text(reader, key: str) -> str:
    """The text of the token whose id the field `key` holds (e.g. tokenizer.ggml.bos_token_id); "" if absent."""
    idx = field_value(reader, key)
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if idx is None or tokens is None:
        return ""
    return bytes(tokens.parts[tokens.data[idx]]).decode("utf-8", "replace")


def chat_template(path: str | os.PathLike) -> tuple[str | None, str, str]:
    """(chat template, bos text, eos text) of a GGUF file, for the harness's prompt rendering."""
    reader = open_reader(path)
    return (field_value(reader, "tokenizer.chat_template"), token_text(reader, "tokenizer.ggml.bos_token_id"),
            token_text(reader, "tokenizer.ggml.eos_token_id"))
