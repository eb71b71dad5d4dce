// Quantized matrix-vector products on GGUF quant blocks (planar layout, see edgellm_gemv.h).
//
// One warp computes EDGELLM_GEMV_ROWS output rows (two by default).  Its lanes walk the rows in chunks of 32 weights
// (lane i takes chunks i, i+32, ...), each chunk's activations loaded once for all of the warp's rows.  A chunk's
// weights are unpacked four at a time into bytes and multiplied by dp4a with both int8 digits of the 16-bit
// activations (quantize_chunk, attention_common.cuh), the two integer sums joined as 254 hi + lo, then scaled in fp32
// by the block's scale(s) and the activations' scale.  The warp's partial sums are reduced with shuffles that all 32
// lanes execute.
#include <cstdlib>
#include <type_traits>

#include "attention_common.cuh"
#include "edgellm_gemv.h"

namespace edgellm {

struct QMatrix {
    const uint8_t *qs, *qh, *scales;
    const void *d;
    int rows, cols;
};

__device__ __forceinline__ int load_int(const uint8_t *p) { return *reinterpret_cast<const int *>(p); }

// The chunk's 32 activations as the 8 ints of their high digits and the 8 of their low digits, and its
// (scale, scale * sum).
struct XChunk {
    int hi[8], lo[8];
    float2 ds;
};
__device__ __forceinline__ XChunk load_x(const int8_t *xq, const float2 *xds, int chunk) {
    XChunk x;
    // The chunk's four 16-byte runs, one in each plane of its group (EDGELLM_ACT_OFFSET).
    const uint4 *c = reinterpret_cast<const uint4 *>(xq + EDGELLM_ACT_OFFSET(chunk, 0, 0));
    const uint4 a = __ldg(c), b = __ldg(c + 8), e = __ldg(c + 16), f = __ldg(c + 24);
    x.hi[0] = a.x, x.hi[1] = a.y, x.hi[2] = a.z, x.hi[3] = a.w, x.hi[4] = b.x, x.hi[5] = b.y, x.hi[6] = b.z, x.hi[7] = b.w;
    x.lo[0] = e.x, x.lo[1] = e.y, x.lo[2] = e.z, x.lo[3] = e.w, x.lo[4] = f.x, x.lo[5] = f.y, x.lo[6] = f.z, x.lo[7] = f.w;
    x.ds = __ldg(xds + chunk);
    return x;
}

// An integer dot product of weights with the 16-bit activations: both digits' sums, joined at the end.  Exact: a
// chunk's |sum of w * u| is at most 32 * 128 * 32384, inside int32.
struct IDot {
    int hi = 0, lo = 0;
    // Four weight bytes w with the activations of int i (0..7) of the chunk.
    __device__ __forceinline__ void add(int w, const XChunk &x, int i) {
        hi = __dp4a(w, x.hi[i], hi);
        lo = __dp4a(w, x.lo[i], lo);
    }
    __device__ __forceinline__ int value() const { return 254 * hi + lo; }
};

// A 16-byte load of weight bytes (qs, Q6_K's qh).  Every such byte is read once a step, so with EDGELLM_GEMV_STREAM=1
// these loads skip L1 allocation and leave L1 to the activations, which every row of a block reads again (the block
// scales keep the cached loads: lanes of later instructions read the same bytes).  Off until timed on a GPU.
#ifndef EDGELLM_GEMV_STREAM
#define EDGELLM_GEMV_STREAM 0
#endif
__device__ __forceinline__ uint4 load_weights16(const uint8_t *p) {
#if EDGELLM_GEMV_STREAM
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
#else
    return __ldg(reinterpret_cast<const uint4 *>(p));
#endif
}

__device__ __forceinline__ float half_at(const void *d, int64_t i) {
    return __half2float(reinterpret_cast<const __half *>(d)[i]);
}

// Bits 0..3 of b moved to bit 4 of bytes 0..3 (the fifth bit of four 5-bit weights).
__device__ __forceinline__ int fifth_bits(uint32_t b) {
    return (int)(((b & 1) << 4) | ((b & 2) << 11) | ((b & 4) << 18) | ((b & 8) << 25));
}

// Contribution of weight chunk `chunk` (32 weights) of row `row`, for each quant type, in two halves: load_chunk
// reads the chunk's weight bytes (and its block's scales), dot_chunk multiplies them with the activations.  Apart,
// the weights of a warp's first round can be loaded before the kernel waits on the one before it (lane_dots).
template <int QT> struct ChunkBytes;
template <int QT> __device__ ChunkBytes<QT> load_chunk(const QMatrix &w, int row, int chunk);
template <int QT> __device__ float dot_chunk(const ChunkBytes<QT> &b, int chunk, const XChunk &x);
template <int QT> __device__ __forceinline__ float chunk_dot(const QMatrix &w, int row, int chunk, const XChunk &x) {
    return dot_chunk<QT>(load_chunk<QT>(w, row, chunk), chunk, x);
}

// dp4a of a block's 32 nibbles (16 bytes: the low nibbles are weights 0..15, the high ones 16..31) with the chunk's
// activations.
__device__ __forceinline__ int nibble_dot(const uint4 q, const XChunk &x) {
    const int qv[4] = {(int)q.x, (int)q.y, (int)q.z, (int)q.w};
    IDot dot;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        dot.add(qv[i] & 0x0F0F0F0F, x, i);
        dot.add((qv[i] >> 4) & 0x0F0F0F0F, x, 4 + i);
    }
    return dot.value();
}

__device__ __forceinline__ int64_t block_of(const QMatrix &w, int row, int chunk) {
    return (int64_t)row * (w.cols / 32) + chunk;
}
__device__ __forceinline__ __half half_bits(const void *d, int64_t i) { return reinterpret_cast<const __half *>(d)[i]; }

template <> struct ChunkBytes<EDGELLM_Q4_0> {
    uint4 q;
    __half d;
};
template <> __device__ __forceinline__ ChunkBytes<EDGELLM_Q4_0> load_chunk<EDGELLM_Q4_0>(const QMatrix &w, int row,
                                                                                     int chunk) {
    const int64_t blk = block_of(w, row, chunk);
    return {load_weights16(w.qs + blk * 16), half_bits(w.d, blk)};
}
template <> __device__ __forceinline__ float dot_chunk<EDGELLM_Q4_0>(const ChunkBytes<EDGELLM_Q4_0> &b, int,
                                                                    const XChunk &x) {
    // w = d * (n - 8), n the nibble.
    return __half2float(b.d) * (x.ds.x * nibble_dot(b.q, x) - 8.f * x.ds.y);
}

template <> struct ChunkBytes<EDGELLM_Q4_1> {
    uint4 q;
    __half2 dm;
};
template <> __device__ __forceinline__ ChunkBytes<EDGELLM_Q4_1> load_chunk<EDGELLM_Q4_1>(const QMatrix &w, int row,
                                                                                     int chunk) {
    const int64_t blk = block_of(w, row, chunk);
    return {load_weights16(w.qs + blk * 16), reinterpret_cast<const __half2 *>(w.d)[blk]};
}
template <> __device__ __forceinline__ float dot_chunk<EDGELLM_Q4_1>(const ChunkBytes<EDGELLM_Q4_1> &b, int,
                                                                    const XChunk &x) {
    // w = d * n + m.
    return __low2float(b.dm) * x.ds.x * nibble_dot(b.q, x) + __high2float(b.dm) * x.ds.y;
}

template <> struct ChunkBytes<EDGELLM_Q5_0> {
    uint4 q;
    uint32_t qh;
    __half d;
};
template <> __device__ __forceinline__ ChunkBytes<EDGELLM_Q5_0> load_chunk<EDGELLM_Q5_0>(const QMatrix &w, int row,
                                                                                     int chunk) {
    const int64_t blk = block_of(w, row, chunk);
    return {load_weights16(w.qs + blk * 16), __ldg(reinterpret_cast<const uint32_t *>(w.qh) + blk),
            half_bits(w.d, blk)};
}
template <> __device__ __forceinline__ float dot_chunk<EDGELLM_Q5_0>(const ChunkBytes<EDGELLM_Q5_0> &b, int,
                                                                    const XChunk &x) {
    // w = d * (n - 16), n = nibble | fifth bit << 4; bit j of qh belongs to weight j.
    const int qv[4] = {(int)b.q.x, (int)b.q.y, (int)b.q.z, (int)b.q.w};
    IDot dot;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        dot.add((qv[i] & 0x0F0F0F0F) | fifth_bits(b.qh >> (4 * i)), x, i);
        dot.add(((qv[i] >> 4) & 0x0F0F0F0F) | fifth_bits(b.qh >> (16 + 4 * i)), x, 4 + i);
    }
    return __half2float(b.d) * (x.ds.x * dot.value() - 16.f * x.ds.y);
}

template <> struct ChunkBytes<EDGELLM_Q8_0> {
    uint4 a, b;
    __half d;
};
template <> __device__ __forceinline__ ChunkBytes<EDGELLM_Q8_0> load_chunk<EDGELLM_Q8_0>(const QMatrix &w, int row,
                                                                                     int chunk) {
    const int64_t blk = block_of(w, row, chunk);
    return {load_weights16(w.qs + blk * 32), load_weights16(w.qs + blk * 32 + 16), half_bits(w.d, blk)};
}
template <> __device__ __forceinline__ float dot_chunk<EDGELLM_Q8_0>(const ChunkBytes<EDGELLM_Q8_0> &b, int,
                                                                    const XChunk &x) {
    const int qv[8] = {(int)b.a.x, (int)b.a.y, (int)b.a.z, (int)b.a.w, (int)b.b.x, (int)b.b.y, (int)b.b.z, (int)b.b.w};
    IDot dot;
#pragma unroll
    for (int i = 0; i < 8; ++i) dot.add(qv[i], x, i);
    return __half2float(b.d) * x.ds.x * dot.value();
}

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j (0..7) from a Q4_K super-block's 12 scale bytes,
// in two halves (so that a chunk's bytes can be loaded apart from their use): the three bytes that sub-block j reads
// (for j < 4 only the first two count), then its scale and min from them.
struct Q4kScaleBytes {
    uint8_t s0, s1, s2;
};
__device__ __forceinline__ Q4kScaleBytes q4k_scale_bytes(const uint8_t *s, int j) {
    return {s[j < 4 ? j : j + 4], s[j < 4 ? j + 4 : j - 4], s[j]};
}
__device__ __forceinline__ void q4k_scale_min(const Q4kScaleBytes &b, int j, int &sc, int &mn) {
    sc = j < 4 ? b.s0 & 63 : (b.s0 & 0x0F) | ((b.s1 >> 6) << 4);
    mn = j < 4 ? b.s1 & 63 : (b.s0 >> 4) | ((b.s2 >> 6) << 4);
}
__device__ __forceinline__ void q4k_scale_min(const uint8_t *s, int j, int &sc, int &mn) {
    q4k_scale_min(q4k_scale_bytes(s, j), j, sc, mn);
}

// A Q4_K chunk: the 32 bytes of its sub-block pair, its scale bytes and the super-block's d and dmin.
template <> struct ChunkBytes<EDGELLM_Q4_K> {
    uint4 a, b;
    Q4kScaleBytes s;
    __half2 dm;
};
template <> __device__ __forceinline__ ChunkBytes<EDGELLM_Q4_K> load_chunk<EDGELLM_Q4_K>(const QMatrix &w, int row,
                                                                                     int chunk) {
    const int64_t sb = (int64_t)row * (w.cols / 256) + chunk / 8;
    const int j = chunk % 8;
    const uint8_t *qs = w.qs + sb * 128 + (j / 2) * 32, *s = w.scales + sb * 12;
    ChunkBytes<EDGELLM_Q4_K> b;
    b.a = load_weights16(qs), b.b = load_weights16(qs + 16);
    b.s = q4k_scale_bytes(s, j);
    b.dm = reinterpret_cast<const __half2 *>(w.d)[sb];
    return b;
}
template <> __device__ __forceinline__ float dot_chunk<EDGELLM_Q4_K>(const ChunkBytes<EDGELLM_Q4_K> &b, int chunk,
                                                                    const XChunk &x) {
    // Super-block of 256 = 8 sub-blocks of 32; sub-block j uses the low (j even) or high (j odd) nibbles of the 32
    // bytes of group j/2, with a 6-bit scale and min (ggml's get_scale_min_k4): w = d * sc * n - dmin * m.
    const int j = chunk % 8;
    const int qv[8] = {(int)b.a.x, (int)b.a.y, (int)b.a.z, (int)b.a.w, (int)b.b.x, (int)b.b.y, (int)b.b.z, (int)b.b.w};
    const int shift = (j & 1) * 4;
    IDot dot;
#pragma unroll
    for (int i = 0; i < 8; ++i) dot.add((qv[i] >> shift) & 0x0F0F0F0F, x, i);
    int sc, mn;
    q4k_scale_min(b.s, j, sc, mn);
    return __low2float(b.dm) * sc * x.ds.x * dot.value() - __high2float(b.dm) * mn * x.ds.y;
}

// Chunks 2p and 2p + 1 of a Q4_K row (pair p: sub-blocks 2g and 2g + 1 of super-block p / 4, g = p % 4), each
// scaled as chunk_dot<EDGELLM_Q4_K> scales it, summed.
__device__ __forceinline__ float q4k_pair_dot(const QMatrix &w, int row, int pair, const XChunk &xl, const XChunk &xh) {
    const int64_t sb = (int64_t)row * (w.cols / 256) + pair / 4;
    const int g = pair % 4;
    const uint8_t *qs = w.qs + sb * 128 + g * 32;
    const uint4 a = load_weights16(qs);
    const uint4 b = load_weights16(qs + 16);
    const int qv[8] = {(int)a.x, (int)a.y, (int)a.z, (int)a.w, (int)b.x, (int)b.y, (int)b.z, (int)b.w};
    IDot lo, hi;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        lo.add(qv[i] & 0x0F0F0F0F, xl, i);
        hi.add((qv[i] >> 4) & 0x0F0F0F0F, xh, i);
    }
    int sc0, mn0, sc1, mn1;
    q4k_scale_min(w.scales + sb * 12, 2 * g, sc0, mn0);
    q4k_scale_min(w.scales + sb * 12, 2 * g + 1, sc1, mn1);
    const __half2 dm = reinterpret_cast<const __half2 *>(w.d)[sb];
    const float d = __low2float(dm), dmin = __high2float(dm);
    return (d * sc0 * xl.ds.x * lo.value() - dmin * mn0 * xl.ds.y) + (d * sc1 * xh.ds.x * hi.value() - dmin * mn1 * xh.ds.y);
}

// A Q6_K chunk: its 32 low-bit bytes (a nibble each), the 32 bytes of high bits its quarter shares, its two int8
// scales and the super-block's d.
template <> struct ChunkBytes<EDGELLM_Q6_K> {
    uint4 la, lb, ha, hb;
    char2 sc;
    __half d;
};
template <> __device__ __forceinline__ ChunkBytes<EDGELLM_Q6_K> load_chunk<EDGELLM_Q6_K>(const QMatrix &w, int row,
                                                                                     int chunk) {
    const int64_t sb = (int64_t)row * (w.cols / 256) + chunk / 8;
    const int j = chunk % 8, h = j / 4, qd = j % 4;
    const uint8_t *ql = w.qs + sb * 128 + h * 64 + (qd & 1) * 32;
    const uint8_t *qh = w.qh + sb * 64 + h * 32;
    ChunkBytes<EDGELLM_Q6_K> b;
    b.la = load_weights16(ql), b.lb = load_weights16(ql + 16);
    b.ha = load_weights16(qh), b.hb = load_weights16(qh + 16);
    b.sc = *reinterpret_cast<const char2 *>(w.scales + sb * 16 + 2 * j);
    b.d = half_bits(w.d, sb);
    return b;
}
template <> __device__ __forceinline__ float dot_chunk<EDGELLM_Q6_K>(const ChunkBytes<EDGELLM_Q6_K> &b, int chunk,
                                                                    const XChunk &x) {
    // Super-block of 256 in two halves of 128; in half h, chunk quarter qd (0..3) takes the low (qd < 2) or high
    // nibbles of ql bytes h*64 + (qd & 1)*32 + l and bits 2*qd.. of qh bytes h*32 + l (l = 0..31): q = that 6-bit
    // value - 32, scaled by the int8 scale of its 16 (two per chunk) and by d.
    const int qd = chunk % 4;
    const int lv[8] = {(int)b.la.x, (int)b.la.y, (int)b.la.z, (int)b.la.w, (int)b.lb.x, (int)b.lb.y, (int)b.lb.z, (int)b.lb.w};
    const int hv[8] = {(int)b.ha.x, (int)b.ha.y, (int)b.ha.z, (int)b.ha.w, (int)b.hb.x, (int)b.hb.y, (int)b.hb.z, (int)b.hb.w};
    const int lshift = (qd >> 1) * 4, hshift = 2 * qd;
    IDot dot[2], sum[2];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int q = ((lv[i] >> lshift) & 0x0F0F0F0F) | (((hv[i] >> hshift) & 0x03030303) << 4);
        dot[i / 4].add(q, x, i);
        sum[i / 4].add(0x01010101, x, i);  // for the -32 offset of each half
    }
    const float d = __half2float(b.d);
    // Each half's integer sum fits int32 (16 * 63 * 32384 plus the offset's 32 * 16 * 32384); times its int8 scale it
    // may not, so the scales multiply in float.
    const float first = (float)(dot[0].value() - 32 * sum[0].value());
    const float second = (float)(dot[1].value() - 32 * sum[1].value());
    return d * x.ds.x * (b.sc.x * first + b.sc.y * second);
}

// Warps per block (a build setting: make EXTRA=-DEDGELLM_GEMV_WARPS=8).
#ifndef EDGELLM_GEMV_WARPS
#define EDGELLM_GEMV_WARPS 4
#endif
constexpr int kGemvWarps = EDGELLM_GEMV_WARPS;

// Output rows per warp (a build setting: make EXTRA=-DEDGELLM_GEMV_ROWS=1): a warp's rows share every load of the
// activations, which with 16-bit activations are 72 bytes per chunk against a Q4_0 block's 18.  Each row's sums run
// in the same order whatever the setting, so results are bit for bit the same.  Two is the default: more rows per
// warp share more loads but leave fewer warps per matrix to hide memory latency with.
#ifndef EDGELLM_GEMV_ROWS
#define EDGELLM_GEMV_ROWS 2
#endif
constexpr int kRowsPerWarp = EDGELLM_GEMV_ROWS;
static_assert(kRowsPerWarp >= 1 && kRowsPerWarp <= 4, "1 to 4 rows per warp");
constexpr int kRowsPerBlock = kGemvWarps * kRowsPerWarp;

// Blocks per SM the compiler must fit in registers (a build setting: make EXTRA=-DEDGELLM_GEMV_MIN_BLOCKS=8 caps
// the row-per-warp kernels at 64 registers, 8 blocks of 4 warps an SM); 0, the default: the compiler's choice.
#ifndef EDGELLM_GEMV_MIN_BLOCKS
#define EDGELLM_GEMV_MIN_BLOCKS 0
#endif
#if EDGELLM_GEMV_MIN_BLOCKS > 0
#define GEMV_BOUNDS __launch_bounds__(32 * kGemvWarps, EDGELLM_GEMV_MIN_BLOCKS)
#else
#define GEMV_BOUNDS __launch_bounds__(32 * kGemvWarps)
#endif

// A lane's share of N dot products (row[m] of *w[m]) with x: chunks lane, lane + 32, ... summed in that order,
// unroll of them at a time so that their loads are all in flight before the first is used (a decode GEMV is a few
// such rounds per warp; one load at a time leaves the memory system idle).  Chunks past the row add an exact 0, so
// every sum is that of one chunk at a time, whatever N and the unroll.
// Q4_K's chunks 2p and 2p + 1 (pair p) are the low and high nibbles of the same 32 bytes: with
// EDGELLM_GEMV_Q4K_PAIRS=1 one lane takes both, so that each weight byte is loaded by one lane once (a lane per chunk
// loads every byte twice, in two lanes), summed as (chunk 2p + chunk 2p + 1) into the lane's sum.  It holds two
// chunks' activations at once (96 registers against 72 for the gate/up kernel); off by default: on an H200 it
// made the 3B step 3% faster and the 8B step 3% slower (docs/performance.md).
#ifndef EDGELLM_GEMV_Q4K_PAIRS
#define EDGELLM_GEMV_Q4K_PAIRS 0
#endif
template <int N>
__device__ __forceinline__ void lane_dots_q4k_pairs(const QMatrix *const (&w)[N], const int (&row)[N],
                                                    const int8_t *xq, const float2 *xds, int lane, float (&acc)[N]) {
    constexpr int kUnroll = N <= 2 ? 2 : 1;  // pairs in flight: as many chunks as lane_dots keeps
    const int n = w[0]->cols / 64;
    for (int p0 = lane; p0 < n; p0 += 32 * kUnroll) {
        float part[kUnroll][N];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int pair = min(p0 + 32 * u, n - 1);  // past the row: read again, dropped (as in lane_dots)
            const bool inside = p0 + 32 * u < n;
            const XChunk lo = load_x(xq, xds, 2 * pair), hi = load_x(xq, xds, 2 * pair + 1);
#pragma unroll
            for (int m = 0; m < N; ++m) {
                const float d = q4k_pair_dot(*w[m], row[m], pair, lo, hi);
                part[u][m] = inside ? d : 0.f;
            }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
#pragma unroll
            for (int m = 0; m < N; ++m) acc[m] += part[u][m];
    }
}

// How many of a lane's first chunks (per row) a GEMV loads before it waits on the kernel before it (chained_start):
// the weights are written by host copies only, never by a kernel, so they may be read while that kernel still runs,
// and a decode step's short products (Q/K/V, the output projection: one round a warp) then wait on memory beside it
// instead of after it.  0 waits first.  Each chunk loaded early holds its bytes in registers across the wait, so the
// later rounds keep the loop of chunk_dot (loads beside their products), whose registers the compiler fits.  A build
// setting (make EXTRA=-DEDGELLM_GEMV_EARLY_CHUNKS=0); the values are the same whatever it is.  2 measured fastest on
// an H200 (docs/performance.md): 1 left Llama 3.1 8B Q4_K_M slower than 0, 4 gained nothing over 2.
#ifndef EDGELLM_GEMV_EARLY_CHUNKS
#define EDGELLM_GEMV_EARLY_CHUNKS 2
#endif

// A lane's round of kUnroll chunks c0, c0 + 32, ... of N rows, its sums added to acc.  Past the row, chunk n - 1 is
// read again and its product dropped: unconditional loads can all be issued before the first product (loads behind a
// branch would wait for it).  The first kEarly chunks' bytes come from `early` (loaded by the caller).
template <int QT, int N, int kUnroll, int kEarly, int kSlots>
__device__ __forceinline__ void lane_round(const QMatrix *const (&w)[N], const int (&row)[N], const int8_t *xq,
                                           const float2 *xds, int n, int c0, const ChunkBytes<QT> (&early)[kSlots][N],
                                           float (&acc)[N]) {
    float part[kUnroll][N];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
        const int chunk = min(c0 + 32 * u, n - 1);
        const bool inside = c0 + 32 * u < n;
        const XChunk x = load_x(xq, xds, chunk);
#pragma unroll
        for (int m = 0; m < N; ++m) {
            const float d = u < kEarly ? dot_chunk<QT>(early[u < kEarly ? u : 0][m], chunk, x)
                                       : chunk_dot<QT>(*w[m], row[m], chunk, x);
            part[u][m] = inside ? d : 0.f;
        }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
        for (int m = 0; m < N; ++m) acc[m] += part[u][m];
}

// Waits on the previous kernel (chained_start) on the way: every caller's first memory access of that kernel's
// output is in here.
template <int QT, int N>
__device__ __forceinline__ void lane_dots(const QMatrix *const (&w)[N], const int (&row)[N], const int8_t *xq,
                                          const float2 *xds, int lane, float (&acc)[N]) {
    if constexpr (EDGELLM_GEMV_Q4K_PAIRS && QT == EDGELLM_Q4_K) {
        chained_start();
        lane_dots_q4k_pairs(w, row, xq, xds, lane, acc);
        return;
    }
    // Four chunks in flight for one or two rows; fewer for more rows, whose weight loads fill the registers.
    constexpr int kUnroll = N <= 2 ? 4 : N <= 4 ? 2 : 1;
    constexpr int kEarly = EDGELLM_GEMV_EARLY_CHUNKS < kUnroll ? EDGELLM_GEMV_EARLY_CHUNKS : kUnroll;
    const int n = w[0]->cols / 32;
    ChunkBytes<QT> early[kEarly + 1][N];  // one spare: no zero-length array
#pragma unroll
    for (int u = 0; u < kEarly; ++u)
#pragma unroll
        for (int m = 0; m < N; ++m) early[u][m] = load_chunk<QT>(*w[m], row[m], min(lane + 32 * u, n - 1));
    chained_start();
    int c0 = lane;
    if (kEarly > 0 && c0 < n) {
        lane_round<QT, N, kUnroll, kEarly, kEarly + 1>(w, row, xq, xds, n, c0, early, acc);
        c0 += 32 * kUnroll;
    }
    for (; c0 < n; c0 += 32 * kUnroll) lane_round<QT, N, kUnroll, 0, kEarly + 1>(w, row, xq, xds, n, c0, early, acc);
}

template <int N> __device__ __forceinline__ void warp_sums(float (&a)[N]) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
#pragma unroll
        for (int m = 0; m < N; ++m) a[m] += __shfl_xor_sync(0xffffffffu, a[m], off);
}

// The first of this warp's kRowsPerWarp rows.
__device__ __forceinline__ int warp_first_row() { return (blockIdx.x * kGemvWarps + (threadIdx.x >> 5)) * kRowsPerWarp; }
// Row r of the warp's rows, or the last row where the matrix ends first (its product is computed and dropped).  The
// first row is always inside: warps past the end have left.
__device__ __forceinline__ int last_row_within(int first, int r, int rows) {
    return r == 0 ? first : min(first + r, rows - 1);
}

template <int QT>
__global__ void GEMV_BOUNDS gemv_kernel(QMatrix w, const int8_t *xq, const float2 *xds, float *y) {
    const int lane = threadIdx.x & 31, first = warp_first_row();
    if (first >= w.rows) return;  // whole warps leave together: the shuffles below stay full
    const QMatrix *m[kRowsPerWarp];
    int rows[kRowsPerWarp];
    float a[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) m[r] = &w, rows[r] = last_row_within(first, r, w.rows), a[r] = 0.f;
    lane_dots<QT>(m, rows, xq, xds, lane, a);  // waits on the previous kernel
    warp_sums(a);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
        if (lane == 0 && first + r < w.rows) y[first + r] = a[r];
}

// Quantizes the activations of one warp per chunk of 32.
__global__ void quantize_kernel(const float *x, int chunks, int8_t *xq, float2 *xds) {
    chained_start();
    const int chunk = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (chunk >= chunks) return;
    quantize_chunk(x[chunk * 32 + lane], chunk, lane, xq, xds);
}

// RMSNorm and quantization in one block of kNormThreads: thread t holds elements t, t + kNormThreads, ... (at most
// kNormValues of them, loaded at once, so the block waits for memory once), so that lane l of warp w holds element l
// of chunks w, w + 32, ...  The sum of squares runs in the order of rmsnorm_kernel (decoder_ops.cu, launched with as
// many threads): the values quantized are bit for bit those of the two separate kernels.
constexpr int kNormValues = 8;  // rows of up to kNormThreads * kNormValues = 8192 values
__global__ void __launch_bounds__(kNormThreads) rmsnorm_quantize_kernel(const float *x, const float *w, int n,
                                                                        float eps, int8_t *xq, float2 *xds) {
    __shared__ float scratch[32];
    float v[kNormValues], wv[kNormValues];
    // The norm's weights are the model's (written by host copies only): loaded before the wait on the previous kernel.
#pragma unroll
    for (int k = 0; k < kNormValues; ++k) {
        const int i = threadIdx.x + k * kNormThreads;
        wv[k] = i < n ? w[i] : 0.f;
    }
    chained_start();
#pragma unroll
    for (int k = 0; k < kNormValues; ++k) {
        const int i = threadIdx.x + k * kNormThreads;
        v[k] = i < n ? x[i] : 0.f;
    }
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < kNormValues; ++k)
        if (threadIdx.x + k * kNormThreads < n) ss = fmaf(v[k], v[k], ss);
    ss = block_sum(ss, scratch);
    const float scale = rsqrtf(ss / n + eps);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int k = 0; k < kNormValues; ++k) {
        const int chunk = warp + k * (kNormThreads / 32);
        if (chunk < n / 32) quantize_chunk(v[k] * scale * wv[k], chunk, lane, xq, xds);  // whole warps: n % 32 == 0
    }
}

// Up to three matrices of one quant type over the same activations in one launch (Q, K and V), rows numbered
// across them; each output row is W x, plus the bias where given, plus the old y where `accumulate` (a residual
// added in the epilogue).  The sums are those of gemv_kernel, in the same order.
constexpr int kMaxJobs = 3;

// The Q/K/V epilogue of edgellm_gemv_qkv_rope: RoPE of adjacent pairs (2i, 2i + 1) at the device position, Q written
// in fp32, K and V in fp16 into row *pos of the caches; the arithmetic of edgellm_rope_append, value for value.
enum QkvRole { kRoleNone = 0, kRoleQ = 1, kRoleK = 2, kRoleV = 3 };
struct QkvRope {
    __half *k_cache, *v_cache;
    const int *pos;
    const float *factors;
    const float2 *table;  // (cos, sin) of the pairs at *pos (edgellm_rope_table), or null: computed per pair
    float base, attn_factor;
    int head_dim, kv_width;  // kv_width: a cache row's values (n_kv_heads * head_dim)
    int role[kMaxJobs];      // per job; all kRoleNone: the plain epilogue
};

struct GemvJobs {
    QMatrix w[kMaxJobs];
    float *y[kMaxJobs];
    const float *bias[kMaxJobs];
    int row_end[kMaxJobs];  // cumulative rows
    int count, accumulate;
    QkvRope rope;
};

// edgellm_rope_append's rotation of a pair (xa, xb) = rows (2i, 2i + 1) of a head: its (cos, sin) from the step's
// table where there is one (edgellm_rope_table: the same values, made once for every layer), else computed here.
__device__ __forceinline__ float2 rotate_pair(float xa, float xb, int i, int position, const QkvRope &rp) {
    const float2 cs = rp.table ? rp.table[i]
                               : rope_cos_sin(i, rp.head_dim, position, rp.base, rp.factors, rp.attn_factor);
    return rope_apply(xa, xb, cs);
}

template <int QT>
__global__ void GEMV_BOUNDS gemv_jobs_kernel(const __grid_constant__ GemvJobs jobs, const int8_t *xq,
                                             const float2 *xds) {
    const int lane = threadIdx.x & 31, first = warp_first_row(), total = jobs.row_end[jobs.count - 1];
    if (first >= total) return;
    // A warp's rows may straddle two matrices: each row finds its own.
    const QMatrix *m[kRowsPerWarp];
    int rows[kRowsPerWarp], job[kRowsPerWarp];
    float a[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
        const int row = last_row_within(first, r, total);
        const int j = row < jobs.row_end[0] ? 0 : row < jobs.row_end[1] ? 1 : 2;
        job[r] = j, m[r] = &jobs.w[j], rows[r] = j > 0 ? row - jobs.row_end[j - 1] : row, a[r] = 0.f;
    }
    lane_dots<QT>(m, rows, xq, xds, lane, a);  // waits on the previous kernel
    warp_sums(a);
    if (lane != 0) return;
    if (jobs.rope.role[job[0]] != kRoleNone) {
        // The warp's rows are whole pairs of one matrix (kRowsPerWarp even, every matrix's rows even).
        const QkvRope &rp = jobs.rope;
        const int p = *rp.pos;
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; r += 2) {
            if (first + r >= total) break;
            const int j = job[r], row = rows[r], role = rp.role[j];
            float xa = a[r], xb = a[r + 1];
            if (jobs.bias[j]) xa += jobs.bias[j][row], xb += jobs.bias[j][row + 1];
            if (role != kRoleV) {
                const float2 t = rotate_pair(xa, xb, (row % rp.head_dim) / 2, p, rp);
                xa = t.x, xb = t.y;
            }
            if (role == kRoleQ) {
                jobs.y[j][row] = xa, jobs.y[j][row + 1] = xb;
            } else {
                __half *cache = (role == kRoleK ? rp.k_cache : rp.v_cache) + (int64_t)p * rp.kv_width + row;
                cache[0] = __float2half_rn(xa), cache[1] = __float2half_rn(xb);
            }
        }
        return;
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
        if (first + r >= total) continue;
        const int j = job[r], row = rows[r];
        float v = a[r];
        if (jobs.bias[j]) v += jobs.bias[j][row];
        if (jobs.accumulate) v = jobs.y[j][row] + v;
        jobs.y[j][row] = v;
    }
}

// Gate and up rows together and SwiGLU in the epilogue: y[r] = silu(gate r . x) * (up r . x).
//
// With `next` (QuantizeNext), the output is also quantized for the next product, without a launch of its own: a
// chunk of 32 outputs comes from 32 / kRowsPerBlock blocks, and the last of them to finish (a counter per chunk,
// after each writer's fence) quantizes it with quantize_chunk, as edgellm_quantize_activations would, and resets the
// counter for the next launch.  The next activations must not be this kernel's own (blocks still read those).
struct QuantizeNext {
    int8_t *xq;
    float2 *xds;
    int *counters;  // one per chunk of 32 outputs, zero between launches
};
constexpr int kBlocksPerChunk = kRowsPerBlock <= 32 && 32 % kRowsPerBlock == 0 ? 32 / kRowsPerBlock : 0;

template <int QT>
__global__ void GEMV_BOUNDS gemv_swiglu_kernel(QMatrix gate, QMatrix up, const int8_t *xq, const float2 *xds,
                                               float *y, QuantizeNext next) {
    const int lane = threadIdx.x & 31, first = warp_first_row();
    // Warps past the end only take part in the block's barrier below (with `next`); none exist when rows % 32 == 0.
    const bool active = first < gate.rows;
    if (!active && !next.counters) return;
    const QMatrix *m[2 * kRowsPerWarp];
    int rows[2 * kRowsPerWarp];
    float a[2 * kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
        const int row = last_row_within(min(first, gate.rows - 1), r, gate.rows);
        m[2 * r] = &gate, m[2 * r + 1] = &up, rows[2 * r] = rows[2 * r + 1] = row, a[2 * r] = a[2 * r + 1] = 0.f;
    }
    if (!active) chained_start();  // lane_dots waits for the others
    if (active) {
        lane_dots<QT>(m, rows, xq, xds, lane, a);
        warp_sums(a);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
            const float g = a[2 * r], u = a[2 * r + 1];
            if (lane == 0 && first + r < gate.rows) y[first + r] = g / (1.f + expf(-g)) * u;
        }
    }
    if constexpr (kBlocksPerChunk > 0) {
        if (!next.counters) return;
        __shared__ bool last;
        if (lane == 0) __threadfence();  // this warp's outputs, visible before the block's arrival is counted
        __syncthreads();
        const int chunk = blockIdx.x / kBlocksPerChunk;
        if (threadIdx.x == 0) last = atomicAdd(next.counters + chunk, 1) == kBlocksPerChunk - 1;
        __syncthreads();
        if (!last || threadIdx.x >= 32) return;
        __threadfence();
        quantize_chunk(__ldcg(y + chunk * 32 + lane), chunk, lane, next.xq, next.xds);
        if (lane == 0) next.counters[chunk] = 0;
    }
}

// K-sliced GEMV: the activations of a row held in registers, the weights streamed past them.
//
// The block's lanes split the row's chunks among them (lane l of warp w takes chunk 32 w + l, and with two chunks per
// lane also 32 (w + W) + l), so each lane loads its chunks' activations once and keeps them in registers while the
// block walks kKsRows output rows: the only loads in the row loop are the weights', each byte once (the first
// kernel above reloads the 72 activation bytes of a chunk, from L1, for every pair of rows).  Each row's 32 lane sums
// of a warp are combined by a reduce-scatter (one shuffle per row pair and step instead of five per row), then the
// warps' sums in shared memory in warp order.  Every row's sum takes the same path whatever the rows beside it, so the
// results of edgellm_gemv, edgellm_gemv_many and edgellm_gemv_swiglu are bit for bit the same for the same matrix.
// Used for rows of 64 to 1024 chunks (2048 to 32768 values); narrower rows leave too many lanes idle and take the
// kernels above.  Off unless built with make EXTRA=-DEDGELLM_GEMV_KSLICE=1 (it is gated and timed on a GPU first).
#ifndef EDGELLM_GEMV_KSLICE
#define EDGELLM_GEMV_KSLICE 0
#endif
#ifndef EDGELLM_GEMV_KS_ROWS
#define EDGELLM_GEMV_KS_ROWS 8
#endif
constexpr int kKsRows = EDGELLM_GEMV_KS_ROWS;  // output rows per block (per matrix)
static_assert(kKsRows == 4 || kKsRows == 8 || kKsRows == 16, "4, 8 or 16 rows per block");
constexpr int kKsLog2Rows = kKsRows == 4 ? 2 : kKsRows == 8 ? 3 : 4;
constexpr int kKsMaxWarps = 16;
constexpr int kKsMinChunks = 64, kKsMaxChunks = 2 * 32 * kKsMaxWarps;

// a[r] is this lane's share of row r; returns the warp's sum of row ks_lane_row(lane) on the lanes that
// ks_lane_writes(lane), after log2(N) halving exchanges and the plain butterfly over the remaining lane bits.
template <int N, int LOG2N>
__device__ __forceinline__ float reduce_scatter(float (&a)[N], int lane) {
#pragma unroll
    for (int step = 0; step < LOG2N; ++step) {
        const int off = 16 >> step, half = N >> (step + 1);
        const bool upper = lane & off;
#pragma unroll
        for (int i = 0; i < half; ++i) {
            const float send = upper ? a[i] : a[i + half], keep = upper ? a[i + half] : a[i];
            a[i] = keep + __shfl_xor_sync(0xffffffffu, send, off);
        }
    }
#pragma unroll
    for (int off = 16 >> LOG2N; off > 0; off >>= 1) a[0] += __shfl_xor_sync(0xffffffffu, a[0], off);
    return a[0];
}
__device__ __forceinline__ int ks_lane_row(int lane) { return (lane >> (5 - kKsLog2Rows)) & (kKsRows - 1); }
__device__ __forceinline__ bool ks_lane_writes(int lane) { return (lane & ((32 >> kKsLog2Rows) - 1)) == 0; }

// The block's sums of kKsRows rows of NM matrices over the activations; row_of(r, m) gives matrix m's QMatrix and
// row for the block's row r (rows past the end repeat the last one, their sums dropped by the caller).  Thread t <
// kKsRows gets sums[m] of its row t.  Every thread of the block calls it.
template <int QT, int CPL, int NM, typename RowOf>
__device__ __forceinline__ void ks_block_sums(RowOf row_of, const int8_t *xq, const float2 *xds, int chunks,
                                              float (&sums)[NM]) {
    __shared__ float red[NM][kKsMaxWarps][kKsRows];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    int chunk[CPL];
    bool inside[CPL];
#pragma unroll
    for (int k = 0; k < CPL; ++k) {
        const int c = (warp + k * warps) * 32 + lane;
        inside[k] = c < chunks;
        chunk[k] = inside[k] ? c : chunks - 1;  // an idle lane reads a real chunk and drops its product
    }
    chained_start();  // the activations are the previous kernel's output
    XChunk x[CPL];
#pragma unroll
    for (int k = 0; k < CPL; ++k) x[k] = load_x(xq, xds, chunk[k]);
    float acc[NM][kKsRows];
#pragma unroll
    for (int r = 0; r < kKsRows; ++r) {
#pragma unroll
        for (int m = 0; m < NM; ++m) {
            const auto at = row_of(r, m);
            float v = 0.f;
#pragma unroll
            for (int k = 0; k < CPL; ++k) {
                const float d = chunk_dot<QT>(*at.w, at.row, chunk[k], x[k]);
                v += inside[k] ? d : 0.f;
            }
            acc[m][r] = v;
        }
    }
#pragma unroll
    for (int m = 0; m < NM; ++m) {
        const float v = reduce_scatter<kKsRows, kKsLog2Rows>(acc[m], lane);
        if (ks_lane_writes(lane)) red[m][warp][ks_lane_row(lane)] = v;
    }
    __syncthreads();
    if (threadIdx.x < kKsRows) {
#pragma unroll
        for (int m = 0; m < NM; ++m) {
            float total = 0.f;
            for (int w = 0; w < warps; ++w) total += red[m][w][threadIdx.x];
            sums[m] = total;
        }
    }
}

struct KsRow {
    const QMatrix *w;
    int row;
};

template <int QT, int CPL>
__global__ void __launch_bounds__(32 * kKsMaxWarps) ks_jobs_kernel(const __grid_constant__ GemvJobs jobs,
                                                                   const int8_t *xq, const float2 *xds) {
    const int first = blockIdx.x * kKsRows, total = jobs.row_end[jobs.count - 1];
    auto row_of = [&](int r, int) {
        const int row = min(first + r, total - 1);
        const int j = row < jobs.row_end[0] ? 0 : row < jobs.row_end[1] ? 1 : 2;
        return KsRow{&jobs.w[j], j > 0 ? row - jobs.row_end[j - 1] : row};
    };
    float sums[1];
    ks_block_sums<QT, CPL, 1>(row_of, xq, xds, jobs.w[0].cols / 32, sums);
    const int row = first + (int)threadIdx.x;
    if (threadIdx.x >= kKsRows || row >= total) return;
    const int j = row < jobs.row_end[0] ? 0 : row < jobs.row_end[1] ? 1 : 2;
    const int local = j > 0 ? row - jobs.row_end[j - 1] : row;
    float v = sums[0];
    if (jobs.bias[j]) v += jobs.bias[j][local];
    if (jobs.accumulate) v = jobs.y[j][local] + v;
    jobs.y[j][local] = v;
}

template <int QT, int CPL>
__global__ void __launch_bounds__(32 * kKsMaxWarps) ks_swiglu_kernel(QMatrix gate, QMatrix up, const int8_t *xq,
                                                                     const float2 *xds, float *y) {
    const int first = blockIdx.x * kKsRows;
    auto row_of = [&](int r, int m) { return KsRow{m == 0 ? &gate : &up, min(first + r, gate.rows - 1)}; };
    float sums[2];
    ks_block_sums<QT, CPL, 2>(row_of, xq, xds, gate.cols / 32, sums);
    const int row = first + (int)threadIdx.x;
    if (threadIdx.x >= kKsRows || row >= gate.rows) return;
    const float g = sums[0], u = sums[1];
    y[row] = g / (1.f + expf(-g)) * u;
}

}  // namespace edgellm

#include "gemv_tc.cuh"

using namespace edgellm;

// The tensor-core kernels (gemv_tc.cuh) where EDGELLM_GEMV_TC=1 asks for them (read once), else the CUDA-core ones
// above: on an H200 the tensor-core kernels were slower on most of the plan's models (docs/performance.md), so they
// are built, gated and off.  The K-sliced kernels, where built in, come first.
static bool tensor_core_gemv() {
    static const bool on = [] {
        const char *v = std::getenv("EDGELLM_GEMV_TC");
        return v && v[0] == '1';
    }();
    return on;
}

extern "C" int edgellm_quantize_activations(const float *x, int cols, void *xq, void *xds, void *stream) {
    if (!x || !xq || !xds || cols <= 0 || cols % 32) return EDGELLM_ERR_ARGUMENT;
    if (reinterpret_cast<uintptr_t>(xq) % 16 || reinterpret_cast<uintptr_t>(xds) % 8) return EDGELLM_ERR_ARGUMENT;
    const int chunks = cols / 32, per_block = 8;
    launch_chained(quantize_kernel, (chunks + per_block - 1) / per_block, 32 * per_block, 0,
                   static_cast<cudaStream_t>(stream), x, chunks, static_cast<int8_t *>(xq), static_cast<float2 *>(xds));
    return check_launch();
}

// The checks every matrix passes before a launch reads it.
static bool matrix_ok(const edgellm_qmatrix *m) {
    if (!m || !m->qs || !m->d || m->rows <= 0 || m->cols <= 0) return false;
    const bool k_type = m->qtype == EDGELLM_Q4_K || m->qtype == EDGELLM_Q6_K;
    if (m->cols % (k_type ? 256 : 32)) return false;
    if (k_type && !m->scales) return false;
    if ((m->qtype == EDGELLM_Q6_K || m->qtype == EDGELLM_Q5_0) && !m->qh) return false;
    return reinterpret_cast<uintptr_t>(m->qs) % 16 == 0 && (!m->qh || reinterpret_cast<uintptr_t>(m->qh) % 4 == 0) &&
           (!m->scales || reinterpret_cast<uintptr_t>(m->scales) % 4 == 0) && reinterpret_cast<uintptr_t>(m->d) % 4 == 0;
}

static bool activations_ok(const void *xq, const void *xds) {
    return xq && xds && reinterpret_cast<uintptr_t>(xq) % 16 == 0 && reinterpret_cast<uintptr_t>(xds) % 8 == 0;
}

static QMatrix device_matrix(const edgellm_qmatrix *m) {
    return QMatrix{static_cast<const uint8_t *>(m->qs), static_cast<const uint8_t *>(m->qh),
                   static_cast<const uint8_t *>(m->scales), m->d, m->rows, m->cols};
}

// Calls f(std::integral_constant<int, QT>) for a supported quant type; EDGELLM_ERR_UNSUPPORTED otherwise.
template <typename F>
static int with_qtype(int qtype, F &&f) {
    switch (qtype) {
    case EDGELLM_Q4_0: f(std::integral_constant<int, EDGELLM_Q4_0>{}); break;
    case EDGELLM_Q4_1: f(std::integral_constant<int, EDGELLM_Q4_1>{}); break;
    case EDGELLM_Q5_0: f(std::integral_constant<int, EDGELLM_Q5_0>{}); break;
    case EDGELLM_Q8_0: f(std::integral_constant<int, EDGELLM_Q8_0>{}); break;
    case EDGELLM_Q4_K: f(std::integral_constant<int, EDGELLM_Q4_K>{}); break;
    case EDGELLM_Q6_K: f(std::integral_constant<int, EDGELLM_Q6_K>{}); break;
    default: return EDGELLM_ERR_UNSUPPORTED;
    }
    return check_launch();
}

#define TRY_LAUNCH(call)                 \
    do {                                 \
        const int err_ = (call);         \
        if (err_ != EDGELLM_OK) return err_; \
    } while (0)

static unsigned gemv_blocks(int rows) { return (unsigned)((rows + kRowsPerBlock - 1) / kRowsPerBlock); }

// The K-sliced kernels' shape for rows of `cols` values: chunks per lane (1 or 2) and warps per block, or false where
// those kernels are not used (the choice depends on the row width alone, so every entry point makes the same one).
static bool ks_shape(int cols, int *cpl, int *warps) {
    const int chunks = cols / 32;
    if (!EDGELLM_GEMV_KSLICE || chunks < kKsMinChunks || chunks > kKsMaxChunks) return false;
    *cpl = chunks <= 32 * kKsMaxWarps ? 1 : 2;
    *warps = (chunks + 32 * *cpl - 1) / (32 * *cpl);
    return true;
}
static unsigned ks_blocks(int rows) { return (unsigned)((rows + kKsRows - 1) / kKsRows); }

extern "C" int edgellm_gemv(const edgellm_qmatrix *m, const void *xq, const void *xds, float *y, void *stream) {
    if (!matrix_ok(m) || !activations_ok(xq, xds) || !y) return EDGELLM_ERR_ARGUMENT;
    int cpl = 0, warps = 0;
    if (ks_shape(m->cols, &cpl, &warps) || tensor_core_gemv()) return edgellm_gemv_many(&m, &y, nullptr, 1, 0, xq, xds, stream);
    const QMatrix w = device_matrix(m);
    const int8_t *xq8 = static_cast<const int8_t *>(xq);
    const float2 *ds = static_cast<const float2 *>(xds);
    return with_qtype(m->qtype, [&](auto qt) {
        launch_chained(gemv_kernel<decltype(qt)::value>, gemv_blocks(m->rows), 32 * kGemvWarps, 0,
                       static_cast<cudaStream_t>(stream), w, xq8, ds, y);
    });
}

// One launch over matrices [0, count) of `jobs`, all of one quant type and column count.
static int launch_jobs(const GemvJobs &jobs, int qtype, int cols, bool allow_ks, const int8_t *xq, const float2 *ds,
                       cudaStream_t s) {
    const int rows = jobs.row_end[jobs.count - 1];
    int cpl = 0, warps = 0;
    const bool ks = allow_ks && ks_shape(cols, &cpl, &warps);
    return with_qtype(qtype, [&](auto qt) {
        constexpr int QT = decltype(qt)::value;
        if (ks && cpl == 1) launch_chained(ks_jobs_kernel<QT, 1>, ks_blocks(rows), 32 * warps, 0, s, jobs, xq, ds);
        else if (ks) launch_chained(ks_jobs_kernel<QT, 2>, ks_blocks(rows), 32 * warps, 0, s, jobs, xq, ds);
        else if (tensor_core_gemv())
            launch_chained(tc_jobs_kernel<QT>, tc_blocks(rows), 32 * tc_warps(cols / 32),
                           tc_prepare<QT, 1>(tc_jobs_kernel<QT>, cols / 32, tc_warps(cols / 32)), s, jobs, xq, ds);
        else launch_chained(gemv_jobs_kernel<QT>, gemv_blocks(rows), 32 * kGemvWarps, 0, s, jobs, xq, ds);
    });
}

// The matrices in runs of one quant type, one launch per run (Q and K in one, a V of another type in a second).
// roles: per matrix, its QkvRole (nullptr: the plain epilogue).
static int launch_job_runs(const edgellm_qmatrix *const *m, float *const *y, const float *const *bias, int count,
                           int accumulate, const QkvRope *rope, const int *roles, const void *xq, const void *xds,
                           void *stream) {
    const int8_t *xq8 = static_cast<const int8_t *>(xq);
    const float2 *ds = static_cast<const float2 *>(xds);
    for (int begin = 0; begin < count;) {
        int end = begin + 1;
        while (end < count && m[end]->qtype == m[begin]->qtype) ++end;
        GemvJobs jobs{};
        if (rope) jobs.rope = *rope;
        int rows = 0;
        for (int j = begin; j < end; ++j) {
            const int k = j - begin;
            jobs.w[k] = device_matrix(m[j]);
            jobs.y[k] = y ? y[j] : nullptr;
            jobs.bias[k] = bias ? bias[j] : nullptr;
            jobs.row_end[k] = rows += m[j]->rows;
            jobs.rope.role[k] = roles ? roles[j] : kRoleNone;
        }
        jobs.count = end - begin, jobs.accumulate = accumulate != 0;
        const cudaStream_t s = static_cast<cudaStream_t>(stream);
        // The K-sliced kernels have no RoPE epilogue; the tensor-core and row-per-warp ones do.
        TRY_LAUNCH(launch_jobs(jobs, m[begin]->qtype, m[begin]->cols, !roles, xq8, ds, s));
        begin = end;
    }
    return EDGELLM_OK;
}

extern "C" int edgellm_gemv_many(const edgellm_qmatrix *const *m, float *const *y, const float *const *bias, int count,
                                 int accumulate, const void *xq, const void *xds, void *stream) {
    if (!m || !y || count < 1 || count > kMaxJobs || !activations_ok(xq, xds)) return EDGELLM_ERR_ARGUMENT;
    for (int j = 0; j < count; ++j)
        if (!matrix_ok(m[j]) || !y[j] || m[j]->cols != m[0]->cols) return EDGELLM_ERR_ARGUMENT;
    return launch_job_runs(m, y, bias, count, accumulate, nullptr, nullptr, xq, xds, stream);
}

// edgellm_gemv_qkv_rope and its table form (table: the pairs' (cos, sin) at *pos, or null).
static int qkv_rope(const edgellm_qmatrix *const *w, const float *const *bias, float *q, void *k_cache, void *v_cache,
                    int head_dim, const int *pos, float base, const float *freq_factors, float attn_factor,
                    const float2 *table, const void *xq, const void *xds, void *stream) {
    if (!w || !q || !k_cache || !v_cache || !pos || head_dim <= 0 || head_dim % 2 || !activations_ok(xq, xds))
        return EDGELLM_ERR_ARGUMENT;
    if (table && reinterpret_cast<uintptr_t>(table) % 8) return EDGELLM_ERR_ARGUMENT;
    for (int j = 0; j < 3; ++j)
        if (!matrix_ok(w[j]) || w[j]->cols != w[0]->cols || w[j]->rows % head_dim) return EDGELLM_ERR_ARGUMENT;
    if (w[1]->rows != w[2]->rows) return EDGELLM_ERR_ARGUMENT;
    // Each warp's (or tile's) rows must be whole pairs of one matrix: kRowsPerWarp even, every matrix's rows even
    // (head_dim is).
    if (kRowsPerWarp % 2 && !tensor_core_gemv()) return EDGELLM_ERR_UNSUPPORTED;
    QkvRope rope{};
    rope.k_cache = static_cast<__half *>(k_cache), rope.v_cache = static_cast<__half *>(v_cache);
    rope.pos = pos, rope.factors = freq_factors, rope.table = table, rope.base = base, rope.attn_factor = attn_factor;
    rope.head_dim = head_dim, rope.kv_width = w[1]->rows;
    const int roles[3] = {kRoleQ, kRoleK, kRoleV};
    float *y[3] = {q, nullptr, nullptr};
    return launch_job_runs(w, y, bias, 3, 0, &rope, roles, xq, xds, stream);
}

extern "C" int edgellm_gemv_qkv_rope(const edgellm_qmatrix *const *w, const float *const *bias, float *q,
                                     void *k_cache, void *v_cache, int head_dim, const int *pos, float base,
                                     const float *freq_factors, float attn_factor, const void *xq, const void *xds,
                                     void *stream) {
    return qkv_rope(w, bias, q, k_cache, v_cache, head_dim, pos, base, freq_factors, attn_factor, nullptr, xq, xds,
                    stream);
}

extern "C" int edgellm_gemv_qkv_rope_table(const edgellm_qmatrix *const *w, const float *const *bias, float *q,
                                           void *k_cache, void *v_cache, int head_dim, const int *pos,
                                           const void *rope_table, const void *xq, const void *xds, void *stream) {
    if (!rope_table) return EDGELLM_ERR_ARGUMENT;
    return qkv_rope(w, bias, q, k_cache, v_cache, head_dim, pos, 0.f, nullptr, 1.f,
                    static_cast<const float2 *>(rope_table), xq, xds, stream);
}

extern "C" int edgellm_gemv_swiglu(const edgellm_qmatrix *gate, const edgellm_qmatrix *up, const void *xq,
                                   const void *xds, float *y, void *stream) {
    if (!matrix_ok(gate) || !matrix_ok(up) || !activations_ok(xq, xds) || !y || gate->qtype != up->qtype ||
        gate->rows != up->rows || gate->cols != up->cols)
        return EDGELLM_ERR_ARGUMENT;
    const QMatrix g = device_matrix(gate), u = device_matrix(up);
    const int8_t *xq8 = static_cast<const int8_t *>(xq);
    const float2 *ds = static_cast<const float2 *>(xds);
    int cpl = 0, warps = 0;
    const bool ks = ks_shape(gate->cols, &cpl, &warps);
    return with_qtype(gate->qtype, [&](auto qt) {
        constexpr int QT = decltype(qt)::value;
        const cudaStream_t s = static_cast<cudaStream_t>(stream);
        const unsigned blocks = ks_blocks(gate->rows);
        if (ks && cpl == 1) launch_chained(ks_swiglu_kernel<QT, 1>, blocks, 32 * warps, 0, s, g, u, xq8, ds, y);
        else if (ks) launch_chained(ks_swiglu_kernel<QT, 2>, blocks, 32 * warps, 0, s, g, u, xq8, ds, y);
        else if (tensor_core_gemv())
            launch_chained(tc_swiglu_kernel<QT>, tc_blocks(gate->rows), 32 * tc_warps(gate->cols / 32),
                           tc_prepare<QT, 2>(tc_swiglu_kernel<QT>, gate->cols / 32, tc_warps(gate->cols / 32)), s, g,
                           u, xq8, ds, y, QuantizeNext{});
        else launch_chained(gemv_swiglu_kernel<QT>, gemv_blocks(gate->rows), 32 * kGemvWarps, 0, s, g, u, xq8, ds, y,
                            QuantizeNext{});
    });
}

extern "C" size_t edgellm_gemv_swiglu_counters_bytes(int rows) { return (size_t)(rows / 32) * sizeof(int); }

extern "C" int edgellm_gemv_swiglu_quantize(const edgellm_qmatrix *gate, const edgellm_qmatrix *up, const void *xq,
                                            const void *xds, float *y, void *next_xq, void *next_xds, int *counters,
                                            void *stream) {
    if (!matrix_ok(gate) || !matrix_ok(up) || !activations_ok(xq, xds) || !activations_ok(next_xq, next_xds) ||
        !y || !counters || gate->qtype != up->qtype || gate->rows != up->rows || gate->cols != up->cols ||
        gate->rows % 32 || next_xq == xq || next_xds == xds)
        return EDGELLM_ERR_ARGUMENT;
    const bool tc = tensor_core_gemv();
    if (kBlocksPerChunk == 0 && !tc) return EDGELLM_ERR_UNSUPPORTED;  // a block's rows must divide a chunk
    const QMatrix g = device_matrix(gate), u = device_matrix(up);
    const QuantizeNext next{static_cast<int8_t *>(next_xq), static_cast<float2 *>(next_xds), counters};
    return with_qtype(gate->qtype, [&](auto qt) {
        constexpr int QT = decltype(qt)::value;
        if (tc) {
            launch_chained(tc_swiglu_kernel<QT>, tc_blocks(gate->rows), 32 * tc_warps(gate->cols / 32),
                           tc_prepare<QT, 2>(tc_swiglu_kernel<QT>, gate->cols / 32, tc_warps(gate->cols / 32)),
                           static_cast<cudaStream_t>(stream), g, u, static_cast<const int8_t *>(xq),
                           static_cast<const float2 *>(xds), y, next);
            return;
        }
        launch_chained(gemv_swiglu_kernel<QT>, gemv_blocks(gate->rows), 32 * kGemvWarps, 0,
                       static_cast<cudaStream_t>(stream), g, u, static_cast<const int8_t *>(xq),
                       static_cast<const float2 *>(xds), y, next);
    });
}

extern "C" int edgellm_rmsnorm_quantize(const float *x, const float *weight, int n, float eps, void *xq, void *xds,
                                        void *stream) {
    if (!x || !weight || n <= 0 || n % 32 || n > kNormThreads * kNormValues || !activations_ok(xq, xds))
        return EDGELLM_ERR_ARGUMENT;
    launch_chained(rmsnorm_quantize_kernel, 1, kNormThreads, 0, static_cast<cudaStream_t>(stream), x, weight, n, eps,
                   static_cast<int8_t *>(xq), static_cast<float2 *>(xds));
    return check_launch();
}
