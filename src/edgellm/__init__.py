"""EdgeLLM: an inference engine that reads the GGUF file Ollama runs, with FlashAttention-2 style attention.

    import edgellm
    with edgellm.load("model.gguf", device="auto") as gen:      # "cpu", "cuda" or "auto"
        ids = gen.tokenizer.encode("Hello")
        text = gen.tokenizer.decode_bytes(list(gen.generate(ids, 32)))

Subpackages: edgellm.gguf (reading the file: metadata, config, tokenizer, tensor types), edgellm.cpu (numba engine),
edgellm.cuda (the compiled kernels' binding and the GPU engine). Errors derive from edgellm.errors.EdgeLLMError.
"""

from .errors import ContextLengthError, EdgeLLMError, KernelError, ModelFileError, UnsupportedModelError
from .generator import Generator
from .loader import load

__version__ = "0.1.0"

__all__ = ["ContextLengthError", "EdgeLLMError", "Generator", "KernelError", "ModelFileError",
           "UnsupportedModelError", "__version__", "load"]
