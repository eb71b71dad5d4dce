/* EdgeLLM quantized matrix-vector products: the C API.
 *
 * Weights stay as compact as in the GGUF file: the bytes of its quant blocks, split by field into separate arrays
 * (edgellm.gpu_layout.planar) so that every field is read with aligned, coalesced loads; no byte is added or lost.
 * Activations are quantized per 32 values with an fp32 scale, like llama.cpp's GPU matrix-vector products, but to 16
 * bits instead of 8: each value is two int8 digits, so the products still run on dp4a (two per four weights) with
 * fp32 accumulation, and the rounding of the activations no longer flips top-1 choices between near-tied logits.
 * All pointers are device pointers; calls enqueue on `stream` and return EDGELLM_OK or an EDGELLM_ERR_* code
 * (edgellm_attention.h).
 */
#ifndef EDGELLM_GEMV_H
#define EDGELLM_GEMV_H

#include "edgellm_attention.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ggml's type ids. */
typedef enum {
    EDGELLM_Q4_0 = 2,
    EDGELLM_Q4_1 = 3,
    EDGELLM_Q5_0 = 6,
    EDGELLM_Q8_0 = 8,
    EDGELLM_Q4_K = 12,
    EDGELLM_Q6_K = 14,
} edgellm_qtype;

/* A [rows, cols] matrix in planar quant blocks; per block (32 weights, 256 for the K types), row-major:
 *   Q4_0: qs 16 B, d fp16            Q4_1: qs 16 B, d (fp16 d, fp16 m)     Q8_0: qs 32 B (int8), d fp16
 *   Q5_0: qs 16 B, qh 4 B (bit j: the fifth bit of weight j), d fp16
 *   Q4_K: qs 128 B, scales 12 B, d (fp16 d, fp16 dmin)                     Q6_K: qs = ql 128 B, qh 64 B,
 *   scales 16 B (int8), d fp16.  cols is a multiple of the block size. */
typedef struct {
    const void *qs, *qh, *scales, *d;
    int qtype, rows, cols;
} edgellm_qmatrix;

/* x (fp32, cols values, cols a multiple of 32) -> xq (EDGELLM_ACT_BYTES(cols) bytes) and xds (float2 per 32 values).
 * Per chunk of 32 values: s = max |x| / 32384, u = round(x / s), u = 254 hi + lo with hi, lo int8; xds holds
 * (s, s * sum of the 32 u).  xq holds the digits in groups of 8 chunks (512 bytes; the last group padded), each group
 * four planes of 128 bytes: the hi digits 0-15, hi 16-31, lo 0-15 and lo 16-31 of its 8 chunks, 16 bytes a chunk.
 * So a warp whose lanes take consecutive chunks reads every plane as whole 128-byte lines (with the 64 bytes of a
 * chunk side by side, one 16-byte load per lane touched a line per two lanes).  EDGELLM_ACT_OFFSET: the byte of
 * digit e (0..31), hi (lo = 0) or lo (lo = 1), of chunk c. */
#define EDGELLM_ACT_BYTES(cols) ((((size_t)(cols) + 255) / 256) * 512)
#define EDGELLM_ACT_OFFSET(c, lo, e)                                                            \
    (((size_t)(c) >> 3) * 512 + ((size_t)(lo) * 2 + ((size_t)(e) >> 4)) * 128 + ((size_t)(c) & 7) * 16 + \
     ((size_t)(e) & 15))
int edgellm_quantize_activations(const float *x, int cols, void *xq, void *xds, void *stream);

/* y[rows] = W x, x given as edgellm_quantize_activations' output. */
int edgellm_gemv(const edgellm_qmatrix *w, const void *xq, const void *xds, float *y, void *stream);

/* Fused forms for the decoder, each one launch with the sums of edgellm_gemv in the same order:
 * edgellm_gemv_many: y[j] = W[j] x (+ bias[j] where bias and bias[j] are given) (+ the old y[j] where accumulate),
 *   for 1 to 3 matrices of one column count (Q, K and V; a residual added in the epilogue), one launch per run of
 *   matrices of one quant type;
 * edgellm_gemv_swiglu: y = silu(gate x) * (up x), gate and up of one type and shape;
 * edgellm_rmsnorm_quantize: edgellm_rmsnorm of one row of n values followed by edgellm_quantize_activations. */
int edgellm_gemv_many(const edgellm_qmatrix *const *w, float *const *y, const float *const *bias, int count,
                      int accumulate, const void *xq, const void *xds, void *stream);
/* The decode step's Q, K and V (w[0..2], one column count, any quant types: one launch per run of one type) with
 * their biases where given, then edgellm_rope_append's work in the epilogue: adjacent-pair RoPE (neox = 0) of Q and K
 * at *pos (freq_factors optional, cos and sin scaled by attn_factor), Q written to q (fp32), K and V in fp16 into row
 * *pos of k_cache and v_cache (row stride w[1]'s rows).  The values are those of edgellm_gemv_many followed by
 * edgellm_rope_append. */
int edgellm_gemv_qkv_rope(const edgellm_qmatrix *const *w, const float *const *bias, float *q, void *k_cache,
                          void *v_cache, int head_dim, const int *pos, float base, const float *freq_factors,
                          float attn_factor, const void *xq, const void *xds, void *stream);
/* edgellm_gemv_qkv_rope with the rotation's (cos, sin) read from rope_table (edgellm_rope_table at the same *pos,
 * base, factors and attn_factor) instead of computed per pair: the same values. */
int edgellm_gemv_qkv_rope_table(const edgellm_qmatrix *const *w, const float *const *bias, float *q, void *k_cache,
                                void *v_cache, int head_dim, const int *pos, const void *rope_table, const void *xq,
                                const void *xds, void *stream);
int edgellm_gemv_swiglu(const edgellm_qmatrix *gate, const edgellm_qmatrix *up, const void *xq, const void *xds,
                        float *y, void *stream);
/* edgellm_gemv_swiglu followed by edgellm_quantize_activations(y) into next_xq / next_xds, in one launch (rows a
 * multiple of 32; the next activations other buffers than xq / xds).  counters: edgellm_gemv_swiglu_counters_bytes
 * (rows) of device memory, zeroed once before the first call; every call leaves them zero again.  The values are
 * those of the two calls it replaces, bit for bit. */
size_t edgellm_gemv_swiglu_counters_bytes(int rows);
int edgellm_gemv_swiglu_quantize(const edgellm_qmatrix *gate, const edgellm_qmatrix *up, const void *xq,
                                 const void *xds, float *y, void *next_xq, void *next_xds, int *counters,
                                 void *stream);
int edgellm_rmsnorm_quantize(const float *x, const float *weight, int n, float eps, void *xq, void *xds,
                             void *stream);

#ifdef __cplusplus
}
#endif
#endif
