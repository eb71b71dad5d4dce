// Shared pieces of the attention kernels: element types, PTX wrappers for tensor cores and async copies, errors.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <cmath>
#include <utility>

#include "edgellm_attention.h"
#include "edgellm_gemv.h"

// The architecture whose code paths the device code takes: the one it is compiled for, or an older one named by
// EDGELLM_FORCE_ARCH (make FORCE_ARCH=75), so that a newer card runs and tests the older card's paths: tensor-core
// products, copies, launch chaining and the shared-memory limit all behave as on that architecture.  The paths differ
// at 75 (mma m16n8k8 for fp16, CUDA-core FMAs for bf16, synchronous copies), 80 (mma m16n8k16, cp.async) and 90
// (programmatic dependent launch); 86, 87 and 89 take the 80 paths with their own shared-memory limits.
#if defined(EDGELLM_FORCE_ARCH) && EDGELLM_FORCE_ARCH != 75 && EDGELLM_FORCE_ARCH != 80 && EDGELLM_FORCE_ARCH != 86 && \
    EDGELLM_FORCE_ARCH != 87 && EDGELLM_FORCE_ARCH != 89
#error "EDGELLM_FORCE_ARCH is one of 75, 80, 86, 87, 89 (an architecture older than 90 whose paths a newer card takes)"
#endif
#if defined(__CUDA_ARCH__) && defined(EDGELLM_FORCE_ARCH) && EDGELLM_FORCE_ARCH * 10 < __CUDA_ARCH__
#define EDGELLM_PATH_ARCH (EDGELLM_FORCE_ARCH * 10)
#elif defined(__CUDA_ARCH__)
#define EDGELLM_PATH_ARCH __CUDA_ARCH__
#else
#define EDGELLM_PATH_ARCH 0  // host code: device paths are not taken here
#endif
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 750
#error "EdgeLLM's kernels need compute capability 7.5 or newer (ldmatrix, mma m16n8k8)"
#endif

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

// D = A(16x16, row) * B(16x8, col) + D with fp32 accumulation, for fp16 or bf16 operands, as mma.sync m16n8k16
// lays out its fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"): with g = lane / 4
// and t = lane % 4, a[0] holds A[g][2t..2t+1], a[1] A[g+8][2t..2t+1], a[2] A[g][2t+8..2t+9], a[3] A[g+8][2t+8..2t+9];
// b[0] holds B[2t..2t+1][g], b[1] B[2t+8..2t+9][g]; d[0..1] are D[g][2t..2t+1], d[2..3] D[g+8][2t..2t+1].
// Each architecture takes the best instruction it has (mma_16816 below picks one).

// sm_80 and newer: one m16n8k16 instruction.
template <typename T> __device__ __forceinline__ void mma_16816_sm80(float *d, const uint32_t *a, const uint32_t *b);
template <> __device__ __forceinline__ void mma_16816_sm80<__half>(float *d, const uint32_t *a, const uint32_t *b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <>
__device__ __forceinline__ void mma_16816_sm80<__nv_bfloat16>(float *d, const uint32_t *a, const uint32_t *b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// sm_75, fp16: two m16n8k8 (k 0..7, then k 8..15).  An m16n8k8 A fragment is a[0] = A[g][2t..2t+1] and
// a[1] = A[g+8][2t..2t+1], its B fragment B[2t..2t+1][g], its accumulators those of m16n8k16: so the first half is
// {a[0], a[1]} x b[0] and the second {a[2], a[3]} x b[1], with the same d.
__device__ __forceinline__ void mma_1688_f16(float *d, uint32_t a0, uint32_t a1, uint32_t b0) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(b0));
}

// sm_75, bf16: Turing's tensor cores take no bf16, and rounding bf16 to fp16 would overflow past 65504 and lose the
// small values (bf16 keeps fp32's exponent range), so the product is computed on CUDA cores: every product of two
// bf16 values is exact in fp32, summed in fp32 like the tensor cores' accumulation.  Lane 4g+u holds A's rows g, g+8
// and B's column g at the same k (2u, 2u+1, 2u+8, 2u+9), so D[r][n] is the sum over u of lane 4g+u's A pieces times
// lane 4n+u's B pieces: 8 shuffles and 16 FMAs per u.  Correct everywhere, slower than the fp16 path.
__device__ __forceinline__ float bf16_low(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_high(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ float dot2_bf16(uint32_t a, uint32_t b, float acc) {
    return fmaf(bf16_high(a), bf16_high(b), fmaf(bf16_low(a), bf16_low(b), acc));
}
__device__ __forceinline__ void mma_16816_bf16_fma(float *d, const uint32_t *a, const uint32_t *b) {
    unsigned lane;
    asm("mov.u32 %0, %%laneid;" : "=r"(lane));
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
        const int la = 4 * g + u, lb0 = 4 * (2 * t) + u, lb1 = 4 * (2 * t + 1) + u;
        const uint32_t a0 = __shfl_sync(0xffffffffu, a[0], la), a1 = __shfl_sync(0xffffffffu, a[1], la);
        const uint32_t a2 = __shfl_sync(0xffffffffu, a[2], la), a3 = __shfl_sync(0xffffffffu, a[3], la);
        const uint32_t b00 = __shfl_sync(0xffffffffu, b[0], lb0), b01 = __shfl_sync(0xffffffffu, b[1], lb0);
        const uint32_t b10 = __shfl_sync(0xffffffffu, b[0], lb1), b11 = __shfl_sync(0xffffffffu, b[1], lb1);
        d[0] = dot2_bf16(a2, b01, dot2_bf16(a0, b00, d[0]));  // D[g][2t]
        d[1] = dot2_bf16(a2, b11, dot2_bf16(a0, b10, d[1]));  // D[g][2t+1]
        d[2] = dot2_bf16(a3, b01, dot2_bf16(a1, b00, d[2]));  // D[g+8][2t]
        d[3] = dot2_bf16(a3, b11, dot2_bf16(a1, b10, d[3]));  // D[g+8][2t+1]
    }
}
template <typename T> __device__ __forceinline__ void mma_16816_sm75(float *d, const uint32_t *a, const uint32_t *b);
template <> __device__ __forceinline__ void mma_16816_sm75<__half>(float *d, const uint32_t *a, const uint32_t *b) {
    mma_1688_f16(d, a[0], a[1], b[0]);
    mma_1688_f16(d, a[2], a[3], b[1]);
}
template <>
__device__ __forceinline__ void mma_16816_sm75<__nv_bfloat16>(float *d, const uint32_t *a, const uint32_t *b) {
    mma_16816_bf16_fma(d, a, b);
}

// Called by all 32 lanes of a warp.
template <typename T> __device__ __forceinline__ void mma_16816(float *d, const uint32_t *a, const uint32_t *b) {
#if EDGELLM_PATH_ARCH >= 800
    mma_16816_sm80<T>(d, a, b);
#else
    mma_16816_sm75<T>(d, a, b);
#endif
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

// Global->shared copies of 16 (or 8) bytes; src_bytes < the size fills the rest with zeros (0: rows past the end,
// and src is then not read).  cp_async_commit() closes a group of copies, cp_async_wait<N>() waits until at most N
// groups of this thread are still in flight; other threads see the data after a barrier, as with any shared store.
// sm_80 and newer copy asynchronously (cp.async, bypassing registers).  sm_75 has no cp.async: the copy is a load
// and a shared store that have completed when the call returns, and commit/wait have nothing left to do.  Every
// caller is correct under both: an asynchronous copy may land at any time between its issue and the wait, and a
// synchronous one is the case where it lands at once (no buffer is written before the barrier that ends its readers'
// use of it, and none is read before the wait and barrier that follow its copy).
__device__ __forceinline__ void cp_async_16_sm80(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_8_sm80(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
template <typename Word>  // uint4 or uint2
__device__ __forceinline__ void copy_sync(uint32_t dst, const void *src, int src_bytes) {
    Word w{};
    if (src_bytes >= (int)sizeof(Word)) {
        const Word *from = reinterpret_cast<const Word *>(src);
        w = sizeof(Word) == 16 ? __ldcg(from) : __ldca(from);  // L2 only (cp.async.cg) or L1 too (cp.async.ca)
    } else if (src_bytes > 0) {  // a partial copy: the leading src_bytes bytes, zeros after them
        unsigned char *bytes = reinterpret_cast<unsigned char *>(&w);
        for (int i = 0; i < src_bytes; ++i) bytes[i] = static_cast<const unsigned char *>(src)[i];
    }
    *static_cast<Word *>(__cvta_shared_to_generic(dst)) = w;
}
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void *src, int src_bytes) {
#if EDGELLM_PATH_ARCH >= 800
    cp_async_16_sm80(dst, src, src_bytes);
#else
    copy_sync<uint4>(dst, src, src_bytes);
#endif
}
__device__ __forceinline__ void cp_async_8(uint32_t dst, const void *src, int src_bytes) {
#if EDGELLM_PATH_ARCH >= 800
    cp_async_8_sm80(dst, src, src_bytes);
#else
    copy_sync<uint2>(dst, src, src_bytes);
#endif
}
// 4-byte global->shared copy (the tensor-core GEMV's block scales); sm_75: a load and a store.
__device__ __forceinline__ void cp_async_4(uint32_t dst, const void *src) {
#if EDGELLM_PATH_ARCH >= 800
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(src));
#else
    *static_cast<uint32_t *>(__cvta_shared_to_generic(dst)) = __ldg(static_cast<const uint32_t *>(src));
#endif
}

// The decode GEMV's integer tensor-core product (gemv_tc.cuh), C += A B on one m16n8k32 tile: A 16 x 32 (u8, or s8 where kSignedA), B 32 x 8 (s8), C int32.  Turing has no
// m16n8k32; there the same fragments go through four m8n8k16 (rows 0-7 and 8-15, k 0-15 and 16-31).
template <bool kSignedA>
__device__ __forceinline__ void imma_16832(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                           uint32_t b0, uint32_t b1) {
#if EDGELLM_PATH_ARCH >= 800
    if constexpr (kSignedA)
        asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};"
            : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    else
        asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};"
            : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
#define EDGELLM_IMMA_8816(T, lo, hi, a, b)                                                              \
    asm("mma.sync.aligned.m8n8k16.row.col.s32." T ".s8.s32 {%0, %1}, {%2}, {%3}, {%0, %1};"           \
        : "+r"(lo), "+r"(hi)                                                                            \
        : "r"(a), "r"(b))
    if constexpr (kSignedA) {
        EDGELLM_IMMA_8816("s8", c[0], c[1], a0, b0);
        EDGELLM_IMMA_8816("s8", c[0], c[1], a2, b1);
        EDGELLM_IMMA_8816("s8", c[2], c[3], a1, b0);
        EDGELLM_IMMA_8816("s8", c[2], c[3], a3, b1);
    } else {
        EDGELLM_IMMA_8816("u8", c[0], c[1], a0, b0);
        EDGELLM_IMMA_8816("u8", c[0], c[1], a2, b1);
        EDGELLM_IMMA_8816("u8", c[2], c[3], a1, b0);
        EDGELLM_IMMA_8816("u8", c[2], c[3], a3, b1);
    }
#undef EDGELLM_IMMA_8816
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if EDGELLM_PATH_ARCH >= 800
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
#if EDGELLM_PATH_ARCH >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

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

// 1 / RMS(row) of a row of n values: the sum of squares in thread order, then block_sum.  Every row-wise RMSNorm
// kernel takes it from here, so that their results agree bit for bit.
__device__ __forceinline__ float row_rms_scale(const float *row, int n, float eps, float *scratch) {
    float ss = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss = fmaf(row[i], row[i], ss);
    return rsqrtf(block_sum(ss, scratch) / n + eps);
}

// Activations for the quantized GEMV (edgellm_gemv.h), 16 bits per value in two int8 digits: per chunk of 32 values
// the scale s = max |x| / kActMax, u = round(x / s) and u = 254 hi + lo with |hi|, |lo| <= 127; the digits are stored
// in the planes of EDGELLM_ACT_OFFSET (edgellm_gemv.h), with (s, s * sum of u).  Int8 digits keep the products on dp4a (two per four
// weights); 16-bit resolution keeps the rounding of the activations ~250x below int8's, where top-1 choices between
// near-tied logits no longer flip against a float engine.
// 32384: |u| / 254 then rounds to at most 127 (at 32385 = 127.5 * 254 it could round to 128).
constexpr float kActMax = 254.f * 127.f + 126.f;

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
    xq[EDGELLM_ACT_OFFSET(chunk, 0, lane)] = (int8_t)dg.x;
    xq[EDGELLM_ACT_OFFSET(chunk, 1, lane)] = (int8_t)dg.y;
    if (lane == 0) xds[chunk] = make_float2(s, s * sum);
}

// RoPE of pair i of a head at `position`: the angle in double (positions up to 128k keep their precision), cos and
// sin scaled by attn_factor (phi3's rope.scaling.attn_factor; 1 leaves them as they are) in double and rounded to
// float once; factors (llama3's frequency divisors) optional.  Every rotation of the decoder takes its (cos, sin)
// from here and applies it with rope_apply, so that the separate kernel, the GEMV epilogue and a table made once a
// step (edgellm_rope_table) agree bit for bit.
__device__ __forceinline__ float2 rope_cos_sin(int i, int D, int position, float base, const float *factors,
                                               float attn_factor) {
    double inv_freq = pow((double)base, -2.0 * i / D);
    if (factors) inv_freq /= (double)factors[i];
    double s, c;
    sincos((double)position * inv_freq, &s, &c);
    return make_float2((float)(attn_factor * c), (float)(attn_factor * s));
}
__device__ __forceinline__ float2 rope_apply(float xa, float xb, float2 cs) {
    return make_float2(xa * cs.x - xb * cs.y, xa * cs.y + xb * cs.x);
}

// Programmatic dependent launch (Hopper and newer): a kernel launched with launch_chained() may be scheduled while
// the kernel before it in the stream still runs, and waits on the device, before its first memory access, for that
// kernel to finish and its writes to be visible (chained_start(), the first statement of every such kernel).  A
// decode step is hundreds of short kernels; this hides most of the gap between them.  Set EDGELLM_NO_PDL=1 to
// launch them one after the other (the ordering then comes from the stream alone; results are the same).
__device__ __forceinline__ void chained_start() {
#if EDGELLM_PATH_ARCH >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

bool chained_launches_enabled();  // compute capability 9.0 or newer, and EDGELLM_NO_PDL unset

#ifdef EDGELLM_FORCE_ARCH
constexpr bool kChainingBuilt = false;  // every forced architecture is older than 90: its kernels never wait
#else
constexpr bool kChainingBuilt = true;
#endif

// Whether the device code of `kernel` waits in chained_start(): compiled from PTX of 9.0 or newer.  A card newer
// than every architecture built (say a build for 80 on an H100) runs its code JIT-compiled from older PTX, without
// the wait, and must then not be launched early.  Every kernel of the library is built with the same settings, so the
// answer for one kernel of a signature holds for the others.
template <typename... Params> inline bool chaining_compiled_in(void (*kernel)(Params...)) {
    static const bool compiled = [&] {
        cudaFuncAttributes attr;
        return cudaFuncGetAttributes(&attr, kernel) == cudaSuccess && attr.ptxVersion >= 90;
    }();
    return compiled;
}

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
    const bool chained = kChainingBuilt && chained_launches_enabled() && chaining_compiled_in(kernel);
    cfg.attrs = attr, cfg.numAttrs = chained ? 1 : 0;
    cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// The most shared memory (static and dynamic) one block may have on this device, after the opt-in, or on the forced
// architecture where one is forced (CUDA C++ Programming Guide, "Technical Specifications per Compute Capability").
constexpr int smem_optin_bytes(int arch) {
    return arch == 75 ? 64 * 1024 : arch == 86 || arch == 89 ? 99 * 1024 : arch == 80 || arch == 87 ? 163 * 1024 : 0;
}
#ifdef EDGELLM_FORCE_ARCH
constexpr int kForcedSmemBytes = smem_optin_bytes(EDGELLM_FORCE_ARCH);
#else
constexpr int kForcedSmemBytes = 0;  // none: the device's own limit
#endif
inline int max_block_smem_bytes() {
    static const int bytes = [] {
        int dev = 0, optin = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
            optin = 48 * 1024;  // what every architecture allows without the opt-in
        return kForcedSmemBytes > 0 && kForcedSmemBytes < optin ? kForcedSmemBytes : optin;
    }();
    return bytes;
}

#ifdef EDGELLM_FORCE_ARCH
// With an architecture forced, a kernel's request for more dynamic shared memory than that architecture allows fails
// as it fails there (cudaErrorInvalidValue), so that a newer card's test of the older paths meets the older limit
// too.  Every cudaFuncSetAttribute of the kernel files goes through here (the macro below); the parentheses call the
// runtime's own.
template <typename T> inline cudaError_t func_set_attribute_forced(T *func, cudaFuncAttribute attr, int value) {
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        cudaFuncAttributes fa;
        const cudaError_t err = (cudaFuncGetAttributes)(&fa, func);
        if (err != cudaSuccess) return err;
        if (value + (long long)fa.sharedSizeBytes > max_block_smem_bytes()) return cudaErrorInvalidValue;
    }
    return (cudaFuncSetAttribute)(func, attr, value);
}
#define cudaFuncSetAttribute(...) ::edgellm::func_set_attribute_forced(__VA_ARGS__)  // variadic: a template's commas
#endif

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
