"""benchmarks/gpu_prefill.py's tensor-core peaks: the card's own entry by the name NVML gives, none for others."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import gpu_prefill  # noqa: E402


def test_each_card_gets_its_own_datasheet_peak():
    assert gpu_prefill.dense_fp16_peak("NVIDIA H200") == 989.4
    assert gpu_prefill.dense_fp16_peak("NVIDIA H100 80GB HBM3") == 989.4
    assert gpu_prefill.dense_fp16_peak("NVIDIA H100 PCIe") == 756.5  # not the SXM part's
    assert gpu_prefill.dense_fp16_peak("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu_prefill.dense_fp16_peak("Tesla T4") == 65.0


def test_names_match_as_whole_words():
    assert gpu_prefill.dense_fp16_peak("NVIDIA H200 NVL") == 835.5  # not the SXM part's
    for other in ("NVIDIA L40S", "NVIDIA RTX A1000", "NVIDIA T400", "NVIDIA GeForce GTX 1080"):
        assert gpu_prefill.dense_fp16_peak(other) is None, other
