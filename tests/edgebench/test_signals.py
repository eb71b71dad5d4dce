"""SIGTERM is Ctrl-C (the model released, no output), and a workflow job dies with the workflow that started it."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from fake_ollama import FakeOllama, Script

SRC = str(Path(__file__).resolve().parents[2] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _wait(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_during_a_run_unloads_the_model_and_writes_nothing(tmp_path):
    out = tmp_path / "runs.parquet"
    with FakeOllama(Script(ttft_s=0.05, itl_s=[0.05] * 200)) as server:
        proc = subprocess.Popen([sys.executable, "-m", "edgebench.cli", "bench", "--backend", "ollama", "--model",
                                 "smollm:135m", "--ollama-url", server.url, "--runs", "50", "--warmup", "0",
                                 "--tokens", "200", "--prompt", "Hello", "--testbed", "t", "--no-progress",
                                 "-o", str(out)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert _wait(lambda: any(b.get("prompt") for p, b in server.requests if p == "/api/generate"))
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        requests = server.requests
    assert proc.returncode == 143, err
    assert err.strip() == "edgebench: terminated (SIGTERM); no output written"
    assert requests[-1] == ("/api/generate", {"model": "smollm:135m", "keep_alive": 0, "stream": False})
    assert list(tmp_path.iterdir()) == []


def test_a_job_dies_when_the_workflow_above_its_shell_is_killed(tmp_path):
    """kill -9 of Snakemake leaves the shell between it and the job alive; the job must not measure on."""
    pid_file = tmp_path / "job.pid"
    job = textwrap.dedent(f"""
        import time
        from edgebench.scripting import die_with_parent, handle_sigterm
        handle_sigterm()
        die_with_parent()
        open({str(pid_file)!r}, "w").write(str(__import__("os").getpid()))
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            pass
    """)
    job_file = tmp_path / "job.py"
    job_file.write_text(job)
    # A stand-in for Snakemake (its command line names it), which runs the job through a shell, as Snakemake does.
    workflow = textwrap.dedent(f"""
        import subprocess, sys, time
        subprocess.Popen(["bash", "-c", "set -e; {sys.executable} {job_file}; true"])
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", workflow, "snakemake-stand-in"], env=ENV)
    try:
        assert _wait(lambda: pid_file.exists() and pid_file.read_text())
        job_pid = int(pid_file.read_text())
        parent.kill()
        parent.wait()

        def gone():
            try:
                state = Path(f"/proc/{job_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                return True
            return state == "Z"
        assert _wait(gone, timeout=10), "the job outlived the workflow"
    finally:
        if parent.poll() is None:
            parent.kill()
