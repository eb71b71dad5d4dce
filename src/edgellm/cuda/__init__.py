"""The GPU engine: the compiled kernels (kernels/, built into libedgellm.so) through one library handle (library),
their bindings (attention, gemv, ops), the GGUF blocks regrouped for them (layout) and the decoder (engine).

`library_path()` says which libedgellm.so the engine loads (the order is in edgellm.cuda.library's docstring);
`available()` whether the GPU engine can run here (the library is found and a CUDA device is present)."""

from .device import device_count, device_name
from .library import Library, available, library_path

__all__ = ["Library", "available", "device_count", "device_name", "library_path"]
