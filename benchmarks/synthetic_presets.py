"""Write every synthetic preset, time it, and check that llama.cpp loads it and decodes 16 tokens with finite logits
(and that EdgeLLM loads the presets of the architectures it supports).

    python benchmarks/synthetic_presets.py [--presets a,b,...] [--dir DIR] [--out presets.csv]

llama.cpp offloads every layer to the GPU when its build has CUDA.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from synthgguf import PRESETS, write_synthetic


def check_llama_cpp(path: Path) -> tuple[bool, float]:
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=128, n_gpu_layers=-1, logits_all=True, verbose=False)
    llm.eval(llm.tokenize(b"Hello world", add_bos=False, special=True))
    finite = True
    t0 = time.perf_counter()
    for _ in range(16):
        logits = np.array(llm.scores[llm.n_tokens - 1])
        finite &= bool(np.isfinite(logits).all())
        llm.eval([int(logits.argmax())])
    dt = time.perf_counter() - t0
    llm.close()
    return finite, 16 / dt


def check_edgellm(path: Path) -> str:
    import edgellm
    from edgellm.errors import UnsupportedModelError

    try:
        engine = edgellm.load(path, device="cpu", max_context=64, quantized=True)
    except UnsupportedModelError as exc:
        return f"refused: {exc}"
    with engine:
        logits = engine.logits(engine.tokenizer.encode("Hello world"))
    return "finite logits" if np.isfinite(logits).all() else "NON-FINITE logits"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--dir", default=None, help="where to write the files (default: a temporary directory)")
    p.add_argument("--out", default=None, help="also write the table as CSV")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for name in args.presets.split(","):
            path = Path(tmp) / f"{name}.gguf"
            t0 = time.perf_counter()
            info = write_synthetic(name, path)
            write_s = time.perf_counter() - t0
            finite, tok_s = check_llama_cpp(path)
            rows.append({"preset": name, "parameters": info["parameter_count"],
                         "published": PRESETS[name].published, "file_gb": info["bytes"] / 1e9,
                         "write_s": round(write_s, 1), "llama_cpp_16_tokens_finite": finite,
                         "llama_cpp_tok_s": round(tok_s, 1), "edgellm": check_edgellm(path)})
            print(rows[-1], flush=True)
            path.unlink()
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)
    return 0 if table["llama_cpp_16_tokens_finite"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
