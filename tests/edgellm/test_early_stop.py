"""An early stop is counted the same by every engine: the CPU engine, the GPU engine and llama.cpp generate the same
number of tokens from the same GGUF and prompt when the model ends its answer (the end-of-generation token itself is
never one of them). The prompt is a chat question SmolLM2 answers in one short sentence, well inside the limit."""

from __future__ import annotations

import pytest

import edgellm

QUESTION = "What is the capital of France?"
LIMIT = 64


@pytest.fixture(scope="module")
def prompt_ids(smollm2_cpu, smollm2_gguf, chat_text) -> list[int]:
    return smollm2_cpu.tokenizer.encode(chat_text(smollm2_gguf, QUESTION))


@pytest.fixture(scope="module")
def cpu_tokens(smollm2_cpu, prompt_ids) -> list[int]:
    return list(smollm2_cpu.generate(prompt_ids, LIMIT))


def llama_cpp_tokens(path, prompt_ids: list[int]) -> list[int]:
    """llama.cpp's greedy tokens up to its first end-of-generation token (its generate() itself never stops)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(str(path), n_ctx=256, n_threads=2, n_gpu_layers=0, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
    out = []
    for token in llm.generate(prompt_ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True):
        if llama_cpp.llama_vocab_is_eog(vocab, token) or len(out) == LIMIT:
            break
        out.append(int(token))
    llm.close()
    return out


@pytest.mark.slow
def test_the_cpu_engine_stops_before_the_end_token(smollm2_cpu, prompt_ids, cpu_tokens):
    n = len(cpu_tokens)
    assert 0 < n < LIMIT, f"the model did not stop early ({n} tokens): the test needs another prompt"
    assert not any(smollm2_cpu.tokenizer.is_eog(t) for t in cpu_tokens)
    # The very next greedy choice is the end-of-generation token: the stop is the model's, not a cut.
    chain = list(smollm2_cpu.generate(prompt_ids, n + 1, ignore_eos=True))
    assert chain[:n] == cpu_tokens and smollm2_cpu.tokenizer.is_eog(chain[n])


@pytest.mark.slow
def test_llama_cpp_counts_the_same_early_stop(smollm2_gguf, prompt_ids, cpu_tokens):
    ref = llama_cpp_tokens(smollm2_gguf, prompt_ids)
    assert len(ref) == len(cpu_tokens), (ref, cpu_tokens)
    assert ref == cpu_tokens


def with_end_token(src, dst, token: int):
    """A byte-for-byte copy of the GGUF whose end-of-sequence id is `token`: a model that never stops on its own
    (a truncated copy) then stops where its greedy chain first reaches that token."""
    import shutil

    import gguf

    shutil.copyfile(src, dst)
    reader = gguf.GGUFReader(dst, "r+")
    reader.fields["tokenizer.ggml.eos_token_id"].parts[-1][0] = token
    del reader
    return dst


@pytest.mark.gpu
def test_the_gpu_engine_counts_the_same_early_stop(kernel_library, cuda_device, smollm2_gguf, prompt_ids,
                                                   cpu_tokens, tmp_path):
    path = smollm2_gguf
    expected = cpu_tokens
    if len(cpu_tokens) == LIMIT:  # a truncated SmolLM2 (what a GPU machine can receive) never stops on its own
        # The last token of the chain that is new where it stands: the copy stops right before it.
        cut = max((i for i in range(1, LIMIT) if cpu_tokens[i] not in cpu_tokens[:i]), default=None)
        assert cut is not None, f"the greedy chain is one token repeated: {cpu_tokens[:8]}"
        path = with_end_token(smollm2_gguf, tmp_path / "stops.gguf", cpu_tokens[cut])
        with edgellm.load(path, device="cpu", max_context=512) as cpu:
            expected = list(cpu.generate(prompt_ids, LIMIT))
        assert expected == cpu_tokens[:cut]
    with edgellm.load(path, device="cuda", max_context=512, library=kernel_library) as gpu:
        tokens = list(gpu.generate(prompt_ids, LIMIT))
    assert 0 < len(expected) < LIMIT
    assert len(tokens) == len(expected), (tokens, expected)
    assert tokens == expected
