"""Errors a user can act on. They derive from edgebench's, so the CLI and the pipeline print them on one line."""

from edgebench import EdgebenchError


class UnsupportedModelError(EdgebenchError):
    """An architecture, quantization type or tokenizer that EdgeLLM does not implement (yet)."""


class ModelFileError(EdgebenchError):
    """A GGUF file that is missing, truncated or inconsistent."""


class KernelError(EdgebenchError):
    """The CUDA kernels are missing, refused a call, or CUDA failed."""
