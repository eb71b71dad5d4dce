"""The concurrency axis: N clients in a closed loop against one server, each request timed as a single run is.

Closed loop (as vLLM's `bench serve --max-concurrency` and AIPerf's concurrency mode): each client sends its next
request when its last one has ended, so N requests are in flight until the clients run out. Every client is a process
with its own connection (its own backend object, created and loaded like any other) and stamps its tokens with the
harness's one clock (`time.perf_counter_ns`, the system's monotonic clock), so per-request TTFT, ITL and E2E mean
exactly what they mean for a single stream.

Each client first runs the warm-up requests; all clients then start their timed requests together (a barrier), and
the point's window runs from that moment to the end of the last timed request. Aggregate throughput and requests/s
are counted over that window, goodput (edgebench.concurrency_summary) from the per-request latencies.

Only engines behind a server can be asked for more than one stream: an in-process engine (its backend takes no
`url`) runs concurrency 1, and the records say so (`in_process`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import multiprocessing
import queue as queue_module
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from . import EdgebenchError
from .atomic import atomic_path
from .backends import Backend, GenerationSettings, ModelRef, option_schema
from .monitor import Monitor
from .provenance import config_hash, machine
from .records import RUN_FIELDS, SCHEMA_VERSION, _redacted
from .runner import Measured, _row, measure_once, render_prompt

CONCURRENCY_SCHEMA_VERSION = "1"
_f64, _i64, _str, _bool = pa.float64(), pa.int64(), pa.string(), pa.bool_()
# One row per request: the run record's columns, then where the request sat in the sweep.
CONCURRENCY_FIELDS = RUN_FIELDS + [
    ("concurrency", _i64), ("client_index", _i64), ("in_process", _bool),
    # from the moment the clients' timed requests started together; warm-up requests are before it (negative)
    ("request_start_ms", _f64), ("request_end_ms", _f64),
    # the point's window: start of the timed requests to the end of the last one
    ("window_s", _f64),
    # time per output token after the first, as MLPerf Inference defines it: (E2E - TTFT) / (tokens - 1)
    ("tpot_ms", _f64),
    # what the server reported about the request, as it sent it (JSON), where it sent anything
    ("engine_usage_json", _str), ("engine_timings_json", _str),
]
CONCURRENCY_SCHEMA = pa.schema(CONCURRENCY_FIELDS)
JOIN_POLL_S = 0.2


def is_server_backend(name: str) -> bool:
    """A backend that talks to a server (its options have a `url`) can have several requests in flight."""
    return "url" in option_schema(name)["properties"]


def tpot_ms(measured: Measured) -> float:
    n = len(measured.token_times_ns)
    if n < 2:
        return math.nan
    return (measured.e2e_ns - measured.token_times_ns[0]) / 1e6 / (n - 1)


class _ClientFailed(EdgebenchError):
    """A client process's failure, as one line for the main process."""


def _stamp(window_start) -> None:
    window_start.value = time.perf_counter_ns()


def _client(k: int, make_backend: Callable[[], Backend], model: ModelRef, prompt: str, settings: GenerationSettings,
            runs: int, warmup: int, barrier, results) -> None:
    """One client, in a process of its own: its own backend (its own connection), warm-ups, the common start, then
    its timed requests one after the other. Sends back its (client, run index, start ns, measured) list or its error
    as one line. It never unloads the model: the other clients are still using it."""
    from .scripting import die_with_parent

    die_with_parent()
    out = []
    try:
        backend = make_backend()
        backend.load(model, settings)
        for i in range(warmup + runs):
            if i == warmup:
                barrier.wait()
            start = time.perf_counter_ns()
            out.append((k, i - warmup, start, measure_once(backend, prompt, settings)))
        results.put(("ok", k, out))
    except threading.BrokenBarrierError:
        results.put(("aborted", k, None))
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one line in the main process
        barrier.abort()
        message = str(exc) if isinstance(exc, EdgebenchError) else f"{type(exc).__name__}: {exc}"
        results.put(("error", k, message))


class _Clients:
    """N client processes. Processes, not threads: N clients sending at the same moment would otherwise take turns
    on one interpreter lock, and the later ones' requests would leave late, inside their TTFT. Every process stamps
    with `time.perf_counter_ns`, the system's one monotonic clock (CLOCK_MONOTONIC on Linux), so their times compare.
    The first failure aborts the others at the common start and is raised as one line."""

    def __init__(self, make_backend: Callable[[], Backend], model: ModelRef, prompt: str,
                 settings: GenerationSettings, clients: int, runs: int, warmup: int):
        self.ctx = multiprocessing.get_context("fork")
        self.args = (make_backend, model, prompt, settings, runs, warmup)
        self.clients = clients
        self.window_start_ns: Optional[int] = None
        self.results: list[tuple[int, int, int, Measured]] = []

    @contextlib.contextmanager
    def started(self) -> Iterator[None]:
        """The client processes, forked on entry (before the monitor starts its sampling thread: a fork copies only
        the forking thread, and a lock another thread held would stay locked in the child); stopped on exit."""
        window_start = self.ctx.Value("q", 0)
        # The last client to arrive stamps the window's start, before any of them is released.
        barrier = self.ctx.Barrier(self.clients, action=functools.partial(_stamp, window_start))
        self._queue = self.ctx.Queue()
        self._window_start = window_start
        self._procs = [self.ctx.Process(target=_client, args=(k, *self.args, barrier, self._queue),
                                        name=f"edgebench-client-{k}", daemon=True) for k in range(self.clients)]
        try:
            for proc in self._procs:
                proc.start()
            yield
        finally:
            for proc in self._procs:
                if proc.is_alive():
                    proc.terminate()
                proc.join()

    def collect(self) -> None:
        """Wait for every client's answer; the first error is raised as one line."""
        answers = []
        while len(answers) < self.clients:
            try:
                answers.append(self._queue.get(timeout=JOIN_POLL_S))
            except queue_module.Empty:
                silent = [p for p in self._procs if p.exitcode not in (None, 0)]
                if silent and len(answers) + len(silent) >= self.clients:
                    raise EdgebenchError(f"a client process died (exit code {silent[0].exitcode}) before it "
                                         f"reported") from None
        errors = sorted((k, message) for status, k, message in answers if status == "error")
        if errors:
            raise _ClientFailed(errors[0][1])
        for _, _, out in answers:
            self.results.extend(out)
        self.window_start_ns = self._window_start.value


def run_concurrency(make_backend: Callable[[], Backend], model: ModelRef, prompt_id: str, text: str,
                    settings: GenerationSettings, concurrency: int, runs: int, warmup: int,
                    testbed: str = "local") -> list[dict]:
    """`concurrency` clients, each with `warmup` + `runs` requests of the prompt; one row per request.

    A server backend's clients run in processes of their own; this process's backend only reads the provenance and
    releases the model at the end. An in-process engine runs its one stream here."""
    if concurrency < 1 or runs < 1 or warmup < 0:
        raise EdgebenchError("concurrency and runs must be at least 1 and warm-up at least 0")
    first = make_backend()
    server = is_server_backend(first.name)
    if concurrency > 1 and not server:
        raise EdgebenchError(f"the {first.name} backend runs in this process, one request at a time: its "
                             f"concurrency is 1 only (asked for {concurrency})")
    first.load(model, settings)
    try:
        rendered = render_prompt(model, text, settings)
        static = _static(first, model, {prompt_id: text}, settings, runs, warmup, testbed, concurrency)
        if server:
            clients = _Clients(make_backend, model, rendered, settings, concurrency, runs, warmup)
            with clients.started(), Monitor() as monitor, monitor.window() as mon:
                clients.collect()
            results, t0 = clients.results, clients.window_start_ns
        else:
            with Monitor() as monitor, monitor.window() as mon:
                results, t0 = _one_stream(first, rendered, settings, runs, warmup)
        return _rows(results, t0, static, prompt_id, text, rendered, mon.result, concurrency, server)
    finally:
        first.unload()


def _one_stream(backend: Backend, prompt: str, settings: GenerationSettings, runs: int,
                warmup: int) -> tuple[list, int]:
    results, t0 = [], None
    for i in range(warmup + runs):
        if i == warmup:
            t0 = time.perf_counter_ns()
        start = time.perf_counter_ns()
        results.append((0, i - warmup, start, measure_once(backend, prompt, settings)))
    return results, t0


def _static(backend: Backend, model: ModelRef, prompts: dict, settings: GenerationSettings, runs: int, warmup: int,
            testbed: str, concurrency: int) -> dict:
    """The columns every request of the point shares (as edgebench.runner.run_benchmark writes them)."""
    return {
        "testbed": testbed, "backend": backend.name, "model": model.name, "ollama_tag": model.ollama_tag,
        **{k: model.info.get(k) for k in ("gguf_path", "gguf_sha256", "gguf_size_bytes", "architecture",
                                         "parameter_count", "quantization", "synthetic")},
        **settings.as_columns(), **machine(), **backend.versions(),
        "engine_device": backend.device(),
        "config_hash": config_hash({"settings": settings.as_columns(), "runs": runs, "warmup": warmup,
                                    "prompts": prompts, "concurrency": concurrency,
                                    "model": model.info.get("gguf_sha256") or model.name}),
    }


def _as_json(value) -> Optional[str]:
    return json.dumps(value, sort_keys=True) if value else None


def _rows(results: list, t0: int, static: dict, prompt_id: str, text: str, rendered: str, resources: dict,
          concurrency: int, server: bool) -> list[dict]:
    timed_ends = [start + m.e2e_ns for _, i, start, m in results if i >= 0]
    window_s = (max(timed_ends) - t0) / 1e9 if timed_ends else math.nan
    rows = []
    for k, i, start, measured in sorted(results, key=lambda r: r[2]):
        row = _row(static, prompt_id, text, rendered, i, measured, resources)
        engine = measured.completion.engine
        if concurrency > 1 and static["backend"] == "ollama":
            # The Ollama client counts connections per process: with several clients it cannot tell whose it was.
            row["new_connection"] = None
        row.update({
            "concurrency": concurrency, "client_index": k, "in_process": not server,
            "request_start_ms": (start - t0) / 1e6, "request_end_ms": (start + measured.e2e_ns - t0) / 1e6,
            "window_s": window_s, "tpot_ms": tpot_ms(measured),
            "engine_usage_json": _as_json(engine.get("engine_usage")),
            "engine_timings_json": _as_json(engine.get("engine_timings")),
        })
        rows.append(row)
    return rows


def to_table(rows: list[dict], extra_metadata: Optional[dict] = None) -> pa.Table:
    names = [name for name, _ in CONCURRENCY_FIELDS]
    unknown = set().union(*(r.keys() for r in rows)) - set(names) if rows else set()
    if unknown:
        raise ValueError(f"concurrency rows carry columns missing from CONCURRENCY_SCHEMA: {sorted(unknown)}")
    table = pa.table({name: [r.get(name) for r in rows] for name in names}, schema=CONCURRENCY_SCHEMA)
    meta = {b"edgebench_schema_version": SCHEMA_VERSION.encode(),
            b"edgebench_concurrency_schema_version": CONCURRENCY_SCHEMA_VERSION.encode()}
    if extra_metadata:
        meta[b"edgebench_extra"] = json.dumps(_redacted(extra_metadata), sort_keys=True, default=str).encode()
    return table.replace_schema_metadata(meta)


def write_concurrency(rows: list[dict], path: str | Path, extra_metadata: Optional[dict] = None) -> None:
    """The point's requests, written atomically once all of them are measured (an interrupted point leaves
    nothing)."""
    table = to_table(rows, extra_metadata)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
