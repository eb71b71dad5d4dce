"""The context sweep's prompts: exactly N tokens of the shipped text in the model's tokenizer, the count every engine
reports checked against N, num_ctx grown to fit."""

import pytest

from edgebench import EdgebenchError
from edgebench.backends import GenerationSettings, ModelRef
from edgebench.context import context_prompt, context_text, count_mismatch, grown_num_ctx, prompt_id
from edgebench.runner import run_benchmark
from fake_ollama import FakeOllama, Script

llama_cpp = pytest.importorskip("llama_cpp", reason="context prompts are tokenized by llama-cpp-python")


def _count(gguf, text):
    from edgebench.context import Tokenizer

    return len(Tokenizer(gguf).encode(text))


def test_the_shipped_text_is_real_prose_of_a_few_kilobytes():
    text = context_text()
    assert len(text) > 4000 and text.startswith("The unanimous Declaration")


@pytest.mark.parametrize("tokens", [1, 2, 26, 64, 256, 512, 5000])
def test_a_context_prompt_has_exactly_n_tokens_in_the_models_tokenizer(smollm2_gguf, tokens):
    # 26 and 5000 are lengths where the plain prefix cut lands on a merge (a paragraph break): the text shifts.
    prompt = context_prompt(smollm2_gguf, tokens)
    assert _count(smollm2_gguf, prompt) == tokens
    assert context_prompt(smollm2_gguf, tokens) == prompt  # the same text every time


def test_a_prompt_longer_than_the_text_repeats_it(smollm2_gguf):
    prompt = context_prompt(smollm2_gguf, 4096)
    assert prompt.count("Four score and seven years ago") >= 1 and prompt.count("When in the Course") >= 2


def test_bad_lengths_and_missing_files_are_one_line(tmp_path):
    with pytest.raises(EdgebenchError, match="positive number of tokens"):
        context_prompt(tmp_path / "x.gguf", 0)
    with pytest.raises(EdgebenchError, match="GGUF file not found"):
        context_prompt(tmp_path / "x.gguf", 8)


def test_num_ctx_grows_to_fit_the_prompt_and_the_new_tokens():
    assert grown_num_ctx(2048, 512, 128) == 2048
    assert grown_num_ctx(2048, 4096, 128) == 4224


def test_a_count_that_differs_or_is_missing_is_a_mismatch():
    assert count_mismatch(None, 7) is None  # named prompts: not a context run
    assert count_mismatch(512, 512, 512) is False
    assert count_mismatch(512, 512, None) is False
    assert count_mismatch(512, 512, 511) is True
    assert count_mismatch(512, None, None) is True


def _ollama_context_run(server, gguf, tokens=512, new=8):
    from edgebench.backends.ollama import OllamaBackend

    prompt = context_prompt(gguf, tokens)
    settings = GenerationSettings(max_new_tokens=new, num_ctx=grown_num_ctx(256, tokens, new))
    model = ModelRef(name="smollm:135m", ollama_tag="smollm:135m", gguf_path=gguf)
    rows = run_benchmark(OllamaBackend(url=server.url), model, {prompt_id(tokens): prompt}, settings, 1, 0,
                         context_tokens=tokens)
    sent = [body for path, body in server.requests if path == "/api/generate" and body.get("prompt")]
    return rows, sent


def test_ollama_is_sent_exactly_512_tokens_and_a_matching_count_is_accepted(smollm2_gguf):
    fields = {**Script().server_fields, "prompt_eval_count": 512}
    with FakeOllama(Script(itl_s=[0.001] * 7, server_fields=fields)) as server:
        rows, sent = _ollama_context_run(server, smollm2_gguf)
    assert len(sent) == 1 and sent[0]["raw"] is True
    assert _count(smollm2_gguf, sent[0]["prompt"]) == 512
    assert sent[0]["options"]["num_ctx"] == 512 + 8  # grown past the config's 256
    row = rows[0]
    assert row["context_tokens"] == 512 and row["prompt_id"] == "ctx512"
    assert row["prompt_tokens"] == 512 and row["prompt_tokens_mismatch"] is False


def test_a_server_reporting_another_prompt_count_is_flagged_in_the_row(smollm2_gguf):
    fields = {**Script().server_fields, "prompt_eval_count": 7}  # e.g. a server that reused a cached prefix
    with FakeOllama(Script(itl_s=[0.001] * 7, server_fields=fields)) as server:
        rows, _ = _ollama_context_run(server, smollm2_gguf)
    assert rows[0]["prompt_tokens"] == 7 and rows[0]["prompt_tokens_mismatch"] is True
