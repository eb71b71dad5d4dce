"""The kernels' gate: every accuracy case within tolerance, and compute-sanitizer clean; both tables in Parquet.

The accuracy test and the sanitizer tools run at the same time (separate processes; only their verdicts count).
"""

import sys
from concurrent.futures import ThreadPoolExecutor

smk = snakemake  # noqa: F821 - provided by Snakemake
sys.path.insert(0, str(__import__("pathlib").Path(smk.scriptdir).parent))

import kernel_gate  # noqa: E402
from edgebench import EdgebenchError  # noqa: E402
from edgebench.scripting import rule_context  # noqa: E402

with rule_context(smk):
    sys.stdout.flush()
    with ThreadPoolExecutor(2) as pool:
        sanitizing = pool.submit(kernel_gate.run_sanitizer, smk.input.accuracy)
        acc = kernel_gate.run_accuracy(smk.input.accuracy, progress=sys.stdout)
        san = sanitizing.result()
    failed = acc[~acc.passed]
    print(f"{len(acc)} accuracy cases, {len(failed)} failed")
    print(san[["tool", "errors", "hazards", "exit_code", "seconds", "clean"]].to_string(index=False))
    for row in san.itertuples():
        if not row.clean:
            print(row.report)
    if len(failed):
        print(failed.to_string(index=False))
        first = failed.iloc[0]
        raise EdgebenchError(f"{len(failed)} of {len(acc)} kernel accuracy cases failed, first: {first.kernel} "
                             f"{first.dtype} d{first.head_dim} seq {first.seq_k} splits {first.splits} "
                             f"(error {first.max_abs_err:.3g}); see the log")
    if not san.clean.all():
        raise EdgebenchError("compute-sanitizer found errors in " + ", ".join(san[~san.clean].tool) + "; see the log")
    kernel_gate.write_parquet(acc, smk.output.accuracy)
    kernel_gate.write_parquet(san, smk.output.sanitizer)
