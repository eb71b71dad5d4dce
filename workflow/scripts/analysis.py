"""Scaling analysis (speedup with CI, MBU, scaling efficiency, log-log fit) and the plan's success criteria."""

import pandas as pd

from edgebench.analysis import Criteria, criteria_table, scaling_table
from edgebench.atomic import atomic_path
from edgebench.scripting import rule_context

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    runs = pd.read_parquet(smk.input.runs)
    summary = pd.read_parquet(smk.input.summary)
    scaling = scaling_table(runs, summary, smk.params.baseline, dict(smk.params.bandwidths))
    # An engine's own accuracy gate, where an optional rule file ran it (kernels/tools/rules.smk).
    gate = pd.read_parquet(smk.input.kernel_accuracy) if "kernel_accuracy" in smk.input.keys() else None
    criteria = criteria_table(scaling, summary, Criteria.from_config(dict(smk.params.criteria)), runs=runs,
                              kernel_accuracy=gate)
    for frame, path in ((scaling, smk.output.scaling), (criteria, smk.output.criteria)):
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
    print(criteria.to_string(index=False))
