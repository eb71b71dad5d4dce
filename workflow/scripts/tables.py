"""CSV (all columns) and LaTeX booktabs tables (the columns a reader needs) for the paper."""

import pandas as pd

from edgebench.scripting import rule_context
from edgebench.tables import latex_table, summary_for_paper, write_csv, write_text

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    testbed = smk.wildcards.testbed
    summary = pd.read_parquet(smk.input.summary)
    scaling = pd.read_parquet(smk.input.scaling)
    criteria = pd.read_parquet(smk.input.criteria)
    write_csv(summary, smk.output.summary_csv)
    write_text(latex_table(summary_for_paper(summary),
                           f"Decode throughput (mean $\\pm$ std over timed runs, all prompts), latency and memory "
                           f"on {testbed}.", f"tab:summary-{testbed}"), smk.output.summary_tex)
    write_csv(criteria, smk.output.criteria_csv)
    write_text(latex_table(criteria[["criterion", "name", "status", "value", "threshold", "detail"]],
                           f"The benchmark plan's success criteria on {testbed}.", f"tab:criteria-{testbed}"),
               smk.output.criteria_tex)
    write_csv(scaling, smk.output.scaling_csv)
    cols = ["backend", "model", "parameter_count", "decode_tok_s_mean", "speedup", "speedup_ci95_lo",
            "speedup_ci95_hi", "mbu", "scaling_efficiency", "loglog_slope"]
    write_text(latex_table(scaling[cols], f"Scaling with model size on {testbed}: speedup over "
                                          f"{scaling['baseline'].iloc[0] if len(scaling) else '--'} with 95% CI, "
                                          f"memory-bandwidth utilisation and scaling efficiency.",
                           f"tab:scaling-{testbed}"), smk.output.scaling_tex)
