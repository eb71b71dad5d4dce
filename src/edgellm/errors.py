"""Errors a user can act on, each with a one-line message. A program that embeds the engine catches EdgeLLMError
(the harness translates it into its own error in its edgellm backend)."""


class EdgeLLMError(Exception):
    """The base of every error the engine raises on purpose."""


class UnsupportedModelError(EdgeLLMError):
    """An architecture, quantization type, tokenizer or shape that EdgeLLM does not implement (yet)."""


class ModelFileError(EdgeLLMError):
    """A GGUF file that is missing, truncated or inconsistent."""


class KernelError(EdgeLLMError):
    """The CUDA kernels are missing, refused a call, or CUDA failed."""


class ContextLengthError(EdgeLLMError):
    """A prompt plus the tokens asked for that do not fit the context the generator was loaded with."""
