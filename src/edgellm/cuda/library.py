"""The compiled kernels (libedgellm.so, built from kernels/ by `make -C kernels`): where the engine finds them, and
the one handle through which every binding calls them.

Where the library is looked for, first match wins:
1. the `library` argument of edgellm.load (or of Library.load, library_path, available);
2. the environment variable EDGELLM_LIB;
3. `libedgellm.so` next to this module (edgellm/cuda/libedgellm.so): where an installed package keeps it -- copy
   the built library there (e.g. `cp build/libedgellm.so $(python -c 'import edgellm.cuda, os;
   print(os.path.dirname(edgellm.cuda.__file__))')`);
4. in a source checkout, `<repo>/build/libedgellm.so`, where `make kernels` (and the pipeline) put it.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Union

from ..errors import KernelError
from .device import device_count

LIBRARY_NAME = "libedgellm.so"
ENV_VAR = "EDGELLM_LIB"
PACKAGED = Path(__file__).resolve().parent / LIBRARY_NAME
_REPO = Path(__file__).resolve().parents[3]
# A source checkout (src/edgellm/cuda/library.py under a repository with the kernels' sources) builds into build/.
CHECKOUT_BUILD = _REPO / "build" / LIBRARY_NAME if (_REPO / "kernels" / "Makefile").is_file() else None
ERR_CUDA = 4  # EDGELLM_ERR_CUDA of edgellm_attention.h: CUDA's own error text says more

LibrarySpec = Union[str, os.PathLike, "Library", None]


def library_path(library: str | os.PathLike | None = None) -> Path:
    """The library the engine would load (see the module's docstring for the order). Where none of the default
    places has one, the place where a build is expected (so that an error can name it)."""
    if library:
        return Path(library)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    for candidate in (PACKAGED, CHECKOUT_BUILD):
        if candidate is not None and candidate.is_file():
            return candidate
    return CHECKOUT_BUILD or PACKAGED


def available(library: str | os.PathLike | None = None) -> bool:
    """Whether the GPU engine can run here: the kernel library is found and a CUDA device is present."""
    return library_path(library).is_file() and device_count() > 0


class Library:
    """The loaded libedgellm.so. Every binding (attention, gemv, ops, engine) calls it through `lib` and turns return
    codes into errors with `check`. One instance per library file and process: `Library.load` caches them."""

    _loaded: dict[Path, "Library"] = {}

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).resolve()
        try:
            self.lib = ctypes.CDLL(str(self.path))
        except OSError as exc:
            raise KernelError(f"cannot load the EdgeLLM CUDA kernels from {path}: {exc} "
                              "(build them with `make kernels`)") from None
        self.lib.edgellm_error_string.restype = ctypes.c_char_p
        self.lib.edgellm_error_string.argtypes = [ctypes.c_int]
        self.lib.edgellm_last_cuda_error.restype = ctypes.c_char_p
        self.lib.edgellm_last_cuda_error.argtypes = []

    @classmethod
    def load(cls, library: LibrarySpec = None) -> "Library":
        """library: a Library (returned as is), a path, or None for library_path()'s choice."""
        if isinstance(library, Library):
            return library
        path = library_path(library)
        if not path.is_file():
            raise KernelError(f"the EdgeLLM CUDA kernels are not built ({path} is missing): run `make kernels`, "
                              f"or name the library with {ENV_VAR}")
        key = path.resolve()
        if key not in cls._loaded:
            cls._loaded[key] = cls(key)
        return cls._loaded[key]

    def bind(self, signatures: dict[str, list]) -> None:
        """Declares argument types: {function name: [ctypes types]} (every function returns an int code)."""
        for name, argtypes in signatures.items():
            getattr(self.lib, name).argtypes = argtypes

    def check(self, rc: int, what: str) -> None:
        """Raises KernelError naming `what` and the library's reason (and CUDA's error text) for a nonzero code."""
        if rc == 0:
            return
        reason = self.lib.edgellm_error_string(rc).decode()
        if rc == ERR_CUDA:
            reason += ": " + self.lib.edgellm_last_cuda_error().decode()
        raise KernelError(f"{what}: {reason}")
