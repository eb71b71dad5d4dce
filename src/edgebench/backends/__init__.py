"""Backend registry: the only place that names the backends. Adding a backend is one module plus one line here.

Modules are imported only when their backend is asked for, so that a missing optional engine (llama-cpp-python,
a CUDA build) does not stop the others. A backend's options are its constructor's keyword arguments: the config's
`backends.NAME` section and the CLI are checked against them (`option_schema`), so a key the backend does not take
is one clear line at validation time, not a TypeError in every job.
"""

from __future__ import annotations

import importlib
import inspect
import types
import typing

from .. import EdgebenchError
from .base import Backend, BuildStep, Completion, GenerationSettings, ModelNotSupportedError, ModelRef, Token

REGISTRY: dict[str, str] = {
    "ollama": "edgebench.backends.ollama:OllamaBackend",
    "llamacpp": "edgebench.backends.llamacpp:LlamaCppBackend",
    "edgellm": "edgebench.backends.edgellm:EdgeLLMBackend",
    "openai": "edgebench.backends.openai:OpenAIBackend",
}

# Options of every backend that the pipeline applies itself rather than the backend's constructor.
PIPELINE_OPTIONS: dict[str, dict] = {
    "ignore_eos": {"type": "boolean", "description": "this backend's own ignore_eos (default: the config's)"},
}


def backend_class(name: str) -> type[Backend]:
    if name not in REGISTRY:
        raise EdgebenchError(f"unknown backend {name!r}; choose one of {', '.join(sorted(REGISTRY))}")
    module_name, class_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def _json_type(hint) -> dict:
    """The JSON schema of a constructor parameter's annotation (bool, int, float, str, Optional, Literal)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        parts = [_json_type(a) for a in args if a is not type(None)]
        if len(parts) == 1 and set(parts[0]) == {"type"}:  # Optional[int] -> {"type": ["integer", "null"]}
            return {"type": [parts[0]["type"], "null"]}
        return {"anyOf": parts + ([{"type": "null"}] if type(None) in args else [])}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if hint in simple:
        return {"type": simple[hint]}
    return {}  # anything else: any value (the backend checks it)


def option_schema(name: str) -> dict:
    """The JSON schema of `backends.NAME` in the config: the backend constructor's keyword arguments (typed by their
    annotations) and the pipeline's own per-backend options; options a build step fills are not the config's."""
    cls = backend_class(name)
    hints = typing.get_type_hints(cls.__init__)
    reserved = {option for option, _ in cls.build_step.option_products} if cls.build_step else set()
    properties = {}
    for param in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.name in reserved:
            continue
        properties[param.name] = _json_type(hints.get(param.name))
    properties.update(PIPELINE_OPTIONS)
    return {"type": "object", "additionalProperties": False, "properties": properties}


def check_options(name: str, options: dict, extra: tuple[str, ...] = ()) -> None:
    """One line naming the first option the backend's constructor does not take (`extra`: options a build step
    passes)."""
    allowed = (set(option_schema(name)["properties"]) - set(PIPELINE_OPTIONS)) | set(extra)
    for key in options:
        if key not in allowed:
            raise EdgebenchError(f"the {name} backend takes no option {key!r} (its options: "
                                 f"{', '.join(sorted(allowed)) or 'none'})")


def create_backend(name: str, **options) -> Backend:
    cls = backend_class(name)
    built = tuple(option for option, _ in cls.build_step.option_products) if cls.build_step else ()
    check_options(name, options, extra=built)
    return cls(**options)


def build_steps() -> list[BuildStep]:
    """Every registered backend's build step (for the pipeline's build rules), each once."""
    steps: dict[str, BuildStep] = {}
    for name in REGISTRY:
        step = backend_class(name).build_step
        if step is not None:
            steps.setdefault(step.rule, step)
    return list(steps.values())


def build_inputs(name: str, options: dict, on_gpu: bool) -> dict[str, str]:
    """What a job of this backend needs built first: backend option -> product of its build step (none mostly)."""
    cls = backend_class(name)
    if cls.build_step is None or not cls.needs_build(options, on_gpu):
        return {}
    return dict(cls.build_step.option_products)


__all__ = ["Backend", "BuildStep", "Completion", "GenerationSettings", "ModelNotSupportedError", "ModelRef", "Token",
           "REGISTRY", "PIPELINE_OPTIONS", "backend_class", "build_inputs", "build_steps", "check_options",
           "create_backend", "option_schema"]
