#!/usr/bin/env bash
# On a GPU machine: EdgeLLM's kernels with an older architecture's paths forced on this card (FORCE_ARCH=75: Turing's
# fp16 m16n8k8 / bf16 FMA products, synchronous copies, 64 KB of shared memory; FORCE_ARCH=80: Ampere's, without
# programmatic dependent launch) and, to compare with, this card's own paths.  Each is built into its own directory
# (the builds run side by side), then for each: the accuracy gates (attention_accuracy, gemm_accuracy,
# prefill_accuracy), the engine's GPU tests (tests/edgellm/test_cuda_*.py on that library), and decode and prefill
# tok/s on a synthetic model (benchmarks/gpu_step.py, benchmarks/gpu_prefill.py); first, primitives_check.cu compares
# the older paths' primitives with this card's own instructions.  Needs gguf for the synthetic models (on the device
# machine: source .device/setup.sh first).
#   kernels/tools/scripts/forced_paths.sh [PATH ...]      PATH: native, 75 or 80 (default: native 80 75)
# Environment: OUT (logs, default ./forced-paths-logs), BUILD_ROOT (default /tmp/edgellm-forced), PRESET (the model
# timed, default llama3.2-1b), PYTHON (default python3).  Every stage writes $OUT/<path>-<stage>.log and one line of
# $OUT/summary.txt; a failed stage does not stop the others.  Exit status: the number of failed stages.
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
out="${OUT:-$PWD/forced-paths-logs}"
build_root="${BUILD_ROOT:-/tmp/edgellm-forced}"
preset="${PRESET:-llama3.2-1b}"
python="${PYTHON:-python3}"
paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=(native 80 75)
for p in "${paths[@]}"; do
  case "$p" in
    native|75|80) ;;
    *) echo "forced_paths.sh: $p is not a path to test (native, 75 or 80)" >&2; exit 2;;
  esac
done
mkdir -p "$out" "$build_root"
rm -f "$out"/*summary.txt

record() {  # record NAME RC SECONDS [SUMMARY]: one line of the summary (default $out/summary.txt)
  printf '%-26s rc=%-3d %4ds  (%s)\n' "$1" "$2" "$3" "$out/$1.log" | tee -a "${4:-$out/summary.txt}"
}
step() {  # step [-s SUMMARY] NAME COMMAND...: COMMAND's output in $out/NAME.log
  local summary="$out/summary.txt"
  [ "$1" = -s ] && { summary="$2"; shift 2; }
  local name="$1" start=$SECONDS rc
  shift
  "$@" >"$out/$name.log" 2>&1
  rc=$?
  record "$name" "$rc" $((SECONDS - start)) "$summary"
  return "$rc"
}
force_of() { [ "$1" = native ] && echo "" || echo "$1"; }

nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv >"$out/gpu.txt" 2>&1
cat "$out/gpu.txt"

# The older paths' primitives against this card's instructions, bit for bit (needs 8.0 or newer).
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')
step primitives-build nvcc -std=c++17 -O3 -arch=sm_"${cap:-90}" -I "$root/kernels" \
  "$root/kernels/tools/scripts/primitives_check.cu" -o "$build_root/primitives_check" &&
  step primitives "$build_root/primitives_check"

# The builds, side by side: the cores shared among them.
jobs=$(( $(nproc) / ${#paths[@]} ))
[ "$jobs" -ge 1 ] || jobs=1
declare -A build_pid build_start built
for p in "${paths[@]}"; do
  build_start[$p]=$SECONDS
  make -C "$root/kernels" BUILD="$build_root/$p" ARCH=native FORCE_ARCH="$(force_of "$p")" -j"$jobs" \
    >"$out/$p-build.log" 2>&1 &
  build_pid[$p]=$!
done
for p in "${paths[@]}"; do
  wait "${build_pid[$p]}"
  rc=$?
  record "$p-build" "$rc" $((SECONDS - build_start[$p]))
  [ "$rc" -eq 0 ] && built[$p]=1
done

# Correctness, the paths side by side (the card has room for all; nothing here is timed): the accuracy gates and
# every test of tests/edgellm/test_cuda_*.py (GPU, slow and fast: -o addopts=) on each path's library.
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
checks() {  # checks PATH: its stages, one after the other, into $out/PATH-summary.txt
  local p="$1" dir="$build_root/$1" sum="$out/$1-summary.txt"
  step -s "$sum" "$p-attention_accuracy" timeout 300 "$dir/attention_accuracy"
  step -s "$sum" "$p-gemm_accuracy" timeout 300 "$dir/gemm_accuracy"
  step -s "$sum" "$p-prefill_accuracy" timeout 300 "$dir/prefill_accuracy"
  step -s "$sum" "$p-pytest" env EDGELLM_TEST_LIBRARY="$dir/libedgellm.so" EDGELLM_LIB="$dir/libedgellm.so" \
    timeout 400 "$python" -m pytest -q -o addopts= -p no:cacheprovider "$root"/tests/edgellm/test_cuda_*.py
}
declare -A check_pid
for p in "${paths[@]}"; do
  if [ -z "${built[$p]:-}" ]; then
    echo "$p: not built, its stages skipped (see $out/$p-build.log)" | tee -a "$out/summary.txt"
    continue
  fi
  checks "$p" >/dev/null &
  check_pid[$p]=$!
done
for p in "${!check_pid[@]}"; do wait "${check_pid[$p]}"; done
for p in "${paths[@]}"; do [ -f "$out/$p-summary.txt" ] && cat "$out/$p-summary.txt" | tee -a "$out/summary.txt"; done

# Rates, one path at a time (alone on the card).
models="$build_root/models"
mkdir -p "$models"
for p in "${paths[@]}"; do
  [ -n "${built[$p]:-}" ] || continue
  lib="$build_root/$p/libedgellm.so"
  step "$p-decode" env EDGELLM_LIB="$lib" timeout 300 "$python" "$root/benchmarks/gpu_step.py" \
    --presets "$preset" --builds fused --tokens 128 --repeats 3 --dir "$models"
  step "$p-prefill" env EDGELLM_LIB="$lib" timeout 300 "$python" "$root/benchmarks/gpu_prefill.py" \
    --models "$preset" --lengths 512,2048 --runs 3 --new-tokens 32 --backends edgellm --dir "$models" \
    --out "$out/$p-prefill.csv"
done

# Decode and prefill rates of each path side by side, and each against the first path (native by default).
"$python" - "$out" "$preset" "${paths[@]}" <<'EOF' | tee -a "$out/summary.txt"
import csv, pathlib, sys
out, preset, paths = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
def decode_tok_s(p):
    log = out / f"{p}-decode.log"
    for line in log.read_text().splitlines() if log.is_file() else []:
        f = line.split()
        if len(f) >= 5 and f[0] == preset and f[2] == "fused":
            return float(f[4])
    return None
def prefill_tok_s(p):
    rows = out / f"{p}-prefill.csv"
    if not rows.is_file():
        return {}
    ttft = {}  # prompt tok/s = N / the median TTFT, as gpu_prefill.py reports it
    for r in csv.DictReader(rows.open()):
        if r.get("backend") == "edgellm" and r.get("in_sweep") == "True" and r.get("ttft_ms"):
            ttft.setdefault(int(r["n_prompt"]), []).append(float(r["ttft_ms"]))
    return {n: n / (sorted(v)[len(v) // 2] * 1e-3) for n, v in sorted(ttft.items())}
rates = {p: (decode_tok_s(p), prefill_tok_s(p)) for p in paths}
lengths = sorted({n for _, pf in rates.values() for n in pf})
head = f"{'path':<8} {'decode tok/s':>13}" + "".join(f" {'pp' + str(n) + ' tok/s':>13}" for n in lengths)
print(f"\n{preset}: median tok/s by path (ratio to {paths[0]} in brackets)\n{head}")
base_d, base_p = rates[paths[0]]
def cell(v, b):
    if v is None:
        return f" {'-':>13}"
    return f" {v:8.0f}" + (f" ({v / b:.2f})" if b else " " * 7)
for p, (d, pf) in rates.items():
    print(f"{p:<8}" + cell(d, base_d) + "".join(cell(pf.get(n), base_p.get(n)) for n in lengths))
EOF
failed=$(grep -c ' rc=[1-9]' "$out/summary.txt")
echo "total ${SECONDS}s, failed stages: $failed (logs in $out)" | tee -a "$out/summary.txt"
exit "$failed"
