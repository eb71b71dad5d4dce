"""Whether a CUDA device is present, and its name, through the NVIDIA driver's own library (libcuda, installed with
the driver): no CUDA toolkit, no Python package and no kernel library needed to ask. CUDA_VISIBLE_DEVICES applies."""

from __future__ import annotations

import ctypes
import functools


@functools.lru_cache(maxsize=1)
def _driver():
    """The initialised driver API, or None where there is no driver or no usable device."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    if driver.cuInit(0) != 0:  # CUDA_ERROR_NO_DEVICE, an old driver, a broken install...
        return None
    return driver


def device_count() -> int:
    driver = _driver()
    if driver is None:
        return 0
    count = ctypes.c_int(0)
    return count.value if driver.cuDeviceGetCount(ctypes.byref(count)) == 0 else 0


def device_name(index: int = 0) -> str | None:
    """The name of CUDA device `index` (the one the kernels run on is device 0), None without one."""
    driver = _driver()
    if driver is None or index >= device_count():
        return None
    device, name = ctypes.c_int(), ctypes.create_string_buffer(256)
    if driver.cuDeviceGet(ctypes.byref(device), index) != 0 or driver.cuDeviceGetName(name, 256, device) != 0:
        return None
    return name.value.decode(errors="replace")
