"""Resource monitor sampled on a background thread during each run.

With an NVIDIA GPU (NVML through pynvml): device memory at the start and its peak, this process's GPU memory where
NVML reports it, power (mean and peak), energy from the total-energy counter, SM clock and throttle reasons.
Always: this process's peak RSS and CPU time. GPU columns are None (null in Parquet) without a GPU, never zero.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from typing import Iterator, Optional

import psutil

try:  # nvidia-ml-py; absent or without a driver means "no GPU", not an error
    import pynvml
except ImportError:  # pragma: no cover - it is a pinned dependency
    pynvml = None

GPU_COLUMNS = ("gpu_mem_baseline_mb", "gpu_mem_peak_mb", "gpu_proc_mem_peak_mb", "gpu_power_mean_w",
               "gpu_power_peak_w", "gpu_energy_j", "gpu_sm_clock_mean_mhz", "gpu_throttle_reasons")


def _nvml_handle() -> Optional[object]:
    if pynvml is None:
        return None
    try:
        pynvml.nvmlInit()
        index = int((os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0])
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:  # noqa: BLE001 - any NVML failure means there is no usable GPU here
        return None


class Monitor:
    """One sampling thread for a whole benchmark; each run is a window of it:

        monitor = Monitor()
        with monitor:                      # starts and stops the thread
            with monitor.window() as w:    # one run
                ...
            w.result                       # a dict of columns

    The thread lives across runs so that starting one does not compete with the run's first milliseconds.
    """

    def __init__(self, interval_s: Optional[float] = None):
        self.handle = _nvml_handle()
        # 10 ms catches GPU memory peaks; without a GPU only RSS is sampled and 50 ms disturbs the run less.
        self.interval_s = interval_s or (0.01 if self.handle is not None else 0.05)
        self.proc = psutil.Process()
        self._lock = threading.Lock()
        self._window: Optional[_Window] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def has_gpu(self) -> bool:
        return self.handle is not None

    def _gpu_mem_mb(self) -> float:
        return pynvml.nvmlDeviceGetMemoryInfo(self.handle).used / 2**20

    def _proc_mem_mb(self) -> Optional[float]:
        try:
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(self.handle):
                if p.pid == self.proc.pid and p.usedGpuMemory is not None:
                    return p.usedGpuMemory / 2**20
        except pynvml.NVMLError:
            pass
        return None

    def _sample_into(self, w: "_Window") -> None:
        w.rss_peak = max(w.rss_peak, self.proc.memory_info().rss)
        if self.handle is None:
            return
        try:
            w.mem_peak = max(w.mem_peak, self._gpu_mem_mb())
            proc_mem = self._proc_mem_mb()
            if proc_mem is not None:
                w.proc_peak = max(w.proc_peak or 0.0, proc_mem)
            w.power.append(pynvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0)
            w.clock.append(pynvml.nvmlDeviceGetClockInfo(self.handle, pynvml.NVML_CLOCK_SM))
            w.throttle |= pynvml.nvmlDeviceGetCurrentClocksEventReasons(self.handle)
        except pynvml.NVMLError:
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                if self._window is not None:
                    self._sample_into(self._window)

    def __enter__(self) -> "Monitor":
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="edgebench-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @contextlib.contextmanager
    def window(self) -> Iterator["_Window"]:
        w = _Window(rss_peak=self.proc.memory_info().rss, cpu0=self.proc.cpu_times())
        if self.handle is not None:
            w.baseline = w.mem_peak = self._gpu_mem_mb()
            try:
                w.energy0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)  # mJ
            except pynvml.NVMLError:
                w.energy0 = None
        with self._lock:
            self._window = w
        try:
            yield w
        finally:
            with self._lock:
                self._window = None
                self._sample_into(w)  # one last sample at the end of the run
            w.result = self._finish(w)

    def _finish(self, w: "_Window") -> dict:
        cpu1 = self.proc.cpu_times()
        out = {
            "host_rss_peak_mb": w.rss_peak / 2**20,
            "host_cpu_time_s": (cpu1.user - w.cpu0.user) + (cpu1.system - w.cpu0.system),
            **{k: None for k in GPU_COLUMNS},
        }
        if self.handle is None:
            return out
        energy = None
        if w.energy0 is not None:
            try:
                energy = (pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) - w.energy0) / 1000.0
            except pynvml.NVMLError:
                energy = None
        out.update({
            "gpu_mem_baseline_mb": w.baseline,
            "gpu_mem_peak_mb": w.mem_peak,
            "gpu_proc_mem_peak_mb": w.proc_peak,
            "gpu_power_mean_w": sum(w.power) / len(w.power) if w.power else None,
            "gpu_power_peak_w": max(w.power) if w.power else None,
            "gpu_energy_j": energy,
            "gpu_sm_clock_mean_mhz": sum(w.clock) / len(w.clock) if w.clock else None,
            "gpu_throttle_reasons": w.throttle,
        })
        return out


@dataclass
class _Window:
    rss_peak: int
    cpu0: object
    baseline: float = 0.0
    mem_peak: float = 0.0
    proc_peak: Optional[float] = None
    energy0: Optional[int] = None
    power: list = field(default_factory=list)
    clock: list = field(default_factory=list)
    throttle: int = 0
    result: dict = field(default_factory=dict)


def gpu_identity() -> dict:
    """GPU name, driver and CUDA driver version, or Nones without a GPU."""
    handle = _nvml_handle()
    if handle is None:
        return {"gpu_name": None, "gpu_driver": None, "gpu_cuda_driver": None, "gpu_memory_total_mb": None}
    cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
    return {
        "gpu_name": _text(pynvml.nvmlDeviceGetName(handle)),
        "gpu_driver": _text(pynvml.nvmlSystemGetDriverVersion()),
        "gpu_cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}",
        "gpu_memory_total_mb": pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20,
    }


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
