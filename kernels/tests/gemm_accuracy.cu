// Accuracy gate of the prefill GEMMs (edgellm_prefill.h) against float64 on the same quant blocks and fp16 inputs.
//
//   gemm_accuracy [--sanitize] [--csv PATH]
//
// Every quant type, both tile heights, shapes that are not multiples of a tile (n tokens, rows, and cols that are an
// odd number of 32-weight blocks), every epilogue (bias on a Q/K/V triple whose tiles straddle its matrices, fp16
// output, residual add, SwiGLU in one product and in two), and the decode GEMV on the same blocks.
//
// Tolerances are bounds, not fits.  Per output y = sum_k x_k w_k with S = sum_k |x_k w_k| and X = sum_k |x_k|:
// - each weight is rounded once to fp16 (relative error <= 2^-11, absolute <= 2^-25 below fp16's normal range) and
//   the fp16 x are the reference's own inputs, so the products contribute at most 2^-11 S + 2^-25 X;
// - the fp32 accumulation of k products adds at most about k 2^-24 S (bounded by k 2^-23 S, room for the tensor
//   cores' truncating adds); the epilogue's fp32 add or bias at most 2^-22 |y|; fp16 output rounds at 2^-11 |y|;
// - SwiGLU propagates the gate's and up's bounds eg, eu: |d(silu(g) u)| <= 1.1 eg (|u| + eu) + (|silu(g)| + 1.1 eg) eu
//   (|silu'| < 1.1), plus 2^-20 |y| for expf;
// - the decode GEMV (16-bit activations per 32 values, scale s_c = max|x| / 32384) errs at most s_c / 2 per value:
//   sum over chunks of s_c / 2 * sum |w_k|, plus 2^-16 S for its fp32 sums (whose terms, such as Q4_0's
//   s sum n u and 8 s sum u, cancel: their rounding is relative to terms some times S).
// A wrong block offset, nibble or scale gives errors of the order of S itself, thousands of times these bounds.
// One line per case; exit status 1 when any case fails, 2 on a CUDA or argument error.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

#include "../edgellm_prefill.h"
#include "gemm_reference.cuh"

extern "C" int edgellm_gemm_variant(const edgellm_qmatrix *const *w, void *const *y, const float *const *bias,
                                    int count, const void *x, int n, int epilogue, int bm, void *stream);

struct Report {
    int cases = 0, failures = 0;
    FILE *csv = nullptr;
    // worst: the largest error / bound over the case (pass below 1); rel: max error / max |reference|.
    void line(const char *what, int qtype, int bm, int n, int rows, int cols, double worst, double rel, bool finite) {
        const bool ok = finite && worst <= 1.0;
        ++cases;
        if (!ok) ++failures;
        std::printf("%-4s %-12s %-4s bm=%-3d n=%-4d rows=%-4d cols=%-4d err/bound %.3f  max err/max|ref| %.2e\n",
                    ok ? "ok" : "FAIL", what, qtype_name(qtype), bm, n, rows, cols, worst, rel);
        if (csv)
            std::fprintf(csv, "%s,%s,%d,%d,%d,%d,%.6e,%.6e,%d\n", what, qtype_name(qtype), bm, n, rows, cols, worst,
                         rel, ok ? 1 : 0);
    }
};

template <typename T> static std::vector<double> download(const DeviceBuffer &b, size_t count) {
    std::vector<T> h(count);
    CUDA_CHECK(cudaMemcpy(h.data(), b.ptr, count * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<double> out(count);
    for (size_t i = 0; i < count; ++i) out[i] = (double)(float)h[i];
    return out;
}

// Plain products (fp32 out, no bias) of one matrix for both tile heights.
static void plain_case(Report &rep, int qtype, int n, int rows, int cols, uint64_t seed) {
    const HostQuant q = random_quant(qtype, rows, cols, seed);
    const std::vector<double> w = dequantized(q);
    std::vector<__half> xh;
    std::vector<double> xv;
    random_x(n, cols, seed ^ 0x5555, xh, xv);
    const Ref ref = reference(xv, w, n, rows, cols);
    DeviceQuant dq(q);
    DeviceBuffer x(xh.size() * 2), y((size_t)n * rows * 4);
    CUDA_CHECK(cudaMemcpy(x.ptr, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
    for (int bm : {64, 128}) {
        CUDA_CHECK(cudaMemset(y.ptr, 0xFF, y.bytes));  // NaN: an element left unwritten fails
        const edgellm_qmatrix *ws[1] = {&dq.m};
        void *ys[1] = {y.ptr};
        EDGELLM_CHECK(edgellm_gemm_variant(ws, ys, nullptr, 1, x.ptr, n, EDGELLM_GEMM_F32, bm, nullptr));
        CUDA_CHECK(cudaDeviceSynchronize());
        const std::vector<double> got = download<float>(y, (size_t)n * rows);
        Worst wst;
        for (int t = 0; t < n; ++t)
            for (int o = 0; o < rows; ++o) {
                const size_t i = (size_t)t * rows + o;
                wst.add(got[i], ref.y[i], product_bound(ref, i, t, cols) + std::ldexp(1.0, -22) * std::fabs(ref.y[i]));
            }
        rep.line("plain", qtype, bm, n, rows, cols, wst.worst, wst.rel(), wst.finite);
    }
}

// Every epilogue on one set of shapes: Q/K/V (rows, rows_kv, rows_kv) in one launch with biases, as fp32 and as
// fp16; the first matrix added to a residual; SwiGLU of the second (gate) and third (up) in one product.
static void epilogue_case(Report &rep, int qtype, int n, int rows, int rows_kv, int cols, int bm, uint64_t seed) {
    const int R[3] = {rows, rows_kv, rows_kv};
    std::vector<HostQuant> q;
    std::vector<std::vector<double>> w;
    std::vector<std::vector<float>> bias(3);
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (int j = 0; j < 3; ++j) {
        q.push_back(random_quant(qtype, R[j], cols, seed + 17 * j));
        w.push_back(dequantized(q[j]));
        bias[j].resize(R[j]);
        for (auto &b : bias[j]) b = u(rng);
    }
    std::vector<__half> xh;
    std::vector<double> xv;
    random_x(n, cols, seed ^ 0x7777, xh, xv);
    std::vector<Ref> ref;
    for (int j = 0; j < 3; ++j) ref.push_back(reference(xv, w[j], n, R[j], cols));
    DeviceQuant d0(q[0]), d1(q[1]), d2(q[2]);
    const edgellm_qmatrix *ws[3] = {&d0.m, &d1.m, &d2.m};
    DeviceBuffer x(xh.size() * 2), b0(rows * 4), b1(rows_kv * 4), b2(rows_kv * 4);
    CUDA_CHECK(cudaMemcpy(x.ptr, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
    DeviceBuffer *bb[3] = {&b0, &b1, &b2};
    for (int j = 0; j < 3; ++j) CUDA_CHECK(cudaMemcpy(bb[j]->ptr, bias[j].data(), R[j] * 4, cudaMemcpyHostToDevice));
    const float *bs[3] = {b0.as<float>(), b1.as<float>(), b2.as<float>()};

    // Q/K/V with biases, fp32 then fp16.
    for (int f16 = 0; f16 < 2; ++f16) {
        const size_t es = f16 ? 2 : 4;
        DeviceBuffer y0((size_t)n * R[0] * es), y1((size_t)n * R[1] * es), y2((size_t)n * R[2] * es);
        DeviceBuffer *yb[3] = {&y0, &y1, &y2};
        void *ys[3] = {y0.ptr, y1.ptr, y2.ptr};
        for (auto *b : yb) CUDA_CHECK(cudaMemset(b->ptr, 0xFF, b->bytes));
        EDGELLM_CHECK(edgellm_gemm_variant(ws, ys, bs, 3, x.ptr, n, f16 ? EDGELLM_GEMM_F16 : EDGELLM_GEMM_F32, bm,
                                           nullptr));
        CUDA_CHECK(cudaDeviceSynchronize());
        Worst wst;
        for (int j = 0; j < 3; ++j) {
            const std::vector<double> got = f16 ? download<__half>(*yb[j], (size_t)n * R[j])
                                                : download<float>(*yb[j], (size_t)n * R[j]);
            for (int t = 0; t < n; ++t)
                for (int o = 0; o < R[j]; ++o) {
                    const size_t i = (size_t)t * R[j] + o;
                    const double want = ref[j].y[i] + bias[j][o];
                    const double bound = product_bound(ref[j], i, t, cols) +
                                         (std::ldexp(1.0, -22) + (f16 ? std::ldexp(1.0, -11) : 0)) * std::fabs(want);
                    wst.add(got[i], want, bound);
                }
        }
        rep.line(f16 ? "qkv_bias_f16" : "qkv_bias_f32", qtype, bm, n, rows + 2 * rows_kv, cols, wst.worst, wst.rel(),
                 wst.finite);
    }

    // Residual add into fp32.
    {
        std::vector<float> res((size_t)n * rows);
        for (auto &v : res) v = 4.f * u(rng);
        DeviceBuffer y(res.size() * 4);
        CUDA_CHECK(cudaMemcpy(y.ptr, res.data(), y.bytes, cudaMemcpyHostToDevice));
        void *ys[1] = {y.ptr};
        EDGELLM_CHECK(edgellm_gemm_variant(ws, ys, nullptr, 1, x.ptr, n, EDGELLM_GEMM_ADD_F32, bm, nullptr));
        CUDA_CHECK(cudaDeviceSynchronize());
        const std::vector<double> got = download<float>(y, res.size());
        Worst wst;
        for (size_t i = 0; i < res.size(); ++i) {
            const int t = (int)(i / rows);
            const double want = ref[0].y[i] + res[i];
            wst.add(got[i], want, product_bound(ref[0], i, t, cols) + std::ldexp(1.0, -22) * std::fabs(want));
        }
        rep.line("residual_add", qtype, bm, n, rows, cols, wst.worst, wst.rel(), wst.finite);
    }

    // SwiGLU: gate = matrix 1, up = matrix 2 (rows_kv rows each), in one product, fp32 and fp16.
    for (int f16 = 0; f16 < 2; ++f16) {
        const size_t count = (size_t)n * rows_kv;
        DeviceBuffer y(count * (f16 ? 2 : 4));
        CUDA_CHECK(cudaMemset(y.ptr, 0xFF, y.bytes));
        const edgellm_qmatrix *gu[2] = {&d1.m, &d2.m};
        void *ys[2] = {y.ptr, nullptr};
        EDGELLM_CHECK(edgellm_gemm_variant(gu, ys, nullptr, 2, x.ptr, n,
                                           f16 ? EDGELLM_GEMM_SWIGLU_F16 : EDGELLM_GEMM_SWIGLU_F32, bm, nullptr));
        CUDA_CHECK(cudaDeviceSynchronize());
        const std::vector<double> got = f16 ? download<__half>(y, count) : download<float>(y, count);
        Worst wst;
        for (size_t i = 0; i < count; ++i) {
            const int t = (int)(i / rows_kv);
            const double g = ref[1].y[i], up = ref[2].y[i];
            const double eg = product_bound(ref[1], i, t, cols), eu = product_bound(ref[2], i, t, cols);
            const double sg = g / (1 + std::exp(-g)), want = sg * up;
            const double bound = 1.1 * eg * (std::fabs(up) + eu) + (std::fabs(sg) + 1.1 * eg) * eu +
                                 (std::ldexp(1.0, -20) + (f16 ? std::ldexp(1.0, -11) : 0)) * std::fabs(want);
            wst.add(got[i], want, bound);
        }
        rep.line(f16 ? "swiglu_f16" : "swiglu_f32", qtype, bm, n, rows_kv, cols, wst.worst, wst.rel(), wst.finite);
    }
}

// The decode GEMV on the same blocks and float64 reference: the reference's reading of the blocks is the one the
// engine's decode path (checked against the CPU engine) makes.
static void gemv_case(Report &rep, int qtype, int rows, int cols, uint64_t seed) {
    const HostQuant q = random_quant(qtype, rows, cols, seed);
    const std::vector<double> w = dequantized(q);
    std::vector<__half> xh;
    std::vector<double> xv;
    random_x(1, cols, seed ^ 0x9999, xh, xv);
    const Ref ref = reference(xv, w, 1, rows, cols);
    std::vector<float> xf(cols);
    for (int k = 0; k < cols; ++k) xf[k] = (float)xv[k];
    DeviceQuant dq(q);
    DeviceBuffer x(cols * 4), xq(EDGELLM_ACT_BYTES(cols)), xds(cols / 32 * 8), y(rows * 4);
    CUDA_CHECK(cudaMemcpy(x.ptr, xf.data(), cols * 4, cudaMemcpyHostToDevice));
    EDGELLM_CHECK(edgellm_quantize_activations(x.as<float>(), cols, xq.ptr, xds.ptr, nullptr));
    EDGELLM_CHECK(edgellm_gemv(&dq.m, xq.ptr, xds.ptr, y.as<float>(), nullptr));
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<double> got = download<float>(y, rows);
    Worst wst;
    for (int o = 0; o < rows; ++o) {
        double bound = std::ldexp(1.0, -16) * ref.s[o];
        for (int c = 0; c < cols / 32; ++c) {
            double amax = 0, wabs = 0;
            for (int k = 32 * c; k < 32 * c + 32; ++k)
                amax = std::max(amax, std::fabs(xv[k])), wabs += std::fabs(w[(size_t)o * cols + k]);
            bound += 1.001 * amax / 32384.0 / 2 * wabs;
        }
        wst.add(got[o], ref.y[o], bound);
    }
    rep.line("decode_gemv", qtype, 0, 1, rows, cols, wst.worst, wst.rel(), wst.finite);
}

int main(int argc, char **argv) {
    bool sanitize = false;
    const char *csv = nullptr;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--sanitize")) sanitize = true;
        else if (!std::strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[++i];
        else {
            std::fprintf(stderr, "usage: %s [--sanitize] [--csv PATH]\n", argv[0]);
            return 2;
        }
    }
    Report rep;
    if (csv) {
        rep.csv = std::fopen(csv, "w");
        if (!rep.csv) {
            std::fprintf(stderr, "error: cannot write %s\n", csv);
            return 2;
        }
        std::fprintf(rep.csv, "case,qtype,bm,n,rows,cols,err_over_bound,rel_err,passed\n");
    }
    const int types[] = {EDGELLM_Q4_0, EDGELLM_Q4_1, EDGELLM_Q5_0, EDGELLM_Q8_0, EDGELLM_Q4_K, EDGELLM_Q6_K};
    uint64_t seed = 1;
    for (int qt : types) {
        const bool k_type = block_weights(qt) == 256;
        // 288 = 9 blocks of 32: the last 64-weight slab is half full.
        const std::vector<int> cols = sanitize ? (k_type ? std::vector<int>{256} : std::vector<int>{288})
                                      : k_type ? std::vector<int>{256, 1536} : std::vector<int>{256, 288, 576, 1536};
        const std::vector<int> ns = sanitize ? std::vector<int>{7, 100} : std::vector<int>{1, 7, 64, 100, 600};
        const std::vector<int> rows = sanitize ? std::vector<int>{200} : std::vector<int>{64, 200, 576, 1536};
        for (int k : cols)
            for (int n : ns)
                for (int r : rows) plain_case(rep, qt, n, r, k, ++seed);
        const int ek = k_type ? 256 : 288;
        for (int bm : {64, 128}) {
            epilogue_case(rep, qt, 7, 200, 72, ek, bm, ++seed);
            if (!sanitize) epilogue_case(rep, qt, 100, 576, 200, k_type ? 1536 : 576, bm, ++seed);
        }
        // The decode GEMV: rows that are not a multiple of its 16-row tiles, rows of 9 chunks (a part step of the
        // tensor-core kernel), and rows long enough for every warp of a block to take several steps.
        gemv_case(rep, qt, sanitize ? 64 : 576, k_type ? 512 : 288, ++seed);
        gemv_case(rep, qt, 37, k_type ? 256 : 288, ++seed);
        if (!sanitize) {
            gemv_case(rep, qt, 200, 1536, ++seed);
            gemv_case(rep, qt, 45, k_type ? 4096 : 4640, ++seed);
        }
    }
    if (rep.csv) std::fclose(rep.csv);
    std::printf("%d cases, %d failures\n", rep.cases, rep.failures);
    return rep.failures ? 1 : 0;
}
