// Accuracy gate of the attention kernels against a float64 reference on the same (rounded) inputs.
//
//   attention_accuracy [--quick | --sanitize] [--csv PATH]
//
// fp32 arithmetic (prefill's fp32 path, and decode on CUDA cores for every KV dtype) within 1e-5 absolute;
// tensor-core paths with fp16 inputs within 2e-3 relative (max |error| / max |reference|), with bf16,
// whose 8-bit mantissa rounds P and the output at 2^-9, within 1e-2 relative.  Decode at every split count from 1
// to min(seq_k, 256), and at its default; the graph-replay entry point (cache length on the device) at several split
// counts, with its quantized output required to equal, bit for bit, the quantization of its float output.
// --quick keeps short sequences (every code path: partial tiles, masks, several tiles, splits); --sanitize is a
// smaller set still covering every kernel instance and code path, for compute-sanitizer's slow tools.
// Head dims 96 and 256 (phi3, the gemmas), sliding windows and soft-caps are their own cases (head dims 64 and 128
// too, as far as windows and caps go), against the general double reference (reference_attention.cuh); the window
// and the cap of a case are the CSV's last two columns.
// One CSV row per case; exit status 1 when any case fails, 2 on a CUDA or argument error.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../edgellm_gemv.h"
#include "common_host.cuh"
#include "reference_attention.cuh"

extern "C" int edgellm_attention_decode_impl(const edgellm_decode_args *a, edgellm_dtype kv_dtype, int num_splits,
                                             void *workspace, size_t workspace_bytes, int impl, void *stream);
extern "C" int edgellm_attention_decode_at_impl(const edgellm_decode_args *a, edgellm_dtype kv_dtype, const int *pos,
                                                int num_splits, void *workspace, size_t workspace_bytes, void *xq,
                                                void *xds, int impl, void *stream);

struct Result {
    double max_abs_err = 0, max_abs_ref = 0;
    bool finite = true;
};

static Result compare(const std::vector<double> &ref, const std::vector<double> &got) {
    Result r;
    for (size_t i = 0; i < ref.size(); ++i) {
        if (!std::isfinite(got[i])) r.finite = false;
        r.max_abs_err = std::max(r.max_abs_err, std::fabs(got[i] - ref[i]));
        r.max_abs_ref = std::max(r.max_abs_ref, std::fabs(ref[i]));
    }
    if (!r.finite) r.max_abs_err = INFINITY;
    return r;
}

struct Writer {
    FILE *f;
    int cases = 0, failures = 0;
    explicit Writer(FILE *out) : f(out) {
        std::fprintf(f, "kernel,dtype,head_dim,n_heads,n_kv_heads,batch,seq_q,seq_k,causal,splits,max_abs_err,"
                        "max_abs_ref,rel_err,metric,tolerance,passed,window,softcap\n");
    }
    // The window and soft-cap of the case being written (set by the case functions).
    int window = 0;
    double softcap = 0;
    void row(const char *kernel, edgellm_dtype t, int D, int H, int KVH, int B, int sq, int sk, int causal, int splits,
             const Result &r, bool relative, double tol) {
        const double rel = r.max_abs_ref > 0 ? r.max_abs_err / r.max_abs_ref : r.max_abs_err;
        const double err = relative ? rel : r.max_abs_err;
        const bool ok = r.finite && err < tol;
        ++cases;
        if (!ok) {
            ++failures;
            std::fprintf(stderr, "FAIL %s %s D=%d H=%d KVH=%d B=%d sq=%d sk=%d causal=%d splits=%d window=%d "
                         "softcap=%g: %s error %.3g (tol %.1g)\n", kernel, dtype_name(t), D, H, KVH, B, sq, sk, causal,
                         splits, window, softcap, relative ? "relative" : "absolute", err, tol);
        }
        std::fprintf(f, "%s,%s,%d,%d,%d,%d,%d,%d,%d,%d,%.6e,%.6e,%.6e,%s,%.1e,%d,%d,%g\n", kernel, dtype_name(t), D, H,
                     KVH, B, sq, sk, causal, splits, r.max_abs_err, r.max_abs_ref, rel,
                     relative ? "relative" : "absolute", tol, ok ? 1 : 0, window, softcap);
        std::fflush(f);
    }
};

// 1/sqrt(D) for every head dim, as a float (the kernels receive a float).
static double default_scale(int D) { return (double)(float)(1.0 / std::sqrt((double)D)); }

// The reference output of every (sequence, head), as doubles in o's layout [B][sq][H][D].  Head dims 64 and 128
// without a window or a cap take the tiled reference kernels; everything else the general one.
static std::vector<double> reference(const double *q, const double *k, const double *v, int B, int sq, int sk,
                                     int sk_cap, int H, int KVH, int D, double scale, int causal, int window = 0,
                                     double softcap = 0) {
    DeviceBuffer S((size_t)sq * sk * sizeof(double)), out((size_t)B * sq * H * D * sizeof(double));
    const int group = H / KVH;
    const bool general = (D != 64 && D != 128) || window > 0 || softcap > 0;
    for (int b = 0; b < B; ++b)
        for (int h = 0; h < H; ++h) {
            const int kvh = h / group;
            const double *qh = q + ((size_t)b * sq * H + h) * D, *kh = k + ((size_t)b * sk_cap * KVH + kvh) * D,
                         *vh = v + ((size_t)b * sk_cap * KVH + kvh) * D;
            double *oh = out.as<double>() + ((size_t)b * sq * H + h) * D;
            if (general)
                edgellm_ref::attention_one_head_general(qh, (int64_t)H * D, kh, (int64_t)KVH * D, vh,
                                                        (int64_t)KVH * D, oh, (int64_t)H * D, S.as<double>(), sq, sk,
                                                        D, scale, causal, window, softcap, 0);
            else
                edgellm_ref::attention_one_head<double, double, double, double>(
                    qh, (int64_t)H * D, kh, (int64_t)KVH * D, vh, (int64_t)KVH * D, oh, (int64_t)H * D,
                    S.as<double>(), sq, sk, D, scale, causal, 0);
            CUDA_CHECK(cudaGetLastError());
        }
    std::vector<double> host((size_t)B * sq * H * D);
    CUDA_CHECK(cudaMemcpy(host.data(), out.ptr, host.size() * sizeof(double), cudaMemcpyDeviceToHost));
    return host;
}

static std::vector<double> fetch(const void *src, edgellm_dtype t, size_t n) {
    static DeviceBuffer *d = nullptr;  // reused: decode compares thousands of small outputs
    if (!d || d->bytes < n * sizeof(double)) {
        delete d;
        d = new DeviceBuffer(n * sizeof(double));
    }
    to_double(src, t, d->as<double>(), n);
    std::vector<double> host(n);
    CUDA_CHECK(cudaMemcpy(host.data(), d->ptr, n * sizeof(double), cudaMemcpyDeviceToHost));
    return host;
}

// K and V live in a cache of sk_cap >= sk rows per sequence (as the engine's), Q and O are contiguous.
static void prefill_case(Writer &w, edgellm_dtype t, int D, int H, int KVH, int B, int sq, int sk, int causal,
                         uint64_t seed, int window = 0, float softcap = 0.f) {
    w.window = window, w.softcap = softcap;
    const int sk_cap = sk + 3;
    const size_t nq = (size_t)B * sq * H * D, nkv = (size_t)B * sk_cap * KVH * D;
    DeviceBuffer q(nq * dtype_size(t)), k(nkv * dtype_size(t)), v(nkv * dtype_size(t)), o(nq * dtype_size(t));
    fill_uniform(q.ptr, t, nq, seed, 2.0f);
    fill_uniform(k.ptr, t, nkv, seed + 1, 2.0f);
    fill_uniform(v.ptr, t, nkv, seed + 2, 1.0f);
    CUDA_CHECK(cudaMemset(o.ptr, 0xff, nq * dtype_size(t)));  // NaN everywhere: an unwritten output fails
    const double scale = default_scale(D);
    edgellm_prefill_args a{};
    a.q = q.ptr, a.k = k.ptr, a.v = v.ptr, a.o = o.ptr;
    a.q_layout = a.o_layout = contiguous_layout(sq, H, D);
    a.k_layout = a.v_layout = contiguous_layout(sk_cap, KVH, D);
    a.batch = B, a.seq_q = sq, a.seq_k = sk, a.n_heads = H, a.n_kv_heads = KVH, a.head_dim = D;
    a.softmax_scale = (float)scale, a.causal = causal, a.window = window, a.softcap = softcap;
    EDGELLM_CHECK(edgellm_attention_prefill(&a, t, nullptr));
    CUDA_CHECK(cudaDeviceSynchronize());
    DeviceBuffer qd(nq * 8), kd(nkv * 8), vd(nkv * 8);
    to_double(q.ptr, t, qd.as<double>(), nq);
    to_double(k.ptr, t, kd.as<double>(), nkv);
    to_double(v.ptr, t, vd.as<double>(), nkv);
    // The reference uses the scale the kernel received (a float).
    const auto ref = reference(qd.as<double>(), kd.as<double>(), vd.as<double>(), B, sq, sk, sk_cap, H, KVH, D,
                               (double)(float)scale, causal, window, softcap);
    const auto got = fetch(o.ptr, t, nq);
    const bool relative = t != EDGELLM_F32;
    const double tol = t == EDGELLM_F32 ? 1e-5 : t == EDGELLM_F16 ? 2e-3 : 1e-2;
    w.row("prefill", t, D, H, KVH, B, sq, sk, causal, 0, compare(ref, got), relative, tol);
}

// Quantized activations (edgellm_gemv.h) on the device as doubles, for an exact comparison: every value
// (254 hi + lo) * scale, then every chunk's scale * sum(u) (the second field of xds).
static std::vector<double> dequantized(const DeviceBuffer &xq, const DeviceBuffer &xds, size_t n) {
    std::vector<int8_t> q(EDGELLM_ACT_BYTES(n));
    std::vector<float> ds(n / 32 * 2);
    CUDA_CHECK(cudaMemcpy(q.data(), xq.ptr, q.size(), cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(ds.data(), xds.ptr, ds.size() * 4, cudaMemcpyDeviceToHost));
    std::vector<double> out(n + n / 32);
    for (size_t i = 0; i < n; ++i) {
        const size_t chunk = i / 32, lane = i % 32;
        const int u = 254 * q[EDGELLM_ACT_OFFSET(chunk, 0, lane)] + q[EDGELLM_ACT_OFFSET(chunk, 1, lane)];
        out[i] = (double)u * ds[chunk * 2];
    }
    for (size_t c = 0; c < n / 32; ++c) out[n + c] = ds[c * 2 + 1];
    return out;
}

static void decode_case(Writer &w, edgellm_dtype t, int D, int H, int KVH, int B, int sk, int max_splits, uint64_t seed,
                        int window = 0, float softcap = 0.f) {
    w.window = window, w.softcap = softcap;
    const int sk_cap = sk + 5;
    const size_t nq = (size_t)B * H * D, nkv = (size_t)B * sk_cap * KVH * D;
    DeviceBuffer q(nq * 4), k(nkv * dtype_size(t)), v(nkv * dtype_size(t)), o(nq * 4);
    fill_uniform(q.ptr, EDGELLM_F32, nq, seed, 2.0f);
    fill_uniform(k.ptr, t, nkv, seed + 1, 2.0f);
    fill_uniform(v.ptr, t, nkv, seed + 2, 1.0f);
    const double scale = default_scale(D);
    DeviceBuffer qd(nq * 8), kd(nkv * 8), vd(nkv * 8);
    to_double(q.ptr, EDGELLM_F32, qd.as<double>(), nq);
    to_double(k.ptr, t, kd.as<double>(), nkv);
    to_double(v.ptr, t, vd.as<double>(), nkv);
    const auto ref = reference(qd.as<double>(), kd.as<double>(), vd.as<double>(), B, 1, sk, sk_cap, H, KVH, D,
                               (double)(float)scale, 0, window, softcap);
    const int top = std::min(std::min(sk, max_splits), EDGELLM_MAX_SPLITS);
    DeviceBuffer ws(edgellm_decode_workspace_bytes(B, H, D, EDGELLM_MAX_SPLITS));
    CUDA_CHECK(cudaMemset(ws.ptr, 0, ws.bytes));
    edgellm_decode_args a{};
    a.q = q.as<float>(), a.k = k.ptr, a.v = v.ptr, a.o = o.as<float>();
    a.q_layout = a.o_layout = contiguous_layout(1, H, D);
    a.k_layout = a.v_layout = contiguous_layout(sk_cap, KVH, D);
    a.batch = B, a.seq_k = sk, a.n_heads = H, a.n_kv_heads = KVH, a.head_dim = D, a.softmax_scale = (float)scale;
    a.window = window, a.softcap = softcap;
    // Split counts 1..top, then the default (reported as splits = 0): the CUDA-core kernel ("decode", every KV
    // dtype) and the tensor-core kernel ("decode-tc", fp16/bf16 caches).
    for (int impl : {0, 1}) {
        if (impl == 1 && t == EDGELLM_F32) continue;
        if (softcap > 0 && t == EDGELLM_BF16) continue;  // no soft-capped instances for bf16 caches
        const char *name = impl == 0 ? "decode" : "decode-tc";
        const bool relative = impl == 1;
        const double tol = impl == 0 ? 1e-5 : t == EDGELLM_F16 ? 2e-3 : 1e-2;
        for (int s = 1; s <= top + 1; ++s) {
            const int splits = s <= top ? s : 0;
            CUDA_CHECK(cudaMemset(o.ptr, 0xff, nq * 4));
            EDGELLM_CHECK(edgellm_attention_decode_impl(&a, t, splits, ws.ptr, ws.bytes, impl, nullptr));
            CUDA_CHECK(cudaDeviceSynchronize());
            const auto got = fetch(o.ptr, EDGELLM_F32, nq);
            w.row(name, t, D, H, KVH, B, 1, sk, 0, splits, compare(ref, got), relative, tol);
        }
    }
    if (softcap > 0 && t == EDGELLM_BF16) return;
    // The public entry point is the default implementation.
    CUDA_CHECK(cudaMemset(o.ptr, 0xff, nq * 4));
    EDGELLM_CHECK(edgellm_attention_decode(&a, t, 0, ws.ptr, ws.bytes, nullptr));
    CUDA_CHECK(cudaDeviceSynchronize());
    w.row("decode-api", t, D, H, KVH, B, 1, sk, 0, 0, compare(ref, fetch(o.ptr, EDGELLM_F32, nq)), false, 1e-5);
    // As the engine calls it: a cache of a larger capacity holding *pos + 1 = sk rows (the position on the device),
    // at split counts where the rows fill one split (it writes the output alone), some of the grid's splits (the
    // others leave and the merge takes those in use) or all of them; its quantized output must be exactly
    // edgellm_quantize_activations of its float output.
    DeviceBuffer pos(sizeof(int)), xq(EDGELLM_ACT_BYTES(nq)), xds(nq / 32 * 8), xq_ref(EDGELLM_ACT_BYTES(nq)),
        xds_ref(nq / 32 * 8);
    const int last = sk - 1;
    CUDA_CHECK(cudaMemcpy(pos.ptr, &last, sizeof(int), cudaMemcpyHostToDevice));
    edgellm_decode_args cap = a;
    cap.seq_k = 4 * sk + 64;  // only split lengths depend on it: rows past *pos + 1 are never read
    // The engine's choice of kernel (EDGELLM_DECODE_ATTENTION): the CUDA-core one (the public entry point) within
    // fp32 rounding, the tensor-core one within its fp16/bf16 tolerance; either's quantized output exact.
    for (int impl : {0, 1}) {
        if (impl == 1 && t == EDGELLM_F32) continue;
        const char *name = impl == 0 ? "decode-at" : "decode-tc-at";
        const char *qname = impl == 0 ? "decode-at-quantized" : "decode-tc-at-quantized";
        const double tol = impl == 0 ? 1e-5 : t == EDGELLM_F16 ? 2e-3 : 1e-2;
        for (int s : {1, 2, 4, 8, 16, 64}) {
            CUDA_CHECK(cudaMemset(o.ptr, 0xff, nq * 4));
            if (impl == 0)
                EDGELLM_CHECK(edgellm_attention_decode_at(&cap, t, pos.as<int>(), s, ws.ptr, ws.bytes, xq.ptr, xds.ptr,
                                                          nullptr));
            else
                EDGELLM_CHECK(edgellm_attention_decode_at_impl(&cap, t, pos.as<int>(), s, ws.ptr, ws.bytes, xq.ptr,
                                                               xds.ptr, impl, nullptr));
            EDGELLM_CHECK(edgellm_quantize_activations(o.as<float>(), (int)nq, xq_ref.ptr, xds_ref.ptr, nullptr));
            CUDA_CHECK(cudaDeviceSynchronize());
            w.row(name, t, D, H, KVH, B, 1, sk, 0, s, compare(ref, fetch(o.ptr, EDGELLM_F32, nq)), impl == 1, tol);
            w.row(qname, t, D, H, KVH, B, 1, sk, 0, s, compare(dequantized(xq_ref, xds_ref, nq),
                                                          dequantized(xq, xds, nq)),
                  false, 1e-300);  // exact: the same bytes dequantize to the same values
        }
    }
}

#include <chrono>
static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int main(int argc, char **argv) {
    bool quick = false, sanitize = false;
    const auto t0 = std::chrono::steady_clock::now();
    const char *csv = nullptr;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--quick")) quick = true;
        else if (!std::strcmp(argv[i], "--sanitize")) quick = sanitize = true;
        else if (!std::strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[++i];
        else {
            std::fprintf(stderr, "usage: %s [--quick | --sanitize] [--csv PATH]\n", argv[0]);
            return 2;
        }
    }
    FILE *out = csv ? std::fopen(csv, "w") : stdout;
    if (!out) {
        std::fprintf(stderr, "error: cannot write %s\n", csv);
        return 2;
    }
    Writer w(out);
    const edgellm_dtype dtypes[3] = {EDGELLM_F32, EDGELLM_F16, EDGELLM_BF16};
    const int dims[2] = {64, 128};
    struct Heads { int h, kvh; };
    // Query/KV head counts: MHA, and the GQA ratios of the plan's models (3: SmolLM2, 4: Llama, 7: Qwen2.5 0.5B),
    // plus 12 (wider than one decode block's 8 heads).
    const Heads heads_short[] = {{4, 4}, {9, 3}, {8, 2}, {14, 2}, {12, 1}};
    const Heads heads_long[] = {{4, 1}, {9, 3}};
    const int seq_short_full[] = {1, 2, 15, 16, 17, 63, 64, 65, 127, 128, 129, 200, 1000, 2047};
    const int seq_short_quick[] = {1, 17, 64, 65, 130};
    const int seq_short_sanitize[] = {17, 130};
    const int seq_long[] = {4097, 8191, 16384};
    uint64_t seed = 1;

    for (edgellm_dtype t : dtypes)
        for (int D : dims) {
            // Causal prefill over whole prompts.
            for (const Heads &hh : heads_short) {
                if (quick && hh.h == 14) continue;
                if (sanitize && hh.h != 9 && hh.h != 12) continue;
                if (sanitize) for (int s : seq_short_sanitize) prefill_case(w, t, D, hh.h, hh.kvh, 1, s, s, 1, seed++);
                else if (quick) for (int s : seq_short_quick) prefill_case(w, t, D, hh.h, hh.kvh, 1, s, s, 1, seed++);
                else for (int s : seq_short_full) prefill_case(w, t, D, hh.h, hh.kvh, 1, s, s, 1, seed++);
            }
            if (!quick)
                for (const Heads &hh : heads_long)
                    for (int s : seq_long) prefill_case(w, t, D, hh.h, hh.kvh, 1, s, s, 1, seed++);
            // A chunk of queries after a cached prefix, non-causal attention, and two sequences at once.
            const int chunks[][2] = {{1, 100}, {37, 1000}, {64, 4097}, {129, 16384}};
            for (auto &c : chunks) {
                if (quick && c[1] > 1000) continue;
                prefill_case(w, t, D, 8, 2, 1, c[0], c[1], 1, seed++);
            }
            prefill_case(w, t, D, 8, 2, 1, quick ? 70 : 300, quick ? 90 : 1000, 0, seed++);
            prefill_case(w, t, D, 9, 3, 2, quick ? 65 : 513, quick ? 65 : 513, 1, seed++);

            // Decode at every split count.
            const int dec_full[] = {1, 17, 255, 1000, 4097, 16384};
            const int dec_quick[] = {1, 17, 130};
            const Heads dec_heads[] = {{4, 4}, {9, 3}, {32, 8}, {14, 2}, {12, 1}, {20, 1}};
            for (const Heads &hh : dec_heads) {
                if (sanitize && hh.h != 9 && hh.h != 20 && hh.h != 32) continue;
                if (sanitize) decode_case(w, t, D, hh.h, hh.kvh, 1, 130, 4, seed++);
                else if (quick) for (int s : dec_quick) decode_case(w, t, D, hh.h, hh.kvh, 1, s, 8, seed++);
                else for (int s : dec_full) decode_case(w, t, D, hh.h, hh.kvh, 1, s, EDGELLM_MAX_SPLITS, seed++);
            }
            decode_case(w, t, D, 9, 3, 3, quick ? 70 : 1000, quick ? 4 : 64, seed++);
            std::fprintf(stderr, "[%6.1f s] %s d%d: %d cases so far, %d failed\n", seconds_since(t0), dtype_name(t), D,
                         w.cases, w.failures);
        }
    // Head dims 96 (phi3: 32 heads, 32 KV heads) and 256 (gemma2: 8 / 4, gemma3: 4 / 1), sliding windows shorter
    // than the sequence (keys before the window skipped by whole tiles, and masked inside a tile) and soft-caps that
    // bend the scores (cap 2 against scores of about 1), at lengths that are no multiple of a tile; windows and caps
    // at head dims 64 and 128 too.
    struct Arch { int D, h, kvh; };
    const Arch arch_heads[] = {{96, 8, 8}, {96, 32, 32}, {256, 8, 4}, {256, 4, 1}, {64, 9, 3}, {128, 8, 2}};
    struct Variant { int window; float cap; };
    const Variant variants[] = {{0, 0.f}, {0, 2.f}, {37, 0.f}, {100, 2.f}};
    const int arch_prefill_full[][2] = {{1, 1}, {17, 17}, {65, 65}, {200, 200}, {1000, 1000}, {37, 1000}, {64, 4097}};
    const int arch_prefill_quick[][2] = {{17, 17}, {130, 130}, {37, 300}};
    const int arch_decode_full[] = {1, 17, 130, 1000, 4097};
    const int arch_decode_quick[] = {17, 130};
    for (edgellm_dtype t : dtypes)
        for (const Arch &ah : arch_heads) {
            const bool small_dim = ah.D == 64 || ah.D == 128;
            if (sanitize && (small_dim || ah.h == 32)) continue;
            for (const Variant &vr : variants) {
                if (small_dim && vr.window == 0 && vr.cap == 0.f) continue;  // the cases above
                if (sanitize && vr.window == 0 && vr.cap == 0.f) continue;
                if (quick || sanitize)
                    for (auto &c : arch_prefill_quick) {
                        if (sanitize && c[0] == 17) continue;
                        prefill_case(w, t, ah.D, ah.h, ah.kvh, 1, c[0], c[1], 1, seed++, vr.window, vr.cap);
                    }
                else
                    for (auto &c : arch_prefill_full)
                        prefill_case(w, t, ah.D, ah.h, ah.kvh, 1, c[0], c[1], 1, seed++, vr.window, vr.cap);
                if (quick || sanitize)
                    for (int s : arch_decode_quick) {
                        if (sanitize && s == 17) continue;
                        decode_case(w, t, ah.D, ah.h, ah.kvh, 1, s, 4, seed++, vr.window, vr.cap);
                    }
                else
                    for (int s : arch_decode_full)
                        decode_case(w, t, ah.D, ah.h, ah.kvh, 1, s, 16, seed++, vr.window, vr.cap);
            }
            if (!quick) prefill_case(w, t, ah.D, ah.h, ah.kvh, 2, 129, 129, 1, seed++, 37, 2.f);  // two sequences
            std::fprintf(stderr, "[%6.1f s] %s d%d %d/%d heads, windows and caps: %d cases so far, %d failed\n",
                         seconds_since(t0), dtype_name(t), ah.D, ah.h, ah.kvh, w.cases, w.failures);
        }
    std::fprintf(stderr, "%d cases, %d failed\n", w.cases, w.failures);
    if (csv) std::fclose(out);
    return w.failures ? 1 : 0;
}
