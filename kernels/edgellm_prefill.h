/* EdgeLLM batched prefill: quantized matrix-matrix products on tensor cores and the decoder operations of a chunk of
 * tokens.  The C API.
 *
 * A prefill chunk holds n tokens.  Its activations enter the products as fp16 [n, cols] rows (the A operand of
 * mma.sync); the weights stay the planar quant blocks of edgellm_gemv.h, read as stored and dequantized tile by tile
 * into shared memory as fp16 (each weight d * q rounded once from its exact fp32 value).  Products accumulate in fp32.
 * All pointers are device pointers; calls enqueue on `stream` and return EDGELLM_OK or an EDGELLM_ERR_* code.
 */
#ifndef EDGELLM_PREFILL_H
#define EDGELLM_PREFILL_H

#include "edgellm_gemv.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What edgellm_gemm writes.  F32 / F16: y[j][t, r] = (W[j] x[t])[r] (+ bias[j][r]); ADD_F32: y[j][t, r] += the same
 * (the fp32 residual stream); SWIGLU_*: count == 2, w[0] the gate and w[1] the up projection (same type and shape),
 * y[0][t, r] = silu(gate x[t])[r] * (up x[t])[r], no bias. */
typedef enum {
    EDGELLM_GEMM_F32 = 0,
    EDGELLM_GEMM_F16 = 1,
    EDGELLM_GEMM_ADD_F32 = 2,
    EDGELLM_GEMM_SWIGLU_F32 = 3,
    EDGELLM_GEMM_SWIGLU_F16 = 4,
} edgellm_gemm_epilogue;

/* Y[j] = X W[j]^T for 1 to 3 matrices of one quant type and column count (Q, K and V in one launch), x fp16
 * [n, cols] contiguous, y[j] [n, w[j]->rows] contiguous (fp32 or fp16 per the epilogue); bias null or bias[j] null:
 * none.  n >= 1 and rows of any size; cols a multiple of the block size. */
int edgellm_gemm(const edgellm_qmatrix *const *w, void *const *y, const float *const *bias, int count, const void *x,
                 int n, int epilogue, void *stream);

/* out[t, :] = row tokens[t] of the embedding table (as edgellm_embed dequantizes it, bit for bit), t < n. */
int edgellm_embed_rows(const edgellm_qmatrix *table, const int *tokens, int n, float *out, void *stream);

/* out (fp16) [rows, n] = edgellm_rmsnorm of x [rows, n], the same sums in the same order, rounded to fp16 once. */
int edgellm_rmsnorm_f16(const float *x, const float *weight, void *out, int rows, int n, float eps, void *stream);

/* out (fp16) = x rounded to fp16, count values. */
int edgellm_to_f16(const float *x, void *out, int64_t count, void *stream);

/* out (fp16) [rows, hidden] = silu(gate) * up, gate and up fp32 [rows, hidden] (the SwiGLU of two separate products,
 * for a gate and an up projection of different quant types). */
int edgellm_swiglu_f16(const float *gate, const float *up, void *out, int rows, int hidden, void *stream);

/* out (fp16) [rows, hidden] = gelu_tanh(gate) * up (GeGLU, as edgellm_geglu computes it), gate and up fp32. */
int edgellm_geglu_f16(const float *gate, const float *up, void *out, int rows, int hidden, void *stream);

#ifdef __cplusplus
}
#endif
#endif
