"""The concurrency sweep in the DAG: one job per backend x model x number of clients (in-process engines: 1 only),
its statistics, table and figures only when asked, bad numbers as one line; and its rules end to end against the
Ollama stand-in's OpenAI-compatible endpoints."""

import pandas as pd
import pytest
import yaml

from fake_ollama import FakeOllama, Script
from test_pipeline import jobs_of, smk


def _config(tmp_path, tiny_gguf, backends=None, **extra):
    cfg = tmp_path / "conc.yaml"
    cfg.write_text(yaml.safe_dump({"models": {"a": {"path": str(tiny_gguf)}, "b": {"path": str(tiny_gguf)}},
                                   "prompts": {"p": "Hello", "q": "Hi"}, "testbed": "t",
                                   "backends": backends or {"llamacpp": {}, "openai": {"url": "http://127.0.0.1:9"}},
                                   "runs": 2, "warmup": 1, **extra}))
    return cfg


def test_server_backends_run_every_number_and_in_process_engines_one(tmp_path, tiny_gguf):
    proc = smk(tmp_path, "-n", "all", "--configfile", str(_config(tmp_path, tiny_gguf, concurrency=[1, 2, 4, 8])))
    assert proc.returncode == 0, proc.stderr
    jobs = jobs_of(proc)
    assert jobs["bench_concurrency"] == 2 * 1 + 2 * 4  # llamacpp: N = 1 per model; openai: 4 numbers per model
    assert jobs["concurrency_summary"] == 1 and jobs["concurrency_figures"] == 1
    assert "concurrency/openai/b/c8.parquet" in proc.stdout and "concurrency/llamacpp/a/c2" not in proc.stdout


def test_without_concurrency_there_is_no_sweep(tmp_path, tiny_gguf):
    proc = smk(tmp_path, "-n", "all", "--configfile", str(_config(tmp_path, tiny_gguf)))
    assert proc.returncode == 0, proc.stderr
    assert not {"bench_concurrency", "concurrency_summary", "concurrency_figures"} & set(jobs_of(proc))


@pytest.mark.parametrize("change, message", [
    ({"concurrency": [0]}, "config key concurrency.0: 0 is less than the minimum of 1"),
    ({"concurrency": [2, 2]}, "config key concurrency: [2, 2] has non-unique elements"),
    ({"concurrency": [1], "concurrency_prompt": "zz"}, "config key concurrency_prompt: 'zz' is not one of the prompts"),
    ({"goodput_limits": {"chat": {"ttft_ms": 100}}}, "config key goodput_limits.chat: 'tpot_ms' is a required"),
])
def test_bad_concurrency_settings_are_one_clear_error(tmp_path, tiny_gguf, change, message):
    proc = smk(tmp_path, "-n", "--configfile", str(_config(tmp_path, tiny_gguf, **change)))
    assert proc.returncode != 0
    assert f"invalid configuration: {message}" in proc.stderr + proc.stdout


@pytest.mark.slow
def test_the_sweep_rules_end_to_end_against_a_server(tmp_path, tiny_gguf):
    with FakeOllama(Script(ttft_s=0.02, itl_s=[0.005] * 5)) as server:
        cfg = _config(tmp_path, tiny_gguf, backends={"openai": {"url": server.url + "/v1", "model": "smollm:135m"}},
                      concurrency=[1, 4], max_new_tokens=6, concurrency_prompt="q",
                      goodput_limits={"tight": {"ttft_ms": 1.0, "tpot_ms": 1.0}, "loose": {"ttft_ms": 1e4,
                                                                                            "tpot_ms": 1e3}})
        targets = ["results/t/concurrency.parquet", "results/t/figures/concurrency_throughput.png",
                   "results/t/figures/concurrency_latency.png"]
        proc = smk(tmp_path, "--cores", "1", *targets, "--configfile", str(cfg))
        prompts = {body["prompt"] for path, body in server.requests if path == "/v1/completions"}
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert prompts == {"Hi"}
    summary = pd.read_parquet(tmp_path / "results/t/concurrency.parquet").sort_values(["model", "concurrency"])
    assert summary["concurrency"].tolist() == [1, 4, 1, 4] and summary["requests"].tolist() == [2, 8, 2, 8]
    assert (summary["goodput_tight"] == 0).all() and (summary["goodput_loose"] == 1).all()
    assert (summary["output_tok_s"] > 0).all() and not summary["in_process"].any()
    table = (tmp_path / "results/t/tables/concurrency.csv").read_text()
    assert "goodput tight" in table and (tmp_path / "results/t/figures/concurrency_latency.pdf").is_file()
