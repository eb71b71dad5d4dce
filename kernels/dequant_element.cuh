// One weight of a planar quant matrix (edgellm_gemv.h) or of an F32 / F16 one (qtype 0 / 1), dequantized exactly as
// gguf does: the decode step's embedding row and the prefill's embedding rows read it, so both give the same floats.
#ifndef EDGELLM_DEQUANT_ELEMENT_CUH
#define EDGELLM_DEQUANT_ELEMENT_CUH

#include <cuda_fp16.h>
#include <stdint.h>

#include "edgellm_ops.h"

namespace edgellm {

// Weight c of row r.
__device__ inline float dequant_at(const edgellm_qmatrix &m, int64_t r, int c) {
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
        return __half2float(static_cast<const __half *>(m.d)[blk]) * reinterpret_cast<const int8_t *>(qs)[blk * 32 + c % 32];
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

}  // namespace edgellm
#endif
