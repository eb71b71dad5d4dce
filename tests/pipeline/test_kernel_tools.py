"""The CUDA kernels' build and the kernel development tools (kernels/tools) around their gate and benchmark.

The build runs wherever nvcc is (no GPU needed); the accuracy gate itself needs a GPU (marked `gpu`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from skips import requires_nvcc
from edgebench import EdgebenchError
from edgebench.build import cuda_arch as detect_arch
from edgebench.config import validate

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "kernels" / "tools"))

from kernel_gate import headline, parse_checks, parse_sanitizer_summary, run_accuracy, run_checks  # noqa: E402
C_API = ["edgellm_attention_prefill", "edgellm_attention_decode", "edgellm_attention_decode_at",
         "edgellm_attention_decode_at_impl",
         "edgellm_decode_splits", "edgellm_decode_workspace_bytes", "edgellm_error_string", "edgellm_last_cuda_error",
         "edgellm_quantize_activations", "edgellm_gemv", "edgellm_gemv_many", "edgellm_gemv_qkv_rope",
         "edgellm_gemv_qkv_rope_table", "edgellm_rope_table",
         "edgellm_gemv_swiglu", "edgellm_gemv_swiglu_quantize", "edgellm_rmsnorm_quantize", "edgellm_rope_append",
         "edgellm_argmax_advance",
         "edgellm_engine_create", "edgellm_engine_step", "edgellm_engine_launch", "edgellm_engine_collect",
         "edgellm_engine_graph_nodes", "edgellm_engine_logits", "edgellm_engine_destroy"]


def test_sanitizer_summaries_are_read_for_every_tool():
    assert parse_sanitizer_summary("========= ERROR SUMMARY: 0 errors") == (0, None)
    assert parse_sanitizer_summary("========= ERROR SUMMARY: 7 errors") == (7, None)
    race = "========= RACECHECK SUMMARY: 3 hazards displayed (2 errors, 1 warning)"
    assert parse_sanitizer_summary(race) == (2, 3)
    clean = "========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)"
    assert parse_sanitizer_summary(clean) == (0, 0)
    # No summary at all (a crash) is not a clean verdict.
    assert parse_sanitizer_summary("Segmentation fault") == (None, None)


def test_arch_from_config_is_checked():
    assert detect_arch("80") == "80"
    assert detect_arch("90a") == "90a"
    with pytest.raises(EdgebenchError, match="kernels.arch"):
        detect_arch("sm_90")


def test_kernels_section_gets_its_defaults_and_rejects_bad_arch(config_schema):
    config = validate({"models": {"m": {"path": "x.gguf"}}, "backends": {"llamacpp": {}}, "kernels": {"run": True}},
                      config_schema)
    assert config["kernels"] == {"run": True, "arch": "auto", "nvcc": "nvcc"}
    with pytest.raises(EdgebenchError, match="kernels.arch"):
        validate({"models": {"m": {"path": "x.gguf"}}, "backends": {"llamacpp": {}}, "kernels": {"arch": "hopper"}},
                 config_schema)


def test_headline_compares_like_with_like():
    rows = [
        dict(kind="copy", impl="cudaMemcpy", dtype="-", head_dim=0, n_heads=0, n_kv_heads=0, seq_k=0, splits=0,
             tflops=0.0, gbytes_s=4000.0),
        dict(kind="prefill", impl="edgellm", dtype="f16", head_dim=128, n_heads=32, n_kv_heads=8, seq_k=8192,
             splits=0, tflops=240.0, gbytes_s=0.0),
        # Another shape and another dtype at 8k must not be picked.
        dict(kind="prefill", impl="torch-sdpa-flash", dtype="f16", head_dim=64, n_heads=9, n_kv_heads=3, seq_k=8192,
             splits=0, tflops=999.0, gbytes_s=0.0),
        dict(kind="prefill", impl="torch-sdpa-flash", dtype="bf16", head_dim=128, n_heads=32, n_kv_heads=8,
             seq_k=8192, splits=0, tflops=999.0, gbytes_s=0.0),
        dict(kind="prefill", impl="torch-sdpa-flash", dtype="f16", head_dim=128, n_heads=32, n_kv_heads=8,
             seq_k=8192, splits=0, tflops=300.0, gbytes_s=0.0),
        dict(kind="decode", impl="edgellm", dtype="f16", head_dim=128, n_heads=32, n_kv_heads=8, seq_k=16384,
             splits=33, tflops=0.0, gbytes_s=2000.0),
    ]
    numbers = headline(pd.DataFrame(rows))
    assert numbers["prefill_8k_vs_sdpa"] == pytest.approx(0.8)
    assert numbers["decode_16k_of_copy"] == pytest.approx(0.5)
    assert numbers["decode_16k_splits"] == 33
    assert numbers["sdpa_decode_16k_gbytes_s"] is None  # not measured stays missing


def test_headline_without_sdpa_is_missing_not_zero():
    rows = [dict(kind="prefill", impl="edgellm", dtype="f16", head_dim=128, n_heads=32, n_kv_heads=8, seq_k=8192,
                 splits=0, tflops=240.0, gbytes_s=0.0)]
    numbers = headline(pd.DataFrame(rows))
    assert numbers["prefill_8k_tflops"] == 240.0
    assert numbers["prefill_8k_vs_sdpa"] is None
    assert numbers["decode_16k_of_copy"] is None


def test_missing_binary_is_one_clear_error(tmp_path):
    with pytest.raises(EdgebenchError, match="compile_kernels"):
        run_accuracy(tmp_path / "attention_accuracy")


@pytest.mark.slow
@requires_nvcc
def test_kernels_build_without_a_gpu_and_export_the_c_api(tmp_path):
    build = tmp_path / "build"
    subprocess.run(["make", "-C", str(ROOT / "kernels"), "-j2", f"BUILD={build}", "ARCH=90"], check=True,
                   capture_output=True)
    for name in ("libedgellm.so", "attention_accuracy", "attention_bench"):
        assert (build / name).is_file(), name
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(build / "libedgellm.so")], check=True,
                             capture_output=True, text=True).stdout
    for name in C_API:
        assert f" T {name}\n" in symbols, name


@pytest.mark.gpu
@requires_nvcc
def test_kernels_pass_their_quick_accuracy_cases_on_this_gpu(tmp_path):
    build = tmp_path / "build"
    subprocess.run(["make", "-C", str(ROOT / "kernels"), "-j8", f"BUILD={build}", f"ARCH={detect_arch()}"],
                   check=True, capture_output=True)
    acc = run_accuracy(build / "attention_accuracy", quick=True)
    assert len(acc) > 500
    assert acc.passed.all(), acc[~acc.passed].head().to_string()


def fake_binary(tmp_path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_prefill_gate_reads_every_ok_and_fail_line():
    text = ("-- model llama-style: prompt 150 tokens\nok   embed_rows equals edgellm_embed bit for bit \n"
            "FAIL prefill_logits vs steps positions 150\n     greedy tokens after prefill: 16 of 16\n1 checks\n")
    checks = parse_checks(text, "prefill_accuracy")
    assert checks.passed.tolist() == [True, False]
    assert checks.check.tolist() == ["embed_rows equals edgellm_embed bit for bit", "prefill_logits vs steps positions 150"]


def test_prefill_gate_refuses_a_run_without_a_verdict(tmp_path):
    passing = fake_binary(tmp_path, "ok_then_crash", 'echo "ok   first"; kill -SEGV $$')
    with pytest.raises(EdgebenchError, match="no verdict"):
        run_checks(passing)
    silent = fake_binary(tmp_path, "silent", "exit 0")
    with pytest.raises(EdgebenchError, match="no verdict"):
        run_checks(silent)
    failing = fake_binary(tmp_path, "failing", 'echo "ok   a"; echo "FAIL b"; exit 1')
    assert run_checks(failing).passed.tolist() == [True, False]
    with pytest.raises(EdgebenchError, match="not found"):
        run_checks(tmp_path / "missing")
