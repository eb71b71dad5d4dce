"""Kernel benchmark: EdgeLLM's attention against naive attention and PyTorch SDPA (where torch has a GPU)."""

import json
import sys

import pandas as pd

smk = snakemake  # noqa: F821 - provided by Snakemake
sys.path.insert(0, str(__import__("pathlib").Path(smk.scriptdir).parent))

import kernel_gate  # noqa: E402
from edgebench.scripting import rule_context  # noqa: E402
from kernel_figure import kernel_attention  # noqa: E402

with rule_context(smk):
    bench = kernel_gate.run_bench(smk.input.bench, progress=sys.stdout)
    sys.stdout.flush()
    sdpa = kernel_gate.sdpa_rows(bench)
    if sdpa.empty:
        print("PyTorch SDPA: not measured (torch with CUDA is not importable here)")
    table = pd.concat([bench, sdpa], ignore_index=True) if len(sdpa) else bench
    numbers = kernel_gate.headline(table)
    print(json.dumps(numbers, indent=1))
    kernel_gate.write_parquet(table, smk.output.bench, extra={"headline": numbers})
    kernel_attention(table, smk.output.figure, smk.wildcards.testbed)
