"""The steps of the Kaggle and Colab notebooks (notebooks/*.ipynb): both notebooks call this module, cell by cell.

It runs in the notebook's own kernel, before the project's environment exists, so it needs only the standard
library, IPython (display) and PyYAML (both preinstalled on Kaggle and Colab). Everything else runs through the
README's set-up: `make setup` builds .venv, and the pipeline runs as `.venv/bin/snakemake`.

Each code cell of a notebook is one `nb.cell(NAME)`. STEPS says what each cell does and how long it takes (the
notebooks' text is written from it by notebooks/build_notebooks.py); a failure raises CellError, which IPython shows
as one line and which stops the notebook. With `cpu_only` (no GPU, no Ollama: what CI executes), the cells named in
SKIPPED_ON_CPU are skipped and the quickstart config runs.
"""

from __future__ import annotations

import csv
import html
import json
import os
import shutil
import subprocess
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

# name -> (what the cell does, how long it takes), in the notebooks' order. The durations are the README's measured
# ones.
STEPS: dict[str, tuple[str, str]] = {
    "find-gpu": ("Finds the GPU with nvidia-smi (name, memory, compute capability) and puts nvcc on the PATH",
                 "seconds"),
    "setup": ("The README's set-up, `make setup`: a virtual environment with the pinned stack and llama.cpp built "
              "from source (with its CUDA backend for the GPU found, through setup/llamacpp-wheel.sh's "
              "LLAMACPP_CUDA)",
              "about 7 minutes on 2 cores for the CPU build; the CUDA build adds about 5 minutes on 16 cores, "
              "more on fewer"),
    "choose-config": ("Chooses the config: the quickstart on the CPU path; on a GPU the plan, its tier 1-2 models "
                      "under 16 GiB of GPU memory (a T4), all of it above (an A100 or H100)", "seconds"),
    "build-kernels": ("The CUDA kernels that the config's engines declare as their build step, for the GPU found, "
                      "through the pipeline's own build rules (kernels/Makefile, nvcc)",
                      "nvcc over every kernel source: minutes"),
    "install-ollama": ("Installs Ollama as Ollama documents it for Linux (curl -fsSL https://ollama.com/install.sh "
                       "| sh), unless it is installed already", "a download of Ollama's Linux bundle"),
    "start-ollama": ("Starts `ollama serve` in the background with the settings of a fair comparison (flash "
                     "attention on, f16 KV cache, one request at a time) and waits for its API",
                     "seconds"),
    "pipeline": ("Runs the pipeline (`snakemake all`, one benchmark at a time) and writes the HTML report",
                 "the quickstart: a few minutes on 2 cores; the plan: 20 warm-up and 100 timed runs of up to 128 "
                 "tokens per model, prompt and engine, as long as the card takes"),
    "figures": ("Shows the figures of the testbed's results inline", "seconds"),
    "criteria": ("Shows the plan's success criteria table (PASS / FAIL / NOT MEASURED)", "seconds"),
    "zip-results": ("Zips the results folder (runs, statistics, figures, tables, logs, the report) for download",
                    "seconds"),
}

# The cells that cannot run without a GPU and Ollama: the CUDA builds' GPU detection, the kernel build and Ollama.
SKIPPED_ON_CPU = ("find-gpu", "build-kernels", "install-ollama", "start-ollama")

# The plan's tiers 1 and 2 (benchmark plan, "Target Models"): what a T4's 15 GiB holds.
TIER_1_2 = ("smollm-135m", "qwen2.5-0.5b", "qwen2.5-1.5b", "llama3.2-1b", "llama3.2-3b", "phi3.5-3.8b", "gemma2-2b")
# The plan's largest model (Llama 3.1 8B) expects 16 GB of VRAM: below that the card gets tiers 1-2 only.
WHOLE_PLAN_MIN_MIB = 16 * 1024

QUICKSTART_CONFIG = "config/config.yaml"
PLAN_CONFIG = "config/plan.yaml"
OLLAMA_URL = "http://127.0.0.1:11434"
# Ollama's server settings for a fair comparison with the engines it is measured against: flash attention on, an
# f16 KV cache (never quantized), one request at a time.
OLLAMA_ENV = {"OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_KV_CACHE_TYPE": "f16", "OLLAMA_NUM_PARALLEL": "1"}


class CellError(Exception):
    """A failed cell. IPython renders `_render_traceback_` instead of a traceback: the notebook stops on one line."""

    def __init__(self, cell: str, message: str):
        super().__init__(f"{cell}: {message}")
        self.cell = cell
        self.message = message

    def _render_traceback_(self) -> list[str]:
        return [f"cell '{self.cell}' failed: {self.message}"]


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_mib: int
    compute_capability: str  # "7.5"

    @property
    def cuda_arch(self) -> str:
        """The compute capability as CMake and nvcc take it ("75")."""
        return self.compute_capability.replace(".", "")


def parse_nvidia_smi(text: str) -> Gpu:
    """The first GPU of `nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader,nounits`."""
    lines = [line for line in text.splitlines() if line.strip()]
    fields = [f.strip() for f in lines[0].split(",")] if lines else []
    if len(fields) != 3 or not fields[1].isdigit() or not fields[2].replace(".", "", 1).isdigit():
        raise ValueError(f"unexpected nvidia-smi answer: {text.strip()[:120]!r}")
    return Gpu(name=fields[0], memory_mib=int(fields[1]), compute_capability=fields[2])


def models_for(gpu: Optional[Gpu], plan_models: list[str]) -> list[str]:
    """The plan's models that fit the card: all of them from 16 GiB of GPU memory up, else tiers 1-2."""
    if gpu is None or gpu.memory_mib >= WHOLE_PLAN_MIN_MIB:
        return list(plan_models)
    return [m for m in plan_models if m in TIER_1_2]


def last_line(text: str, default: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else default


class Notebook:
    """One notebook's run: its parameters, and what its cells found so far (the GPU, the config)."""

    def __init__(self, platform: str, repo: str, cpu_only: bool, config: Optional[str] = None,
                 models: Optional[list[str]] = None, runs: Optional[int] = None, zip_path: str = "results.zip"):
        self.platform = platform
        self.repo = Path(repo).resolve()
        self.cpu_only = bool(cpu_only)
        self.config = config
        self.models = list(models) if models else None
        self.runs = runs
        self.zip_path = Path(zip_path).resolve()
        self.gpu: Optional[Gpu] = None
        self.pipeline_config: Optional[Path] = None
        # The kernel's matplotlib backend (MPLBACKEND=module://matplotlib_inline...) exists only in the kernel: the
        # pipeline's figure scripts, run by .venv's Python, pick their own.
        self.env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
        self.bin = self.repo / ".venv" / "bin"
        self.work = self.repo / "results" / "notebook"  # the notebook's own files (config, logs), zipped with results
        print(f"edgebench at {self.repo}; {'CPU path (no GPU, no Ollama)' if self.cpu_only else 'GPU path'}")

    # --- running cells -------------------------------------------------------------------------------------------

    def cell(self, name: str) -> None:
        """Runs one step: says what it does and how long it takes, skips it on the CPU path where it cannot run,
        and turns any failure into one line that stops the notebook."""
        what, duration = STEPS[name]
        print(f"[{name}] {what} ({duration})")
        if self.cpu_only and name in SKIPPED_ON_CPU:
            print(f"[{name}] skipped on the CPU path")
            return
        start = time.monotonic()
        try:
            getattr(self, "step_" + name.replace("-", "_"))()
        except CellError:
            raise
        except Exception as error:  # any other failure still stops the notebook on one line
            message = (str(error).strip().splitlines() or [""])[0]
            raise CellError(name, f"{type(error).__name__}: {message}" if message else type(error).__name__) from None
        print(f"[{name}] done in {time.monotonic() - start:.1f} s")

    def sh(self, cell: str, argv: list[str], env: Optional[dict] = None, log: Optional[Path] = None,
           show: Callable[[str], bool] = lambda line: True,
           explain: Callable[[list[str]], Optional[str]] = lambda lines: None) -> None:
        """Runs a command in the repository, printing the lines `show` selects; a nonzero exit is the cell's error:
        what `explain` makes of the output, else its last line, and the log file that holds all of it."""
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "w") if log is not None else None
        lines: list[str] = []
        try:
            proc = subprocess.Popen(argv, cwd=self.repo, env=env or self.env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, bufsize=1)
            for line in proc.stdout:
                if out is not None:
                    out.write(line)
                lines.append(line)
                if show(line):
                    print(line, end="", flush=True)
            code = proc.wait()
        finally:
            if out is not None:
                out.close()
        if code != 0:
            where = f" (full output: {log})" if log is not None else ""
            reason = explain(lines) or last_line("".join(lines[-20:]), "no output")
            raise CellError(cell, f"{Path(argv[0]).name} {' '.join(argv[1:3])} exited {code}: {reason}{where}")

    # --- the steps -----------------------------------------------------------------------------------------------

    def step_find_gpu(self) -> None:
        if shutil.which("nvidia-smi", path=self.env.get("PATH")) is None:
            raise CellError("find-gpu", "no NVIDIA GPU (nvidia-smi not found): turn on a GPU accelerator, "
                                        "or set CPU_ONLY = True")
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,compute_cap",
                                "--format=csv,noheader,nounits"], capture_output=True, text=True, env=self.env)
        if query.returncode != 0:
            raise CellError("find-gpu", f"nvidia-smi: {last_line(query.stderr or query.stdout, 'no answer')}")
        self.gpu = parse_nvidia_smi(query.stdout)
        # The CUDA toolkit's usual place, which a notebook kernel's PATH does not always include.
        if shutil.which("nvcc", path=self.env.get("PATH")) is None and Path("/usr/local/cuda/bin/nvcc").exists():
            self.env["PATH"] = "/usr/local/cuda/bin:" + self.env.get("PATH", "")
        if shutil.which("nvcc", path=self.env.get("PATH")) is None:
            raise CellError("find-gpu", "nvcc not found: the CUDA builds need the CUDA toolkit")
        print(f"GPU: {self.gpu.name}, {self.gpu.memory_mib} MiB, compute capability {self.gpu.compute_capability}")

    def step_setup(self) -> None:
        self.ensure_venv()
        env = dict(self.env)
        if self.gpu is not None:
            env["LLAMACPP_CUDA"] = self.gpu.cuda_arch
        self.sh("setup", ["make", "setup"], env=env, log=self.work / "setup.log",
                show=lambda line: line.startswith(("llamacpp-wheel", "make")))

    def ensure_venv(self) -> None:
        """`make setup` makes a virtual environment, which needs ensurepip: some images ship Python without it, and
        Debian's pythonX.Y-venv package brings it (notebook machines run as root)."""
        python = self.env.get("PYTHON", "python3")
        probe = subprocess.run([python, "-c", "import ensurepip"], capture_output=True, env=self.env)
        if probe.returncode == 0:
            return
        version = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, env=self.env).stdout.strip()
        if not version or shutil.which("apt-get", path=self.env.get("PATH")) is None:
            raise CellError("setup", f"{python} cannot make a virtual environment (no ensurepip): install "
                                     f"python{version or '3'}-venv")
        print(f"{python} has no ensurepip: installing python{version}-venv")
        self.sh("setup", ["sh", "-c", f"apt-get update -q && apt-get install -y -q python{version}-venv"],
                log=self.work / "apt-venv.log", show=lambda line: False)

    def step_build_kernels(self) -> None:
        if self.pipeline_config is None:
            raise CellError("build-kernels", "no config chosen: run the choose-config cell first")
        # The rules come from the backends' own declarations (the registry), as the pipeline's build rules do.
        rules = subprocess.run(
            [str(self.bin / "python"), "-c", "import sys, yaml; from edgebench.backends import backend_class as b; "
             "print(*sorted({b(n).build_step.rule for n in yaml.safe_load(open(sys.argv[1]))['backends'] "
             "if b(n).build_step}))", str(self.pipeline_config)],
            capture_output=True, text=True, env={**self.env, "PYTHONPATH": str(self.repo / "src")}, cwd=self.repo)
        if rules.returncode != 0:
            raise CellError("build-kernels", f"the backends' build steps: {last_line(rules.stderr, 'no answer')}")
        if not rules.stdout.split():
            print("no engine of the config has a build step")
            return
        # kernels.arch `auto` (the default) builds for the GPU found.
        self.sh("build-kernels", self.snakemake(*rules.stdout.split(), "--cores", "all"),
                log=self.work / "kernels.log")

    def step_install_ollama(self) -> None:
        if shutil.which("ollama", path=self.env.get("PATH")):
            print("Ollama is installed already")
            return
        self.sh("install-ollama", ["sh", "-c", "curl -fsSL https://ollama.com/install.sh | sh"],
                log=self.work / "ollama-install.log")

    def step_start_ollama(self) -> None:
        if (running := self.ollama_version()) is not None:
            print(f"Ollama {running} is running already at {OLLAMA_URL}: it keeps the settings it was started with")
            return
        log = self.work / "ollama-serve.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**self.env, **OLLAMA_ENV}
        with open(log, "w") as out:
            server = subprocess.Popen(["ollama", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        for _ in range(120):
            if server.poll() is not None:
                raise CellError("start-ollama", f"ollama serve exited {server.returncode}: "
                                                f"{last_line(log.read_text(), 'no output')}")
            if (version := self.ollama_version()) is not None:
                settings = ", ".join(f"{k}={v}" for k, v in OLLAMA_ENV.items())
                print(f"Ollama {version} at {OLLAMA_URL} (pid {server.pid}; {settings})")
                return
            time.sleep(0.5)
        raise CellError("start-ollama", f"Ollama did not answer at {OLLAMA_URL} within 60 s (log: {log})")

    @staticmethod
    def ollama_version() -> Optional[str]:
        try:
            with urllib.request.urlopen(f"{OLLAMA_URL}/api/version", timeout=2) as answer:
                return json.loads(answer.read()).get("version", "?")
        except (OSError, ValueError):
            return None

    def step_choose_config(self) -> None:
        import yaml

        chosen = self.config or (QUICKSTART_CONFIG if self.cpu_only else PLAN_CONFIG)
        path = self.repo / chosen
        if not path.is_file():
            raise CellError("choose-config", f"no config file {chosen} in {self.repo}")
        config = yaml.safe_load(path.read_text()) or {}
        names = list(config.get("models") or {})
        if self.models is not None:
            unknown = [m for m in self.models if m not in names]
            if unknown:
                raise CellError("choose-config", f"{', '.join(unknown)} not in {chosen} (its models: "
                                                 f"{', '.join(names)})")
            keep = self.models
        else:
            # Only the plan is cut to the card: another config runs as written.
            keep = models_for(self.gpu, names) if chosen == PLAN_CONFIG and not self.cpu_only else names
        if keep == names and self.runs is None:
            self.pipeline_config = path  # the config as it is: a rerun of the same config has nothing to do
        else:
            config["models"] = {m: config["models"][m] for m in keep}
            if self.runs is not None:
                config["runs"] = int(self.runs)
            self.pipeline_config = self.work / "config.yaml"
            self.pipeline_config.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.pipeline_config.with_suffix(".tmp")
            tmp.write_text(f"# {chosen}, as the notebook ran it\n" + yaml.safe_dump(config, sort_keys=False))
            tmp.replace(self.pipeline_config)
        card = f"{self.gpu.name}, {self.gpu.memory_mib} MiB" if self.gpu else "no GPU"
        shown = os.path.relpath(self.pipeline_config, self.repo)
        print(f"config: {shown} ({card}); models: {', '.join(keep)}")

    def snakemake(self, *args: str) -> list[str]:
        return [str(self.bin / "snakemake"), *args, "--configfile", str(self.pipeline_config)]

    def step_pipeline(self) -> None:
        if self.pipeline_config is None:
            raise CellError("pipeline", "no config chosen: run the choose-config cell first")
        # Targets before --resources and --configfile, which take several values. gpu=1: one benchmark at a time.
        self.sh("pipeline", self.snakemake("all", "--cores", "all", "--resources", "gpu=1"),
                log=self.work / "pipeline.log",
                show=lambda line: "steps (" in line or "Nothing to be done" in line or line.startswith("Error"),
                explain=failed_rules)
        self.sh("pipeline", self.snakemake("--report", str(self.work / "report.html")),
                log=self.work / "report.log", show=lambda line: False)
        print(f"report: {self.work / 'report.html'}")

    def testbed(self) -> str:
        """The testbed the pipeline wrote to: the config's, or this machine's name for `auto` (the project's own
        rule, run in its environment)."""
        import yaml

        config = yaml.safe_load(Path(self.pipeline_config).read_text()) or {}
        if config.get("testbed", "auto") != "auto":
            return str(config["testbed"])
        env = {**self.env, "PYTHONPATH": str(self.repo / "src")}
        named = subprocess.run([str(self.bin / "python"), "-c",
                                "from edgebench.provenance import testbed_name; print(testbed_name())"],
                               capture_output=True, text=True, env=env, cwd=self.repo)
        if named.returncode != 0:
            raise CellError("figures", f"testbed name: {last_line(named.stderr, 'no answer')}")
        return named.stdout.strip()

    def results_of_testbed(self, cell: str) -> Path:
        if self.pipeline_config is None:
            raise CellError(cell, "no config chosen: run the choose-config cell first")
        folder = self.repo / "results" / self.testbed()
        if not folder.is_dir():
            raise CellError(cell, f"no results in {folder}: run the pipeline cell first")
        return folder

    def step_figures(self) -> None:
        from IPython.display import Image, Markdown, display

        pngs = sorted((self.results_of_testbed("figures") / "figures").glob("*.png"))
        if not pngs:
            raise CellError("figures", "the pipeline wrote no figure")
        for png in pngs:
            display(Markdown(f"**{png.stem}** (`{png.relative_to(self.repo)}`)"))
            display(Image(filename=str(png)))

    def step_criteria(self) -> None:
        from IPython.display import HTML, display

        table = self.results_of_testbed("criteria") / "tables" / "criteria.csv"
        if not table.is_file():
            raise CellError("criteria", f"no criteria table {table}")
        display(HTML(criteria_html(table)))

    def step_zip_results(self) -> None:
        self.zip_path.parent.mkdir(parents=True, exist_ok=True)
        count = zip_results(self.repo / "results", self.zip_path)
        print(f"results: {self.zip_path} ({count} files, {self.zip_path.stat().st_size / 1e6:.1f} MB)")
        offer_download(self.platform, self.zip_path)


def zip_results(results: Path, zip_path: Path) -> int:
    """results/ as a zip (written whole, then renamed), without the GGUF weights some model sources copy there:
    they are the benchmark's input, and each model's record (results/models/*.json) keeps their path and sha256."""
    files = sorted(f for f in results.rglob("*") if f.is_file() and f.suffix != ".gguf")
    tmp = zip_path.with_name(zip_path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, f.relative_to(results.parent))
    tmp.replace(zip_path)
    return len(files)


def failed_rules(lines: list[str]) -> Optional[str]:
    """Snakemake's failed rules and their logs, from its output ("Error in rule X:" then "    log: ...")."""
    failed, rule = [], None
    for line in lines:
        if line.startswith("Error in rule "):
            rule = line[len("Error in rule "):].strip().rstrip(":")
            failed.append(rule)
        elif rule and line.strip().startswith("log: "):
            failed[-1] = f"{rule} (log: {line.strip()[5:].split(' (check')[0]})"
            rule = None
    return f"rule {', '.join(failed)} failed" if failed else None


def criteria_html(table: Path) -> str:
    """The criteria CSV as an HTML table, with a class per verdict so PASS / FAIL stand out."""
    with open(table, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise CellError("criteria", f"{table} is empty")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    return (f'<table class="edgebench-criteria"><caption>Success criteria ({html.escape(table.parent.parent.name)})'
            f"</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def offer_download(platform: str, path: Path) -> None:
    """Colab: the browser's download; Kaggle: a link (files under /kaggle/working are the notebook's output)."""
    if platform == "colab" and _importable("google.colab"):
        from google.colab import files  # type: ignore[import-not-found]

        files.download(str(path))
    elif platform == "kaggle":
        from IPython.display import FileLink, display

        if str(path).startswith("/kaggle/working/"):
            display(FileLink(os.path.relpath(path)))  # the kernel's working directory is /kaggle/working


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
