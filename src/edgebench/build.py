"""What the pipeline needs to run a backend's build step (edgebench.backends.BuildStep): the CUDA architecture."""

from __future__ import annotations

import re
import shutil
import subprocess

from . import EdgebenchError

DEFAULT_ARCH = "90"  # H100 / H200: what a build on a machine without a GPU targets unless the config says otherwise


def cuda_arch(configured: str = "auto") -> str:
    """The compute capability to build for ("90"): the configured one, else this machine's GPU, else DEFAULT_ARCH."""
    if configured != "auto":
        if not re.fullmatch(r"\d{2,3}a?", configured):
            raise EdgebenchError(f"kernels.arch must be like 90 or 80 (a compute capability), not {configured!r}")
        return configured
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=30, check=True).stdout.split()
            if out:
                return out[0].replace(".", "")
        except (subprocess.SubprocessError, OSError):
            pass
    return DEFAULT_ARCH
