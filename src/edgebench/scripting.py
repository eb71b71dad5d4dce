"""Glue for workflow/scripts: log to the rule's log file, turn a known error into one line and exit 1, treat SIGTERM
as Ctrl-C, die with the workflow that started the job, and read what every benchmark job reads from its rule."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from . import EdgebenchError

PR_SET_PDEATHSIG = 1
WATCH_INTERVAL_S = 1.0


class Terminated(KeyboardInterrupt):
    """SIGTERM (scancel, Slurm's time limit, a dying workflow), handled exactly as Ctrl-C: every `finally` runs (the
    model is unloaded, Ollama gets keep_alive 0) and no output is written."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def handle_sigterm() -> None:
    """Make SIGTERM raise `Terminated` in the main thread (a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def _proc_stat(pid: int) -> Optional[tuple[int, str]]:
    """(parent pid, start time) of a process from /proc, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[1]), fields[19]


def _watched_ancestors(limit: int = 8) -> list[tuple[int, str]]:
    """The processes this job must not outlive: its ancestors up to the nearest Snakemake (a shell usually sits
    between), or only its parent when no Snakemake is above it."""
    chain: list[tuple[int, str]] = []
    pid = os.getppid()
    while pid > 1 and len(chain) < limit:
        stat = _proc_stat(pid)
        if stat is None:
            break
        chain.append((pid, stat[1]))
        try:
            if b"snakemake" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return chain
        except OSError:
            break
        pid = stat[0]
    return chain[:1]


def _watch(ancestors: list[tuple[int, str]]) -> None:
    while True:
        time.sleep(WATCH_INTERVAL_S)
        for pid, start in ancestors:
            stat = _proc_stat(pid)
            if stat is None or stat[1] != start:  # gone, or its pid reused by another process
                os.kill(os.getpid(), signal.SIGTERM)
                return


def die_with_parent() -> bool:
    """Have the kernel send SIGTERM when the parent dies (PR_SET_PDEATHSIG), and watch the ancestors up to Snakemake,
    which `kill -9` of Snakemake leaves behind (the shell between them lives on). Linux only; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    ancestors = _watched_ancestors()
    if not ancestors:
        return False  # started by init itself: no parent to outlive
    threading.Thread(target=_watch, args=(ancestors,), name="edgebench-parent-watch", daemon=True).start()
    return True


@contextlib.contextmanager
def rule_context(smk) -> Iterator[None]:
    """Send the script's output to its rule's log; an EdgebenchError becomes one line on stderr and exit 1;
    SIGTERM or Ctrl-C one line and exit 130 (no output: Snakemake removes what a failed job left)."""
    handle_sigterm()
    die_with_parent()
    log_path = smk.log[0] if len(smk.log) else None
    log = open(log_path, "w") if log_path else sys.stderr
    try:
        with contextlib.redirect_stdout(log):
            yield
    except EdgebenchError as exc:
        print(f"error: {exc}", file=log)
        print(f"edgebench: error in rule {smk.rule}: {exc}", file=sys.__stderr__)
        raise SystemExit(1) from None
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"{what}; no output written", file=log)
        print(f"edgebench: rule {smk.rule} {what}; no output written", file=sys.__stderr__)
        raise SystemExit(130) from None
    finally:
        if log is not sys.stderr:
            log.close()


BUILT = "built_"  # inputs a backend's build step made for a job: built_<option> -> that backend option


def benchmark_job(smk) -> tuple[Any, dict, Any]:
    """What a benchmark rule's job (bench, bench_concurrency) starts from: (GenerationSettings, the backend's options
    with its build products filled in, the ModelRef), after checking that the node has the testbed's GPU."""
    from .backends import GenerationSettings
    from .models import load_record, ref_from_record
    from .provenance import machine

    expected = smk.params.expect_gpu
    if expected:  # a testbed's results must come from its GPU, whatever node the scheduler chose
        found = machine().get("gpu_name") or "no GPU"
        if expected.lower() not in found.lower():
            raise EdgebenchError(f"testbed {smk.wildcards.testbed} expects a GPU named like {expected!r}, "
                                 f"but this node has {found}")
    s = dict(smk.params.settings)
    options = dict(smk.params.backend_options)
    ignore_eos = options.pop("ignore_eos", s["ignore_eos"])
    settings = GenerationSettings(max_new_tokens=s["max_new_tokens"], temperature=s["temperature"], seed=s["seed"],
                                  num_ctx=s["num_ctx"], prompt_format=s["prompt_format"], ignore_eos=ignore_eos,
                                  threads=s["threads"])
    for key in smk.input.keys():
        if key.startswith(BUILT):
            options[key[len(BUILT):]] = os.path.abspath(smk.input[key])
    return settings, options, ref_from_record(load_record(smk.input.record))
