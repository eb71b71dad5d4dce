"""Benchmark one backend on one model and one prompt; write one Parquet row per run."""

import os

from edgebench import EdgebenchError
from edgebench.backends import GenerationSettings, ModelNotSupportedError, create_backend
from edgebench.models import load_record, ref_from_record
from edgebench.provenance import machine
from edgebench.records import RunWriter
from edgebench.runner import no_token_note, run_benchmark
from edgebench.scripting import rule_context

smk = snakemake  # noqa: F821 - provided by Snakemake
BUILT = "built_"  # inputs a backend's build step made for this job: built_<option> -> that backend option

with rule_context(smk):
    expected = smk.params.expect_gpu
    if expected:  # a testbed's results must come from its GPU, whatever node the scheduler chose
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
    backend = create_backend(smk.wildcards.backend, **options)

    meta = {"settings": s, "backend_options": smk.params.backend_options}
    with RunWriter(smk.output.runs, extra_metadata=meta) as writer:  # each run is on disk as it completes

        def progress(row):
            writer.add(row)
            print(f"run {row['run_index']:4d}{' (warm-up)' if row['is_warmup'] else ''}: "
                  f"{row['generated_tokens']} tokens, TTFT {row['ttft_ms']:.1f} ms, {row['decode_tok_s']:.1f} tok/s, "
                  f"{row['done_reason']}{' (new connection)' if row.get('new_connection') else ''}", flush=True)

        try:
            run_benchmark(backend, model, {smk.wildcards.prompt: smk.params.prompt}, settings, s["runs"],
                          s["warmup"], testbed=smk.wildcards.testbed, on_run=progress)
        except ModelNotSupportedError as exc:
            # The engine does not implement this model: recorded as not measured, with the reason, so that the rest
            # of the plan still yields its tables; the criteria name the missing models.
            print(f"not measured: {exc}")
            meta["not_measured"] = str(exc)
    note = no_token_note(writer.rows)
    if note:
        print(f"warning: {note}", flush=True)
