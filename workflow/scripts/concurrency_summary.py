"""The concurrency sweep's statistics of one testbed (goodput against the config's limits), and its table."""

import pandas as pd
import pyarrow.parquet as pq

from edgebench.atomic import atomic_path
from edgebench.concurrency_summary import summarize, table_for_paper
from edgebench.scripting import rule_context
from edgebench.tables import latex_table, write_csv, write_text

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    testbed = smk.wildcards.testbed
    limits = dict(smk.params.limits)
    parts = [pq.read_table(path).to_pandas() for path in smk.input]
    requests = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else None
    summary = summarize(requests, limits) if requests is not None else pd.DataFrame()
    with atomic_path(smk.output.summary) as tmp:
        summary.to_parquet(tmp, index=False)
    table = table_for_paper(summary, limits)
    write_csv(table, smk.output.csv)
    classes = ", ".join(f"{name} TTFT <= {lim['ttft_ms']:g} ms and TPOT <= {lim['tpot_ms']:g} ms"
                        for name, lim in limits.items())
    write_text(latex_table(table, f"Concurrency sweep on {testbed}: aggregate output tokens/s and requests/s of N "
                                  f"closed-loop clients, per-request TTFT and ITL percentiles (ms), and goodput, the "
                                  f"share of requests meeting both limits of a class ({classes}). In-process engines "
                                  f"run one request at a time (N = 1 only).", f"tab:concurrency-{testbed}"),
               smk.output.tex)
