"""One point of the concurrency sweep: N clients in a closed loop against one backend and model; one Parquet row per
request."""

import os

from edgebench import EdgebenchError
from edgebench.backends import GenerationSettings, ModelNotSupportedError, create_backend
from edgebench.concurrency import run_concurrency, write_concurrency
from edgebench.models import load_record, ref_from_record
from edgebench.provenance import machine
from edgebench.scripting import rule_context

smk = snakemake  # noqa: F821 - provided by Snakemake
BUILT = "built_"  # inputs a backend's build step made for this job: built_<option> -> that backend option

with rule_context(smk):
    expected = smk.params.expect_gpu
    if expected:
        found = machine().get("gpu_name") or "no GPU"
        if expected.lower() not in found.lower():
            raise EdgebenchError(f"testbed {smk.wildcards.testbed} expects a GPU named like {expected!r}, "
                                 f"but this node has {found}")
    s = dict(smk.params.settings)
    options = dict(smk.params.backend_options)
    ignore_eos = options.pop("ignore_eos", s["ignore_eos"])
    settings = GenerationSettings(max_new_tokens=s["max_new_tokens"], temperature=s["temperature"], seed=s["seed"],
                                  num_ctx=s["num_ctx"], prompt_format=s["prompt_format"], ignore_eos=ignore_eos,
                                  threads=s["threads"])
    model = ref_from_record(load_record(smk.input.record))
    for key in smk.input.keys():
        if key.startswith(BUILT):
            options[key[len(BUILT):]] = os.path.abspath(smk.input[key])
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
