"""The defaults every config extends, kept once: the plan's prompts and the GPUs' peak memory bandwidth.

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
