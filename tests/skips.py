"""Skips shared by every test folder (a module of its own: two conftest.py files cannot both be imported by name)."""

import functools
import shutil
import subprocess

import pytest


@functools.lru_cache(maxsize=1)
def has_gpu() -> bool:
    """An NVIDIA GPU that nvidia-smi can list."""
    smi = shutil.which("nvidia-smi")
    return bool(smi) and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


def has_nvcc() -> bool:
    return shutil.which("nvcc") is not None


requires_gpu = pytest.mark.skipif(not has_gpu(), reason="needs an NVIDIA GPU")
requires_nvcc = pytest.mark.skipif(not has_nvcc(), reason="nvcc is not installed")
