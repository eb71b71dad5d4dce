"""EdgeLLM's GPU engine on phi3, gemma2 and gemma3 against the float32 CPU engine (the reference), teacher-forced,
through the decode step (one token a step) and through the batched prefill (chunks shorter than the sliding window,
on sequences longer than it), GPU tests marked `gpu`; plus what needs no GPU: the shapes are accepted, and the cut of
the real Gemma 3 file that travels to a GPU machine.

Models: small synthetic files of the plan's phi3 and gemma2 layer shapes in Q4_0 (synthgguf presets with fewer layers
and, for gemma2, a smaller vocabulary and a window of 64), and the real Gemma 3 270M Q4_K_M cut to its first 6 layers
(5 local, 1 global: the whole pattern) and its first 16384 tokens (benchmarks/truncate_gguf.py; a GPU machine gets a
cut small enough to carry, named by GEMMA3_GGUF, and uses it as it is).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

GEMMA3_CUT = dict(layers=6, vocab=16384)
TEXT = ("The history of computing is a story of people who wanted to calculate faster than they could by hand. "
        "Mechanical calculators, punched cards, vacuum tubes and transistors each made the machines smaller and "
        "quicker, and every step changed what questions people thought worth asking. ")
GENERATED = 48


@pytest.fixture(scope="session")
def gemma3_cut(gemma3_gguf, tmp_path_factory) -> Path:
    """The real Gemma 3's first 6 blocks and 16384 tokens; a file of 6 blocks already (a carried cut) as it is."""
    from edgellm.gguf import open_gguf
    from edgellm.gguf.config import read_config

    if read_config(open_gguf(gemma3_gguf)).n_layers <= GEMMA3_CUT["layers"]:
        return gemma3_gguf
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from truncate_gguf import truncate

    out = tmp_path_factory.mktemp("gemma3") / "gemma3-cut.gguf"
    truncate(gemma3_gguf, out, **GEMMA3_CUT)
    return out


def write_small(path: Path, preset: str, **changes) -> Path:
    """A synthgguf preset in Q4_0 (the plan's quant for both models) with some fields changed."""
    from synthgguf import synthetic

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(synthetic.PRESETS, "small-arch", dataclasses.replace(synthetic.PRESETS[preset], **changes))
        synthetic.write_synthetic("small-arch", path, quant="Q4_0")
    return path


SMALL = {
    # 32 heads of 96 with 32 KV heads, fused QKV and gate+up, as Phi-3.5-mini; two of its 32 layers
    "phi3": ("phi3.5-3.8b", dict(layers=2)),
    # Gemma 2 2B's layer (8 heads of 256, 4 KV heads, soft-caps 50 and 30), three layers (local, global, local) with
    # a window of 64, and 32000 of its 256000 tokens
    "gemma2": ("gemma2-2b", dict(layers=3, vocab=32000,
                                 extra={"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
                                        "sliding_window": 64})),
}


@pytest.fixture(scope="session")
def small_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpu-arch")
    return {arch: write_small(d / f"{arch}.gguf", preset, **changes) for arch, (preset, changes) in SMALL.items()}


def teacher_sequence(cpu, min_tokens: int) -> list[int]:
    """A prompt of at least min_tokens tokens (TEXT repeated) and the CPU engine's greedy continuation of it."""
    prompt = []
    while len(prompt) < min_tokens:
        prompt += cpu.tokenizer.encode(TEXT)
    return prompt + list(cpu.generate(prompt, GENERATED, ignore_eos=True))


def agreement(ref: np.ndarray, got: np.ndarray) -> tuple[float, float, list[float]]:
    """(top-1 agreement, largest |logit difference|, the reference's top-2 gaps at the misses)."""
    misses = []
    for r, g in zip(ref, got):
        if int(np.argmax(g)) != int(np.argmax(r)):
            top2 = np.sort(r)[-2:]
            misses.append(round(float(top2[1] - top2[0]), 4))
    return 1 - len(misses) / len(ref), float(np.abs(ref - got).max()), sorted(misses)


def compare(path: Path, library: Path, min_tokens: int, chunk: int):
    """The GPU engine's teacher-forced logits against the float32 CPU engine's: step by step, and batched."""
    import edgellm
    from edgellm.cuda.engine import CudaEngine

    context = min_tokens + GENERATED + 256
    with edgellm.load(path, device="cpu", quantized=False, max_context=context) as cpu:
        sequence = teacher_sequence(cpu, min_tokens)
        ref = cpu.logits(sequence)
    config = None
    results = {}
    for mode, prefill_chunk in (("decode", None), ("prefill", chunk)):
        gpu = CudaEngine(path, max_context=context, library=library, prefill_chunk=prefill_chunk)
        config = gpu.config
        results[mode] = agreement(ref, gpu.logits(sequence))
        gpu.close()
    for mode, (rate, worst, misses) in results.items():
        print(f"{path.name} {mode}: top-1 agreement {rate:.4f} over {len(sequence)} positions, max |dlogit| "
              f"{worst:.3f}, CPU top-2 gaps of the misses {misses}")
    return config, len(sequence), results


def check(results: dict) -> None:
    for mode, (rate, worst, misses) in results.items():
        assert rate >= 0.99, f"{mode}: top-1 agreement {rate:.4f}, misses' gaps {misses}"


@pytest.mark.gpu
def test_real_gemma3_on_the_gpu_agrees_with_the_cpu_engine(kernel_library, cuda_device, gemma3_cut):
    # 600 prompt tokens: past the file's window of 512, so its five local layers of six slide; chunks of 200
    config, n, results = compare(gemma3_cut, kernel_library, 600, 200)
    assert (config.head_dim, config.n_kv_heads, config.qk_norm, config.sliding_window) == (256, 1, True, 512)
    assert n > config.sliding_window + 64
    check(results)


@pytest.mark.gpu
@pytest.mark.parametrize("arch", ["phi3", "gemma2"])
def test_synthetic_phi3_and_gemma2_on_the_gpu_agree_with_the_cpu_engine(kernel_library, cuda_device, small_files,
                                                                       arch):
    # gemma2: 160 prompt tokens against its window of 64, prefill chunks of 48
    config, n, results = compare(small_files[arch], kernel_library, 160, 48)
    if arch == "gemma2":
        assert (config.head_dim, config.attn_softcap, config.final_softcap) == (256, 50.0, 30.0)
        assert n > config.sliding_window + 64
    else:
        assert (config.head_dim, config.n_kv_heads) == (96, 32)
    check(results)


@pytest.mark.gpu
@pytest.mark.parametrize("arch", ["phi3", "gemma2"])
def test_the_fused_step_is_bit_for_bit_the_unfused_one_on_the_new_architectures(kernel_library, cuda_device,
                                                                               small_files, arch):
    """The GeGLU, post-norm and row-view paths of the fused step compute what the unfused ones do, exactly."""
    from edgellm.cuda.engine import CudaEngine
    from edgellm.cuda.library import Library

    library = Library.load(kernel_library)
    fused = CudaEngine(small_files[arch], max_context=128, library=library)
    unfused = CudaEngine(small_files[arch], max_context=128, library=library, fused=False)
    feed = list(range(10, 90)) + [None] * 10  # past gemma2's window of 64, then each engine's own choices
    for i, token in enumerate(feed):
        a, b = fused.step(token), unfused.step(token)
        assert a == b, f"position {i}: fused chose {a}, unfused {b}"
        assert np.array_equal(fused.last_logits(), unfused.last_logits()), f"position {i}: logits differ"
    assert 0 < fused.graph_nodes() < unfused.graph_nodes()
    fused.close()
    unfused.close()


@pytest.mark.gpu
def test_the_window_is_in_force_on_the_gpu(kernel_library, cuda_device, small_files):
    """A window as long as the context changes nothing in the first 64 positions and something after them."""
    from edgellm.cuda.engine import CudaEngine

    windowed = CudaEngine(small_files["gemma2"], max_context=128, library=kernel_library, prefill_chunk=None)
    tokens = list(range(10, 110))
    a = windowed.logits(tokens)
    windowed.close()
    wide = write_small(small_files["gemma2"].with_name("wide.gguf"), "gemma2-2b", layers=3, vocab=32000,
                       extra={"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
                              "sliding_window": 4096})
    full = CudaEngine(wide, max_context=128, library=kernel_library, prefill_chunk=None)
    b = full.logits(tokens)
    full.close()
    assert np.array_equal(a[:64], b[:64]) and not np.allclose(a[64:], b[64:], atol=1e-3)


def test_the_gpu_engine_takes_every_architecture_the_reader_supports():
    from edgellm.cuda.layout import refuse_architecture
    from edgellm.errors import UnsupportedModelError
    from edgellm.gguf.config import SUPPORTED_ARCHITECTURES

    for arch in SUPPORTED_ARCHITECTURES:
        refuse_architecture(arch)
    with pytest.raises(UnsupportedModelError, match="'mamba' has no GPU kernels"):
        refuse_architecture("mamba")


def test_the_gpu_engine_takes_the_new_architectures_shapes(small_files):
    """No device, no library: the refusals of shapes and types pass for phi3's and gemma2's files."""
    from edgellm.cuda.engine import refuse_unsupported
    from edgellm.gguf import open_gguf
    from edgellm.gguf.config import read_config

    for path in small_files.values():
        reader = open_gguf(path)
        refuse_unsupported(read_config(reader), {t.name: t for t in reader.tensors})


def test_fused_rows_are_the_files_blocks_in_parts():
    """phi3's attn_qkv as three row ranges: the planar fields of each part are the whole matrix's, in order."""
    from edgellm.cuda.layout import planar, row_range

    rng = np.random.default_rng(0)
    rows, cols = 24, 64  # Q4_0: 2 blocks of 18 bytes per row
    raw = rng.integers(0, 256, rows * cols // 32 * 18, dtype=np.uint8)
    whole = planar("Q4_0", raw, rows, cols)
    parts = [row_range("Q4_0", whole, rows, a, b) for a, b in ((0, 16), (16, 20), (20, 24))]
    for name in whole:
        assert np.array_equal(np.concatenate([p[name] for p in parts]), whole[name])
    expect = planar("Q4_0", raw.reshape(rows, -1)[16:20].reshape(-1), 4, cols)
    assert all(np.array_equal(parts[1][n], expect[n]) for n in whole)
