"""Kernel benchmark: EdgeLLM's attention against naive attention and PyTorch SDPA (where torch has a GPU)."""

import json
import sys

import pandas as pd

from edgebench import kernels, plots
from edgebench.scripting import rule_context

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    bench = kernels.run_bench(smk.input.bench, progress=sys.stdout)
    sys.stdout.flush()
    sdpa = kernels.sdpa_rows(bench)
    if sdpa.empty:
        print("PyTorch SDPA: not measured (torch with CUDA is not importable here)")
    table = pd.concat([bench, sdpa], ignore_index=True) if len(sdpa) else bench
    numbers = kernels.headline(table)
    print(json.dumps(numbers, indent=1))
    kernels.write_parquet(table, smk.output.bench, extra={"headline": numbers})
    plots.kernel_attention(table, smk.output.figure, smk.wildcards.testbed)
