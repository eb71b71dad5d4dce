// Split-KV decode on tensor cores for fp16/bf16 KV caches (grouped-query attention).
//
// The query heads that share a KV head (up to 16) are the 16 rows of an m16n8k16 tile, so a warp computes S = Q K^T
// for 16 keys in D/16 mma pairs and O += P V in D/8 mma, instead of a dot product and a shuffle reduction per key and
// head.  A block is kTcWarps warps over one split: each warp streams every kTcWarps-th tile of 16 keys through its
// own cp.async ring in shared memory (so __syncwarp is the only barrier in the key loop) and keeps the online softmax
// of its 16 rows in fp32 registers; the warps' states are merged through shared memory, and the block writes its
// split's normalised output and log-sum-exp (or, with one split, the output itself); the last block of a head group
// merges the splits (merge_if_last).  Q is rounded to the KV dtype and P to fp16/bf16, as in the prefill kernel: this
// path is held to the fp16/bf16 tolerances.  Reached through edgellm_attention_decode_impl and
// edgellm_attention_decode_at_impl (impl 1); the engine takes it with EDGELLM_DECODE_ATTENTION=tensor.
#include <algorithm>

#include "decode_common.cuh"
#include "tile_layout.cuh"

namespace edgellm {

// A block is kTcWarps warps; each streams every kTcWarps-th tile of its block's split through its own cp.async ring
// of kTcStages stages (its own copies: __syncwarp is the only barrier in the key loop), and the warps' softmax states
// are merged through shared memory once at the end.  More warps per block keep more of the cache in flight per SM
// than one-warp blocks did, with one merge per block instead of one per warp.  Where a configuration does not fit a
// block's shared memory (head dim 256, or a card with 64-100 KB), two stages, then one warp with two, are taken.
#ifndef EDGELLM_DECODE_TC_WARPS
#define EDGELLM_DECODE_TC_WARPS 4
#endif
#ifndef EDGELLM_DECODE_TC_STAGES
#define EDGELLM_DECODE_TC_STAGES 4
#endif
constexpr int kTcWarps = EDGELLM_DECODE_TC_WARPS;
constexpr int kTcStages = EDGELLM_DECODE_TC_STAGES;
constexpr int kTcKeys = 16;  // keys per tile
static_assert(kTcStages >= 2, "the ring needs a tile in flight while one is computed");

template <typename T, int D, int W, int S>
struct TcDecodeConfig {
    static constexpr int kChunks = D / 8;  // 16-byte chunks per row
    static constexpr int kTileElems = kTcKeys * D;
    static constexpr int kRingBytes = (kTcRows * D + W * S * 2 * kTileElems) * (int)sizeof(T);
    // After the key loop: the warps' unnormalised outputs, maxima and sums (the warp merge), then merge_if_last's.
    static constexpr int kWarpMergeBytes = W * kTcRows * (D + 2) * 4;
    static constexpr int kMergeBytes = (kTcRows * EDGELLM_MAX_SPLITS + kTcRows) * 4;
    static constexpr int kSmemBytes = kRingBytes > kWarpMergeBytes ? (kRingBytes > kMergeBytes ? kRingBytes : kMergeBytes)
                                                                   : (kWarpMergeBytes > kMergeBytes ? kWarpMergeBytes : kMergeBytes);
};

// kCap: scores soft-capped (DecodeParams::softcap_log2); a separate instance, so the plain kernel is unchanged.
template <typename T, int D, bool kCap, int W, int S>
__global__ void __launch_bounds__(W * 32) decode_tc_kernel(DecodeParams p, int num_splits, int split_len,
                                                           float *part_o, float *part_lse, int *counters) {
    chained_start();
    using C = TcDecodeConfig<T, D, W, S>;
    constexpr int kThreads = W * 32;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T *sQ = reinterpret_cast<T *>(smem_raw);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    // This warp's ring; stage s: K at sKV + 2s * tile, V at sKV + (2s+1) * tile.
    T *sKV = sQ + kTcRows * D + warp * S * 2 * C::kTileElems;
    const int split = blockIdx.x, b = blockIdx.z;
    const int kvh = blockIdx.y / p.head_chunks, chunk = blockIdx.y % p.head_chunks;
    const int h0 = kvh * p.group + chunk * kTcRows;
    const int n_rows = min(kTcRows, p.group - chunk * kTcRows);
    const int rows = cache_rows(p);
    const int first = first_row(p, rows);
    // A cache length read from the device (a replayed graph): the live keys are shared among as many of the grid's
    // splits as they fill (split_plan), in whole rounds of the block's tiles; blocks past those leave, and with one
    // split in use its block writes the output itself.  Uniform across the grid.
    const SplitPlan plan = p.pos ? split_plan(rows - first, num_splits, kTcKeys * W) : SplitPlan{split_len, num_splits};
    if (split >= plan.used) return;
    const bool direct = plan.used == 1;
    const int start = first + split * plan.len, end = min(rows, start + plan.len);
    const int n_tiles = end > start ? (end - start + kTcKeys - 1) / kTcKeys : 0;
    const int my_tiles = n_tiles > warp ? (n_tiles - warp + W - 1) / W : 0;  // tiles warp, warp + W, ...

    const T *kbase = static_cast<const T *>(p.k) + b * p.kb + kvh * p.kh;
    const T *vbase = static_cast<const T *>(p.v) + b * p.vb + kvh * p.vh;
    auto issue_tile = [&](int j) {  // this warp's j-th tile
        if (j < my_tiles) {
            T *sK = sKV + 2 * (j % S) * C::kTileElems, *sV = sK + C::kTileElems;
            const int k0 = start + (warp + j * W) * kTcKeys;
#pragma unroll
            for (int it = 0; it < kTcKeys * C::kChunks / 32; ++it) {
                const int idx = it * 32 + lane, row = idx / C::kChunks, ch = idx % C::kChunks;
                const bool ok = k0 + row < end;  // rows past the split read as zeros and are masked below
                const int64_t r = ok ? k0 + row : 0;
                cp_async_16(smem_addr(sK + tile_offset<D>(row, ch)), kbase + r * p.kr + ch * 8, ok ? 16 : 0);
                cp_async_16(smem_addr(sV + tile_offset<D>(row, ch)), vbase + r * p.vr + ch * 8, ok ? 16 : 0);
            }
        }
        cp_async_commit();  // an empty group past the end keeps the wait counts uniform
    };
#pragma unroll
    for (int st = 0; st < S - 1; ++st) issue_tile(st);

    // Q (fp32 in memory) rounded to T by the whole block, rows past the group zero: all of a thread's loads in flight
    // at once (a load per loop step, each waiting for the previous store, costs a memory latency per step).
    constexpr int kQVecs = (kTcRows * D / 4 + kThreads - 1) / kThreads;  // float4 per thread
    float4 qv[kQVecs];
#pragma unroll
    for (int i = 0; i < kQVecs; ++i) {
        const int e = (i * kThreads + tid) * 4, r = e / D, d = e % D;
        qv[i] = e < kTcRows * D && r < n_rows
                    ? __ldg(reinterpret_cast<const float4 *>(p.q + b * p.qb + (int64_t)(h0 + r) * p.qh + d))
                    : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int i = 0; i < kQVecs; ++i) {
        const int e = (i * kThreads + tid) * 4, r = e / D, d = e % D;
        if (e >= kTcRows * D) continue;
        T *dst = sQ + tile_offset<D>(r, d >> 3) + (d & 7);
        dst[0] = from_float<T>(qv[i].x), dst[1] = from_float<T>(qv[i].y);
        dst[2] = from_float<T>(qv[i].z), dst[3] = from_float<T>(qv[i].w);
    }
    __syncthreads();
    // Q's fragments stay in registers up to head dim 128; at 256 they are read from shared memory (where Q stays
    // until every warp is past its key loop) at every tile, leaving the registers to O's 128 accumulators.
    constexpr bool kQInRegisters = D <= 128;
    const int q_row = (lane & 7) + ((lane >> 3) & 1) * 8;
    uint32_t qf[kQInRegisters ? D / 16 : 1][4];
    if constexpr (kQInRegisters) {
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk)
            ldmatrix_x4(qf[kk], smem_addr(sQ + tile_offset<D>(q_row, 2 * kk + (lane >> 4))));
    }

    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};

    for (int j = 0; j < my_tiles; ++j) {
        issue_tile(j + S - 1);
        cp_async_wait<S - 1>();
        __syncwarp();  // every lane's copies of this tile are visible to the whole warp
        const T *sK = sKV + 2 * (j % S) * C::kTileElems, *sV = sK + C::kTileElems;

        float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            const uint32_t *qk = qf[kQInRegisters ? kk : 0];
            if constexpr (!kQInRegisters)
                ldmatrix_x4(qf[0], smem_addr(sQ + tile_offset<D>(q_row, 2 * kk + (lane >> 4))));
            uint32_t kf[4];
            const int k_row = (lane & 7) + ((lane >> 4) << 3);
            ldmatrix_x4(kf, smem_addr(sK + tile_offset<D>(k_row, 2 * kk + ((lane >> 3) & 1))));
            mma_16816<T>(s[0], qk, kf);
            mma_16816<T>(s[1], qk, kf + 2);
        }
        if constexpr (kCap) {  // s is q.k: capped as scale * s in the log2 domain, then back to q.k's units
            const float to_log2 = p.scale_log2, from_log2 = 1.f / p.scale_log2;
#pragma unroll
            for (int nt = 0; nt < 2; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c)
                    s[nt][c] = p.softcap_log2 * tanhf(s[nt][c] * to_log2 * p.inv_softcap_log2) * from_log2;
        }
        const int k0 = start + (warp + j * W) * kTcKeys;
        if (k0 + kTcKeys > end) {
#pragma unroll
            for (int nt = 0; nt < 2; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c)
                    if (k0 + nt * 8 + 2 * t + (c & 1) >= end) s[nt][c] = -INFINITY;
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = fmaxf(row_max[r], fmaxf(fmaxf(s[0][2 * r], s[0][2 * r + 1]), fmaxf(s[1][2 * r], s[1][2 * r + 1])));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_scaled = mx == -INFINITY ? 0.f : mx * p.scale_log2;
            const float alpha = fast_exp2(row_max[r] * p.scale_log2 - m_scaled);
            row_max[r] = mx;
            float sum = 0.f;
#pragma unroll
            for (int nt = 0; nt < 2; ++nt) {
                s[nt][2 * r] = fast_exp2(s[nt][2 * r] * p.scale_log2 - m_scaled);
                s[nt][2 * r + 1] = fast_exp2(s[nt][2 * r + 1] * p.scale_log2 - m_scaled);
                sum += s[nt][2 * r] + s[nt][2 * r + 1];
            }
            row_sum[r] = row_sum[r] * alpha + sum;
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt) {
                o[dt][2 * r] *= alpha;
                o[dt][2 * r + 1] *= alpha;
            }
        }
        uint32_t pf[4] = {pack2<T>(s[0][0], s[0][1]), pack2<T>(s[0][2], s[0][3]), pack2<T>(s[1][0], s[1][1]),
                          pack2<T>(s[1][2], s[1][3])};
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
            uint32_t vf[4];
            const int v_row = (lane & 7) + ((lane >> 3) & 1) * 8;
            ldmatrix_x4_trans(vf, smem_addr(sV + tile_offset<D>(v_row, 2 * dp + (lane >> 4))));
            mma_16816<T>(o[2 * dp], pf, vf);
            mma_16816<T>(o[2 * dp + 1], pf, vf + 2);
        }
        __syncwarp();  // the next iteration's copies overwrite this tile's stage
    }
    cp_async_wait<0>();
    __syncthreads();  // every warp is past its key loop: Q and the rings are free for the warp merge

    // Each warp's rows, unnormalised, with their maxima (log2 domain, -inf where no key was seen) and sums.
    float *s_o = reinterpret_cast<float *>(smem_raw);  // [W][kTcRows][D]
    float *s_m = s_o + W * kTcRows * D, *s_l = s_m + W * kTcRows;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float sum = row_sum[r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int row = g + 8 * r;
        if (row >= n_rows) continue;
        float *dst = s_o + (warp * kTcRows + row) * D;
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt)
            *reinterpret_cast<float2 *>(dst + dt * 8 + 2 * t) = make_float2(o[dt][2 * r], o[dt][2 * r + 1]);
        if (t == 0) {
            s_m[warp * kTcRows + row] = sum > 0.f ? row_max[r] * p.scale_log2 : -INFINITY;
            s_l[warp * kTcRows + row] = sum;
        }
    }
    __syncthreads();
    // Whole warps per 32 consecutive elements of a head (D is a multiple of 32), so the quantized output's shuffles
    // have every lane.
    for (int idx = tid; idx < n_rows * D; idx += kThreads) {
        const int h = idx / D, d = idx % D;
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < W; ++w) mx = fmaxf(mx, s_m[w * kTcRows + h]);
        float out = 0.f, lse = -INFINITY;
        if (mx != -INFINITY) {
            float sum = 0.f, num = 0.f;
#pragma unroll
            for (int w = 0; w < W; ++w) {
                const float wt = split_weight(s_m[w * kTcRows + h], mx);
                sum += s_l[w * kTcRows + h] * wt;
                num += s_o[(w * kTcRows + h) * D + d] * wt;
            }
            out = num / sum;
            lse = mx + log2f(sum);
        }
        const int head = h0 + h;
        if (direct && p.xq) quantize_chunk(out, (int)((((int64_t)b * p.n_heads + head) * D + d) / 32), lane, p.xq, p.xds);
        if (direct) {
            p.o[b * p.ob + (int64_t)head * p.oh + d] = out;
        } else {
            const int64_t prow = ((int64_t)b * p.n_heads + head) * num_splits + split;
            part_o[prow * D + d] = out;
            if (d == 0) part_lse[prow] = lse;
        }
    }
    if (direct) return;
    // The warp merge's arrays are read: the same shared memory holds the split merge's log-sum-exps (merge_if_last
    // synchronises the block before it writes them).
    float *s_lse = reinterpret_cast<float *>(smem_raw), *s_max = s_lse + kTcRows * EDGELLM_MAX_SPLITS;
    merge_if_last<D, kThreads>(p, b, h0, n_rows, plan.used, num_splits, part_o, part_lse,
                               counters + (int64_t)b * gridDim.y + blockIdx.y, s_lse, s_max);
}

// The instance for this dtype, head dim and cap whose shared memory fits the device: kTcWarps warps with kTcStages
// stages, else with two, else one warp with two.  Its kernel, block size and shared memory.
struct TcInstance {
    void (*kernel)(DecodeParams, int, int, float *, float *, int *);
    int warps, smem;
};
template <typename T, int D, bool kCap>
static TcInstance tc_instance() {
    using Full = TcDecodeConfig<T, D, kTcWarps, kTcStages>;
    using Two = TcDecodeConfig<T, D, kTcWarps, 2>;
    using One = TcDecodeConfig<T, D, 1, 2>;
    // The limit holds the kernel's static shared memory (merge_if_last's) as well as the dynamic part.
    const int limit = max_block_smem_bytes();
    auto fits = [limit](void (*kernel)(DecodeParams, int, int, float *, float *, int *), int dynamic_bytes) {
        cudaFuncAttributes attr;
        return cudaFuncGetAttributes(&attr, kernel) == cudaSuccess &&
               dynamic_bytes + (long long)attr.sharedSizeBytes <= limit;
    };
    if (fits(decode_tc_kernel<T, D, kCap, kTcWarps, kTcStages>, Full::kSmemBytes))
        return {decode_tc_kernel<T, D, kCap, kTcWarps, kTcStages>, kTcWarps, Full::kSmemBytes};
    if (fits(decode_tc_kernel<T, D, kCap, kTcWarps, 2>, Two::kSmemBytes))
        return {decode_tc_kernel<T, D, kCap, kTcWarps, 2>, kTcWarps, Two::kSmemBytes};
    return {decode_tc_kernel<T, D, kCap, 1, 2>, 1, One::kSmemBytes};
}

// The instance, with its shared-memory opt-in made once and its resident blocks per SM asked once.
struct TcChoice {
    TcInstance inst;
    int per_sm;
    int err;  // EDGELLM_OK, or the error of the opt-in
};
template <typename T, int D, bool kCap>
static const TcChoice &tc_choice() {
    static const TcChoice choice = [] {
        TcChoice c{tc_instance<T, D, kCap>(), 1, EDGELLM_OK};
        cudaError_t err = cudaFuncSetAttribute(c.inst.kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, c.inst.smem);
        if (err != cudaSuccess) {
            set_cuda_error(err);
            c.err = EDGELLM_ERR_CUDA;
            return c;
        }
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&c.per_sm, c.inst.kernel, c.inst.warps * 32, c.inst.smem) !=
                cudaSuccess ||
            c.per_sm < 1)
            c.per_sm = 1;
        return c;
    }();
    return choice;
}

template <typename T, int D, bool kCap>
static int launch(const DecodeParams &p, int batch, int n_kv_heads, int num_splits, float *part_o, float *part_lse,
                  int *counters, int rows, cudaStream_t stream) {
    const TcChoice &c = tc_choice<T, D, kCap>();
    if (c.err != EDGELLM_OK) return c.err;
    int split_len = (rows + num_splits - 1) / num_splits;
    split_len = (split_len + kTcKeys - 1) / kTcKeys * kTcKeys;  // whole tiles per split
    dim3 grid(num_splits, n_kv_heads * p.head_chunks, batch);
    launch_chained(c.inst.kernel, grid, c.inst.warps * 32, c.inst.smem, stream, p, num_splits, split_len, part_o,
                   part_lse, counters);
    return check_launch();
}

template <typename T, int D, bool kCap>
static int blocks_per_sm() {
    const TcChoice &c = tc_choice<T, D, kCap>();
    return c.per_sm;
}

template <typename T, bool kCap>
static int launch_d(const DecodeParams &p, int head_dim, int batch, int n_kv_heads, int num_splits, float *part_o,
                    float *part_lse, int *counters, int rows, cudaStream_t s) {
    switch (head_dim) {
    case 64: return launch<T, 64, kCap>(p, batch, n_kv_heads, num_splits, part_o, part_lse, counters, rows, s);
    case 96: return launch<T, 96, kCap>(p, batch, n_kv_heads, num_splits, part_o, part_lse, counters, rows, s);
    case 128: return launch<T, 128, kCap>(p, batch, n_kv_heads, num_splits, part_o, part_lse, counters, rows, s);
    case 256: return launch<T, 256, kCap>(p, batch, n_kv_heads, num_splits, part_o, part_lse, counters, rows, s);
    default: return EDGELLM_ERR_UNSUPPORTED;
    }
}

// rows: the keys a query attends to (the cache, or its window), which the splits share.
int launch_decode_tc(const DecodeParams &p, edgellm_dtype kv_dtype, int head_dim, int batch, int n_kv_heads,
                     int num_splits, float *part_o, float *part_lse, int *counters, int rows, cudaStream_t s) {
    const bool cap = p.softcap_log2 > 0.f;
    if (kv_dtype == EDGELLM_F16)
        return cap ? launch_d<__half, true>(p, head_dim, batch, n_kv_heads, num_splits, part_o, part_lse, counters,
                                            rows, s)
                   : launch_d<__half, false>(p, head_dim, batch, n_kv_heads, num_splits, part_o, part_lse, counters,
                                             rows, s);
    if (kv_dtype == EDGELLM_BF16 && !cap)
        return launch_d<__nv_bfloat16, false>(p, head_dim, batch, n_kv_heads, num_splits, part_o, part_lse, counters,
                                              rows, s);
    return EDGELLM_ERR_UNSUPPORTED;
}

int decode_tc_splits(edgellm_dtype kv_dtype, int head_dim, int batch, int n_kv_heads, int head_chunks, int seq_k,
                     bool cap) {
    // One wave: as many blocks as are resident at once (the SM count times the instance's blocks per SM), each split
    // at least kMinSplitKeys keys (shorter ones cost more to merge than they gain) and a round of the block's tiles.
    const int sms = multiprocessor_count();
    if (sms == 0) return 1;
    auto per_d = [&](auto tag) {
        using T = decltype(tag);
        switch (head_dim) {
        case 64: return cap ? blocks_per_sm<T, 64, true>() : blocks_per_sm<T, 64, false>();
        case 96: return cap ? blocks_per_sm<T, 96, true>() : blocks_per_sm<T, 96, false>();
        case 256: return cap ? blocks_per_sm<T, 256, true>() : blocks_per_sm<T, 256, false>();
        default: return cap ? blocks_per_sm<T, 128, true>() : blocks_per_sm<T, 128, false>();
        }
    };
    if (kv_dtype == EDGELLM_BF16) cap = false;  // no soft-capped bf16 instance (the caller refuses it)
    const int per_sm = kv_dtype == EDGELLM_BF16 ? per_d(__nv_bfloat16{}) : per_d(__half{});
    const int blocks_per_split = std::max(1, batch * n_kv_heads * head_chunks);
    const int min_keys = std::max(kMinSplitKeys, kTcKeys * kTcWarps);
    int splits = per_sm * sms / blocks_per_split;
    splits = std::min(splits, (seq_k + min_keys - 1) / min_keys);
    return std::max(1, std::min(splits, EDGELLM_MAX_SPLITS));
}

}  // namespace edgellm
