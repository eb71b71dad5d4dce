"""EdgeLLM on the CPU: tokenizer, errors on bad files, and agreement with llama.cpp on the real SmolLM2."""

import gguf
import numpy as np
import pytest

import edgellm
from edgellm.errors import ModelFileError, UnsupportedModelError
from edgellm.gguf import Tokenizer, open_gguf

# Prompts from minimal to long (the plan's kind), then text that exercises the pre-tokenizer's corners.
PROMPTS = ["Hello", "What is machine learning?", "Explain quantum computing in simple terms.",
           "Write a detailed explanation of how neural networks work, including backpropagation."]


def write_gguf(path, arch="llama", qtype=None, token_types=(1, 1)):
    """A tiny model file: enough metadata and one tensor to reach the checks under test."""
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_embedding_length(32 if qtype is None else 256)
    w.add_feed_forward_length(64)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["a", "b"])
    w.add_token_types(list(token_types))
    w.add_token_merges([])
    if qtype is None:
        w.add_tensor("token_embd.weight", np.ones((2, 32), np.float32))
    else:
        block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        w.add_tensor("token_embd.weight", np.zeros((2, block_bytes), np.uint8), raw_dtype=qtype)  # 2 x 256
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_unsupported_architecture_is_named(tmp_path):
    with pytest.raises(UnsupportedModelError, match="architecture 'falcon' is not supported"):
        edgellm.load(write_gguf(tmp_path / "phi.gguf", arch="falcon"), device="cpu")


def test_unsupported_quant_type_is_named(tmp_path):
    with pytest.raises(UnsupportedModelError, match="IQ2_XXS"):
        edgellm.load(write_gguf(tmp_path / "iq.gguf", qtype=gguf.GGMLQuantizationType.IQ2_XXS), device="cpu")


def test_a_vocabulary_without_a_type_for_every_token_is_one_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="2 tokens but 1 token types"):
        edgellm.load(write_gguf(tmp_path / "types.gguf", token_types=(1,)), device="cpu")


def test_truncated_and_missing_files(tmp_path, tiny_gguf):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:300])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        edgellm.load(cut, device="cpu")
    with pytest.raises(ModelFileError, match="not found"):
        edgellm.load(tmp_path / "nope.gguf", device="cpu")


def test_tokenizer_matches_llama_cpp_on_raw_and_chat_prompts(smollm2_gguf, chat_text):
    llama_cpp = pytest.importorskip("llama_cpp")
    tok = Tokenizer.from_gguf(open_gguf(smollm2_gguf))
    ref = llama_cpp.Llama(str(smollm2_gguf), vocab_only=True, verbose=False)
    texts = PROMPTS + [chat_text(smollm2_gguf, p) for p in PROMPTS]
    texts += ["Numbers 12345 and 3.14159, émigré café — naïve 日本語 \n\n  tabs\tend", "don't I'll WE'RE  x  "]
    for text in texts:
        assert tok.encode(text) == ref.tokenize(text.encode(), add_bos=ref._model.add_bos_token(), special=True)
        assert tok.decode(tok.encode(text, parse_special=False)) == text


@pytest.mark.slow
def test_prefill_then_decode_equals_teacher_forcing(smollm2_gguf):
    engine = edgellm.load(smollm2_gguf, device="cpu", max_context=256)  # int8 weights and activations
    prompt = engine.tokenizer.encode("What is machine learning?")
    generated = list(engine.generate(prompt, 24, ignore_eos=True))
    # greedy generation is the argmax of the teacher-forced logits at every step: each token's activations are
    # quantized on their own, so the batched prefill and one-token decode compute the same numbers
    forced = engine.logits(prompt + generated)
    assert list(forced[len(prompt) - 1:-1].argmax(1)) == generated
    # and the same across prefill tiles (a prompt longer than one tile)
    long_prompt = engine.tokenizer.encode(" ".join(PROMPTS * 6))
    assert len(long_prompt) > 64
    step = list(engine.generate(long_prompt, 4, ignore_eos=True))
    assert list(engine.logits(long_prompt + step)[len(long_prompt) - 1:-1].argmax(1)) == step
