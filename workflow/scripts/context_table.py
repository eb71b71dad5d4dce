"""The context sweep's table of one testbed: CSV (every column) and LaTeX (the columns a reader needs)."""

import pandas as pd

from edgebench.context_figures import context_table
from edgebench.scripting import rule_context
from edgebench.tables import latex_table, write_csv, write_text

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    testbed = smk.wildcards.testbed
    table = context_table(pd.read_parquet(smk.input.runs))
    write_csv(table, smk.output.csv)
    cols = ["backend", "model", "context_tokens", "runs_prompt_mismatch", "ttft_ms_mean", "prefill_tok_s_mean",
            "decode_tok_s_mean", "itl_p50_ms", "itl_p99_ms", "gpu_mem_peak_mb"]
    write_text(latex_table(table[cols] if len(table) else pd.DataFrame(columns=cols),
                           f"Context sweep on {testbed}: TTFT, prefill and decode throughput, ITL and peak GPU memory "
                           f"per prompt length (timed runs whose reported prompt length matches).",
                           f"tab:context-{testbed}"), smk.output.tex)
