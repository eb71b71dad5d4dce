"""The CLI's contract: one clear line and a nonzero exit for bad input, and never a half-written output file."""

import subprocess
import sys

import pandas as pd
import pytest

from fake_ollama import FakeOllama, Script


def edgebench(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "edgebench.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(proc, pattern):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("edgebench: error:") and pattern in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def test_unreachable_ollama(tmp_path):
    out = tmp_path / "x.parquet"
    proc = edgebench("bench", "--backend", "ollama", "--model", "smollm:135m", "--ollama-url", "http://127.0.0.1:9",
                     "--runs", "1", "--warmup", "0", "-o", str(out), "--no-progress")
    assert_one_line_error(proc, "ollama serve")
    assert not out.exists()


def test_unknown_ollama_model(tmp_path):
    out = tmp_path / "x.parquet"
    with FakeOllama() as server:
        proc = edgebench("bench", "--backend", "ollama", "--model", "nosuch:7b", "--ollama-url", server.url,
                         "--runs", "1", "--warmup", "0", "-o", str(out), "--no-progress")
    assert_one_line_error(proc, "ollama pull nosuch:7b")
    assert not out.exists()


def test_missing_gguf(tmp_path):
    out = tmp_path / "x.parquet"
    proc = edgebench("bench", "--backend", "llamacpp", "--model", str(tmp_path / "nope.gguf"), "-o", str(out))
    assert_one_line_error(proc, "GGUF file not found")
    assert not out.exists()


def test_unwritable_output(tmp_path, tiny_gguf):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    out = blocker / "sub" / "x.parquet"
    proc = edgebench("bench", "--backend", "llamacpp", "--model", str(tiny_gguf), "-o", str(out))
    assert_one_line_error(proc, "cannot create the output directory")
    assert not out.exists()


def test_corrupt_gguf(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 10)
    proc = edgebench("inspect", str(bad))
    assert_one_line_error(proc, "not a readable GGUF file")


def test_bench_against_the_wire_format_writes_rows_and_a_summary(tmp_path):
    out = tmp_path / "o.parquet"
    with FakeOllama(Script(ttft_s=0.01, itl_s=[0.002] * 7)) as server:
        proc = edgebench("bench", "--backend", "ollama", "--model", "smollm:135m", "--ollama-url", server.url,
                         "--prompt", "minimal", "--prompt", "Tell me a story", "--runs", "3", "--warmup", "1",
                         "--tokens", "8", "-o", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "tok/s" in proc.stdout and "minimal" in proc.stdout
    df = pd.read_parquet(out)
    assert len(df) == 8 and df["is_warmup"].sum() == 2
    assert set(df["prompt_id"]) == {"minimal", "p2"}
    assert (df["generated_tokens"] == 8).all()
    assert (df["quantization"] == "Q4_1").all() and (df["parameter_count"] == 134515008).all()
    assert df["gpu_mem_peak_mb"].isna().all() or df["gpu_name"].notna().all()  # null without a GPU, never 0


def test_help_lists_the_plan_defaults():
    proc = edgebench("bench", "--help")
    assert proc.returncode == 0
    for text in ("--runs", "default: 100", "default: 20", "default: 128", "--compare"):
        assert text in proc.stdout


def test_pull_shows_progress_and_finds_the_blob(tmp_path, tiny_gguf):
    import json

    models = tmp_path / "models"
    digest = "ef" * 32

    def store(model):  # what Ollama does at the end of a pull: the blob and the tag's manifest
        (models / "blobs").mkdir(parents=True, exist_ok=True)
        (models / "blobs" / f"sha256-{digest}").write_bytes(tiny_gguf.read_bytes())
        man = models / "manifests" / "registry.ollama.ai" / "library" / "smollm" / "135m"
        man.parent.mkdir(parents=True, exist_ok=True)
        man.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model",
                                               "digest": f"sha256:{digest}", "size": 1}]}))

    record = tmp_path / "rec.json"
    with FakeOllama(pull_layers=store) as server:
        proc = subprocess.run([sys.executable, "-m", "edgebench.cli", "pull", "smollm:135m", "--ollama-url",
                               server.url, "--record", str(record)], capture_output=True, text=True, timeout=60,
                              env={**__import__("os").environ, "OLLAMA_MODELS": str(models)})
        pulls = [body for path, body in server.requests if path == "/api/pull"]
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(f"sha256-{digest}")
    assert pulls == [{"model": "smollm:135m", "stream": True}]
    rec = json.loads(record.read_text())
    assert rec["gguf_sha256"] == digest and rec["ollama_tag"] == "smollm:135m" and rec["architecture"] == "llama"


def test_pull_failure_is_one_line(tmp_path):
    with FakeOllama() as server:
        proc = edgebench("pull", "missing:model", "--ollama-url", server.url)
    assert_one_line_error(proc, "missing:model")


@pytest.mark.slow
def test_compare_prints_the_speedup(tmp_path, smollm2_gguf):
    out = tmp_path / "cmp.parquet"
    proc = edgebench("bench", "--compare", "--backend", "edgellm", "--baseline", "llamacpp", "--model",
                     str(smollm2_gguf), "--prompt", "short", "--runs", "2", "--warmup", "0", "--tokens", "8",
                     "--ignore-eos", "-o", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "speedup of edgellm over llamacpp" in proc.stdout
    df = pd.read_parquet(out)
    assert set(df["backend"]) == {"edgellm", "llamacpp"} and (df["generated_tokens"] == 8).all()
