"""PyTorch's scaled_dot_product_attention on the kernel benchmark's shapes: the yardstick of our CUDA kernels.

Same conventions as kernels/bench/attention_bench.cu: causal prefill FLOPs 4 * seq^2 * head_dim * heads / 2, decode
bandwidth = K and V bytes read per call over its time, median of repeated timings, inputs cycled past the L2 cache.
"""

from __future__ import annotations

import statistics


def available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _median_us(torch, fn, calls: int, reps: int) -> float:
    fn(0)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for r in range(reps):
        start.record()
        for i in range(calls):
            fn(r * calls + i)
        end.record()
        end.synchronize()
        times.append(1e3 * start.elapsed_time(end) / calls)
    return statistics.median(times)


def _sdpa_call(backend, causal: bool):
    """SDPA pinned to one backend (None: PyTorch's choice), grouped-query heads passed as they are."""
    from torch.nn.attention import sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    def call(q, k, v):
        gqa = k.shape[1] != q.shape[1]
        if backend is None:
            return sdpa(q, k, v, is_causal=causal, enable_gqa=gqa)
        with sdpa_kernel(backend):
            return sdpa(q, k, v, is_causal=causal, enable_gqa=gqa)

    return call


def _grouped_or_expanded(call, q, kvs):
    """The K/V tensors as SDPA takes them: grouped if the backend groups heads, else expanded (outside the timing)."""
    try:
        call(q, kvs[0][0], kvs[0][1])
        return kvs
    except RuntimeError:
        group = q.shape[1] // kvs[0][0].shape[1]
        return [(k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)) for k, v in kvs]


def measure(prefill_shapes, decode_shapes) -> list[dict]:
    """prefill_shapes: (dtype, head_dim, heads, kv_heads, seq); decode_shapes: (dtype, head_dim, heads, kv_heads, seq)."""
    import torch
    from torch.nn.attention import SDPBackend

    dtypes = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}
    rows = []
    for dtype, d, h, kvh, s in prefill_shapes:
        t = dtypes[dtype]
        q = torch.rand(1, h, s, d, device="cuda", dtype=t) * 2 - 1
        k = torch.rand(1, kvh, s, d, device="cuda", dtype=t) * 2 - 1
        v = torch.rand(1, kvh, s, d, device="cuda", dtype=t) * 2 - 1
        call = _sdpa_call(SDPBackend.FLASH_ATTENTION, causal=True)
        [(k, v)] = _grouped_or_expanded(call, q, [(k, v)])
        calls, reps = (10, 20) if s <= 2048 else (3, 7)
        us = _median_us(torch, lambda i: call(q, k, v), calls, reps)
        rows.append(dict(kind="prefill", impl="torch-sdpa-flash", dtype=dtype, head_dim=d, n_heads=h, n_kv_heads=kvh,
                         seq_q=s, seq_k=s, splits=0, time_us=us, tflops=4.0 * s * s * d * h / 2 / us * 1e-6,
                         gbytes_s=0.0))
        del q, k, v
    for dtype, d, h, kvh, s in decode_shapes:
        t = dtypes[dtype]
        kv_bytes = 2 * s * kvh * d * t.itemsize
        copies = min(64, max(2, (512 << 20) // kv_bytes + 1))
        q = torch.rand(1, h, 1, d, device="cuda", dtype=t)
        kvs = [(torch.rand(1, kvh, s, d, device="cuda", dtype=t), torch.rand(1, kvh, s, d, device="cuda", dtype=t))
               for _ in range(copies)]
        call = _sdpa_call(None, causal=False)
        kvs = _grouped_or_expanded(call, q, kvs)
        us = _median_us(torch, lambda i: call(q, *kvs[i % copies]), 50, 15)
        rows.append(dict(kind="decode", impl="torch-sdpa", dtype=dtype, head_dim=d, n_heads=h, n_kv_heads=kvh,
                         seq_q=1, seq_k=s, splits=0, time_us=us, tflops=0.0, gbytes_s=kv_bytes / us * 1e-3))
        del q, kvs
    torch.cuda.empty_cache()
    return rows
