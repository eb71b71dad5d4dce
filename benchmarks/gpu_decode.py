"""EdgeLLM's CUDA decoder against llama.cpp (CUDA build) on the same GGUF files, on the same GPU.

    python benchmarks/gpu_decode.py [--presets smollm-135m,...] [--quant ollama|Q4_0|Q4_K_M|Q8_0] [--runs 5]
                                    [--tokens 128] [--dir D] [--out rows.csv]

For each preset (shape-exact random-weight models of the plan's sizes, written by `edgebench synth`, by default in
the quant type of the preset's Ollama tag) both engines decode fixed-length greedy runs through the same harness
(harness-stamped token times, batch 1); the table gives decode tok/s, ITL p50/p99 and memory-bandwidth utilisation
(MBU: the whole file's bytes per token over the time per token, against the card's read bandwidth measured by the
engine's library over 1 GiB in the same run; a step reads a little less, one row of an untied embedding table), and
the EdgeLLM / llama.cpp ratio per model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from edgebench import EdgebenchError
from edgebench.backends import GenerationSettings, ModelRef, create_backend
from edgebench.backends.base import ModelNotSupportedError
from edgebench.models import record_for_gguf
from edgebench.prompts import PLAN_PROMPTS
from edgebench.runner import run_benchmark
from edgellm.errors import EdgeLLMError
from synthgguf import write_synthetic

DEFAULT_PRESETS = ("smollm-135m,qwen2.5-0.5b,llama3.2-1b,qwen2.5-1.5b,llama3.2-3b,qwen2.5-7b,mistral-7b,llama3.1-8b,"
                   "phi3.5-3.8b,gemma2-2b")
# The quant type of each plan model's Ollama tag (facts: smollm:135m, mistral:7b, phi3.5 and gemma2:2b are Q4_0,
# llama3.2:1b is Q8_0, the others Q4_K_M).
OLLAMA_QUANTS = {"smollm-135m": "Q4_0", "qwen2.5-0.5b": "Q4_K_M", "llama3.2-1b": "Q8_0", "qwen2.5-1.5b": "Q4_K_M",
                 "llama3.2-3b": "Q4_K_M", "qwen2.5-7b": "Q4_K_M", "mistral-7b": "Q4_0", "llama3.1-8b": "Q4_K_M",
                 "phi3.5-3.8b": "Q4_0", "gemma2-2b": "Q4_0"}


def quant_for(preset: str, quant: str) -> str:
    """--quant ollama: the preset's Ollama quant type; otherwise the mix named."""
    if quant != "ollama":
        return quant
    if preset not in OLLAMA_QUANTS:
        raise EdgebenchError(f"no Ollama quant type is known for preset {preset!r}: name one with --quant")
    return OLLAMA_QUANTS[preset]


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


def read_bandwidth() -> float | None:
    """The card's read bandwidth (GB/s over 1 GiB, the engine library's read-only pass), None without the library."""
    try:
        from edgellm.cuda.bandwidth import read_bandwidth_gbs

        return read_bandwidth_gbs()
    except EdgeLLMError as exc:
        print(f"note: no read bandwidth measured ({exc}): MBU left out", file=sys.stderr)
        return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=DEFAULT_PRESETS)
    p.add_argument("--quant", default="ollama",
                   help="quant mix of the synthetic files: ollama (each preset's Ollama tag), Q4_0, Q4_K_M or Q8_0")
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
        rows, not_measured = [], []
        for preset in args.presets.split(","):
            quant = quant_for(preset, args.quant)
            path = Path(args.dir) / f"{preset}-{quant}.gguf"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                print(f"writing {path} ...", flush=True)
                write_synthetic(preset, path, quant=quant)
            model = ModelRef(name=preset, gguf_path=str(path),
                             info=record_for_gguf(preset, str(path), {"kind": "synthetic"}, with_sha256=False))
            for name in args.backends.split(","):
                options = engines[name]
                try:
                    runs = run_benchmark(create_backend(name, **options), model, prompts, settings, args.runs,
                                         args.warmup)
                except ModelNotSupportedError as exc:  # an architecture an engine does not run: reported, not fatal
                    not_measured.append(f"{preset} {name}: {exc}")
                    print(f"{preset:<14} {name:<9} not measured: {exc}", flush=True)
                    continue
                rows += [{**row, "preset": preset, "quant": quant, "file_bytes": path.stat().st_size} for row in runs]
                timed = [r["decode_tok_s"] for r in runs if not r["is_warmup"]]
                # As each engine finishes, so that a run cut short still leaves its numbers.
                print(f"{preset:<14} {name:<9} median decode {pd.Series(timed).median():8.1f} tok/s "
                      f"({len(timed)} runs)", flush=True)
    except EdgebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print("error: nothing was measured", file=sys.stderr)
        return 2
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, index=False)
    timed = df[~df["is_warmup"]]
    table = timed.groupby(["preset", "quant", "backend"], sort=False).agg(
        decode_tok_s=("decode_tok_s", "median"), itl_p50_ms=("itl_p50_ms", "median"),
        itl_p99_ms=("itl_p99_ms", "median"), file_gb=("file_bytes", lambda b: b.iloc[0] / 1e9),
        runs=("run_index", "count"))
    table["p99/p50"] = table.itl_p99_ms / table.itl_p50_ms
    bandwidth = read_bandwidth()
    if bandwidth:
        table["GB/s"] = table.file_gb * table.decode_tok_s
        table["mbu"] = table["GB/s"] / bandwidth
    print(f"gpu: {df['gpu_name'].iloc[0]}   read bandwidth: {bandwidth or float('nan'):.0f} GB/s   "
          f"tokens per run: {args.tokens}   quant: {args.quant}")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    for line in not_measured:
        print(f"not measured: {line}")
    wide = table.decode_tok_s.droplevel("quant").unstack("backend")
    if {"edgellm", "llamacpp"} <= set(wide.columns):
        ratio = (wide["edgellm"] / wide["llamacpp"]).rename("EdgeLLM / llama.cpp")
        print(ratio.to_string(float_format=lambda v: f"{v:.2f}x"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
