"""benchmarks/cpu_scaling.py's child processes: llama.cpp sees no GPU, and its library is loaded before numpy (a CUDA
build of llama.cpp can crash loading a model otherwise)."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import cpu_scaling  # noqa: E402


def test_the_child_sees_no_gpu_and_preloads_llama_cpp(monkeypatch, tmp_path):
    seen = {}

    def fake_run(command, env):
        seen.update(command=command, env=env)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(cpu_scaling.subprocess, "run", fake_run)
    monkeypatch.setattr(cpu_scaling, "llama_library", lambda: "/x/libllama.so")
    monkeypatch.setenv("LD_PRELOAD", "/other.so")
    args = SimpleNamespace(threads=[1, 2], runs=1, warmup=1, tokens=8, context=64, prompts="short")
    cpu_scaling.run_decode(tmp_path / "m.gguf", args, tmp_path / "out.json")
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert seen["env"]["LD_PRELOAD"] == "/x/libllama.so:/other.so"
    assert "--raw" in seen["command"] and seen["command"][1:3] == ["-X", "faulthandler"]
    assert seen["command"][-2:] == ["--prompts", "short"]


def test_a_failed_child_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_scaling.subprocess, "run", lambda command, env: subprocess.CompletedProcess(command, -11))
    args = SimpleNamespace(threads=[16], runs=1, warmup=1, tokens=8, context=64, prompts=None)
    with pytest.raises(SystemExit, match=r"^error: cpu_decode.py failed on m.gguf \(exit status -11\)$"):
        cpu_scaling.run_decode(tmp_path / "m.gguf", args, tmp_path / "out.json")
