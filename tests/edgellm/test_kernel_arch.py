"""Which architectures kernels/Makefile builds for (ARCH: one, a list, native; FORCE_ARCH), read from its dry run and
its print-arch target: no compiler and no GPU needed. And the config's kernels.arch that the pipeline hands it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edgebench import EdgebenchError
from edgebench.build import cuda_arch

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ROOT / "kernels"
SIX = ["75", "80", "86", "87", "89", "90"]


def make(build: Path, *args: str, path_dirs: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if path_dirs:  # a stand-in nvidia-smi first on PATH
        env["PATH"] = os.pathsep.join([*map(str, path_dirs), env["PATH"]])
    return subprocess.run(["make", "-s", "-C", str(KERNELS), f"BUILD={build}", *args], capture_output=True, text=True,
                          env=env)


def compile_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith("nvcc") and " -c " in line]


def gencodes(line: str) -> list[tuple[str, str]]:
    return re.findall(r"-gencode arch=compute_(\w+),code=(\w+)", line)


def fake_smi(tmp_path: Path, answer: str | None) -> Path:
    """A folder holding an nvidia-smi that prints `answer` for the compute-capability query (None: fails)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "nvidia-smi"
    body = "exit 9" if answer is None else f"printf '{answer}'"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return folder


def test_a_list_builds_every_architecture_and_the_newest_ptx(tmp_path):
    lines = compile_lines(make(tmp_path, "-n", f"ARCH={' '.join(SIX)}"))
    assert len(lines) >= 10  # every source of the library, each for every architecture
    for line in lines:
        assert gencodes(line) == [(a, f"sm_{a}") for a in SIX] + [("90", "compute_90")]


def test_the_newest_is_chosen_by_number_not_by_spelling(tmp_path):
    out = make(tmp_path, "print-arch", "ARCH=90 100 75")
    assert "-gencode arch=compute_100,code=compute_100" in out.stdout


def test_one_architecture(tmp_path):
    line = compile_lines(make(tmp_path, "-n", "ARCH=86"))[0]
    assert gencodes(line) == [("86", "sm_86"), ("86", "compute_86")]
    assert "EDGELLM_FORCE_ARCH" not in line and "EDGELLM_DECODE_STAGES" not in line


def test_native_is_every_gpu_found_once(tmp_path):
    smi = fake_smi(tmp_path, r"8.6\n7.5\n8.6\n")
    line = compile_lines(make(tmp_path, "-n", path_dirs=(smi,)))[0]
    assert gencodes(line) == [("75", "sm_75"), ("86", "sm_86"), ("86", "compute_86")]


@pytest.mark.parametrize("arch", ["native", ""])
def test_native_without_a_gpu_is_90(tmp_path, arch):
    line = compile_lines(make(tmp_path, "-n", f"ARCH={arch}", path_dirs=(fake_smi(tmp_path, None),)))[0]
    assert gencodes(line) == [("90", "sm_90"), ("90", "compute_90")]


@pytest.mark.parametrize("force", ["75", "80"])
def test_forced_paths_on_a_newer_build(tmp_path, force):
    for line in compile_lines(make(tmp_path, "-n", "ARCH=90", f"FORCE_ARCH={force}")):
        assert gencodes(line) == [("90", "sm_90"), ("90", "compute_90")]
        assert f"-DEDGELLM_FORCE_ARCH={force}" in line
        # Turing's one decode stage (its copies are synchronous, its blocks have 64 KB), for 75 only.
        assert ("-DEDGELLM_DECODE_STAGES=1" in line) == (force == "75")


def test_forcing_through_extra_is_the_same_build(tmp_path):
    line = compile_lines(make(tmp_path, "-n", "ARCH=90", "EXTRA=-DEDGELLM_FORCE_ARCH=75"))[0]
    assert "-DEDGELLM_FORCE_ARCH=75" in line and "-DEDGELLM_DECODE_STAGES=1" in line


def test_a_build_that_includes_turing_takes_one_decode_stage_unless_told(tmp_path):
    assert "-DEDGELLM_DECODE_STAGES=1" in compile_lines(make(tmp_path, "-n", "ARCH=75 90"))[0]
    line = compile_lines(make(tmp_path, "-n", "ARCH=75 90", "EXTRA=-DEDGELLM_DECODE_STAGES=2"))[0]
    assert "-DEDGELLM_DECODE_STAGES=2" in line and "-DEDGELLM_DECODE_STAGES=1" not in line


@pytest.mark.parametrize("args, message", [
    (["ARCH=70"], "ARCH: 70 is not a compute capability of 7.5 or newer"),
    (["ARCH=sm_90"], "ARCH: sm_90 is not a compute capability"),
    (["FORCE_ARCH=90"], "FORCE_ARCH: 90 is not one of 75 80 86 87 89"),
    (["FORCE_ARCH=75 80"], "FORCE_ARCH takes one architecture"),
])
def test_bad_settings_stop_with_one_line(tmp_path, args, message):
    out = make(tmp_path, "-n", *args)
    assert out.returncode != 0 and message in out.stderr
    assert len([line for line in out.stderr.splitlines() if line.strip()]) == 1


def test_other_settings_rebuild_the_objects(tmp_path):
    built = make(tmp_path, "print-arch", "ARCH=90")  # writes the flags stamp
    assert built.returncode == 0, built.stderr
    # Everything the build makes, newer than its sources and the stamp: a dry run with the same settings has nothing
    # to compile, one with another setting everything.
    lines = compile_lines(make(tmp_path, "-n", "ARCH=90"))
    now = time.time()
    os.utime(tmp_path / "obj" / "nvflags.txt", (now - 20, now - 20))
    for line in lines:
        target = Path(line.split(" -o ")[-1].split()[0])
        target.touch()
        os.utime(target, (now - 10, now - 10))
    assert compile_lines(make(tmp_path, "-n", "ARCH=90")) == []
    assert len(compile_lines(make(tmp_path, "-n", "ARCH=90", "FORCE_ARCH=80"))) == len(lines)


def test_architecture_specific_instructions_live_in_the_primitives():
    """cp.async, mma and griddepcontrol are written once, in attention_common.cuh, where each has its older
    architectures' variant: a kernel file with its own would have no fallback."""
    own = re.compile(r'asm[^;]*"\s*(cp\.async|mma\.|griddepcontrol|ldmatrix)')
    for source in sorted(KERNELS.glob("*.cu*")):
        if source.name != "attention_common.cuh":
            assert not own.search(source.read_text()), f"{source.name} has its own architecture-specific asm"


@pytest.mark.parametrize("configured, expected", [
    ("90", "90"), ("90a", "90a"), ("75 80 86 87 89 90", "75 80 86 87 89 90"), ([75, "80", 90], "75 80 90"),
    (86, "86"), ("80  80 90", "80 90"),
])
def test_config_arch_becomes_the_makefile_list(configured, expected):
    assert cuda_arch(configured) == expected


@pytest.mark.parametrize("configured", ["70", "sm_90", [], "75 hopper", [70]])
def test_config_arch_rejects_what_cannot_be_built(configured):
    with pytest.raises(EdgebenchError, match="kernels.arch"):
        cuda_arch(configured)


def test_auto_is_every_gpu_found(tmp_path, monkeypatch):
    smi = fake_smi(tmp_path, r"9.0\n8.6\n9.0\n")
    monkeypatch.setenv("PATH", f"{smi}{os.pathsep}{os.environ['PATH']}")
    assert cuda_arch("auto") == "86 90"
    (smi / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")
    assert cuda_arch("auto") == "90"


def test_the_pipeline_hands_make_the_configured_list(tmp_path, tiny_gguf):
    cfg = tmp_path / "gpus.yaml"
    cfg.write_text(yaml.safe_dump({"models": {"tiny": {"path": str(tiny_gguf)}}, "prompts": {"p": "Hello"},
                                   "backends": {"edgellm": {"device": "cuda"}}, "kernels": {"arch": [75, 86, 90]}}))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
                           str(tmp_path), "-n", "-p", "compile_kernels", "--configfile", str(cfg)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stderr
    shell = next(line for line in (proc.stdout + proc.stderr).splitlines() if "make -C" in line)
    assert "ARCH='75 86 90'" in shell, shell
