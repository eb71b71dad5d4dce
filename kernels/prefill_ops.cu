// The decoder's small operations over a prefill chunk of n tokens (edgellm_prefill.h).  Each computes what the
// decode step's operation (decoder_ops.cu) computes for one token, in the same order, so that a prefilled cache and
// the residual stream match what token-by-token steps would have made of the same products.
#include "attention_common.cuh"
#include "dequant_element.cuh"
#include "edgellm_prefill.h"

namespace edgellm {
namespace prefill {

// Row blockIdx.y of the output: the embedding of tokens[blockIdx.y].
__global__ void embed_rows_kernel(edgellm_qmatrix m, const int *tokens, float *out) {
    const int t = blockIdx.y;
    const int64_t r = tokens[t];
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < m.cols; c += gridDim.x * blockDim.x)
        out[(int64_t)t * m.cols + c] = dequant_at(m, r, c);
}

// decoder_ops.cu's rmsnorm_kernel (kNormThreads threads, the same sum), with an fp16 result.
__global__ void rmsnorm_f16_kernel(const float *x, const float *w, __half *out, int n, float eps) {
    __shared__ float scratch[32];
    const float *xr = x + (int64_t)blockIdx.x * n;
    const float scale = row_rms_scale(xr, n, eps, scratch);
    __half *orow = out + (int64_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) orow[i] = __float2half_rn(xr[i] * scale * w[i]);
}

__global__ void to_f16_kernel(const float *x, __half *out, int64_t count) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < count) out[i] = __float2half_rn(x[i]);
}

__global__ void swiglu_f16_kernel(const float *gate, const float *up, __half *out, int64_t count) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= count) return;
    const float g = gate[i];
    out[i] = __float2half_rn(g / (1.f + expf(-g)) * up[i]);
}

// decoder_ops.cu's GeGLU (the GELU in double), of two separate fp32 products, rounded to fp16 for the down GEMM.
__global__ void geglu_f16_kernel(const float *gate, const float *up, __half *out, int64_t count) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= count) return;
    const double g = gate[i], inner = 0.7978845608028654 * (g + 0.044715 * g * g * g);
    out[i] = __float2half_rn((float)(0.5 * g * (1.0 + tanh(inner))) * up[i]);
}

inline unsigned blocks_for(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

}  // namespace prefill
}  // namespace edgellm

using namespace edgellm;

extern "C" int edgellm_embed_rows(const edgellm_qmatrix *m, const int *tokens, int n, float *out, void *stream) {
    if (!m || !m->qs || !tokens || !out || m->cols <= 0 || n < 1 || n > 65535) return EDGELLM_ERR_ARGUMENT;
    const int q = m->qtype;
    if (q != 0 && q != 1 && q != EDGELLM_Q4_0 && q != EDGELLM_Q4_1 && q != EDGELLM_Q5_0 && q != EDGELLM_Q8_0 &&
        q != EDGELLM_Q4_K && q != EDGELLM_Q6_K)
        return EDGELLM_ERR_UNSUPPORTED;
    if (q > 1 && !m->d) return EDGELLM_ERR_ARGUMENT;
    if ((q == EDGELLM_Q4_K || q == EDGELLM_Q6_K) && (!m->scales || m->cols % 256)) return EDGELLM_ERR_ARGUMENT;
    if ((q == EDGELLM_Q6_K || q == EDGELLM_Q5_0) && !m->qh) return EDGELLM_ERR_ARGUMENT;
    const dim3 grid(prefill::blocks_for(m->cols, 256), (unsigned)n);
    prefill::embed_rows_kernel<<<grid, 256, 0, static_cast<cudaStream_t>(stream)>>>(*m, tokens, out);
    return check_launch();
}

extern "C" int edgellm_rmsnorm_f16(const float *x, const float *w, void *out, int rows, int n, float eps,
                                   void *stream) {
    if (!x || !w || !out || rows <= 0 || n <= 0) return EDGELLM_ERR_ARGUMENT;
    prefill::rmsnorm_f16_kernel<<<rows, kNormThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        x, w, static_cast<__half *>(out), n, eps);
    return check_launch();
}

extern "C" int edgellm_to_f16(const float *x, void *out, int64_t count, void *stream) {
    if (!x || !out || count <= 0) return EDGELLM_ERR_ARGUMENT;
    prefill::to_f16_kernel<<<prefill::blocks_for(count, 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        x, static_cast<__half *>(out), count);
    return check_launch();
}

extern "C" int edgellm_swiglu_f16(const float *gate, const float *up, void *out, int rows, int hidden, void *stream) {
    if (!gate || !up || !out || rows <= 0 || hidden <= 0) return EDGELLM_ERR_ARGUMENT;
    const int64_t count = (int64_t)rows * hidden;
    prefill::swiglu_f16_kernel<<<prefill::blocks_for(count, 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        gate, up, static_cast<__half *>(out), count);
    return check_launch();
}

extern "C" int edgellm_geglu_f16(const float *gate, const float *up, void *out, int rows, int hidden, void *stream) {
    if (!gate || !up || !out || rows <= 0 || hidden <= 0) return EDGELLM_ERR_ARGUMENT;
    const int64_t count = (int64_t)rows * hidden;
    prefill::geglu_f16_kernel<<<prefill::blocks_for(count, 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        gate, up, static_cast<__half *>(out), count);
    return check_launch();
}
