"""The edge-deployment figure of one testbed: decode tok/s against peak memory, the Pareto front, the budgets."""

import pandas as pd

from edgebench.edge import EdgeSettings, pareto_figure
from edgebench.scripting import rule_context

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    settings = EdgeSettings.from_config(dict(smk.params.edge), list(smk.params.contexts))
    pareto_figure(pd.read_parquet(smk.input.runs), settings, smk.output.pareto, smk.wildcards.testbed)
