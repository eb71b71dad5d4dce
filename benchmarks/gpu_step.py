"""Time per decode step of EdgeLLM's CUDA engine itself, fused and unfused, without the harness.

    python benchmarks/gpu_step.py [--presets smollm-135m,...] [--quant ollama] [--tokens 128] [--dir D]
                                  [--builds fused,unfused] [--max-context 512] [--depth 0]

For each preset (the synthetic files of benchmarks/gpu_decode.py) and each engine build: a warm-up generation,
then `--repeats` greedy generations of `--tokens` tokens from a 5-token prompt; prints the median milliseconds per
generated token and the whole file's bytes per token over that time (against the card's read bandwidth; a step
reads a little less, one row of an untied embedding table, and at --depth its KV cache too). Separates what
fusion gains from the harness's own per-token cost, which gpu_decode.py includes. The library is the one
EDGELLM_LIB names, else the default build, so that build settings can be compared one library at a time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from edgebench import EdgebenchError
from edgellm.errors import EdgeLLMError
from synthgguf import write_synthetic

sys.path.insert(0, str(Path(__file__).parent))
from gpu_decode import DEFAULT_PRESETS, at_least, quant_for, read_bandwidth  # noqa: E402

PROMPT = [1, 9038, 2114, 314, 253]


def ms_per_token(engine, prompt: list[int], tokens: int, repeats: int) -> float:
    # Warm-up: the prefill, then the first decode step runs eagerly and the second captures the graph.
    list(engine.greedy(prompt, tokens))
    times = []
    for _ in range(repeats):
        gen = engine.greedy(prompt, tokens)
        next(gen)  # after the prompt
        t1 = time.perf_counter()
        for _ in gen:
            pass
        times.append((time.perf_counter() - t1) * 1e3 / (tokens - 1))
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=DEFAULT_PRESETS)
    p.add_argument("--quant", default="ollama", help="ollama (each preset's Ollama tag), Q4_0, Q4_K_M or Q8_0")
    p.add_argument("--max-context", type=at_least(8), default=512, help="the engine's context (KV cache rows)")
    p.add_argument("--depth", type=at_least(0), default=0,
                   help="prompt tokens before the timed steps (0: a 5-token prompt): decode at that cache depth")
    p.add_argument("--tokens", type=at_least(2), default=128, help="at least 2: the first follows the prompt")
    p.add_argument("--repeats", type=at_least(1), default=5)
    p.add_argument("--dir", default="models/synthetic")
    p.add_argument("--builds", default="fused,unfused", help="which steps to time: fused, unfused or both")
    args = p.parse_args()
    builds = args.builds.split(",")
    if max(args.depth, len(PROMPT)) + args.tokens > args.max_context:
        print(f"error: --depth {args.depth} plus --tokens {args.tokens} exceed --max-context {args.max_context}",
              file=sys.stderr)
        return 2
    if not builds or set(builds) - {"fused", "unfused"}:
        print(f"error: --builds takes fused and/or unfused, not {args.builds!r}", file=sys.stderr)
        return 2
    try:
        from edgellm.cuda.engine import CudaEngine

        bandwidth = read_bandwidth()
        print(f"read bandwidth {bandwidth or float('nan'):.0f} GB/s, {args.tokens} tokens, quant {args.quant}, "
              f"context {args.max_context}, depth {args.depth}")
        print(f"{'preset':<14} {'quant':<7} {'engine':<8} {'ms/token':>9} {'tok/s':>8} {'GB/s':>7} {'MBU':>6}")
        for preset in args.presets.split(","):
            quant = quant_for(preset, args.quant)
            path = Path(args.dir) / f"{preset}-{quant}.gguf"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_synthetic(preset, path, quant=quant)
            size = path.stat().st_size
            prompt = PROMPT if args.depth == 0 else [1 + i % 200 for i in range(args.depth)]
            for fused in (build == "fused" for build in builds):
                engine = CudaEngine(path, max_context=args.max_context, fused=fused)
                ms = ms_per_token(engine, prompt, args.tokens, args.repeats)
                engine.close()
                gbs = size / (ms * 1e-3) / 1e9
                share = f"{gbs / bandwidth:.1%}" if bandwidth else "-"
                print(f"{preset:<14} {quant:<7} {'fused' if fused else 'unfused':<8} {ms:9.3f} {1e3 / ms:8.1f} "
                      f"{gbs:7.0f} {share:>6}", flush=True)
    except (EdgeLLMError, EdgebenchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
