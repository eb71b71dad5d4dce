"""The Kaggle and Colab notebooks: their cells (fast, here), and the notebooks as CI executed them on the CPU path.

CI (`make notebooks-cpu` in .ci/run) executes both notebooks with papermill and `CPU_ONLY=True`, keeps them with
their outputs in build/notebooks, and runs this file with EDGEBENCH_NOTEBOOKS pointing there; without that variable
the tests of executed notebooks skip, saying so.
"""

import base64
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from edgebench import notebook
from edgebench.notebook import SKIPPED_ON_CPU, STEPS, CellError, Gpu, Notebook

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ("kaggle", "colab")
T4 = "Tesla T4, 15360, 7.5\nTesla T4, 15360, 7.5\n"  # Kaggle's two cards, as nvidia-smi lists them


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def text(cell: dict) -> str:
    return "".join(cell["source"])


# --- the committed notebooks --------------------------------------------------------------------------------------

def test_notebooks_are_what_the_generator_writes():
    done = subprocess.run([sys.executable, str(ROOT / "notebooks" / "build_notebooks.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_come_first_and_are_tagged_for_papermill(name):
    first = load(ROOT / "notebooks" / f"{name}.ipynb")["cells"][0]
    assert first["metadata"]["tags"] == ["parameters"]
    for parameter in ("CPU_ONLY = False", "CONFIG = None", "MODELS = None", "RUNS = None", "REPO_DIR =", "ZIP_PATH ="):
        assert parameter in text(first)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_step_is_one_cell_in_order_and_says_how_long(name):
    nb = load(ROOT / "notebooks" / f"{name}.ipynb")
    calls = [text(c).splitlines()[-1] for c in code_cells(nb)[2:]]
    assert calls == [f'nb.cell("{step}")' for step in STEPS]
    for cell in code_cells(nb)[2:]:
        step = cell["id"]
        assert " ".join(STEPS[step][1].split()) in " ".join(text(cell).replace("# ", "").split())
        assert ("Skipped on the CPU path" in text(cell)) == (step in SKIPPED_ON_CPU)


# --- the steps ------------------------------------------------------------------------------------------------------

def test_nvidia_smi_answer_gives_the_first_card_and_its_cuda_arch():
    gpu = notebook.parse_nvidia_smi(T4)
    assert gpu == Gpu("Tesla T4", 15360, "7.5") and gpu.cuda_arch == "75"
    with pytest.raises(ValueError, match="unexpected nvidia-smi"):
        notebook.parse_nvidia_smi("No devices were found")


def test_a_t4_gets_tiers_1_and_2_and_an_a100_the_whole_plan():
    plan = list(yaml.safe_load((ROOT / "config" / "plan.yaml").read_text())["models"])
    assert set(notebook.TIER_1_2) <= set(plan)
    t4 = notebook.models_for(Gpu("Tesla T4", 15360, "7.5"), plan)
    assert t4 == [m for m in plan if m in notebook.TIER_1_2] and "llama3.1-8b" not in t4
    assert notebook.models_for(Gpu("NVIDIA A100-SXM4-40GB", 40960, "8.0"), plan) == plan


def repo_copy(tmp_path: Path) -> Path:
    (tmp_path / "config").mkdir()
    for name in ("config.yaml", "plan.yaml"):
        (tmp_path / "config" / name).write_text((ROOT / "config" / name).read_text())
    return tmp_path


def test_cpu_path_runs_the_quickstart_config_as_it_is(tmp_path):
    nb = Notebook("colab", repo_copy(tmp_path), cpu_only=True)
    nb.cell("choose-config")
    # The very file: in CI the quickstart already ran on it, so the pipeline cell finds nothing to do.
    assert nb.pipeline_config == tmp_path / "config" / "config.yaml"


def test_on_a_t4_the_plan_is_cut_to_tiers_1_and_2(tmp_path):
    nb = Notebook("kaggle", repo_copy(tmp_path), cpu_only=False, runs=3)
    nb.gpu = Gpu("Tesla T4", 15360, "7.5")
    nb.cell("choose-config")
    written = yaml.safe_load(nb.pipeline_config.read_text())
    assert list(written["models"]) == [m for m in notebook.TIER_1_2] and written["runs"] == 3
    assert written["backends"] == yaml.safe_load((ROOT / "config" / "plan.yaml").read_text())["backends"]


def test_a_config_other_than_the_plan_runs_as_written_on_any_card(tmp_path):
    nb = Notebook("kaggle", repo_copy(tmp_path), cpu_only=False, config="config/config.yaml")
    nb.gpu = Gpu("Tesla T4", 15360, "7.5")
    nb.cell("choose-config")
    assert nb.pipeline_config == tmp_path / "config" / "config.yaml"


@pytest.mark.parametrize("backends, rules", [(None, ["compile_kernels"]), ({"llamacpp": {}}, [])])
def test_kernel_cell_builds_the_steps_the_configs_engines_declare(tmp_path, backends, rules):
    nb = Notebook("colab", ROOT, cpu_only=False)
    nb.bin = Path(sys.executable).parent  # this environment's Python and Snakemake
    nb.pipeline_config = ROOT / "config" / "plan.yaml"
    if backends is not None:  # the plan without the engines that have a build step
        nb.pipeline_config = tmp_path / "config.yaml"
        nb.pipeline_config.write_text(yaml.safe_dump({"backends": backends}))
    calls = []
    nb.sh = lambda cell, argv, **kw: calls.append(argv)
    nb.cell("build-kernels")
    assert [argv[1:len(rules) + 1] for argv in calls] == ([rules] if rules else [])
    assert all(argv[-2:] == ["--configfile", str(nb.pipeline_config)] for argv in calls)


def test_unknown_model_is_one_line_naming_the_cell(tmp_path):
    nb = Notebook("colab", repo_copy(tmp_path), cpu_only=True, models=["nonesuch"])
    with pytest.raises(CellError) as error:
        nb.cell("choose-config")
    (line,) = error.value._render_traceback_()
    assert line.startswith("cell 'choose-config' failed: nonesuch not in config/config.yaml")


def test_any_failure_of_a_step_is_one_line_and_skipped_steps_never_run(tmp_path, monkeypatch):
    def boom():
        raise RuntimeError("first line\nsecond line")

    nb = Notebook("colab", tmp_path, cpu_only=False)
    monkeypatch.setattr(nb, "step_start_ollama", boom)
    with pytest.raises(CellError) as error:
        nb.cell("start-ollama")
    assert error.value._render_traceback_() == ["cell 'start-ollama' failed: RuntimeError: first line"]
    nb.cpu_only = True
    nb.cell("start-ollama")  # skipped: boom is never called


def fake_tool(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_find_gpu_reads_nvidia_smi_and_needs_nvcc(tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    nb = Notebook("kaggle", tmp_path, cpu_only=False)
    nb.env["PATH"] = str(tools)
    with pytest.raises(CellError, match="no NVIDIA GPU"):
        nb.cell("find-gpu")
    fake_tool(tools, "nvidia-smi", f"printf '{T4}'")
    fake_tool(tools, "nvcc", "exit 0")
    nb.cell("find-gpu")
    assert nb.gpu == Gpu("Tesla T4", 15360, "7.5")


def test_a_python_without_ensurepip_is_one_line_where_apt_cannot_help(tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    fake_tool(tools, "python3", 'case "$2" in *ensurepip*) exit 1;; esac; echo 3.12')
    nb = Notebook("colab", tmp_path, cpu_only=True)
    nb.env["PATH"] = str(tools)  # no apt-get, no make
    with pytest.raises(CellError) as error:
        nb.cell("setup")
    assert error.value._render_traceback_() == [
        "cell 'setup' failed: python3 cannot make a virtual environment (no ensurepip): install python3.12-venv"]


def test_a_server_that_dies_at_start_is_its_last_log_line(tmp_path, monkeypatch):
    tools = tmp_path / "bin"
    tools.mkdir()
    fake_tool(tools, "ollama", "echo 'Error: listen tcp 127.0.0.1:11434: bind: address in use'; exit 1")
    nb = Notebook("colab", tmp_path, cpu_only=False)
    nb.env["PATH"] = f"{tools}:{nb.env['PATH']}"
    monkeypatch.setattr(Notebook, "ollama_version", staticmethod(lambda: None))
    with pytest.raises(CellError) as error:
        nb.cell("start-ollama")
    assert error.value._render_traceback_() == [
        "cell 'start-ollama' failed: ollama serve exited 1: Error: listen tcp 127.0.0.1:11434: bind: address in use"]


def test_a_failed_pipeline_is_named_by_its_rules_and_their_logs():
    output = ["12 of 20 steps (60%) done\n", "Error in rule context_figures:\n", "    message: None\n",
              "    log: results/logs/cpu-2c/context_figures.log (check log file(s) for error details)\n",
              "Error in rule tables:\n", "WorkflowError:\n", "At least one job did not complete successfully.\n"]
    assert notebook.failed_rules(output) == (
        "rule context_figures (log: results/logs/cpu-2c/context_figures.log), tables failed")
    assert notebook.failed_rules(output[:1]) is None


def test_the_pipeline_never_inherits_the_kernels_matplotlib_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    assert "MPLBACKEND" not in Notebook("colab", tmp_path, cpu_only=True).env


def test_the_zip_holds_the_results_but_not_the_model_weights(tmp_path):
    (tmp_path / "results" / "models").mkdir(parents=True)
    (tmp_path / "results" / "models" / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "results" / "models" / "m.json").write_text("{}")
    assert notebook.zip_results(tmp_path / "results", tmp_path / "r.zip") == 1
    assert zipfile.ZipFile(tmp_path / "r.zip").namelist() == ["results/models/m.json"]
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_criteria_table_is_html_with_every_row(tmp_path):
    table = tmp_path / "cpu-2c" / "tables" / "criteria.csv"
    table.parent.mkdir(parents=True)
    table.write_text("criterion,verdict\n1 speedup,FAIL\n2 <accuracy>,PASS\n")
    out = notebook.criteria_html(table)
    assert out.count("<tr>") == 3 and "&lt;accuracy&gt;" in out and "cpu-2c" in out


# --- the notebooks as CI executed them (CPU path) -------------------------------------------------------------------

EXECUTED = os.environ.get("EDGEBENCH_NOTEBOOKS")
executed = pytest.mark.skipif(not EXECUTED, reason="EDGEBENCH_NOTEBOOKS (the executed notebooks' folder) is not set")


def outputs_of(nb: dict, cell_id: str) -> list[dict]:
    (cell,) = [c for c in nb["cells"] if c.get("id") == cell_id]
    return cell["outputs"]


def printed(outputs: list[dict]) -> str:
    return "".join("".join(o.get("text", "")) for o in outputs if o["output_type"] == "stream")


@executed
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_executed_notebook_ran_every_cell_without_an_error(name):
    nb = load(Path(EXECUTED) / f"{name}.ipynb")
    assert nb["metadata"]["papermill"]["parameters"]["CPU_ONLY"] is True
    for cell in code_cells(nb):
        assert cell["execution_count"] is not None, cell.get("id")
        assert not [o for o in cell["outputs"] if o["output_type"] == "error"], cell.get("id")
    for step in STEPS:
        out = printed(outputs_of(nb, step))
        assert f"[{step}] {STEPS[step][0]}" in out
        assert ("skipped on the CPU path" in out) == (step in SKIPPED_ON_CPU)
        assert ("done in" in out) == (step not in SKIPPED_ON_CPU)


@executed
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_executed_notebook_embeds_the_figures_and_the_criteria_table(name):
    nb = load(Path(EXECUTED) / f"{name}.ipynb")
    pngs = [o["data"]["image/png"] for o in outputs_of(nb, "figures") if "image/png" in o.get("data", {})]
    assert len(pngs) >= 3
    assert all(base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n" for png in pngs)
    (table,) = [o["data"]["text/html"] for o in outputs_of(nb, "criteria") if "text/html" in o.get("data", {})]
    table = "".join(table)
    assert 'class="edgebench-criteria"' in table and table.count("<tr>") >= 5
    assert any(verdict in table for verdict in ("PASS", "FAIL", "NOT MEASURED"))


@executed
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_executed_notebook_zipped_the_results(name):
    with zipfile.ZipFile(Path(EXECUTED) / f"{name}-results.zip") as z:
        names = z.namelist()
    assert any(n.endswith("/criteria.parquet") for n in names) and any(n.endswith(".png") for n in names)
    assert "results/notebook/report.html" in names and not any(n.endswith(".gguf") for n in names)


@executed
def test_a_failing_cell_stops_the_notebook_on_one_line():
    nb = load(Path(EXECUTED) / "colab-bad-config.ipynb")
    (error,) = [o for c in code_cells(nb) for o in c["outputs"] if o["output_type"] == "error"]
    assert error["traceback"] == ["cell 'choose-config' failed: no config file config/missing.yaml in "
                                  f"{nb['metadata']['papermill']['parameters']['REPO_DIR']}"]
    later = code_cells(nb)[[c.get("id") for c in code_cells(nb)].index("choose-config") + 1:]
    assert all(c["execution_count"] is None for c in later)
