"""Shape-exact random-weight GGUF files of the plan's models: real shapes and quant mixes, no downloads.

A standalone tool: it imports neither the harness nor the engine, so both (and their tests) can use it."""

from .synthetic import (PRESETS, QUANT_MIXES, Preset, SyntheticModelError, parameter_count, quant_type,
                        tensor_shapes, write_synthetic)

__all__ = ["PRESETS", "QUANT_MIXES", "Preset", "SyntheticModelError", "parameter_count", "quant_type",
           "tensor_shapes", "write_synthetic"]
