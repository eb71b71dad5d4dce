"""The pipeline's configuration: validated against its schema (workflow/schemas/config.schema.yaml, passed in by the
pipeline) and each backend's own options, with one clear error; defaults filled from the schema and from
edgebench.defaults (prompts, GPU bandwidth table)."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from . import EdgebenchError, defaults
from .backends import REGISTRY, option_schema

# Names that become folders under results/ (models, testbeds) must not climb out of it or hide: no "." or "..",
# nothing that starts with a dot.
NAME_PATTERN = "^[A-Za-z0-9_-][A-Za-z0-9._-]*$"  # as in the schema
NAME_RULE = "letters, digits, '.', '_' and '-', not starting with a dot: it names a folder under results/"


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _message(error: jsonschema.ValidationError) -> str:
    """One line that names the key and says what is wrong with it."""
    where = _where(error)
    if error.validator == "oneOf" and where.startswith("models."):
        return f"config key {where}: a model needs exactly one source: ollama, package, path or synthetic"
    if error.validator == "additionalProperties" and where.startswith("backends.") and where.count(".") == 1:
        backend = where.split(".", 1)[1]
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return (f"config key {where}.{extra[0]}: the {backend} backend takes no option {extra[0]!r} "
                f"(its options: {', '.join(allowed)})")
    if error.validator == "additionalProperties" and where == "backends":
        extra = sorted(set(error.instance) - set(REGISTRY))
        return f"config key backends.{extra[0]}: unknown backend; choose from {', '.join(REGISTRY)}"
    if error.validator == "pattern" and where == "kernels.nvcc":
        return (f"config key kernels.nvcc: {error.instance!r} is not a path to a compiler (letters, digits, spaces "
                f"and _ . / + - only)")
    if error.validator == "pattern" and error.validator_value == NAME_PATTERN:
        return f"config key {where}: {error.instance!r} is not a usable name ({NAME_RULE})"
    if error.validator in ("propertyNames", "pattern") and where == "prompts":
        return (f"config key prompts: {error.instance!r} is not a usable prompt name (letters, digits, '_' and '-'; "
                f"ctx<N> names the context sweep's prompts)")
    if error.validator == "propertyNames":
        return f"config key {where}: {error.message} (allowed: {error.schema.get('propertyNames')})"
    return f"config key {where}: {error.message}"


def _with_backends(schema: dict) -> dict:
    """The schema with one section per registered backend, from the backend's own options."""
    schema = copy.deepcopy(schema)
    section = schema["properties"]["backends"]
    section["properties"] = {name: option_schema(name) for name in REGISTRY}
    section["additionalProperties"] = False
    return schema


def _fill_defaults(config: dict, schema: dict) -> None:
    for key, spec in schema["properties"].items():
        if "default" in spec and key not in config:
            config[key] = copy.deepcopy(spec["default"])
        # Defaults of a section's own keys when the section is given in part (kernels: {run: true}).
        if spec.get("type") == "object" and isinstance(config.get(key), dict):
            for sub, subspec in spec.get("properties", {}).items():
                if "default" in subspec and sub not in config[key]:
                    config[key][sub] = copy.deepcopy(subspec["default"])
    config.setdefault("prompts", dict(defaults.PROMPTS))
    config["gpu_peak_bandwidth_gbs"] = {**defaults.GPU_PEAK_BANDWIDTH_GBS, **config.get("gpu_peak_bandwidth_gbs", {})}


def _resolve_criteria(config: dict) -> None:
    """`reference: baseline` becomes the baseline's name; no engine: the first backend other than the reference."""
    crit = config["criteria"]
    backends = list(config["backends"])
    if crit["reference"] == "baseline":
        crit["reference"] = config.get("baseline") or backends[0]
    if crit["engine"] is None:
        crit["engine"] = next((b for b in backends if b != crit["reference"]), None)
    for key in ("engine", "reference"):
        if crit[key] is not None and crit[key] not in backends:
            raise EdgebenchError(f"config key criteria.{key}: {crit[key]!r} is not one of the backends "
                                 f"({', '.join(backends)})")


def validate(config: dict, schema_path: str | Path) -> dict:
    """Validate and fill defaults; raise EdgebenchError naming the first offending key."""
    schema = _with_backends(yaml.safe_load(Path(schema_path).read_text()))
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(config))
    if errors:
        # The deepest error is the most specific one (e.g. models.x.ollama rather than models.x).
        best = jsonschema.exceptions.best_match(errors)
        raise EdgebenchError(_message(best))
    _fill_defaults(config, schema)
    if config.get("baseline") and config["baseline"] not in config["backends"]:
        raise EdgebenchError(f"config key baseline: {config['baseline']!r} is not one of the backends "
                             f"({', '.join(config['backends'])})")
    _resolve_criteria(config)
    return config


def resolve_testbed(config: dict) -> str:
    """The testbed's name: the config's, or for `auto` this machine's (its GPU, else `cpu-Nc`); written back into
    the config so that the report names the machine, never "auto"."""
    if config.get("testbed", "auto") == "auto":
        from .provenance import testbed_name

        config["testbed"] = testbed_name()
    return config["testbed"]


def load(path: str | Path, schema_path: str | Path) -> dict:
    try:
        return validate(yaml.safe_load(Path(path).read_text()) or {}, schema_path)
    except yaml.YAMLError as exc:
        raise EdgebenchError(f"{path} is not valid YAML: {exc}") from None
