"""The CPU engine's fused decode step (edgellm.cpu.decode_step): bit for bit the logits of the Python layer loop, on
every architecture's layout and the quant mixes of the plan's tags; where it does not apply; its on-disk cache tied to
the sources of the kernels compiled into it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numba
import numpy as np
import pytest

import edgellm
from edgellm.cpu import decode_step, int8_matmul, kernels, model, pooled_step, vnni

SHAPES = {
    "llama": dict(arch="llama", dim=256, layers=2, heads=4, kv_heads=2, ffn=512, vocab=512, tied=False, published=0),
    # K and V rows (40) that are not whole 16-row panels: the parts' outputs close the gaps their padding leaves
    "odd-heads": dict(arch="llama", dim=256, layers=2, heads=4, kv_heads=1, ffn=512, vocab=512, tied=False,
                      published=0, head_dim=40),
    "qwen2": dict(arch="qwen2", dim=256, layers=2, heads=4, kv_heads=2, ffn=512, vocab=512, tied=True, published=0,
                  qkv_bias=True),
    "phi3": dict(arch="phi3", dim=256, layers=2, heads=4, kv_heads=4, ffn=512, vocab=512, tied=False, published=0,
                 head_dim=64, context=4096),
    # a window of 16 makes the local layers slide within the test's 60 positions
    "gemma2": dict(arch="gemma2", dim=256, layers=3, heads=4, kv_heads=2, ffn=512, vocab=512, tied=True,
                   published=0, head_dim=64, norm_eps=1e-6,
                   extra={"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "sliding_window": 16}),
}
CASES = [("llama", "Q4_K_M"), ("llama", "Q8_0"), ("odd-heads", "Q4_K_M"), ("odd-heads", "Q8_0"), ("qwen2", "Q4_K_M"), ("phi3", "Q4_0"), ("gemma2", "Q4_0")]


def write(path: Path, arch: str, quant: str) -> Path:
    from synthgguf import synthetic

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(synthetic.PRESETS, "tiny-fused", synthetic.Preset(**SHAPES[arch]))
        synthetic.write_synthetic("tiny-fused", path, quant=quant)
    return path


def decode_logits(gen, fused: bool, prompt_len: int = 20, steps: int = 40) -> np.ndarray:
    """Logits of `steps` greedy decode steps after a prompt, through the fused step or the Python loop."""
    engine = gen._engine
    cfg, weights, state = engine.config, engine.weights, engine.state
    saved, state.fused = state.fused, (state.fused if fused else None)
    try:
        state.pos = 0
        prompt = (np.arange(1, prompt_len + 1, dtype=np.int64) * 7) % cfg.vocab_size
        logits = model.forward(cfg, weights, state, prompt, all_logits=False)
        token, out = np.zeros(1, np.int64), []
        for _ in range(steps):
            token[0] = int(np.argmax(logits[-1]))
            logits = model.forward(cfg, weights, state, token, all_logits=False)
            out.append(logits.copy())
        return np.concatenate(out)
    finally:
        state.fused = saved


def assert_same_as_python_loop(gen) -> None:
    """Both forms of the fused step: on the pool of threads (where numba runs more than one) and with one parallel
    region per phase."""
    step = gen._engine.state.fused
    assert step is not None
    step.pool_from_threads = 2  # the pool on this machine's cores too (its default starts at more threads)
    python = decode_logits(gen, False)
    try:
        for pooled in (True, False):
            step.pooled = pooled
            fused = decode_logits(gen, True)
            assert np.array_equal(fused, python), f"pooled={pooled}: max |difference| {np.abs(fused - python).max()}"
            if pooled and numba.get_num_threads() >= 2:
                assert step.pooled  # the pool ran every step (it did not give up and leave the comparison to _STEP)
    finally:
        step.pooled, step.pool_from_threads = True, decode_step.POOL_FROM_THREADS


@pytest.mark.parametrize("arch,quant", CASES)
def test_fused_step_gives_the_python_loops_logits_bit_for_bit(tmp_path, arch, quant):
    with edgellm.load(write(tmp_path / f"{arch}.gguf", arch, quant), device="cpu", max_context=128) as gen:
        assert_same_as_python_loop(gen)


def test_fused_step_on_real_weights(smollm2_cpu):
    assert_same_as_python_loop(smollm2_cpu)


def test_fused_step_with_per_head_norms(gemma3_gguf):
    with edgellm.load(gemma3_gguf, device="cpu", max_context=128) as gen:
        assert_same_as_python_loop(gen)


def test_no_fused_step_for_the_float32_reference_or_when_switched_off(tmp_path, monkeypatch):
    path = write(tmp_path / "llama.gguf", "llama", "Q8_0")
    with edgellm.load(path, device="cpu", max_context=64, quantized=False) as gen:
        assert gen._engine.state.fused is None
    monkeypatch.setenv(decode_step.SWITCH, "0")
    with edgellm.load(path, device="cpu", max_context=64) as gen:
        assert gen._engine.state.fused is None
        assert len(list(gen.generate([1, 2, 3], 4, ignore_eos=True))) == 4


def test_the_pool_runs_where_numba_has_threads_and_gives_up_cleanly_where_they_cannot_all_run(tmp_path):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs numba to find two cores")
    with edgellm.load(write(tmp_path / "llama.gguf", "llama", "Q8_0"), device="cpu", max_context=64,
                      threads=2) as gen:
        step = gen._engine.state.fused
        step.pool_from_threads = 2
        assert len(list(gen.generate([1, 2, 3], 4, ignore_eos=True))) == 4
        assert step.pooled  # every step ran on the pool
        # more iterations than threads: some wait for a thread that runs only after them; the rendezvous gives up
        # (after about a second), and nothing of the step is done
        x = step.args[0]
        before = x.copy()
        assert pooled_step._POOLED(3, 3, np.zeros(4, np.int64), *step.args) > 0
        assert np.array_equal(x, before)


def test_the_compiled_steps_cache_key_holds_the_kernels_sources():
    sources = b"".join(Path(m.__file__).read_bytes() for m in (vnni, int8_matmul, kernels))
    digest = hashlib.sha256(sources).hexdigest()
    for dispatcher in (decode_step._STEP, decode_step._linear, decode_step._gate_up_activation, pooled_step._POOLED):
        cells = [c.cell_contents for c in dispatcher.py_func.__closure__]
        assert digest in cells and vnni.AVAILABLE in cells
