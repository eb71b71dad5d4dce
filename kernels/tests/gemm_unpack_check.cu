// The prefill GEMM's unpacking of quant blocks into fp16 tiles (gemm_quant.cu's load and store), run on the host: no
// GPU needed, so it runs wherever the kernels build.  For every quant type, every row, slab and unit of random
// blocks, the tile's fp16 weights must be the float64 weights of the blocks (tests/quant_host.cuh, ggml's formulas)
// rounded once: |tile - w| <= 2^-11 |w| + 2^-25 (fp16's relative rounding, and its subnormal spacing / 2), and the
// slab's columns past the matrix zero.  A wrong byte, nibble, bit or scale moves a weight by far more.
//   gemm_unpack_check      (exit status 1 on any mismatch)
#include "../gemm_quant.cu"
#include "quant_host.cuh"

template <int QT> static int check(const HostQuant &q) {
    using namespace edgellm::gemm;
    const QW w{q.qs.data(), q.qh.empty() ? nullptr : q.qh.data(), q.scales.empty() ? nullptr : q.scales.data(),
               q.d.data(), q.rows};
    std::vector<__half> tile((size_t)q.rows * kSlab);
    int bad = 0;
    const int slabs = (q.cols + kSlab - 1) / kSlab;
    for (int s = 0; s < slabs; ++s) {
        for (int r = 0; r < q.rows; ++r)
            for (int u = 0; u < 2; ++u) {
                Raw raw{};
                raw.ok = true;
                load<QT>(w, q.cols, r, s, u, raw);
                store<QT>(raw, tile.data(), r, u);
            }
        for (int r = 0; r < q.rows; ++r)
            for (int o = 0; o < kSlab; ++o) {
                const int col = s * kSlab + o;
                const double got = (double)__half2float(tile[tile_offset(r, o / 8) + o % 8]);
                const double want = col < q.cols ? host_weight(q, r, col) : 0.0;
                if (std::fabs(got - want) > std::ldexp(1.0, -11) * std::fabs(want) + std::ldexp(1.0, -25)) {
                    if (bad < 5)
                        std::printf("  %s row %d col %d: tile %.8g, blocks %.8g\n", qtype_name(QT), r, col, got, want);
                    ++bad;
                }
            }
    }
    return bad;
}

int main() {
    int failures = 0;
    const auto run = [&](int qtype, int cols, auto fn) {
        const HostQuant q = random_quant(qtype, 9, cols, 1234 + qtype + cols);
        const int bad = fn(q);
        std::printf("%-4s %-4s rows 9 cols %-4d: %d weights off\n", bad ? "FAIL" : "ok", qtype_name(qtype), cols, bad);
        failures += bad != 0;
    };
    for (int cols : {64, 288, 576}) {
        run(EDGELLM_Q4_0, cols, check<EDGELLM_Q4_0>);
        run(EDGELLM_Q4_1, cols, check<EDGELLM_Q4_1>);
        run(EDGELLM_Q5_0, cols, check<EDGELLM_Q5_0>);
        run(EDGELLM_Q8_0, cols, check<EDGELLM_Q8_0>);
    }
    for (int cols : {256, 768}) {
        run(EDGELLM_Q4_K, cols, check<EDGELLM_Q4_K>);
        run(EDGELLM_Q6_K, cols, check<EDGELLM_Q6_K>);
    }
    std::printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
