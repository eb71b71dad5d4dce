"""Throughput against model size for several testbeds in one figure."""

import pandas as pd

from edgebench import plots
from edgebench.scripting import rule_context

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    plots.throughput_by_testbed([pd.read_parquet(p) for p in smk.input.scaling], smk.output.png)
