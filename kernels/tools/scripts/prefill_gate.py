"""The prefill's gate: every check of gemm_accuracy and prefill_accuracy passed, and compute-sanitizer (memcheck,
racecheck, synccheck) clean on their --sanitize modes; both tables in Parquet, written only when the gate passes."""

import sys

import pandas as pd

smk = snakemake  # noqa: F821 - provided by Snakemake
sys.path.insert(0, str(__import__("pathlib").Path(smk.scriptdir).parent))

import kernel_gate  # noqa: E402
from edgebench import EdgebenchError  # noqa: E402
from edgebench.scripting import rule_context  # noqa: E402

with rule_context(smk):
    binaries = (smk.input.gemm, smk.input.prefill)
    checks = pd.concat([kernel_gate.run_checks(b) for b in binaries], ignore_index=True)
    san = pd.concat([kernel_gate.run_sanitizer(b, args=()) for b in binaries], ignore_index=True)
    failed = checks[~checks.passed]
    print(checks.groupby("binary").passed.agg(["count", "sum"]).rename(columns={"sum": "passed"}).to_string())
    print(san[["binary", "tool", "errors", "hazards", "exit_code", "seconds", "clean"]].to_string(index=False))
    if len(failed):
        print(failed.to_string(index=False))
        raise EdgebenchError(f"{len(failed)} of {len(checks)} prefill checks failed, first: "
                             f"{failed.iloc[0].binary} {failed.iloc[0].check}; see the log")
    if not san.clean.all():
        bad = san[~san.clean]
        raise EdgebenchError("compute-sanitizer found errors in " +
                             ", ".join(f"{r.binary} {r.tool}" for r in bad.itertuples()) + "; see the log")
    kernel_gate.write_parquet(checks, smk.output.checks)
    kernel_gate.write_parquet(san, smk.output.sanitizer)
