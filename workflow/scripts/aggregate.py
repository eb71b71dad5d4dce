"""Concatenate the per-job run files of a testbed; compute the summary statistics."""

import pyarrow as pa
import pyarrow.parquet as pq

from edgebench import EdgebenchError
from edgebench.atomic import atomic_path
from edgebench.records import RUN_SCHEMA, SCHEMA_VERSION, read_schema_version
from edgebench.scripting import rule_context
from edgebench.summary import summarise

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    # A run file of another schema (an older edgebench) lacks columns: one line naming it, not a cast error.
    for p in smk.input.runs:
        if read_schema_version(p) != SCHEMA_VERSION:
            raise EdgebenchError(f"{p} holds run records of schema {read_schema_version(p)}, this edgebench "
                                 f"writes {SCHEMA_VERSION}: delete it to measure it again")
    tables = [pq.read_table(p).cast(RUN_SCHEMA) for p in smk.input.runs]
    runs = pa.concat_tables(tables).replace_schema_metadata({b"edgebench_schema_version": SCHEMA_VERSION.encode()})
    if runs.num_rows == 0:
        raise EdgebenchError(f"no benchmark on testbed {smk.wildcards.testbed} produced a run (every engine refused "
                             f"every model); see {smk.config['results']}/logs/")
    with atomic_path(smk.output.runs) as tmp:
        pq.write_table(runs, tmp)
    summary = summarise(runs.to_pandas())
    with atomic_path(smk.output.summary) as tmp:
        summary.to_parquet(tmp, index=False)
    print(f"{runs.num_rows} runs from {len(smk.input.runs)} jobs; {len(summary)} summary rows")
