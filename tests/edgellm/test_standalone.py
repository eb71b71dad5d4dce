"""The engine stands alone: nothing under src/edgellm names the harness, and importing every module of the engine
loads no harness module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "edgellm"


def test_no_engine_source_mentions_the_harness():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "edgebench" in p.read_text()]
    assert offenders == []


def test_importing_the_whole_engine_loads_no_harness_module():
    modules = sorted("edgellm." + ".".join(p.relative_to(SRC).with_suffix("").parts)
                     for p in SRC.rglob("*.py") if p.name != "__init__.py")
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "print(sorted(m for m in sys.modules if m.startswith('edgebench')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC.parent), "PATH": ""})
    assert out.stdout.strip() == "[]"
