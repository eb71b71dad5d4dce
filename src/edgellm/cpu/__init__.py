"""The CPU engine: GGUF weights as float32 or repacked int8 (quant), numba kernels (kernels), the forward pass (model)
and greedy decoding over its KV cache (engine). The float32 reference for the GPU engine."""

from .engine import CpuEngine

__all__ = ["CpuEngine"]
