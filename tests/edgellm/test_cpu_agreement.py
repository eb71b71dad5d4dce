"""What the CPU engine's integer path costs in agreement, on the real SmolLM2: teacher-forced top-1 against its own
float32 path and against llama.cpp (the measure of benchmarks/cpu_agreement.py)."""

import sys
from pathlib import Path

import numpy as np
import pytest

import edgellm

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from cpu_agreement import llama_sequences  # noqa: E402  (the benchmark's sequences and llama.cpp logits)

PROMPTS = ["Hello", "What is machine learning?", "Explain quantum computing in simple terms.",
           "Write a detailed explanation of how neural networks work, including backpropagation."]
GENERATED = 64


def top1(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return sum(int((x.argmax(1) == y.argmax(1)).sum()) for x, y in zip(a, b)) / sum(len(x) for x in a)


@pytest.mark.slow
def test_the_integer_path_agrees_with_float32_and_with_llama_cpp(smollm2_gguf):
    """Four prompts, each followed by the 64 tokens llama.cpp generates greedily. The 16-bit activations keep at
    least 99% of the float32 path's top-1 choices. Against llama.cpp (int8 activations) we may be at most one point
    below its own batched-vs-token-by-token agreement when compared with its token-by-token logits (its decoding
    path), and at most one point below the float32 path's agreement with its batched logits: llama.cpp's int8
    activations move near-ties that an exact engine does not, so the batched figure bounds any exact engine."""
    pytest.importorskip("llama_cpp")
    ours = edgellm.load(smollm2_gguf, device="cpu", max_context=512)
    plain = edgellm.load(smollm2_gguf, device="cpu", max_context=512, quantized=False)
    logits = {k: [] for k in ("ours", "float32", "batched", "stepwise")}
    for seq, batched, stepwise in llama_sequences(str(smollm2_gguf), PROMPTS, GENERATED, ours.tokenizer, threads=2):
        logits["batched"].append(batched)
        logits["stepwise"].append(stepwise)
        logits["ours"].append(ours.logits(seq))
        logits["float32"].append(plain.logits(seq))
    rate = {"ours_float32": top1(logits["ours"], logits["float32"]),
            "ours_llama_batched": top1(logits["ours"], logits["batched"]),
            "ours_llama_stepwise": top1(logits["ours"], logits["stepwise"]),
            "llama_self": top1(logits["stepwise"], logits["batched"]),
            "float32_llama_batched": top1(logits["float32"], logits["batched"])}
    worst = max(float(np.abs(a - b).max()) for a, b in zip(logits["ours"], logits["float32"]))
    print("top-1 agreement: " + ", ".join(f"{k} {v:.4f}" for k, v in rate.items()) +
          f"; max |dlogit| against float32 {worst:.4f}")
    assert rate["ours_float32"] >= 0.99, rate
    assert rate["ours_llama_stepwise"] >= rate["llama_self"] - 0.01, rate
    assert rate["ours_llama_batched"] >= rate["float32_llama_batched"] - 0.01, rate
