"""`edgebench`: benchmark one engine (or compare two) on one model, pull Ollama models, write synthetic models.

Defaults follow the user's plan: its four prompts, 20 warm-up and 100 timed runs, 128 tokens, temperature 0.
Errors the user can act on are one line on stderr and a nonzero exit; no output file is left half-written.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from . import EdgebenchError, __version__
from .backends import REGISTRY
from .prompts import PLAN_PROMPTS, PROMPT_FORMATS


def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark a backend on a model and write one Parquet row per run",
                       description="Benchmark a backend on a model: warm-up and timed runs per prompt, one Parquet "
                                   "row per run, a summary table at the end.")
    p.add_argument("--backend", default="ollama", help=f"{', '.join(REGISTRY)} (default: ollama)")
    p.add_argument("--model", required=False, help="a .gguf file, a model record .json, or an Ollama tag")
    p.add_argument("--ollama-model", help="the Ollama tag for the ollama backend when --compare runs it "
                                          "beside a GGUF-based engine (default: --model)")
    p.add_argument("--prompt", action="append", metavar="P",
                   help=f"a prompt id ({', '.join(PLAN_PROMPTS)}) or a text; repeatable (default: the plan's 4)")
    p.add_argument("--runs", type=int, default=100, help="timed runs per prompt (default: 100)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up runs per prompt, kept and flagged (default: 20)")
    p.add_argument("--tokens", type=int, default=128, help="max new tokens per run (default: 128)")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default: 0, greedy)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--ctx", type=int, default=2048, help="context size (default: 2048)")
    p.add_argument("--prompt-format", choices=PROMPT_FORMATS, default="raw",
                   help="raw text, or the GGUF's chat template rendered by the harness (default: raw)")
    p.add_argument("--ignore-eos", action="store_true",
                   help="decode exactly --tokens tokens (llama.cpp and EdgeLLM only; Ollama cannot)")
    p.add_argument("--threads", type=int, help="CPU threads for in-process engines (default: physical cores)")
    p.add_argument("--ollama-url", help="Ollama's address, as OLLAMA_HOST takes it (default: $OLLAMA_HOST or "
                                        "http://127.0.0.1:11434); credentials go in ~/.netrc, not the URL")
    p.add_argument("--ollama-timeout", type=float, default=300.0, metavar="S",
                   help="seconds Ollama may stay silent (loading a model, between tokens) before a run fails "
                        "(default: 300)")
    p.add_argument("--testbed", default=None, help="name of this machine in the results (default: from the GPU)")
    p.add_argument("--compare", action="store_true", help="also run --baseline on the same model and print the "
                                                          "speedup of --backend over it")
    p.add_argument("--baseline", default="ollama", help="the backend --compare measures against (default: ollama)")
    p.add_argument("-o", "--output", required=False, help="Parquet file to write")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _pull_parser(sub) -> None:
    p = sub.add_parser("pull", help="pull an Ollama model (with a progress bar) and print its GGUF blob",
                       description="Pull a model through Ollama's /api/pull and print where its GGUF file is.")
    p.add_argument("model", help="Ollama tag, e.g. qwen2.5:0.5b")
    p.add_argument("--ollama-url")
    p.add_argument("--ollama-timeout", type=float, default=300.0, metavar="S")
    p.add_argument("--record", help="also write the model record JSON here")


def _synth_parser(sub) -> None:
    p = sub.add_parser("synth", help="write a shape-exact random-weight GGUF of a model of the plan",
                       description="Write a random-weight GGUF with a real model's shapes and quant mix.")
    p.add_argument("preset", nargs="?", help="preset name (see --list)")
    p.add_argument("-o", "--output", help="GGUF file to write")
    p.add_argument("--quant", default="Q4_K_M", help="Q4_K_M (default), Q4_0, Q8_0 or F16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--list", action="store_true", help="list the presets with their parameter counts")


def _inspect_parser(sub) -> None:
    p = sub.add_parser("inspect", help="print a GGUF file's model record (architecture, parameters, quant, sha256)")
    p.add_argument("gguf")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgebench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"edgebench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _bench_parser(sub)
    _pull_parser(sub)
    _synth_parser(sub)
    _inspect_parser(sub)
    return parser


def cmd_bench(args) -> int:
    import pandas as pd
    from tqdm import tqdm

    from .backends import REGISTRY, GenerationSettings, create_backend
    from .models import resolve_cli_model
    from .provenance import testbed_name
    from .records import RunWriter
    from .runner import no_token_note, run_benchmark, select_prompts
    from .stats import ratio_ci
    from .summary import format_table, summarise

    if not args.model:
        raise EdgebenchError("--model is required (a .gguf file, a model record .json, or an Ollama tag)")
    if not args.output:
        raise EdgebenchError("-o/--output is required (the Parquet file to write)")
    if args.runs < 1 or args.warmup < 0 or args.tokens < 1:
        raise EdgebenchError("--runs and --tokens must be at least 1, --warmup at least 0")
    if args.ctx < 1:
        raise EdgebenchError(f"--ctx must be at least 1 token, not {args.ctx}")
    if not args.temperature >= 0:  # also refuses NaN
        raise EdgebenchError(f"--temperature must be 0 (greedy) or more, not {args.temperature}")
    if not args.ollama_timeout > 0:
        raise EdgebenchError(f"--ollama-timeout must be a positive number of seconds, not {args.ollama_timeout}")
    for name in [args.backend] + ([args.baseline] if args.compare else []):
        if name not in REGISTRY:  # before the model is resolved: an unknown backend is not a missing model
            raise EdgebenchError(f"unknown backend {name!r}; choose one of {', '.join(sorted(REGISTRY))}")
    settings = GenerationSettings(max_new_tokens=args.tokens, temperature=args.temperature, seed=args.seed,
                                  num_ctx=args.ctx, prompt_format=args.prompt_format, ignore_eos=args.ignore_eos,
                                  threads=args.threads)
    prompts = select_prompts(args.prompt, PLAN_PROMPTS)
    backends = [args.backend] + ([args.baseline] if args.compare else [])
    if args.compare and args.baseline == args.backend:
        raise EdgebenchError("--compare needs a --baseline other than --backend")
    testbed = args.testbed or testbed_name()
    # Created first, so that an output that cannot be written fails before any measurement; each run is written
    # as it completes.
    with RunWriter(args.output) as writer:
        for name in backends:
            model_arg = args.ollama_model if (name == "ollama" and args.ollama_model) else args.model
            model = resolve_cli_model(model_arg, name)
            options = {"url": args.ollama_url, "timeout_s": args.ollama_timeout} if name == "ollama" else {}
            backend = create_backend(name, **options)
            total = len(prompts) * (args.runs + args.warmup)
            with tqdm(total=total, desc=f"{name} {model.name}", unit="run", disable=args.no_progress,
                      file=sys.stderr) as bar:
                def progress(row: dict) -> None:
                    writer.add(row)
                    bar.update(1)
                    if row["decode_tok_s"] == row["decode_tok_s"]:
                        bar.set_postfix_str(f"{row['prompt_id']} {row['decode_tok_s']:.1f} tok/s")
                run_benchmark(backend, model, prompts, settings, args.runs, args.warmup, testbed, progress)
        rows = writer.rows
    note = no_token_note(rows)
    if note:
        print(f"edgebench: warning: {note}", file=sys.stderr)
    runs = pd.DataFrame(rows)
    summary = summarise(runs)
    print(format_table(summary))
    if args.compare:
        timed = runs[~runs["is_warmup"]]
        a = timed[timed["backend"] == args.backend]["decode_tok_s"]
        b = timed[timed["backend"] == args.baseline]["decode_tok_s"]
        point, lo, hi = ratio_ci(a, b)
        print(f"\nspeedup of {args.backend} over {args.baseline} (mean decode tok/s, all prompts): "
              f"{point:.2f}x  (95% CI {lo:.2f}-{hi:.2f})")
    print(f"\nwrote {len(rows)} runs to {args.output}")
    return 0


def cmd_pull(args) -> int:
    from .atomic import write_json
    from .backends.ollama import OllamaClient, locate_blob
    from .models import record_for_gguf

    client = OllamaClient(args.ollama_url, timeout_s=args.ollama_timeout)
    client.pull(args.model)
    blob, digest = locate_blob(args.model)
    print(blob)
    if args.record:
        rec = record_for_gguf(args.model, blob, {"kind": "ollama", "tag": args.model}, sha256=digest)
        rec["ollama_tag"] = args.model
        rec["ollama_version"] = client.version()
        write_json(rec, args.record)
    return 0


def cmd_synth(args) -> int:
    from synthgguf import PRESETS, SyntheticModelError, parameter_count, write_synthetic

    if args.list:
        for name, preset in PRESETS.items():
            print(f"{name:14s} {parameter_count(preset) / 1e6:9.1f}M params  (published {preset.published / 1e6:.0f}M)")
        return 0
    if not args.preset or not args.output:
        raise EdgebenchError("give a preset and -o FILE.gguf (edgebench synth --list shows the presets)")
    try:
        write_synthetic(args.preset, args.output, quant=args.quant, seed=args.seed, progress=True)
    except SyntheticModelError as exc:
        raise EdgebenchError(str(exc)) from None
    print(args.output)
    return 0


def cmd_inspect(args) -> int:
    import json

    from .models import record_for_gguf
    from pathlib import Path

    print(json.dumps(record_for_gguf(Path(args.gguf).stem, args.gguf, {"kind": "path", "path": args.gguf}),
                     indent=2, default=str))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    from .scripting import Terminated, handle_sigterm

    args = build_parser().parse_args(argv)
    handler = {"bench": cmd_bench, "pull": cmd_pull, "synth": cmd_synth, "inspect": cmd_inspect}[args.command]
    handle_sigterm()  # SIGTERM (scancel, a time limit) is handled as Ctrl-C: the model is unloaded, nothing written
    try:
        return handler(args)
    except EdgebenchError as exc:
        print(f"edgebench: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("edgebench: terminated (SIGTERM); no output written", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("edgebench: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
