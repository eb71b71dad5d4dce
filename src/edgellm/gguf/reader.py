"""Opening a GGUF file and reading its metadata fields: the one place the engine touches `gguf.GGUFReader`."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelFileError


def open_gguf(path: str | os.PathLike):
    """A GGUFReader, or one ModelFileError for a missing, truncated or corrupt file."""
    import gguf

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"GGUF file not found: {p}")
    try:
        return gguf.GGUFReader(p)
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt files fail in many ways inside the reader
        raise ModelFileError(f"{p} is not a readable GGUF file (truncated or corrupt: {type(exc).__name__}: "
                             f"{exc})") from None


def field(reader, key: str, default=None):
    """A metadata value (a number, string or list), or `default` where the file lacks the key."""
    f = reader.fields.get(key)
    return f.contents() if f is not None else default


def array_length(reader, key: str) -> int | None:
    """The number of elements of an array field, without decoding them (the vocabulary is large)."""
    f = reader.fields.get(key)
    return len(f.data) if f is not None else None
