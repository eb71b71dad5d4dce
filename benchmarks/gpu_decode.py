"""EdgeLLM's CUDA decoder against llama.cpp (CUDA build) on the same GGUF files, on the same GPU.

    python benchmarks/gpu_decode.py [--presets smollm-135m,...] [--quant Q4_0] [--runs 5] [--tokens 128] [--dir D]

For each preset (shape-exact random-weight models of the plan's sizes, written by `edgebench synth`) both engines
decode fixed-length greedy runs through the same harness (harness-stamped token times, batch 1); the table gives
decode tok/s, ITL p50/p99 and memory-bandwidth utilisation (the whole file's bytes per token over the time per token,
against the card's measured device-to-device copy bandwidth; a step reads a little less, one row of an untied
embedding table), and the EdgeLLM / llama.cpp ratio per size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from edgebench import EdgebenchError
from edgebench.backends import GenerationSettings, ModelRef, create_backend
from edgebench.models import record_for_gguf
from edgebench.prompts import PLAN_PROMPTS
from edgebench.runner import run_benchmark
from synthgguf import write_synthetic

DEFAULT_PRESETS = "smollm-135m,qwen2.5-0.5b,llama3.2-1b,llama3.2-3b,llama3.1-8b"


def at_least(minimum: int):
    """An argparse type: an integer no smaller than `minimum` (a clear usage error otherwise, not a traceback later)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


def copy_bandwidth_gbs() -> float | None:
    """Device-to-device copy bandwidth (read + write) of 1 GiB, the yardstick of the facts' anchors."""
    try:
        import torch
    except ImportError:
        return None
    a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    b.copy_(a)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        b.copy_(a)
    end.record()
    end.synchronize()
    return 2 * a.numel() * 10 / (start.elapsed_time(end) * 1e-3) / 1e9


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=DEFAULT_PRESETS)
    p.add_argument("--quant", default="Q4_0", help="quant mix of the synthetic files (Q4_0, Q4_K_M, Q8_0)")
    p.add_argument("--runs", type=at_least(1), default=5)
    p.add_argument("--warmup", type=at_least(0), default=1)
    p.add_argument("--tokens", type=at_least(1), default=128)
    p.add_argument("--dir", default="models/synthetic", help="where the synthetic GGUF files are kept")
    p.add_argument("--backends", default="edgellm,llamacpp", help="which engines to run (both by default)")
    p.add_argument("--out", help="also write every run's row here (CSV)")
    args = p.parse_args()
    engines = {"edgellm": {"device": "cuda"}, "llamacpp": {}}
    unknown = [name for name in args.backends.split(",") if name not in engines]
    if unknown:
        print(f"error: unknown backend {unknown[0]!r}: choose from {', '.join(engines)}", file=sys.stderr)
        return 2
    try:
        settings = GenerationSettings(max_new_tokens=args.tokens, ignore_eos=True, prompt_format="raw", num_ctx=512)
        prompts = {"short": PLAN_PROMPTS["short"]}
        rows = []
        for preset in args.presets.split(","):
            path = Path(args.dir) / f"{preset}-{args.quant}.gguf"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_synthetic(preset, path, quant=args.quant)
            model = ModelRef(name=preset, gguf_path=str(path),
                             info=record_for_gguf(preset, str(path), {"kind": "synthetic"}, with_sha256=False))
            for name in args.backends.split(","):
                options = engines[name]
                runs = run_benchmark(create_backend(name, **options), model, prompts, settings, args.runs, args.warmup)
                rows += [{**row, "preset": preset, "file_bytes": path.stat().st_size} for row in runs]
                timed = [r["decode_tok_s"] for r in runs if not r["is_warmup"]]
                # As each engine finishes, so that a run cut short still leaves its numbers.
                print(f"{preset:<14} {name:<9} median decode {pd.Series(timed).median():8.1f} tok/s "
                      f"({len(timed)} runs)", flush=True)
    except EdgebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, index=False)
    timed = df[~df["is_warmup"]]
    table = timed.groupby(["preset", "backend"], sort=False).agg(
        decode_tok_s=("decode_tok_s", "median"), itl_p50_ms=("itl_p50_ms", "median"),
        itl_p99_ms=("itl_p99_ms", "median"), file_gb=("file_bytes", lambda b: b.iloc[0] / 1e9),
        runs=("run_index", "count"))
    bandwidth = copy_bandwidth_gbs()
    if bandwidth:
        table["mbu"] = table.file_gb * table.decode_tok_s / bandwidth
    print(f"gpu: {df['gpu_name'].iloc[0]}   copy bandwidth: {bandwidth or float('nan'):.0f} GB/s   "
          f"tokens per run: {args.tokens}   quant: {args.quant}")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    wide = table.decode_tok_s.unstack("backend")
    if {"edgellm", "llamacpp"} <= set(wide.columns):
        ratio = (wide["edgellm"] / wide["llamacpp"]).rename("EdgeLLM / llama.cpp")
        print(ratio.to_string(float_format=lambda v: f"{v:.2f}x"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
