"""The concurrency sweep's figures of one testbed."""

import pandas as pd

from edgebench import concurrency_figures as cf
from edgebench.scripting import rule_context

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    testbed = smk.wildcards.testbed
    summary = pd.read_parquet(smk.input.summary)
    cf.throughput_vs_concurrency(summary, smk.output.throughput, testbed, dict(smk.params.limits))
    cf.latency_vs_concurrency(summary, smk.output.latency, testbed)
