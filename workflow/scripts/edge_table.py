"""The edge-deployment tables of one testbed: CSV (every profile x model, with its verdict; the recommendations)
and LaTeX (one row per profile: the recommendation and the measured numbers behind it)."""

import pandas as pd

from edgebench.edge import EdgeSettings, latex_caption
from edgebench.scripting import rule_context
from edgebench.tables import latex_table, write_csv, write_text

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    testbed = smk.wildcards.testbed
    settings = EdgeSettings.from_config(dict(smk.params.edge), list(smk.params.contexts))
    table = pd.read_parquet(smk.input.edge)
    chosen = pd.read_parquet(smk.input.recommendations)
    write_csv(table, smk.output.csv)
    write_csv(chosen, smk.output.recommendations_csv)
    cols = {"profile": "device profile", "budget_gib": "budget (GiB)", "recommended": "recommended",
            "decode_tok_s": "decode tok/s", "ttft_ms": "TTFT (ms)", "peak_memory_mib": "peak (MiB)",
            "required_mib": "with margin (MiB)", "fitting": "models fitting"}
    write_text(latex_table(chosen[list(cols)].rename(columns=cols), latex_caption(settings, testbed),
                           f"tab:edge-{testbed}"), smk.output.tex)
