"""Pull a model through Ollama's /api/pull and record its GGUF blob, so other engines can run the very same file."""

from edgebench.atomic import write_json
from edgebench.backends.ollama import OllamaClient, locate_blob
from edgebench.models import record_for_gguf
from edgebench.scripting import rule_context

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    tag = smk.params.tag
    client = OllamaClient(smk.params.url)
    client.pull(tag, progress=False)
    blob, digest = locate_blob(tag)
    # The blob's name is its sha256: no need to hash gigabytes again.
    record = record_for_gguf(smk.wildcards.model, blob, {"kind": "ollama", "tag": tag}, sha256=digest)
    record.update(ollama_tag=tag, ollama_version=client.version(), label=smk.params.label or tag)
    write_json(record, smk.output.record)
