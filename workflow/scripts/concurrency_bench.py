"""One point of the concurrency sweep: N clients in a closed loop against one backend and model; one Parquet row per
request."""

from edgebench.backends import ModelNotSupportedError, create_backend
from edgebench.concurrency import run_concurrency, write_concurrency
from edgebench.scripting import benchmark_job, rule_context

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    settings, options, model = benchmark_job(smk)
    s = dict(smk.params.settings)
    clients = int(smk.params.clients)
    meta = {"settings": s, "backend_options": smk.params.backend_options, "concurrency": clients}
    try:
        rows = run_concurrency(lambda: create_backend(smk.wildcards.backend, **options), model, smk.params.prompt_id,
                               smk.params.prompt, settings, clients, s["runs"], s["warmup"],
                               testbed=smk.wildcards.testbed)
    except ModelNotSupportedError as exc:
        print(f"not measured: {exc}")
        meta["not_measured"] = str(exc)
        rows = []
    timed = [r for r in rows if not r["is_warmup"]]
    if timed:
        print(f"{clients} clients, {len(timed)} timed requests in {timed[0]['window_s']:.2f} s: "
              f"{sum(r['generated_tokens'] for r in timed) / timed[0]['window_s']:.1f} output tok/s", flush=True)
    write_concurrency(rows, smk.output.runs, extra_metadata=meta)
