"""Backend registry. Adding a backend is one module plus one line here.

Modules are imported only when their backend is asked for, so that a missing optional engine (llama-cpp-python,
a CUDA build) does not stop the others.
"""

from __future__ import annotations

import importlib

from .. import EdgebenchError
from .base import Backend, Completion, GenerationSettings, ModelRef, Token

REGISTRY: dict[str, str] = {
    "ollama": "edgebench.backends.ollama:OllamaBackend",
    "llamacpp": "edgebench.backends.llamacpp:LlamaCppBackend",
    "edgellm": "edgebench.backends.edgellm:EdgeLLMBackend",
}


def create_backend(name: str, **options) -> Backend:
    if name not in REGISTRY:
        raise EdgebenchError(f"unknown backend {name!r}; choose one of {', '.join(sorted(REGISTRY))}")
    module_name, class_name = REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**options)


__all__ = ["Backend", "Completion", "GenerationSettings", "ModelRef", "Token", "REGISTRY", "create_backend"]
