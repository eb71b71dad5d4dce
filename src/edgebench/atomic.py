"""Atomic writes: a temporary file beside the target, then a rename, so an interrupted run never leaves half a file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from . import EdgebenchError


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, before any work, when the output's directory cannot be created or written."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgebenchError(f"cannot create the output directory {target.parent}: {exc.strerror}") from None
    if not os.access(target.parent, os.W_OK):
        raise EdgebenchError(f"output directory {target.parent} is not writable")
    if target.is_dir():
        raise EdgebenchError(f"output path {target} is a directory")
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; it replaces `path` only if the block finishes without error."""
    target = check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
