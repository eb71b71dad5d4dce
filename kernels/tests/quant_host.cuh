// Host side of the quantized-product tests and benchmarks: random planar quant blocks (edgellm_gemv.h's layout) with
// sane fp16 scales, their float64 dequantization as ggml defines it, and their upload as an edgellm_qmatrix.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "../edgellm_gemv.h"
#include "common_host.cuh"

struct HostQuant {
    int qtype = 0, rows = 0, cols = 0;
    std::vector<uint8_t> qs, qh, scales, d;  // d: the fp16 fields' bytes (d, or (d, m) / (d, dmin) pairs)
};

inline int block_weights(int qtype) { return qtype == EDGELLM_Q4_K || qtype == EDGELLM_Q6_K ? 256 : 32; }
inline const char *qtype_name(int qtype) {
    switch (qtype) {
    case EDGELLM_Q4_0: return "Q4_0";
    case EDGELLM_Q4_1: return "Q4_1";
    case EDGELLM_Q5_0: return "Q5_0";
    case EDGELLM_Q8_0: return "Q8_0";
    case EDGELLM_Q4_K: return "Q4_K";
    case EDGELLM_Q6_K: return "Q6_K";
    default: return "?";
    }
}
// Bytes per block of each field: qs, qh, scales, d.
inline void field_bytes(int qtype, int &qs, int &qh, int &sc, int &d) {
    qs = qh = sc = d = 0;
    switch (qtype) {
    case EDGELLM_Q4_0: qs = 16, d = 2; break;
    case EDGELLM_Q4_1: qs = 16, d = 4; break;
    case EDGELLM_Q5_0: qs = 16, qh = 4, d = 2; break;
    case EDGELLM_Q8_0: qs = 32, d = 2; break;
    case EDGELLM_Q4_K: qs = 128, sc = 12, d = 4; break;
    case EDGELLM_Q6_K: qs = 128, qh = 64, sc = 16, d = 2; break;
    }
}

inline uint16_t half_bits(float v) {
    const __half h = __float2half_rn(v);
    uint16_t b;
    std::memcpy(&b, &h, 2);
    return b;
}
inline double half_value(const uint8_t *p) {
    __half h;
    std::memcpy(&h, p, 2);
    return (double)__half2float(h);
}

// Random bytes for every field, fp16 scales of a magnitude that keeps weights within about +-2 (times `scale`).
inline HostQuant random_quant(int qtype, int rows, int cols, uint64_t seed, float scale = 1.f) {
    HostQuant q;
    q.qtype = qtype, q.rows = rows, q.cols = cols;
    int bqs, bqh, bsc, bd;
    field_bytes(qtype, bqs, bqh, bsc, bd);
    const size_t blocks = (size_t)rows * (cols / block_weights(qtype));
    std::mt19937_64 rng(seed);
    const auto fill = [&](std::vector<uint8_t> &v, size_t n) {
        v.resize(n);
        for (auto &b : v) b = (uint8_t)(rng() >> 56);
    };
    fill(q.qs, blocks * bqs);
    fill(q.qh, blocks * bqh);
    fill(q.scales, blocks * bsc);
    q.d.resize(blocks * bd);
    std::uniform_real_distribution<float> unit(0.5f, 1.5f);
    // Typical magnitudes: d * max|q| about 1 to 2.
    const float d_scale = qtype == EDGELLM_Q8_0   ? 1.f / 96
                          : qtype == EDGELLM_Q5_0 ? 1.f / 12
                          : qtype == EDGELLM_Q4_K ? 1.f / 600
                          : qtype == EDGELLM_Q6_K ? 1.f / 2000
                                                  : 1.f / 6;
    for (size_t b = 0; b < blocks; ++b) {
        const uint16_t dv = half_bits(unit(rng) * d_scale * scale);
        std::memcpy(&q.d[b * bd], &dv, 2);
        if (bd == 4) {  // Q4_1's m (signed offset) or Q4_K's dmin
            const float second = (qtype == EDGELLM_Q4_1 ? (unit(rng) - 1.f) * 2.f : unit(rng) * (1.f / 600)) * scale;
            const uint16_t mv = half_bits(second);
            std::memcpy(&q.d[b * bd + 2], &mv, 2);
        }
    }
    return q;
}

// Weight c of row r in float64, from the blocks as ggml's dequantize_row_* defines it.
inline double host_weight(const HostQuant &q, int64_t r, int c) {
    switch (q.qtype) {
    case EDGELLM_Q4_0:
    case EDGELLM_Q4_1:
    case EDGELLM_Q5_0: {
        const int64_t blk = r * (q.cols / 32) + c / 32;
        const int e = c % 32;
        int n = (q.qs[blk * 16 + e % 16] >> (e < 16 ? 0 : 4)) & 0x0F;
        if (q.qtype == EDGELLM_Q4_0) return half_value(&q.d[blk * 2]) * (n - 8);
        if (q.qtype == EDGELLM_Q4_1) return half_value(&q.d[blk * 4]) * n + half_value(&q.d[blk * 4 + 2]);
        uint32_t qh;
        std::memcpy(&qh, &q.qh[blk * 4], 4);
        n |= ((qh >> e) & 1) << 4;
        return half_value(&q.d[blk * 2]) * (n - 16);
    }
    case EDGELLM_Q8_0: {
        const int64_t blk = r * (q.cols / 32) + c / 32;
        return half_value(&q.d[blk * 2]) * (int8_t)q.qs[blk * 32 + c % 32];
    }
    case EDGELLM_Q4_K: {
        const int64_t sb = r * (q.cols / 256) + c / 256;
        const int e = c % 256, j = e / 32, l = e % 32;
        const int n = (q.qs[sb * 128 + (j / 2) * 32 + l] >> ((j & 1) * 4)) & 0x0F;
        const uint8_t *s = &q.scales[sb * 12];
        const int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        const int mn = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        return half_value(&q.d[sb * 4]) * sc * n - half_value(&q.d[sb * 4 + 2]) * mn;
    }
    case EDGELLM_Q6_K: {
        const int64_t sb = r * (q.cols / 256) + c / 256;
        const int e = c % 256, h = e / 128, qd = (e % 128) / 32, l = e % 32;
        const int lo = (q.qs[sb * 128 + h * 64 + (qd & 1) * 32 + l] >> ((qd >> 1) * 4)) & 0x0F;
        const int hi = (q.qh[sb * 64 + h * 32 + l] >> (2 * qd)) & 3;
        const int sc = (int8_t)q.scales[sb * 16 + e / 16];
        return half_value(&q.d[sb * 2]) * sc * ((lo | (hi << 4)) - 32);
    }
    default: return 0;
    }
}

// The matrix on the device, each field in its own allocation (as the engine uploads them).
struct DeviceQuant {
    DeviceBuffer qs, qh, scales, d;
    edgellm_qmatrix m{};
    explicit DeviceQuant(const HostQuant &q)
        : qs(q.qs.size()), qh(q.qh.size()), scales(q.scales.size()), d(q.d.size()) {
        const auto up = [](DeviceBuffer &b, const std::vector<uint8_t> &v) {
            if (!v.empty()) CUDA_CHECK(cudaMemcpy(b.ptr, v.data(), v.size(), cudaMemcpyHostToDevice));
        };
        up(qs, q.qs), up(qh, q.qh), up(scales, q.scales), up(d, q.d);
        m.qs = qs.ptr, m.qh = q.qh.empty() ? nullptr : qh.ptr, m.scales = q.scales.empty() ? nullptr : scales.ptr;
        m.d = d.ptr, m.qtype = q.qtype, m.rows = q.rows, m.cols = q.cols;
    }
};
