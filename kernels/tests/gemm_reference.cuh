// float64 references of the prefill GEMM for its tests: Y = X W^T from the blocks' float64 weights and fp16 X, with
// the terms of the error bound (sum |x w| and sum |x|), and the tracking of the worst error against its bound.
#pragma once

#include <algorithm>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "quant_host.cuh"

struct Ref {
    std::vector<double> y, s, xs;  // [n, rows] value, sum |x w|, sum |x|
};

// Y = X W^T in float64 over threads (rows split), with the bound terms.
inline Ref reference(const std::vector<double> &x, const std::vector<double> &w, int n, int rows, int cols) {
    Ref r;
    r.y.assign((size_t)n * rows, 0), r.s.assign((size_t)n * rows, 0), r.xs.assign(n, 0);
    for (int t = 0; t < n; ++t)
        for (int k = 0; k < cols; ++k) r.xs[t] += std::fabs(x[(size_t)t * cols + k]);
    const unsigned threads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
    std::vector<std::thread> pool;
    for (unsigned th = 0; th < threads; ++th)
        pool.emplace_back([&, th] {
            for (int o = th; o < rows; o += threads)
                for (int t = 0; t < n; ++t) {
                    const double *xr = &x[(size_t)t * cols], *wr = &w[(size_t)o * cols];
                    double acc = 0, abs = 0;
                    for (int k = 0; k < cols; ++k) acc += xr[k] * wr[k], abs += std::fabs(xr[k] * wr[k]);
                    r.y[(size_t)t * rows + o] = acc, r.s[(size_t)t * rows + o] = abs;
                }
        });
    for (auto &p : pool) p.join();
    return r;
}

inline double product_bound(const Ref &r, size_t i, int t, int cols) {
    return (std::ldexp(1.0, -11) + cols * std::ldexp(1.0, -23)) * r.s[i] + std::ldexp(1.0, -25) * r.xs[t];
}

inline std::vector<double> dequantized(const HostQuant &q) {
    std::vector<double> w((size_t)q.rows * q.cols);
    for (int r = 0; r < q.rows; ++r)
        for (int c = 0; c < q.cols; ++c) w[(size_t)r * q.cols + c] = host_weight(q, r, c);
    return w;
}

// fp16 activations in [-1, 1] and their float64 values.
inline void random_x(int n, int cols, uint64_t seed, std::vector<__half> &h, std::vector<double> &v) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    h.resize((size_t)n * cols), v.resize(h.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = __float2half_rn(u(rng)), v[i] = (double)__half2float(h[i]);
}

// The largest error over its bound (pass: at most 1) and the largest error against the largest |reference|.
struct Worst {
    double worst = 0, err = 0, ref = 0;
    bool finite = true;
    void add(double got, double want, double bound) {
        if (!std::isfinite(got)) finite = false;
        const double e = std::fabs(got - want);
        worst = std::max(worst, e / std::max(bound, 1e-300));
        err = std::max(err, e), ref = std::max(ref, std::fabs(want));
    }
    double rel() const { return ref > 0 ? err / ref : err; }
};

