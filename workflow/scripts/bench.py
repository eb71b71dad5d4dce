"""Benchmark one backend on one model and one prompt (a named one, or a context sweep's length); write one Parquet
row per run."""

from pathlib import Path

from edgebench import EdgebenchError
from edgebench.backends import ModelNotSupportedError, create_backend
from edgebench.context import context_prompt, prompt_id
from edgebench.records import RunWriter
from edgebench.runner import no_token_note, run_benchmark
from edgebench.scripting import benchmark_job, rule_context

smk = snakemake  # noqa: F821 - provided by Snakemake

with rule_context(smk):
    settings, options, model = benchmark_job(smk)
    s = dict(smk.params.settings)
    tokens = getattr(smk.params, "context_tokens", None)
    if tokens:  # a context job: exactly `tokens` tokens of the shipped text in this model's tokenizer
        if model.gguf_path is None:
            raise EdgebenchError(f"a context sweep tokenizes its prompt with the model's GGUF file, and "
                                 f"{model.name} has none on this machine")
        text = Path(smk.input.text).read_text(encoding="utf-8")
        prompts = {prompt_id(tokens): context_prompt(model.gguf_path, tokens, text)}
    else:
        prompts = {smk.wildcards.prompt: smk.params.prompt}
    backend = create_backend(smk.wildcards.backend, **options)

    meta = {"settings": s, "backend_options": smk.params.backend_options, "context_tokens": tokens}
    with RunWriter(smk.output.runs, extra_metadata=meta) as writer:  # each run is on disk as it completes

        def progress(row):
            writer.add(row)
            flag = " PROMPT TOKEN COUNT MISMATCH" if row.get("prompt_tokens_mismatch") else ""
            print(f"run {row['run_index']:4d}{' (warm-up)' if row['is_warmup'] else ''}: "
                  f"{row['generated_tokens']} tokens, TTFT {row['ttft_ms']:.1f} ms, {row['decode_tok_s']:.1f} tok/s, "
                  f"{row['done_reason']}{' (new connection)' if row.get('new_connection') else ''}, "
                  f"{row['prompt_tokens']} prompt tokens{flag}", flush=True)

        try:
            run_benchmark(backend, model, prompts, settings, s["runs"], s["warmup"], testbed=smk.wildcards.testbed,
                          on_run=progress, context_tokens=tokens)
        except ModelNotSupportedError as exc:
            # The engine does not implement this model: recorded as not measured, with the reason, so that the rest
            # of the plan still yields its tables; the criteria name the missing models.
            print(f"not measured: {exc}")
            meta["not_measured"] = str(exc)
    mismatched = [r for r in writer.rows if r.get("prompt_tokens_mismatch")]
    if mismatched:
        print(f"warning: {len(mismatched)} of {len(writer.rows)} runs report a prompt of "
              f"{mismatched[0]['prompt_tokens']} tokens, not {tokens}: flagged in prompt_tokens_mismatch", flush=True)
    note = no_token_note(writer.rows)
    if note:
        print(f"warning: {note}", flush=True)
