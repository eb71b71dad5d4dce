#!/usr/bin/env bash
# On a GPU machine: builds the kernels, runs the prefill GEMM accuracy gate, compute-sanitizer memcheck and racecheck
# on its small mode, the prefill GEMM benchmark, and the engine's prefill against its steps (prefill_accuracy, and the
# sanitizers on its small mode); every log goes to $OUT (default ./prefill-logs).
#   kernels/tests/run_prefill_gpu.sh [BUILD_DIR]
# Exit status: 0 when every step passed, otherwise the number of failed steps.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-${BUILD:-/tmp/edgellm-prefill-build}}"
out="${OUT:-$PWD/prefill-logs}"
mkdir -p "$out"
failed=0
step() {  # step NAME COMMAND...: runs COMMAND with its output in $out/NAME.log, one summary line
    local name="$1"; shift
    local start=$SECONDS
    "$@" >"$out/$name.log" 2>&1
    local rc=$?
    printf '%-22s rc=%d  %4ds  (%s)\n' "$name" "$rc" $((SECONDS - start)) "$out/$name.log" | tee -a "$out/summary.txt"
    [ "$rc" -eq 0 ] || failed=$((failed + 1))
    return "$rc"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.txt" 2>&1
step build make -C "$here" BUILD="$build" -j"$(nproc)" || { echo "build failed"; exit 1; }
step gemm_host_check "$build/gemm_host_check"
step gemm_accuracy timeout 150 "$build/gemm_accuracy" --csv "$out/gemm_accuracy.csv"
sanitizer="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
step memcheck timeout 120 "$sanitizer" --tool memcheck --error-exitcode 9 "$build/gemm_accuracy" --sanitize
step racecheck timeout 120 "$sanitizer" --tool racecheck --racecheck-report all --error-exitcode 9 \
    "$build/gemm_accuracy" --sanitize
step prefill_bench timeout 120 "$build/prefill_bench" --csv "$out/prefill_bench.csv"
# The engine's prefill against its own steps; the sanitizer runs bounded so the whole script stays within minutes.
step prefill_accuracy timeout 120 "$build/prefill_accuracy"
step prefill_memcheck timeout 60 "$sanitizer" --tool memcheck --error-exitcode 9 "$build/prefill_accuracy" --sanitize
step prefill_racecheck timeout 60 "$sanitizer" --tool racecheck --error-exitcode 9 "$build/prefill_accuracy" --sanitize
# Whole-model prefill time (synthetic 1B/3B/8B models, 512 to 8192 prompt tokens).
step prefill_engine_bench timeout 120 "$build/prefill_bench" --engine-only --engine-csv "$out/prefill_engine.csv"
tail -n 1 "$out/gemm_accuracy.log"
exit "$failed"
