"""Fault injection against the Ollama stand-in, on loopback: every fault ends in one line and a nonzero exit (or a
flagged run), and no timed run ever includes a retried request."""

import json

import pyarrow.parquet as pq
import pytest

from edgebench import EdgebenchError
from edgebench.backends import GenerationSettings, ModelRef
from edgebench.backends.ollama import OllamaBackend
from edgebench.cli import main
from edgebench.runner import run_benchmark
from fake_ollama import FakeOllama, Script

MODEL = ModelRef(name="smollm:135m", ollama_tag="smollm:135m")
FAST = dict(ttft_s=0.01, itl_s=[0.002] * 5)


def _cli(server, tmp_path, *extra, runs=2, warmup=1):
    out = tmp_path / "runs.parquet"
    code = main(["bench", "--backend", "ollama", "--model", "smollm:135m", "--ollama-url", server.url,
                 "--runs", str(runs), "--warmup", str(warmup), "--tokens", "6", "--prompt", "Hello", "--testbed", "t",
                 "--no-progress", "-o", str(out), *extra])
    return code, out


def _timed_generations(requests) -> list[dict]:
    return [b for path, b in requests if path == "/api/generate" and b.get("prompt")]


def test_a_reload_shaped_stream_is_read_whole():
    """What a first generation after a reload looks like on the wire: a long pause before the headers, chunks cut
    across TCP writes, the final chunk in the same write as the last token, and no newline after it."""
    script = Script(headers_pause_s=1.0, split_writes=True, final_with_last_token=True, no_trailing_newline=True,
                    **FAST)
    with FakeOllama(script) as server:
        rows = run_benchmark(OllamaBackend(url=server.url), MODEL, {"p": "Hello"},
                             GenerationSettings(max_new_tokens=6), runs=2, warmup=1)
    assert [r["done_reason"] for r in rows] == ["length"] * 3
    assert all(r["generated_tokens"] == 6 and r["stream_arrivals"] == 6 for r in rows)
    assert rows[0]["ttft_ms"] > 1000  # the pause is the first run's, as a user sees it
    assert all(r["ttft_ms"] < 500 for r in rows[1:])
    assert not any(r["new_connection"] for r in rows)


FAULTS = {
    "reset": "failed before it answered",
    "drop": "dropped during generation",
    "no_done": "without a final `done: true` chunk",
    "malformed": "not JSON",
    "null": "`response` is null",
    "error_chunk": "Ollama error during generation: an error was encountered",
    "500_json": "Ollama answered 500 on /api/generate: llama runner process has terminated",
    "500_html": "Ollama answered 500 on /api/generate: 502 Bad Gateway Bad Gateway upstream went away",
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_every_fault_is_one_line_a_nonzero_exit_and_never_a_retry(fault, tmp_path, capsys):
    with FakeOllama(Script(fault=fault, **FAST)) as server:
        code, out = _cli(server, tmp_path)
        requests = server.requests
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and err.startswith("edgebench: error: "), err
    assert FAULTS[fault] in err, err
    assert "Traceback" not in err
    assert len(_timed_generations(requests)) == 1  # the failed request was not sent again
    assert requests[-1][1].get("keep_alive") == 0  # the model was still released
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))  # nothing half-written


def test_the_error_of_a_stream_without_done_says_what_arrived():
    with FakeOllama(Script(fault="no_done", fault_at=3, **FAST)) as server:
        with pytest.raises(EdgebenchError) as info:
            run_benchmark(OllamaBackend(url=server.url), MODEL, {"p": "Hi"}, GenerationSettings(max_new_tokens=6), 1, 0)
    message = str(info.value)
    assert "3 chunks" in message and "bytes in" in message and " s; the last line (" in message
    assert "with a newline" in message and "' t2'" in message or '" t2"' in message


def test_a_stream_cut_by_ollamas_repeat_limit_is_named_as_such():
    """Ollama up to 0.3x stops a generation whose last 31 events carry the same text, without done or error."""
    with FakeOllama(Script(fault="no_done", fault_at=40, token_text="\n", ttft_s=0.01, itl_s=[0.0] * 60)) as server:
        with pytest.raises(EdgebenchError, match="same text.*repeating a token.*--prompt-format chat"):
            run_benchmark(OllamaBackend(url=server.url), MODEL, {"p": "Hi"}, GenerationSettings(max_new_tokens=64),
                          1, 0)


def test_a_connection_lost_between_runs_flags_the_run_that_reconnected():
    with FakeOllama(Script(close_after_each=True, **FAST)) as server:
        rows = run_benchmark(OllamaBackend(url=server.url), MODEL, {"p": "Hello"},
                             GenerationSettings(max_new_tokens=6), runs=2, warmup=0)
        assert len(_timed_generations(server.requests)) == 2  # reconnected, never re-sent
    assert [r["new_connection"] for r in rows] == [False, True]


def test_a_server_silent_past_the_read_timeout_is_one_line_naming_the_option(tmp_path, capsys):
    with FakeOllama(Script(ttft_s=2.0, itl_s=[0.001])) as server:
        code, out = _cli(server, tmp_path, "--ollama-timeout", "0.3", runs=1, warmup=0)
        requests = server.requests
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "--ollama-timeout" in err, err
    assert len(_timed_generations(requests)) == 1


def test_the_model_is_loaded_with_the_runs_options_so_no_run_reloads_it():
    with FakeOllama(Script(**FAST)) as server:
        run_benchmark(OllamaBackend(url=server.url), MODEL, {"p": "Hello"},
                      GenerationSettings(max_new_tokens=6, num_ctx=1024), runs=1, warmup=0)
        gens = [b for path, b in server.requests if path == "/api/generate"]
    load, run = gens[0], gens[1]
    assert load.get("prompt") is None and load["options"]["num_ctx"] == 1024
    assert run["options"] == load["options"]


def test_a_context_other_than_the_configured_one_is_refused_before_any_run():
    with FakeOllama(Script(context_length=131072, **FAST)) as server:
        with pytest.raises(EdgebenchError, match="context of 131072 tokens, not the configured num_ctx 2048"):
            run_benchmark(OllamaBackend(url=server.url), MODEL, {"p": "Hello"}, GenerationSettings(), 1, 0)
        assert not _timed_generations(server.requests)
        assert server.requests[-1][1].get("keep_alive") == 0


def test_a_failed_run_after_good_ones_writes_nothing(tmp_path, capsys):
    """The job fails as a whole: the runs before are not published as if the benchmark had completed."""
    with FakeOllama(Script(fault="drop", fault_at=4, **FAST)) as server:
        code, out = _cli(server, tmp_path, runs=1, warmup=0)
    assert code == 2 and not out.exists() and not list(tmp_path.iterdir())
    capsys.readouterr()


def test_runs_record_whether_they_reconnected(tmp_path):
    with FakeOllama(Script(**FAST)) as server:
        code, out = _cli(server, tmp_path)
    assert code == 0
    table = pq.read_table(out).to_pandas()
    assert list(table["new_connection"]) == [False, False, False]
    assert json.loads(json.dumps(list(table["done_reason"]))) == ["length"] * 3


@pytest.mark.parametrize("args, message", [
    (["--ctx", "-5"], "--ctx must be at least 1 token, not -5"),
    (["--temperature", "-1"], "--temperature must be 0 (greedy) or more, not -1.0"),
    (["--ollama-timeout", "0"], "--ollama-timeout must be a positive number of seconds, not 0.0"),
    (["--backend", "vllm"], "unknown backend 'vllm'; choose one of edgellm, llamacpp, ollama, openai"),
])
def test_bad_options_are_one_line_before_any_request(args, message, tmp_path, capsys):
    with FakeOllama(Script(**FAST)) as server:
        code, out = _cli(server, tmp_path, *args)
        requests = server.requests
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"edgebench: error: {message}", err
    assert requests == [] and not out.exists()


def test_an_output_that_cannot_be_written_fails_before_any_request(tmp_path, capsys):
    with FakeOllama(Script(**FAST)) as server:
        code = main(["bench", "--backend", "ollama", "--model", "smollm:135m", "--ollama-url", server.url,
                     "--runs", "1", "--warmup", "0", "--no-progress", "--testbed", "t", "-o", "/proc/x.parquet"])
        requests = server.requests
    assert code == 2 and requests == []
    assert capsys.readouterr().err.strip().startswith("edgebench: error: cannot write /proc/x.parquet")


def test_runs_that_generate_no_token_say_why_in_one_line(tmp_path, capsys):
    with FakeOllama(Script(stop_after=0, **FAST)) as server:
        code, out = _cli(server, tmp_path, runs=2, warmup=0)
    err = capsys.readouterr().err.strip()
    assert code == 0 and out.exists()
    assert err.count("\n") == 0 and "2 of 2 runs generated no token" in err and "--prompt-format chat" in err
