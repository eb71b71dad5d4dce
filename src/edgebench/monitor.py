"""Resource monitor sampled on a background thread during each run.

With an NVIDIA GPU (NVML through pynvml): device memory at the start and its peak, this process's GPU memory where
NVML reports it, power (mean and peak), energy from the total-energy counter, SM clock and throttle reasons.
Always: this process's peak RSS and CPU time. GPU columns are None (null in Parquet) without a GPU, never zero.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Optional

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
    """Use as `with Monitor() as mon: ...` then read `mon.result` (a dict of columns)."""

    def __init__(self, interval_s: float = 0.01):
        self.interval_s = interval_s
        self.handle = _nvml_handle()
        self.proc = psutil.Process()
        self.result: dict = {}

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

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._rss_peak = max(self._rss_peak, self.proc.memory_info().rss)
            if self.handle is not None:
                try:
                    self._mem_peak = max(self._mem_peak, self._gpu_mem_mb())
                    proc_mem = self._proc_mem_mb()
                    if proc_mem is not None:
                        self._proc_peak = max(self._proc_peak or 0.0, proc_mem)
                    self._power.append(pynvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0)
                    self._clock.append(pynvml.nvmlDeviceGetClockInfo(self.handle, pynvml.NVML_CLOCK_SM))
                    self._throttle |= pynvml.nvmlDeviceGetCurrentClocksEventReasons(self.handle)
                except pynvml.NVMLError:
                    pass
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "Monitor":
        self._stop = threading.Event()
        self._rss_peak = self.proc.memory_info().rss
        self._cpu0 = self.proc.cpu_times()
        self._power: list[float] = []
        self._clock: list[int] = []
        self._throttle = 0
        self._proc_peak: Optional[float] = None
        self._energy0 = None
        if self.handle is not None:
            self._baseline = self._mem_peak = self._gpu_mem_mb()
            try:
                self._energy0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)  # mJ
            except pynvml.NVMLError:
                self._energy0 = None
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        cpu1 = self.proc.cpu_times()
        self._rss_peak = max(self._rss_peak, self.proc.memory_info().rss)
        out = {
            "host_rss_peak_mb": self._rss_peak / 2**20,
            "host_cpu_time_s": (cpu1.user - self._cpu0.user) + (cpu1.system - self._cpu0.system),
            **{k: None for k in GPU_COLUMNS},
        }
        if self.handle is not None:
            energy = None
            if self._energy0 is not None:
                try:
                    energy = (pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) - self._energy0) / 1000.0
                except pynvml.NVMLError:
                    energy = None
            out.update({
                "gpu_mem_baseline_mb": self._baseline,
                "gpu_mem_peak_mb": self._mem_peak,
                "gpu_proc_mem_peak_mb": self._proc_peak,
                "gpu_power_mean_w": sum(self._power) / len(self._power) if self._power else None,
                "gpu_power_peak_w": max(self._power) if self._power else None,
                "gpu_energy_j": energy,
                "gpu_sm_clock_mean_mhz": sum(self._clock) / len(self._clock) if self._clock else None,
                "gpu_throttle_reasons": self._throttle,
            })
        self.result = out


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
