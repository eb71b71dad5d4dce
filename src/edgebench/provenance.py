"""Where a number came from: machine, software and repository state, as columns of every result row."""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import socket
import subprocess
from pathlib import Path

from . import __version__
from .monitor import gpu_identity


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of this repository, with "-dirty" when the working tree has uncommitted changes."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def config_hash(obj) -> str:
    """A short stable hash of a settings dict (sorted JSON)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def machine() -> dict:
    import psutil

    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "cpu_cores_logical": psutil.cpu_count(logical=True),
        "os": platform.platform(),
        "python_version": platform.python_version(),
        "edgebench_version": __version__,
        "git_commit": git_commit(),
        **gpu_identity(),
    }


def testbed_name() -> str:
    """A short name for this machine in result paths: the GPU (e.g. `h100-80gb-hbm3`) or the CPU's core count."""
    import re

    info = machine()
    if info.get("gpu_name"):
        return re.sub(r"[^a-z0-9.]+", "-", info["gpu_name"].lower().replace("nvidia", "")).strip("-")
    return f"cpu-{info.get('cpu_cores_physical') or 'x'}c"
