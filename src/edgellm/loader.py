"""edgellm.load: one entry point for every device."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .errors import EdgeLLMError
from .generator import Generator
from .gguf.config import read_config
from .gguf.reader import open_gguf
from .gguf.tokenizer import Tokenizer

DEVICES = ("auto", "cpu", "cuda")


def _checked(device: str) -> str:
    if device not in DEVICES:
        raise EdgeLLMError(f"device {device!r}: choose one of {', '.join(DEVICES)}")
    return device


def checked_chunk(chunk) -> int:
    """The GPU prefill's chunk (prompt tokens per batch) as given, or one clear error."""
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise EdgeLLMError(f"prefill_chunk is {chunk!r}; it must be a positive integer (tokens per prefill batch)")
    return chunk


def resolve_device(device: str = "auto", library: str | os.PathLike | None = None) -> str:
    """auto: "cuda" where a CUDA device is present and the kernel library is found (edgellm.cuda.available), else
    "cpu". "cpu" and "cuda" are taken as asked (the GPU engine says what is missing when it cannot start)."""
    if _checked(device) != "auto":
        return device
    from .cuda import available

    return "cuda" if available(library) else "cpu"


def load(path: str | os.PathLike, device: str = "auto", max_context: int = 2048, threads: Optional[int] = None,
         quantized: bool = True, library: str | os.PathLike | None = None, prefill_chunk: int = 2048) -> Generator:
    """A GGUF model ready to generate on `device` ("auto", "cpu" or "cuda").

    max_context: the most tokens (prompt + generated) one generation holds; capped at the model's own context.
    threads, quantized: the CPU engine's thread count (default: all cores numba found) and weight form (True: the
    GGUF blocks repacked losslessly to int8; False: float32). The GPU engine always computes on the file's blocks.
    library: the CUDA kernel library (default: EDGELLM_LIB, else a build location, see edgellm.cuda.library).
    prefill_chunk: prompt tokens per batch of the GPU's prefill (a positive integer; the CPU engine ignores it).
    The model is checked (architecture, tensor types, tokenizer) before any device is touched."""
    if max_context < 1:
        raise EdgeLLMError(f"max_context is {max_context}; it must be at least 1")
    _checked(device)
    checked_chunk(prefill_chunk)
    reader = open_gguf(path)
    config = read_config(reader)
    tokenizer = Tokenizer.from_gguf(reader)
    context = min(max_context, config.context_length)
    if resolve_device(device, library) == "cuda":
        from .cuda.engine import CudaEngine

        engine = CudaEngine(path, max_context=context, library=library, reader=reader, prefill_chunk=prefill_chunk)
    else:
        from .cpu.engine import CpuEngine

        engine = CpuEngine.from_reader(reader, config, context, threads=threads, quantized=quantized)
    return Generator(engine, tokenizer, Path(path))
