// Pieces shared by the two decode kernels (CUDA cores: flash_decode.cu; tensor cores: flash_decode_tc.cu).
#pragma once

#include "attention_common.cuh"

namespace edgellm {

struct DecodeParams {
    const float *q;
    const void *k, *v;
    float *o;
    int64_t qb, qh, kb, kr, kh, vb, vr, vh, ob, oh;
    int seq_k, n_heads, group, head_chunks;
    float scale_log2;  // softmax scale times log2(e)
    // When set, the cache holds *pos + 1 rows (at most seq_k): read on the device, so that a decode step captured in
    // a CUDA graph attends to one more row at every replay.
    const int *pos;
    // When set, the output is also written as quantized activations (edgellm_gemv.h) of the
    // [batch, n_heads * head_dim] rows, exactly as edgellm_quantize_activations would make them from o: the next projection reads them.
    int8_t *xq;
    float2 *xds;
    // window > 0: only the last `window` of the cache rows are attended to (a sliding-window layer).
    int window;
    // softcap > 0: a score s (in the log2 domain, already times scale * log2(e)) becomes c * tanh(s / c) with
    // c = softcap * log2(e), which is softcap * tanh(scale * q.k / softcap) carried into the log2 domain.
    float softcap_log2, inv_softcap_log2;
};

// The first cache row a query attends to when the cache holds `rows` rows: the window's first, or row 0.
__device__ __forceinline__ int first_row(const DecodeParams &p, int rows) {
    return p.window > 0 ? max(0, rows - p.window) : 0;
}

// Quantized output of 4 consecutive elements held by each of 8 consecutive lanes (one chunk of 32 per 8 lanes);
// every lane of the warp calls it.  The arithmetic of quantize_chunk: the same scale, rounding, digits and sum.
__device__ __forceinline__ void quantize_chunk_x4(float4 v, int64_t chunk, int sub, bool writer, int8_t *xq,
                                                  float2 *xds) {
    float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
#pragma unroll
    for (int off = 4; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float s = amax / kActMax;
    const int u0 = act_round(v.x, s), u1 = act_round(v.y, s), u2 = act_round(v.z, s), u3 = act_round(v.w, s);
    int sum = u0 + u1 + u2 + u3;
#pragma unroll
    for (int off = 4; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (!writer) return;
    const int2 d0 = act_digits(u0), d1 = act_digits(u1), d2 = act_digits(u2), d3 = act_digits(u3);
    // Elements 4 sub .. 4 sub + 3 lie in one 16-byte run of their plane: one aligned 4-byte store per digit.
    *reinterpret_cast<char4 *>(xq + EDGELLM_ACT_OFFSET(chunk, 0, 4 * sub)) =
        make_char4((signed char)d0.x, (signed char)d1.x, (signed char)d2.x, (signed char)d3.x);
    *reinterpret_cast<char4 *>(xq + EDGELLM_ACT_OFFSET(chunk, 1, 4 * sub)) =
        make_char4((signed char)d0.y, (signed char)d1.y, (signed char)d2.y, (signed char)d3.y);
    if (sub == 0) xds[chunk] = make_float2(s, s * sum);
}

__device__ __forceinline__ int cache_rows(const DecodeParams &p) { return p.pos ? min(*p.pos + 1, p.seq_k) : p.seq_k; }

// Keys per split and splits in use for a cache length read on the device (a replayed graph, whose grid has
// `num_splits` splits sized once for the longest cache): the rows are shared evenly among the splits in whole steps
// of `step` keys, but no split takes fewer than kMinSplitKeys (shorter ones cost more to merge than they gain), so a
// short cache uses fewer splits and the blocks past them leave.  The same for every block of the grid.
#ifndef EDGELLM_DECODE_MIN_SPLIT
#define EDGELLM_DECODE_MIN_SPLIT 128
#endif
constexpr int kMinSplitKeys = EDGELLM_DECODE_MIN_SPLIT;
struct SplitPlan {
    int len, used;
};
__device__ __forceinline__ SplitPlan split_plan(int rows, int num_splits, int step) {
    const int even = (rows + num_splits - 1) / num_splits;
    const int len = (max(even, kMinSplitKeys) + step - 1) / step * step;
    return SplitPlan{len, min(num_splits, (rows + len - 1) / len)};
}

// The device's SM count, asked once (a decode call is a few microseconds of GPU time; the query costs the host about
// as much); 0 where it cannot be read.  Both decode kernels size their grids from it.
inline int multiprocessor_count() {
    static int sms = 0;
    if (sms == 0) {
        int dev = 0, count = 0;
        if (cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess)
            sms = count;
    }
    return sms;
}

// The weight of a split in the merge; an empty split (lse -inf) weighs nothing.
__device__ __forceinline__ float split_weight(float lse, float mx) { return lse == -INFINITY ? 0.f : exp2f(lse - mx); }

constexpr int kMaxMergeRows = 16;  // query heads merged by one block at most (the tensor-core decode's 16 rows)

// Called by every thread of a split's block once its partials are written.  The last block of this (sequence, head
// group) to arrive merges the first num_splits splits (the partials of a head are `stride` rows apart: the grid's
// split count, of which a short cache may use fewer): partials are published with a fence before the ticket is taken
// and read back past L1 (__ldcg); the counter is reset for the next call.  s_lse holds n_rows * num_splits floats.
template <int D, int kThreads>
__device__ void merge_if_last(const DecodeParams &p, int b, int h0, int n_rows, int num_splits, int stride,
                              const float *part_o, const float *part_lse, int *counter, float *s_lse, float *s_max) {
    __shared__ int s_last;
    const int tid = threadIdx.x;
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        s_last = atomicAdd(counter, 1) == num_splits - 1;
        if (s_last) *counter = 0;
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    // Log-sum-exps of every split into shared memory (one parallel read), then per head the largest and the sum of
    // the weights exp2(lse - max).
    for (int i = tid; i < n_rows * num_splits; i += kThreads)
        s_lse[i] = __ldcg(part_lse + ((int64_t)b * p.n_heads + h0 + i / num_splits) * stride + i % num_splits);
    __syncthreads();
    __shared__ float s_wsum[kMaxMergeRows];
    for (int h = tid; h < n_rows; h += kThreads) {
        float mx = -INFINITY, sum = 0.f;
        for (int sp = 0; sp < num_splits; ++sp) mx = fmaxf(mx, s_lse[h * num_splits + sp]);
        for (int sp = 0; sp < num_splits; ++sp) sum += split_weight(s_lse[h * num_splits + sp], mx);
        s_max[h] = mx;
        s_wsum[h] = sum;
    }
    __syncthreads();
    // Each thread owns 4 consecutive output elements (one 16-byte load per split); where there are fewer such
    // vectors than threads, the splits are shared among `parts` threads per vector and summed through shared memory.
    // The partials are L2 reads with a latency each, so the more in flight per thread, the shorter the merge.
    constexpr int V = 4;
    const int vecs = n_rows * (D / V);
    const int parts = vecs >= kThreads ? 1 : kThreads / vecs;
    __shared__ float4 s_num[kThreads];
    for (int v0 = 0; v0 < vecs; v0 += kThreads) {
        const int v = v0 + tid % (parts == 1 ? kThreads : vecs), part = parts == 1 ? 0 : tid / vecs;
        float4 num = make_float4(0.f, 0.f, 0.f, 0.f);
        const int h = v / (D / V);
        if (v < vecs && part < parts) {
            const int64_t row0 = ((int64_t)b * p.n_heads + h0 + h) * stride;
            const float mx = s_max[h];
#pragma unroll 8
            for (int sp = part; sp < num_splits; sp += parts) {
                const float w = split_weight(s_lse[h * num_splits + sp], mx);
                const float4 o = __ldcg(reinterpret_cast<const float4 *>(part_o + (row0 + sp) * D) + v % (D / V));
                num.x = fmaf(w, o.x, num.x), num.y = fmaf(w, o.y, num.y);
                num.z = fmaf(w, o.z, num.z), num.w = fmaf(w, o.w, num.w);
            }
        }
        if (parts > 1) {
            s_num[tid] = num;
            __syncthreads();
            if (tid < vecs) {
                for (int q = 1; q < parts; ++q) {
                    const float4 o = s_num[q * vecs + tid];
                    num.x += o.x, num.y += o.y, num.z += o.z, num.w += o.w;
                }
            }
        }
        const bool writer = v < vecs && part == 0;
        float4 out = make_float4(0.f, 0.f, 0.f, 0.f);
        if (writer) {
            const float sum = s_wsum[h];
            out = make_float4(num.x / sum, num.y / sum, num.z / sum, num.w / sum);
            float *o = p.o + b * p.ob + (int64_t)(h0 + h) * p.oh + (v % (D / V)) * V;
            o[0] = out.x, o[1] = out.y, o[2] = out.z, o[3] = out.w;
        }
        if (p.xq) {  // uniform: every lane of every warp takes part in the chunk's shuffles
            const int64_t element = ((int64_t)b * p.n_heads + h0 + h) * D + (v % (D / V)) * V;
            quantize_chunk_x4(out, element / 32, (element % 32) / V, writer, p.xq, p.xds);
        }
    }
}

// The tensor-core decode (fp16/bf16 K and V): up to 16 query heads of one KV head are the 16 rows of an m16n8k16
// tile.  Returns EDGELLM_OK or an error code; launches one kernel.
int launch_decode_tc(const DecodeParams &p, edgellm_dtype kv_dtype, int head_dim, int batch, int n_kv_heads,
                     int num_splits, float *part_o, float *part_lse, int *counters, int rows, cudaStream_t stream);
int decode_tc_splits(edgellm_dtype kv_dtype, int head_dim, int batch, int n_kv_heads, int head_chunks, int seq_k,
                     bool cap);
constexpr int kTcRows = 16;  // query heads per tensor-core block

}  // namespace edgellm
