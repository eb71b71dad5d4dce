"""The openai backend against a real OpenAI-compatible server: llama-cpp-python's own (`python -m llama_cpp.server`)
on the SmolLM2 GGUF, started here and stopped after (slow: real generation on the CPU). Its greedy text must be the
in-process llamacpp backend's on the same file and prompt."""

import importlib.util
import socket
import subprocess
import sys
import time

import pytest
import requests

from edgebench.backends import GenerationSettings, ModelRef, create_backend
from edgebench.runner import measure_once, run_benchmark

pytestmark = pytest.mark.slow

SERVER_EXTRAS = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
ALIAS = "smollm2-135m"
READY_TIMEOUT_S = 180.0
# A chat-rendered question SmolLM2 answers in a few tokens and then ends (its end-of-sequence token).
SHORT_ANSWER = "<|im_start|>user\nWhat is 2+2? Answer with one number.<|im_end|>\n<|im_start|>assistant\n"
LONG_ANSWER = "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(smollm2_gguf, tmp_path_factory):
    missing = [m for m in SERVER_EXTRAS if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"llama-cpp-python's server extras are not installed ({', '.join(missing)}): "
                    f"pip install -e '.[server]' (the README's set-up does)")
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf), "--host",
                                 "127.0.0.1", "--port", str(port), "--n_threads", "2", "--model_alias", ALIAS,
                                 # by default it cuts a running stream short when another request arrives
                                 "--interrupt_requests", "False"],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if requests.get(url + "/v1/models", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer /v1/models within {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _runs(backend, model, prompt, settings, runs=1, warmup=0):
    return run_benchmark(backend, model, {"p": prompt}, settings, runs=runs, warmup=warmup)


def test_the_real_server_streams_timed_tokens_with_its_provenance(llama_server, smollm2_gguf):
    settings = GenerationSettings(max_new_tokens=8, threads=2)
    rows = _runs(create_backend("openai", url=llama_server + "/v1", model=ALIAS), ModelRef("smollm2"),
                 LONG_ANSWER, settings, runs=2, warmup=1)
    for row in rows:
        assert row["stream_arrivals"] == 8 and row["generated_tokens"] == 8 and row["done_reason"] == "length"
        assert row["ttft_ms"] > 0 and len(row["itl_ms"]) == 7 and all(x > 0 for x in row["itl_ms"])
        # This server sends no usage in a stream (it ignores stream_options) and no timings: stored as sent, i.e.
        # missing, never counted from the chunks instead.
        assert row["engine_prompt_eval_count"] is None and row["engine_eval_count"] is None
        assert row["engine_name"] == "openai:llama-cpp-python" and row["engine_version"] == "0.3.36"
        assert f'"model": "{ALIAS}"' in row["engine_build"]


def _generate(backend, model, prompt, settings):
    """One generation as the harness times it, with the text it carried."""
    backend.load(model, settings)
    try:
        return measure_once(backend, prompt, settings)
    finally:
        backend.unload()


def test_the_same_greedy_text_as_llama_cpp_in_process_and_the_early_stop(llama_server, smollm2_gguf):
    settings = GenerationSettings(max_new_tokens=24, threads=2)
    served = _generate(create_backend("openai", url=llama_server, model=ALIAS), ModelRef("smollm2"), SHORT_ANSWER,
                       settings)
    local = _generate(create_backend("llamacpp"), ModelRef("smollm2", gguf_path=smollm2_gguf), SHORT_ANSWER,
                      settings)
    assert local.completion.done_reason == "stop" and local.completion.generated_tokens < 24  # it does end early
    assert served.completion.done_reason == "stop"
    assert served.text == local.text and served.text.strip()
    # One streamed chunk per token on this server: as many arrivals as llama.cpp generated tokens.
    assert len(served.token_times_ns) == len(local.token_ids) == local.completion.generated_tokens


def test_a_concurrency_sweep_against_the_real_server(llama_server):
    """Two clients at once against a server that runs one request at a time: every request is answered in full, and
    the second client's first token waits for the first client's generation."""
    from edgebench.concurrency import run_concurrency

    rows = run_concurrency(lambda: create_backend("openai", url=llama_server, model=ALIAS), ModelRef("smollm2"), "p",
                           LONG_ANSWER, GenerationSettings(max_new_tokens=6), 2, 2, 0)
    assert len(rows) == 4 and {r["done_reason"] for r in rows} == {"length"}
    assert all(r["stream_arrivals"] == 6 and r["tpot_ms"] > 0 for r in rows)
    first = sorted(rows, key=lambda r: r["request_start_ms"])[:2]  # the two that started together
    assert max(r["ttft_ms"] for r in first) > min(r["e2e_ms"] for r in first) * 0.9


def test_a_model_the_real_server_does_not_serve_is_one_line(llama_server):
    """This server answers any model name with the one it has: the backend checks /v1/models itself."""
    from edgebench import EdgebenchError

    backend = create_backend("openai", url=llama_server, model="qwen2.5:0.5b")
    with pytest.raises(EdgebenchError, match=f"serves no model 'qwen2.5:0.5b' \\(it serves: {ALIAS}\\)") as err:
        backend.load(ModelRef("qwen"), GenerationSettings())
    assert "\n" not in str(err.value)
