"""The pipeline's configuration: validated against workflow/schemas/config.schema.yaml with one clear error."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

from . import EdgebenchError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _message(error: jsonschema.ValidationError) -> str:
    """One line that names the key and says what is wrong with it."""
    where = _where(error)
    if error.validator == "oneOf" and where.startswith("models."):
        return f"config key {where}: a model needs exactly one source: ollama, package, path or synthetic"
    if error.validator == "additionalProperties":
        return f"config key {where}: {error.message}"
    if error.validator == "propertyNames":
        return f"config key {where}: {error.message} (allowed: {error.schema.get('propertyNames')})"
    return f"config key {where}: {error.message}"


def validate(config: dict, schema_path: Path = SCHEMA_PATH) -> dict:
    """Validate and fill defaults; raise EdgebenchError naming the first offending key."""
    schema = yaml.safe_load(schema_path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.path)))
    if errors:
        # The deepest error is the most specific one (e.g. models.x.ollama rather than models.x).
        best = jsonschema.exceptions.best_match(errors)
        raise EdgebenchError(_message(best))
    for key, spec in schema["properties"].items():
        if "default" in spec and key not in config:
            config[key] = spec["default"]
        # Defaults of a section's own keys when the section is given in part (kernels: {run: true}).
        if spec.get("type") == "object" and isinstance(config.get(key), dict):
            for sub, subspec in spec.get("properties", {}).items():
                if "default" in subspec and sub not in config[key]:
                    config[key][sub] = subspec["default"]
    if config.get("baseline") and config["baseline"] not in config["backends"]:
        raise EdgebenchError(f"config key baseline: {config['baseline']!r} is not one of the backends "
                             f"({', '.join(config['backends'])})")
    return config


def load(path: str | Path) -> dict:
    try:
        return validate(yaml.safe_load(Path(path).read_text()) or {})
    except yaml.YAMLError as exc:
        raise EdgebenchError(f"{path} is not valid YAML: {exc}") from None
