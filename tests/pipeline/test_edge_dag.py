"""The edge recommendation in the DAG: its jobs come with a context sweep, and a bad `edge` section is one line."""

import pytest
import yaml

from test_pipeline import jobs_of, smk


def _config(tmp_path, tiny_gguf, **extra):
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(yaml.safe_dump({"models": {"a": {"path": str(tiny_gguf)}}, "prompts": {"p": "Hello"},
                                   "backends": {"llamacpp": {}}, "runs": 1, "warmup": 0, **extra}))
    return cfg


def test_a_sweep_brings_the_edge_table_and_figure(tmp_path, tiny_gguf):
    cfg = _config(tmp_path, tiny_gguf, contexts=[64, 256], edge={"profiles": {"pi": {"memory_gib": 2}}})
    proc = smk(tmp_path, "-n", "all", "--configfile", str(cfg))
    assert proc.returncode == 0, proc.stderr
    jobs = jobs_of(proc)
    assert jobs["edge_analysis"] == 1 and jobs["edge_table"] == 1 and jobs["edge_figure"] == 1
    assert "tables/edge.tex" in proc.stdout and "figures/edge_pareto.png" in proc.stdout


def test_without_a_sweep_there_is_no_edge_table(tmp_path, tiny_gguf):
    proc = smk(tmp_path, "-n", "all", "--configfile", str(_config(tmp_path, tiny_gguf)))
    assert proc.returncode == 0, proc.stderr
    assert not {"edge_analysis", "edge_table", "edge_figure"} & set(jobs_of(proc))


@pytest.mark.parametrize("change, message", [
    ({"contexts": [64], "edge": {"context": 128}}, "config key edge.context: 128 is not one of the swept contexts"),
    ({"edge": {"context": 128}}, "config key edge: the edge recommendation needs a context sweep"),
    ({"contexts": [64], "edge": {"profiles": {"pi": {"memory_gib": -1}}}}, "config key edge.profiles.pi.memory_gib"),
    ({"contexts": [64], "edge": {"targets": {"min_tok_s": 5}}}, "config key edge.targets"),
])
def test_a_bad_edge_section_is_one_clear_error(tmp_path, tiny_gguf, change, message):
    proc = smk(tmp_path, "-n", "--configfile", str(_config(tmp_path, tiny_gguf, **change)))
    assert proc.returncode != 0
    assert f"invalid configuration: {message}" in proc.stderr + proc.stdout
