"""Atomic writes: a temporary file beside the target, then a rename, so an interrupted run never leaves half a file.

The temporary file is created with the permissions any new file of the user gets (the umask applies, as for
`open()`), not mkstemp's private 0600, so that a shared results folder stays readable by the group. Each writer holds
an advisory lock on its temporary file while it lives; a temporary of the same output that nobody holds any more
(its job was killed between write and rename) is removed by the next writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

from . import EdgebenchError


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask can only set and return)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _stale_pattern(target: Path) -> re.Pattern:
    # mkstemp's names: the prefix, 8 characters of [a-z0-9_], the suffix.
    return re.compile(rf"^\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.tmp$")


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove temporaries of `target` that no living writer holds; returns what was removed."""
    pattern = _stale_pattern(target)
    removed = []
    try:
        candidates = [p for p in target.parent.iterdir() if pattern.match(p.name)]
    except OSError:
        return removed
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a writer is still at work on it
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


class Temporary:
    """A locked temporary file beside `target`, created with the umask's permissions."""

    def __init__(self, target: Path):
        self.target = target
        try:
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        except OSError as exc:
            raise EdgebenchError(f"cannot write {target}: {exc.strerror or exc}") from None
        self.fd, self.path = fd, Path(name)
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            self.discard()
            raise EdgebenchError(f"cannot write {target}: {exc.strerror or exc}") from None

    def commit(self) -> None:
        """Rename into place (the lock goes with the descriptor)."""
        try:
            os.replace(self.path, self.target)
        except OSError as exc:
            self.discard()
            raise EdgebenchError(f"cannot write {self.target}: {exc.strerror or exc}") from None
        self._close()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._close()

    def _close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def prepare_target(path: str | os.PathLike) -> Path:
    """The output's directory exists, the output is not a directory, and stale temporaries of it are gone."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgebenchError(f"cannot create the output directory {target.parent}: {exc.strerror}") from None
    if target.is_dir():
        raise EdgebenchError(f"output path {target} is a directory")
    remove_stale_temporaries(target)
    return target


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, before any work, when the output cannot be written: by creating its temporary file, since
    `os.access` says yes where a write fails (/proc, /sys, read-only mounts as root)."""
    target = prepare_target(path)
    Temporary(target).discard()
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; it replaces `path` only if the block finishes without error.

    A write that fails (a full disk, a read-only file system) is one line naming the output.
    """
    target = prepare_target(path)
    tmp = Temporary(target)
    try:
        yield tmp.path
    except OSError as exc:
        tmp.discard()
        raise EdgebenchError(f"writing {target} failed: {exc.strerror or exc}") from None
    except BaseException:
        tmp.discard()
        raise
    tmp.commit()


def write_json(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
