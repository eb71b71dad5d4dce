"""Kill test: `kill -9` of Snakemake in the middle of a benchmark job, then the README's resume commands.

Runs the pipeline against the Ollama stand-in (tests/fake_ollama.py) on loopback, in a temporary directory:
  1. `snakemake --cores 1` on two benchmark jobs whose runs take a few seconds each;
  2. `kill -9` of Snakemake while the first job measures;
  3. checks that the job died with it (no orphan keeps measuring) and released the model (keep_alive 0);
  4. `snakemake --unlock`, then `snakemake --rerun-incomplete --cores 1`;
  5. checks that every Parquet file reads, that each run appears once in runs.parquet, and that no temporary or
     partial file is left.

    python tests/pipeline/kill_test.py            # prints each step; exit status 0 when every check holds
    pytest -m slow tests/pipeline/kill_test.py    # the same, as a test
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the Ollama stand-in
sys.path.insert(0, str(ROOT / "src"))

from fake_ollama import FakeOllama, Script  # noqa: E402

TAG = "smollm:135m"
RUNS, TOKENS, ITL_S = 12, 20, 0.05  # about 1 s a run, 13 s a job


def _tiny_gguf(path: Path) -> None:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_embedding_length(8)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tensor("token_embd.weight", np.ones((16, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _ollama_store(root: Path) -> None:
    """A model store as Ollama keeps it, so that the pipeline's pull finds the tag's blob."""
    digest = "ab" * 32
    (root / "blobs").mkdir(parents=True)
    _tiny_gguf(root / "blobs" / f"sha256-{digest}")
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "smollm" / "135m"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model",
                                                "digest": f"sha256:{digest}", "size": 1}]}))


def _snakemake(workdir: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
                             str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", "1", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _bench_processes(workdir: Path) -> list[int]:
    """Live processes that run a benchmark script of this workflow (Snakemake's copy of bench.py)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and b"bench.py" in cmd and str(workdir).encode() in cmd + _cwd(proc):
            pids.append(int(proc.name))
    return pids


def _cwd(proc: Path) -> bytes:
    try:
        return os.readlink(proc / "cwd").encode()
    except OSError:
        return b""


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def kill_test(workdir: Path, say=print) -> None:
    import pandas as pd
    import pyarrow.parquet as pq
    import yaml

    store = workdir / "ollama-models"
    _ollama_store(store)
    with FakeOllama(Script(ttft_s=0.05, itl_s=[ITL_S] * (TOKENS - 1), models=(TAG,))) as server:
        (workdir / "config.yaml").write_text(yaml.safe_dump({
            "testbed": "kill-test", "models": {"smollm-135m": {"ollama": TAG}},
            "backends": {"ollama": {"url": server.url}}, "baseline": "ollama",
            "prompts": {"a": "Hello", "b": "Hi there"}, "runs": RUNS, "warmup": 1, "max_new_tokens": TOKENS,
            "prompt_format": "raw"}))
        env = {**os.environ, "OLLAMA_MODELS": str(store),
               "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        target = "results/kill-test/runs.parquet"

        say("1. snakemake on two benchmark jobs")
        smk = _snakemake(workdir, env, target)
        timed = lambda: [b for p, b in server.requests if p == "/api/generate" and b.get("prompt")]  # noqa: E731
        assert _wait(lambda: len(timed()) >= 2, 120), "no benchmark job started measuring"

        say("2. kill -9 of snakemake while a job measures")
        assert _bench_processes(workdir), "no benchmark job process found"
        os.kill(smk.pid, signal.SIGKILL)
        smk.communicate()

        say("3. the job dies with it and releases the model")
        # Well before the job's remaining runs could end by themselves (an orphan would measure on and write).
        assert _wait(lambda: not _bench_processes(workdir), 3), "the benchmark job outlived snakemake (orphaned)"
        after_kill = len(timed())
        time.sleep(2.5)
        assert len(timed()) == after_kill, "something still measures after the kill"
        assert not list(workdir.glob("results/kill-test/runs/**/*.parquet")), "a killed job wrote its output"
        assert server.requests[-1][1].get("keep_alive") == 0, "the model was not released (keep_alive 0)"
        runs_dir = workdir / "results" / "kill-test" / "runs"
        leftovers = [p for p in runs_dir.rglob("*") if p.is_file()] if runs_dir.exists() else []
        assert not [p for p in leftovers if p.name.endswith((".tmp", ".partial.jsonl"))], leftovers

        say("4. snakemake --unlock, then snakemake --rerun-incomplete")
        for args in (("--unlock",), ("--rerun-incomplete", target)):
            out, _ = _snakemake(workdir, env, *args).communicate(timeout=300)
            assert "Error" not in out or args == ("--unlock",), out[-3000:]

        say("5. every Parquet reads, each run once, nothing left behind")
        files = sorted((workdir / "results").rglob("*.parquet"))
        for f in files:
            pq.read_table(f)
        runs = pd.read_parquet(workdir / target)
        key = ["backend", "model", "prompt_id", "run_index"]
        assert len(runs) == 2 * (RUNS + 1) and not runs.duplicated(key).any(), runs[key]
        stray = [p for p in (workdir / "results").rglob("*") if p.name.endswith((".tmp", ".partial.jsonl"))]
        assert not stray, stray
        say(f"ok: {len(files)} Parquet files, {len(runs)} runs, none twice")


@pytest.mark.slow
def test_kill_9_of_snakemake_then_resume(tmp_path):
    kill_test(tmp_path, say=lambda *_: None)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="edgebench-kill-test-") as tmp:
        try:
            kill_test(Path(tmp))
        except AssertionError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            sys.exit(1)
