"""The context sweep's summary rows, table and figures from run rows (no engine needed)."""

import pandas as pd

from edgebench import context_figures as cf
from edgebench.summary import summarise


def _runs():
    rows = []
    for backend, scale in (("llamacpp", 1.0), ("edgellm", 2.0)):
        for prompt, tokens in (("short", None), ("ctx64", 64), ("ctx256", 256)):
            for i in range(3):
                n = tokens or 5
                rows.append({"testbed": "t", "backend": backend, "model": "m", "prompt_id": prompt, "is_warmup": False,
                             "context_tokens": tokens, "prompt_tokens": n,
                             # one edgellm run at 256 reports another length: flagged, left out of the figures
                             "prompt_tokens_mismatch": (None if tokens is None else
                                                        backend == "edgellm" and tokens == 256 and i == 0),
                             "synthetic": False, "parameter_count": 1e8, "setting_num_ctx": 2048,
                             "ttft_ms": n / scale + i, "prefill_tok_s": scale * 100 + i, "decode_tok_s": scale * 50 + i,
                             "e2e_ms": 100.0, "itl_ms": [10.0, 11.0], "itl_p50_ms": 10.5, "itl_p99_ms": 11.0,
                             "generated_tokens": 3, "done_reason": "length", "gpu_mem_peak_mb": None,
                             "host_rss_peak_mb": 100.0 + n, "gpu_energy_j_per_token": None})
    return pd.DataFrame(rows)


def test_summary_keeps_one_row_per_length_and_pools_only_named_prompts():
    s = summarise(_runs())
    pooled = s[s["prompt_id"] == "all"]
    assert (pooled["runs"] == 3).all()  # the 'short' runs only
    ctx = s[s["prompt_id"] == "ctx256"].set_index("backend")
    assert ctx.loc["edgellm", "context_tokens"] == 256 and ctx.loc["edgellm", "prompt_tokens_mismatches"] == 1


def test_context_table_counts_flagged_runs_and_leaves_them_out_of_the_means():
    t = cf.context_table(_runs()).set_index(["backend", "context_tokens"])
    assert t.loc[("edgellm", 256), "runs_prompt_mismatch"] == 1 and t.loc[("llamacpp", 256), "runs_prompt_mismatch"] == 0
    assert t.loc[("edgellm", 256), "decode_tok_s_mean"] == 101.5  # runs 1 and 2 only


def test_speedup_per_length_has_a_confidence_interval():
    sp = cf.speedup_table(_runs(), "llamacpp").set_index("context_tokens")
    assert sp.loc[64, "decode_tok_s_speedup"] > 1.9 and sp.loc[64, "decode_tok_s_speedup_ci95_lo"] > 1.5


def test_every_context_figure_is_written(tmp_path):
    runs = _runs()
    cf.ttft_vs_length(runs, tmp_path / "ttft.png", "t")
    cf.prefill_vs_length(runs, tmp_path / "prefill.png", "t")
    cf.decode_vs_depth(runs, tmp_path / "decode.png", "t")
    cf.speedup_vs_length(runs, "llamacpp", tmp_path / "speedup.png", "t")
    cf.memory_vs_length(runs, tmp_path / "memory.png", "t")
    for name in ("ttft", "prefill", "decode", "speedup", "memory"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0 and (tmp_path / f"{name}.pdf").stat().st_size > 0
