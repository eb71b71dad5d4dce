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
};

__device__ __forceinline__ int cache_rows(const DecodeParams &p) { return p.pos ? min(*p.pos + 1, p.seq_k) : p.seq_k; }

// Called by every thread of a split's block once its partials are written.  The last block of this (sequence, head
// group) to arrive merges all the splits: partials are published with a fence before the ticket is taken and read
// back past L1 (__ldcg); the counter is reset for the next call.  s_lse holds n_rows * num_splits floats.
template <int D, int kThreads>
__device__ void merge_if_last(const DecodeParams &p, int b, int h0, int n_rows, int num_splits, const float *part_o,
                              const float *part_lse, int *counter, float *s_lse, float *s_max) {
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
    // Log-sum-exps of every split into shared memory (one parallel read), then each output element sums its splits
    // with the loads of several splits in flight.
    for (int i = tid; i < n_rows * num_splits; i += kThreads)
        s_lse[i] = __ldcg(part_lse + ((int64_t)b * p.n_heads + h0) * num_splits + i);
    __syncthreads();
    for (int h = tid; h < n_rows; h += kThreads) {
        float mx = -INFINITY;
        for (int sp = 0; sp < num_splits; ++sp) mx = fmaxf(mx, s_lse[h * num_splits + sp]);
        s_max[h] = mx;
    }
    __syncthreads();
    for (int idx = tid; idx < n_rows * D; idx += kThreads) {
        const int h = idx / D, d = idx % D;
        const int64_t row0 = ((int64_t)b * p.n_heads + h0 + h) * num_splits;
        const float mx = s_max[h];
        float sum = 0.f, num = 0.f;
#pragma unroll 8
        for (int sp = 0; sp < num_splits; ++sp) {
            const float lse = s_lse[h * num_splits + sp];
            const float w = lse == -INFINITY ? 0.f : exp2f(lse - mx);  // an empty split weighs nothing
            sum += w;
            num = fmaf(w, __ldcg(part_o + (row0 + sp) * D + d), num);
        }
        p.o[b * p.ob + (int64_t)(h0 + h) * p.oh + d] = num / sum;
    }
}

// The tensor-core decode (fp16/bf16 K and V): up to 16 query heads of one KV head are the 16 rows of an m16n8k16
// tile.  Returns EDGELLM_OK or an error code; launches one kernel.
int launch_decode_tc(const DecodeParams &p, edgellm_dtype kv_dtype, int head_dim, int batch, int n_kv_heads,
                     int num_splits, float *part_o, float *part_lse, int *counters, cudaStream_t stream);
int decode_tc_splits(edgellm_dtype kv_dtype, int head_dim, int batch, int n_kv_heads, int head_chunks, int seq_k);
constexpr int kTcRows = 16;  // query heads per tensor-core block

}  // namespace edgellm
