// Attention kernel benchmark: prefill TFLOP/s and decode KV-read bandwidth, against the naive three-pass attention
// and the card's device-to-device copy bandwidth.  One CSV row per measurement (median of repeated timings).
//
//   attention_bench [--csv PATH] [--quick]
//
// Causal prefill FLOPs are counted as 4 * seq^2 * head_dim * n_heads / 2 (the convention of FlashAttention's own
// benchmarks and of the SDPA numbers compared against).  Decode bandwidth is the K and V bytes read per call over its
// time; every timing cycles through enough copies of the inputs to defeat the L2 cache.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "../tests/common_host.cuh"
#include "../tests/reference_attention.cuh"

extern "C" int edgellm_attention_prefill_variant(const edgellm_prefill_args *a, edgellm_dtype dtype, int warps,
                                                 void *stream);
extern "C" int edgellm_attention_decode_impl(const edgellm_decode_args *a, edgellm_dtype kv_dtype, int num_splits,
                                             void *workspace, size_t workspace_bytes, int impl, void *stream);
extern "C" int edgellm_decode_splits_impl(const edgellm_decode_args *a, edgellm_dtype kv_dtype, int impl);

// Median time in microseconds of `calls` back-to-back calls of fn(i), over `reps` repetitions, after a warm-up.
static double median_us(const std::function<void(int)> &fn, int calls, int reps) {
    cudaEvent_t a, b;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    for (int i = 0; i < calls; ++i) fn(i);
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
        CUDA_CHECK(cudaEventRecord(a));
        for (int i = 0; i < calls; ++i) fn(r * calls + i);
        CUDA_CHECK(cudaEventRecord(b));
        CUDA_CHECK(cudaEventSynchronize(b));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(1e3 * ms / calls);
    }
    CUDA_CHECK(cudaGetLastError());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

struct Csv {
    FILE *f;
    explicit Csv(FILE *out) : f(out) {
        std::fprintf(f, "kind,impl,dtype,head_dim,n_heads,n_kv_heads,seq_q,seq_k,splits,time_us,tflops,gbytes_s\n");
    }
    void row(const char *kind, const std::string &impl, const char *dtype, int D, int H, int KVH, int sq, int sk,
             int splits, double us, double tflops, double gbs) {
        std::fprintf(f, "%s,%s,%s,%d,%d,%d,%d,%d,%d,%.3f,%.3f,%.3f\n", kind, impl.c_str(), dtype, D, H, KVH, sq, sk,
                     splits, us, tflops, gbs);
        std::fflush(f);
        std::fprintf(stderr, "%-7s %-12s %-4s D=%-3d H=%-2d KVH=%-2d seq=%-6d splits=%-3d %10.2f us %7.1f TFLOP/s %7.0f GB/s\n",
                     kind, impl.c_str(), dtype, D, H, KVH, sk, splits, us, tflops, gbs);
    }
};

static void copy_bandwidth(Csv &csv) {
    const size_t bytes = size_t(1) << 30;
    DeviceBuffer a(bytes), b(bytes);
    CUDA_CHECK(cudaMemset(a.ptr, 1, bytes));
    const double us = median_us([&](int) { CUDA_CHECK(cudaMemcpyAsync(b.ptr, a.ptr, bytes, cudaMemcpyDeviceToDevice)); }, 5, 7);
    csv.row("copy", "cudaMemcpy", "-", 0, 0, 0, 0, 0, 0, us, 0, 2.0 * bytes / us * 1e-3);  // read + write
}

static void prefill(Csv &csv, edgellm_dtype t, int D, int H, int KVH, int S, bool naive) {
    const size_t nq = (size_t)S * H * D, nkv = (size_t)S * KVH * D, es = dtype_size(t);
    DeviceBuffer q(nq * es), k(nkv * es), v(nkv * es), o(nq * es);
    fill_uniform(q.ptr, t, nq, 1, 1.f);
    fill_uniform(k.ptr, t, nkv, 2, 1.f);
    fill_uniform(v.ptr, t, nkv, 3, 1.f);
    edgellm_prefill_args a{};
    a.q = q.ptr, a.k = k.ptr, a.v = v.ptr, a.o = o.ptr;
    a.q_layout = a.o_layout = contiguous_layout(S, H, D);
    a.k_layout = a.v_layout = contiguous_layout(S, KVH, D);
    a.batch = 1, a.seq_q = S, a.seq_k = S, a.n_heads = H, a.n_kv_heads = KVH, a.head_dim = D;
    a.softmax_scale = 1.f / std::sqrt((float)D), a.causal = 1;
    const double flops = 4.0 * S * (double)S * D * H / 2;
    const int reps = S <= 2048 ? 20 : 7, calls = S <= 2048 ? 10 : 3;
    for (int warps : {4, 8}) {
        const double us = median_us([&](int) { EDGELLM_CHECK(edgellm_attention_prefill_variant(&a, t, warps, nullptr)); }, calls, reps);
        csv.row("prefill", "edgellm-w" + std::to_string(warps), dtype_name(t), D, H, KVH, S, S, 0, us, flops / us * 1e-6, 0);
    }
    const double us = median_us([&](int) { EDGELLM_CHECK(edgellm_attention_prefill(&a, t, nullptr)); }, calls, reps);
    csv.row("prefill", "edgellm", dtype_name(t), D, H, KVH, S, S, 0, us, flops / us * 1e-6, 0);
    if (naive && t == EDGELLM_F16) {
        // Scores materialised in fp32 per head, softmax, P.V: what attention costs without tiling.
        DeviceBuffer Sbuf((size_t)S * S * 4);
        auto run = [&](int) {
            for (int h = 0; h < H; ++h)
                edgellm_ref::attention_one_head<__half, __half, float, __half>(
                    q.as<__half>() + h * D, (int64_t)H * D, k.as<__half>() + (h / (H / KVH)) * D, (int64_t)KVH * D,
                    v.as<__half>() + (h / (H / KVH)) * D, (int64_t)KVH * D, o.as<__half>() + h * D, (int64_t)H * D,
                    Sbuf.as<float>(), S, S, D, 1.0 / std::sqrt((double)D), 1, nullptr);
            CUDA_CHECK(cudaGetLastError());
        };
        const double nus = median_us(run, 1, 3);
        csv.row("prefill", "naive", dtype_name(t), D, H, KVH, S, S, 0, nus, flops / nus * 1e-6, 0);
    }
}

static void decode(Csv &csv, edgellm_dtype t, int D, int H, int KVH, int S, const std::vector<int> &splits,
                   const std::vector<int> &tc_splits = {0}) {
    const size_t nkv = (size_t)S * KVH * D, es = dtype_size(t), kv_bytes = 2 * nkv * es;
    // Enough copies of the cache that consecutive calls never find it in L2.
    const int copies = (int)std::min<size_t>(64, std::max<size_t>(2, ((size_t)512 << 20) / kv_bytes + 1));
    DeviceBuffer k(nkv * es * copies), v(nkv * es * copies), q((size_t)H * D * 4), o((size_t)H * D * 4);
    fill_uniform(k.ptr, t, nkv * copies, 5, 1.f);
    fill_uniform(v.ptr, t, nkv * copies, 6, 1.f);
    fill_uniform(q.ptr, EDGELLM_F32, (size_t)H * D, 7, 1.f);
    DeviceBuffer ws(edgellm_decode_workspace_bytes(1, H, D, EDGELLM_MAX_SPLITS));
    CUDA_CHECK(cudaMemset(ws.ptr, 0, ws.bytes));
    edgellm_decode_args a{};
    a.q = q.as<float>(), a.o = o.as<float>();
    a.q_layout = a.o_layout = contiguous_layout(1, H, D);
    a.k_layout = a.v_layout = contiguous_layout(S, KVH, D);
    a.batch = 1, a.seq_k = S, a.n_heads = H, a.n_kv_heads = KVH, a.head_dim = D, a.softmax_scale = 1.f / std::sqrt((float)D);
    // The default implementation at its default split count and at fixed ones, then the other implementation.
    struct Variant { const char *name; int impl; int splits; };
    std::vector<Variant> variants;
    for (int s : splits) variants.push_back({s > 0 ? "edgellm-fixed" : "edgellm", -1, s});
    if (t != EDGELLM_F32)
        for (int s : tc_splits) variants.push_back({s > 0 ? "edgellm-tensorcores-fixed" : "edgellm-tensorcores", 1, s});
    for (const Variant &var : variants) {
        auto run = [&](int i) {
            const size_t off = (size_t)(i % copies) * nkv * es;
            a.k = k.as<char>() + off, a.v = v.as<char>() + off;
            if (var.impl < 0) EDGELLM_CHECK(edgellm_attention_decode(&a, t, var.splits, ws.ptr, ws.bytes, nullptr));
            else EDGELLM_CHECK(edgellm_attention_decode_impl(&a, t, var.splits, ws.ptr, ws.bytes, var.impl, nullptr));
        };
        const double us = median_us(run, 50, 15);
        const int used = var.splits > 0 ? var.splits
                         : var.impl < 0 ? edgellm_decode_splits(&a, t) : edgellm_decode_splits_impl(&a, t, var.impl);
        csv.row("decode", var.name, dtype_name(t), D, H, KVH, 1, S, used, us, 0, kv_bytes / us * 1e-3);
    }
}

int main(int argc, char **argv) {
    const char *path = nullptr;
    bool quick = false;
    int decode_only = 0;  // --decode S: only the fp16 decode of the Llama shape over S keys (for a profiler)
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--csv") && i + 1 < argc) path = argv[++i];
        else if (!std::strcmp(argv[i], "--quick")) quick = true;
        else if (!std::strcmp(argv[i], "--decode") && i + 1 < argc && std::atoi(argv[i + 1]) > 0) decode_only = std::atoi(argv[++i]);
        else {
            std::fprintf(stderr, "usage: %s [--csv PATH] [--quick] [--decode SEQ]\n", argv[0]);
            return 2;
        }
    }
    FILE *out = path ? std::fopen(path, "w") : stdout;
    if (!out) {
        std::fprintf(stderr, "error: cannot write %s\n", path);
        return 2;
    }
    Csv csv(out);
    copy_bandwidth(csv);
    if (decode_only) {
        decode(csv, EDGELLM_F16, 128, 32, 8, decode_only, {0, 16, 33, 48, 66, 99, 132}, {0, 16, 33, 66, 132, 256});
        if (path) std::fclose(out);
        return 0;
    }
    const std::vector<int> seqs = quick ? std::vector<int>{1024, 8192} : std::vector<int>{512, 1024, 2048, 4096, 8192, 16384};
    for (edgellm_dtype t : {EDGELLM_F16, EDGELLM_BF16})
        for (int S : seqs) {
            prefill(csv, t, 128, 32, 8, S, S <= 8192);  // Llama 3 8B / 3.2 1B attention shape
            prefill(csv, t, 64, 9, 3, S, S <= 8192);    // SmolLM2 135M
        }
    const std::vector<int> dseqs = quick ? std::vector<int>{1024, 16384}
                                         : std::vector<int>{512, 1024, 2048, 4096, 8192, 16384, 32768, 65536};
    for (edgellm_dtype t : {EDGELLM_F16, EDGELLM_BF16, EDGELLM_F32})
        for (int S : dseqs) {
            std::vector<int> splits = {0};
            if (t == EDGELLM_F16 && (S == 16384 || S == 1024))
                for (int s : {1, 16, 32, 64, 128, 256}) splits.push_back(s);
            decode(csv, t, 128, 32, 8, S, splits);
            if (t == EDGELLM_F16) decode(csv, t, 64, 9, 3, S, {0});
        }
    if (path) std::fclose(out);
    return 0;
}
