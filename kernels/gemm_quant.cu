// Quantized matrix-matrix products on tensor cores (edgellm_prefill.h): Y = X W^T for a prefill chunk, X fp16
// [n, cols], W the planar quant blocks of edgellm_gemv.h as stored.
//
// One thread block of kThreads computes a BM x BN tile of Y (BM tokens by BN weight rows), walking cols in slabs of
// 64.  Per slab, the X tile arrives by cp.async (zero-filled past n and cols) and the W tile is dequantized by the
// threads themselves: each thread owns one "unit" of 32 weights of one row (two units per row and slab), loads its raw
// block bytes from global memory into registers one slab ahead, and after the current slab's products writes them as
// fp16 into the other shared-memory buffer.  So the loads of slab s+1 (X and W) are in flight during the products of
// slab s, with one barrier per slab: a buffer is written only after every warp has passed the barrier that follows
// its last read.  Products run on mma.sync m16n8k16 (fp16 in, fp32 accumulate); both tiles are [rows][64] fp16 with
// XOR-swizzled 16-byte chunks, read by ldmatrix free of bank conflicts.
//
// Numerics: a weight is computed in fp32 exactly as the GGUF formula gives it (d * q, d * sc * q - dmin * m, ...:
// at most 21 significant bits, exact in fp32 but for Q4_1's and Q4_K's final addition) and rounded once to fp16
// (relative error <= 2^-11), the one rounding the fp16 X operand also has; products are exact and summed in fp32.
//
// The epilogue stages the fp32 tile in shared memory (reusing the slab buffers) and writes Y row-major with
// consecutive threads on consecutive columns: bias, residual add, SwiGLU (the tile's first BN/2 rows are gate rows,
// the other BN/2 the same up rows), fp32 or fp16 output.
#include <cstring>
#include <type_traits>

#include "attention_common.cuh"
#include "edgellm_prefill.h"

namespace edgellm {
namespace gemm {

constexpr int kThreads = 256;  // 8 warps
constexpr int kSlab = 64;      // weights of a row per slab (8 chunks of 16 bytes in fp16)
constexpr int kMaxMats = 3;

struct QW {
    const uint8_t *qs, *qh, *scales;
    const void *d;
    int rows;
};

struct Params {
    QW w[kMaxMats];
    int row_end[kMaxMats];  // cumulative rows
    int count, cols, n, epilogue;
    const __half *x;
    void *y[kMaxMats];
    const float *bias[kMaxMats];
};

// The raw bytes of one unit (32 weights of one row and slab) and its scales, loaded one slab ahead.  Everything is
// kept as loaded (fp16 scales as their bits, Q4_K's packed 6-bit scales as their bytes) and decoded at the store:
// an instruction that used a loaded value at the load would wait there for memory, before the slab's products that
// the load is meant to overlap.
struct Raw {
    uint4 q[4];
    uint32_t e;      // Q5_0: the fifth bits; Q6_K: the unit's two int8 scales
    uint32_t dm;     // the block's fp16 d (low half) and, for Q4_1 and Q4_K, its fp16 m or dmin (high half)
    uint32_t sc[3];  // Q4_K: the super-block's 12 scale bytes
    int qd;          // Q6_K: the quarter of its half the unit's chunk is; Q4_K: the slab's quarter of the super-block
    bool ok;
};

// The unpacking of W (loads and stores below) also compiles for the host, where tests/gemm_host_check.cu runs it
// against the float64 reading of the blocks without a GPU.
#define GEMM_HD __host__ __device__ __forceinline__

template <typename T> GEMM_HD T ldg(const T *p) {
#ifdef __CUDA_ARCH__
    return __ldg(p);
#else
    return *p;
#endif
}
GEMM_HD uint4 ldg16(const uint8_t *p) { return ldg(reinterpret_cast<const uint4 *>(p)); }
// The fp16 in the low or high 16 bits of `bits`, as float.
GEMM_HD float half_lo(uint32_t bits) {
    const uint16_t h = (uint16_t)(bits & 0xFFFF);
    __half v;
    memcpy(&v, &h, 2);
    return __half2float(v);
}
GEMM_HD float half_hi(uint32_t bits) { return half_lo(bits >> 16); }
GEMM_HD uint32_t ldg_half_bits(const void *d, int64_t i) { return ldg(reinterpret_cast<const uint16_t *>(d) + i); }
GEMM_HD uint32_t ldg_half2_bits(const void *d, int64_t i) { return ldg(reinterpret_cast<const uint32_t *>(d) + i); }
GEMM_HD uint32_t word(const uint4 &v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }
GEMM_HD int byte_of(const uint4 &v, int b) { return (word(v, b >> 2) >> (8 * (b & 3))) & 0xFF; }
GEMM_HD uint32_t pack_half2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
}
// Element offset of 16-byte chunk `chunk` of `row` in a swizzled [rows][64] fp16 tile (attention_common.cuh's swizzle).
GEMM_HD int tile_offset(int row, int chunk) { return row * kSlab + ((chunk ^ (row & 7)) << 3); }

// Eight fp32 weights to fp16 (round to nearest) into 16-byte chunk `chunk` of `row` of a swizzled [rows][64] tile.
GEMM_HD void store8(__half *tile, int row, int chunk, const float (&v)[8]) {
    uint4 h;
    h.x = pack_half2(v[0], v[1]), h.y = pack_half2(v[2], v[3]);
    h.z = pack_half2(v[4], v[5]), h.w = pack_half2(v[6], v[7]);
    *reinterpret_cast<uint4 *>(tile + tile_offset(row, chunk)) = h;
}
GEMM_HD void store_zero(__half *tile, int row, int chunk) {
    *reinterpret_cast<uint4 *>(tile + tile_offset(row, chunk)) = make_uint4(0, 0, 0, 0);
}

// load<QT>: the unit's raw bytes (row r of w, slab s, unit u of 2).  store<QT>: its 32 weights into the tile.
// Units of the 32-weight types are blocks 2s and 2s + 1 of the row (offsets 32u..32u+31 of the slab); a slab of a
// 256-weight super-block is a quarter of it.
template <int QT> GEMM_HD void load(const QW &w, int cols, int r, int s, int u, Raw &raw);
template <int QT> GEMM_HD void store(const Raw &raw, __half *tile, int row, int u);

template <> GEMM_HD void load<EDGELLM_Q8_0>(const QW &w, int cols, int r, int s, int u, Raw &raw) {
    const int nb = cols / 32, b = 2 * s + u;
    raw.ok = raw.ok && b < nb;
    if (!raw.ok) return;
    const int64_t blk = (int64_t)r * nb + b;
    raw.q[0] = ldg16(w.qs + blk * 32), raw.q[1] = ldg16(w.qs + blk * 32 + 16);
    raw.dm = ldg_half_bits(w.d, blk);
}
template <> GEMM_HD void store<EDGELLM_Q8_0>(const Raw &raw, __half *tile, int row, int u) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
        if (!raw.ok) {
            store_zero(tile, row, 4 * u + c);
            continue;
        }
        const float d = half_lo(raw.dm);
        float v[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) v[i] = d * (float)(int8_t)byte_of(raw.q[c >> 1], (c & 1) * 8 + i);
        store8(tile, row, 4 * u + c, v);
    }
}

// Q4_0, Q4_1 and Q5_0 share their 16 bytes of nibbles: weight e < 16 is the low nibble of byte e, weight e >= 16 the
// high nibble of byte e - 16.
template <int QT> GEMM_HD void load_nibbles(const QW &w, int cols, int r, int s, int u, Raw &raw) {
    const int nb = cols / 32, b = 2 * s + u;
    raw.ok = raw.ok && b < nb;
    if (!raw.ok) return;
    const int64_t blk = (int64_t)r * nb + b;
    raw.q[0] = ldg16(w.qs + blk * 16);
    raw.dm = QT == EDGELLM_Q4_1 ? ldg_half2_bits(w.d, blk) : ldg_half_bits(w.d, blk);
    if (QT == EDGELLM_Q5_0) raw.e = ldg(reinterpret_cast<const uint32_t *>(w.qh) + blk);
}
template <> GEMM_HD void load<EDGELLM_Q4_0>(const QW &w, int cols, int r, int s, int u, Raw &raw) {
    load_nibbles<EDGELLM_Q4_0>(w, cols, r, s, u, raw);
}
template <> GEMM_HD void load<EDGELLM_Q4_1>(const QW &w, int cols, int r, int s, int u, Raw &raw) {
    load_nibbles<EDGELLM_Q4_1>(w, cols, r, s, u, raw);
}
template <> GEMM_HD void load<EDGELLM_Q5_0>(const QW &w, int cols, int r, int s, int u, Raw &raw) {
    load_nibbles<EDGELLM_Q5_0>(w, cols, r, s, u, raw);
}

template <int QT> GEMM_HD void store_nibbles(const Raw &raw, __half *tile, int row, int u) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {  // chunk c: weights 8c..8c+7
        if (!raw.ok) {
            store_zero(tile, row, 4 * u + c);
            continue;
        }
        const float d = half_lo(raw.dm), m = half_hi(raw.dm);
        float v[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const int e = 8 * c + i;
            const int n = (byte_of(raw.q[0], e & 15) >> (e < 16 ? 0 : 4)) & 0x0F;
            if (QT == EDGELLM_Q4_0) v[i] = d * (float)(n - 8);
            else if (QT == EDGELLM_Q4_1) v[i] = d * (float)n + m;
            else v[i] = d * (float)((n | (int)(((raw.e >> e) & 1) << 4)) - 16);  // int: n - 16 < 0
        }
        store8(tile, row, 4 * u + c, v);
    }
}
template <> GEMM_HD void store<EDGELLM_Q4_0>(const Raw &raw, __half *tile, int row, int u) {
    store_nibbles<EDGELLM_Q4_0>(raw, tile, row, u);
}
template <> GEMM_HD void store<EDGELLM_Q4_1>(const Raw &raw, __half *tile, int row, int u) {
    store_nibbles<EDGELLM_Q4_1>(raw, tile, row, u);
}
template <> GEMM_HD void store<EDGELLM_Q5_0>(const Raw &raw, __half *tile, int row, int u) {
    store_nibbles<EDGELLM_Q5_0>(raw, tile, row, u);
}

// Q4_K: slab g (0..3) of a super-block is sub-blocks 2g (low nibbles of the group's 32 bytes) and 2g + 1 (high
// nibbles); unit u takes bytes 16u..16u+15 of the group, i.e. offsets 16u.. and 32 + 16u.. of the slab.  The
// super-block's 12 scale bytes travel as three words, their 6-bit fields picked at the store.
GEMM_HD int k4_byte(const uint32_t (&sc)[3], int k) {
    const uint32_t w = k < 4 ? sc[0] : k < 8 ? sc[1] : sc[2];  // selects, not an indexed (local-memory) array
    return (int)((w >> (8 * (k & 3))) & 0xFF);
}
// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j (0..7) from a Q4_K super-block's 12 scale bytes
// (here its three words).
GEMM_HD void scale_min_k4_words(const uint32_t (&sc)[3], int j, int &s, int &m) {
    if (j < 4) {
        s = k4_byte(sc, j) & 63;
        m = k4_byte(sc, j + 4) & 63;
    } else {
        s = (k4_byte(sc, j + 4) & 0x0F) | ((k4_byte(sc, j - 4) >> 6) << 4);
        m = (k4_byte(sc, j + 4) >> 4) | ((k4_byte(sc, j) >> 6) << 4);
    }
}
template <> GEMM_HD void load<EDGELLM_Q4_K>(const QW &w, int cols, int r, int s, int u, Raw &raw) {
    if (!raw.ok) return;
    const int64_t sb = (int64_t)r * (cols / 256) + s / 4;
    const int g = s % 4;
    raw.q[0] = ldg16(w.qs + sb * 128 + g * 32 + 16 * u);
    raw.dm = ldg_half2_bits(w.d, sb);
    const uint32_t *sc = reinterpret_cast<const uint32_t *>(w.scales + sb * 12);
    raw.sc[0] = ldg(sc), raw.sc[1] = ldg(sc + 1), raw.sc[2] = ldg(sc + 2);
    raw.qd = g;
}
template <> GEMM_HD void store<EDGELLM_Q4_K>(const Raw &raw, __half *tile, int row, int u) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {  // half 0: sub-block 2g (low nibbles), 1: sub-block 2g + 1 (high)
        int sc, mn;
        scale_min_k4_words(raw.sc, 2 * raw.qd + half, sc, mn);
        const float ds = half_lo(raw.dm) * (float)sc;
        const float dm = half_hi(raw.dm) * (float)mn;
#pragma unroll
        for (int c = 0; c < 2; ++c) {
            const int chunk = 4 * half + 2 * u + c;
            if (!raw.ok) {
                store_zero(tile, row, chunk);
                continue;
            }
            float v[8];
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const int n = (byte_of(raw.q[0], 8 * c + i) >> (4 * half)) & 0x0F;
                v[i] = ds * (float)n - dm;
            }
            store8(tile, row, chunk, v);
        }
    }
}

// Q6_K: slab g of a super-block is its chunks j = 2g + u (32 weights each): half h = j / 4, quarter qd = j % 4;
// weight l takes the low (qd < 2) or high nibble of ql byte h*64 + (qd & 1)*32 + l and bits 2*qd.. of qh byte
// h*32 + l: q = that 6-bit value - 32, times the int8 scale of its 16 and d.
template <> GEMM_HD void load<EDGELLM_Q6_K>(const QW &w, int cols, int r, int s, int u, Raw &raw) {
    if (!raw.ok) return;
    const int64_t sb = (int64_t)r * (cols / 256) + s / 4;
    const int j = 2 * (s % 4) + u, h = j / 4, qd = j % 4;
    const uint8_t *ql = w.qs + sb * 128 + h * 64 + (qd & 1) * 32;
    const uint8_t *qh = w.qh + sb * 64 + h * 32;
    raw.q[0] = ldg16(ql), raw.q[1] = ldg16(ql + 16), raw.q[2] = ldg16(qh), raw.q[3] = ldg16(qh + 16);
    raw.e = ldg(reinterpret_cast<const uint16_t *>(w.scales + sb * 16 + 2 * j));
    raw.dm = ldg_half_bits(w.d, sb);
    raw.qd = qd;
}
template <> GEMM_HD void store<EDGELLM_Q6_K>(const Raw &raw, __half *tile, int row, int u) {
    const int qd = raw.qd;
    const int lshift = (qd >> 1) * 4, hshift = 2 * qd;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
        if (!raw.ok) {
            store_zero(tile, row, 4 * u + c);
            continue;
        }
        const float ds = half_lo(raw.dm) * (float)(int8_t)((raw.e >> (8 * (c >> 1))) & 0xFF);
        float v[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const int l = 8 * c + i;
            const int lo = (byte_of(raw.q[l >> 4], l & 15) >> lshift) & 0x0F;
            const int hi = (byte_of(raw.q[2 + (l >> 4)], l & 15) >> hshift) & 3;
            v[i] = ds * (float)((lo | (hi << 4)) - 32);
        }
        store8(tile, row, 4 * u + c, v);
    }
}

// The matrix and row of tile row `local` of N tile `tile`; false past the matrix.
GEMM_HD bool tile_row(const Params &p, int BN, int tile, int local, int &j, int &r) {
    if (p.epilogue == EDGELLM_GEMM_SWIGLU_F32 || p.epilogue == EDGELLM_GEMM_SWIGLU_F16) {
        j = local < BN / 2 ? 0 : 1;
        r = tile * (BN / 2) + local - j * (BN / 2);
        return r < p.w[0].rows;
    }
    const int gr = tile * BN + local;
    j = gr < p.row_end[0] ? 0 : gr < p.row_end[1] ? 1 : 2;
    if (j >= p.count || gr >= p.row_end[p.count - 1]) return false;
    r = j > 0 ? gr - p.row_end[j - 1] : gr;
    return true;
}

// Blocks per SM the register budget is held to (a build setting: make EXTRA=-DEDGELLM_GEMM_MIN_BLOCKS=1).  With 2,
// the 128-token tiles fit 128 registers (ptxas spills up to 28 bytes for some types) and two blocks share an SM, one's
// loads overlapping the other's products; with 1 the compiler takes up to 160 registers for some types.  Not yet
// measured against each other.
#ifndef EDGELLM_GEMM_MIN_BLOCKS
#define EDGELLM_GEMM_MIN_BLOCKS 2
#endif
constexpr int kMinBlocks = EDGELLM_GEMM_MIN_BLOCKS;

template <int BM, int BN> struct Tile {
    static constexpr int kWarpsM = 2, kWarpsN = 4;
    static constexpr int TM = BM / kWarpsM, TN = BN / kWarpsN;  // warp tile
    static constexpr int MT = TM / 16, NT = TN / 8;
    static constexpr int kStageStride = BN + 4;  // fp32 staging row (+4: rows start on different banks)
    static constexpr int kLoopBytes = 2 * (BM + BN) * kSlab * 2;
    // The epilogue stages the whole tile at once where it fits in the slab buffers, otherwise one warp row of tiles
    // (TM rows) per pass: so the 128-token tile needs no more than its 64 KB of slab buffers, the most shared memory a
    // Turing block may have.
    static constexpr int kStageRows = BM * kStageStride * 4 > kLoopBytes ? TM : BM;
    static constexpr int kStageBytes = kStageRows * kStageStride * 4;
    static constexpr int kSmemBytes = kLoopBytes > kStageBytes ? kLoopBytes : kStageBytes;
    static_assert(BN * 2 == kThreads, "one unit of W per thread and slab");
    static_assert(MT >= 1 && NT % 2 == 0, "warp tile");
    // The first tile row and column of warp w's share.
    static GEMM_HD int warp_m0(int w) { return (w / kWarpsN) * TM; }
    static GEMM_HD int warp_n0(int w) { return (w % kWarpsN) * TN; }
};

// Copy `it` of thread tid into a slab's X tile: the tile row and chunk it fills, and its source (ok: inside X).
struct XCopy {
    int row, chunk;
    bool ok;
    int64_t src;  // element offset in X
};
GEMM_HD XCopy x_copy(const Params &p, int m0, int s, int it, int tid) {
    const int idx = it * kThreads + tid, row = idx >> 3, chunk = idx & 7;
    const int col = s * kSlab + chunk * 8;
    const bool ok = m0 + row < p.n && col < p.cols;
    return XCopy{row, chunk, ok, ok ? (int64_t)(m0 + row) * p.cols + col : 0};
}

// The tile row and chunk whose address lane gives to ldmatrix: for the A fragment (X, 16 rows x 16 k) of m-tile mt
// at k-step kk, and for the B fragments (W, two n-tiles of 8 rows x 16 k) of pair np.
GEMM_HD int a_frag_row(int wm0, int mt, int lane) { return wm0 + mt * 16 + (lane & 7) + ((lane >> 3) & 1) * 8; }
GEMM_HD int a_frag_chunk(int kk, int lane) { return 2 * kk + (lane >> 4); }
GEMM_HD int b_frag_row(int wn0, int np, int lane) { return wn0 + np * 16 + (lane & 7) + ((lane >> 4) << 3); }
GEMM_HD int b_frag_chunk(int kk, int lane) { return 2 * kk + ((lane >> 3) & 1); }
// The tile row and column of accumulator i (0..3) of lane's m16n8 tile (mt, nt).
GEMM_HD int acc_row(int wm0, int mt, int lane, int i) { return wm0 + mt * 16 + (lane >> 2) + (i >> 1) * 8; }
GEMM_HD int acc_col(int wn0, int nt, int lane, int i) { return wn0 + nt * 8 + 2 * (lane & 3) + (i & 1); }

// Output element (tile row m, tile column c) from the staged fp32 tile sC (row stride `stride`): bias, SwiGLU,
// residual add and the output type.
GEMM_HD void epilogue_element(const Params &p, int BN, int ntile, int m0, int m, int c, const float *sC, int stride) {
    const bool swiglu = p.epilogue == EDGELLM_GEMM_SWIGLU_F32 || p.epilogue == EDGELLM_GEMM_SWIGLU_F16;
    const bool f16 = p.epilogue == EDGELLM_GEMM_F16 || p.epilogue == EDGELLM_GEMM_SWIGLU_F16;
    const int token = m0 + m;
    int j, r;
    if (token >= p.n || !tile_row(p, BN, ntile, c, j, r)) return;
    float v = sC[m * stride + c];
    if (swiglu) {
        const float u = sC[m * stride + c + BN / 2];
        v = v / (1.f + expf(-v)) * u;
    } else if (p.bias[j]) {
        v += p.bias[j][r];
    }
    const int64_t at = (int64_t)token * p.w[j].rows + r;
    if (f16) static_cast<__half *>(p.y[j])[at] = __float2half_rn(v);
    else if (p.epilogue == EDGELLM_GEMM_ADD_F32) static_cast<float *>(p.y[j])[at] += v;
    else static_cast<float *>(p.y[j])[at] = v;
}

template <int QT, int BM, int BN>
__global__ void __launch_bounds__(kThreads, kMinBlocks) gemm_kernel(const __grid_constant__ Params p) {
    using C = Tile<BM, BN>;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    __half *sX = reinterpret_cast<__half *>(smem_raw);  // two buffers of BM x 64
    __half *sW = sX + 2 * BM * kSlab;                   // two buffers of BN x 64
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int m0 = blockIdx.x * BM, ntile = blockIdx.y;
    const int wm0 = C::warp_m0(warp), wn0 = C::warp_n0(warp);
    const int slabs = (p.cols + kSlab - 1) / kSlab;

    // This thread's unit of W: tile row tid / 2, unit tid % 2.
    const int wrow = tid >> 1, wu = tid & 1;
    int wj = 0, wr = 0;
    const bool wrow_ok = tile_row(p, BN, ntile, wrow, wj, wr);
    const QW &W = p.w[wj];

    const auto load_x = [&](int s, int buf) {
        constexpr int kPer = BM * 8 / kThreads;
        __half *dst = sX + buf * BM * kSlab;
#pragma unroll
        for (int it = 0; it < kPer; ++it) {
            const XCopy xc = x_copy(p, m0, s, it, tid);
            cp_async_16(smem_addr(dst + tile_offset(xc.row, xc.chunk)), p.x + xc.src, xc.ok ? 16 : 0);
        }
    };
    const auto load_w = [&](int s, Raw &raw) {
        raw.ok = wrow_ok;
        load<QT>(W, p.cols, wr, s, wu, raw);
    };

    float acc[C::MT][C::NT][4];
#pragma unroll
    for (int a = 0; a < C::MT; ++a)
#pragma unroll
        for (int b = 0; b < C::NT; ++b) acc[a][b][0] = acc[a][b][1] = acc[a][b][2] = acc[a][b][3] = 0.f;

    Raw raw;
    load_x(0, 0);
    cp_async_commit();
    load_w(0, raw);
    store<QT>(raw, sW, wrow, wu);

    for (int s = 0; s < slabs; ++s) {
        cp_async_wait<0>();
        __syncthreads();  // slab s is in both buffers for everyone; everyone is done with slab s - 1's buffers
        const int buf = s & 1;
        if (s + 1 < slabs) {
            load_x(s + 1, buf ^ 1);
            load_w(s + 1, raw);
        }
        cp_async_commit();
        const __half *tx = sX + buf * BM * kSlab, *tw = sW + buf * BN * kSlab;
#pragma unroll
        for (int kk = 0; kk < kSlab / 16; ++kk) {
            uint32_t af[C::MT][4], bf[C::NT / 2][4];
#pragma unroll
            for (int mt = 0; mt < C::MT; ++mt)
                ldmatrix_x4(af[mt], smem_addr(tx + tile_offset(a_frag_row(wm0, mt, lane), a_frag_chunk(kk, lane))));
#pragma unroll
            for (int np = 0; np < C::NT / 2; ++np)
                ldmatrix_x4(bf[np], smem_addr(tw + tile_offset(b_frag_row(wn0, np, lane), b_frag_chunk(kk, lane))));
#pragma unroll
            for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < C::NT; ++nt) mma_16816<__half>(acc[mt][nt], af[mt], &bf[nt >> 1][(nt & 1) * 2]);
        }
        if (s + 1 < slabs) store<QT>(raw, sW + (buf ^ 1) * BN * kSlab, wrow, wu);
    }
    cp_async_wait<0>();
    __syncthreads();  // every warp is done with the slab buffers the staging tile overwrites

    float *sC = reinterpret_cast<float *>(smem_raw);
    const bool swiglu = p.epilogue == EDGELLM_GEMM_SWIGLU_F32 || p.epilogue == EDGELLM_GEMM_SWIGLU_F16;
    const int width = swiglu ? BN / 2 : BN;
#pragma unroll 1
    for (int r0 = 0; r0 < BM; r0 += C::kStageRows) {  // staging passes: tile rows r0 .. r0 + kStageRows - 1
        if (r0 > 0) __syncthreads();                   // the previous pass's epilogue is done with sC
        if (wm0 >= r0 && wm0 < r0 + C::kStageRows) {   // uniform per warp
#pragma unroll
            for (int mt = 0; mt < C::MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < C::NT; ++nt)
#pragma unroll
                    for (int i = 0; i < 4; i += 2) {  // (i, i + 1): adjacent columns of one row
                        const int row = acc_row(wm0, mt, lane, i) - r0;
                        float *dst = sC + row * C::kStageStride + acc_col(wn0, nt, lane, i);
                        *reinterpret_cast<float2 *>(dst) = make_float2(acc[mt][nt][i], acc[mt][nt][i + 1]);
                    }
        }
        __syncthreads();
        for (int idx = tid; idx < C::kStageRows * width; idx += kThreads)
            epilogue_element(p, BN, ntile, m0 + r0, idx / width, idx % width, sC, C::kStageStride);
    }
}

template <int QT, int BM, int BN> int launch(const Params &p, int n_tiles, cudaStream_t stream) {
    using C = Tile<BM, BN>;
    static bool configured = false;  // over 48 KB of dynamic shared memory needs the opt-in, once per kernel
    if (!configured) {
        const cudaError_t err =
            cudaFuncSetAttribute(gemm_kernel<QT, BM, BN>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes);
        if (err != cudaSuccess) {
            set_cuda_error(err);
            return EDGELLM_ERR_CUDA;
        }
        configured = true;
    }
    const dim3 grid((unsigned)((p.n + BM - 1) / BM), (unsigned)n_tiles);
    gemm_kernel<QT, BM, BN><<<grid, kThreads, C::kSmemBytes, stream>>>(p);
    return check_launch();
}

constexpr int kBN = 128;

template <int QT> int launch_bm(const Params &p, int n_tiles, int bm, cudaStream_t s) {
    return bm == 64 ? launch<QT, 64, kBN>(p, n_tiles, s) : launch<QT, 128, kBN>(p, n_tiles, s);
}

}  // namespace gemm
}  // namespace edgellm

using namespace edgellm;

namespace {

bool gemm_matrix_ok(const edgellm_qmatrix *m) {
    if (!m || !m->qs || !m->d || m->rows <= 0 || m->cols <= 0) return false;
    const bool k_type = m->qtype == EDGELLM_Q4_K || m->qtype == EDGELLM_Q6_K;
    if (m->cols % (k_type ? 256 : 32)) return false;
    if (k_type && !m->scales) return false;
    if ((m->qtype == EDGELLM_Q6_K || m->qtype == EDGELLM_Q5_0) && !m->qh) return false;
    // 16-byte loads of qs (and of Q6_K's qh), 4-byte of the scales and d.
    const uintptr_t qh_align = m->qtype == EDGELLM_Q6_K ? 16 : 4;
    const auto at = [](const void *p) { return reinterpret_cast<uintptr_t>(p); };
    return at(m->qs) % 16 == 0 && (!m->qh || at(m->qh) % qh_align == 0) && (!m->scales || at(m->scales) % 4 == 0) &&
           at(m->d) % 4 == 0;
}

// 128-token tiles unless they would leave the device less than two blocks per SM (a short chunk, or a product with
// few rows): then 64, twice the blocks for the same work.
int default_bm(int n, int n_tiles) {
    static const int sms = [] {
        int dev = 0, count = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            return 1;
        return count;
    }();
    const long long blocks128 = (long long)((n + 127) / 128) * n_tiles;
    return blocks128 >= 2LL * sms ? 128 : 64;
}

int gemm_impl(const edgellm_qmatrix *const *w, void *const *y, const float *const *bias, int count, const void *x,
              int n, int epilogue, int bm, void *stream) {
    if (!w || !y || !x || n < 1 || count < 1 || count > gemm::kMaxMats) return EDGELLM_ERR_ARGUMENT;
    if (epilogue < EDGELLM_GEMM_F32 || epilogue > EDGELLM_GEMM_SWIGLU_F16) return EDGELLM_ERR_ARGUMENT;
    const bool swiglu = epilogue == EDGELLM_GEMM_SWIGLU_F32 || epilogue == EDGELLM_GEMM_SWIGLU_F16;
    if (swiglu && (count != 2 || !w[0] || !w[1] || w[0]->rows != w[1]->rows)) return EDGELLM_ERR_ARGUMENT;
    if (reinterpret_cast<uintptr_t>(x) % 16) return EDGELLM_ERR_ARGUMENT;
    gemm::Params p{};
    int rows = 0;
    for (int j = 0; j < count; ++j) {
        if (!gemm_matrix_ok(w[j]) || w[j]->qtype != w[0]->qtype || w[j]->cols != w[0]->cols)
            return EDGELLM_ERR_ARGUMENT;
        if (!swiglu || j == 0) {
            if (!y[j]) return EDGELLM_ERR_ARGUMENT;
            p.y[j] = y[j];
            p.bias[j] = bias && !swiglu ? bias[j] : nullptr;
        }
        p.w[j] = gemm::QW{static_cast<const uint8_t *>(w[j]->qs), static_cast<const uint8_t *>(w[j]->qh),
                          static_cast<const uint8_t *>(w[j]->scales), w[j]->d, w[j]->rows};
        p.row_end[j] = rows += w[j]->rows;
    }
    for (int j = count; j < gemm::kMaxMats; ++j) p.row_end[j] = rows;
    p.count = count, p.cols = w[0]->cols, p.n = n, p.epilogue = epilogue, p.x = static_cast<const __half *>(x);
    if (swiglu) p.w[1].rows = w[0]->rows, p.y[1] = nullptr;  // y[1] unused: output rows are gate rows
    constexpr int kBN = gemm::kBN;
    const int n_tiles = swiglu ? (w[0]->rows + kBN / 2 - 1) / (kBN / 2) : (rows + kBN - 1) / kBN;
    if (bm <= 0) bm = default_bm(n, n_tiles);
    if (bm != 64 && bm != 128) return EDGELLM_ERR_ARGUMENT;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    switch (w[0]->qtype) {
    case EDGELLM_Q4_0: return gemm::launch_bm<EDGELLM_Q4_0>(p, n_tiles, bm, s);
    case EDGELLM_Q4_1: return gemm::launch_bm<EDGELLM_Q4_1>(p, n_tiles, bm, s);
    case EDGELLM_Q5_0: return gemm::launch_bm<EDGELLM_Q5_0>(p, n_tiles, bm, s);
    case EDGELLM_Q8_0: return gemm::launch_bm<EDGELLM_Q8_0>(p, n_tiles, bm, s);
    case EDGELLM_Q4_K: return gemm::launch_bm<EDGELLM_Q4_K>(p, n_tiles, bm, s);
    case EDGELLM_Q6_K: return gemm::launch_bm<EDGELLM_Q6_K>(p, n_tiles, bm, s);
    default: return EDGELLM_ERR_UNSUPPORTED;
    }
}

}  // namespace

extern "C" int edgellm_gemm(const edgellm_qmatrix *const *w, void *const *y, const float *const *bias, int count,
                            const void *x, int n, int epilogue, void *stream) {
    return gemm_impl(w, y, bias, count, x, n, epilogue, 0, stream);
}

// A chosen tile height (bm 64 or 128; 0: the default for n), for the accuracy gate and the benchmark (not part of
// the public header).
extern "C" int edgellm_gemm_variant(const edgellm_qmatrix *const *w, void *const *y, const float *const *bias,
                                    int count, const void *x, int n, int epilogue, int bm, void *stream) {
    return gemm_impl(w, y, bias, count, x, n, epilogue, bm, stream);
}
