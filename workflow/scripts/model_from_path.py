"""Record a local GGUF file."""

from edgebench.atomic import write_json
from edgebench.models import record_for_gguf
from edgebench.scripting import rule_context

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    record = record_for_gguf(smk.wildcards.model, smk.input.gguf, {"kind": "path", "path": smk.input.gguf})
    record["label"] = smk.params.label or smk.wildcards.model
    write_json(record, smk.output.record)
