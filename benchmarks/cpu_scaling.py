"""EdgeLLM against llama.cpp on the CPU at several thread counts, on shape-exact synthetic models, in one go.

    python benchmarks/cpu_scaling.py [--presets qwen2.5-0.5b,llama3.2-1b | --gguf A.gguf,B.gguf] [--threads 1,2,16]
                                     [--runs 1] [--tokens 32] [--prompts a,b] [--dir DIR] [--json FILE]

Writes each preset's random-weight GGUF (`edgebench synth`, Q4_K_M by default; an existing file of the same name in
--dir is reused), then runs benchmarks/cpu_decode.py on each model with the plan's four prompts as plain text
(synthetic models have no chat template), fixed-length decoding, both engines with the same threads and llama.cpp
on the CPU only: the child processes see no GPU (CUDA_VISIBLE_DEVICES=), so that a CUDA build of llama.cpp takes
none of the work. Prints cpu_decode's tables as they come, then one table of every model and thread count: decode
tok/s, TTFT, their ratios and ITL p50/p99 of both engines (medians), and the time each step took. The JSON (--json,
or $OUT/cpu_scaling.json when OUT is set) holds the table and every model's cpu_decode result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cpu_decode import thread_counts, write_json  # noqa: E402

DEFAULT_PRESETS = "qwen2.5-0.5b,llama3.2-1b"


def synthesize(presets: list[str], directory: Path, quant: str) -> tuple[list[Path], float]:
    from synthgguf import PRESETS, write_synthetic

    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        raise SystemExit(f"error: unknown preset {', '.join(unknown)} (known: {', '.join(PRESETS)})")
    start = time.perf_counter()
    paths = []
    for preset in presets:
        path = directory / f"{preset}-{quant}.gguf"
        if not path.is_file():
            print(f"writing {path} ...", flush=True)
            write_synthetic(preset, path, quant=quant, seed=0)
        paths.append(path)
    return paths, time.perf_counter() - start


def llama_library() -> str | None:
    """llama-cpp-python's libllama.so, where the package is installed."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return None
    lib = Path(spec.origin).parent / "lib" / "libllama.so"
    return str(lib) if lib.is_file() else None


def run_decode(path: Path, args, out_json: Path) -> float:
    """cpu_decode.py on one model in a child process that sees no GPU; returns its wall time."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    # A CUDA build of llama.cpp can crash loading a model in a process that imported numpy first (README, "llama.cpp
    # with CUDA"); the child loads the library first.
    lib = llama_library()
    if lib and lib not in env.get("LD_PRELOAD", ""):
        env["LD_PRELOAD"] = ":".join(filter(None, [lib, env.get("LD_PRELOAD")]))
    # -X faulthandler: a crash in native code (numba's or llama.cpp's) prints where the Python side was.
    command = [sys.executable, "-X", "faulthandler", str(HERE / "cpu_decode.py"), str(path), "--raw",
               "--threads", ",".join(map(str, args.threads)), "--runs", str(args.runs), "--warmup", str(args.warmup),
               "--tokens", str(args.tokens), "--context", str(args.context), "--json", str(out_json)]
    if args.prompts:
        command += ["--prompts", args.prompts]
    start = time.perf_counter()
    done = subprocess.run(command, env=env)
    if done.returncode != 0:
        raise SystemExit(f"error: cpu_decode.py failed on {path.name} (exit status {done.returncode})")
    return time.perf_counter() - start


def table_rows(model: str, result: dict) -> list[dict]:
    rows = []
    for entry in result["summary"]:
        ours, theirs = entry["edgellm"], entry["llamacpp"]
        rows.append({"model": model, "threads": entry["threads"],
                     "edgellm_decode_tok_s": ours["decode_tok_s"]["median"],
                     "llamacpp_decode_tok_s": theirs["decode_tok_s"]["median"], "decode_ratio": entry["decode_ratio"],
                     "edgellm_ttft_ms": ours["ttft_ms"]["median"], "llamacpp_ttft_ms": theirs["ttft_ms"]["median"],
                     "ttft_ratio": entry["ttft_ratio"],
                     "edgellm_itl_p50_ms": ours["itl_p50_ms"]["median"],
                     "edgellm_itl_p99_ms": ours["itl_p99_ms"]["median"],
                     "llamacpp_itl_p50_ms": theirs["itl_p50_ms"]["median"],
                     "llamacpp_itl_p99_ms": theirs["itl_p99_ms"]["median"],
                     "load_average": entry["load_average"]["median"]})
    return rows


def show(rows: list[dict]) -> None:
    print(f"\n{'model':28} {'thr':>3} {'decode tok/s E / L':>20} {'ratio':>6} {'TTFT ms E / L':>18} {'ratio':>6} "
          f"{'ITL p50/p99 ms E':>17} {'ITL p50/p99 ms L':>17} {'load':>5}")
    for r in rows:
        print(f"{r['model']:28} {r['threads']:3d} {r['edgellm_decode_tok_s']:9.1f} / {r['llamacpp_decode_tok_s']:7.1f} "
              f"{r['decode_ratio']:5.2f}x {r['edgellm_ttft_ms']:8.1f} / {r['llamacpp_ttft_ms']:7.1f} "
              f"{r['ttft_ratio']:5.2f}x {r['edgellm_itl_p50_ms']:7.2f} / {r['edgellm_itl_p99_ms']:7.2f} "
              f"{r['llamacpp_itl_p50_ms']:7.2f} / {r['llamacpp_itl_p99_ms']:7.2f} {r['load_average']:5.2f}")
    print("E: EdgeLLM, L: llama.cpp (CPU); medians over runs and prompts; ratios EdgeLLM / llama.cpp")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=DEFAULT_PRESETS, help=f"synthgguf presets (default: {DEFAULT_PRESETS})")
    p.add_argument("--gguf", help="comma-separated GGUF files to run instead of synthesizing presets")
    p.add_argument("--quant", default="Q4_K_M", help="quant type of the synthesized files (default: Q4_K_M)")
    p.add_argument("--dir", type=Path, help="where the synthesized files go (default: a temporary directory)")
    p.add_argument("--threads", type=thread_counts, default=[1, 2, 16])
    # Timed rounds, each every prompt on both engines, after one warm-up round. One keeps the default (both models,
    # three thread counts, each loading both engines again) within about six minutes: on 2 cores, 1 and 2 threads
    # with 2 rounds took 8 minutes, most of it in the 1-thread runs, which 16 cores do not speed up.
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--prompts", help="comma-separated ids of the plan's prompts (default: all four)")
    p.add_argument("--json", type=Path, help="write the results here (default: $OUT/cpu_scaling.json if OUT is set)")
    args = p.parse_args()
    if args.runs < 1 or args.warmup < 0 or args.tokens < 2:
        print("error: runs >= 1, warmup >= 0, tokens >= 2", file=sys.stderr)
        return 2
    json_path = args.json or (Path(os.environ["OUT"]) / "cpu_scaling.json" if os.environ.get("OUT") else None)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cpu_scaling_") as tmp:
        if args.gguf:
            paths = [Path(g) for g in args.gguf.split(",") if g]
            missing = [str(g) for g in paths if not g.is_file()]
            if missing:
                print(f"error: no GGUF file at {', '.join(missing)}", file=sys.stderr)
                return 2
            synth_s = 0.0
        else:
            directory = args.dir or Path(tmp)
            directory.mkdir(parents=True, exist_ok=True)
            paths, synth_s = synthesize([x for x in args.presets.split(",") if x], directory, args.quant)
        results, rows, seconds = {}, [], {"synthesize": synth_s}
        for path in paths:
            out_json = Path(tmp) / f"{path.stem}.json"
            seconds[path.name] = run_decode(path, args, out_json)
            results[path.name] = json.loads(out_json.read_text())
            rows += table_rows(path.name, results[path.name])
    seconds["total"] = time.perf_counter() - started
    show(rows)
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    if json_path:
        write_json(json_path, {"rows": rows, "seconds": seconds, "threads": args.threads, "runs": args.runs,
                               "tokens": args.tokens, "results": results})
        print(f"written: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
