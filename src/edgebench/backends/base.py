"""The interface every engine implements, and the settings they all share.

A backend only produces tokens; it never times them. The harness (edgebench.runner) stamps each token's arrival with
one monotonic clock, the same way for every backend, so that numbers from different engines are comparable.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Generator, Optional

from .. import EdgebenchError


class ModelNotSupportedError(EdgebenchError):
    """The engine does not implement this model (its architecture, a tensor type): the pipeline records the job as
    not measured, with this reason, instead of failing the whole plan; the CLI prints it as an error."""


@dataclass(frozen=True)
class BuildStep:
    """Something a backend's jobs need built before they run (a GPU engine's compiled kernels), declared by the
    backend so that the pipeline needs no case of its own for it.

    The pipeline's build rule, named `rule`, runs `make -C <sources>` with BUILD (the build folder), ARCH (the CUDA
    compute capability) and NVCC (the compiler) from the config's `kernels` section; `make` writes `products` into
    the build folder. A job that needs the step (Backend.needs_build) gets the absolute path of the product
    `option_products[option]` as the backend option `option`.
    """
    rule: str
    sources: str  # the folder of the Makefile, relative to the repository root
    products: tuple[str, ...]
    option_products: tuple[tuple[str, str], ...]  # (backend option, product) pairs


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 128
    temperature: float = 0.0
    seed: int = 42
    num_ctx: int = 2048
    # "raw": the prompt text as given; "chat": the GGUF's chat template rendered around it by the harness.
    # Either way every backend receives the same text in raw mode (see edgebench.prompts).
    prompt_format: str = "raw"
    # Stop at the end-of-sequence token (what Ollama always does) or decode exactly max_new_tokens.
    ignore_eos: bool = False
    # CPU threads for in-process engines; None picks the number of physical cores.
    threads: Optional[int] = None

    def as_columns(self) -> dict:
        return {f"setting_{k}": v for k, v in asdict(self).items()}


@dataclass
class ModelRef:
    """One model as every backend sees it: a GGUF file, an Ollama tag, or both (the tag's blob)."""
    name: str
    gguf_path: Optional[Path] = None
    ollama_tag: Optional[str] = None
    info: dict = field(default_factory=dict)  # the model record: sha256, architecture, parameter count, quant, ...


@dataclass
class Token:
    """One arrival from a backend: the text it carried and, where the engine exposes it, the token id."""
    text: str
    token_id: Optional[int] = None


@dataclass
class Completion:
    """What a backend reports when a generation ends."""
    prompt_tokens: Optional[int]
    generated_tokens: int
    done_reason: str  # "stop" (end of sequence) or "length" (max_new_tokens reached)
    # The engine's own timings, kept as a cross-check beside the harness's, never instead of them.
    engine: dict = field(default_factory=dict)


class Backend(abc.ABC):
    name: ClassVar[str]
    # What this backend's jobs may need built first; None for most engines.
    build_step: ClassVar[Optional[BuildStep]] = None

    @classmethod
    def needs_build(cls, options: dict, on_gpu: bool) -> bool:
        """Whether a job with these options, on a machine with (on_gpu) or without a GPU, needs `build_step`."""
        return False

    @abc.abstractmethod
    def load(self, model: ModelRef, settings: GenerationSettings) -> None:
        """Make the model ready (weights in memory, on the GPU where there is one). Not timed."""

    @abc.abstractmethod
    def generate(self, prompt: str, settings: GenerationSettings) -> Generator[Token, None, Completion]:
        """Yield tokens as the engine produces them; return the Completion."""

    def unload(self) -> None:
        """Release the model (and the GPU) so that another engine can have it."""

    @abc.abstractmethod
    def versions(self) -> dict:
        """Engine name and versions for provenance, as `engine_*` columns."""

    def device(self) -> str:
        """Where the model runs: "cuda" or "cpu"."""
        return "cpu"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.unload()
