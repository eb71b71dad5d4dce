/* EdgeLLM decoder operations besides attention and matrix products: the C API.
 *
 * Every pointer is a device pointer and every call only enqueues on `stream`.  Positions and token ids are read from
 * device memory, so that a decode step captured once in a CUDA graph replays for every new token.  Semantics follow
 * the CPU engine (src/edgellm/cpu_kernels.py), which the GPU tests compare against.
 */
#ifndef EDGELLM_OPS_H
#define EDGELLM_OPS_H

#include "edgellm_gemv.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, for rows r of n values. */
int edgellm_rmsnorm(const float *x, const float *weight, float *out, int rows, int n, float eps, void *stream);

/* Rotary embedding in place on x [rows, heads, head_dim] (row stride in floats): row t at position *pos + t,
 * theta_i = position * base^(-2i/head_dim) / freq_factors[i] (freq_factors may be null: llama3 scaling and phi3's
 * long/short factors pass theirs), computed in double; cos and sin times attn_factor (phi3; 1 for the others).
 * neox: pairs (i, i + head_dim/2); else adjacent pairs (2i, 2i + 1). */
int edgellm_rope(float *x, int rows, int heads, int head_dim, int64_t row_stride, const int *pos, float base,
                 const float *freq_factors, int neox, float attn_factor, void *stream);

/* out[r, i] = silu(gate_up[r, i]) * gate_up[r, hidden + i]. */
int edgellm_swiglu(const float *gate_up, float *out, int rows, int hidden, void *stream);

/* out[r, i] = gelu_tanh(gate_up[r, i]) * gate_up[r, hidden + i] (GeGLU; the GELU in double, as the CPU engine). */
int edgellm_geglu(const float *gate_up, float *out, int rows, int hidden, void *stream);

/* x[r] += y[r] / sqrt(mean(y[r]^2) + eps) * weight for rows r of n values (a norm after a block, then the residual;
 * the sums of edgellm_rmsnorm). */
int edgellm_rmsnorm_add(float *x, const float *y, const float *weight, int rows, int n, float eps, void *stream);

/* In place on x [rows, heads, head_dim] (row stride in floats): each head's vector normed with weight [head_dim]. */
int edgellm_rmsnorm_heads(float *x, int rows, int heads, int head_dim, int64_t row_stride, const float *weight,
                          float eps, void *stream);

/* x = cap * tanh(x / cap), n values (cap > 0). */
int edgellm_softcap(float *x, int64_t n, float cap, void *stream);

/* x *= s, n values. */
int edgellm_scale(float *x, int64_t n, float s, void *stream);

/* x += y, n values. */
int edgellm_add(float *x, const float *y, int64_t n, void *stream);

/* *out = the index of the largest of n logits (the lowest such index on ties). */
int edgellm_argmax(const float *logits, int n, int *out, void *stream);

/* out[0..cols) = row *token of a matrix in planar quant blocks (or F32 / F16 with qtype 0 / 1 and data in qs),
 * dequantized: the token embedding. */
int edgellm_embed(const edgellm_qmatrix *table, const int *token, float *out, void *stream);

/* RoPE and the cache append of one decode step in one launch: q [n_heads * head_dim] rotated in place, k rotated
 * and v copied into row *pos of the fp16 caches (row stride n_kv_heads * head_dim); the rotation is edgellm_rope's. */
int edgellm_rope_append(float *q, const float *k, const float *v, void *k_cache, void *v_cache, int n_heads,
                        int n_kv_heads, int head_dim, const int *pos, float base, const float *freq_factors, int neox,
                        float attn_factor, void *stream);

/* table[i] = (cos, sin) of pair i (0 .. head_dim / 2 - 1) at position *pos, as edgellm_rope rotates with them
 * (float2 values, 8-byte aligned): made once a decode step for every layer's edgellm_gemv_qkv_rope_table. */
int edgellm_rope_table(const int *pos, int head_dim, float base, const float *freq_factors, float attn_factor,
                       void *table, void *stream);

/* edgellm_argmax, then *pos += 1 (the end of a decode step, one launch). */
int edgellm_argmax_advance(const float *logits, int n, int *out, int *pos, void *stream);

/* Appends rows of fp32 K or V [rows, kv_heads * head_dim] to an fp16 cache at rows *pos.. (cache row stride in
 * elements). */
int edgellm_kv_append(const float *src, void *cache, int rows, int width, int64_t cache_row_stride, const int *pos,
                      void *stream);

/* The device's read bandwidth in GB/s (10^9 bytes): `passes` timed read-only passes over a buffer of `bytes` (at
 * least 1 MiB; 1 GiB is the yardstick, far past L2), after one untimed pass.  Allocates and frees its buffer. */
int edgellm_read_bandwidth(size_t bytes, int passes, double *gb_per_s);

#ifdef __cplusplus
}
#endif
#endif
