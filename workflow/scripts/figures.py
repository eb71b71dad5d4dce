"""All figures of one testbed."""

import pandas as pd

from edgebench import plots
from edgebench.scripting import rule_context

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    testbed = smk.wildcards.testbed
    runs = pd.read_parquet(smk.input.runs)
    runs = runs[runs["context_tokens"].isna()]  # the named prompts; the context sweep has figures of its own
    summary = pd.read_parquet(smk.input.summary)
    scaling = pd.read_parquet(smk.input.scaling)
    out = smk.output
    plots.throughput_vs_size(scaling, out.throughput_vs_size, testbed)
    plots.speedup(scaling, out.speedup, testbed)
    plots.latency_distribution(runs, out.latency_distribution, testbed)
    plots.ttft(runs, out.ttft, testbed)
    plots.memory_vs_size(summary, out.memory_vs_size, testbed)
    plots.energy_per_token(summary, out.energy_per_token, testbed)
