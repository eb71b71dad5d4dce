"""Writes notebooks/kaggle.ipynb and notebooks/colab.ipynb from one description, so the two never drift apart.

    python notebooks/build_notebooks.py            writes both notebooks
    python notebooks/build_notebooks.py --check    exits 1 if a committed notebook differs from what it would write

The cells' text comes from edgebench.notebook.STEPS; the code of every step lives in that module. Only the standard
library is needed.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from edgebench.notebook import SKIPPED_ON_CPU, STEPS  # noqa: E402

# platform -> where the repository and the results' zip go, and what the platform needs switched on.
PLATFORMS = {
    "kaggle": {
        "title": "Kaggle",
        # /kaggle/working is the notebook's saved output: only the zip goes there, the checkout and its .venv not.
        "repo_dir": "/tmp/edgebench",
        "zip_path": "/kaggle/working/edgebench-results.zip",
        "before": "Settings: Accelerator **GPU T4 x2** and **Internet on**. The zip lands in `/kaggle/working`, the "
                  "notebook's output (a link appears at the end).",
    },
    "colab": {
        "title": "Colab",
        "repo_dir": "/content/edgebench",
        "zip_path": "/content/edgebench-results.zip",
        "before": "Runtime > Change runtime type: a **GPU** (T4 on the free tier; A100 or H100 for the whole plan). "
                  "The zip is offered as a browser download at the end.",
    },
}

PARAMETERS = '''# edgebench on {title}: the parameters (papermill: -p NAME VALUE, -y for lists).
CPU_ONLY = False   # True: no GPU, no Ollama, the quickstart config, and the cells of the GPU and Ollama skipped
CONFIG = None      # a config file of the repository; None: config/plan.yaml on a GPU, config/config.yaml with CPU_ONLY
MODELS = None      # model names of that config to run; None: all, the plan's cut to the card (tiers 1-2 under 16 GiB)
RUNS = None        # timed runs per prompt; None: the config's
REPO_URL = ""      # the edgebench git repository to clone (unless REPO_DIR already holds a checkout)
REPO_DIR = "{repo_dir}"
ZIP_PATH = "{zip_path}"'''

CLONE = '''# Clones the repository (seconds) unless REPO_DIR holds a checkout already, and loads the notebook's steps.
import subprocess, sys
from pathlib import Path

if not (Path(REPO_DIR) / ".git").exists():
    if not REPO_URL:
        raise SystemExit("clone: set REPO_URL in the parameters cell to the edgebench repository's git URL")
    cloned = subprocess.run(["git", "clone", "--depth", "1", REPO_URL, REPO_DIR], capture_output=True, text=True)
    if cloned.returncode != 0:
        raise SystemExit("clone: " + ((cloned.stderr.strip().splitlines() or ["git clone failed"])[-1]))
sys.path.insert(0, str(Path(REPO_DIR) / "src"))
from edgebench import notebook

nb = notebook.Notebook(platform="{platform}", repo=REPO_DIR, cpu_only=CPU_ONLY, config=CONFIG, models=MODELS,
                       runs=RUNS, zip_path=ZIP_PATH)'''


def lines(text: str) -> list[str]:
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + [parts[-1]]


def markdown(cell_id: str, text: str) -> dict:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": lines(text)}


def code(cell_id: str, text: str, tags: tuple[str, ...] = ()) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": {"tags": list(tags)} if tags
            else {}, "outputs": [], "source": lines(text)}


def notebook(platform: str) -> dict:
    p = PLATFORMS[platform]
    skipped = ", ".join(SKIPPED_ON_CPU)
    cells = [
        code("parameters", PARAMETERS.format(**p), tags=("parameters",)),
        markdown("intro", f"# edgebench on {p['title']}\n\n"
                 "Benchmarks Ollama against EdgeLLM (and llama.cpp, per the config) with the edgebench pipeline on "
                 "this machine's GPU: the README's set-up with the CUDA builds, Ollama, the pipeline on a config "
                 "sized for the card, then the figures, the success criteria and a zip of the results.\n\n"
                 f"{p['before']}\n\n"
                 "Set the parameters in the cell above (None: chosen from the card nvidia-smi finds), then run "
                 "all cells. A failing cell stops the notebook with one line naming the cell; its full output "
                 "is under `results/notebook/` of the checkout.\n\n"
                 f"`CPU_ONLY = True` takes the CPU path (no GPU, no Ollama): the same cells on the quickstart "
                 f"config, the cells {skipped} skipped by name. CI executes both notebooks that way."),
        markdown("clone-text", "## clone\nThe repository, and the notebook's steps (`src/edgebench/notebook.py`) "
                 "(seconds)."),
        code("clone", CLONE.format(platform=platform)),
    ]
    for name, (what, duration) in STEPS.items():
        skip = " Skipped on the CPU path." if name in SKIPPED_ON_CPU else ""
        cells.append(markdown(f"{name}-text", f"## {name}\n{what} ({duration}).{skip}"))
        comment = textwrap.fill(f"{name}: {duration}.{skip}", width=118, initial_indent="# ",
                                subsequent_indent="# ")
        cells.append(code(name, f"{comment}\nnb.cell(\"{name}\")"))
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "accelerator": "GPU",
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def text_of(platform: str) -> str:
    return json.dumps(notebook(platform), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print("usage: build_notebooks.py [--check]", file=sys.stderr)
        return 2
    stale = []
    for platform in PLATFORMS:
        path = ROOT / "notebooks" / f"{platform}.ipynb"
        text = text_of(platform)
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
        else:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
    if stale:
        print(f"stale: {', '.join(stale)} (run python notebooks/build_notebooks.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
