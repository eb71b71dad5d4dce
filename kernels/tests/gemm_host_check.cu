// The prefill GEMM's own code (gemm_quant.cu) run on the host, without a GPU, so it runs wherever the kernels build.
//
//   gemm_host_check      (exit status 1 on any failure)
//
// 1. Unpacking: for every quant type, every row, slab and unit of random blocks, gemm_quant.cu's load and store put
//    into the fp16 tile the float64 weights of the blocks (tests/quant_host.cuh, ggml's formulas) rounded once:
//    |tile - w| <= 2^-11 |w| + 2^-25, and zeros past the matrix.  A wrong byte, nibble, bit or scale moves a weight
//    by far more.
// 2. The whole kernel, block by block and warp by warp, with the kernel's own index functions (X copies, W units,
//    ldmatrix rows and chunks, accumulator positions, epilogue) and ldmatrix.x4 / mma.m16n8k16 emulated as the PTX
//    manual defines their fragments; its output against float64 with gemm_accuracy's bounds, for both tile heights,
//    shapes off the tiles and every epilogue.  What it cannot see is the device itself (timing, the barriers'
//    placement, shared-memory races): gemm_accuracy and compute-sanitizer on a GPU cover those.
#include "../gemm_quant.cu"
#include "gemm_reference.cuh"

using namespace edgellm::gemm;

template <int QT> static int check_unpack(const HostQuant &q) {
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

// ldmatrix.x4 (not transposed): lane L gives the address of row L % 8 of matrix L / 8; register i of lane L holds
// elements (L / 4, 2 (L % 4)) and (L / 4, 2 (L % 4) + 1) of matrix i.
struct Frag {
    double v[32][4][2];  // [lane][register][element]
};
static void ldmatrix_x4_host(const __half *tile, const int (&row)[32], const int (&chunk)[32], Frag &f) {
    for (int i = 0; i < 4; ++i)
        for (int L = 0; L < 32; ++L) {
            const int src = 8 * i + L / 4;  // the lane that gave this row's address
            const __half *p = tile + tile_offset(row[src], chunk[src]) + 2 * (L % 4);
            f.v[L][i][0] = (double)__half2float(p[0]), f.v[L][i][1] = (double)__half2float(p[1]);
        }
}

// mma.m16n8k16.row.col: lane L (g = L / 4, t = L % 4) holds A registers a0 (g, 2t..), a1 (g + 8, 2t..), a2 (g, 2t+8..),
// a3 (g + 8, 2t+8..); B registers b0 (k 2t.., n g), b1 (k 2t+8.., n g); accumulators c0, c1 (g, 2t..), c2, c3 (g + 8,
// 2t..).  b: registers b_first and b_first + 1 of the B fragment.
static void mma_host(double (&acc)[32][4], const Frag &a, const Frag &b, int b_first) {
    double A[16][16], B[16][8];
    for (int L = 0; L < 32; ++L) {
        const int g = L / 4, t = L % 4;
        for (int e = 0; e < 2; ++e) {
            A[g][2 * t + e] = a.v[L][0][e], A[g + 8][2 * t + e] = a.v[L][1][e];
            A[g][2 * t + 8 + e] = a.v[L][2][e], A[g + 8][2 * t + 8 + e] = a.v[L][3][e];
            B[2 * t + e][g] = b.v[L][b_first][e], B[2 * t + 8 + e][g] = b.v[L][b_first + 1][e];
        }
    }
    for (int L = 0; L < 32; ++L) {
        const int g = L / 4, t = L % 4;
        for (int i = 0; i < 4; ++i) {
            const int row = g + (i >> 1) * 8, col = 2 * t + (i & 1);
            double d = 0;
            for (int k = 0; k < 16; ++k) d += A[row][k] * B[k][col];
            acc[L][i] += d;
        }
    }
}

// gemm_kernel<QT, BM, BN> for every block, with host pointers in p.
template <int QT, int BM, int BN> static void emulate(const Params &p, int n_tiles) {
    using C = Tile<BM, BN>;
    const int slabs = (p.cols + kSlab - 1) / kSlab, m_tiles = (p.n + BM - 1) / BM;
    constexpr int kWarps = kThreads / 32;
    for (int bx = 0; bx < m_tiles; ++bx)
        for (int by = 0; by < n_tiles; ++by) {
            const int m0 = bx * BM;
            std::vector<__half> sX(2 * BM * kSlab), sW(2 * BN * kSlab);
            std::vector<Raw> raw(kThreads);
            std::vector<int> wj(kThreads), wr(kThreads);
            std::vector<char> wok(kThreads);
            for (int tid = 0; tid < kThreads; ++tid) wok[tid] = tile_row(p, BN, by, tid >> 1, wj[tid], wr[tid]);
            const auto load_x = [&](int s, int buf) {
                for (int tid = 0; tid < kThreads; ++tid)
                    for (int it = 0; it < BM * 8 / kThreads; ++it) {
                        const XCopy xc = x_copy(p, m0, s, it, tid);
                        __half *dst = sX.data() + buf * BM * kSlab + tile_offset(xc.row, xc.chunk);
                        for (int e = 0; e < 8; ++e) dst[e] = xc.ok ? p.x[xc.src + e] : __float2half_rn(0.f);
                    }
            };
            const auto load_w = [&](int s) {
                for (int tid = 0; tid < kThreads; ++tid) {
                    raw[tid] = Raw{};
                    raw[tid].ok = wok[tid];
                    load<QT>(p.w[wj[tid]], p.cols, wr[tid], s, tid & 1, raw[tid]);
                }
            };
            const auto store_w = [&](int buf) {
                for (int tid = 0; tid < kThreads; ++tid)
                    store<QT>(raw[tid], sW.data() + buf * BN * kSlab, tid >> 1, tid & 1);
            };
            static double acc[kWarps][C::MT][C::NT][32][4];
            std::memset(acc, 0, sizeof acc);
            load_x(0, 0);
            load_w(0);
            store_w(0);
            for (int s = 0; s < slabs; ++s) {
                const int buf = s & 1;
                if (s + 1 < slabs) load_x(s + 1, buf ^ 1), load_w(s + 1);
                const __half *tx = sX.data() + buf * BM * kSlab, *tw = sW.data() + buf * BN * kSlab;
                for (int w = 0; w < kWarps; ++w) {
                    const int wm0 = C::warp_m0(w), wn0 = C::warp_n0(w);
                    for (int kk = 0; kk < kSlab / 16; ++kk) {
                        static Frag af[C::MT], bf[C::NT / 2];
                        int row[32], chunk[32];
                        for (int mt = 0; mt < C::MT; ++mt) {
                            for (int L = 0; L < 32; ++L)
                                row[L] = a_frag_row(wm0, mt, L), chunk[L] = a_frag_chunk(kk, L);
                            ldmatrix_x4_host(tx, row, chunk, af[mt]);
                        }
                        for (int np = 0; np < C::NT / 2; ++np) {
                            for (int L = 0; L < 32; ++L)
                                row[L] = b_frag_row(wn0, np, L), chunk[L] = b_frag_chunk(kk, L);
                            ldmatrix_x4_host(tw, row, chunk, bf[np]);
                        }
                        for (int mt = 0; mt < C::MT; ++mt)
                            for (int nt = 0; nt < C::NT; ++nt)
                                mma_host(acc[w][mt][nt], af[mt], bf[nt >> 1], (nt & 1) * 2);
                    }
                }
                if (s + 1 < slabs) store_w(buf ^ 1);
            }
            std::vector<float> sC((size_t)BM * C::kStageStride, NAN);
            for (int w = 0; w < kWarps; ++w)
                for (int mt = 0; mt < C::MT; ++mt)
                    for (int nt = 0; nt < C::NT; ++nt)
                        for (int L = 0; L < 32; ++L)
                            for (int i = 0; i < 4; ++i) {
                                const int r = acc_row(C::warp_m0(w), mt, L, i), c = acc_col(C::warp_n0(w), nt, L, i);
                                sC[r * C::kStageStride + c] = (float)acc[w][mt][nt][L][i];
                            }
            const bool swiglu = p.epilogue == EDGELLM_GEMM_SWIGLU_F32 || p.epilogue == EDGELLM_GEMM_SWIGLU_F16;
            const int width = swiglu ? BN / 2 : BN;
            for (int idx = 0; idx < BM * width; ++idx)
                epilogue_element(p, BN, by, m0, idx / width, idx % width, sC.data(), C::kStageStride);
        }
}

struct Mat {
    HostQuant q;
    std::vector<double> w;
    QW qw() const {
        return QW{q.qs.data(), q.qh.empty() ? nullptr : q.qh.data(), q.scales.empty() ? nullptr : q.scales.data(),
                  q.d.data(), q.rows};
    }
};

template <int QT> static void run_emulated(const Params &p, int n_tiles, int bm) {
    if (bm == 64) emulate<QT, 64, 128>(p, n_tiles);
    else emulate<QT, 128, 128>(p, n_tiles);
}

// One product through the emulated kernel: mats (1 to 3, or gate and up for SwiGLU), fp32 or fp16 out, optional
// biases, optional residual; returns whether every element is within its bound.
template <int QT>
static bool emulated_case(int n, const std::vector<int> &rows, int cols, int epilogue, bool bias, int bm,
                          uint64_t seed) {
    std::vector<Mat> m(rows.size());
    for (size_t j = 0; j < rows.size(); ++j) {
        m[j].q = random_quant(QT, rows[j], cols, seed + 31 * j);
        m[j].w = dequantized(m[j].q);
    }
    std::vector<__half> xh;
    std::vector<double> xv;
    random_x(n, cols, seed ^ 0x1234, xh, xv);
    const bool swiglu = epilogue == EDGELLM_GEMM_SWIGLU_F32 || epilogue == EDGELLM_GEMM_SWIGLU_F16;
    const bool f16 = epilogue == EDGELLM_GEMM_F16 || epilogue == EDGELLM_GEMM_SWIGLU_F16;
    const int outputs = swiglu ? 1 : (int)rows.size();
    std::vector<std::vector<float>> yf(outputs), bs(rows.size());
    std::vector<std::vector<__half>> yh(outputs);
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    Params p{};
    int total = 0;
    for (size_t j = 0; j < rows.size(); ++j) {
        p.w[j] = m[j].qw();
        p.row_end[j] = total += rows[j];
        if (bias && !swiglu) {
            bs[j].resize(rows[j]);
            for (auto &b : bs[j]) b = u(rng);
            p.bias[j] = bs[j].data();
        }
    }
    for (size_t j = rows.size(); j < (size_t)kMaxMats; ++j) p.row_end[j] = total;
    for (int j = 0; j < outputs; ++j) {
        yf[j].assign((size_t)n * rows[j], epilogue == EDGELLM_GEMM_ADD_F32 ? 0.f : NAN);
        if (epilogue == EDGELLM_GEMM_ADD_F32)
            for (auto &v : yf[j]) v = 4.f * u(rng);
        yh[j].assign((size_t)n * rows[j], __float2half_rn(NAN));
        p.y[j] = f16 ? (void *)yh[j].data() : (void *)yf[j].data();
    }
    const std::vector<std::vector<float>> y0 = yf;
    p.count = (int)rows.size(), p.cols = cols, p.n = n, p.epilogue = epilogue, p.x = xh.data();
    const int n_tiles = swiglu ? (rows[0] + 63) / 64 : (total + 127) / 128;
    run_emulated<QT>(p, n_tiles, bm);

    std::vector<Ref> ref;
    for (size_t j = 0; j < rows.size(); ++j) ref.push_back(reference(xv, m[j].w, n, rows[j], cols));
    Worst wst;
    const double out_round = std::ldexp(1.0, -22) + (f16 ? std::ldexp(1.0, -11) : 0);
    for (int j = 0; j < outputs; ++j)
        for (int t = 0; t < n; ++t)
            for (int o = 0; o < rows[j]; ++o) {
                const size_t i = (size_t)t * rows[j] + o;
                const double got = f16 ? (double)__half2float(yh[j][i]) : (double)yf[j][i];
                double want, bound;
                if (swiglu) {
                    const double g = ref[0].y[i], up = ref[1].y[i];
                    const double eg = product_bound(ref[0], i, t, cols), eu = product_bound(ref[1], i, t, cols);
                    const double sg = g / (1 + std::exp(-g));
                    want = sg * up;
                    bound = 1.1 * eg * (std::fabs(up) + eu) + (std::fabs(sg) + 1.1 * eg) * eu +
                            (out_round + std::ldexp(1.0, -20)) * std::fabs(want);
                } else {
                    want = ref[j].y[i] + (bias ? bs[j][o] : 0.0) +
                           (epilogue == EDGELLM_GEMM_ADD_F32 ? (double)y0[j][i] : 0.0);
                    bound = product_bound(ref[j], i, t, cols) + out_round * std::fabs(want);
                }
                wst.add(got, want, bound);
            }
    const bool ok = wst.finite && wst.worst <= 1.0;
    std::printf("%-4s emulated %-4s bm=%-3d n=%-3d mats=%zu rows0=%-4d cols=%-4d epilogue=%d bias=%d  err/bound %.3f\n",
                ok ? "ok" : "FAIL", qtype_name(QT), bm, n, rows.size(), rows[0], cols, epilogue, bias ? 1 : 0,
                wst.worst);
    return ok;
}

template <int QT> static int emulated_cases(int cols) {
    int failures = 0;
    for (int bm : {64, 128}) {
        failures += !emulated_case<QT>(7, {200}, cols, EDGELLM_GEMM_F32, false, bm, 11);
        failures += !emulated_case<QT>(70, {64}, cols, EDGELLM_GEMM_F32, false, bm, 12);
        failures += !emulated_case<QT>(130, {72, 72, 200}, cols, EDGELLM_GEMM_F32, true, bm, 13);
        failures += !emulated_case<QT>(9, {200, 72, 72}, cols, EDGELLM_GEMM_F16, true, bm, 14);
        failures += !emulated_case<QT>(65, {136}, cols, EDGELLM_GEMM_ADD_F32, false, bm, 15);
        failures += !emulated_case<QT>(33, {100, 100}, cols, EDGELLM_GEMM_SWIGLU_F32, false, bm, 16);
        failures += !emulated_case<QT>(129, {72, 72}, cols, EDGELLM_GEMM_SWIGLU_F16, false, bm, 17);
    }
    return failures;
}

int main() {
    int failures = 0;
    const auto unpack = [&](int qtype, int cols, auto fn) {
        const HostQuant q = random_quant(qtype, 9, cols, 1234 + qtype + cols);
        const int bad = fn(q);
        std::printf("%-4s unpack   %-4s rows 9 cols %-4d: %d weights off\n", bad ? "FAIL" : "ok", qtype_name(qtype),
                    cols, bad);
        failures += bad != 0;
    };
    for (int cols : {64, 288, 576}) {
        unpack(EDGELLM_Q4_0, cols, check_unpack<EDGELLM_Q4_0>);
        unpack(EDGELLM_Q4_1, cols, check_unpack<EDGELLM_Q4_1>);
        unpack(EDGELLM_Q5_0, cols, check_unpack<EDGELLM_Q5_0>);
        unpack(EDGELLM_Q8_0, cols, check_unpack<EDGELLM_Q8_0>);
    }
    for (int cols : {256, 768}) {
        unpack(EDGELLM_Q4_K, cols, check_unpack<EDGELLM_Q4_K>);
        unpack(EDGELLM_Q6_K, cols, check_unpack<EDGELLM_Q6_K>);
    }
    failures += emulated_cases<EDGELLM_Q4_0>(288);
    failures += emulated_cases<EDGELLM_Q4_1>(96);
    failures += emulated_cases<EDGELLM_Q5_0>(160);
    failures += emulated_cases<EDGELLM_Q8_0>(288);
    failures += emulated_cases<EDGELLM_Q4_K>(256);
    failures += emulated_cases<EDGELLM_Q6_K>(512);
    std::printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
