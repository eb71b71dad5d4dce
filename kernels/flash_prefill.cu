// Causal FlashAttention-2 forward (prefill) for grouped-query attention.
//
// Tensor-core path (fp16/bf16): one thread block per (query tile of 16*kWarps rows, query head, sequence); each warp
// owns 16 query rows, keeps its Q fragments in registers and streams 64-key tiles of K and V through shared memory
// (cp.async, double-buffered, XOR-swizzled so ldmatrix is free of bank conflicts).  S = Q K^T and O += P V run on
// mma.sync m16n8k16 with fp32 accumulators; the online softmax (running max and sum per row) stays in fp32 registers
// and O is normalised once at the end.  Barriers: one per key tile, after the tile's copy has landed and before the
// next tile's copy may overwrite the buffer read in the previous iteration.
//
// fp32 path: the same algorithm on CUDA cores with accurate expf, exact to float rounding, the accuracy reference of
// the engine and of the tensor-core path.
#include <algorithm>

#include "attention_common.cuh"
#include "tile_layout.cuh"

namespace edgellm {

struct PrefillParams {
    const void *q, *k, *v;
    void *o;
    int64_t qb, qr, qh, kb, kr, kh, vb, vr, vh, ob, orow, oh;
    int seq_q, seq_k, group;  // group = n_heads / n_kv_heads
    float scale;              // softmax scale
    int causal;
    int window;               // > 0: the query at position p sees keys p - window + 1 .. p only
    float softcap;            // > 0: scaled scores s become softcap * tanh(s / softcap)
};

// The first key any query of rows [q0, q0 + rows) at positions + shift attends to (0 without a window).
__device__ __forceinline__ int first_key(int window, int q0, int shift) {
    return window > 0 ? max(0, q0 + shift - window + 1) : 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor-core kernel
// ---------------------------------------------------------------------------------------------------------------
// kKeys: keys per tile, 0 for the default (head dim 256: fewer, for registers); a GPU whose blocks get less shared
// memory (a T4's 64 KB) takes half as many (launch_tc_fitting).
template <typename T, int D, int kWarps, int kKeys = 0>
struct TcConfig {
    static constexpr int kRowsQ = 16 * kWarps;  // query rows per block
    static constexpr int kRowsKV = kKeys > 0 ? kKeys : D > 128 ? 32 : 64;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kChunks = D / 8;  // 16-byte chunks per row
    static constexpr int kSmemBytes = (kRowsQ + 4 * kRowsKV) * D * (int)sizeof(T);
    // Q's fragments stay in registers up to head dim 128; at 256 they would leave too few for O's accumulators, and
    // are read from shared memory (where Q stays) at every key tile instead.
    static constexpr bool kQInRegisters = D <= 128;
    static_assert(D == 64 || D == 96 || D == 128 || D == 256, "head dim 64, 96, 128 or 256");
    static_assert((kRowsQ * kChunks) % kThreads == 0 && (kRowsKV * kChunks) % kThreads == 0, "tile copy split");
};

// Asynchronously copies rows [0, kRows) of a tile into shared memory; rows >= n_valid are zero-filled (never read).
template <typename T, int D, int kRows, int kThreads>
__device__ __forceinline__ void copy_tile_async(T *smem, const T *gmem, int64_t row_stride, int n_valid,
                                                const T *always_valid, int tid) {
    constexpr int kChunks = D / 8;
    constexpr int kPerThread = kRows * kChunks / kThreads;
#pragma unroll
    for (int it = 0; it < kPerThread; ++it) {
        const int idx = it * kThreads + tid;
        const int row = idx / kChunks, chunk = idx % kChunks;
        const bool ok = row < n_valid;
        const T *src = ok ? gmem + row * row_stride + chunk * 8 : always_valid;
        cp_async_16(smem_addr(smem + tile_offset<D>(row, chunk)), src, ok ? 16 : 0);
    }
}

// kCap: scores soft-capped (PrefillParams::softcap); kWindow: a sliding window (PrefillParams::window).  Instances
// of their own, so that the plain kernel is the code it was (the window's arithmetic costs it registers).
template <typename T, int D, int kWarps, bool kCap, bool kWindow, int kKeys = 0>
__global__ void __launch_bounds__(32 * kWarps) prefill_tc_kernel(PrefillParams p) {
    using C = TcConfig<T, D, kWarps, kKeys>;
    constexpr int BR = C::kRowsQ, BC = C::kRowsKV, NT = C::kThreads;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T *sQ = reinterpret_cast<T *>(smem_raw);
    T *sK = sQ + BR * D;      // two buffers of BC x D
    T *sV = sK + 2 * BC * D;  // two buffers of BC x D

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, t = lane & 3;  // mma fragment coordinates: row group, thread in group
    // Causal blocks near the end of the sequence have the most keys: start them first.
    const int qtile = p.causal ? (int)gridDim.x - 1 - (int)blockIdx.x : (int)blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z, kvh = h / p.group;
    const int q0 = qtile * BR;
    const int shift = p.seq_k - p.seq_q;  // query i sits at position i + shift

    const T *qg = static_cast<const T *>(p.q) + b * p.qb + (int64_t)q0 * p.qr + h * p.qh;
    const T *kg = static_cast<const T *>(p.k) + b * p.kb + kvh * p.kh;
    const T *vg = static_cast<const T *>(p.v) + b * p.vb + kvh * p.vh;
    const int kv_end = p.causal ? min(p.seq_k, q0 + BR + shift) : p.seq_k;
    const int n_tiles = (kv_end + BC - 1) / BC;
    // A sliding window: tiles wholly before the first query's window are skipped (j0 = 0 without one).
    const int window = kWindow ? p.window : 0;
    const int j0 = first_key(window, q0, shift) / BC;

    copy_tile_async<T, D, BR, NT>(sQ, qg, p.qr, p.seq_q - q0, static_cast<const T *>(p.q), tid);
    copy_tile_async<T, D, BC, NT>(sK, kg + (int64_t)j0 * BC * p.kr, p.kr, p.seq_k - j0 * BC, kg, tid);
    copy_tile_async<T, D, BC, NT>(sV, vg + (int64_t)j0 * BC * p.vr, p.vr, p.seq_k - j0 * BC, vg, tid);
    cp_async_commit();

    const float scale_log2 = p.scale * 1.4426950408889634f;
    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};  // rows g and g+8 of this warp
    constexpr int kQFrags = C::kQInRegisters ? D / 16 : 1;
    uint32_t qf[kQFrags][4];
    const int warp_row0 = warp * 16;
    const int q_row = warp_row0 + (lane & 7) + ((lane >> 3) & 1) * 8;  // the row this lane's ldmatrix address names

    for (int j = j0; j < n_tiles; ++j) {
        cp_async_wait<0>();
        __syncthreads();  // tile j landed for everyone; everyone is done with the buffer tile j+1 will overwrite
        if (j + 1 < n_tiles) {
            const int k0 = (j + 1) * BC, buf = (j + 1 - j0) & 1;
            copy_tile_async<T, D, BC, NT>(sK + buf * BC * D, kg + (int64_t)k0 * p.kr, p.kr, p.seq_k - k0, kg, tid);
            copy_tile_async<T, D, BC, NT>(sV + buf * BC * D, vg + (int64_t)k0 * p.vr, p.vr, p.seq_k - k0, vg, tid);
        }
        cp_async_commit();
        if constexpr (C::kQInRegisters) {
            if (j == j0) {
#pragma unroll
                for (int kk = 0; kk < D / 16; ++kk)
                    ldmatrix_x4(qf[kk], smem_addr(sQ + tile_offset<D>(q_row, 2 * kk + (lane >> 4))));
            }
        }
        const T *sKj = sK + ((j - j0) & 1) * BC * D;
        const T *sVj = sV + ((j - j0) & 1) * BC * D;

        // S = Q K^T for this warp's 16 rows and the tile's 64 keys: 8 n-tiles of 8 keys.
        float s[BC / 8][4];
#pragma unroll
        for (int i = 0; i < BC / 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            const uint32_t *qk = qf[C::kQInRegisters ? kk : 0];
            if constexpr (!C::kQInRegisters)
                ldmatrix_x4(qf[0], smem_addr(sQ + tile_offset<D>(q_row, 2 * kk + (lane >> 4))));
#pragma unroll
            for (int np = 0; np < BC / 16; ++np) {
                uint32_t kf[4];
                const int row = np * 16 + (lane & 7) + ((lane >> 4) << 3);
                ldmatrix_x4(kf, smem_addr(sKj + tile_offset<D>(row, 2 * kk + ((lane >> 3) & 1))));
                mma_16816<T>(s[2 * np], qk, kf);
                mma_16816<T>(s[2 * np + 1], qk, kf + 2);
            }
        }
        if constexpr (kCap) {  // s is q.k: cap * tanh(scale * s / cap), kept in q.k's units for the code below
            const float in = p.scale / p.softcap, out = p.softcap / p.scale;
#pragma unroll
            for (int nt = 0; nt < BC / 8; ++nt)
#pragma unroll
                for (int c = 0; c < 4; ++c) s[nt][c] = out * tanhf(s[nt][c] * in);
        }

        // Mask keys past the end, causally keys after each query's position, and keys before its window.
        const int key0 = j * BC;
        const bool needs_mask = key0 + BC > p.seq_k || (p.causal && key0 + BC - 1 > q0 + shift) ||
                                (window > 0 && key0 < q0 + BR + shift - window);
        if (needs_mask) {
#pragma unroll
            for (int nt = 0; nt < BC / 8; ++nt) {
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    const int key = key0 + nt * 8 + 2 * t + (c & 1);
                    const int qpos = q0 + warp_row0 + g + (c >> 1) * 8 + shift;
                    if (key >= p.seq_k || (p.causal && key > qpos) || (window > 0 && key <= qpos - window))
                        s[nt][c] = -INFINITY;
                }
            }
        }

        // Online softmax, in the log2 domain; a row's 4 threads (same g) share its max through two shuffles.
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = row_max[r];
#pragma unroll
            for (int nt = 0; nt < BC / 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_scaled = mx == -INFINITY ? 0.f : mx * scale_log2;
            const float alpha = fast_exp2(row_max[r] * scale_log2 - m_scaled);
            row_max[r] = mx;
            float sum = 0.f;
#pragma unroll
            for (int nt = 0; nt < BC / 8; ++nt) {
                s[nt][2 * r] = fast_exp2(s[nt][2 * r] * scale_log2 - m_scaled);
                s[nt][2 * r + 1] = fast_exp2(s[nt][2 * r + 1] * scale_log2 - m_scaled);
                sum += s[nt][2 * r] + s[nt][2 * r + 1];
            }
            row_sum[r] = row_sum[r] * alpha + sum;  // per-thread partial sum, reduced over the row at the end
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt) {
                o[dt][2 * r] *= alpha;
                o[dt][2 * r + 1] *= alpha;
            }
        }

        // O += P V: the S accumulators of two adjacent n-tiles are exactly the A fragment of one k16 step.
#pragma unroll
        for (int kk = 0; kk < BC / 16; ++kk) {
            uint32_t pf[4];
            pf[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
            pf[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
            pf[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pf[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t vf[4];
                const int row = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
                ldmatrix_x4_trans(vf, smem_addr(sVj + tile_offset<D>(row, 2 * dp + (lane >> 4))));
                mma_16816<T>(o[2 * dp], pf, vf);
                mma_16816<T>(o[2 * dp + 1], pf, vf + 2);
            }
        }
    }
    cp_async_wait<0>();  // no copy may still target shared memory when the block exits

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float sum = row_sum[r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const float inv = sum > 0.f ? 1.f / sum : 0.f;
        const int qi = q0 + warp_row0 + g + r * 8;
        if (qi < p.seq_q) {
            T *og = static_cast<T *>(p.o) + b * p.ob + (int64_t)qi * p.orow + h * p.oh;
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt) {
                *reinterpret_cast<uint32_t *>(og + dt * 8 + 2 * t) = pack2<T>(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// fp32 kernel: 128 threads, 16 query rows, 32-key tiles (8 at head dim 256, to stay within 48 KB of static shared
// memory); thread (r = tid/8, c = tid%8) scores keys c, c+8, ... of row r and accumulates output columns c, c+8, ...
// of row r.
// ---------------------------------------------------------------------------------------------------------------
template <int D, bool kCap>
__global__ void __launch_bounds__(128) prefill_f32_kernel(PrefillParams p) {
    constexpr int BR = 16, BC = D > 128 ? 8 : 32, KJ = BC / 8, DP = D + 1;  // +1: rows at one column, other banks
    __shared__ float sQ[BR][DP], sK[BC][DP], sV[BC][D], sP[BR][BC + 1];
    const int tid = threadIdx.x, r = tid >> 3, c = tid & 7;
    const int qtile = p.causal ? (int)gridDim.x - 1 - (int)blockIdx.x : (int)blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z, kvh = h / p.group;
    const int q0 = qtile * BR, shift = p.seq_k - p.seq_q;
    const float *qg = static_cast<const float *>(p.q) + b * p.qb + h * p.qh;
    const float *kg = static_cast<const float *>(p.k) + b * p.kb + kvh * p.kh;
    const float *vg = static_cast<const float *>(p.v) + b * p.vb + kvh * p.vh;
    const int kv_end = p.causal ? min(p.seq_k, q0 + BR + shift) : p.seq_k;

    for (int i = tid; i < BR * D; i += 128) {
        const int row = i / D, d = i % D;
        sQ[row][d] = q0 + row < p.seq_q ? qg[(int64_t)(q0 + row) * p.qr + d] : 0.f;
    }
    float acc[D / 8];
#pragma unroll
    for (int i = 0; i < D / 8; ++i) acc[i] = 0.f;
    float m = -INFINITY, l = 0.f;
    const int qpos = q0 + r + shift;

    for (int k0 = first_key(p.window, q0, shift) / BC * BC; k0 < kv_end; k0 += BC) {
        __syncthreads();  // the previous tile's K, V and P are no longer read
        for (int i = tid; i < BC * D; i += 128) {
            const int row = i / D, d = i % D;
            const bool ok = k0 + row < p.seq_k;
            sK[row][d] = ok ? kg[(int64_t)(k0 + row) * p.kr + d] : 0.f;
            sV[row][d] = ok ? vg[(int64_t)(k0 + row) * p.vr + d] : 0.f;
        }
        __syncthreads();
        float s[KJ];
        float tile_max = -INFINITY;
#pragma unroll
        for (int jj = 0; jj < KJ; ++jj) {
            const int col = c + 8 * jj, key = k0 + col;
            float dot = 0.f;
#pragma unroll 16
            for (int d = 0; d < D; ++d) dot = fmaf(sQ[r][d], sK[col][d], dot);
            float sc = dot * p.scale;
            if constexpr (kCap) sc = p.softcap * tanhf(sc / p.softcap);
            const bool masked = key >= p.seq_k || (p.causal && key > qpos) || (p.window > 0 && key <= qpos - p.window);
            s[jj] = masked ? -INFINITY : sc;
            tile_max = fmaxf(tile_max, s[jj]);
        }
        // The 8 threads of a row are 8 consecutive lanes: xor 1, 2, 4 stays inside the row.
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 4));
        const float m_new = fmaxf(m, tile_max);
        const float alpha = m_new == -INFINITY ? 1.f : expf(m - m_new);
        float psum = 0.f;
#pragma unroll
        for (int jj = 0; jj < KJ; ++jj) {
            const float pv = m_new == -INFINITY ? 0.f : expf(s[jj] - m_new);
            sP[r][c + 8 * jj] = pv;
            psum += pv;
        }
        psum += __shfl_xor_sync(0xffffffffu, psum, 1);
        psum += __shfl_xor_sync(0xffffffffu, psum, 2);
        psum += __shfl_xor_sync(0xffffffffu, psum, 4);
        l = l * alpha + psum;
        m = m_new;
        __syncthreads();  // P of the whole tile written
#pragma unroll
        for (int i = 0; i < D / 8; ++i) {
            const int d = c + 8 * i;
            float a = acc[i] * alpha;
#pragma unroll 8
            for (int col = 0; col < BC; ++col) a = fmaf(sP[r][col], sV[col][d], a);
            acc[i] = a;
        }
    }
    const int qi = q0 + r;
    if (qi < p.seq_q) {
        float *og = static_cast<float *>(p.o) + b * p.ob + (int64_t)qi * p.orow + h * p.oh;
        const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
        for (int i = 0; i < D / 8; ++i) og[c + 8 * i] = acc[i] * inv;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------------------------------
template <typename T, int D, int kWarps, bool kCap = false, bool kWindow = false, int kKeys = 0>
int launch_tc(const PrefillParams &p, int batch, int n_heads, cudaStream_t stream) {
    using C = TcConfig<T, D, kWarps, kKeys>;
    // Over 48 KB of dynamic shared memory needs the opt-in, once per kernel.
    static bool configured = false;
    if (!configured) {
        cudaError_t err = cudaFuncSetAttribute(prefill_tc_kernel<T, D, kWarps, kCap, kWindow, kKeys>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes);
        if (err != cudaSuccess) {
            set_cuda_error(err);
            return EDGELLM_ERR_CUDA;
        }
        configured = true;
    }
    dim3 grid((p.seq_q + C::kRowsQ - 1) / C::kRowsQ, n_heads, batch);
    prefill_tc_kernel<T, D, kWarps, kCap, kWindow, kKeys><<<grid, C::kThreads, C::kSmemBytes, stream>>>(p);
    return check_launch();
}

// The default tile where the device's blocks have the shared memory for it, else half as many keys per tile (head
// dims 128 and 256 on a T4: 80 and 96 KB against its 64).
template <typename T, int D, int kWarps, bool kCap, bool kWindow>
int launch_tc_fitting(const PrefillParams &p, int batch, int n_heads, cudaStream_t s) {
    using Default = TcConfig<T, D, kWarps>;
    if (D <= 96 || Default::kSmemBytes <= max_block_smem_bytes())
        return launch_tc<T, D, kWarps, kCap, kWindow>(p, batch, n_heads, s);
    return launch_tc<T, D, kWarps, kCap, kWindow, Default::kRowsKV / 2>(p, batch, n_heads, s);
}

template <int D>
int launch_f32(const PrefillParams &p, int batch, int n_heads, cudaStream_t stream) {
    dim3 grid((p.seq_q + 15) / 16, n_heads, batch);
    if (p.softcap > 0.f)
        prefill_f32_kernel<D, true><<<grid, 128, 0, stream>>>(p);
    else
        prefill_f32_kernel<D, false><<<grid, 128, 0, stream>>>(p);
    return check_launch();
}

template <typename T, bool kCap, bool kWindow>
int launch_tc_dim(const PrefillParams &p, int D, int batch, int n_heads, cudaStream_t s) {
    switch (D) {
    case 64: return launch_tc<T, 64, 4, kCap, kWindow>(p, batch, n_heads, s);
    case 96: return launch_tc<T, 96, 4, kCap, kWindow>(p, batch, n_heads, s);
    case 256: return launch_tc_fitting<T, 256, 4, kCap, kWindow>(p, batch, n_heads, s);
    default: return launch_tc_fitting<T, 128, 4, kCap, kWindow>(p, batch, n_heads, s);
    }
}

// Tile shape per head dim, chosen on an H100/H200 by kernels/bench (see the benchmark's `--variants`); head dims 96
// and 256 take the same 4 warps (not measured against other shapes).
template <typename T>
int launch_tc_default(const PrefillParams &p, int D, int batch, int n_heads, cudaStream_t s) {
    if (p.window > 0)
        return p.softcap > 0.f ? launch_tc_dim<T, true, true>(p, D, batch, n_heads, s)
                               : launch_tc_dim<T, false, true>(p, D, batch, n_heads, s);
    return p.softcap > 0.f ? launch_tc_dim<T, true, false>(p, D, batch, n_heads, s)
                           : launch_tc_dim<T, false, false>(p, D, batch, n_heads, s);
}

}  // namespace edgellm

using namespace edgellm;

static bool layout_ok(const edgellm_layout &l, int64_t align_elems) {
    return l.batch_stride % align_elems == 0 && l.row_stride % align_elems == 0 && l.head_stride % align_elems == 0;
}

static int prefill_args_check(const edgellm_prefill_args *a, edgellm_dtype dtype) {
    if (!a || !a->q || !a->k || !a->v || !a->o) return EDGELLM_ERR_ARGUMENT;
    if (a->batch < 1 || a->seq_q < 1 || a->seq_k < 1 || a->n_heads < 1 || a->n_kv_heads < 1) return EDGELLM_ERR_ARGUMENT;
    if (a->n_heads % a->n_kv_heads != 0) return EDGELLM_ERR_ARGUMENT;
    if (a->causal && a->seq_k < a->seq_q) return EDGELLM_ERR_ARGUMENT;  // a query would see no key
    if (a->window < 0 || !(a->softcap >= 0.f)) return EDGELLM_ERR_ARGUMENT;
    if (a->head_dim != 64 && a->head_dim != 96 && a->head_dim != 128 && a->head_dim != 256)
        return EDGELLM_ERR_UNSUPPORTED;
    if (dtype != EDGELLM_F32 && dtype != EDGELLM_F16 && dtype != EDGELLM_BF16) return EDGELLM_ERR_UNSUPPORTED;
    if (dtype != EDGELLM_F32) {
        // 16-byte copies: rows and heads start on 8-element boundaries, base pointers 16-byte aligned.
        const edgellm_layout *ls[4] = {&a->q_layout, &a->k_layout, &a->v_layout, &a->o_layout};
        for (auto *l : ls)
            if (!layout_ok(*l, 8)) return EDGELLM_ERR_ARGUMENT;
        const void *ps[4] = {a->q, a->k, a->v, a->o};
        for (auto *ptr : ps)
            if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return EDGELLM_ERR_ARGUMENT;
    }
    return EDGELLM_OK;
}

static PrefillParams to_params(const edgellm_prefill_args *a) {
    PrefillParams p;
    p.q = a->q, p.k = a->k, p.v = a->v, p.o = a->o;
    p.qb = a->q_layout.batch_stride, p.qr = a->q_layout.row_stride, p.qh = a->q_layout.head_stride;
    p.kb = a->k_layout.batch_stride, p.kr = a->k_layout.row_stride, p.kh = a->k_layout.head_stride;
    p.vb = a->v_layout.batch_stride, p.vr = a->v_layout.row_stride, p.vh = a->v_layout.head_stride;
    p.ob = a->o_layout.batch_stride, p.orow = a->o_layout.row_stride, p.oh = a->o_layout.head_stride;
    p.seq_q = a->seq_q, p.seq_k = a->seq_k, p.group = a->n_heads / a->n_kv_heads;
    p.scale = a->softmax_scale, p.causal = a->causal ? 1 : 0;
    p.window = a->window, p.softcap = a->softcap;
    return p;
}

extern "C" int edgellm_attention_prefill(const edgellm_prefill_args *a, edgellm_dtype dtype, void *stream) {
    const int rc = prefill_args_check(a, dtype);
    if (rc != EDGELLM_OK) return rc;
    const PrefillParams p = to_params(a);
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    switch (dtype) {
    case EDGELLM_F16: return launch_tc_default<__half>(p, a->head_dim, a->batch, a->n_heads, s);
    case EDGELLM_BF16: return launch_tc_default<__nv_bfloat16>(p, a->head_dim, a->batch, a->n_heads, s);
    default:
        switch (a->head_dim) {
        case 64: return launch_f32<64>(p, a->batch, a->n_heads, s);
        case 96: return launch_f32<96>(p, a->batch, a->n_heads, s);
        case 256: return launch_f32<256>(p, a->batch, a->n_heads, s);
        default: return launch_f32<128>(p, a->batch, a->n_heads, s);
        }
    }
}

// Tile-shape variants for the benchmark (not part of the public header): warps = 4 or 8 query-row groups per block.
extern "C" int edgellm_attention_prefill_variant(const edgellm_prefill_args *a, edgellm_dtype dtype, int warps,
                                                 void *stream) {
    const int rc = prefill_args_check(a, dtype);
    if (rc != EDGELLM_OK) return rc;
    if (dtype == EDGELLM_F32 || (warps != 4 && warps != 8)) return EDGELLM_ERR_UNSUPPORTED;
    if ((a->head_dim != 64 && a->head_dim != 128) || a->softcap > 0.f || a->window > 0) return EDGELLM_ERR_UNSUPPORTED;
    const PrefillParams p = to_params(a);
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    const int D = a->head_dim, B = a->batch, H = a->n_heads;
    if (dtype == EDGELLM_F16) {
        if (D == 64) return warps == 4 ? launch_tc<__half, 64, 4>(p, B, H, s) : launch_tc<__half, 64, 8>(p, B, H, s);
        return warps == 4 ? launch_tc<__half, 128, 4>(p, B, H, s) : launch_tc<__half, 128, 8>(p, B, H, s);
    }
    if (D == 64)
        return warps == 4 ? launch_tc<__nv_bfloat16, 64, 4>(p, B, H, s) : launch_tc<__nv_bfloat16, 64, 8>(p, B, H, s);
    return warps == 4 ? launch_tc<__nv_bfloat16, 128, 4>(p, B, H, s) : launch_tc<__nv_bfloat16, 128, 8>(p, B, H, s);
}
