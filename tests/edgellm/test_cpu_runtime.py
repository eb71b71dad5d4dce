"""What a timed run of the CPU engine may not contain: compilation (the load's warm-up and numba's on-disk cache
take it) and a thread count other than the one asked for (numba keeps it per calling thread)."""

import subprocess
import sys
import threading
from pathlib import Path

import numba
import numpy as np
import pytest

import edgellm
from edgellm.cpu import decode_step, int8_matmul, kernels, pooled_step

# a Q4_K_M mix at a tiny shape: Q4_K and Q6_K (blocks of 16) matrices, q/k and v of different types (not stacked)
TINY = dict(arch="llama", dim=256, layers=2, heads=4, kv_heads=2, ffn=512, vocab=512, tied=True, published=0)


@pytest.fixture(scope="module")
def tiny_q4_k_m(tmp_path_factory) -> Path:
    from synthgguf import synthetic

    path = tmp_path_factory.mktemp("runtime") / "tiny-q4km.gguf"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(synthetic.PRESETS, "tiny-runtime", synthetic.Preset(**TINY))
        synthetic.write_synthetic("tiny-runtime", path, quant="Q4_K_M")
    return path


def dispatchers() -> list:
    return [f for module in (kernels, int8_matmul, decode_step, pooled_step) for f in vars(module).values()
            if isinstance(f, numba.core.registry.CPUDispatcher)]


def test_no_kernel_compiles_after_the_load(tiny_q4_k_m):
    gen = edgellm.load(tiny_q4_k_m, device="cpu", max_context=256, threads=1)
    compiled = {f.__name__: len(f.signatures) for f in dispatchers()}
    # prompts of other lengths than the warm-up's, one over a prefill tile, and teacher-forced logits
    for prompt in ([5, 6, 7], list(range(3, 80))):
        assert len(list(gen.generate(prompt, 6, ignore_eos=True))) == 6
    assert gen.logits(list(range(100))).shape == (100, 512)
    assert {f.__name__: len(f.signatures) for f in dispatchers()} == compiled


def test_threads_are_honoured_on_the_thread_that_consumes_the_tokens(tiny_q4_k_m):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs numba to find two cores")
    gen = edgellm.load(tiny_q4_k_m, device="cpu", max_context=64, threads=1)
    seen = []

    def consume():
        for _ in gen.generate([1, 2, 3], 3, ignore_eos=True):
            seen.append(numba.get_num_threads())

    worker = threading.Thread(target=consume)
    worker.start()
    worker.join()
    assert seen == [1, 1, 1]
    assert "1 threads" in gen.build_info()


@pytest.mark.slow
def test_a_second_process_takes_every_kernel_from_the_on_disk_cache(tiny_q4_k_m):
    script = (f"import edgellm, numba\n"
              f"from edgellm.cpu import decode_step, int8_matmul, kernels, pooled_step\n"
              f"edgellm.load({str(tiny_q4_k_m)!r}, device='cpu', max_context=64)\n"
              f"fs = [f for m in (kernels, int8_matmul, decode_step, pooled_step) for f in vars(m).values()\n"
              f"      if isinstance(f, numba.core.registry.CPUDispatcher) and f.signatures]\n"
              f"print(sum(sum(f.stats.cache_misses.values()) for f in fs), len(fs))\n")
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=None)
            for _ in range(2)]
    misses, used = (int(v) for v in runs[1].stdout.split())
    assert used > 0 and misses == 0, runs[1].stdout


def test_logits_are_a_fresh_array_and_decoding_reuses_the_buffers(tiny_q4_k_m):
    gen = edgellm.load(tiny_q4_k_m, device="cpu", max_context=64)
    first = gen.logits([1, 2, 3])
    again = gen.logits([1, 2, 3])
    assert first is not again
    np.testing.assert_array_equal(first, again)
