// The decoder's small operations (see edgellm_ops.h); each is memory-bound and simple, one launch per call.
#include "attention_common.cuh"
#include "dequant_element.cuh"
#include "edgellm_ops.h"

namespace edgellm {

// kNormThreads threads (edgellm_rmsnorm_quantize sums the same way).
__global__ void rmsnorm_kernel(const float *x, const float *w, float *out, int n, float eps) {
    __shared__ float scratch[32];
    const float *xr = x + (int64_t)blockIdx.x * n;
    const float scale = row_rms_scale(xr, n, eps, scratch);
    float *orow = out + (int64_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) orow[i] = xr[i] * scale * w[i];
}

// The rotation of pair i of a head at position `position` (rope_cos_sin, rope_apply); returns the pair's two indices
// in the head and the rotated values.
struct Rotated {
    int a, b;
    float xa, xb;
};
__device__ __forceinline__ Rotated rotate(const float *xh, int i, int D, int position, float base,
                                          const float *factors, int neox, float attn_factor) {
    const int a = neox ? i : 2 * i, b = neox ? i + D / 2 : 2 * i + 1;
    const float2 r = rope_apply(xh[a], xh[b], rope_cos_sin(i, D, position, base, factors, attn_factor));
    return Rotated{a, b, r.x, r.y};
}

__global__ void rope_kernel(float *x, int rows, int heads, int D, int64_t row_stride, const int *pos, float base,
                            const float *factors, int neox, float attn_factor) {
    const int half = D / 2;
    const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (idx >= (int64_t)rows * heads * half) return;
    const int i = idx % half, h = (idx / half) % heads, t = idx / ((int64_t)half * heads);
    float *xh = x + t * row_stride + (int64_t)h * D;
    const Rotated r = rotate(xh, i, D, *pos + t, base, factors, neox, attn_factor);
    xh[r.a] = r.xa;
    xh[r.b] = r.xb;
}

// Threads [0, q pairs) rotate q, the next kv pairs rotate k into the cache, the next kv pairs copy v.
__global__ void rope_append_kernel(float *q, const float *k, const float *v, __half *kc, __half *vc, int n_heads,
                                   int n_kv, int D, const int *pos, float base, const float *factors, int neox,
                                   float attn_factor) {
    chained_start();
    const int half = D / 2, q_pairs = n_heads * half, kv_pairs = n_kv * half;
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    const int p = *pos;
    const int64_t row = (int64_t)p * n_kv * D;
    if (idx < q_pairs) {
        float *xh = q + (idx / half) * D;
        const Rotated r = rotate(xh, idx % half, D, p, base, factors, neox, attn_factor);
        xh[r.a] = r.xa;
        xh[r.b] = r.xb;
    } else if (idx < q_pairs + kv_pairs) {
        const int j = idx - q_pairs, h = j / half;
        const Rotated r = rotate(k + h * D, j % half, D, p, base, factors, neox, attn_factor);
        kc[row + h * D + r.a] = __float2half_rn(r.xa);
        kc[row + h * D + r.b] = __float2half_rn(r.xb);
    } else if (idx < q_pairs + 2 * kv_pairs) {
        const int j = 2 * (idx - q_pairs - kv_pairs);
        vc[row + j] = __float2half_rn(v[j]);
        vc[row + j + 1] = __float2half_rn(v[j + 1]);
    }
}

__global__ void rope_table_kernel(const int *pos, int D, float base, const float *factors, float attn_factor,
                                  float2 *table) {
    chained_start();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < D / 2) table[i] = rope_cos_sin(i, D, *pos, base, factors, attn_factor);
}

__global__ void swiglu_kernel(const float *gate_up, float *out, int rows, int hidden) {
    const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (idx >= (int64_t)rows * hidden) return;
    const int64_t r = idx / hidden, i = idx % hidden;
    const float g = gate_up[r * 2 * hidden + i], u = gate_up[r * 2 * hidden + hidden + i];
    out[idx] = g / (1.f + expf(-g)) * u;
}

// GELU with tanh's approximation (gemma's gelu_pytorch_tanh) times up, in double as the CPU engine computes it,
// rounded to float once before the product with up.
__device__ __forceinline__ float geglu_value(float g, float u) {
    const double gd = g, inner = 0.7978845608028654 * (gd + 0.044715 * gd * gd * gd);
    return (float)(0.5 * gd * (1.0 + tanh(inner))) * u;
}

__global__ void geglu_kernel(const float *gate_up, float *out, int rows, int hidden) {
    chained_start();
    const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (idx >= (int64_t)rows * hidden) return;
    const int64_t r = idx / hidden, i = idx % hidden;
    out[idx] = geglu_value(gate_up[r * 2 * hidden + i], gate_up[r * 2 * hidden + hidden + i]);
}

// x[r] += rmsnorm(y[r]) * w (gemma's norm of a block's output before the residual): the sums of rmsnorm_kernel.
__global__ void rmsnorm_add_kernel(float *x, const float *y, const float *w, int n, float eps) {
    chained_start();
    __shared__ float scratch[32];
    const float *yr = y + (int64_t)blockIdx.x * n;
    const float scale = row_rms_scale(yr, n, eps, scratch);
    float *xr = x + (int64_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) xr[i] += yr[i] * scale * w[i];
}

// Each head of x [rows, heads, D] (row stride in floats) normed in place with weight [D] (gemma3's q and k norms):
// one warp per (row, head).
__global__ void rmsnorm_heads_kernel(float *x, int rows, int heads, int D, int64_t row_stride, const float *w,
                                     float eps) {
    chained_start();
    const int64_t item = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (item >= (int64_t)rows * heads) return;  // whole warps leave together
    float *xh = x + (item / heads) * row_stride + (item % heads) * (int64_t)D;
    float ss = 0.f;
    for (int i = lane; i < D; i += 32) ss = fmaf(xh[i], xh[i], ss);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    const float scale = rsqrtf(ss / D + eps);
    for (int i = lane; i < D; i += 32) xh[i] = xh[i] * scale * w[i];
}

// x = cap * tanh(x / cap) (gemma2's final logits), or x * s for scale_kernel (gemma's embedding scale).
__global__ void softcap_kernel(float *x, int64_t n, float cap) {
    chained_start();
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) x[i] = cap * tanhf(x[i] / cap);
}

__global__ void scale_kernel(float *x, int64_t n, float s) {
    chained_start();
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s;
}

__global__ void add_kernel(float *x, const float *y, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) x[i] += y[i];
}

// pos, when given, is advanced by the thread that writes the choice (the last kernel of a decode step).
__global__ void argmax_kernel(const float *logits, int n, int *out, int *pos) {
    chained_start();
    __shared__ float best_v[32];
    __shared__ int best_i[32];
    float v = -INFINITY;
    int bi = n;  // past the end: loses every tie against a real index
    // Each thread sees its indices in increasing order, so `>` keeps the first of equal values.  The loads of a round
    // are all issued before the first comparison: with one load in flight at a time a large vocabulary's argmax
    // waits on memory latency for every element, a visible share of a whole decode step.
    const auto consider = [&](float x, int i) {
        if (x > v) v = x, bi = i;
    };
    int tail = 0;
    if (reinterpret_cast<uintptr_t>(logits) % 16 == 0) {
        constexpr int kLoads = 8;
        const float4 *l4 = reinterpret_cast<const float4 *>(logits);
        const int n4 = n / 4;
        for (int base = threadIdx.x; base < n4; base += kLoads * blockDim.x) {
            float4 c[kLoads];
#pragma unroll
            for (int u = 0; u < kLoads; ++u) {
                const int j = base + u * blockDim.x;
                c[u] = j < n4 ? l4[j] : make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
            }
#pragma unroll
            for (int u = 0; u < kLoads; ++u) {
                const int i = 4 * (base + u * blockDim.x);
                consider(c[u].x, i), consider(c[u].y, i + 1), consider(c[u].z, i + 2), consider(c[u].w, i + 3);
            }
        }
        tail = 4 * n4;
    }
    for (int i = tail + threadIdx.x; i < n; i += blockDim.x) consider(logits[i], i);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, off);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, off);
        if (ov > v || (ov == v && oi < bi)) v = ov, bi = oi;
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) best_v[warp] = v, best_i[warp] = bi;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x >> 5) ? best_v[lane] : -INFINITY;
        bi = lane < (int)(blockDim.x >> 5) ? best_i[lane] : n;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, v, off);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, off);
            if (ov > v || (ov == v && oi < bi)) v = ov, bi = oi;
        }
        if (lane == 0) {
            *out = bi < n ? bi : 0;  // all NaN: token 0, never an index past the vocabulary
            if (pos) *pos += 1;
        }
    }
}


__global__ void embed_kernel(edgellm_qmatrix m, const int *token, float *out) {
    chained_start();
    const int64_t r = *token;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < m.cols; c += gridDim.x * blockDim.x)
        out[c] = dequant_at(m, r, c);
}

__global__ void kv_append_kernel(const float *src, __half *cache, int rows, int width, int64_t stride, const int *pos) {
    const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (idx >= (int64_t)rows * width) return;
    const int64_t t = idx / width, i = idx % width;
    cache[(*pos + t) * stride + i] = __float2half_rn(src[idx]);
}

inline unsigned blocks_for(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

}  // namespace edgellm

using namespace edgellm;

extern "C" int edgellm_rmsnorm(const float *x, const float *w, float *out, int rows, int n, float eps, void *stream) {
    if (!x || !w || !out || rows <= 0 || n <= 0) return EDGELLM_ERR_ARGUMENT;
    rmsnorm_kernel<<<rows, kNormThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, w, out, n, eps);
    return check_launch();
}

extern "C" int edgellm_rope(float *x, int rows, int heads, int head_dim, int64_t row_stride, const int *pos, float base,
                            const float *factors, int neox, float attn_factor, void *stream) {
    if (!x || !pos || rows <= 0 || heads <= 0 || head_dim <= 0 || head_dim % 2 || row_stride < (int64_t)heads * head_dim)
        return EDGELLM_ERR_ARGUMENT;
    const int64_t n = (int64_t)rows * heads * (head_dim / 2);
    rope_kernel<<<blocks_for(n, 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(x, rows, heads, head_dim, row_stride,
                                                                                  pos, base, factors, neox,
                                                                                  attn_factor);
    return check_launch();
}

extern "C" int edgellm_swiglu(const float *gate_up, float *out, int rows, int hidden, void *stream) {
    if (!gate_up || !out || rows <= 0 || hidden <= 0) return EDGELLM_ERR_ARGUMENT;
    swiglu_kernel<<<blocks_for((int64_t)rows * hidden, 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(gate_up, out,
                                                                                                      rows, hidden);
    return check_launch();
}

extern "C" int edgellm_add(float *x, const float *y, int64_t n, void *stream) {
    if (!x || !y || n <= 0) return EDGELLM_ERR_ARGUMENT;
    add_kernel<<<blocks_for(n, 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(x, y, n);
    return check_launch();
}

extern "C" int edgellm_argmax(const float *logits, int n, int *out, void *stream) {
    if (!logits || !out || n <= 0) return EDGELLM_ERR_ARGUMENT;
    launch_chained(argmax_kernel, 1, 1024, 0, static_cast<cudaStream_t>(stream), logits, n, out, nullptr);
    return check_launch();
}

extern "C" int edgellm_embed(const edgellm_qmatrix *m, const int *token, float *out, void *stream) {
    if (!m || !m->qs || !token || !out || m->cols <= 0) return EDGELLM_ERR_ARGUMENT;
    const int q = m->qtype;
    if (q != 0 && q != 1 && q != EDGELLM_Q4_0 && q != EDGELLM_Q4_1 && q != EDGELLM_Q5_0 && q != EDGELLM_Q8_0 &&
        q != EDGELLM_Q4_K && q != EDGELLM_Q6_K)
        return EDGELLM_ERR_UNSUPPORTED;
    if (q > 1 && !m->d) return EDGELLM_ERR_ARGUMENT;
    if ((q == EDGELLM_Q4_K || q == EDGELLM_Q6_K) && (!m->scales || m->cols % 256)) return EDGELLM_ERR_ARGUMENT;
    if ((q == EDGELLM_Q6_K || q == EDGELLM_Q5_0) && !m->qh) return EDGELLM_ERR_ARGUMENT;
    launch_chained(embed_kernel, blocks_for(m->cols, 256), 256, 0, static_cast<cudaStream_t>(stream), *m, token, out);
    return check_launch();
}

extern "C" int edgellm_kv_append(const float *src, void *cache, int rows, int width, int64_t stride, const int *pos,
                                 void *stream) {
    if (!src || !cache || !pos || rows <= 0 || width <= 0 || stride < width) return EDGELLM_ERR_ARGUMENT;
    kv_append_kernel<<<blocks_for((int64_t)rows * width, 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        src, static_cast<__half *>(cache), rows, width, stride, pos);
    return check_launch();
}

extern "C" int edgellm_argmax_advance(const float *logits, int n, int *out, int *pos, void *stream) {
    if (!logits || !out || !pos || n <= 0) return EDGELLM_ERR_ARGUMENT;
    launch_chained(argmax_kernel, 1, 1024, 0, static_cast<cudaStream_t>(stream), logits, n, out, pos);
    return check_launch();
}

extern "C" int edgellm_rope_append(float *q, const float *k, const float *v, void *k_cache, void *v_cache, int n_heads,
                                   int n_kv_heads, int head_dim, const int *pos, float base, const float *freq_factors,
                                   int neox, float attn_factor, void *stream) {
    if (!q || !k || !v || !k_cache || !v_cache || !pos || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 ||
        head_dim % 2)
        return EDGELLM_ERR_ARGUMENT;
    const int threads = (n_heads + 2 * n_kv_heads) * (head_dim / 2);
    launch_chained(rope_append_kernel, blocks_for(threads, 256), 256, 0, static_cast<cudaStream_t>(stream), q, k, v,
                   static_cast<__half *>(k_cache), static_cast<__half *>(v_cache), n_heads, n_kv_heads, head_dim, pos,
                   base, freq_factors, neox, attn_factor);
    return check_launch();
}

extern "C" int edgellm_rope_table(const int *pos, int head_dim, float base, const float *freq_factors,
                                  float attn_factor, void *table, void *stream) {
    if (!pos || !table || head_dim <= 0 || head_dim % 2 || reinterpret_cast<uintptr_t>(table) % 8)
        return EDGELLM_ERR_ARGUMENT;
    launch_chained(rope_table_kernel, blocks_for(head_dim / 2, 128), 128, 0, static_cast<cudaStream_t>(stream), pos,
                   head_dim, base, freq_factors, attn_factor, static_cast<float2 *>(table));
    return check_launch();
}

extern "C" int edgellm_geglu(const float *gate_up, float *out, int rows, int hidden, void *stream) {
    if (!gate_up || !out || rows <= 0 || hidden <= 0) return EDGELLM_ERR_ARGUMENT;
    launch_chained(geglu_kernel, blocks_for((int64_t)rows * hidden, 256), 256, 0, static_cast<cudaStream_t>(stream),
                   gate_up, out, rows, hidden);
    return check_launch();
}

extern "C" int edgellm_rmsnorm_add(float *x, const float *y, const float *w, int rows, int n, float eps,
                                   void *stream) {
    if (!x || !y || !w || rows <= 0 || n <= 0) return EDGELLM_ERR_ARGUMENT;
    launch_chained(rmsnorm_add_kernel, rows, kNormThreads, 0, static_cast<cudaStream_t>(stream), x, y, w, n, eps);
    return check_launch();
}

extern "C" int edgellm_rmsnorm_heads(float *x, int rows, int heads, int head_dim, int64_t row_stride, const float *w,
                                     float eps, void *stream) {
    if (!x || !w || rows <= 0 || heads <= 0 || head_dim <= 0 || row_stride < (int64_t)heads * head_dim)
        return EDGELLM_ERR_ARGUMENT;
    constexpr int kWarpsPerBlock = 8;
    launch_chained(rmsnorm_heads_kernel, blocks_for((int64_t)rows * heads, kWarpsPerBlock), 32 * kWarpsPerBlock, 0,
                   static_cast<cudaStream_t>(stream), x, rows, heads, head_dim, row_stride, w, eps);
    return check_launch();
}

extern "C" int edgellm_softcap(float *x, int64_t n, float cap, void *stream) {
    if (!x || n <= 0 || !(cap > 0.f)) return EDGELLM_ERR_ARGUMENT;
    launch_chained(softcap_kernel, blocks_for(n, 256), 256, 0, static_cast<cudaStream_t>(stream), x, n, cap);
    return check_launch();
}

extern "C" int edgellm_scale(float *x, int64_t n, float s, void *stream) {
    if (!x || n <= 0) return EDGELLM_ERR_ARGUMENT;
    launch_chained(scale_kernel, blocks_for(n, 256), 256, 0, static_cast<cudaStream_t>(stream), x, n, s);
    return check_launch();
}
