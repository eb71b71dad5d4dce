"""llama.cpp in-process on the real SmolLM2 GGUF (slow: real generation on the CPU)."""

import subprocess
import sys

import pandas as pd
import pytest

from edgebench.records import RUN_COLUMNS, SCHEMA_VERSION, read_schema_version

pytestmark = pytest.mark.slow


def test_bench_llamacpp_smollm2_writes_every_column_and_greedy_ids_repeat(tmp_path, smollm2_gguf):
    out = tmp_path / "x.parquet"
    proc = subprocess.run([sys.executable, "-m", "edgebench.cli", "bench", "--backend", "llamacpp", "--model",
                           str(smollm2_gguf), "--runs", "5", "--warmup", "1", "--tokens", "32", "--prompt", "short",
                           "--prompt", "medium", "-o", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "tok/s" in proc.stdout
    df = pd.read_parquet(out)
    assert list(df.columns) == RUN_COLUMNS
    assert read_schema_version(out) == SCHEMA_VERSION
    assert len(df) == 12
    timed = df[~df["is_warmup"]]
    for _, g in timed.groupby("prompt_id"):
        ids = [tuple(v) for v in g["token_ids"]]
        assert len(set(ids)) == 1, "greedy decoding must repeat exactly"
        assert len(ids[0]) == g["generated_tokens"].iloc[0] > 0
    assert timed["decode_tok_s"].gt(0).all() and timed["ttft_ms"].gt(0).all()
    assert timed["gguf_sha256"].str.len().eq(64).all()
    assert (timed["parameter_count"] == 134515008).all()
    assert timed["engine_eval_count"].notna().all()
