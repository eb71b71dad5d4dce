"""The openai backend against the Ollama stand-in's OpenAI-compatible endpoints (/v1): what it sends, what it records,
and every bad input as one line with nothing written. The real server's test is test_openai_server.py."""

import socket

import pytest

from edgebench import EdgebenchError
from edgebench.backends import GenerationSettings, ModelRef, create_backend
from edgebench.backends.openai import base_url, server_kind
from edgebench.records import RunWriter
from edgebench.runner import run_benchmark
from fake_ollama import FakeOllama, Script

MODEL = ModelRef(name="smollm2", ollama_tag="smollm:135m")
FAST = dict(ttft_s=0.01, itl_s=[0.002] * 7)


def _completions(server) -> list[dict]:
    return [body for path, body in server.requests if path == "/v1/completions"]


def _bench(url, out, settings=GenerationSettings(max_new_tokens=6), **options):
    """What the pipeline's benchmark job does: each run to the journal, the Parquet file only at the end."""
    with RunWriter(out) as writer:
        return run_benchmark(create_backend("openai", url=url, **options), MODEL, {"p": "Hello"}, settings, runs=2,
                             warmup=1, on_run=writer.add)


def test_a_stream_is_timed_by_the_harness_and_the_usage_kept_as_sent(tmp_path):
    with FakeOllama(Script(**FAST)) as server:
        rows = _bench(server.url + "/v1", tmp_path / "runs.parquet")
        body = _completions(server)[0]
    assert body["prompt"] == "Hello" and body["max_tokens"] == 6 and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True} and body["temperature"] == 0.0 and body["seed"] == 42
    assert "ignore_eos" not in body and "min_tokens" not in body
    for row in rows:
        assert row["stream_arrivals"] == 6 and row["done_reason"] == "length"
        assert row["ttft_ms"] >= 10 and len(row["itl_ms"]) == 5
        # usage as the server sent it: 7 prompt tokens (the script's count, not ours), 6 generated
        assert row["prompt_tokens"] == 7 and row["engine_prompt_eval_count"] == 7 and row["engine_eval_count"] == 6
        assert row["engine_eval_duration_ns"] is None  # Ollama sends no timings: missing, not guessed
        assert row["engine_name"] == "openai:ollama" and row["engine_version"] == "0.12.6-fake"
        assert '"model": "smollm:135m"' in row["engine_build"]
    assert (tmp_path / "runs.parquet").is_file()


def test_llama_servers_timings_are_kept_and_ignore_eos_sent_as_it_takes_it(tmp_path):
    with FakeOllama(Script(llama_server=True, **FAST)) as server:
        rows = _bench(server.url, tmp_path / "runs.parquet", GenerationSettings(max_new_tokens=6, ignore_eos=True))
        body = _completions(server)[0]
    assert body["ignore_eos"] is True
    for row in rows:
        assert row["engine_name"] == "openai:llama-server" and '"build": "b7100-0123abcd"' in row["engine_build"]
        # as sent, from ms to ns: 12.5 ms of prompt, 40.25 ms for 6 tokens
        assert row["engine_prompt_eval_duration_ns"] == 12_500_000 and row["engine_eval_duration_ns"] == 40_250_000
        assert row["engine_eval_count"] == 6 and row["engine_decode_tok_s"] == pytest.approx(6 / 0.04025)


def test_an_early_stop_is_recorded_as_such(tmp_path):
    with FakeOllama(Script(stop_after=3, **FAST)) as server:
        rows = _bench(server.url, tmp_path / "runs.parquet")
    assert {(r["done_reason"], r["generated_tokens"], r["stream_arrivals"]) for r in rows} == {("stop", 3, 3)}


def test_ignore_eos_is_refused_where_the_server_cannot_be_told(tmp_path):
    out = tmp_path / "runs.parquet"
    with FakeOllama(Script(**FAST)) as server:
        with pytest.raises(EdgebenchError, match="no known way to ignore the end-of-sequence token") as err:
            _bench(server.url, out, GenerationSettings(max_new_tokens=6, ignore_eos=True))
        assert _completions(server) == []  # refused before any request
        # A server named as one that takes the field gets it; one that stops anyway fails the run.
        rows = _bench(server.url, out, GenerationSettings(max_new_tokens=6, ignore_eos=True), server="vllm")
        assert _completions(server)[-1]["ignore_eos"] is True and rows[0]["done_reason"] == "length"
    assert "\n" not in str(err.value)
    with FakeOllama(Script(stop_after=2, **FAST)) as server:
        with pytest.raises(EdgebenchError, match="stopped at the end-of-sequence token .* min_tokens"):
            _bench(server.url, tmp_path / "b.parquet", GenerationSettings(max_new_tokens=6, ignore_eos=True),
                   server="llama-cpp-python")
        assert _completions(server)[-1]["min_tokens"] == 6
    assert not (tmp_path / "b.parquet").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BAD = {
    "unreachable": (None, dict(retries=1), "cannot reach an OpenAI-compatible server at http://127.0.0.1:"),
    "unknown model": (Script(**FAST), dict(model="nope:1b"),
                      "serves no model 'nope:1b' \\(it serves: smollm:135m\\)"),
    "HTTP 500": (Script(fault="500_json", **FAST), {},
                 "answered 500 on /v1/completions: llama runner process has terminated"),
    "stream cut": (Script(fault="drop", fault_at=2, **FAST), {}, "dropped during a generation"),
    "no [DONE]": (Script(fault="no_done", fault_at=3, **FAST), {}, "ended the stream after 3 chunks without"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_nothing_written(case, tmp_path):
    script, options, message = BAD[case]
    out = tmp_path / "runs.parquet"
    if script is None:
        with pytest.raises(EdgebenchError, match=message) as err:
            _bench(f"http://127.0.0.1:{_free_port()}", out, **options)
    else:
        with FakeOllama(script) as server, pytest.raises(EdgebenchError, match=message) as err:
            _bench(server.url, out, **options)
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # no Parquet file, no journal, no temporary


def test_an_api_key_comes_from_the_named_variable_and_is_never_recorded(tmp_path, monkeypatch):
    with pytest.raises(EdgebenchError, match="EDGEBENCH_TEST_KEY .* not set"):
        create_backend("openai", url="http://127.0.0.1:1", api_key_env="EDGEBENCH_TEST_KEY")
    monkeypatch.setenv("EDGEBENCH_TEST_KEY", "sk-secret-123")
    backend = create_backend("openai", url="http://127.0.0.1:1", api_key_env="EDGEBENCH_TEST_KEY")
    assert backend.client.session.headers["Authorization"] == "Bearer sk-secret-123"
    with FakeOllama(Script(**FAST)) as server:
        rows = _bench(server.url, tmp_path / "runs.parquet", api_key_env="EDGEBENCH_TEST_KEY")
    assert "sk-secret-123" not in (tmp_path / "runs.parquet").read_bytes().decode("latin-1")
    assert not any("sk-secret-123" in str(v) for row in rows for v in row.values())


def test_urls_and_server_kinds():
    assert base_url("http://h:8000/v1/") == "http://h:8000" and base_url("https://h/proxy") == "https://h/proxy"
    for bad, message in (("", "needs the server's url"), ("h:8000", "must be http"),
                         ("http://u:p@h:1", "carries credentials")):
        with pytest.raises(EdgebenchError, match=message):
            base_url(bad)
    assert server_kind({"default_generation_settings": {}}, None, None) == "llama-server"
    assert server_kind(None, {"version": "0.11.0"}, None) == "vllm"
    assert server_kind(None, None, {"info": {"title": "🦙 llama.cpp Python API"}}) == "llama-cpp-python"
    assert server_kind(None, {"version": "0.5.0"}, None, {"model_path": "x"}) == "sglang"
    assert server_kind(None, None, None, None, {"version": "0.24.0"}) == "ollama"
    assert server_kind(None, None, {"info": {"title": "FastAPI"}}) == "other"
