#!/usr/bin/env bash
# Run by Snakemake inside the environment of envs/edgebench.yaml right after creating it (--sdm conda): llama.cpp
# for the same portable CPU target as `make setup` (LLAMACPP_CPU and LLAMACPP_CUDA are honoured), then the check that
# its CPU libraries hold no AMX instruction.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
wheel="$(PYTHON=python "$root/setup/llamacpp-wheel.sh")"
python -m pip install "$wheel"
PYTHON=python "$root/setup/llamacpp-wheel.sh" --check-amx
