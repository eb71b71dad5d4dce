"""benchmarks/truncate_gguf.py: a real model's first blocks, byte for byte, in a smaller file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "truncate_gguf.py"


@pytest.mark.slow
def test_the_kept_blocks_are_the_files_bytes_and_the_model_still_runs(smollm2_gguf, tmp_path):
    import edgellm

    out = tmp_path / "two.gguf"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(smollm2_gguf), str(out), "--layers", "2"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    src, dst = GGUFReader(str(smollm2_gguf)), GGUFReader(str(out))
    assert int(dst.fields["llama.block_count"].contents()) == 2
    kept = {t.name: t for t in dst.tensors}
    expected = [t for t in src.tensors if not t.name.startswith("blk.") or int(t.name.split(".")[1]) < 2]
    assert sorted(kept) == sorted(t.name for t in expected)
    for t in expected:
        assert kept[t.name].tensor_type == t.tensor_type
        assert np.array_equal(np.asarray(kept[t.name].data), np.asarray(t.data))
    assert dst.fields["tokenizer.ggml.tokens"].contents() == src.fields["tokenizer.ggml.tokens"].contents()
    engine = edgellm.load(out, device="cpu", max_context=64)
    assert engine.config.n_layers == 2
    assert len(list(engine.generate(engine.tokenizer.encode("Hello"), 4, ignore_eos=True))) == 4


def test_a_block_count_out_of_range_is_one_line_and_no_file(smollm2_gguf, tmp_path):
    out = tmp_path / "none.gguf"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(smollm2_gguf), str(out), "--layers", "31"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --layers must be between 1 and 30 (the model's block count), not 31"
    assert not out.exists() and not out.with_name(out.name + ".part").exists()


@pytest.mark.slow
def test_vocab_keeps_the_first_tokens_rows_and_tables_and_still_tokenizes(gemma3_gguf, tmp_path):
    import edgellm

    out = tmp_path / "small.gguf"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(gemma3_gguf), str(out), "--layers", "6", "--vocab", "1024"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    src, dst = GGUFReader(str(gemma3_gguf)), GGUFReader(str(out))
    embd = {r: next(t for t in r.tensors if t.name == "token_embd.weight") for r in (src, dst)}
    assert np.array_equal(np.asarray(embd[dst].data), np.asarray(embd[src].data)[:1024])
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        assert dst.fields[key].contents() == src.fields[key].contents()[:1024]
    engine = edgellm.load(out, device="cpu", max_context=64)
    assert engine.config.vocab_size == 1024
    ids = engine.tokenizer.encode("The capital of France is Paris. ¿Qué tal? 🙂")
    assert max(ids) < 1024
    assert len(list(engine.generate(ids, 4, ignore_eos=True))) == 4


@pytest.mark.slow
def test_vocab_keeps_a_bpe_tokenizer_whole_and_llama_cpp_reads_it(smollm2_gguf, tmp_path):
    import edgellm

    out = tmp_path / "small.gguf"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(smollm2_gguf), str(out), "--layers", "2", "--vocab", "4096"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    dst = GGUFReader(str(out))
    tokens = dst.fields["tokenizer.ggml.tokens"].contents()
    assert len(tokens) == 4096
    merges = dst.fields["tokenizer.ggml.merges"].contents()
    assert merges and all(a in tokens and b in tokens and a + b in tokens for a, b in (m.split(" ") for m in merges))
    engine = edgellm.load(out, device="cpu", max_context=64)
    text = "The capital of France is Paris. Qué tal? 12345"
    ids = engine.tokenizer.encode(text)
    assert max(ids) < 4096 and engine.tokenizer.decode(ids) == text
    llama_cpp = pytest.importorskip("llama_cpp")
    vocab = llama_cpp.Llama(str(out), vocab_only=True, verbose=False)
    assert vocab.tokenize(text.encode(), add_bos=False, special=False) == ids


def test_vocab_refuses_to_drop_a_byte_token_in_one_line_and_writes_nothing(smollm2_gguf, tmp_path):
    out = tmp_path / "none.gguf"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(smollm2_gguf), str(out), "--layers", "2", "--vocab", "100"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --vocab 100 would drop token ")
    assert proc.stderr.strip().count("\n") == 0
    assert not out.exists() and not out.with_name(out.name + ".part").exists()
