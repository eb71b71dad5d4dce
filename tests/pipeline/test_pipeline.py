"""The Snakemake pipeline end to end on the real SmolLM2 GGUF with llama.cpp (slow), and its DAG: the plan's, a
backend's build step, bad configs as one line, the lint, and the registry as the only place that names backends."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from edgebench import defaults

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def smk(workdir, *args, timeout=900):
    return subprocess.run([*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args],
                          capture_output=True, text=True, timeout=timeout)


def jobs_of(proc) -> dict:
    """Rule -> count from the 'Job stats' table of a dry run."""
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    counts = {}
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def test_plan_dag_builds_without_ollama(tmp_path):
    proc = smk(tmp_path, "-n", "all", "--configfile", str(ROOT / "config" / "plan.yaml"))
    assert proc.returncode == 0, proc.stderr
    jobs = jobs_of(proc)
    assert jobs["model_from_ollama"] == 10
    assert jobs["bench"] == 10 * 2 * 4  # models x backends (ollama, edgellm) x prompts


@pytest.mark.parametrize("device, builds", [("cuda", True), ("cpu", False)])
def test_edgellm_on_a_gpu_builds_the_kernels_before_its_benchmarks(tmp_path, tiny_gguf, device, builds):
    cfg = tmp_path / "gpu.yaml"
    cfg.write_text(yaml.safe_dump({"models": {"tiny": {"path": str(tiny_gguf)}}, "prompts": {"p": "Hello"},
                                   "backends": {"edgellm": {"device": device}}, "runs": 1, "warmup": 0}))
    proc = smk(tmp_path, "-n", "all", "--configfile", str(cfg))
    assert proc.returncode == 0, proc.stderr
    jobs = jobs_of(proc)
    assert jobs["bench"] == 1
    assert ("compile_kernels" in jobs) == builds


@pytest.mark.parametrize("change, message", [
    ({"runs": -3}, "config key runs: -3 is less than the minimum of 1"),
    ({"backends": {"llamacpp": {"device": "cpu"}}},
     "config key backends.llamacpp.device: the llamacpp backend takes no option 'device'"),
    ({"models": {"..": {"path": "/x.gguf"}}}, "config key models: '..' is not a usable name"),
    ({"testbed": ".."}, "config key testbed: '..' is not a usable name"),
    ({"kernels": {"nvcc": "true; touch /tmp/PWNED; false #"}}, "config key kernels.nvcc: "),
])
def test_bad_config_is_one_clear_error(tmp_path, change, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"models": {"m": {"path": "/x.gguf"}}, "backends": {"llamacpp": {}}, **change}))
    proc = smk(tmp_path, "-n", "--cores", "1", "--configfile", str(cfg))
    assert proc.returncode != 0
    assert f"invalid configuration: {message}" in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists() and not (tmp_path / "PWNED").exists()


def test_every_shell_value_is_quoted_so_a_checkout_path_with_a_space_builds(tmp_path, tiny_gguf):
    cfg = tmp_path / "gpu.yaml"
    cfg.write_text(yaml.safe_dump({"models": {"tiny": {"path": str(tiny_gguf)}}, "prompts": {"p": "Hello"},
                                   "backends": {"edgellm": {"device": "cuda"}},
                                   "kernels": {"nvcc": "/opt/cuda 13/bin/nvcc"}}))
    checkout = tmp_path / "a checkout"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    proc = subprocess.run([*SNAKEMAKE, "-n", "-p", "compile_kernels", "--configfile", str(cfg)], cwd=checkout,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(checkout / "src")})
    assert proc.returncode == 0, proc.stderr
    shell = next(line for line in (proc.stdout + proc.stderr).splitlines() if "make -C" in line)
    assert f"make -C '{checkout}/kernels'" in shell and f"BUILD='{checkout}/build'" in shell, shell
    assert "NVCC='/opt/cuda 13/bin/nvcc'" in shell


def test_kernel_tools_join_the_dag_only_when_asked(tmp_path, tiny_gguf):
    base = {"models": {"tiny": {"path": str(tiny_gguf)}}, "prompts": {"p": "Hello"},
            "backends": {"edgellm": {"device": "cuda"}}, "runs": 1, "warmup": 0}
    for run, expected in ((False, False), (True, True)):
        cfg = tmp_path / f"k{run}.yaml"
        cfg.write_text(yaml.safe_dump({**base, "kernels": {"run": run}}))
        proc = smk(tmp_path, "-n", "all", "--configfile", str(cfg))
        assert proc.returncode == 0, proc.stderr
        assert ("kernel_accuracy" in jobs_of(proc)) == expected
        assert ("prefill_gate" in jobs_of(proc)) == expected


def test_only_the_registry_and_the_adapter_name_the_engine():
    """The pipeline knows backends only through the registry: no engine branch in rules, scripts or schema."""
    proc = subprocess.run(["grep", "-rln", "edgellm", "workflow/", "src/edgebench", "Snakefile"], cwd=ROOT,
                          capture_output=True, text=True)
    hits = {path for path in proc.stdout.split() if "__pycache__" not in path}
    # cli.py's --backend help text still lists the names; it is to come from the registry as well.
    assert hits - {"src/edgebench/cli.py"} == {"src/edgebench/backends/__init__.py",
                                               "src/edgebench/backends/edgellm.py"}, hits


def test_lint_passes():
    proc = subprocess.run([*SNAKEMAKE, "--lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_pipeline_end_to_end_reruns_only_what_changed_and_reports(tmp_path, smollm2_gguf):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["models"] = {"smollm2-135m": {"path": str(smollm2_gguf), "label": "SmolLM2-135M"}}
    cfg["prompts"] = {k: defaults.PROMPTS[k] for k in ("minimal", "short")}
    cfg.update(runs=2, warmup=1, max_new_tokens=8, testbed="ci")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    args = ["--cores", "1", "--configfile", str(tmp_path / "config.yaml")]

    first = smk(tmp_path, "all", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    all_runs = pd.read_parquet(tmp_path / "results" / "ci" / "runs.parquet")
    runs = all_runs[all_runs["context_tokens"].isna()]
    assert len(runs) == len(cfg["backends"]) * 2 * 3 and set(runs["prompt_id"]) == {"minimal", "short"}
    # the quickstart's context sweep: every engine reported exactly the requested prompt length
    sweep = all_runs[all_runs["context_tokens"].notna()]
    assert len(sweep) == len(cfg["backends"]) * len(cfg["contexts"]) * 3
    assert (sweep["prompt_tokens"] == sweep["context_tokens"]).all() and not sweep["prompt_tokens_mismatch"].any()
    assert set(runs["backend"]) == set(cfg["backends"])
    assert runs["generated_tokens"].gt(0).all()
    crit = pd.read_parquet(tmp_path / "results" / "ci" / "criteria.parquet")
    assert list(crit["criterion"]) == [1, 2, 3, 4]
    # llama.cpp against EdgeLLM (the quickstart's baseline and engine): a verdict with its numbers.
    assert crit.loc[crit.criterion == 1, "status"].item() in ("PASS", "FAIL")
    assert crit.loc[crit.criterion == 1, "value"].item() > 0
    for fig in ("throughput_vs_size", "speedup", "latency_distribution", "ttft", "memory_vs_size",
                "energy_per_token", "edge_pareto", "context_ttft", "context_prefill", "context_decode", "context_speedup",
                "context_memory"):
        assert (tmp_path / "results" / "ci" / "figures" / f"{fig}.png").stat().st_size > 0
        assert (tmp_path / "results" / "ci" / "figures" / f"{fig}.pdf").stat().st_size > 0

    again = smk(tmp_path, "-n", "all", *args)
    assert "Nothing to be done" in again.stdout + again.stderr

    more_runs = smk(tmp_path, "-n", "all", "--config", "runs=3", *args)
    jobs = jobs_of(more_runs)
    # the benchmarks and what depends on them, not the model record
    assert jobs.get("bench") == len(cfg["backends"]) * 2 and "model_from_path" not in jobs

    # One more length, in a config file (--config would hand the list's items over as strings).
    (tmp_path / "longer.yaml").write_text(yaml.safe_dump({**cfg, "contexts": cfg["contexts"] + [2 * max(cfg["contexts"])]}))
    one_more_length = smk(tmp_path, "-n", "all", "--cores", "1", "--configfile", str(tmp_path / "longer.yaml"))
    jobs = jobs_of(one_more_length)
    assert jobs.get("bench_context") == len(cfg["backends"]) and "bench" not in jobs  # only the new length runs

    rep = smk(tmp_path, "--report", str(tmp_path / "report.html"), *args)
    assert rep.returncode == 0, rep.stderr[-3000:]
    html = (tmp_path / "report.html").read_text(errors="replace")
    assert len(html) > 100_000 and "throughput_vs_size.png" in html and "context_ttft.png" in html and "edge_pareto.png" in html
