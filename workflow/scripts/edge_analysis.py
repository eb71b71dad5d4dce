"""The edge-deployment table of one testbed: per device profile, every model measured at the chosen context."""

import pandas as pd

from edgebench.atomic import atomic_path
from edgebench.edge import EdgeSettings, edge_table, recommendations
from edgebench.scripting import rule_context

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    settings = EdgeSettings.from_config(dict(smk.params.edge), list(smk.params.contexts))
    table = edge_table(pd.read_parquet(smk.input.runs), settings)
    chosen = recommendations(table, settings)
    for frame, path in ((table, smk.output.edge), (chosen, smk.output.recommendations)):
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
    print(chosen.to_string(index=False))
