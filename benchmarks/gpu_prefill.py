"""Prompt processing, llama-bench style: EdgeLLM's CUDA prefill against llama.cpp (CUDA build, every layer on the GPU,
flash attention on) on the same GGUF files, on the same GPU, through the harness.

    python benchmarks/gpu_prefill.py [--models llama3.2-1b,llama3.2-3b,llama3.1-8b] [--lengths 512,1024,...]
                                     [--runs 3] [--new-tokens 128] [--dir models/synthetic] [--out prefill.csv]

The files are shape-exact random-weight models (synthgguf) in the quant type of each model's Ollama tag. For each
prompt length N the prompt is a text that the file's own tokenizer turns into exactly N tokens (checked against the
prompt token count each engine reports). Each engine answers it through edgebench's run_benchmark with N prompt
tokens and --new-tokens greedy tokens: TTFT (prefill and the first token, as the harness sees it), prompt tok/s =
N / TTFT, median of --runs; the decode rate of the tokens that follow each prompt (decode at that depth); the
1024-token prompt's whole request (TTFT + decode) is the end-to-end row. The achieved
matrix TFLOP/s is the prompt's matrix-product work (2 x N x the weights the prompt multiplies, attention left out)
over TTFT: a lower bound on the prefill GEMMs' rate, printed also as a share of the card's dense fp16 tensor-core
peak (with fp32 accumulation, as the GEMMs sum) from its datasheet, for the cards named in DENSE_FP16_PEAK_TFLOPS;
another card's share is reported as missing. Lengths that with --new-tokens exceed a model's context are skipped
with a note. With a CUDA build of llama.cpp, preload its library as the README says (LD_PRELOAD): this script
imports numpy before llama.cpp loads a model, the case in which such a build can crash.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from edgebench import EdgebenchError
from edgebench.backends import GenerationSettings, ModelRef, create_backend
from edgebench.models import record_for_gguf
from edgebench.runner import run_benchmark
from edgellm.errors import EdgeLLMError
from edgellm.gguf import Tokenizer, open_gguf
from edgellm.gguf.config import read_config
from gpu_decode import at_least
from synthgguf import write_synthetic

MODELS = {"llama3.2-1b": "Q8_0", "llama3.2-3b": "Q4_K_M", "llama3.1-8b": "Q4_K_M"}  # each Ollama tag's quant type
DEFAULT_LENGTHS = "512,1024,4096,8192,16384,32768"
E2E_PROMPT = 1024
ENGINES = {"edgellm": {"device": "cuda"}, "llamacpp": {}}
WARMUP_ID = "warmup"
# Words of a fixed text; a prompt is as many of them as fit N tokens, then a short filler for the rest.
WORDS = ("the history of computing is a story of machines that grew smaller faster and cheaper while the problems "
         "they were asked to solve grew larger early calculators filled rooms and used vacuum tubes transistors and "
         "then integrated circuits put millions and later billions of switches on one chip software followed the "
         "same path from machine code to compilers operating systems and networks").split()
FILLERS = (",", ".", ";", " is", " a", " of", " and", " on", " the", " one")


# Dense fp16 tensor-core TFLOP/s with fp32 accumulation, from each card's datasheet, by whole words of the name NVML
# gives it; the first match wins (so the PCIe and NVL parts before the SXM parts' plain "H100" and "H200").
DENSE_FP16_PEAK_TFLOPS = (
    ("H200 NVL", 835.5), ("H200", 989.4), ("H100 PCIe", 756.5), ("H100 NVL", 835.5), ("H100", 989.4),
    ("A100", 312.0), ("L4", 121.0), ("RTX 4090", 165.2), ("T4", 65.0),
)


def dense_fp16_peak(gpu_name: str) -> float | None:
    """The card's datasheet dense fp16 tensor-core peak in TFLOP/s, or None for a card not in the table (whole words:
    an L40S is not an L4, an RTX A1000 not an A100)."""
    for part, tflops in DENSE_FP16_PEAK_TFLOPS:
        if re.search(rf"\b{re.escape(part)}\b", gpu_name):
            return tflops
    return None


def token_count(tokenizer: Tokenizer, text: str, base: int) -> int:
    return len(tokenizer.encode(text)) - base


def exact_prompt(tokenizer: Tokenizer, n: int) -> str:
    """A text of exactly n tokens in this tokenizer (BOS included where the file adds one). Each word starts with a
    space, so byte-level BPE splits before it and the count of the text is the sum of its words' counts."""
    base = len(tokenizer.encode(""))
    cost = {w: token_count(tokenizer, " " + w, base) for w in set(WORDS)}
    pieces, count, i = [], base, 0
    while count + cost[WORDS[i % len(WORDS)]] <= n:
        pieces.append(" " + WORDS[i % len(WORDS)])
        count += cost[WORDS[i % len(WORDS)]]
        i += 1
    rest = n - count
    if rest:
        # One or two fillers of `rest` tokens in all, their count taken after a word (as they will stand).
        after = " " + WORDS[0]
        extra = {f: len(tokenizer.encode(after + f)) - len(tokenizer.encode(after)) for f in FILLERS}
        choice = next((f for f in FILLERS if extra[f] == rest), None)
        choice = choice or next((a + b for a in FILLERS for b in FILLERS
                                 if len(tokenizer.encode(after + a + b)) - len(tokenizer.encode(after)) == rest), None)
        if choice is None:
            raise EdgebenchError(f"cannot make a prompt of exactly {n} tokens in this tokenizer")
        pieces.append(choice)
    text = "".join(pieces)
    if len(tokenizer.encode(text)) != n:
        raise EdgebenchError(f"the prompt made for {n} tokens has {len(tokenizer.encode(text))}")
    return text


def matrix_flops_per_token(path: Path) -> float:
    """2 x the weights one prompt token multiplies: every layer's projections and FFN (the LM head runs on the last
    position only)."""
    c = read_config(open_gguf(path))
    q, kv = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    per_layer = c.dim * (q + 2 * kv) + q * c.dim + 3 * c.dim * c.hidden_dim
    return 2.0 * c.n_layers * per_layer


def int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EdgebenchError(f"--{what} takes comma-separated integers, not {text!r}") from None
    if not values or min(values) < 1:
        raise EdgebenchError(f"--{what} takes positive integers, not {text!r}")
    return sorted(set(values))


def model_file(preset: str, quant: str, folder: Path) -> Path:
    path = folder / f"{preset}-{quant}.gguf"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"writing {path} ...", flush=True)
        write_synthetic(preset, path, quant=quant)
    return path


def run_model(preset: str, quant: str, args, lengths: list[int], backends: list[str]) -> list[dict]:
    path = model_file(preset, quant, Path(args.dir))
    reader = open_gguf(path)
    tokenizer, context = Tokenizer.from_gguf(reader), read_config(reader).context_length
    fitting = [n for n in lengths if n + args.new_tokens <= context]
    for n in sorted(set(lengths) - set(fitting)):
        print(f"note: {preset}: {n} prompt + {args.new_tokens} new tokens exceed its context of {context}: skipped")
    wanted = sorted(set(fitting) | ({E2E_PROMPT} if E2E_PROMPT + args.new_tokens <= context else set()))
    if not wanted:
        return []
    # A short prompt first takes each engine's first-call costs (work buffers, graph capture); its rows are dropped.
    prompts = {WARMUP_ID: exact_prompt(tokenizer, min(wanted))}
    prompts.update({f"pp{n}": exact_prompt(tokenizer, n) for n in wanted})
    lengths_of = {f"pp{n}": n for n in wanted}
    settings = GenerationSettings(max_new_tokens=args.new_tokens, ignore_eos=True, prompt_format="raw",
                                  num_ctx=max(wanted) + args.new_tokens)
    model = ModelRef(name=preset, gguf_path=str(path),
                     info=record_for_gguf(preset, str(path), {"kind": "synthetic"}, with_sha256=False))
    flops = matrix_flops_per_token(path)
    rows = []
    for name in backends:
        runs = run_benchmark(create_backend(name, **ENGINES[name]), model, prompts, settings, args.runs, 0)
        for r in runs:
            if r["prompt_id"] == WARMUP_ID:
                continue
            n = lengths_of[r["prompt_id"]]
            if r["prompt_tokens"] != n:
                raise EdgebenchError(f"{name} counted {r['prompt_tokens']} tokens in the {n}-token prompt of {preset}")
            rows.append({**r, "preset": preset, "quant": quant, "n_prompt": n, "in_sweep": n in fitting,
                         "matrix_tflop_s": flops * n / (r["ttft_ms"] * 1e-3) / 1e12})
        done = [r for r in rows if r["backend"] == name]
        summary = pd.DataFrame(done).groupby("n_prompt").ttft_ms.median()
        print(f"{preset:<12} {name:<9} median TTFT ms " +
              " ".join(f"{n}:{v:.1f}" for n, v in summary.items()), flush=True)
    return rows


def report(df: pd.DataFrame, backends: list[str]) -> None:
    sweep = df[df.in_sweep]
    med = sweep.groupby(["preset", "quant", "n_prompt", "backend"], sort=False).agg(
        ttft_ms=("ttft_ms", "median"), runs=("run_index", "count"), tflop_s=("matrix_tflop_s", "median"))
    med["pp_tok_s"] = med.index.get_level_values("n_prompt") / (med.ttft_ms * 1e-3)
    wide = med.unstack("backend")
    table = pd.DataFrame(index=wide.index)
    gpu = str(df["gpu_name"].iloc[0])
    peak = dense_fp16_peak(gpu)
    for b in backends:
        table[f"{b} pp tok/s"] = wide["pp_tok_s"][b]
        table[f"{b} TTFT ms"] = wide["ttft_ms"][b]
        table[f"{b} matrix TFLOP/s"] = wide["tflop_s"][b]
        if peak:
            table[f"{b} % of peak"] = 100 * wide["tflop_s"][b] / peak
    if set(ENGINES) <= set(backends):
        table["EdgeLLM speed-up"] = wide["ttft_ms"]["llamacpp"] / wide["ttft_ms"]["edgellm"]
    table.index = [f"{p} {q} pp{n}" for p, q, n in table.index]
    runs = int(med.runs.min())
    print(f"\ngpu: {gpu}   prompt processing through the harness, median of {runs} runs "
          f"(speed-up: llama.cpp TTFT / EdgeLLM TTFT)")
    print(f"dense fp16 tensor-core peak (datasheet, fp32 accumulation): {peak:.1f} TFLOP/s" if peak else
          "dense fp16 tensor-core peak: missing (this card is not in DENSE_FP16_PEAK_TFLOPS)")
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    decode = sweep.groupby(["preset", "quant", "n_prompt", "backend"], sort=False).agg(
        decode_tok_s=("decode_tok_s", "median"), itl_p50_ms=("itl_p50_ms", "median"),
        itl_p99_ms=("itl_p99_ms", "median")).unstack("backend")
    table = pd.DataFrame(index=decode.index)
    for b in backends:
        table[f"{b} decode tok/s"] = decode["decode_tok_s"][b]
        table[f"{b} ITL p99/p50"] = decode["itl_p99_ms"][b] / decode["itl_p50_ms"][b]
    if set(ENGINES) <= set(backends):
        table["EdgeLLM / llama.cpp"] = decode["decode_tok_s"]["edgellm"] / decode["decode_tok_s"]["llamacpp"]
    table.index = [f"{p} {q} after {n}" for p, q, n in table.index]
    print(f"\ndecode at depth: the {int(df['generated_tokens'].iloc[0])} tokens generated after each prompt "
          f"(context {int(df['setting_num_ctx'].iloc[0])} for every length)")
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))
    e2e = df[df.n_prompt == E2E_PROMPT].groupby(["preset", "backend"], sort=False).agg(
        ttft_ms=("ttft_ms", "median"), e2e_ms=("e2e_ms", "median"), decode_tok_s=("decode_tok_s", "median"))
    if e2e.empty:
        return
    tokens = int(df["generated_tokens"].iloc[0])
    print(f"\nend to end: a {E2E_PROMPT}-token prompt and {tokens} new tokens in one request (TTFT + decode)")
    wide = e2e.unstack("backend")
    table = pd.DataFrame(index=wide.index)
    for b in backends:
        table[f"{b} e2e ms"] = wide["e2e_ms"][b]
        table[f"{b} TTFT ms"] = wide["ttft_ms"][b]
        table[f"{b} decode tok/s"] = wide["decode_tok_s"][b]
    if set(ENGINES) <= set(backends):
        table["EdgeLLM speed-up"] = wide["e2e_ms"]["llamacpp"] / wide["e2e_ms"]["edgellm"]
    table.index.name = None
    print(table.to_string(float_format=lambda v: f"{v:.2f}"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help=f"a subset of {', '.join(MODELS)}")
    p.add_argument("--lengths", default=DEFAULT_LENGTHS, help="prompt lengths in tokens")
    p.add_argument("--runs", type=at_least(1), default=3)
    p.add_argument("--new-tokens", type=at_least(1), default=128, help="greedy tokens after each prompt")
    p.add_argument("--dir", default="models/synthetic", help="where the synthetic GGUF files are kept")
    p.add_argument("--backends", default="edgellm,llamacpp", help="which engines to run (both by default)")
    p.add_argument("--out", help="also write every timed run's row here (CSV)")
    args = p.parse_args()
    try:
        lengths = int_list(args.lengths, "lengths")
        models = [m for m in args.models.split(",") if m]
        unknown = [m for m in models if m not in MODELS] or ([] if models else ["(none)"])
        if unknown:
            raise EdgebenchError(f"unknown model {unknown[0]!r}: choose from {', '.join(MODELS)}")
        backends = [b for b in args.backends.split(",") if b]
        unknown = [b for b in backends if b not in ENGINES] or ([] if backends else ["(none)"])
        if unknown:
            raise EdgebenchError(f"unknown backend {unknown[0]!r}: choose from {', '.join(ENGINES)}")
        rows = []
        for preset in models:
            rows += run_model(preset, MODELS[preset], args, lengths, backends)
    except (EdgebenchError, EdgeLLMError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print("error: no prompt length fits any model's context", file=sys.stderr)
        return 2
    df = pd.DataFrame(rows)
    if args.out:
        tmp = Path(args.out).with_suffix(".partial")
        df.to_csv(tmp, index=False)
        tmp.replace(args.out)  # whole or not at all
    report(df, backends)
    return 0


if __name__ == "__main__":
    sys.exit(main())
