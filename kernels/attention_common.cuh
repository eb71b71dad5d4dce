// Shared pieces of the attention kernels: element types, PTX wrappers for tensor cores and async copies, errors.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <cmath>
#include <utility>

#include "edgellm_attention.h"

namespace edgellm {

// Conversions between the stored element types and the fp32 they are computed in.
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Two fp32 values packed into one 32-bit register of two 16-bit elements (the A operand of P.V).
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}

// D = A(16x16, row) * B(16x8, col) + D with fp32 accumulation, for fp16 or bf16 operands (sm_80+).
template <typename T> __device__ __forceinline__ void mma_16816(float *d, const uint32_t *a, const uint32_t *b);
template <> __device__ __forceinline__ void mma_16816<__half>(float *d, const uint32_t *a, const uint32_t *b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <> __device__ __forceinline__ void mma_16816<__nv_bfloat16>(float *d, const uint32_t *a, const uint32_t *b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8x8 matrices of 16-bit elements from shared memory; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t *r, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t *r, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// 16-byte global->shared copy that bypasses registers; src_bytes == 0 writes zeros (rows past the end).
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Element offset of 16-byte chunk `chunk` of row `row` in a swizzled [rows][D] tile: the chunk index is XORed with the
// row's low 3 bits, so the 8 rows an ldmatrix reads at one logical column hit 8 different bank groups.
template <int D>
__device__ __forceinline__ int swizzle(int row, int chunk) {
    return row * D + ((chunk ^ (row & 7)) << 3);
}

__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// The CUDA error of the last failed call, kept for edgellm_last_cuda_error().
void set_cuda_error(cudaError_t err);

// Threads of the row-normalising kernels (rmsnorm_kernel, rmsnorm_quantize_kernel): one block per row, the same
// count in both so that they sum in the same order.
constexpr int kNormThreads = 1024;

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ __forceinline__ float block_sum(float v, float *scratch) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    __syncthreads();  // scratch may still be read from a previous call in this block
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.f;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// Activations for the quantized GEMV (edgellm_gemv.h), 16 bits per value in two int8 digits: per chunk of 32 values
// the scale s = max |x| / kActMax, u = round(x / s) and u = 254 hi + lo with |hi|, |lo| <= 127; the chunk is stored as
// its 32 hi bytes then its 32 lo bytes, with (s, s * sum of u).  Int8 digits keep the products on dp4a (two per four
// weights); 16-bit resolution keeps the rounding of the activations ~250x below int8's, where top-1 choices between
// near-tied logits no longer flip against a float engine.
// 32384: |u| / 254 then rounds to at most 127 (at 32385 = 127.5 * 254 it could round to 128).
constexpr float kActMax = 254.f * 127.f + 126.f;
constexpr int kActChunkBytes = 64;               // bytes of xq per chunk of 32 values

// The two digits of u (|u| <= kActMax): hi = round(u / 254), lo = u - 254 hi.
__device__ __forceinline__ int2 act_digits(int u) {
    const int hi = __float2int_rn((float)u * (1.f / 254.f));
    return make_int2(hi, u - 254 * hi);
}
__device__ __forceinline__ int act_round(float v, float s) { return s == 0.f ? 0 : __float2int_rn(v / s); }

// Quantizes one chunk of 32 values held one per lane.  Called by all 32 lanes of a warp.
__device__ __forceinline__ void quantize_chunk(float v, int chunk, int lane, int8_t *xq, float2 *xds) {
    float amax = fabsf(v);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float s = amax / kActMax;
    const int u = act_round(v, s);
    int sum = u;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    const int2 dg = act_digits(u);
    xq[chunk * kActChunkBytes + lane] = (int8_t)dg.x;
    xq[chunk * kActChunkBytes + 32 + lane] = (int8_t)dg.y;
    if (lane == 0) xds[chunk] = make_float2(s, s * sum);
}

// Programmatic dependent launch (Hopper and newer): a kernel launched with launch_chained() may be scheduled while
// the kernel before it in the stream still runs, and waits on the device, before its first memory access, for that
// kernel to finish and its writes to be visible (chained_start(), the first statement of every such kernel).  A
// decode step is hundreds of short kernels; this hides most of the gap between them.  Set EDGELLM_NO_PDL=1 to
// launch them one after the other (the ordering then comes from the stream alone; results are the same).
__device__ __forceinline__ void chained_start() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

bool chained_launches_enabled();  // compute capability 9.0 or newer, and EDGELLM_NO_PDL unset

// kernel<<<grid, block, smem, stream>>>(args...), allowed to start early where chained launches are enabled.
// Errors surface through check_launch().
template <typename... Params, typename... Args>
inline void launch_chained(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                           Args &&...args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr, cfg.numAttrs = chained_launches_enabled() ? 1 : 0;
    cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// Checks the launch just made (configuration errors surface here, not at the next sync).
inline int check_launch() {
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        set_cuda_error(err);
        return EDGELLM_ERR_CUDA;
    }
    return EDGELLM_OK;
}

}  // namespace edgellm
