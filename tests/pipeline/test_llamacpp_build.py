"""The set-up's llama.cpp build settings: never -march=native and never AMX, whatever CPU runs the set-up."""

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "setup" / "llamacpp-wheel.sh"


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


# --- arm64 (Jetson Orin, Graviton, Apple silicon under Linux), checked here with a faked `uname -m` -----------------

# What only an x86 compiler or CPU understands: ggml's x86 options, x86 -m flags, AMX.
X86_ONLY = re.compile(r"GGML_(AVX\w*|SSE\w*|FMA|F16C|BMI2|AMX\w*)|-m(avx|sse|fma|f16c|bmi|amx)|-march=x86|x86-64",
                      re.IGNORECASE)


def on_arm64(tmp_path: Path, *args: str, **env) -> subprocess.CompletedProcess:
    """The script as an aarch64 machine runs it: a `uname` first on the PATH answers `-m` with aarch64."""
    fake = tmp_path / "uname"
    fake.write_text(f'#!/bin/sh\n[ "$1" = "-m" ] && {{ echo aarch64; exit 0; }}\nexec {shutil.which("uname")} "$@"\n')
    fake.chmod(0o755)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", **env})


def test_arm64_portable_target_is_armv8_2_with_dotprod_and_fp16_and_nothing_of_x86(tmp_path):
    out = on_arm64(tmp_path, "--print-args", LLAMACPP_CPU="portable")
    assert out.returncode == 0, out.stderr
    # llama.cpp's CMake passes GGML_CPU_ARM_ARCH on as -march=; armv8.2-a+dotprod+fp16 is how its own CPU variants
    # name that level (ggml-cpu/CMakeLists.txt). No SVE or i8mm: Jetson Orin's Cortex-A78AE has neither.
    assert out.stdout.split() == ["-DGGML_NATIVE=OFF", "-DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16"]
    assert not X86_ONLY.search(out.stdout)


@pytest.mark.parametrize("cpu", ["portable", "host"])
def test_arm64_jetson_cuda_build_has_no_x86_flag(tmp_path, cpu):
    out = on_arm64(tmp_path, "--print-args", LLAMACPP_CPU=cpu, LLAMACPP_CUDA="87")  # Jetson Orin: sm_87
    assert out.returncode == 0, out.stderr
    args = out.stdout.split()
    assert "-DGGML_CUDA=ON" in args and "-DCMAKE_CUDA_ARCHITECTURES=87" in args
    assert not X86_ONLY.search(out.stdout)


def test_arm64_amx_check_passes_without_disassembling(tmp_path):
    out = on_arm64(tmp_path, "--check-amx", PYTHON="/nonexistent/python")
    assert out.returncode == 0 and out.stdout.strip() == "no AMX on aarch64"


def test_the_fake_uname_is_what_the_script_sees(tmp_path):
    # Without it the x86 flags come back on an x86 machine: the arm64 tests above are not vacuous.
    if platform.machine() != "x86_64":
        pytest.skip("x86-64 host")
    assert X86_ONLY.search(build_args(LLAMACPP_CPU="portable").stdout)
    assert not X86_ONLY.search(on_arm64(tmp_path, "--print-args").stdout)


PYTHON_PATH = [*ROOT.glob("src/**/*.py"), *ROOT.glob("workflow/**/*.py"), *ROOT.glob("workflow/**/*.smk"),
               ROOT / "Snakefile", ROOT / "envs" / "edgebench.post-deploy.sh"]


def test_the_python_path_has_no_x86_only_code():
    """The harness, the CPU engine (numba compiles for the machine it runs on) and the pipeline name no x86
    instruction set, so the same code runs on arm64; llama.cpp's CPU target is the build script's business."""
    hits = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in PYTHON_PATH
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if X86_ONLY.search(line) or re.search(r"\b(immintrin|cpuid|_mm\d*_\w+)\b", line)]
    assert len(PYTHON_PATH) > 50 and not hits


@pytest.mark.skipif(os.environ.get("EDGEBENCH_CHECK_ARM64_WHEELS") != "1",
                    reason="asks PyPI; CI sets EDGEBENCH_CHECK_ARM64_WHEELS=1")
def test_every_compiled_dependency_of_the_setup_has_an_arm64_wheel(tmp_path):
    """Each package of this environment that came as a platform wheel (numba, llvmlite, numpy, ...) exists on PyPI
    as a manylinux aarch64 wheel for this Python at the same version: the set-up on a Jetson builds only llama.cpp."""
    compiled = []
    for dist in importlib.metadata.distributions():
        tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
                if line.startswith("Tag:")]
        name = dist.metadata["Name"]
        if tags and not all(t.endswith("-any") for t in tags) and name.lower().replace("_", "-") != "llama-cpp-python":
            compiled.append(f"{name}=={dist.version}")
    assert any(c.startswith("numba==") for c in compiled)
    # pip takes exact platform tags: every glibc level from manylinux2014 to Ubuntu 22.04's (JetPack 6).
    platforms = [a for g in range(17, 36) for a in ("--platform", f"manylinux_2_{g}_aarch64")]
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
                           "--no-deps", "--only-binary=:all:", *platforms, "--platform", "manylinux2014_aarch64",
                           "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}",
                           "--implementation", "cp", "--target", str(tmp_path / "t"), *compiled],
                          capture_output=True, text=True)
    assert done.returncode == 0, [line for line in done.stderr.splitlines() if "ERROR" in line]
