"""The context sweep in the DAG: one job per backend x model x length, its figures only when asked, bad lengths as
one line."""

import pytest
import yaml

from test_pipeline import jobs_of, smk


def _config(tmp_path, tiny_gguf, **extra):
    cfg = tmp_path / "ctx.yaml"
    cfg.write_text(yaml.safe_dump({"models": {"a": {"path": str(tiny_gguf)}, "b": {"path": str(tiny_gguf)}},
                                   "prompts": {"p": "Hello"}, "backends": {"llamacpp": {}, "edgellm": {}},
                                   "runs": 1, "warmup": 0, **extra}))
    return cfg


def test_each_length_is_one_job_per_backend_and_model_with_its_figures(tmp_path, tiny_gguf):
    proc = smk(tmp_path, "-n", "all", "--configfile", str(_config(tmp_path, tiny_gguf, contexts=[512, 2048])))
    assert proc.returncode == 0, proc.stderr
    jobs = jobs_of(proc)
    assert jobs["bench"] == 2 * 2 and jobs["bench_context"] == 2 * 2 * 2
    assert jobs["context_figures"] == 1 and jobs["context_table"] == 1
    assert "runs/edgellm/a/ctx2048.parquet" in proc.stdout


def test_without_contexts_there_is_no_sweep(tmp_path, tiny_gguf):
    proc = smk(tmp_path, "-n", "all", "--configfile", str(_config(tmp_path, tiny_gguf)))
    assert proc.returncode == 0, proc.stderr
    jobs = jobs_of(proc)
    assert "bench_context" not in jobs and "context_figures" not in jobs and "context_table" not in jobs


@pytest.mark.parametrize("change, message", [
    ({"contexts": [0]}, "config key contexts.0: 0 is less than the minimum of 1"),
    ({"contexts": [512, "x"]}, "config key contexts.1: 'x' is not of type 'integer'"),
    ({"contexts": [512, 512]}, "config key contexts: [512, 512] has non-unique elements"),
    ({"prompts": {"ctx512": "Hello"}}, "config key prompts: 'ctx512' is not a usable prompt name"),
])
def test_bad_contexts_are_one_clear_error(tmp_path, tiny_gguf, change, message):
    proc = smk(tmp_path, "-n", "--configfile", str(_config(tmp_path, tiny_gguf, **change)))
    assert proc.returncode != 0
    assert f"invalid configuration: {message}" in proc.stderr + proc.stdout
