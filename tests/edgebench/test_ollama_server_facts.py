"""Every Ollama row records the server's version, the runner serving the model and the server settings that change
what a long context costs, read from the local server's environment, or "unknown" where they cannot be read."""

import subprocess
import sys
import time

import psutil
import pytest

from edgebench.backends.base import GenerationSettings, ModelRef
from edgebench.backends.ollama import (UNKNOWN, UNSET, OllamaBackend, runner_command, server_process,
                                       server_settings)
from edgebench.records import RUN_COLUMNS
from edgebench.runner import run_benchmark
from fake_ollama import FakeOllama, Script

COLUMNS = ("ollama_runner", "ollama_flash_attention", "ollama_kv_cache_type", "ollama_num_parallel",
           "ollama_settings_source")


def _rows(server):
    model = ModelRef(name="smollm:135m", ollama_tag="smollm:135m")
    return run_benchmark(OllamaBackend(url=server.url), model, {"p": "Hello"}, GenerationSettings(max_new_tokens=4),
                         2, 0)


def test_the_columns_are_in_the_run_schema():
    assert set(COLUMNS) <= set(RUN_COLUMNS)


# The stand-in, started as Ollama is (a program of its own, with its environment): a process's environment as
# /proc shows it is the one it was started with, so a stand-in forked from the tests would show theirs.
SERVE = """
import signal, sys, time
sys.path.insert(0, sys.argv[1])
from fake_ollama import FakeOllama, Script
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
with FakeOllama(Script(itl_s=[0.001] * 3)) as server:
    print(server.url, server.process.pid, flush=True)
    time.sleep(300)
"""


@pytest.fixture
def started_server():
    def start(**env):
        import os
        from pathlib import Path

        base = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
        proc = subprocess.Popen([sys.executable, "-c", SERVE, str(Path(__file__).resolve().parents[1])],
                                env={**base, **env}, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        url, pid = proc.stdout.readline().split()
        return url, int(pid)

    started = []
    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=30)


class _Server:
    def __init__(self, url):
        self.url = url


def test_a_local_servers_environment_is_read_into_every_row(started_server):
    url, pid = started_server(OLLAMA_FLASH_ATTENTION="1", OLLAMA_NUM_PARALLEL="4")
    rows = _rows(_Server(url))
    assert len(rows) == 2
    for row in rows:
        assert row["engine_name"] == "ollama" and row["engine_version"] == "0.12.6-fake"
        assert row["ollama_flash_attention"] == "1" and row["ollama_num_parallel"] == "4"
        assert row["ollama_kv_cache_type"] == UNSET  # read, and not set: the server's default applies
        assert row["ollama_settings_source"] == f"the environment of the server process (pid {pid})"
        assert row["ollama_runner"] == UNKNOWN  # the stand-in starts no runner process


def test_the_settings_are_the_servers_not_the_benchmarks(started_server, monkeypatch):
    monkeypatch.setenv("OLLAMA_KV_CACHE_TYPE", "q8_0")  # the client's environment says nothing about the server's
    url, _ = started_server(OLLAMA_KV_CACHE_TYPE="f16")
    assert {r["ollama_kv_cache_type"] for r in _rows(_Server(url))} == {"f16"}


def test_a_server_on_another_machine_is_unknown_not_guessed(monkeypatch):
    monkeypatch.setenv("OLLAMA_FLASH_ATTENTION", "1")  # this machine's environment says nothing about a remote one
    assert server_process("http://10.1.2.3:11434") is None
    assert server_settings(None) == {"ollama_flash_attention": UNKNOWN, "ollama_kv_cache_type": UNKNOWN,
                                     "ollama_num_parallel": UNKNOWN}
    assert runner_command(None) == UNKNOWN


def test_a_local_port_nobody_listens_on_has_no_server_process():
    with FakeOllama() as server:
        port = int(server.url.rsplit(":", 1)[1])
    assert server_process(f"http://127.0.0.1:{port}") is None


def test_an_unreadable_environment_is_unknown():
    class Hidden:
        pid = 1

        def environ(self):
            raise psutil.AccessDenied(1)

    assert set(server_settings(Hidden()).values()) == {UNKNOWN}


@pytest.fixture
def runner_children(tmp_path):
    """Two child processes of this one, as a server's runners: one named after the model's file."""
    blob = str(tmp_path / "blobs" / "sha256-abc123")
    sleep = "import time; time.sleep(60)"
    children = [subprocess.Popen([sys.executable, "-c", sleep, "runner", "--model", blob, "--port", "4001"]),
                subprocess.Popen([sys.executable, "-c", sleep, "runner", "--model", "/other/blob", "--port", "4002"])]
    time.sleep(0.3)
    yield blob
    for child in children:
        child.kill()
        child.wait()


def test_the_runner_is_the_child_whose_command_names_the_model(runner_children):
    me = psutil.Process()
    command = runner_command(me, "abc123")
    assert command.endswith(f"runner --model {runner_children} --port 4001")
    assert runner_command(me, None) == UNKNOWN  # two runners, no way to tell which serves the model
