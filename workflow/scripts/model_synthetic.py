"""Write a shape-exact random-weight GGUF of a preset and its record (marked synthetic)."""

from edgebench.atomic import write_json
from edgebench.models import record_for_gguf
from edgebench.scripting import rule_context
from edgebench import EdgebenchError
from synthgguf import SyntheticModelError, write_synthetic

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    spec = smk.params.spec
    try:
        info = write_synthetic(spec["preset"], smk.output.gguf, quant=spec.get("quant", "Q4_K_M"),
                               seed=spec.get("seed", 0))
    except SyntheticModelError as exc:
        raise EdgebenchError(str(exc)) from None
    record = record_for_gguf(smk.wildcards.model, smk.output.gguf, {"kind": "synthetic", **spec})
    record["label"] = (smk.params.label or smk.wildcards.model) + " (synthetic)"
    write_json(record, smk.output.record)
    print(f"{smk.wildcards.model}: {info['parameter_count']:,} parameters, {info['bytes']:,} bytes, "
          f"{info['tensor_types']}")
