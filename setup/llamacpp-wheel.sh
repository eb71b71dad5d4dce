#!/usr/bin/env bash
# Build llama-cpp-python (llama.cpp embedded) as a wheel for a CPU target chosen on purpose, never -march=native.
#
#   setup/llamacpp-wheel.sh [--print-args] [--check-amx]      prints the wheel's path (building it once)
#
# Why not llama.cpp's default (GGML_NATIVE=ON): on CPUs that report AMX (Sapphire Rapids and later, most cloud
# machines and CI runners now), the native build compiles ggml's AMX matrix path, which dies on virtual machines
# whose hypervisor advertises the tile instructions but does not run them (SIGILL or SIGSEGV in
# ggml_backend_amx_mul_mat). Runtime dispatch (GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS) is no way out here: it always
# builds an AMX variant and it finds its backends only next to the executable or at a path fixed at build time, which
# a wheel in site-packages does not have.
#
# Settings (environment):
#   LLAMACPP_CPU=portable  (default) x86-64: AVX, AVX2, FMA, F16C, BMI2 (every x86-64 CPU with AVX2, so a wheel
#                          built on a login node also runs on the compute nodes); arm64: armv8.2-a with dotprod and
#                          fp16 (Apple M1 and later, Jetson Orin, Graviton 2 and later).
#   LLAMACPP_CPU=host      the portable set plus every AVX-512 / AVX-VNNI extension this CPU reports (x86-64), or
#                          -mcpu=native (arm64); AMX is never compiled in.
#   LLAMACPP_CUDA=ARCH     also build llama.cpp's CUDA backend for that compute capability (e.g. 90; 75 for a T4,
#                          87 for a Jetson Orin; "native" = the GPU present); needs nvcc and cuBLAS.
#   LLAMACPP_VERSION       default 0.3.36 (pyproject.toml pins the same).
#   LLAMACPP_WHEELS        where wheels are kept, default .wheels/ in the project.
#
# pip's own wheel cache keys a source build by name and version only, not by CMAKE_ARGS: a machine that once built
# a native wheel would get that one back. So the build runs with --no-cache-dir, and the wheel is kept in a folder
# named by the hash of its exact build settings: a change of setting builds anew, a rebuilt venv reuses it.
set -euo pipefail

version="${LLAMACPP_VERSION:-0.3.36}"
cpu="${LLAMACPP_CPU:-portable}"
cuda="${LLAMACPP_CUDA:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
wheels="${LLAMACPP_WHEELS:-$root/.wheels}"
python="${PYTHON:-python3}"

die() { echo "llamacpp-wheel: $*" >&2; exit 2; }

has_flag() { grep -qw "$1" /proc/cpuinfo 2>/dev/null; }

cmake_args() {
  local arch args
  arch="$(uname -m)"
  case "$arch" in
    x86_64|amd64)
      args="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
      args+=" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
      case "$cpu" in
        portable) args+=" -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF" ;;
        host)
          # ggml's AVX512 option compiles with -mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw.
          if has_flag avx512f && has_flag avx512cd && has_flag avx512vl && has_flag avx512dq && has_flag avx512bw; then
            args+=" -DGGML_AVX512=ON"
            has_flag avx512vbmi && args+=" -DGGML_AVX512_VBMI=ON"
            has_flag avx512_vnni && args+=" -DGGML_AVX512_VNNI=ON"
            has_flag avx512_bf16 && args+=" -DGGML_AVX512_BF16=ON"
          fi
          has_flag avx_vnni && args+=" -DGGML_AVX_VNNI=ON"
          ;;
        *) die "LLAMACPP_CPU must be portable or host, not '$cpu'" ;;
      esac
      ;;
    aarch64|arm64)
      case "$cpu" in
        portable) args="-DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16" ;;
        host) args="-DGGML_NATIVE=ON" ;;  # no AMX on arm64; the compiler's native target is safe there
        *) die "LLAMACPP_CPU must be portable or host, not '$cpu'" ;;
      esac
      ;;
    *) die "no portable llama.cpp CPU target is defined for $arch; set CMAKE_ARGS and pip install llama-cpp-python" ;;
  esac
  if [ -n "$cuda" ]; then
    [[ "$cuda" =~ ^([0-9]+|native)$ ]] || die "LLAMACPP_CUDA must be a compute capability such as 90, or native"
    args+=" -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$cuda"
  fi
  echo "$args"
}

# Prints the AMX instructions (tile registers, tdp*, tileloadd, ldtilecfg) found in the CPU libraries of an installed
# llama-cpp-python, and fails if there are any: a regression to a native build cannot hide behind the CPU CI runs on.
# Without objdump (binutils) the check is skipped with a note, unless LLAMACPP_CHECK_STRICT=1 (CI).
check_amx() {
  local libdir found=0 lib
  case "$(uname -m)" in x86_64|amd64) ;; *) echo "no AMX on $(uname -m)"; return 0 ;; esac
  if ! command -v objdump > /dev/null; then
    [ "${LLAMACPP_CHECK_STRICT:-0}" = 1 ] && die "objdump (binutils) is needed for the AMX check"
    echo "llamacpp-wheel: objdump not found, AMX check skipped" >&2
    return 0
  fi
  libdir="$("$python" -c "import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec('llama_cpp').origin), 'lib'))")"
  shopt -s nullglob
  local libs=("$libdir"/libggml-cpu*.so* "$libdir"/libggml.so*)
  [ ${#libs[@]} -gt 0 ] || die "no ggml CPU library under $libdir"
  for lib in "${libs[@]}"; do
    [ -L "$lib" ] && continue
    n=$(objdump -d --no-show-raw-insn "$lib" | grep -cE '%tmm[0-7]|\btdp[a-z0-9]*|\btileloadd|\bldtilecfg|\btilezero' || true)
    echo "$(basename "$lib"): $n AMX instructions"
    [ "$n" -eq 0 ] || found=1
  done
  [ "$found" -eq 0 ] || die "the llama.cpp build contains AMX instructions (a native build?); rebuild with setup/llamacpp-wheel.sh"
}

case "${1:-}" in
  --print-args) cmake_args; exit 0 ;;
  --check-amx) check_amx; exit 0 ;;
  "") ;;
  *) die "unknown option '$1' (use --print-args or --check-amx, or no option to build)" ;;
esac

args="$(cmake_args)"
key="$(printf '%s\n%s\n' "$version" "$args" | sha256sum | cut -c1-12)"
dir="$wheels/llama-cpp-python-$version-$key"
wheel="$(ls "$dir"/llama_cpp_python-"$version"-*.whl 2>/dev/null | head -1 || true)"
if [ -z "$wheel" ]; then
  echo "llamacpp-wheel: building llama-cpp-python $version ($cpu CPU target${cuda:+, CUDA $cuda}; about 7 minutes on 2 cores)" >&2
  echo "llamacpp-wheel: CMAKE_ARGS=$args" >&2
  tmp="$dir.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    "$python" -m pip wheel -q --no-cache-dir --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$version" -w "$tmp" >&2
  printf '%s\n' "$args" > "$tmp/CMAKE_ARGS"
  rm -rf "$dir" && mv "$tmp" "$dir"
  trap - EXIT
  wheel="$(ls "$dir"/llama_cpp_python-"$version"-*.whl | head -1)"
fi
echo "$wheel"
