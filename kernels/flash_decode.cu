// Split-KV decode attention (flash-decoding) for grouped-query attention.
//
// One new query per sequence against a KV cache of seq_k rows.  The cache is cut into num_splits chunks along the
// sequence; block (split, KV head [x head chunk], sequence) reads its chunk of K and V exactly once for all the query
// heads that share the KV head, so a long cache is read by the whole GPU at once.  Inside a block each half-warp
// (16 lanes) owns one key at a time, a lane holding D/16 consecutive elements of it (one 16-byte load for fp16 at
// D=128), and keeps its own online-softmax state; row chunks stream through shared memory with cp.async several
// steps ahead.  The states of the 8 half-warps are merged through shuffles and shared memory.  Each split writes its
// output normalised by its own sum together with its log-sum-exp (base 2); the last block of a head group to finish
// weighs the splits by exp2(lse - max lse) (one launch per call).  Every shuffle runs on all 32 lanes: the key loop
// is uniform across the block and keys past the chunk are masked, never branched around.
#include <algorithm>
#include <type_traits>

#include "decode_common.cuh"

namespace edgellm {

template <typename T, int E>
struct KvVector {  // E consecutive elements of one K or V row, loaded with the widest aligned accesses
    static constexpr int kBytes = E * (int)sizeof(T);
    static_assert(kBytes % 8 == 0, "8-byte aligned rows");
    using Word = typename std::conditional<kBytes % 16 == 0, uint4, uint2>::type;
    static constexpr int kWords = kBytes / (int)sizeof(Word);
    Word w[kWords];
    __device__ __forceinline__ void load_or_zero(const T *src, bool ok) {
#pragma unroll
        for (int i = 0; i < kWords; ++i) w[i] = ok ? __ldg(reinterpret_cast<const Word *>(src) + i) : Word{};
    }
    __device__ __forceinline__ float at(int e) const { return to_float(reinterpret_cast<const T *>(w)[e]); }
    // Asynchronous copy of the row chunk at src into dst (shared memory); zeros when !ok.
    __device__ __forceinline__ static void copy_async(Word *dst, const T *src, bool ok) {
#pragma unroll
        for (int i = 0; i < kWords; ++i) {
            const void *g = reinterpret_cast<const Word *>(src) + i;
            if constexpr (sizeof(Word) == 16)
                cp_async_16(smem_addr(dst + i), g, ok ? 16 : 0);
            else
                cp_async_8(smem_addr(dst + i), g, ok ? 8 : 0);
        }
    }
    __device__ __forceinline__ void load_shared(const Word *src) {
#pragma unroll
        for (int i = 0; i < kWords; ++i) w[i] = src[i];
    }
};

// Block size, pipeline depth and resident blocks per SM are build-time settings (make EXTRA=-D...) so that a card
// can be swept with kernels/bench (attention_bench --decode S).  The defaults are the fastest measured on an H200 for
// a 16k fp16 cache, 32/8 heads: 256 threads, 2 stages, one block per SM (16 splits) read 2659 GB/s, where 128
// threads with 4 stages and two blocks per SM (33 splits) read 2067; the kernel is bound by instruction issue, and 8
// warps of one block per SM issue better than two blocks of 4 with their extra splits to merge.
#ifndef EDGELLM_DECODE_THREADS
#define EDGELLM_DECODE_THREADS 256
#endif
#ifndef EDGELLM_DECODE_STAGES
#define EDGELLM_DECODE_STAGES 2
#endif
#ifndef EDGELLM_DECODE_BLOCKS_PER_SM
#define EDGELLM_DECODE_BLOCKS_PER_SM 1
#endif
constexpr int kDecodeThreads = EDGELLM_DECODE_THREADS;
constexpr int kHalfWarps = kDecodeThreads / 16;
constexpr int kDecodeBlocksPerSm = EDGELLM_DECODE_BLOCKS_PER_SM;

// Elements of a K or V row per lane: D/16, so that a half-warp covers a row; head dim 96 takes 8 (whole 16-byte
// loads of fp16, which 6 elements would not be), on 12 lanes of the 16, the other 4 holding zeros.
__host__ __device__ constexpr int lane_elems(int D) { return D == 96 ? 8 : D / 16; }

// Keys a half-warp holds in registers per step, twice over (the step computed and the next one loading): as many as
// the registers left by the G heads' query and accumulator rows allow (head dim 256: 16 of each per lane and head).
template <typename T, int D, int G>
__host__ __device__ constexpr int keys_per_step() {
    return D > 128 ? (sizeof(T) == 4 || G >= 4 ? 1 : 2) : sizeof(T) == 4 ? (G >= 8 ? 1 : 2) : (G >= 8 ? 2 : 4);
}

// Steps in flight: each thread copies the very row chunks it will read into its own slots of shared memory
// (cp.async), kStages - 1 steps ahead of the one it computes, so no barrier is needed, only its own wait.
constexpr int kStages = EDGELLM_DECODE_STAGES;
template <typename T, int D, int G>
__host__ __device__ constexpr int decode_smem_bytes() {
    return kStages * keys_per_step<T, D, G>() * 2 * kDecodeThreads * lane_elems(D) * (int)sizeof(T);
}

// kCap: scores soft-capped (DecodeParams::softcap_log2); a separate instance, so the plain kernel is unchanged.
template <typename T, int D, int G, bool kCap>
__global__ void __launch_bounds__(kDecodeThreads) decode_split_kernel(DecodeParams p, int num_splits, int split_len,
                                                                      float *part_o, float *part_lse, int *counters) {
    chained_start();
    constexpr int E = lane_elems(D);                 // elements of a row per lane
    constexpr int kLanes = D / E;                    // lanes of a half-warp that hold elements of the row
    constexpr int U = keys_per_step<T, D, G>();      // keys per half-warp per step (loads in flight)
    constexpr int STEP = kHalfWarps * U;             // keys per block per step
    const int split = blockIdx.x, b = blockIdx.z;
    const int kvh = blockIdx.y / p.head_chunks, chunk = blockIdx.y % p.head_chunks;
    const int h0 = kvh * p.group + chunk * G;              // first query head of this block
    const int n_heads_here = min(G, p.group - chunk * G);  // query heads of this block (<= G)
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int half = lane >> 4, sub = lane & 15;
    const int hw = warp * 2 + half;  // half-warp index in the block
    const bool lane_on = sub < kLanes;
    const int esub = min(sub, kLanes - 1) * E;  // the lane's first element (lanes past the row: any valid address)
    const int rows = cache_rows(p);
    // A sliding window: the splits share rows first .. rows - 1 alone (keys before the window are never read).
    const int first = first_row(p, rows);
    // A cache length read from the device (a replayed graph) runs a grid sized for the longest cache: the keys are
    // shared among as many of its splits as they fill (split_plan), and the blocks past those leave at once.  With
    // one split in use its block writes the output itself (no partials, no merge, no counter touched).  The choice is
    // uniform across the grid.
    const SplitPlan plan = p.pos ? split_plan(rows - first, num_splits, STEP) : SplitPlan{split_len, num_splits};
    if (split >= plan.used) return;
    const bool direct = plan.used == 1;  // this block writes the final output
    const int start = first + split * plan.len, end = min(rows, start + plan.len);

    float q[G][E], acc[G][E], m[G], l[G];
#pragma unroll
    for (int h = 0; h < G; ++h) {
        const float *qh = p.q + b * p.qb + (int64_t)(h0 + min(h, n_heads_here - 1)) * p.qh + esub;
#pragma unroll
        for (int e = 0; e < E; ++e) {
            q[h][e] = lane_on ? qh[e] * p.scale_log2 : 0.f;
            acc[h][e] = 0.f;
        }
        m[h] = -INFINITY;
        l[h] = 0.f;
    }
    const T *kbase = static_cast<const T *>(p.k) + b * p.kb + kvh * p.kh + esub;
    const T *vbase = static_cast<const T *>(p.v) + b * p.vb + kvh * p.vh + esub;

    // Software pipeline over shared memory: slot (stage, u, k|v, thread) holds one row chunk of this thread.
    using Vec = KvVector<T, E>;
    extern __shared__ __align__(16) unsigned char decode_smem[];
    auto slot = [&](int stage, int u, int which) {
        return reinterpret_cast<typename Vec::Word *>(decode_smem) +
               (((stage * U + u) * 2 + which) * kDecodeThreads + tid) * Vec::kWords;
    };
    auto issue_step = [&](int k0, int stage) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int key = k0 + u * kHalfWarps + hw;
            const bool ok = key < end && lane_on;  // rows past the chunk read as zeros and are masked below
            Vec::copy_async(slot(stage, u, 0), kbase + (int64_t)(ok ? key : 0) * p.kr, ok);
            Vec::copy_async(slot(stage, u, 1), vbase + (int64_t)(ok ? key : 0) * p.vr, ok);
        }
        cp_async_commit();
    };
#pragma unroll
    for (int st = 0; st < kStages - 1; ++st) issue_step(start + st * STEP, st);
    int stage = 0;
    for (int k0 = start; k0 < end; k0 += STEP) {  // uniform across the block
        issue_step(k0 + (kStages - 1) * STEP, (stage + kStages - 1) % kStages);
        cp_async_wait<kStages - 1>();  // this thread's copies of step k0 have landed
        Vec kv[U], vv[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            kv[u].load_shared(slot(stage, u, 0));
            vv[u].load_shared(slot(stage, u, 1));
        }
        stage = (stage + 1) % kStages;
        float s[G][U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            float kf[E];
#pragma unroll
            for (int e = 0; e < E; ++e) kf[e] = kv[u].at(e);
            const bool valid = k0 + u * kHalfWarps + hw < end;
#pragma unroll
            for (int h = 0; h < G; ++h) {
                float dot = 0.f;
#pragma unroll
                for (int e = 0; e < E; ++e) dot = fmaf(q[h][e], kf[e], dot);
                dot += __shfl_xor_sync(0xffffffffu, dot, 8);
                dot += __shfl_xor_sync(0xffffffffu, dot, 4);
                dot += __shfl_xor_sync(0xffffffffu, dot, 2);
                dot += __shfl_xor_sync(0xffffffffu, dot, 1);
                if constexpr (kCap) dot = p.softcap_log2 * tanhf(dot * p.inv_softcap_log2);
                s[h][u] = valid ? dot : -INFINITY;
            }
        }
#pragma unroll
        for (int h = 0; h < G; ++h) {
            float mx = m[h];
#pragma unroll
            for (int u = 0; u < U; ++u) mx = fmaxf(mx, s[h][u]);
            // While nothing valid was seen, everything stays zero: exp2(-inf - 0) = 0, never -inf - -inf.
            const float mx_safe = mx == -INFINITY ? 0.f : mx;
            const float alpha = exp2f(m[h] - mx_safe);
            float psum = 0.f;
#pragma unroll
            for (int u = 0; u < U; ++u) {
                s[h][u] = exp2f(s[h][u] - mx_safe);  // now the weight p of key u
                psum += s[h][u];
            }
            l[h] = l[h] * alpha + psum;
            m[h] = mx;
#pragma unroll
            for (int e = 0; e < E; ++e) acc[h][e] *= alpha;
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            float vf[E];
#pragma unroll
            for (int e = 0; e < E; ++e) vf[e] = vv[u].at(e);
#pragma unroll
            for (int h = 0; h < G; ++h)
#pragma unroll
                for (int e = 0; e < E; ++e) acc[h][e] = fmaf(s[h][u], vf[e], acc[h][e]);
        }
    }
    cp_async_wait<0>();  // no copy may still target shared memory past this point

    // Merge the two half-warps of each warp (lanes sub and sub+16 hold the same columns).
#pragma unroll
    for (int h = 0; h < G; ++h) {
        const float m_o = __shfl_xor_sync(0xffffffffu, m[h], 16);
        const float l_o = __shfl_xor_sync(0xffffffffu, l[h], 16);
        const float mx = fmaxf(m[h], m_o);
        const float a = mx == -INFINITY ? 0.f : exp2f(m[h] - mx);
        const float c = mx == -INFINITY ? 0.f : exp2f(m_o - mx);
#pragma unroll
        for (int e = 0; e < E; ++e) {
            const float acc_o = __shfl_xor_sync(0xffffffffu, acc[h][e], 16);
            acc[h][e] = acc[h][e] * a + acc_o * c;
        }
        l[h] = l[h] * a + l_o * c;
        m[h] = mx;
    }
    // Then the warps, through shared memory.
    constexpr int W = kDecodeThreads / 32;
    constexpr int kAccBytes = W * G * D * (int)sizeof(float);
#if EDGELLM_PATH_ARCH < 800
    // Turing allows a block 64 KB of shared memory, static and dynamic together: where the warps' sums would take
    // it past that (an fp32 cache at head dim 256: 32 KB of pipeline slots and 32 KB of sums) they reuse the
    // pipeline's slots, once every thread is past its last read of them.
    constexpr bool kAccInSlots = kAccBytes + decode_smem_bytes<T, D, G>() + 2 * W * G * (int)sizeof(float) > 64 * 1024;
#else
    constexpr bool kAccInSlots = false;
#endif
    static_assert(!kAccInSlots || kAccBytes <= decode_smem_bytes<T, D, G>(), "the slots must hold the sums");
    __shared__ float s_acc_own[kAccInSlots ? 1 : W][kAccInSlots ? 1 : G][kAccInSlots ? 1 : D], s_m[W][G], s_l[W][G];
    float(*s_acc)[G][D] = kAccInSlots ? reinterpret_cast<float(*)[G][D]>(decode_smem)
                                      : reinterpret_cast<float(*)[G][D]>(&s_acc_own[0][0][0]);
    if constexpr (kAccInSlots) __syncthreads();
    if (half == 0) {
#pragma unroll
        for (int h = 0; h < G; ++h) {
            if (lane_on)
#pragma unroll
                for (int e = 0; e < E; ++e) s_acc[warp][h][sub * E + e] = acc[h][e];
            if (sub == 0) {
                s_m[warp][h] = m[h];
                s_l[warp][h] = l[h];
            }
        }
    }
    __syncthreads();
    for (int idx = tid; idx < n_heads_here * D; idx += kDecodeThreads) {
        const int h = idx / D, d = idx % D;
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < W; ++w) mx = fmaxf(mx, s_m[w][h]);
        float out = 0.f, lse = -INFINITY;
        if (mx != -INFINITY) {
            float sum = 0.f, num = 0.f;
#pragma unroll
            for (int w = 0; w < W; ++w) {
                const float wt = exp2f(s_m[w][h] - mx);
                sum += s_l[w][h] * wt;
                num += s_acc[w][h][d] * wt;
            }
            out = num / sum;
            lse = mx + log2f(sum);
        }
        const int head = h0 + h;
        if (direct && p.xq)  // whole warps: one chunk of 32 per warp and iteration (D is a multiple of 32)
            quantize_chunk(out, (int)((((int64_t)b * p.n_heads + head) * D + d) / 32), lane, p.xq, p.xds);
        if (direct) {
            p.o[b * p.ob + (int64_t)head * p.oh + d] = out;
        } else {
            const int64_t row = ((int64_t)b * p.n_heads + head) * num_splits + split;
            part_o[row * D + d] = out;
            if (d == 0) part_lse[row] = lse;
        }
    }
    if (direct) return;
    __shared__ float s_lse[G * EDGELLM_MAX_SPLITS], s_max[G];
    merge_if_last<D, kDecodeThreads>(p, b, h0, n_heads_here, plan.used, num_splits, part_o, part_lse,
                                     counters + (int64_t)b * gridDim.y + blockIdx.y, s_lse, s_max);
}

// The group width G built for a GQA ratio: the smallest that holds the heads of one KV head; wider groups are
// processed in chunks of 8 heads (of 4 at head dim 256, whose rows take twice the registers).
static int group_width(int group, int D) {
    const int g = group <= 1 ? 1 : group <= 2 ? 2 : group <= 4 ? 4 : 8;
    return D > 128 ? std::min(g, 4) : g;
}

template <typename T> struct Type { using type = T; };
template <int N> using Int = std::integral_constant<int, N>;

// Calls f(Type<T>, Int<D>, Int<G>, Bool<cap>) for the kernel instance of this dtype, head dim, group width (from
// group_width) and soft-cap; soft-capped instances exist for fp32 and fp16 caches (the caller refuses bf16 ones).
template <bool B> using Bool = std::integral_constant<bool, B>;
template <typename F>
int with_instance(edgellm_dtype t, int D, int G, bool cap, F &&f) {
    auto by_cap = [&](auto tt, auto dd, auto gg) {
        using T = typename decltype(tt)::type;
        if constexpr (std::is_same<T, __nv_bfloat16>::value) return f(tt, dd, gg, Bool<false>{});
        else return cap ? f(tt, dd, gg, Bool<true>{}) : f(tt, dd, gg, Bool<false>{});
    };
    auto by_g = [&](auto tt, auto dd) {
        switch (G) {
        case 1: return by_cap(tt, dd, Int<1>{});
        case 2: return by_cap(tt, dd, Int<2>{});
        case 4: return by_cap(tt, dd, Int<4>{});
        default:
            if constexpr (decltype(dd)::value > 128) return by_cap(tt, dd, Int<4>{});  // never chosen (group_width)
            else return by_cap(tt, dd, Int<8>{});
        }
    };
    auto by_d = [&](auto tt) {
        switch (D) {
        case 64: return by_g(tt, Int<64>{});
        case 96: return by_g(tt, Int<96>{});
        case 256: return by_g(tt, Int<256>{});
        default: return by_g(tt, Int<128>{});
        }
    };
    switch (t) {
    case EDGELLM_F16: return by_d(Type<__half>{});
    case EDGELLM_BF16: return by_d(Type<__nv_bfloat16>{});
    default: return by_d(Type<float>{});
    }
}

}  // namespace edgellm

using namespace edgellm;

// Counters for at most batch * n_heads head groups, rounded up to keep the partials 16-byte aligned.
static size_t counter_slots(int batch, int n_heads) { return ((size_t)batch * n_heads + 3) / 4 * 4; }

extern "C" size_t edgellm_decode_workspace_bytes(int batch, int n_heads, int head_dim, int num_splits) {
    if (num_splits <= 1) return 0;
    // One arrival counter per (sequence, head group), then partial outputs and log-sum-exps of every split.
    return counter_slots(batch, n_heads) * sizeof(int) + (size_t)batch * n_heads * num_splits * (head_dim + 1) * sizeof(float);
}

static bool decode_args_ok(const edgellm_decode_args *a) {
    return a && a->q && a->k && a->v && a->o && a->batch >= 1 && a->seq_k >= 1 && a->n_heads >= 1 &&
           a->n_kv_heads >= 1 && a->n_heads % a->n_kv_heads == 0 && a->window >= 0 && a->softcap >= 0.f;
}

// Keys one query attends to at most: the whole cache, or the window.
static int attended_rows(const edgellm_decode_args *a) {
    return a->window > 0 ? std::min(a->seq_k, a->window) : a->seq_k;
}

// Split count for the CUDA-core kernel: at most kDecodeBlocksPerSm resident blocks per SM, each streaming its chunk
// with loads in flight (measured on an H200 with kernels/bench: a single wave beats more splits, and chunks shorter
// than 128 keys cost more in merging than they gain in parallelism).
static int cuda_core_splits(const edgellm_decode_args *a, edgellm_dtype kv_dtype) {
    const int G = group_width(a->n_heads / a->n_kv_heads, a->head_dim);
    const int chunks = (a->n_heads / a->n_kv_heads + G - 1) / G;
    // Each instance's occupancy is asked once, like the SM count: the occupancy query alone costs the host about
    // as much as a decode call's GPU time.
    const int sms = multiprocessor_count();
    if (sms == 0) return 1;
    int per_sm = 0, step = 0;
    with_instance(kv_dtype, a->head_dim, G, a->softcap > 0.f, [&](auto tt, auto dd, auto gg, auto cc) {
        using T = typename decltype(tt)::type;
        constexpr int D = decltype(dd)::value, GW = decltype(gg)::value;
        constexpr bool CAP = decltype(cc)::value;
        step = kHalfWarps * keys_per_step<T, D, GW>();
        static int occupancy = -1;  // one per kernel instance
        if (occupancy < 0) {
            auto kernel = decode_split_kernel<T, D, GW, CAP>;
            cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, decode_smem_bytes<T, D, GW>());
            if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occupancy, kernel, kDecodeThreads,
                                                              decode_smem_bytes<T, D, GW>()) != cudaSuccess)
                occupancy = 1;
        }
        per_sm = occupancy;
        return 0;
    });
    const int blocks_per_split = a->batch * a->n_kv_heads * chunks;
    int splits = std::min(std::max(1, per_sm), kDecodeBlocksPerSm) * sms / blocks_per_split;
    splits = std::min(splits, (attended_rows(a) + std::max(128, step) - 1) / std::max(128, step));
    return std::max(1, std::min(splits, EDGELLM_MAX_SPLITS));
}

// The default is the CUDA-core kernel for every KV dtype (exact fp32 arithmetic).  The tensor-core kernel with
// several warps a block reads a 32k fp16 cache about as fast in isolation (H100, kernels/bench: 2476 against
// 2427 GB/s) and made the engine's 8B step at 32k keys 10% shorter (docs/performance.md); the engine takes it with
// EDGELLM_DECODE_ATTENTION=tensor.
static bool uses_tensor_cores(edgellm_dtype kv_dtype, int impl) {
    (void)kv_dtype;
    return impl == 1;
}

static int tc_head_chunks(const edgellm_decode_args *a) {
    return (a->n_heads / a->n_kv_heads + kTcRows - 1) / kTcRows;
}

// impl: -1 the default (CUDA cores), 0 CUDA cores, 1 tensor cores (fp16/bf16 caches).
static int splits_for(const edgellm_decode_args *a, edgellm_dtype kv_dtype, int impl) {
    if (!decode_args_ok(a)) return 1;
    if (uses_tensor_cores(kv_dtype, impl))
        return decode_tc_splits(kv_dtype, a->head_dim, a->batch, a->n_kv_heads, tc_head_chunks(a), attended_rows(a),
                                a->softcap > 0.f);
    return cuda_core_splits(a, kv_dtype);
}

extern "C" int edgellm_decode_splits(const edgellm_decode_args *a, edgellm_dtype kv_dtype) {
    return splits_for(a, kv_dtype, -1);
}

static int decode(const edgellm_decode_args *a, edgellm_dtype kv_dtype, int num_splits, void *workspace,
                  size_t workspace_bytes, int impl, void *stream, const int *pos = nullptr, void *xq = nullptr,
                  void *xds = nullptr) {
    if (!decode_args_ok(a)) return EDGELLM_ERR_ARGUMENT;
    if (a->head_dim != 64 && a->head_dim != 96 && a->head_dim != 128 && a->head_dim != 256)
        return EDGELLM_ERR_UNSUPPORTED;
    if (kv_dtype != EDGELLM_F32 && kv_dtype != EDGELLM_F16 && kv_dtype != EDGELLM_BF16) return EDGELLM_ERR_UNSUPPORTED;
    const bool tc = uses_tensor_cores(kv_dtype, impl);
    if (tc && kv_dtype == EDGELLM_F32) return EDGELLM_ERR_UNSUPPORTED;
    if (a->softcap > 0.f && kv_dtype == EDGELLM_BF16) return EDGELLM_ERR_UNSUPPORTED;
    // The tensor-core kernel reads Q as float4.
    if (tc && (reinterpret_cast<uintptr_t>(a->q) % 16 || a->q_layout.batch_stride % 4 || a->q_layout.head_stride % 4))
        return EDGELLM_ERR_ARGUMENT;
    if (num_splits <= 0) num_splits = splits_for(a, kv_dtype, impl);
    if (num_splits > EDGELLM_MAX_SPLITS) return EDGELLM_ERR_ARGUMENT;
    // Rows are read with 8- or 16-byte accesses (16-byte cp.async on tensor cores).
    const edgellm_layout *kl[2] = {&a->k_layout, &a->v_layout};
    for (auto *l : kl)
        if (l->batch_stride % 8 || l->row_stride % 8 || l->head_stride % 8) return EDGELLM_ERR_ARGUMENT;
    if (reinterpret_cast<uintptr_t>(a->k) % 16 || reinterpret_cast<uintptr_t>(a->v) % 16) return EDGELLM_ERR_ARGUMENT;
    const size_t need = edgellm_decode_workspace_bytes(a->batch, a->n_heads, a->head_dim, num_splits);
    if (need > 0 && (!workspace || workspace_bytes < need)) return EDGELLM_ERR_WORKSPACE;
    // Workspace: the arrival counters first (the same place whatever num_splits), then the partials.
    int *counters = static_cast<int *>(workspace);
    float *part_o = counters ? reinterpret_cast<float *>(counters + counter_slots(a->batch, a->n_heads)) : nullptr;
    float *part_lse = part_o ? part_o + (size_t)a->batch * a->n_heads * num_splits * a->head_dim : nullptr;

    DecodeParams p;
    p.q = a->q, p.k = a->k, p.v = a->v, p.o = a->o;
    p.qb = a->q_layout.batch_stride, p.qh = a->q_layout.head_stride;
    p.kb = a->k_layout.batch_stride, p.kr = a->k_layout.row_stride, p.kh = a->k_layout.head_stride;
    p.vb = a->v_layout.batch_stride, p.vr = a->v_layout.row_stride, p.vh = a->v_layout.head_stride;
    p.ob = a->o_layout.batch_stride, p.oh = a->o_layout.head_stride;
    p.seq_k = a->seq_k, p.n_heads = a->n_heads, p.group = a->n_heads / a->n_kv_heads;
    p.scale_log2 = a->softmax_scale * 1.4426950408889634f;
    p.pos = pos;
    p.xq = static_cast<int8_t *>(xq), p.xds = static_cast<float2 *>(xds);
    p.window = a->window;
    p.softcap_log2 = a->softcap * 1.4426950408889634f;
    p.inv_softcap_log2 = a->softcap > 0.f ? 1.f / p.softcap_log2 : 0.f;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (tc) {
        p.head_chunks = tc_head_chunks(a);
        return launch_decode_tc(p, kv_dtype, a->head_dim, a->batch, a->n_kv_heads, num_splits, part_o, part_lse,
                                counters, attended_rows(a), s);
    }
    const int G = group_width(p.group, a->head_dim);
    p.head_chunks = (p.group + G - 1) / G;

    return with_instance(kv_dtype, a->head_dim, G, a->softcap > 0.f, [&](auto tt, auto dd, auto gg, auto cc) {
        using T = typename decltype(tt)::type;
        constexpr int D = decltype(dd)::value, GW = decltype(gg)::value;
        constexpr bool CAP = decltype(cc)::value;
        // Splits cover whole steps of keys so that no block gets a sliver.
        constexpr int STEP = kHalfWarps * keys_per_step<T, D, GW>();
        int split_len = (attended_rows(a) + num_splits - 1) / num_splits;
        split_len = (split_len + STEP - 1) / STEP * STEP;
        dim3 grid(num_splits, a->n_kv_heads * p.head_chunks, a->batch);
        constexpr int smem = decode_smem_bytes<T, D, GW>();
        static bool configured = false;  // over 48 KB of dynamic shared memory needs the opt-in, once per kernel
        if (!configured) {
            cudaError_t err = cudaFuncSetAttribute(decode_split_kernel<T, D, GW, CAP>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
            if (err != cudaSuccess) {
                set_cuda_error(err);
                return (int)EDGELLM_ERR_CUDA;
            }
            configured = true;
        }
        launch_chained(decode_split_kernel<T, D, GW, CAP>, grid, kDecodeThreads, smem, s, p, num_splits, split_len,
                       part_o,
                       part_lse, counters);
        return check_launch();
    });
}

extern "C" int edgellm_attention_decode(const edgellm_decode_args *a, edgellm_dtype kv_dtype, int num_splits,
                                        void *workspace, size_t workspace_bytes, void *stream) {
    return decode(a, kv_dtype, num_splits, workspace, workspace_bytes, -1, stream);
}

// Either implementation, for the accuracy test and the benchmark (not part of the public header): impl 0 = CUDA
// cores (exact fp32 arithmetic, any KV dtype), 1 = tensor cores (fp16/bf16 KV).  num_splits <= 0: that
// implementation's own default.
extern "C" int edgellm_attention_decode_impl(const edgellm_decode_args *a, edgellm_dtype kv_dtype, int num_splits,
                                             void *workspace, size_t workspace_bytes, int impl, void *stream) {
    if (impl != 0 && impl != 1) return EDGELLM_ERR_ARGUMENT;
    return decode(a, kv_dtype, num_splits, workspace, workspace_bytes, impl, stream);
}

extern "C" int edgellm_decode_splits_impl(const edgellm_decode_args *a, edgellm_dtype kv_dtype, int impl) {
    return splits_for(a, kv_dtype, impl);
}

static int decode_at(const edgellm_decode_args *a, edgellm_dtype kv_dtype, const int *pos, int num_splits,
                     void *workspace, size_t workspace_bytes, void *xq, void *xds, int impl, void *stream) {
    if (!pos || num_splits <= 0 || !xq != !xds) return EDGELLM_ERR_ARGUMENT;
    // The quantized output is [batch, n_heads * head_dim] like o's contiguous layout, 4 values per lane.
    if (xq && (reinterpret_cast<uintptr_t>(xq) % 16 || reinterpret_cast<uintptr_t>(xds) % 8)) return EDGELLM_ERR_ARGUMENT;
    return decode(a, kv_dtype, num_splits, workspace, workspace_bytes, impl, stream, pos, xq, xds);
}

extern "C" int edgellm_attention_decode_at(const edgellm_decode_args *a, edgellm_dtype kv_dtype, const int *pos,
                                           int num_splits, void *workspace, size_t workspace_bytes, void *xq,
                                           void *xds, void *stream) {
    return decode_at(a, kv_dtype, pos, num_splits, workspace, workspace_bytes, xq, xds, 0, stream);
}

// The device-position decode on either implementation (impl as for edgellm_attention_decode_impl), for the engine's
// choice of kernel (EDGELLM_DECODE_ATTENTION) and the accuracy test.
extern "C" int edgellm_attention_decode_at_impl(const edgellm_decode_args *a, edgellm_dtype kv_dtype, const int *pos,
                                                int num_splits, void *workspace, size_t workspace_bytes, void *xq,
                                                void *xds, int impl, void *stream) {
    if (impl != 0 && impl != 1) return EDGELLM_ERR_ARGUMENT;
    return decode_at(a, kv_dtype, pos, num_splits, workspace, workspace_bytes, xq, xds, impl, stream);
}
