"""The kernel benchmark's figure: prefill TFLOP/s and decode KV-read bandwidth against sequence length."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from edgebench.plots import save


def kernel_attention(bench: pd.DataFrame, png, testbed: str) -> None:
    """Prefill TFLOP/s and decode KV-read bandwidth against sequence length: EdgeLLM's kernels, the naive
    three-pass attention, PyTorch SDPA where it was measured, and the card's copy bandwidth."""
    names = {"edgellm": "EdgeLLM FA2", "edgellm-tensorcores": "EdgeLLM decode on tensor cores",
             "naive": "naive (scores materialised)", "torch-sdpa-flash": "PyTorch SDPA (flash)",
             "torch-sdpa": "PyTorch SDPA"}
    fp16 = bench[(bench.dtype == "f16") & bench.impl.isin(list(names))].copy()
    fp16["implementation"] = fp16.impl.map(names)
    fp16["shape"] = fp16.apply(lambda r: f"d{r.head_dim}, {r.n_heads}/{r.n_kv_heads} heads", axis=1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    pre = fp16[fp16.kind == "prefill"]
    sns.lineplot(data=pre, x="seq_k", y="tflops", hue="implementation", style="shape", markers=True, ax=ax1)
    ax1.set(xscale="log", xlabel="sequence length (causal prefill, fp16)", ylabel="TFLOP/s",
            title="Prefill")
    dec = fp16[fp16.kind == "decode"]
    sns.lineplot(data=dec, x="seq_k", y="gbytes_s", hue="implementation", style="shape", markers=True, ax=ax2)
    copy = bench[bench.kind == "copy"]
    if len(copy):
        bw = float(copy.gbytes_s.iloc[0])
        ax2.axhline(bw, color="0.3", ls="--", lw=1)
        ax2.axhline(0.6 * bw, color="0.6", ls=":", lw=1)
        ax2.text(dec.seq_k.min(), bw, " device copy bandwidth (dotted: 60%)", va="bottom",
                 fontsize=8, color="0.3")
    ax2.set(xscale="log", xlabel="KV cache length (decode, 1 query, fp16 cache)", ylabel="KV read GB/s",
            title="Decode")
    if not bench.impl.str.startswith("torch").any():
        fig.text(0.5, -0.02, "PyTorch SDPA: NOT MEASURED (torch with CUDA absent on this testbed)", ha="center",
                 fontsize=9, color="0.35")
    fig.suptitle(f"Attention kernels on {testbed}")
    fig.tight_layout()
    save(fig, png)
