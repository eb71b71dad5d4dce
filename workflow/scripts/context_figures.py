"""The context sweep's figures of one testbed."""

import pandas as pd

from edgebench import context_figures as cf
from edgebench.scripting import rule_context

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    testbed = smk.wildcards.testbed
    runs = pd.read_parquet(smk.input.runs)
    out = smk.output
    cf.ttft_vs_length(runs, out.ttft, testbed)
    cf.prefill_vs_length(runs, out.prefill, testbed)
    cf.decode_vs_depth(runs, out.decode, testbed)
    cf.speedup_vs_length(runs, smk.params.baseline, out.speedup, testbed)
    cf.memory_vs_length(runs, out.memory, testbed)
