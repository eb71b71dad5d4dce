"""The concurrency sweep against the Ollama stand-in serving N streams at once with known delays: the closed-loop
clients must measure the delays the server was given, for every N, and the statistics must count what was sent."""

import math
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

from edgebench import EdgebenchError
from edgebench.backends import Backend, Completion, GenerationSettings, ModelRef, Token, create_backend
from edgebench.concurrency import is_server_backend, run_concurrency, write_concurrency
from edgebench.concurrency_summary import DEFAULT_LIMITS, IN_PROCESS_NOTE, met_limits, summarize, table_for_paper
from fake_ollama import FakeOllama, Script
from timing import within_attempts

MODEL = ModelRef(name="smollm:135m", ollama_tag="smollm:135m")
TTFT_S, ITL_S, TOKENS = 0.040, 0.010, 8
TOLERANCE_MS = 2.0


def _sweep(server, backend, n, runs=3, warmup=1, **options):
    def make():
        return create_backend(backend, url=server.url, **options)

    return run_concurrency(make, MODEL, "p", "Hello", GenerationSettings(max_new_tokens=TOKENS), n, runs, warmup,
                           testbed="t")


@pytest.fixture(scope="module")
def round_trip_ms():
    """What a request costs its client here when the server answers at once: TTFT includes it as it does for any
    client of a server (loopback HTTP and both sides' Python: about 1 ms on an idle 2-core machine, more when it is
    shared), and no measuring can take it away. One stream, one-token answers, the median of 15."""
    out = {}
    with FakeOllama(Script(ttft_s=0.0, itl_s=[0.0])) as server:
        for backend in ("ollama", "openai"):
            rows = run_concurrency(lambda: create_backend(backend, url=server.url), MODEL, "p", "Hello",
                                   GenerationSettings(max_new_tokens=1), 1, 15, 2)
            out[backend] = float(pd.Series([r["ttft_ms"] for r in rows if not r["is_warmup"]]).median())
    return out


@pytest.mark.parametrize("backend", ["ollama", "openai"])
@pytest.mark.parametrize("n", [1, 4, 8])
def test_the_sweep_measures_the_servers_delays_at_every_concurrency(n, backend, round_trip_ms):
    within_attempts(3, lambda: _measure_the_servers_delays(n, backend, round_trip_ms))


def _measure_the_servers_delays(n, backend, round_trip_ms):
    with FakeOllama(Script(ttft_s=TTFT_S, itl_s=[ITL_S] * (TOKENS - 1), process_per_connection=True)) as server:
        rows = _sweep(server, backend, n, runs=5)
        peak = server.peak_in_flight
    assert peak == n  # the server really had N streams at once
    timed = pd.DataFrame([r for r in rows if not r["is_warmup"]])
    assert len(timed) == 5 * n and sorted(timed["client_index"].unique()) == list(range(n))
    assert (timed["stream_arrivals"] == TOKENS).all() and (timed["concurrency"] == n).all()
    if backend == "openai":  # each client's connection is reused: no TCP set-up inside a timed request
        assert not timed["new_connection"].any()
    itl = [x for gaps in timed["itl_ms"] for x in gaps]
    print(f"N={n} {backend}: TTFT median {timed['ttft_ms'].median():.2f} ms (round trip "
          f"{round_trip_ms[backend]:.2f}), ITL median {pd.Series(itl).median():.2f} ms, TPOT median "
          f"{timed['tpot_ms'].median():.2f} ms")
    # Never earlier than the server sent it; late by no more than the request's own round trip (+ 2 ms).
    assert (timed["ttft_ms"] > TTFT_S * 1e3 - 0.5).all()
    assert abs(timed["ttft_ms"].median() - (TTFT_S * 1e3 + round_trip_ms[backend])) <= TOLERANCE_MS
    assert abs(pd.Series(itl).median() - ITL_S * 1e3) <= TOLERANCE_MS
    assert abs(timed["tpot_ms"].median() - ITL_S * 1e3) <= TOLERANCE_MS
    # Closed loop: each client's requests follow one another, all clients start their timed requests together.
    for _, g in timed.groupby("client_index"):
        g = g.sort_values("request_start_ms")
        assert (g["request_start_ms"].iloc[1:].values >= g["request_end_ms"].iloc[:-1].values).all()
    # (within a thread's wake-up on a busy machine, far less than one request of 110 ms)
    assert timed.groupby("client_index")["request_start_ms"].min().max() < 30.0


def test_statistics_count_what_the_clients_received(tmp_path):
    with FakeOllama(Script(ttft_s=TTFT_S, itl_s=[ITL_S] * (TOKENS - 1), stop_after=5, llama_server=True)) as server:
        rows = _sweep(server, "openai", 2, runs=2)
    path = tmp_path / "c2.parquet"
    write_concurrency(rows, path, {"backend_options": {"url": server.url}})
    table = pq.read_table(path)
    assert table.schema.metadata[b"edgebench_concurrency_schema_version"] == b"1"
    requests = table.to_pandas()
    # what the server sent about each request, as it sent it
    assert requests["engine_usage_json"].str.contains('"completion_tokens": 5').all()
    assert requests["engine_timings_json"].str.contains('"predicted_ms": 40.25').all()
    s = summarize(requests).iloc[0]
    assert s["requests"] == 4 and s["output_tokens"] == 20 and s["early_stops"] == 4 and not s["in_process"]
    assert s["output_tok_s"] == pytest.approx(20 / s["window_s"])
    assert s["requests_s"] == pytest.approx(4 / s["window_s"])
    # 40 ms TTFT and 10 ms TPOT meet both classes' limits
    assert s["goodput_conversational"] == 1.0 and s["goodput_interactive"] == 1.0


def test_goodput_is_the_share_meeting_both_limits():
    r = pd.DataFrame({"ttft_ms": [100.0, 600.0, 100.0, 100.0], "tpot_ms": [20.0, 20.0, 50.0, math.nan],
                      "stream_arrivals": [8, 8, 8, 1]})
    lim = DEFAULT_LIMITS["interactive"]
    assert met_limits(r, lim["ttft_ms"], lim["tpot_ms"]).tolist() == [True, False, False, True]
    lim = DEFAULT_LIMITS["conversational"]
    assert met_limits(r, lim["ttft_ms"], lim["tpot_ms"]).tolist() == [True, True, True, True]


def test_in_process_engines_run_one_stream_and_say_so():
    assert is_server_backend("ollama") and is_server_backend("openai")
    assert not is_server_backend("llamacpp") and not is_server_backend("edgellm")

    class InProcess:
        name = "llamacpp"

    with pytest.raises(EdgebenchError, match="runs in this process, one request at a time: its concurrency is 1"):
        run_concurrency(InProcess, MODEL, "p", "Hello", GenerationSettings(), 4, 1, 0)
    assert IN_PROCESS_NOTE.startswith("in-process engine")


class OneStreamEngine(Backend):
    """An in-process engine as the sweep sees one: three tokens a generation, no server."""
    name = "llamacpp"

    def load(self, model, settings):
        pass

    def generate(self, prompt, settings):
        for i in range(3):
            time.sleep(0.002)
            yield Token(f" t{i}", i)
        return Completion(prompt_tokens=2, generated_tokens=3, done_reason="length")

    def versions(self):
        return {"engine_name": "stub", "engine_version": "0"}


def test_an_in_process_engine_runs_its_one_stream_here_and_the_table_says_so():
    rows = run_concurrency(OneStreamEngine, MODEL, "p", "Hello", GenerationSettings(max_new_tokens=3), 1, 3, 1)
    assert len(rows) == 4 and all(r["in_process"] and r["concurrency"] == 1 for r in rows)
    s = summarize(pd.DataFrame(rows)).iloc[0]
    assert s["note"] == IN_PROCESS_NOTE and s["requests"] == 3 and s["output_tokens"] == 9
    assert "in-process" in table_for_paper(pd.DataFrame([s])).iloc[0]["note"]


def test_a_failing_client_stops_the_point_with_one_line_and_nothing_written(tmp_path):
    with FakeOllama(Script(ttft_s=0.01, itl_s=[0.002] * 7, fault="drop", fault_at=2)) as server:
        with pytest.raises(EdgebenchError, match="dropped during a generation") as err:
            _sweep(server, "openai", 4)
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []
