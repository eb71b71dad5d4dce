"""benchmarks/cpu_step.py: both paths timed, the profile's kernels named, bad input one line."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import cpu_step  # noqa: E402


def run(monkeypatch, capsys, *argv) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["cpu_step.py", *argv])
    code = cpu_step.main()
    out = capsys.readouterr()
    return code, out.out, out.err


def test_times_both_paths_and_profiles_the_kernels(tmp_path, monkeypatch, capsys, tiny_synthetic):
    path = tiny_synthetic(tmp_path / "tiny.gguf", quant="Q4_K_M")
    code, out, _ = run(monkeypatch, capsys, str(path), "--threads", "1", "--rounds", "1", "--steps", "3",
                       "--prompt", "5", "--profile")
    assert code == 0
    assert "fused step   ms a step: min" in out and "Python loop  ms a step: min" in out and "(3 steps)" in out
    assert "prefill of 5 tokens" in out and "decode step" in out
    assert "panel_tile_matmul" in out and "flash_attention" in out and "outside the kernels" in out


def test_a_missing_file_is_one_line(tmp_path, monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, str(tmp_path / "missing.gguf"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")


def test_a_non_positive_count_is_a_usage_error(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(monkeypatch, capsys, "--steps", "0")
    assert exit_info.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err
