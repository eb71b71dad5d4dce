"""The set-up's llama.cpp build settings: never -march=native and never AMX, whatever CPU runs the set-up."""

import os
import platform
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "setup" / "llamacpp-wheel.sh"


def build_args(**env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "--print-args"], capture_output=True, text=True,
                          env={**os.environ, **env})


@pytest.mark.parametrize("cpu", ["portable", "host"])
def test_no_native_and_no_amx_in_any_cpu_target(cpu):
    out = build_args(LLAMACPP_CPU=cpu)
    assert out.returncode == 0, out.stderr
    args = out.stdout.split()
    assert not any(a.startswith("-DGGML_AMX") and a.endswith("=ON") for a in args)
    if platform.machine() in ("x86_64", "AMD64"):
        assert "-DGGML_NATIVE=OFF" in args and "-DGGML_AVX2=ON" in args
        assert all(f"-DGGML_AMX_{x}=OFF" in args for x in ("TILE", "INT8", "BF16"))


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 baseline")
def test_portable_target_is_the_avx2_baseline():
    args = build_args(LLAMACPP_CPU="portable").stdout.split()
    assert "-DGGML_AVX512=OFF" in args and "-DGGML_FMA=ON" in args and "-DGGML_F16C=ON" in args


def test_cuda_setting_adds_the_backend_and_rejects_garbage():
    assert "-DCMAKE_CUDA_ARCHITECTURES=90" in build_args(LLAMACPP_CUDA="90").stdout
    bad = build_args(LLAMACPP_CUDA="90; rm -rf /")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "LLAMACPP_CUDA" in bad.stderr


def test_unknown_cpu_target_is_one_line():
    bad = build_args(LLAMACPP_CPU="native")
    assert bad.returncode == 2 and bad.stdout == "" and "portable or host" in bad.stderr
