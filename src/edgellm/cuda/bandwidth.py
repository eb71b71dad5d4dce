"""The GPU's measured read bandwidth, the yardstick of memory-bandwidth utilisation (MBU): a batch-1 decode step
mostly reads (its weights and its KV cache), so its bytes per second are compared with a read-only pass over 1 GiB
(the library's edgellm_read_bandwidth), not with a copy's read + write."""

from __future__ import annotations

import ctypes

from ..errors import KernelError
from .library import Library, LibrarySpec


def read_bandwidth_gbs(library: LibrarySpec = None, nbytes: int = 1 << 30, passes: int = 10) -> float:
    """GB/s (10^9 bytes) of `passes` timed read-only passes over `nbytes` of device memory."""
    lib = Library.load(library)
    if not hasattr(lib.lib, "edgellm_read_bandwidth"):
        raise KernelError(f"{lib.path} has no read-bandwidth kernel (rebuild it with `make kernels`)")
    lib.bind({"edgellm_read_bandwidth": [ctypes.c_size_t, ctypes.c_int, ctypes.POINTER(ctypes.c_double)]})
    out = ctypes.c_double(0.0)
    lib.check(lib.lib.edgellm_read_bandwidth(nbytes, passes, ctypes.byref(out)), "read bandwidth")
    return out.value
