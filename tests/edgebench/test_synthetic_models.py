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


def small_spm_preset(tmp_path, name: str):
    """The preset's own vocabulary and tokenizer keys on a one-block model of a small width."""
    import dataclasses

    from synthgguf import synthetic

    path = tmp_path / f"{name}.gguf"
    shape = dict(dim=128, layers=1, heads=2, kv_heads=2, ffn=256, head_dim=64)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(synthetic.PRESETS, f"{name}-small", dataclasses.replace(PRESETS[name], **shape))
        write_synthetic(f"{name}-small", path, quant="Q8_0")
    return path


@pytest.mark.parametrize("name,bos,eos,control", [
    ("phi3.5-3.8b", 1, 32000, ["<|user|>", "<|end|>", "<s>"]),
    pytest.param("gemma2-2b", 2, 1, ["<start_of_turn>", "<end_of_turn>"], marks=pytest.mark.slow)])  # 256k tokens
def test_phi3_and_gemma2_presets_write_a_sentencepiece_vocabulary_of_their_size(tmp_path, name, bos, eos, control):
    import gguf

    reader = gguf.GGUFReader(small_spm_preset(tmp_path, name))

    def get(key):
        return reader.fields[key].contents()

    tokens, types, scores = get("tokenizer.ggml.tokens"), get("tokenizer.ggml.token_type"), get("tokenizer.ggml.scores")
    assert get("tokenizer.ggml.model") == "llama" and len(tokens) == len(types) == len(scores) == PRESETS[name].vocab
    assert (get("tokenizer.ggml.bos_token_id"), get("tokenizer.ggml.eos_token_id")) == (bos, eos)
    assert [tokens[i] for i, t in enumerate(types) if t == 6] == [f"<0x{b:02X}>" for b in range(256)]
    assert all(types[tokens.index(t)] == 3 for t in control)
    normal = [s for s, t in zip(scores, types) if t == 1]
    assert normal == sorted(normal, reverse=True) and len(set(normal)) == len(normal)  # merges have an order
    assert len(set(tokens)) == len(tokens)


def test_other_presets_keep_the_byte_level_bpe_vocabulary():
    assert {n for n, p in PRESETS.items() if p.tokenizer == "llama"} == {"phi3.5-3.8b", "gemma2-2b"}


def test_a_sentencepiece_vocabulary_too_small_for_its_layout_is_one_error(tmp_path):
    import dataclasses

    from synthgguf import SyntheticModelError, synthetic

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(synthetic.PRESETS, "tiny", dataclasses.replace(PRESETS["gemma2-2b"], vocab=300, dim=64, layers=1,
                                                                   heads=1, kv_heads=1, ffn=64, head_dim=64))
        with pytest.raises(SyntheticModelError, match="gemma vocabulary needs at least"):
            write_synthetic("tiny", tmp_path / "tiny.gguf")
    assert not list(tmp_path.iterdir())  # no half-written file


@pytest.mark.slow
@pytest.mark.parametrize("name", ["phi3.5-3.8b", "gemma2-2b"])
def test_llama_cpp_loads_the_sentencepiece_presets_and_decodes(tmp_path, name):
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(str(small_spm_preset(tmp_path, name)), n_ctx=64, n_threads=2, logits_all=True,
                          verbose=False)
    assert llm._model.vocab_type() == llama_cpp.LLAMA_VOCAB_TYPE_SPM
    llm.eval(llm.tokenize(b"Hello world", add_bos=True, special=True))
    for _ in range(8):
        logits = np.array(llm.scores[llm.n_tokens - 1])
        assert np.isfinite(logits).all() and logits.std() > 0
        llm.eval([int(logits.argmax())])


# -- the context sweep in EdgeLLM's own SentencePiece tokenizer ------------------------------------------------------
# edgebench.context cuts exact-N prompts with llama.cpp's tokenizer; the edgellm backend encodes the same text with
# the engine's. The counts must agree, or a context run would evaluate another number of tokens than it records.

def engine_tokenizer(path):
    from edgellm.gguf import open_gguf
    from edgellm.gguf.tokenizer import Tokenizer

    return Tokenizer.from_gguf(open_gguf(path))


def test_context_prompts_are_exact_in_edgellm_tokenizer_on_a_sentencepiece_preset(tmp_path):
    pytest.importorskip("llama_cpp")
    from edgebench.context import context_prompt

    path = small_spm_preset(tmp_path, "phi3.5-3.8b")
    tok = engine_tokenizer(path)
    for tokens in (16, 128, 1000):
        assert len(tok.encode(context_prompt(path, tokens))) == tokens


@pytest.mark.slow
def test_context_prompts_are_exact_in_edgellm_tokenizer_on_real_gemma3(gemma3_gguf):
    pytest.importorskip("llama_cpp")
    from edgebench.context import context_prompt
    from edgebench.defaults import PROMPTS

    path = gemma3_gguf
    tok = engine_tokenizer(path)
    llm = __import__("llama_cpp").Llama(str(path), vocab_only=True, verbose=False)
    for prompt in PROMPTS.values():  # the plan's four prompts, as both engines receive them
        assert tok.encode(prompt) == llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
    for tokens in (32, 128, 512, 2048, 8192):
        assert len(tok.encode(context_prompt(path, tokens))) == tokens


@pytest.mark.slow
def test_edgellm_backend_runs_a_context_prompt_of_exactly_n_tokens_on_real_gemma3(gemma3_gguf):
    from edgebench.backends import create_backend
    from edgebench.backends.base import GenerationSettings, ModelRef
    from edgebench.context import context_prompt, grown_num_ctx, prompt_id
    from edgebench.runner import run_benchmark

    path = gemma3_gguf
    tokens, new = 64, 4
    settings = GenerationSettings(max_new_tokens=new, num_ctx=grown_num_ctx(128, tokens, new), threads=2,
                                  ignore_eos=True)
    rows = run_benchmark(create_backend("edgellm", device="cpu"), ModelRef(name="gemma3:270m", gguf_path=path),
                         {prompt_id(tokens): context_prompt(path, tokens)}, settings, 1, 0, context_tokens=tokens)
    assert rows[0]["prompt_tokens"] == tokens and rows[0]["prompt_tokens_mismatch"] is False
    assert rows[0]["generated_tokens"] == new
