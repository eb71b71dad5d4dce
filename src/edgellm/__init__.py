"""EdgeLLM: an inference engine that reads the GGUF file Ollama runs, with FlashAttention-2 style attention."""

__version__ = "0.1.0"
