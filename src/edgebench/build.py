"""What the pipeline needs to run a backend's build step (edgebench.backends.BuildStep): the CUDA architectures."""

from __future__ import annotations

import re
import shutil
import subprocess

from . import EdgebenchError

DEFAULT_ARCH = "90"  # H100 / H200: what a build on a machine without a GPU targets unless the config says otherwise
MIN_ARCH = 75  # T4 (Turing): the oldest the kernels have paths for
_ARCH = re.compile(r"\d{2,3}a?")


def cuda_arch(configured: str | int | list = "auto") -> str:
    """The compute capabilities to build for, as kernels/Makefile's ARCH takes them ("90", or "75 80 86" for one fat
    binary): the configured ones (a string of one or more, space-separated, or a list), else this machine's GPUs
    (every distinct one, for a host with mixed cards), else DEFAULT_ARCH."""
    if configured != "auto":
        items = [str(a) for a in configured] if isinstance(configured, list) else str(configured).split()
        bad = [a for a in items if not _ARCH.fullmatch(a) or int(a.rstrip("a")) < MIN_ARCH]
        if not items or bad:
            raise EdgebenchError(f"kernels.arch must be compute capabilities of {MIN_ARCH} or newer, like 90 or "
                                 f"\"75 80 86 87 89 90\", not {configured!r}")
        return " ".join(dict.fromkeys(items))
    return " ".join(detected_archs()) or DEFAULT_ARCH


def detected_archs() -> list[str]:
    """The compute capabilities of this machine's GPUs, as nvidia-smi reports them ("8.6" -> "86"), each once, in
    numeric order; empty without nvidia-smi or a GPU."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30, check=True).stdout.split()
    except (subprocess.SubprocessError, OSError):
        return []
    archs = {cap.replace(".", "") for cap in out if re.fullmatch(r"\d+\.\d", cap)}
    return sorted(archs, key=int)
