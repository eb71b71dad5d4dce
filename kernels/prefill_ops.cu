// The decoder's small operations over a prefill chunk of n tokens (edgellm_prefill.h).  Each computes what the
// decode step's operation (decoder_ops.cu) computes for one token, in the same order, so that a prefilled cache and
// the residual stream match what token-by-token steps would have made of the same products.
#include "attention_common.cuh"
#include "edgellm_prefill.h"

namespace edgellm {
namespace prefill {

// Weight c of row r of a planar quant matrix (or F32 / F16 with qtype 0 / 1), dequantized with the very expressions
// of decoder_ops.cu's dequant_at, which the decode step's embedding uses.
__device__ float dequant_at(const edgellm_qmatrix &m, int64_t r, int c) {
    const uint8_t *qs = static_cast<const uint8_t *>(m.qs);
    switch (m.qtype) {
    case 0: return static_cast<const float *>(m.qs)[r * m.cols + c];
    case 1: return __half2float(static_cast<const __half *>(m.qs)[r * m.cols + c]);
    case EDGELLM_Q4_0:
    case EDGELLM_Q4_1: {
        const int64_t blk = r * (m.cols / 32) + c / 32;
        const int e = c % 32;
        const int n = (qs[blk * 16 + e % 16] >> (e < 16 ? 0 : 4)) & 0x0F;
        if (m.qtype == EDGELLM_Q4_0) return __half2float(static_cast<const __half *>(m.d)[blk]) * (n - 8);
        const __half2 dm = static_cast<const __half2 *>(m.d)[blk];
        return __low2float(dm) * n + __high2float(dm);
    }
    case EDGELLM_Q5_0: {
        const int64_t blk = r * (m.cols / 32) + c / 32;
        const int e = c % 32;
        const int lo = (qs[blk * 16 + e % 16] >> (e < 16 ? 0 : 4)) & 0x0F;
        const int hi = (reinterpret_cast<const uint32_t *>(m.qh)[blk] >> e) & 1;
        return __half2float(static_cast<const __half *>(m.d)[blk]) * ((lo | (hi << 4)) - 16);
    }
    case EDGELLM_Q8_0: {
        const int64_t blk = r * (m.cols / 32) + c / 32;
        return __half2float(static_cast<const __half *>(m.d)[blk]) *
               reinterpret_cast<const int8_t *>(qs)[blk * 32 + c % 32];
    }
    case EDGELLM_Q4_K: {
        const int64_t sb = r * (m.cols / 256) + c / 256;
        const int e = c % 256, j = e / 32, l = e % 32;
        const int n = (qs[sb * 128 + (j / 2) * 32 + l] >> ((j & 1) * 4)) & 0x0F;
        const uint8_t *s = static_cast<const uint8_t *>(m.scales) + sb * 12;
        const int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        const int mn = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        const __half2 dm = static_cast<const __half2 *>(m.d)[sb];
        return __low2float(dm) * sc * n - __high2float(dm) * mn;
    }
    case EDGELLM_Q6_K: {
        const int64_t sb = r * (m.cols / 256) + c / 256;
        const int e = c % 256, h = e / 128, qd = (e % 128) / 32, l = e % 32;
        const int lo = (qs[sb * 128 + h * 64 + (qd & 1) * 32 + l] >> ((qd >> 1) * 4)) & 0x0F;
        const int hi = (static_cast<const uint8_t *>(m.qh)[sb * 64 + h * 32 + l] >> (2 * qd)) & 3;
        const int8_t sc = static_cast<const int8_t *>(m.scales)[sb * 16 + e / 16];
        return __half2float(static_cast<const __half *>(m.d)[sb]) * sc * ((lo | (hi << 4)) - 32);
    }
    default: return 0.f;
    }
}

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
    float ss = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
    ss = block_sum(ss, scratch);
    const float scale = rsqrtf(ss / n + eps);
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
