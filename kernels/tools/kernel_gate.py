"""Kernel development tools for EdgeLLM's CUDA kernels: the accuracy gate, compute-sanitizer, the kernel benchmark
and its summary numbers (prefill at 8k against PyTorch SDPA, decode over a 16k cache against the copy bandwidth).

The binaries are built by kernels/Makefile (the pipeline's compile_kernels rule) and write CSV; this module runs
them, adds the machine's provenance and writes Parquet. Driven by kernels/tools/rules.smk.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from edgebench import EdgebenchError
from edgebench.atomic import atomic_path
from edgebench.provenance import machine

SANITIZER_TOOLS = ("memcheck", "racecheck", "synccheck")


def _run_csv(cmd: list[str], what: str, timeout: float, progress=None) -> tuple[pd.DataFrame, subprocess.CompletedProcess]:
    """Runs a kernel binary that writes CSV to stdout; its progress (stderr) goes to `progress` when given."""
    try:
        proc = subprocess.run(cmd + ["--csv", "/dev/stdout"], stdout=subprocess.PIPE,
                              stderr=progress if progress is not None else subprocess.PIPE, text=True, timeout=timeout)
    except FileNotFoundError:
        raise EdgebenchError(f"{what}: {cmd[0]} not found (run the compile_kernels rule)") from None
    except subprocess.TimeoutExpired:
        raise EdgebenchError(f"{what}: no result within {timeout:.0f} s") from None
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        last = ((proc.stderr or "").strip().splitlines() or ["no output (see the log)"])[-1]
        raise EdgebenchError(f"{what} failed (exit {proc.returncode}): {last}")
    return pd.read_csv(io.StringIO(proc.stdout)), proc


def run_accuracy(binary: str | Path, quick: bool = False, timeout: float = 3600, progress=None) -> pd.DataFrame:
    """Every accuracy case as a row (passed = 1 when within its tolerance)."""
    cmd = [str(binary)] + (["--quick"] if quick else [])
    df, _ = _run_csv(cmd, "kernel accuracy test", timeout, progress)
    df["passed"] = df["passed"].astype(bool)
    return df


def _sanitizer_binary() -> str:
    found = shutil.which("compute-sanitizer") or next(
        (p for p in ("/usr/local/cuda/bin/compute-sanitizer",) if Path(p).exists()), None)
    if found is None:
        raise EdgebenchError("compute-sanitizer not found: the kernels cannot pass their gate without it")
    return found


def parse_sanitizer_summary(text: str) -> tuple[int | None, int | None]:
    """(errors, hazards) from compute-sanitizer's last summary line; None where the tool printed none.

    memcheck and synccheck end with "ERROR SUMMARY: N errors"; racecheck with
    "RACECHECK SUMMARY: H hazards displayed (E errors, W warnings)".
    """
    errors = hazards = None
    found = re.findall(r"ERROR SUMMARY: (\d+) error", text)
    if found:
        errors = int(found[-1])
    race = re.findall(r"RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)", text)
    if race:
        hazards = int(race[-1][0])
        errors = int(race[-1][1]) + (errors or 0)
    return errors, hazards


def parse_checks(text: str, binary: str) -> pd.DataFrame:
    """The `ok ...` / `FAIL ...` lines of a check binary (gemm_accuracy, prefill_accuracy), one row each."""
    rows = [dict(binary=binary, check=line[4:].strip(), passed=line.startswith("ok "))
            for line in text.splitlines() if line.startswith(("ok ", "FAIL "))]
    return pd.DataFrame(rows, columns=["binary", "check", "passed"])


def run_checks(binary: str | Path, timeout: float = 3600) -> pd.DataFrame:
    """Every check of a prefill gate binary as a row. A binary that exits nonzero without a FAIL line (a crash), or
    prints no check at all, is an error: no verdict is not a pass."""
    name = Path(binary).name
    try:
        proc = subprocess.run([str(binary)], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise EdgebenchError(f"{name}: {binary} not found (run the compile_kernels rule)") from None
    except subprocess.TimeoutExpired:
        raise EdgebenchError(f"{name}: no result within {timeout:.0f} s") from None
    checks = parse_checks(proc.stdout, name)
    if checks.empty or (proc.returncode != 0 and checks.passed.all()):
        last = ((proc.stderr + proc.stdout).strip().splitlines() or ["no output"])[-1]
        raise EdgebenchError(f"{name} gave no verdict (exit {proc.returncode}): {last}")
    return checks


def _sanitize_one(sanitizer: str, tool: str, binary: str, timeout: float, args=("--csv", "/dev/null")) -> dict:
    start = time.monotonic()
    # racecheck skips the test's own float64 reference kernels (edgellm_ref::, checked by memcheck and synccheck):
    # instrumenting their shared memory takes minutes and says nothing about the kernels the engine runs.
    only = ["--kernel-name-exclude", "kns=edgellm_ref"] if tool == "racecheck" else []
    cmd = [sanitizer, "--tool", tool, *only, "--error-exitcode", "3", "--print-limit", "50", binary, "--sanitize",
           *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EdgebenchError(f"compute-sanitizer {tool}: no verdict within {timeout:.0f} s") from None
    text = proc.stdout + proc.stderr
    errors, hazards = parse_sanitizer_summary(text)
    return dict(binary=Path(binary).name, tool=tool, errors=errors, hazards=hazards, exit_code=proc.returncode,
                seconds=round(time.monotonic() - start, 1),
                clean=proc.returncode == 0 and errors == 0 and hazards in (0, None),
                report="\n".join([ln for ln in text.splitlines() if ln.startswith("=========")][:200]))


def run_sanitizer(binary: str | Path, tools=SANITIZER_TOOLS, timeout: float = 3600,
                  args=("--csv", "/dev/null")) -> pd.DataFrame:
    """compute-sanitizer's verdict per tool on the accuracy test's --sanitize cases (every kernel instance and code
    path, short sequences: the slow tools instrument every shared-memory access).  The tools run concurrently, as
    separate processes."""
    from concurrent.futures import ThreadPoolExecutor

    sanitizer = _sanitizer_binary()
    with ThreadPoolExecutor(len(tools)) as pool:
        rows = list(pool.map(lambda tool: _sanitize_one(sanitizer, tool, str(binary), timeout, args), tools))
    return pd.DataFrame(rows)


def run_bench(binary: str | Path, quick: bool = False, timeout: float = 3600, progress=None) -> pd.DataFrame:
    df, _ = _run_csv([str(binary)] + (["--quick"] if quick else []), "kernel benchmark", timeout, progress)
    return df


def sdpa_rows(bench: pd.DataFrame) -> pd.DataFrame:
    """PyTorch SDPA on the benchmark's own shapes (empty when torch or a GPU is missing)."""
    import kernel_sdpa as sdpa

    if not sdpa.available():
        return pd.DataFrame()
    pre = bench[(bench.impl == "edgellm") & (bench.kind == "prefill")]
    dec = bench[(bench.impl == "edgellm") & (bench.kind == "decode")]
    key = ["dtype", "head_dim", "n_heads", "n_kv_heads", "seq_k"]
    return pd.DataFrame(sdpa.measure([tuple(r) for r in pre[key].itertuples(index=False)],
                                     [tuple(r) for r in dec[key].itertuples(index=False)]))


def headline(bench: pd.DataFrame) -> dict:
    """Two summary numbers: prefill at 8k (d128, 32/8 heads, fp16) against SDPA, and decode over a 16k cache (fp16)
    against the card's copy bandwidth.  None where a side was not measured."""
    def pick(kind, impl, seq, dtype="f16"):
        sel = bench[(bench.kind == kind) & (bench.impl == impl) & (bench.seq_k == seq) & (bench.dtype == dtype)
                    & (bench.head_dim == 128) & (bench.n_heads == 32) & (bench.n_kv_heads == 8)]
        return sel.iloc[0] if len(sel) else None

    out: dict = {}
    ours, theirs = pick("prefill", "edgellm", 8192), pick("prefill", "torch-sdpa-flash", 8192)
    out["prefill_8k_tflops"] = None if ours is None else float(ours.tflops)
    out["sdpa_prefill_8k_tflops"] = None if theirs is None else float(theirs.tflops)
    out["prefill_8k_vs_sdpa"] = (None if ours is None or theirs is None else float(ours.tflops / theirs.tflops))
    copy = bench[bench.kind == "copy"]
    dec = pick("decode", "edgellm", 16384)
    out["copy_gbytes_s"] = float(copy.gbytes_s.iloc[0]) if len(copy) else None
    out["decode_16k_gbytes_s"] = None if dec is None else float(dec.gbytes_s)
    out["decode_16k_splits"] = None if dec is None else int(dec.splits)
    out["decode_16k_of_copy"] = (None if dec is None or not len(copy) else float(dec.gbytes_s / copy.gbytes_s.iloc[0]))
    tc = pick("decode", "edgellm-tensorcores", 16384)
    out["decode_16k_tensorcores_gbytes_s"] = None if tc is None else float(tc.gbytes_s)
    sd = pick("decode", "torch-sdpa", 16384)
    out["sdpa_decode_16k_gbytes_s"] = None if sd is None else float(sd.gbytes_s)
    return out


def write_parquet(df: pd.DataFrame, path: str | Path, extra: dict | None = None) -> None:
    """The table with this machine's provenance (GPU, driver, CUDA, git commit) in its metadata, atomically."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"edgebench_machine"] = json.dumps(machine(), sort_keys=True, default=str).encode()
    if extra:
        meta[b"edgebench_extra"] = json.dumps(extra, sort_keys=True, default=str).encode()
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)
