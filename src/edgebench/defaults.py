"""The defaults every config extends, kept once: the plan's prompts, the GPUs' peak memory bandwidth, and the
edge-deployment profiles, margin and service targets.

A config without `prompts` runs these four; a config's `gpu_peak_bandwidth_gbs` adds to (or overrides entries of)
this table. The CLI's default prompts are the same four.
"""

from __future__ import annotations

# The user's plan: four prompts from minimal to long, the same for every model.
PROMPTS: dict[str, str] = {
    "minimal": "Hello",
    "short": "What is machine learning?",
    "medium": "Explain quantum computing in simple terms.",
    "long": "Write a detailed explanation of how neural networks work, including backpropagation.",
}

# Vendor peak memory bandwidth (GB/s) by a substring of the GPU's NVML name; the longest matching key wins, so
# "H100 80GB HBM3" beats "H100". Used only for memory-bandwidth utilisation (MBU).
GPU_PEAK_BANDWIDTH_GBS: dict[str, float] = {
    "H200": 4800,
    "H100 80GB HBM3": 3350,
    "H100 PCIe": 2000,
    "A100-SXM4-80GB": 2039,
    "A100-SXM4-40GB": 1555,
    "A100-PCIE-40GB": 1555,
    "RTX 4090": 1008,
    "Tesla T4": 320,
}

# Edge-deployment profiles (edgebench.edge): a device's name and the memory a model may use on it, in GiB (the
# vendors' "GB" of memory chips are GiB). A config's `edge.profiles` adds to (or overrides entries of) this table.
# Only memory is taken from a profile: speeds always come from the testbed the runs were measured on.
EDGE_PROFILES: dict[str, dict] = {
    "jetson-orin-nano-8gb": {"label": "Jetson Orin Nano 8 GB", "memory_gib": 8,
                             "note": "unified memory, shared with the OS and the CPU"},
    "jetson-agx-orin-64gb": {"label": "Jetson AGX Orin 64 GB", "memory_gib": 64,
                             "note": "unified memory, shared with the OS and the CPU"},
    "rtx-4090-24gb": {"label": "RTX 4090 24 GB", "memory_gib": 24, "note": ""},
    "tesla-t4-16gb": {"label": "Tesla T4 16 GB", "memory_gib": 16, "note": ""},
    "a100-80gb": {"label": "A100 80 GB", "memory_gib": 80, "note": ""},
    "h100-80gb": {"label": "H100 80 GB", "memory_gib": 80, "note": ""},
}

# The margin a model needs on top of its measured peak to run on another device: allocator slack and a runtime's
# buffers that the testbed's build did not need (a fraction of the peak), plus a CUDA context and driver state on a
# device of its own (a fixed amount). A model fits a profile when peak * (1 + fraction) + fixed <= the budget.
EDGE_RUNTIME_MARGIN_FRACTION = 0.10
EDGE_RUNTIME_MARGIN_MIB = 512.0

# The service targets a recommended model must meet at the chosen context, measured on the testbed.
EDGE_MIN_DECODE_TOK_S = 20.0
EDGE_MAX_TTFT_MS = 1000.0
