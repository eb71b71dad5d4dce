// Split-KV decode on tensor cores for fp16/bf16 KV caches (grouped-query attention).
//
// The query heads that share a KV head (up to 16) are the 16 rows of an m16n8k16 tile, so one warp computes S = Q K^T
// for 16 keys in D/16 mma pairs and O += P V in D/8 mma, instead of a dot product and a shuffle reduction per key and
// head.  One block is one warp: it streams its split's keys in tiles of 16 through a cp.async ring of 4 stages (2 where
// 4 do not fit) in shared memory (the warp's own copies, so __syncwarp is the only barrier), keeps the online softmax
// of its 16 rows in fp32 registers, and writes its split's normalised output and log-sum-exp; the last block of a head
// group merges the splits (merge_if_last).  Q is rounded to the KV dtype and P to fp16/bf16, as in the prefill kernel:
// this path is held to the fp16/bf16 tolerances.  Reached through edgellm_attention_decode_impl (impl 1); the default
// decode is the CUDA-core kernel of flash_decode.cu, which was the faster of the two where both were measured.
#include <algorithm>

#include "decode_common.cuh"
#include "tile_layout.cuh"

namespace edgellm {

// Stages of the cp.async ring: 4, or 2 at head dim 256 where 4 do not fit the block's shared memory (Turing's 64 KB:
// 4 stages take 72 KB there).
constexpr int kTcStages = 4;
constexpr int kTcKeys = 16;  // keys per tile

template <typename T, int D, int S = kTcStages>
struct TcDecodeConfig {
    static constexpr int kChunks = D / 8;  // 16-byte chunks per row
    static constexpr int kTileElems = kTcKeys * D;
    static constexpr int kTileBytes = (kTcRows * D + S * 2 * kTileElems) * (int)sizeof(T);
    static constexpr int kMergeBytes = (kTcRows * EDGELLM_MAX_SPLITS + kTcRows) * 4;  // merge_if_last's arrays
    static constexpr int kSmemBytes = kTileBytes > kMergeBytes ? kTileBytes : kMergeBytes;
};

// kCap: scores soft-capped (DecodeParams::softcap_log2); a separate instance, so the plain kernel is unchanged.
template <typename T, int D, bool kCap, int S>
__global__ void __launch_bounds__(32) decode_tc_kernel(DecodeParams p, int num_splits, int split_len, float *part_o,
                                                       float *part_lse, int *counters) {
    using C = TcDecodeConfig<T, D, S>;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T *sQ = reinterpret_cast<T *>(smem_raw);
    T *sKV = sQ + kTcRows * D;  // stage s: K at sKV + 2s * tile, V at sKV + (2s+1) * tile
    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    const int split = blockIdx.x, b = blockIdx.z;
    const int kvh = blockIdx.y / p.head_chunks, chunk = blockIdx.y % p.head_chunks;
    const int h0 = kvh * p.group + chunk * kTcRows;
    const int n_rows = min(kTcRows, p.group - chunk * kTcRows);
    const int rows = cache_rows(p);
    const int start = first_row(p, rows) + split * split_len, end = min(rows, start + split_len);
    const int n_tiles = end > start ? (end - start + kTcKeys - 1) / kTcKeys : 0;

    const T *kbase = static_cast<const T *>(p.k) + b * p.kb + kvh * p.kh;
    const T *vbase = static_cast<const T *>(p.v) + b * p.vb + kvh * p.vh;
    auto issue_tile = [&](int tile) {
        if (tile < n_tiles) {
            T *sK = sKV + 2 * (tile % S) * C::kTileElems, *sV = sK + C::kTileElems;
            const int k0 = start + tile * kTcKeys;
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

    // Q (fp32 in memory) rounded to T, rows past the group zero: all of a lane's loads in flight at once (a load
    // per loop step, each waiting for the previous store, costs a memory latency per step).
    constexpr int kQVecs = kTcRows * D / 4 / 32;  // float4 per lane
    float4 qv[kQVecs];
#pragma unroll
    for (int i = 0; i < kQVecs; ++i) {
        const int e = (i * 32 + lane) * 4, r = e / D, d = e % D;
        qv[i] = r < n_rows ? __ldg(reinterpret_cast<const float4 *>(p.q + b * p.qb + (int64_t)(h0 + r) * p.qh + d))
                           : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int i = 0; i < kQVecs; ++i) {
        const int e = (i * 32 + lane) * 4, r = e / D, d = e % D;
        T *dst = sQ + tile_offset<D>(r, d >> 3) + (d & 7);
        dst[0] = from_float<T>(qv[i].x), dst[1] = from_float<T>(qv[i].y);
        dst[2] = from_float<T>(qv[i].z), dst[3] = from_float<T>(qv[i].w);
    }
    __syncwarp();
    // Q's fragments stay in registers up to head dim 128; at 256 they are read from shared memory (where Q stays
    // until the merge) at every tile, leaving the registers to O's 128 accumulators.
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

    for (int tile = 0; tile < n_tiles; ++tile) {
        issue_tile(tile + S - 1);
        cp_async_wait<S - 1>();
        __syncwarp();  // every lane's copies of this tile are visible to the whole warp
        const T *sK = sKV + 2 * (tile % S) * C::kTileElems, *sV = sK + C::kTileElems;

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
        const int k0 = start + tile * kTcKeys;
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
    __syncwarp();

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float sum = row_sum[r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int row = g + 8 * r;
        if (row >= n_rows) continue;
        const float inv = sum > 0.f ? 1.f / sum : 0.f;
        const int head = h0 + row;
        float *dst;
        if (num_splits == 1) {
            dst = p.o + b * p.ob + (int64_t)head * p.oh;
        } else {
            const int64_t prow = ((int64_t)b * p.n_heads + head) * num_splits + split;
            dst = part_o + prow * D;
            if (t == 0) part_lse[prow] = sum > 0.f ? row_max[r] * p.scale_log2 + log2f(sum) : -INFINITY;
        }
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt)
            *reinterpret_cast<float2 *>(dst + dt * 8 + 2 * t) = make_float2(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
    }
    if (num_splits == 1) return;
    // Q and the stage ring are free now: the same shared memory holds the merge's log-sum-exps.
    float *s_lse = reinterpret_cast<float *>(smem_raw), *s_max = s_lse + kTcRows * EDGELLM_MAX_SPLITS;
    merge_if_last<D, 32>(p, b, h0, n_rows, num_splits, num_splits, part_o, part_lse,
                         counters + (int64_t)b * gridDim.y + blockIdx.y, s_lse, s_max);
}

template <typename T, int D, bool kCap, int S>
static int launch_stages(const DecodeParams &p, int batch, int n_kv_heads, int num_splits, float *part_o,
                         float *part_lse, int *counters, int rows, cudaStream_t stream) {
    using C = TcDecodeConfig<T, D, S>;
    static bool configured = false;  // over 48 KB of dynamic shared memory needs the opt-in, once per kernel
    if (!configured) {
        cudaError_t err = cudaFuncSetAttribute(decode_tc_kernel<T, D, kCap, S>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               C::kSmemBytes);
        if (err != cudaSuccess) {
            set_cuda_error(err);
            return EDGELLM_ERR_CUDA;
        }
        configured = true;
    }
    int split_len = (rows + num_splits - 1) / num_splits;
    split_len = (split_len + kTcKeys - 1) / kTcKeys * kTcKeys;  // whole tiles per split
    dim3 grid(num_splits, n_kv_heads * p.head_chunks, batch);
    decode_tc_kernel<T, D, kCap, S><<<grid, 32, C::kSmemBytes, stream>>>(p, num_splits, split_len, part_o, part_lse,
                                                                         counters);
    return check_launch();
}

template <typename T, int D, bool kCap>
static int launch(const DecodeParams &p, int batch, int n_kv_heads, int num_splits, float *part_o, float *part_lse,
                  int *counters, int rows, cudaStream_t s) {
    if constexpr (D == 256) {  // the one head dim whose 4 stages can exceed a block's shared memory
        if (TcDecodeConfig<T, D>::kSmemBytes > max_block_smem_bytes())
            return launch_stages<T, D, kCap, 2>(p, batch, n_kv_heads, num_splits, part_o, part_lse, counters, rows, s);
    }
    return launch_stages<T, D, kCap, kTcStages>(p, batch, n_kv_heads, num_splits, part_o, part_lse, counters, rows,
                                                s);
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

int decode_tc_splits(edgellm_dtype kv_dtype, int head_dim, int batch, int n_kv_heads, int head_chunks, int seq_k) {
    // About four one-warp blocks per SM, each with at least four tiles (64 keys) to stream.
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        return 1;
    (void)kv_dtype, (void)head_dim;
    const int blocks_per_split = std::max(1, batch * n_kv_heads * head_chunks);
    int splits = 4 * sms / blocks_per_split;
    splits = std::min(splits, (seq_k + 4 * kTcKeys - 1) / (4 * kTcKeys));
    return std::max(1, std::min(splits, EDGELLM_MAX_SPLITS));
}

}  // namespace edgellm
