// Naive attention in three passes (scores, softmax, P.V) with the scores materialised, for one (sequence, head) at a
// time.  With Acc = double it is the accuracy reference; with Acc = float it is the benchmark's naive baseline.
#pragma once

#include "../attention_common.cuh"

namespace edgellm_ref {

template <typename T> __device__ __forceinline__ double as_double(T x) { return (double)edgellm::to_float(x); }
template <> __device__ __forceinline__ double as_double<float>(float x) { return (double)x; }

// S[i][j] = scale * q_i . k_j, or -inf for keys past the causal limit (query i at position i + seq_k - seq_q).
template <typename TQ, typename TK, typename Acc>
__global__ void scores_kernel(const TQ *q, int64_t q_row, const TK *k, int64_t k_row, Acc *S, int seq_q, int seq_k,
                              int D, Acc scale, int causal) {
    __shared__ Acc tq[16][129], tk[16][129];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int i0 = blockIdx.y * 16, j0 = blockIdx.x * 16;
    for (int d = tx; d < D; d += 16) {
        tq[ty][d] = i0 + ty < seq_q ? (Acc)as_double(q[(int64_t)(i0 + ty) * q_row + d]) : Acc(0);
        tk[ty][d] = j0 + ty < seq_k ? (Acc)as_double(k[(int64_t)(j0 + ty) * k_row + d]) : Acc(0);
    }
    __syncthreads();
    const int i = i0 + ty, j = j0 + tx;
    if (i >= seq_q || j >= seq_k) return;
    Acc dot = 0;
    for (int d = 0; d < D; ++d) dot += tq[ty][d] * tk[tx][d];
    const bool masked = causal && j > i + (seq_k - seq_q);
    S[(int64_t)i * seq_k + j] = masked ? -INFINITY : dot * scale;
}

// Row-wise softmax of S in place.
template <typename Acc>
__global__ void softmax_kernel(Acc *S, int seq_k) {
    __shared__ Acc red[256];
    Acc *row = S + (int64_t)blockIdx.x * seq_k;
    const int tid = threadIdx.x;
    Acc m = -INFINITY;
    for (int j = tid; j < seq_k; j += 256) m = row[j] > m ? row[j] : m;
    red[tid] = m;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if (tid < s && red[tid + s] > red[tid]) red[tid] = red[tid + s];
        __syncthreads();
    }
    m = red[0];
    __syncthreads();
    Acc sum = 0;
    for (int j = tid; j < seq_k; j += 256) sum += exp(row[j] - m);
    red[tid] = sum;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];
        __syncthreads();
    }
    sum = red[0];
    for (int j = tid; j < seq_k; j += 256) row[j] = exp(row[j] - m) / sum;
}

// O[i][d] = sum_j P[i][j] v_j[d]; O rows of out_row elements.
template <typename TV, typename Acc, typename TO>
__global__ void pv_kernel(const Acc *P, const TV *v, int64_t v_row, TO *O, int64_t out_row, int seq_q, int seq_k,
                          int D) {
    __shared__ Acc tp[16][17], tv[16][128];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int i = blockIdx.x * 16 + ty;
    Acc acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int j0 = 0; j0 < seq_k; j0 += 16) {
        tp[ty][tx] = (i < seq_q && j0 + tx < seq_k) ? P[(int64_t)i * seq_k + j0 + tx] : Acc(0);
        for (int d = tx; d < D; d += 16) tv[ty][d] = j0 + ty < seq_k ? (Acc)as_double(v[(int64_t)(j0 + ty) * v_row + d]) : Acc(0);
        __syncthreads();
        for (int jj = 0; jj < 16; ++jj)
            for (int c = 0; c < D / 16; ++c) acc[c] += tp[ty][jj] * tv[jj][tx + 16 * c];
        __syncthreads();
    }
    if (i < seq_q)
        for (int c = 0; c < D / 16; ++c) O[(int64_t)i * out_row + tx + 16 * c] = (TO)acc[c];
}

// Attention of one (sequence, head): S must hold seq_q * seq_k elements.
template <typename TQ, typename TK, typename Acc, typename TO>
void attention_one_head(const TQ *q, int64_t q_row, const TK *k, int64_t k_row, const TK *v, int64_t v_row, TO *o,
                        int64_t o_row, Acc *S, int seq_q, int seq_k, int D, double scale, int causal, cudaStream_t s) {
    scores_kernel<TQ, TK, Acc><<<dim3((seq_k + 15) / 16, (seq_q + 15) / 16), dim3(16, 16), 0, s>>>(
        q, q_row, k, k_row, S, seq_q, seq_k, D, (Acc)scale, causal);
    softmax_kernel<Acc><<<seq_q, 256, 0, s>>>(S, seq_k);
    pv_kernel<TK, Acc, TO><<<(seq_q + 15) / 16, dim3(16, 16), 0, s>>>(S, v, v_row, o, o_row, seq_q, seq_k, D);
}

}  // namespace edgellm_ref

namespace edgellm_ref {

// The same three passes for any head dim, with a sliding window and a soft-cap (edgellm_attention.h), in double:
// S[i][j] = softcap * tanh(scale * q_i . k_j / softcap) (or the plain scaled score without a cap), -inf for keys
// after query i's position i + seq_k - seq_q (causal) or before its window (window > 0).  One block per query row,
// threads over keys, then over output elements; nothing tiled, nothing shared: a reference, not a kernel.
__global__ void scores_general_kernel(const double *q, int64_t q_row, const double *k, int64_t k_row, double *S,
                                      int seq_q, int seq_k, int D, double scale, int causal, int window,
                                      double softcap) {
    const int i = blockIdx.y, j = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= seq_q || j >= seq_k) return;
    const double *qi = q + (int64_t)i * q_row, *kj = k + (int64_t)j * k_row;
    double dot = 0;
    for (int d = 0; d < D; ++d) dot += qi[d] * kj[d];
    double s = dot * scale;
    if (softcap > 0) s = softcap * tanh(s / softcap);
    const int qpos = i + (seq_k - seq_q);
    const bool masked = (causal && j > qpos) || (window > 0 && j <= qpos - window);
    S[(int64_t)i * seq_k + j] = masked ? -INFINITY : s;
}

template <typename TO>
__global__ void pv_general_kernel(const double *P, const double *v, int64_t v_row, TO *O, int64_t out_row, int seq_k,
                                  int D) {
    const int i = blockIdx.x;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        double acc = 0;
        for (int j = 0; j < seq_k; ++j) acc += P[(int64_t)i * seq_k + j] * v[(int64_t)j * v_row + d];
        O[(int64_t)i * out_row + d] = (TO)acc;
    }
}

// Attention of one (sequence, head) in double with a window and a soft-cap (0: none); S holds seq_q * seq_k.
inline void attention_one_head_general(const double *q, int64_t q_row, const double *k, int64_t k_row,
                                       const double *v, int64_t v_row, double *o, int64_t o_row, double *S, int seq_q,
                                       int seq_k, int D, double scale, int causal, int window, double softcap,
                                       cudaStream_t s) {
    scores_general_kernel<<<dim3((seq_k + 127) / 128, seq_q), 128, 0, s>>>(q, q_row, k, k_row, S, seq_q, seq_k, D,
                                                                          scale, causal, window, softcap);
    softmax_kernel<double><<<seq_q, 256, 0, s>>>(S, seq_k);
    pv_general_kernel<double><<<seq_q, 128, 0, s>>>(S, v, v_row, o, o_row, seq_k, D);
}

}  // namespace edgellm_ref
