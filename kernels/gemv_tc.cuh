// Decode GEMV on the int8 tensor cores: each warp multiplies a tile of 16 weight rows with the activations by
// mma.sync m16n8k32 (u8 or s8 weights, s8 activation digits, exact int32 sums), included by gemv_quant.cu.
//
// Why: the CUDA-core kernels of gemv_quant.cu reload a chunk's 64 activation bytes (two int8 digits a value) from L1
// for every pair of rows, and their profile shows warps waiting on L1 more than DRAM at half its bandwidth
// (docs/performance.md).  Here an mma's B operand is the activations, held by a few lanes, and every one of them
// serves all 16 rows of the A operand: a tile reads 4 activation bytes per 16 weight bytes of Q4 (the CUDA-core
// kernel 36).  As measured so far it is slower on most models (fewer weight bytes in flight), so it is off unless
// EDGELLM_GEMV_TC=1 (gemv_quant.cu).
//
// The layout of one step (4 chunks = 128 weights of each of the tile's 16 rows).  Lane l = 4 g + t (g = l / 4, t =
// l % 4) holds A's rows g and g + 8 and the k slots 4t..4t+3 (a0/a1) and 16+4t..16+4t+3 (a2/a3) of each mma; B's
// column n = g and the same k slots; C's rows g, g + 8 and columns 2t, 2t + 1 (PTX ISA, "Matrix fragments for
// mma.m16n8k32").  The k order inside an mma is free as long as A and B agree, and B's 8 columns need not be one
// vector: column 2q + d holds digit d (0: high, 1: low) of the activations of "slot" q's weights and zeros elsewhere,
// so C's columns 2t and 2t + 1 are, per row, the two digit sums of slot t alone, on the lane that applies slot t's
// scales.  A slot is a 32-weight chunk (a 16-weight group for Q6_K, whose scales are per 16).  Each lane loads whole
// 16-byte runs of its rows' blocks (per row a step is 64 contiguous bytes of Q4_0), each weight byte once (Q6_K's
// high bits twice: two lanes' groups share them).
//
// Per slot the integer sum is that of gemv_quant.cu's chunk_dot (the same 254 hi + lo, the same scale arithmetic);
// only the order in which the slots' fp32 terms are added differs.  Every row's sum takes the same path whatever the
// rows beside it, so every entry point gives the same bits for the same matrix.
#pragma once
#include <algorithm>

namespace edgellm {

// Warps per block, splitting a tile's steps among them (warp w takes steps w, w + W, ...); a build setting.
#ifndef EDGELLM_GEMV_TC_WARPS
#define EDGELLM_GEMV_TC_WARPS 4
#endif
constexpr int kTcWarps = EDGELLM_GEMV_TC_WARPS;
static_assert(kTcWarps >= 1 && kTcWarps <= 8, "1 to 8 warps per block");
constexpr int kTcRows = 16;  // rows per tile (one tile of each matrix per block)
// Steps a warp has in flight (their weights loaded before the first is used); a build setting.
#ifndef EDGELLM_GEMV_TC_UNROLL
#define EDGELLM_GEMV_TC_UNROLL 2
#endif
constexpr int kTcUnroll = EDGELLM_GEMV_TC_UNROLL;
static_assert(kTcUnroll >= 1 && kTcUnroll <= 4, "1 to 4 steps in flight");

__device__ __forceinline__ uint32_t word_of(const uint4 &v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// Per quant type: whether A is signed, and the number of C accumulators a step fills (Q6_K's two: its lanes'
// low-nibble and high-nibble weights belong to different 16-weight groups, eight groups a step for four slots).
template <int QT> struct TcType {
    static constexpr bool kSigned = QT == EDGELLM_Q8_0 || QT == EDGELLM_Q6_K;
    static constexpr int kSets = QT == EDGELLM_Q6_K ? 2 : 1;
    static constexpr bool kSuper = QT == EDGELLM_Q4_K || QT == EDGELLM_Q6_K;  // 256-weight super-blocks
};

// One row's share of a step on one lane: its raw bytes and scales, loaded before any of them is used.
struct TcRow {
    uint4 a, b;      // Q4_*/Q5_0: a = the block's 16 nibble bytes; Q8_0: a, b = its 32 bytes; Q4_K: a = 16 bytes of a
                     // 32-byte group; Q6_K: a = 16 ql bytes, b = the 16 qh bytes beside them
    uint32_t e;      // Q5_0: the block's fifth bits
    float s0, s1;    // the slot's scale terms (see tc_slot_sum)
    int k0, k1;      // Q4_K: sub-block scale and min; Q6_K: the two groups' int8 scales
};

// The lane's slot: t for every type (C columns 2t, 2t + 1).  Its chunk within the step (0..3) for the per-chunk
// activation scale: t, or for Q6_K set s the chunk of group t (t / 2, plus 2 for the second set).
template <int QT> __device__ __forceinline__ int tc_slot_chunk(int t, int set) {
    if constexpr (QT == EDGELLM_Q6_K) return t / 2 + 2 * set;
    else return t;
}

// Loads row `row`'s bytes of step `step` (chunks 4 step .. 4 step + 3) for lane slot t.  `n`: chunks a row.  A
// 32-weight type's last step may run past the row: its chunk is clamped (read, then dropped by the caller).
template <int QT> __device__ __forceinline__ void tc_load(const QMatrix &w, int row, int step, int t, int n, TcRow &r) {
    if constexpr (QT == EDGELLM_Q4_K) {
        // Half `step & 1` of super-block step / 2: its groups p = 2 (step & 1) + t / 2, bytes 16 (t & 1) ...
        const int64_t sb = (int64_t)row * (n / 8) + step / 2;
        const int p = 2 * (step & 1) + t / 2;
        r.a = load_weights16(w.qs + sb * 128 + p * 32 + 16 * (t & 1));
        // This lane applies sub-block j = 4 (step & 1) + t's scale and min (get_scale_min_k4).
        const uint8_t *s = w.scales + sb * 12;
        const int j = 4 * (step & 1) + t;
        if (j < 4) {
            r.k0 = __ldg(s + j) & 63;
            r.k1 = __ldg(s + j + 4) & 63;
        } else {
            r.k0 = (__ldg(s + j + 4) & 0x0F) | ((__ldg(s + j - 4) >> 6) << 4);
            r.k1 = (__ldg(s + j + 4) >> 4) | ((__ldg(s + j) >> 6) << 4);
        }
        const __half2 dm = reinterpret_cast<const __half2 *>(w.d)[sb];
        r.s0 = __low2float(dm), r.s1 = __high2float(dm);
    } else if constexpr (QT == EDGELLM_Q6_K) {
        // Half h = step & 1 of super-block step / 2: ql bytes h 64 + 32 (t / 2) + 16 (t & 1) hold, in their low
        // nibbles, weights 16 (t & 1) .. of chunk t / 2 and in their high ones those of chunk t / 2 + 2; the qh bytes
        // h 32 + 16 (t & 1) .. their two high bits.
        const int64_t sb = (int64_t)row * (n / 8) + step / 2;
        const int h = step & 1;
        r.a = load_weights16(w.qs + sb * 128 + h * 64 + 32 * (t / 2) + 16 * (t & 1));
        r.b = load_weights16(w.qh + sb * 64 + h * 32 + 16 * (t & 1));
        const int8_t *sc = reinterpret_cast<const int8_t *>(w.scales + sb * 16);
        r.k0 = __ldg(sc + 8 * h + t), r.k1 = __ldg(sc + 8 * h + 4 + t);  // groups of the two sets (slot t each)
        r.s0 = half_at(w.d, sb);
    } else {
        const int chunk = min(4 * step + t, n - 1);
        const int64_t blk = (int64_t)row * n + chunk;
        if constexpr (QT == EDGELLM_Q8_0) {
            r.a = load_weights16(w.qs + blk * 32);
            r.b = load_weights16(w.qs + blk * 32 + 16);
        } else {
            r.a = load_weights16(w.qs + blk * 16);
        }
        if constexpr (QT == EDGELLM_Q5_0) r.e = __ldg(reinterpret_cast<const uint32_t *>(w.qh) + blk);
        if constexpr (QT == EDGELLM_Q4_1) {
            const __half2 dm = reinterpret_cast<const __half2 *>(w.d)[blk];
            r.s0 = __low2float(dm), r.s1 = __high2float(dm);
        } else {
            r.s0 = half_at(w.d, blk);
        }
    }
}

// The row's A words of the step: mma i takes word 2i in its k slots 4t.. and word 2i + 1 in 16 + 4t...
template <int QT> __device__ __forceinline__ void tc_unpack(const TcRow &r, int t, uint32_t (&a)[8]) {
    if constexpr (QT == EDGELLM_Q8_0) {
#pragma unroll
        for (int i = 0; i < 4; ++i) a[2 * i] = word_of(r.a, i), a[2 * i + 1] = word_of(r.b, i);
    } else if constexpr (QT == EDGELLM_Q6_K) {
        // mmas 0, 1: the low-nibble group (words 0-1, 2-3); mmas 2, 3: the high-nibble group.  q - 32 in s8.
        const int hs = 2 * (t / 2);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const uint32_t ql = word_of(r.a, i), qh = word_of(r.b, i);
            const uint32_t lo = (ql & 0x0F0F0F0Fu) | (((qh >> hs) & 0x03030303u) << 4);
            const uint32_t hi = ((ql >> 4) & 0x0F0F0F0Fu) | (((qh >> (hs + 4)) & 0x03030303u) << 4);
            a[i] = __vsub4(lo, 0x20202020u);
            a[4 + i] = __vsub4(hi, 0x20202020u);
        }
    } else {
        // Low nibbles: weights 4i.. (Q4_K: of slot 2 (t / 2)); high nibbles: weights 16 + 4i.. (Q4_K: the same
        // positions of slot 2 (t / 2) + 1).
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const uint32_t q = word_of(r.a, i);
            uint32_t lo = q & 0x0F0F0F0Fu, hi = (q >> 4) & 0x0F0F0F0Fu;
            if constexpr (QT == EDGELLM_Q5_0) lo |= fifth_bits(r.e >> (4 * i)), hi |= fifth_bits(r.e >> (16 + 4 * i));
            a[2 * i] = lo, a[2 * i + 1] = hi;
        }
    }
}

// The lane's B words of the step (zeros where its column's slot has no weights in its k slots), and the
// activation scales (s, s * sum) of its C slot's chunk(s).  Lane (g, t): column g holds digit g & 1 of slot g / 2.
struct TcAct {
    uint32_t b[8];
    float2 ds[2];
};
// run(chunk, half): the 16 digits (weights 16 half ..) of the lane's digit of chunk c0 + chunk, clamped to the row;
// ds(chunk): (s, s * sum) of chunk c0 + chunk, clamped.  Each loads from wherever the activations are.
template <int QT, typename Run, typename Ds>
__device__ __forceinline__ void tc_fill_act(int lane, TcAct &x, Run run, Ds ds) {
    const int g = lane >> 2, t = lane & 3, q = g >> 1;
#pragma unroll
    for (int i = 0; i < 8; ++i) x.b[i] = 0;
    if constexpr (QT == EDGELLM_Q4_K) {
        // Slot q's weights sit in lanes t / 2 == q / 2: the low nibbles (even q) in the first word of each pair,
        // the high nibbles (odd q) in the second, at positions 16 (t & 1) ...
        if (t / 2 == q / 2) {
            const uint4 v = run(q, t & 1);
#pragma unroll
            for (int i = 0; i < 4; ++i) x.b[2 * i + (q & 1)] = word_of(v, i);
        }
    } else if constexpr (QT == EDGELLM_Q6_K) {
        // Slot q = t's groups: set 0 chunk t / 2, set 1 chunk t / 2 + 2, positions 16 (t & 1) ...
        if (t == q) {
            const uint4 v0 = run(t / 2, t & 1), v1 = run(t / 2 + 2, t & 1);
#pragma unroll
            for (int i = 0; i < 4; ++i) x.b[i] = word_of(v0, i), x.b[4 + i] = word_of(v1, i);
        }
    } else {
        // Slot q = t's chunk, all 32 positions: 0-15 against the low nibbles, 16-31 against the high ones.
        if (t == q) {
            const uint4 v0 = run(t, 0), v1 = run(t, 1);
#pragma unroll
            for (int i = 0; i < 4; ++i) x.b[2 * i] = word_of(v0, i), x.b[2 * i + 1] = word_of(v1, i);
        }
    }
#pragma unroll
    for (int s = 0; s < TcType<QT>::kSets; ++s) x.ds[s] = ds(tc_slot_chunk<QT>(t, s));
}
template <int QT>
__device__ __forceinline__ void tc_load_act(const int8_t *xq, const float2 *xds, int step, int lane, int n, TcAct &x) {
    const int digit = (lane >> 2) & 1, c0 = 4 * step;
    const uint4 *base = reinterpret_cast<const uint4 *>(xq);
    tc_fill_act<QT>(
        lane, x,
        [&](int chunk, int half) { return __ldg(base + EDGELLM_ACT_OFFSET(min(c0 + chunk, n - 1), digit, 16 * half) / 16); },
        [&](int chunk) { return __ldg(xds + min(c0 + chunk, n - 1)); });
}

// The end of a block's sums: per row the four slot lanes' sums (g, g + 8 on lanes t = 0..3), then the warps' sums in
// warp order, into sums[m] of threads 0..15 (tile row threadIdx.x).  Every thread of the block calls it.
template <int NM>
__device__ __forceinline__ void tc_reduce(float (&acc_g)[NM], float (&acc_g8)[NM], float (&red)[NM][kTcWarps][kTcRows],
                                          float (&sums)[NM]) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5, g = lane >> 2;
#pragma unroll
    for (int m = 0; m < NM; ++m) {
#pragma unroll
        for (int off = 1; off < 4; off <<= 1) {
            acc_g[m] += __shfl_xor_sync(0xffffffffu, acc_g[m], off);
            acc_g8[m] += __shfl_xor_sync(0xffffffffu, acc_g8[m], off);
        }
        if ((lane & 3) == 0) red[m][warp][g] = acc_g[m], red[m][warp][g + 8] = acc_g8[m];
    }
    __syncthreads();
    if (threadIdx.x < kTcRows) {
#pragma unroll
        for (int m = 0; m < NM; ++m) {
            float total = 0.f;
            for (int w = 0; w < warps; ++w) total += red[m][w][threadIdx.x];
            sums[m] = total;
        }
    }
}

// Slot t's fp32 term for one row from its two digit sums (hi, lo) of set `set`: chunk_dot's arithmetic.
template <int QT>
__device__ __forceinline__ float tc_slot_sum(const TcRow &r, int set, int hi, int lo, float2 ds) {
    const int v = 254 * hi + lo;
    if constexpr (QT == EDGELLM_Q4_0) return r.s0 * (ds.x * v - 8.f * ds.y);
    else if constexpr (QT == EDGELLM_Q4_1) return r.s0 * ds.x * v + r.s1 * ds.y;
    else if constexpr (QT == EDGELLM_Q5_0) return r.s0 * (ds.x * v - 16.f * ds.y);
    else if constexpr (QT == EDGELLM_Q8_0) return r.s0 * ds.x * v;
    else if constexpr (QT == EDGELLM_Q4_K) return r.s0 * r.k0 * ds.x * v - r.s1 * r.k1 * ds.y;
    else return r.s0 * ds.x * ((set ? r.k1 : r.k0) * (float)v);  // Q6_K: one 16-weight group
}

// One step of a lane's two rows (A rows g and g + 8) into their fp32 sums.  `inside`: the step exists (a warp's
// unrolled step past the row's end computes and drops); for the 32-weight types a slot past the row is dropped too.
template <int QT>
__device__ __forceinline__ void tc_step(const TcRow &rg, const TcRow &rg8, const TcAct &x, int lane, int step, int n,
                                        bool inside, float &acc_g, float &acc_g8) {
    const int t = lane & 3;
    uint32_t ag[8], ag8[8];
    tc_unpack<QT>(rg, t, ag);
    tc_unpack<QT>(rg8, t, ag8);
    constexpr int kSets = TcType<QT>::kSets, kPerSet = 4 / kSets;
    const bool slot_inside = inside && (TcType<QT>::kSuper || 4 * step + t < n);
#pragma unroll
    for (int s = 0; s < kSets; ++s) {
        int c[4] = {0, 0, 0, 0};
#pragma unroll
        for (int m = s * kPerSet; m < (s + 1) * kPerSet; ++m)
            imma_16832<TcType<QT>::kSigned>(c, ag[2 * m], ag8[2 * m], ag[2 * m + 1], ag8[2 * m + 1], x.b[2 * m],
                                            x.b[2 * m + 1]);
        const float vg = tc_slot_sum<QT>(rg, s, c[0], c[1], x.ds[s]);
        const float vg8 = tc_slot_sum<QT>(rg8, s, c[2], c[3], x.ds[s]);
        acc_g += slot_inside ? vg : 0.f;
        acc_g8 += slot_inside ? vg8 : 0.f;
    }
}

#ifndef EDGELLM_GEMV_TC_STAGES
#define EDGELLM_GEMV_TC_STAGES 0  // 0: steps in registers (above); 2 to 8: a ring of that many in shared memory
#endif
#if EDGELLM_GEMV_TC_STAGES > 0
}  // namespace edgellm
#include "gemv_tc_staged.cuh"
namespace edgellm {
#endif

// The block's sums of one tile of 16 rows of each of NM matrices.  row_of(r, m): matrix m's (QMatrix, row) for the
// tile's row r (0..15), rows past the end repeating the last (dropped by the caller).  Afterwards threads 0..15 hold
// sums[m] of tile row threadIdx.x.  Every thread of the block calls it.  Weights do not depend on the previous kernel:
// the first steps' weights are requested before chained_start(), the activations after it.
template <int QT, int NM, typename RowOf>
__device__ __forceinline__ void tc_block_sums(RowOf row_of, const int8_t *xq, const float2 *xds, int n,
                                              float (&sums)[NM]) {
#if EDGELLM_GEMV_TC_STAGES > 0
    tc_block_sums_staged<QT, NM>(row_of, xq, xds, n, sums);
    return;
#endif
    __shared__ float red[NM][kTcWarps][kTcRows];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int steps = (n + 3) / 4;
    const QMatrix *wg[NM], *wg8[NM];
    int row_g[NM], row_g8[NM];
#pragma unroll
    for (int m = 0; m < NM; ++m) {
        const auto a = row_of(g, m), b = row_of(g + 8, m);
        wg[m] = a.w, row_g[m] = a.row, wg8[m] = b.w, row_g8[m] = b.row;
    }
    float acc_g[NM], acc_g8[NM];
#pragma unroll
    for (int m = 0; m < NM; ++m) acc_g[m] = acc_g8[m] = 0.f;
    constexpr int kUnroll = kTcUnroll;
    TcRow r[kUnroll][NM][2];
    auto load_rows = [&](int s0) {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int step = min(s0 + u * warps, steps - 1);
#pragma unroll
            for (int m = 0; m < NM; ++m) {
                tc_load<QT>(*wg[m], row_g[m], step, t, n, r[u][m][0]);
                tc_load<QT>(*wg8[m], row_g8[m], step, t, n, r[u][m][1]);
            }
        }
    };
    if (warp < steps) load_rows(warp);
    chained_start();  // the activations are the previous kernel's output
    for (int s0 = warp; s0 < steps; s0 += kUnroll * warps) {
        TcAct x[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) tc_load_act<QT>(xq, xds, min(s0 + u * warps, steps - 1), lane, n, x[u]);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int step = s0 + u * warps;
#pragma unroll
            for (int m = 0; m < NM; ++m)
                tc_step<QT>(r[u][m][0], r[u][m][1], x[u], lane, min(step, steps - 1), n, step < steps, acc_g[m],
                            acc_g8[m]);
        }
        if (s0 + kUnroll * warps < steps) load_rows(s0 + kUnroll * warps);
    }
    tc_reduce<NM>(acc_g, acc_g8, red, sums);
}

// Warps per block for rows of n chunks: one step each at least (the choice depends on the row width alone).
inline int tc_warps(int chunks) { return std::max(1, std::min(kTcWarps, (chunks + 3) / 4)); }
inline unsigned tc_blocks(int rows) { return (unsigned)((rows + kTcRows - 1) / kTcRows); }
// The dynamic shared memory of a launch of `kernel` (NM matrices a block) over rows of `chunks` chunks: none, or with
// staged steps the activations and the lanes' slots (the opt-in above 48 KB set once per kernel and size).
template <int QT, int NM, typename Kernel> inline size_t tc_prepare(Kernel kernel, int chunks, int warps) {
#if EDGELLM_GEMV_TC_STAGES > 0
    const size_t bytes = tc_staged_smem<QT, NM>(chunks, warps);
    static size_t configured = 48 * 1024;
    if (bytes > configured && cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes) ==
                                  cudaSuccess)
        configured = bytes;
    return bytes;
#else
    (void)kernel, (void)chunks, (void)warps;
    return 0;
#endif
}

struct TcRowRef {
    const QMatrix *w;
    int row;
};

template <int QT>
__global__ void __launch_bounds__(32 * kTcWarps) tc_jobs_kernel(const __grid_constant__ GemvJobs jobs,
                                                                const int8_t *xq, const float2 *xds) {
    const int first = blockIdx.x * kTcRows, total = jobs.row_end[jobs.count - 1];
    auto job_of = [&](int row) { return row < jobs.row_end[0] ? 0 : row < jobs.row_end[1] ? 1 : 2; };
    auto row_of = [&](int r, int) {
        const int row = min(first + r, total - 1), j = job_of(row);
        return TcRowRef{&jobs.w[j], j > 0 ? row - jobs.row_end[j - 1] : row};
    };
    float sums[1];
    tc_block_sums<QT, 1>(row_of, xq, xds, jobs.w[0].cols / 32, sums);
    if (threadIdx.x >= kTcRows) return;
    const int row = first + (int)threadIdx.x, j = job_of(min(row, total - 1));
    const int local = j > 0 ? row - jobs.row_end[j - 1] : row;
    float v = sums[0];
    if (row < total && jobs.bias[j]) v += jobs.bias[j][local];
    const QkvRope &rp = jobs.rope;
    if (rp.role[j] != kRoleNone) {
        // RoPE of the pair (2i, 2i + 1) of a head: the even row's thread takes its odd neighbour's value (a tile's
        // rows are whole pairs: every matrix's rows and the tile are even).
        const float other = __shfl_down_sync(0x0000ffffu, v, 1);
        if (row >= total || (threadIdx.x & 1)) return;
        const int role = rp.role[j], p = *rp.pos;
        float xa = v, xb = other;
        if (role != kRoleV) {
            const float2 r2 = rotate_pair(xa, xb, (local % rp.head_dim) / 2, p, rp);
            xa = r2.x, xb = r2.y;
        }
        if (role == kRoleQ) {
            jobs.y[j][local] = xa, jobs.y[j][local + 1] = xb;
        } else {
            __half *cache = (role == kRoleK ? rp.k_cache : rp.v_cache) + (int64_t)p * rp.kv_width + local;
            cache[0] = __float2half_rn(xa), cache[1] = __float2half_rn(xb);
        }
        return;
    }
    if (row >= total) return;
    if (jobs.accumulate) v = jobs.y[j][local] + v;
    jobs.y[j][local] = v;
}

// Gate and up tiles in one block, SwiGLU in the epilogue; with `next`, the output quantized for the next product by
// the last of the two blocks of each chunk of 32 outputs (as gemv_swiglu_kernel does).
template <int QT>
__global__ void __launch_bounds__(32 * kTcWarps) tc_swiglu_kernel(QMatrix gate, QMatrix up, const int8_t *xq,
                                                                  const float2 *xds, float *y, QuantizeNext next) {
    const int first = blockIdx.x * kTcRows;
    auto row_of = [&](int r, int m) { return TcRowRef{m == 0 ? &gate : &up, min(first + r, gate.rows - 1)}; };
    float sums[2];
    tc_block_sums<QT, 2>(row_of, xq, xds, gate.cols / 32, sums);
    const int row = first + (int)threadIdx.x;
    if (threadIdx.x < kTcRows && row < gate.rows) {
        const float g = sums[0], u = sums[1];
        y[row] = g / (1.f + expf(-g)) * u;
    }
    if (!next.counters) return;
    constexpr int kTilesPerChunk = 32 / kTcRows;
    __shared__ bool last;
    if (threadIdx.x < kTcRows) __threadfence();  // this block's outputs, visible before its arrival is counted
    __syncthreads();
    const int chunk = blockIdx.x / kTilesPerChunk;
    if (threadIdx.x == 0) last = atomicAdd(next.counters + chunk, 1) == kTilesPerChunk - 1;
    __syncthreads();
    if (!last || threadIdx.x >= 32) return;
    __threadfence();
    quantize_chunk(__ldcg(y + chunk * 32 + threadIdx.x), chunk, threadIdx.x, next.xq, next.xds);
    if (threadIdx.x == 0) next.counters[chunk] = 0;
}

}  // namespace edgellm
