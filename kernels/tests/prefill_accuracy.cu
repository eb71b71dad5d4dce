// The engine's batched prefill (edgellm_engine_prefill / _prefill_logits) against its own token-by-token steps, on
// synthetic models of random quant blocks.
//
//   prefill_accuracy [--sanitize]
//
// (--sanitize: the prefill paths alone, for compute-sanitizer; see sanitize_model.)
// Two models of two layers: layer 0 all Q8_0, layer 1 mixed types (Q4_K Q and K, Q6_K V, Q4_0 output, Q4_K gate with
// a Q6_K up, Q5_0 down), a Q8_0 embedding and a Q6_K LM head; one llama-style (adjacent RoPE pairs, llama3 frequency
// factors), one qwen2-style (neox pairs, Q/K/V biases).  Then two of the other architectures' layers: phi3-style
// (head dim 96, 4 heads and 4 KV heads, rope factors and an attention factor) and gemma-style (head dim 256, 2 heads
// and 1 KV head, three layers: two sliding-window layers of 40 keys with their own RoPE base, then a global one;
// GeGLU, post-attention and post-FFN norms, per-head Q/K norms, a scaled embedding, attention and final soft-caps
// small enough to bend the scores and the logits), prompts longer than the window in chunks longer and shorter
// than it.  Per model:
// - the batched embedding and fp16 RMSNorm equal, bit for bit, the decode path's edgellm_embed and edgellm_rmsnorm;
// - teacher-forced logits of every position (prefill_logits, chunks crossing the GEMM tiles) against the steps': the
//   largest |difference| within 2% of the largest |logit| (a wrong position, cache row or mask moves logits by their
//   own size; fp16 activations move them by about 2^-11 relative per product), and every top-1 miss a near tie
//   (the steps' gap between their choice and the prefill's choice at most twice that position's largest difference);
// - prefill, then steps: the greedy choice after the prompt is the steps' choice (or a near tie), edgellm_engine_step
//   with -1 continues from it, and the next steps' logits (teacher-forced with the steps' tokens) agree as above;
// - a prompt longer than the room left in the context, and a token outside the vocabulary, are refused before any
//   work (the position unchanged: the steps after it still agree).
// Exit status 1 when any check fails, 2 on a CUDA or argument error.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "../edgellm_engine.h"
#include "quant_host.cuh"

struct Checks {
    int total = 0, failed = 0;
    void expect(bool ok, const char *what, const char *detail = "") {
        ++total;
        if (!ok) ++failed;
        std::printf("%-4s %s %s\n", ok ? "ok" : "FAIL", what, detail);
    }
};

struct SynthModel {
    edgellm_model_config cfg{};
    std::vector<std::unique_ptr<DeviceQuant>> mats;
    std::vector<std::unique_ptr<DeviceBuffer>> vecs;
    std::vector<edgellm_layer> layers;
    edgellm_qmatrix embd{}, output{};
    const float *output_norm = nullptr, *rope_factors = nullptr;
    uint64_t seed = 1;

    const edgellm_qmatrix &matrix(int qtype, int rows, int cols, float scale) {
        mats.emplace_back(new DeviceQuant(random_quant(qtype, rows, cols, seed++, scale)));
        return mats.back()->m;
    }
    const float *vector(int n, float lo, float hi) {
        std::mt19937_64 rng(seed++);
        std::uniform_real_distribution<float> u(lo, hi);
        std::vector<float> v(n);
        for (auto &x : v) x = u(rng);
        vecs.emplace_back(new DeviceBuffer(n * sizeof(float)));
        CUDA_CHECK(cudaMemcpy(vecs.back()->ptr, v.data(), n * sizeof(float), cudaMemcpyHostToDevice));
        return vecs.back()->as<float>();
    }
};

// The phi3-style and gemma-style models (see the top of the file).
static void build_arch_model(SynthModel &m, bool gemma, int max_context) {
    edgellm_model_config &c = m.cfg;
    c.n_layers = gemma ? 3 : 2, c.dim = 256, c.hidden = 512, c.vocab = 1000, c.max_context = max_context;
    c.n_heads = gemma ? 2 : 4, c.n_kv_heads = gemma ? 1 : 4, c.head_dim = gemma ? 256 : 96;
    c.norm_eps = 1e-6f, c.rope_base = gemma ? 1e6f : 10000.f, c.rope_neox = 1, c.unfused = 0;
    if (gemma) {
        c.query_scale = 0.0625f, c.embedding_scale = 16.f, c.activation = 1;
        c.attn_softcap = 1.5f, c.final_softcap = 2.f;
    } else {
        c.rope_attn_factor = 1.19f;
    }
    const int qdim = c.n_heads * c.head_dim, kvdim = c.n_kv_heads * c.head_dim;
    const float s = 0.1f;
    for (int i = 0; i < c.n_layers; ++i) {
        edgellm_layer L{};
        const int wq = i == 0 ? EDGELLM_Q8_0 : gemma ? EDGELLM_Q4_K : EDGELLM_Q4_0;
        L.wq = m.matrix(wq, qdim, c.dim, s);
        L.wk = m.matrix(wq, kvdim, c.dim, s);
        L.wv = m.matrix(i == 0 ? EDGELLM_Q8_0 : EDGELLM_Q5_0, kvdim, c.dim, s);
        L.wo = m.matrix(i == 0 || !gemma ? EDGELLM_Q8_0 : EDGELLM_Q6_K, c.dim, qdim, s);
        L.w_gate = m.matrix(wq, c.hidden, c.dim, s);
        L.w_up = m.matrix(i == 1 ? EDGELLM_Q8_0 : wq, c.hidden, c.dim, s);  // layer 1: gate and up of two types
        L.w_down = m.matrix(i == 0 ? EDGELLM_Q8_0 : EDGELLM_Q5_0, c.dim, c.hidden, s * 0.7f);
        L.attn_norm = m.vector(c.dim, 0.8f, 1.2f), L.ffn_norm = m.vector(c.dim, 0.8f, 1.2f);
        if (gemma) {
            L.post_attn_norm = m.vector(c.dim, 0.8f, 1.2f), L.post_ffn_norm = m.vector(c.dim, 0.8f, 1.2f);
            L.q_norm = m.vector(c.head_dim, 0.8f, 1.2f), L.k_norm = m.vector(c.head_dim, 0.8f, 1.2f);
            const bool local = i < 2;
            L.window = local ? 40 : 0, L.rope_base = local ? 10000.f : 0.f;
        }
        m.layers.push_back(L);
    }
    m.embd = m.matrix(EDGELLM_Q8_0, c.vocab, c.dim, 0.1f);
    m.output = m.matrix(EDGELLM_Q6_K, c.vocab, c.dim, s);
    m.output_norm = m.vector(c.dim, 0.8f, 1.2f);
    m.rope_factors = gemma ? nullptr : m.vector(c.head_dim / 2, 1.f, 8.f);
}

static void build_model(SynthModel &m, int neox, bool biases, bool factors, int max_context) {
    edgellm_model_config &c = m.cfg;
    c.n_layers = 2, c.dim = 256, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 64, c.hidden = 512, c.vocab = 1000;
    c.max_context = max_context, c.norm_eps = 1e-5f, c.rope_base = 10000.f, c.rope_neox = neox, c.unfused = 0;
    const int qdim = c.n_heads * c.head_dim, kvdim = c.n_kv_heads * c.head_dim;
    const float s = 0.1f;  // weights of about 1 / sqrt(dim): activations and attention scores of order 1
    for (int i = 0; i < c.n_layers; ++i) {
        edgellm_layer L{};
        const bool mixed = i == 1;
        L.wq = m.matrix(mixed ? EDGELLM_Q4_K : EDGELLM_Q8_0, qdim, c.dim, s);
        L.wk = m.matrix(mixed ? EDGELLM_Q4_K : EDGELLM_Q8_0, kvdim, c.dim, s);
        L.wv = m.matrix(mixed ? EDGELLM_Q6_K : EDGELLM_Q8_0, kvdim, c.dim, s);
        L.wo = m.matrix(mixed ? EDGELLM_Q4_0 : EDGELLM_Q8_0, c.dim, qdim, s);
        L.w_gate = m.matrix(mixed ? EDGELLM_Q4_K : EDGELLM_Q8_0, c.hidden, c.dim, s);
        L.w_up = m.matrix(mixed ? EDGELLM_Q6_K : EDGELLM_Q8_0, c.hidden, c.dim, s);
        L.w_down = m.matrix(mixed ? EDGELLM_Q5_0 : EDGELLM_Q8_0, c.dim, c.hidden, s * 0.7f);
        L.attn_norm = m.vector(c.dim, 0.8f, 1.2f), L.ffn_norm = m.vector(c.dim, 0.8f, 1.2f);
        if (biases) {
            L.bq = m.vector(qdim, -0.1f, 0.1f);
            L.bk = m.vector(kvdim, -0.1f, 0.1f);
            L.bv = m.vector(kvdim, -0.1f, 0.1f);
        }
        m.layers.push_back(L);
    }
    m.embd = m.matrix(EDGELLM_Q8_0, c.vocab, c.dim, 1.f);
    m.output = m.matrix(EDGELLM_Q6_K, c.vocab, c.dim, s);
    m.output_norm = m.vector(c.dim, 0.8f, 1.2f);
    m.rope_factors = factors ? m.vector(c.head_dim / 2, 1.f, 8.f) : nullptr;
}

struct Agreement {
    double max_diff = 0, max_ref = 0;
    int positions = 0, misses = 0, bad_misses = 0;
    double worst_gap = 0;  // the largest steps' gap at a miss
};

static int argmax(const float *v, int n) { return (int)(std::max_element(v, v + n) - v); }

// Adds one position's comparison.
static void compare(Agreement &a, const float *ref, const float *got, int vocab) {
    double diff = 0;
    for (int i = 0; i < vocab; ++i) {
        diff = std::max(diff, (double)std::fabs(ref[i] - got[i]));
        a.max_ref = std::max(a.max_ref, (double)std::fabs(ref[i]));
    }
    a.max_diff = std::max(a.max_diff, diff);
    ++a.positions;
    const int r = argmax(ref, vocab), g = argmax(got, vocab);
    if (r != g) {
        ++a.misses;
        const double gap = ref[r] - ref[g];
        a.worst_gap = std::max(a.worst_gap, gap);
        if (gap > 2 * diff) ++a.bad_misses;
    }
}

static void report(Checks &ck, const char *what, const Agreement &a) {
    char detail[256];
    std::snprintf(detail, sizeof detail,
                  "positions %d, top-1 misses %d (near ties but %d, largest gap %.3g), "
                  "max |dlogit| %.4g of max |logit| %.4g (%.2e)",
                  a.positions, a.misses, a.bad_misses, a.worst_gap, a.max_diff, a.max_ref,
                  a.max_ref > 0 ? a.max_diff / a.max_ref : 0.0);
    ck.expect(a.bad_misses == 0 && a.max_diff <= 0.02 * a.max_ref && a.positions > 0, what, detail);
}

// Batched embedding and fp16 RMSNorm against the decode path's kernels, bit for bit.
static void check_ops(Checks &ck, const SynthModel &m, const std::vector<int> &tokens) {
    const int dim = m.cfg.dim, n = (int)std::min<size_t>(tokens.size(), 37);
    DeviceBuffer tok(n * sizeof(int)), rows((size_t)n * dim * 4), one((size_t)n * dim * 4), h16((size_t)n * dim * 2),
        f32((size_t)n * dim * 4);
    CUDA_CHECK(cudaMemcpy(tok.ptr, tokens.data(), n * sizeof(int), cudaMemcpyHostToDevice));
    EDGELLM_CHECK(edgellm_embed_rows(&m.embd, tok.as<int>(), n, rows.as<float>(), nullptr));
    for (int t = 0; t < n; ++t)
        EDGELLM_CHECK(edgellm_embed(&m.embd, tok.as<int>() + t, one.as<float>() + (size_t)t * dim, nullptr));
    const float *norm = m.layers[0].attn_norm, eps = m.cfg.norm_eps;
    EDGELLM_CHECK(edgellm_rmsnorm_f16(rows.as<float>(), norm, h16.ptr, n, dim, eps, nullptr));
    EDGELLM_CHECK(edgellm_rmsnorm(rows.as<float>(), norm, f32.as<float>(), n, dim, eps, nullptr));
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> a((size_t)n * dim), b(a.size()), f(a.size());
    std::vector<__half> h(a.size());
    CUDA_CHECK(cudaMemcpy(a.data(), rows.ptr, rows.bytes, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(b.data(), one.ptr, one.bytes, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(h.data(), h16.ptr, h16.bytes, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(f.data(), f32.ptr, f32.bytes, cudaMemcpyDeviceToHost));
    ck.expect(std::memcmp(a.data(), b.data(), a.size() * 4) == 0, "embed_rows equals edgellm_embed bit for bit");
    bool same = true;
    for (size_t i = 0; i < h.size(); ++i) {
        const __half r = __float2half_rn(f[i]);
        same &= std::memcmp(&r, &h[i], 2) == 0;
    }
    ck.expect(same, "rmsnorm_f16 equals edgellm_rmsnorm rounded to fp16 bit for bit");
}

// arch: 0 the llama family (neox, biases, factors as given), 1 phi3-style, 2 gemma-style.
static void run_model(Checks &ck, const char *name, int neox, bool biases, bool factors, int n, int chunk, int extra,
                      int max_context, int arch = 0) {
    std::printf("-- model %s: prompt %d tokens, chunk %d, %d steps after it\n", name, n, chunk, extra);
    SynthModel m;
    if (arch == 0) build_model(m, neox, biases, factors, max_context);
    else build_arch_model(m, arch == 2, max_context);
    const int V = m.cfg.vocab;
    edgellm_engine *e = nullptr;
    EDGELLM_CHECK(
        edgellm_engine_create(&m.cfg, m.layers.data(), &m.embd, &m.output, m.output_norm, m.rope_factors, &e));
    std::mt19937_64 rng(42 + neox);
    std::vector<int> tokens(n);
    for (auto &t : tokens) t = (int)(rng() % V);
    check_ops(ck, m, tokens);

    // The reference: every prompt token stepped, then `extra` greedy steps; logits of each.
    std::vector<float> ref((size_t)(n + extra) * V);
    std::vector<int> cont(extra + 1);
    int next = 0;
    for (int t = 0; t < n; ++t) {
        EDGELLM_CHECK(edgellm_engine_step(e, tokens[t], &next));
        EDGELLM_CHECK(edgellm_engine_logits(e, &ref[(size_t)t * V]));
    }
    cont[0] = next;
    for (int s = 0; s < extra; ++s) {
        EDGELLM_CHECK(edgellm_engine_step(e, -1, &next));
        EDGELLM_CHECK(edgellm_engine_logits(e, &ref[(size_t)(n + s) * V]));
        cont[s + 1] = next;
    }

    // Teacher-forced logits of every position.
    EDGELLM_CHECK(edgellm_engine_reset(e));
    std::vector<float> all((size_t)n * V);
    EDGELLM_CHECK(edgellm_engine_prefill_logits(e, tokens.data(), n, chunk, all.data()));
    Agreement tf;
    for (int t = 0; t < n; ++t) compare(tf, &ref[(size_t)t * V], &all[(size_t)t * V], V);
    report(ck, "prefill_logits vs steps, every position", tf);
    std::vector<float> last(V);
    EDGELLM_CHECK(edgellm_engine_logits(e, last.data()));
    ck.expect(std::memcmp(last.data(), &all[(size_t)(n - 1) * V], V * 4) == 0,
              "after prefill_logits, edgellm_engine_logits is its last row");

    // Prefill, then steps.
    EDGELLM_CHECK(edgellm_engine_reset(e));
    int first = -1;
    EDGELLM_CHECK(edgellm_engine_prefill(e, tokens.data(), n, chunk, &first));
    Agreement lp;
    EDGELLM_CHECK(edgellm_engine_logits(e, last.data()));
    compare(lp, &ref[(size_t)(n - 1) * V], last.data(), V);
    report(ck, "prefill's last logits vs steps", lp);
    char detail[128];
    std::snprintf(detail, sizeof detail, "(prefill %d, steps %d)", first, cont[0]);
    ck.expect(first == cont[0] || lp.bad_misses == 0, "prefill's greedy choice is the steps' or a near tie", detail);

    // Refusals leave the state alone.
    const int room = max_context - n;
    std::vector<int> too_long(room + 1, 0);
    int ignored = 0;
    ck.expect(edgellm_engine_prefill(e, too_long.data(), room + 1, chunk, &ignored) == EDGELLM_ERR_ARGUMENT,
              "a prompt past the context is refused");
    int bad_token = V;
    ck.expect(edgellm_engine_prefill(e, &bad_token, 1, chunk, &ignored) == EDGELLM_ERR_ARGUMENT,
              "a token outside the vocabulary is refused");

    // The steps after it, teacher-forced with the steps' tokens: step s feeds cont[s]; the first feeds -1 (the
    // choice left on the device) when the prefill chose the steps' token.
    Agreement after;
    std::vector<float> logits(V);
    int matched = 0;
    for (int s = 0; s < extra; ++s) {
        EDGELLM_CHECK(edgellm_engine_step(e, s == 0 && first == cont[0] ? -1 : cont[s], &next));
        EDGELLM_CHECK(edgellm_engine_logits(e, logits.data()));
        compare(after, &ref[(size_t)(n + s) * V], logits.data(), V);
        matched += next == cont[s + 1];
    }
    if (extra > 0) report(ck, "steps after prefill vs steps after steps (teacher-forced)", after);
    std::printf("     greedy tokens after prefill equal to the steps': %d of %d\n", matched, extra);

    // Another chunk size over the same prompt gives the same logits (up to the same tolerance).
    EDGELLM_CHECK(edgellm_engine_reset(e));
    std::vector<float> all1((size_t)n * V);
    EDGELLM_CHECK(edgellm_engine_prefill_logits(e, tokens.data(), n, std::max(1, chunk / 5), all1.data()));
    Agreement cc;
    for (int t = 0; t < n; ++t) compare(cc, &all[(size_t)t * V], &all1[(size_t)t * V], V);
    report(ck, "prefill_logits with a fifth of the chunk vs the chunk", cc);
    edgellm_engine_destroy(e);
}

// For compute-sanitizer: the prefill paths alone (no token-by-token reference, whose hundreds of steps the slow tools
// cannot afford), on a prompt that crosses a chunk, the GEMM's and the attention's 64-row tiles, and a cached prefix;
// then two steps from the prefilled cache and three queued ones.  Checks only that everything runs and stays finite.
// arch as in run_model (the llama family with biases and factors, phi3-style, gemma-style).
static void sanitize_model(Checks &ck, int arch) {
    const int n = 150, chunk = 100, max_context = 192;
    std::printf("-- sanitizer run (model %d): prompt %d tokens, chunk %d\n", arch, n, chunk);
    SynthModel m;
    if (arch == 0) build_model(m, 0, true, true, max_context);
    else build_arch_model(m, arch == 2, max_context);
    const int V = m.cfg.vocab;
    edgellm_engine *e = nullptr;
    EDGELLM_CHECK(
        edgellm_engine_create(&m.cfg, m.layers.data(), &m.embd, &m.output, m.output_norm, m.rope_factors, &e));
    std::vector<int> tokens(n);
    std::mt19937_64 rng(7);
    for (auto &t : tokens) t = (int)(rng() % V);
    std::vector<float> all((size_t)n * V);
    EDGELLM_CHECK(edgellm_engine_prefill_logits(e, tokens.data(), n, chunk, all.data()));
    bool finite = true;
    for (float v : all) finite &= std::isfinite(v);
    ck.expect(finite, "prefill_logits: every logit finite");
    EDGELLM_CHECK(edgellm_engine_reset(e));
    int next = -1;
    EDGELLM_CHECK(edgellm_engine_prefill(e, tokens.data(), n, chunk, &next));
    ck.expect(next >= 0 && next < V, "prefill: a token of the vocabulary");
    for (int s = 0; s < 2; ++s) EDGELLM_CHECK(edgellm_engine_step(e, -1, &next));
    // Then three steps queued back to back (the replayed graph), collected after.
    for (int s = 0; s < 3; ++s) EDGELLM_CHECK(edgellm_engine_launch(e, -1));
    bool in_vocab = true;
    for (int s = 0; s < 3; ++s) {
        EDGELLM_CHECK(edgellm_engine_collect(e, &next));
        in_vocab &= next >= 0 && next < V;
    }
    ck.expect(in_vocab, "queued steps: tokens of the vocabulary");
    std::vector<float> logits(V);
    EDGELLM_CHECK(edgellm_engine_logits(e, logits.data()));
    finite = true;
    for (float v : logits) finite &= std::isfinite(v);
    ck.expect(finite && next >= 0 && next < V, "steps after prefill: finite logits, a token of the vocabulary");
    edgellm_engine_destroy(e);
}

int main(int argc, char **argv) {
    bool sanitize = false;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--sanitize")) sanitize = true;
        else {
            std::fprintf(stderr, "usage: %s [--sanitize]\n", argv[0]);
            return 2;
        }
    }
    Checks ck;
    if (sanitize) {
        for (int arch = 0; arch < 3; ++arch) sanitize_model(ck, arch);
    } else {
        run_model(ck, "llama-style", 0, false, true, 300, 128, 16, 400);
        run_model(ck, "qwen2-style", 1, true, false, 150, 64, 16, 200);
        run_model(ck, "phi3-style", 1, false, true, 150, 64, 16, 200, 1);
        run_model(ck, "gemma-style", 1, false, false, 150, 64, 16, 200, 2);
        run_model(ck, "gemma-style, chunks shorter than the window", 1, false, false, 130, 25, 8, 160, 2);
    }
    std::printf("%d checks, %d failed\n", ck.total, ck.failed);
    return ck.failed ? 1 : 0;
}
