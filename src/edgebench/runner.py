"""The measuring loop: one backend, one model, some prompts, warm-up and timed runs, one row per run.

Clock: `time.perf_counter_ns()` (monotonic). t0 is taken just before the backend is asked for its first token (for
Ollama that is when the HTTP request goes out; for in-process engines, when tokenization starts); every arrival
is stamped when the harness receives it. From these alone:
- ttft_ms: first arrival - t0 (prompt processing and the first token, as a user sees it)
- itl_ms: differences between consecutive arrivals
- decode_tok_s: (arrivals - 1) / (last arrival - first arrival)
- prefill_tok_s: prompt tokens / ttft
- e2e_ms: end of the generation (the engine's final answer) - t0
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import numpy as np

from . import EdgebenchError
from .backends import Backend, Completion, GenerationSettings, ModelRef
from .monitor import Monitor
from .context import count_mismatch
from .prompts import gguf_chat_template, render
from .provenance import config_hash, machine


@dataclass
class Measured:
    """What one generation looked like from the harness's side."""
    token_times_ns: list[int]
    token_ids: list[Optional[int]]
    text: str
    e2e_ns: int
    completion: Completion


def measure_once(backend: Backend, prompt: str, settings: GenerationSettings) -> Measured:
    times: list[int] = []
    ids: list[Optional[int]] = []
    pieces: list[str] = []
    t0 = time.perf_counter_ns()
    gen = backend.generate(prompt, settings)
    while True:
        try:
            token = next(gen)
        except StopIteration as stop:
            completion = stop.value
            break
        times.append(time.perf_counter_ns() - t0)
        ids.append(token.token_id)
        pieces.append(token.text)
    e2e = time.perf_counter_ns() - t0
    if completion is None:
        raise EdgebenchError(f"backend {backend.name} ended a generation without reporting it")
    return Measured(times, ids, "".join(pieces), e2e, completion)


def metrics_of(m: Measured) -> dict:
    times_ms = np.asarray(m.token_times_ns, dtype=np.float64) / 1e6
    itl = np.diff(times_ms)
    n = len(times_ms)
    c = m.completion
    ttft = float(times_ms[0]) if n else math.nan
    span_s = (times_ms[-1] - times_ms[0]) / 1e3 if n > 1 else 0.0
    return {
        "prompt_tokens": c.prompt_tokens,
        "generated_tokens": c.generated_tokens,
        "done_reason": c.done_reason,
        "stream_arrivals": n,
        "ttft_ms": ttft,
        "e2e_ms": m.e2e_ns / 1e6,
        "decode_tok_s": (n - 1) / span_s if span_s > 0 else math.nan,
        "prefill_tok_s": (c.prompt_tokens / (ttft / 1e3)) if (c.prompt_tokens and n and ttft > 0) else math.nan,
        "itl_mean_ms": float(itl.mean()) if itl.size else math.nan,
        "itl_p50_ms": float(np.percentile(itl, 50)) if itl.size else math.nan,
        "itl_p99_ms": float(np.percentile(itl, 99)) if itl.size else math.nan,
        "jitter_ms": float(itl.std(ddof=1)) if itl.size > 1 else math.nan,
        "itl_ms": itl.tolist(),
        "token_times_ms": times_ms.tolist(),
        "token_ids": None if any(i is None for i in m.token_ids) else [int(i) for i in m.token_ids],
    }


def engine_columns(c: Completion) -> dict:
    e = dict(c.engine)
    count, dur = e.get("engine_eval_count"), e.get("engine_eval_duration")
    out = {
        "engine_total_duration_ns": e.get("engine_total_duration"),
        "engine_load_duration_ns": e.get("engine_load_duration"),
        "engine_prompt_eval_count": e.get("engine_prompt_eval_count"),
        "engine_prompt_eval_duration_ns": e.get("engine_prompt_eval_duration"),
        "engine_eval_count": count,
        "engine_eval_duration_ns": dur,
        "engine_stream_chunks": e.get("engine_stream_chunks"),
        "new_connection": e.get("new_connection"),
        # The engine's own rate, as Ollama defines it: eval_count / eval_duration * 1e9.
        "engine_decode_tok_s": (count / dur * 1e9) if (count and dur) else None,
    }
    return out


def render_prompt(model: ModelRef, text: str, settings: GenerationSettings) -> str:
    if settings.prompt_format == "raw":
        return text
    if model.gguf_path is None:
        raise EdgebenchError("prompt format 'chat' needs the model's GGUF file to read its chat template")
    template, bos, eos = gguf_chat_template(model.gguf_path)
    return render(text, settings.prompt_format, template, bos, eos)


def run_benchmark(backend: Backend, model: ModelRef, prompts: dict[str, str], settings: GenerationSettings,
                  runs: int, warmup: int, testbed: str = "local",
                  on_run: Optional[Callable[[dict], None]] = None,
                  context_tokens: Optional[int] = None) -> list[dict]:
    """Load once, then for each prompt `warmup` + `runs` generations; returns one row per generation.

    context_tokens: the prompts are context prompts of exactly this many tokens (edgebench.context), sent as they
    are (no chat template: it would add tokens); each row records the length and whether any count the engine
    reported differs from it (`prompt_tokens_mismatch`).

    The model is released at the end (for Ollama: keep_alive 0) so that the next engine gets the GPU to itself.
    """
    if runs < 1 or warmup < 0:
        raise EdgebenchError("runs must be at least 1 and warm-up at least 0")
    backend.load(model, settings)
    try:
        static = {
            "testbed": testbed, "backend": backend.name, "model": model.name, "ollama_tag": model.ollama_tag,
            **{k: model.info.get(k) for k in ("gguf_path", "gguf_sha256", "gguf_size_bytes", "architecture",
                                             "parameter_count", "quantization", "synthetic")},
            **settings.as_columns(), **machine(), **backend.versions(),
            "engine_device": backend.device(),
            "config_hash": config_hash({"settings": settings.as_columns(), "runs": runs, "warmup": warmup,
                                        "prompts": prompts, "model": model.info.get("gguf_sha256") or model.name}),
        }
        rows = []
        with Monitor() as monitor:
            for prompt_id, text in prompts.items():
                rendered = text if context_tokens else render_prompt(model, text, settings)
                for i in range(warmup + runs):
                    with monitor.window() as mon:
                        measured = measure_once(backend, rendered, settings)
                    rows.append(_row(static, prompt_id, text, rendered, i - warmup, measured, mon.result,
                                     context_tokens))
                    if on_run:
                        on_run(rows[-1])
        return rows
    finally:
        backend.unload()


def _row(static: dict, prompt_id: str, text: str, rendered: str, run_index: int, measured: Measured,
         resources: dict, context_tokens: Optional[int] = None) -> dict:
    row = {**static, "prompt_id": prompt_id, "prompt_text": text, "prompt_rendered": rendered,
           "run_index": run_index, "is_warmup": run_index < 0,
           "timestamp_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
           **metrics_of(measured), **engine_columns(measured.completion), **resources}
    row["context_tokens"] = context_tokens
    row["prompt_tokens_mismatch"] = count_mismatch(context_tokens, row["prompt_tokens"],
                                                   row["engine_prompt_eval_count"])
    energy = row.get("gpu_energy_j")
    row["gpu_energy_j_per_token"] = (energy / row["generated_tokens"]
                                     if energy is not None and row["generated_tokens"] else None)
    return row


def no_token_note(rows: list[dict]) -> Optional[str]:
    """One line when runs generated no token at all (their rates are NaN), with what usually helps; else None."""
    empty = [r for r in rows if not r.get("stream_arrivals")]
    if not empty:
        return None
    where = sorted({f"{r['backend']} {r['model']} {r['prompt_id']}" for r in empty})
    return (f"{len(empty)} of {len(rows)} runs generated no token ({', '.join(where[:3])}"
            f"{', ...' if len(where) > 3 else ''}): the model ended at once, as an instruct model does on a raw "
            f"prompt; their rates are NaN. Try --prompt-format chat (prompt_format: chat) or --ignore-eos")


def select_prompts(names_or_texts: Optional[Iterable[str]], catalogue: dict[str, str]) -> dict[str, str]:
    """Prompt ids from the catalogue, or free texts (named p1, p2, ...)."""
    if not names_or_texts:
        return dict(catalogue)
    out = {}
    for i, p in enumerate(names_or_texts, 1):
        out[p if p in catalogue else f"p{i}"] = catalogue.get(p, p)
    return out
