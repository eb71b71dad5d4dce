"""Shape-exact synthetic models: parameter counts, the Q4_K_M mix, and that engines load and run them."""

import numpy as np
import pytest

from edgebench.gguf_info import describe_gguf
from synthgguf import PRESETS, parameter_count, quant_type, tensor_shapes, write_synthetic


@pytest.mark.parametrize("name", list(PRESETS))
def test_parameter_count_within_half_a_percent_of_the_published_one(name):
    p = PRESETS[name]
    assert abs(parameter_count(p) - p.published) / p.published < 0.005, parameter_count(p)


def test_q4_k_m_mix_follows_llama_cpp():
    p = PRESETS["llama3.1-8b"]
    kinds = {name: quant_type(name, shape, p, "Q4_K_M") for name, shape in tensor_shapes(p)}
    assert kinds["output.weight"] == "Q6_K" and kinds["token_embd.weight"] == "Q4_K"
    assert kinds["blk.0.attn_v.weight"] == "Q6_K" and kinds["blk.4.attn_v.weight"] == "Q4_K"  # 4 = 32/8: not "more"
    assert kinds["blk.6.ffn_down.weight"] == "Q6_K"  # (6 - 4) % 3 == 2
    assert kinds["blk.10.attn_q.weight"] == "Q4_K" and kinds["blk.10.attn_norm.weight"] == "F32"
    tied = PRESETS["llama3.2-1b"]
    assert quant_type("token_embd.weight", (tied.vocab, tied.dim), tied, "Q4_K_M") == "Q6_K"
    small = PRESETS["qwen2.5-0.5b"]  # 896 columns: not a multiple of 256, K-quants fall back
    assert quant_type("blk.3.attn_q.weight", (896, 896), small, "Q4_K_M") == "Q5_0"
    assert quant_type("token_embd.weight", (small.vocab, 896), small, "Q4_K_M") == "Q8_0"


def test_written_file_is_shape_exact_and_marked_synthetic(tmp_path):
    path = tmp_path / "smol.gguf"
    info = write_synthetic("smollm-135m", path, seed=3)
    rec = describe_gguf(path, with_sha256=False)
    assert rec["synthetic"] is True and rec["architecture"] == "llama"
    assert rec["parameter_count"] == info["parameter_count"] == parameter_count(PRESETS["smollm-135m"])
    assert rec["quantization"] == "Q4_K_M" and rec["n_layers"] == 30


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm-135m", "qwen2.5-0.5b", "llama3.2-1b"])
def test_llama_cpp_loads_and_decodes_16_tokens_with_finite_logits(tmp_path, name):
    llama_cpp = pytest.importorskip("llama_cpp")
    path = tmp_path / f"{name}.gguf"
    write_synthetic(name, path)
    llm = llama_cpp.Llama(str(path), n_ctx=128, n_threads=2, logits_all=True, verbose=False)
    llm.eval(llm.tokenize(b"Hello world", add_bos=False, special=True))
    for _ in range(16):
        logits = np.array(llm.scores[llm.n_tokens - 1])
        assert np.isfinite(logits).all() and logits.std() > 0
        llm.eval([int(logits.argmax())])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm-135m", "qwen2.5-0.5b"])
def test_edgellm_loads_its_architectures(tmp_path, name):
    import edgellm

    path = tmp_path / f"{name}.gguf"
    write_synthetic(name, path)
    engine = edgellm.load(path, device="cpu", max_context=64, quantized=True)
    prompt = engine.tokenizer.encode("Hello world")
    logits = engine.logits(prompt)
    assert np.isfinite(logits).all()
    assert len(list(engine.generate(prompt, 16, ignore_eos=True))) == 16


def test_a_vocabulary_too_small_for_the_byte_tokens_is_one_error():
    from synthgguf import SyntheticModelError
    from synthgguf.synthetic import synthetic_vocab

    with pytest.raises(SyntheticModelError, match="at least 261"):
        synthetic_vocab(200)
    tokens, _, types, _, _ = synthetic_vocab(261)
    assert len(tokens) == len(types) == 261
