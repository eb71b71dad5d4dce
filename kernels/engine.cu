// EdgeLLM's decoder on the GPU (edgellm_engine.h): one token per step through every layer, all on the device, the
// step captured once in a CUDA graph and replayed.
//
// Per layer: RMSNorm -> quantized activations (16 bits as two int8 digits, edgellm_gemv.h) -> Q, K, V (quantized
// GEMV, + biases) -> RoPE at the device position -> K, V appended to the fp16 cache -> split-KV decode attention over
// the cache -> output projection -> residual; RMSNorm -> quantize -> gate, up -> SwiGLU -> quantize -> down ->
// residual.  Then the final norm, the LM head and argmax on the device, the position advanced on the device.
// Beyond the llama family (edgellm_engine.h): gemma's scaled embedding, per-head Q/K norms before RoPE (gemma3), a
// per-layer RoPE base and sliding window, soft-capped scores, the attention and FFN outputs normed before the
// residual (one kernel each, the GEMV then writing to tmp), GeGLU after separate gate and up products, and soft-capped
// logits before the argmax; phi3's fused matrices arrive as row views and take the llama path.
//
// Fused (the default), a llama layer is 8 launches: RMSNorm+quantize, Q/K/V (+ biases) in one GEMV (one per quant type
// where they differ) with RoPE and the cache append in its epilogue (the step's cos and sin made once, before the
// first layer), attention writing quantized activations, output projection with the residual added in its epilogue,
// RMSNorm+quantize, gate/up with SwiGLU in the epilogue, quantize, down projection + residual.
// EDGELLM_EPILOGUE_FUSION=none gives RoPE+append a launch of its own (9), =all also moves the quantize into the
// gate/up launch (7).  Each fused kernel computes exactly what the separate ones do, in the same order (the GPU tests
// compare the two steps bit for bit).
//
// Prefill (edgellm_engine_prefill) runs a prompt through the same weights chunk by chunk on tensor cores
// (edgellm_prefill.h): per layer, RMSNorm to fp16, Q/K/V in one GEMM with biases, the decode path's own RoPE and cache
// append over the chunk's rows, FlashAttention-2 prefill of the chunk's queries against the cache in place (keys
// 0 .. p0 + n - 1, causal with the offset p0), the output projection and the down projection added to the residual in
// their GEMM epilogues, gate and up with SwiGLU in one GEMM.  The last position then takes the decode step's own
// final norm, LM head GEMV and argmax, so the state left is the one a step leaves.
#include <algorithm>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "attention_common.cuh"
#include "edgellm_engine.h"

// Either decode attention kernel (flash_decode.cu; not in the public header): impl 0 CUDA cores, 1 tensor cores.
extern "C" int edgellm_attention_decode_at_impl(const edgellm_decode_args *a, edgellm_dtype kv_dtype, const int *pos,
                                                int num_splits, void *workspace, size_t workspace_bytes, void *xq,
                                                void *xds, int impl, void *stream);
extern "C" int edgellm_decode_splits_impl(const edgellm_decode_args *a, edgellm_dtype kv_dtype, int impl);

namespace {

__global__ void advance_kernel(int *pos) { *pos += 1; }
__global__ void advance_by_kernel(int *pos, int n) { *pos += n; }

}  // namespace

struct edgellm_engine {
    edgellm_model_config cfg{};
    std::vector<edgellm_layer> layers;
    edgellm_qmatrix embd{}, output{};
    const float *output_norm = nullptr, *rope_factors = nullptr;
    float *x = nullptr, *h = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr, *tmp = nullptr;
    float *gate_up = nullptr, *ffn = nullptr, *logits = nullptr;
    int8_t *xq = nullptr, *ffn_xq = nullptr;  // ffn_xq: the SwiGLU output quantized in its own launch's epilogue
    float2 *xds = nullptr, *ffn_xds = nullptr;
    int *swiglu_counters = nullptr;
    float2 *rope_table = nullptr;  // (cos, sin) of the step's position, made once a step (edgellm_rope_table)
    std::vector<__half *> kcache, vcache;
    void *workspace = nullptr;
    size_t workspace_bytes = 0;
    int splits = 1;
    int decode_impl = 0;  // the decode attention's kernel (decode_attention_impl)
    int *pos = nullptr, *token = nullptr;  // device
    // Steps launched and not yet collected (edgellm_engine_launch / _collect), at most kQueuedSteps: slot i % kQueued
    // of step i holds the token fed to it and the one it chose, and the event after that choice's copy.
    static constexpr int kQueuedSteps = 4;
    int *host_token = nullptr;  // pinned: [kQueuedSteps] chosen, [kQueuedSteps] fed, [1] the prefill's choice
    cudaEvent_t chosen[kQueuedSteps] = {};
    long long launched = 0, collected = 0;
    cudaStream_t stream = nullptr;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    int steps = 0;
    int position = 0;  // host copy of *pos: a step past the cache is refused before it could write past it
    std::vector<void *> owned;

    // Prefill work buffers for chunks of up to prefill.chunk tokens (edgellm_engine_prefill), allocated at the first
    // prefill; the logits of prefill_logits in rows of up to logit_rows.
    struct Prefill {
        int chunk = 0;
        int *tokens = nullptr;
        float *x = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *gate = nullptr, *up = nullptr, *o = nullptr;
        __half *h = nullptr, *qh = nullptr, *att = nullptr, *ffn = nullptr;
        int logit_rows = 0;
        float *logits = nullptr;
        std::vector<void *> owned;
    } prefill;
};

namespace {

int cuda_rc(cudaError_t err) {
    if (err == cudaSuccess) return EDGELLM_OK;
    edgellm::set_cuda_error(err);
    return EDGELLM_ERR_CUDA;
}

#define TRY(call)                      \
    do {                               \
        const int rc_ = (call);        \
        if (rc_ != EDGELLM_OK) return rc_; \
    } while (0)

template <typename T>
int alloc(edgellm_engine *e, T **ptr, size_t count) {
    void *p = nullptr;
    TRY(cuda_rc(cudaMalloc(&p, count * sizeof(T) + 16)));
    e->owned.push_back(p);
    *ptr = static_cast<T *>(p);
    return cuda_rc(cudaMemsetAsync(p, 0, count * sizeof(T) + 16, e->stream));
}

bool same_kind(const edgellm_qmatrix &a, const edgellm_qmatrix &b) { return a.qtype == b.qtype && a.cols == b.cols; }

int linear(edgellm_engine *e, const edgellm_qmatrix &w, const float *in, float *out) {
    TRY(edgellm_quantize_activations(in, w.cols, e->xq, e->xds, e->stream));
    return edgellm_gemv(&w, e->xq, e->xds, out, e->stream);
}

// Q, K and V share one activation quantization.
int qkv(edgellm_engine *e, const edgellm_layer &L) {
    TRY(edgellm_quantize_activations(e->h, e->cfg.dim, e->xq, e->xds, e->stream));
    TRY(edgellm_gemv(&L.wq, e->xq, e->xds, e->q, e->stream));
    TRY(edgellm_gemv(&L.wk, e->xq, e->xds, e->k, e->stream));
    return edgellm_gemv(&L.wv, e->xq, e->xds, e->v, e->stream);
}

float softmax_scale(const edgellm_model_config &c) {
    return c.query_scale > 0.f ? c.query_scale : 1.f / sqrtf((float)c.head_dim);
}
float rope_base(const edgellm_model_config &c, const edgellm_layer &L) {
    return L.rope_base > 0.f ? L.rope_base : c.rope_base;
}
float rope_attn_factor(const edgellm_model_config &c) { return c.rope_attn_factor > 0.f ? c.rope_attn_factor : 1.f; }
bool geglu(const edgellm_model_config &c) { return c.activation == 1; }

edgellm_decode_args attention_args(const edgellm_engine *e, int i) {
    const edgellm_model_config &c = e->cfg;
    const int qdim = c.n_heads * c.head_dim, kvdim = c.n_kv_heads * c.head_dim;
    edgellm_decode_args a{};
    a.q = e->q, a.k = e->kcache[i], a.v = e->vcache[i], a.o = e->att;
    a.q_layout = a.o_layout = edgellm_layout{qdim, qdim, c.head_dim};
    a.k_layout = a.v_layout = edgellm_layout{(int64_t)c.max_context * kvdim, kvdim, c.head_dim};
    a.batch = 1, a.seq_k = c.max_context, a.n_heads = c.n_heads, a.n_kv_heads = c.n_kv_heads, a.head_dim = c.head_dim;
    a.softmax_scale = softmax_scale(c);
    a.window = e->layers[i].window, a.softcap = c.attn_softcap;
    return a;
}

// gemma3: each head of the step's q and k normed (before RoPE).
int qk_norms(edgellm_engine *e, const edgellm_layer &L, float *q, float *k, int rows) {
    const edgellm_model_config &c = e->cfg;
    if (!L.q_norm) return EDGELLM_OK;
    const int qdim = c.n_heads * c.head_dim, kvdim = c.n_kv_heads * c.head_dim;
    TRY(edgellm_rmsnorm_heads(q, rows, c.n_heads, c.head_dim, qdim, L.q_norm, c.norm_eps, e->stream));
    return edgellm_rmsnorm_heads(k, rows, c.n_kv_heads, c.head_dim, kvdim, L.k_norm, c.norm_eps, e->stream);
}

// A projection of the quantized activations (xq, xds) into the residual stream x: added in the GEMV's epilogue, or
// (gemma's post-norms) written to tmp, normed and added.
int project_residual(edgellm_engine *e, const edgellm_qmatrix &w, const float *post_norm, const int8_t *xq,
                     const float2 *xds) {
    const edgellm_qmatrix *wp = &w;
    if (!post_norm) return edgellm_gemv_many(&wp, &e->x, nullptr, 1, 1, xq, xds, e->stream);
    TRY(edgellm_gemv_many(&wp, &e->tmp, nullptr, 1, 0, xq, xds, e->stream));
    return edgellm_rmsnorm_add(e->x, e->tmp, post_norm, 1, e->cfg.dim, e->cfg.norm_eps, e->stream);
}

// Gate and up of the quantized activations into e->gate_up ([gate | up]), then GeGLU into e->ffn.
int gate_up_geglu(edgellm_engine *e, const edgellm_layer &L) {
    const int hidden = e->cfg.hidden;
    if (same_kind(L.w_gate, L.w_up)) {
        const edgellm_qmatrix *w[2] = {&L.w_gate, &L.w_up};
        float *y[2] = {e->gate_up, e->gate_up + hidden};
        TRY(edgellm_gemv_many(w, y, nullptr, 2, 0, e->xq, e->xds, e->stream));
    } else {
        TRY(edgellm_gemv(&L.w_gate, e->xq, e->xds, e->gate_up, e->stream));
        TRY(edgellm_gemv(&L.w_up, e->xq, e->xds, e->gate_up + hidden, e->stream));
    }
    return edgellm_geglu(e->gate_up, e->ffn, 1, hidden, e->stream);
}

// The decode attention's kernel, EDGELLM_DECODE_ATTENTION (read once): "cuda" (0: CUDA cores, fp32 arithmetic) or
// "tensor" (1: the query heads of a KV head as the rows of mma tiles, fp16 products).
int decode_attention_impl() {
    static const int impl = [] {
        const char *v = std::getenv("EDGELLM_DECODE_ATTENTION");
        return v && std::string(v) == "tensor" ? 1 : 0;
    }();
    return impl;
}

// Attention of layer i into e->att; with `quantized`, also into e->xq / e->xds for the output projection.
int attention(edgellm_engine *e, int i, bool quantized) {
    const edgellm_decode_args a = attention_args(e, i);
    return edgellm_attention_decode_at_impl(&a, EDGELLM_F16, e->pos, e->splits, e->workspace, e->workspace_bytes,
                                            quantized ? e->xq : nullptr, quantized ? e->xds : nullptr, e->decode_impl,
                                            e->stream);
}

// The GEMV epilogues that take the next small operation's work, a launch a layer fewer each: RoPE and the cache
// append in the Q/K/V launch (with the rotation's cos and sin made once a step, edgellm_rope_table, for every layer
// on the model's RoPE base), and the SwiGLU output's quantization in the gate/up launch.  EDGELLM_EPILOGUE_FUSION
// (read once) names them: "rope" (the default: faster at each of the four sizes timed, docs/performance.md), "quantize", "1" or "all" both,
// "0" or "none" neither.  Results are the same bit for bit either way (tests/edgellm/test_gemv_epilogues.py).
struct EpilogueFusion {
    bool rope = false, quantize = false;
};
EpilogueFusion epilogue_fusion() {
    static const EpilogueFusion f = [] {
        EpilogueFusion r;
        const char *v = std::getenv("EDGELLM_EPILOGUE_FUSION");
        const std::string s = v ? v : "rope";
        r.rope = s == "1" || s == "all" || s == "rope";
        r.quantize = s == "1" || s == "all" || s == "quantize";
        return r;
    }();
    return f;
}

// Whether layer L's Q/K/V launch does RoPE and the append (adjacent pairs; NeoX pairs (i, i + head_dim/2) and per-head
// Q/K norms, which need a whole head first, take launches of their own), and whether it reads the step's table.
bool rope_in_epilogue(const edgellm_model_config &c, const edgellm_layer &L) {
    return epilogue_fusion().rope && !c.rope_neox && !L.q_norm;
}
bool rope_from_table(const edgellm_model_config &c, const edgellm_layer &L) {
    return rope_in_epilogue(c, L) && rope_base(c, L) == c.rope_base;
}

int fused_layer(edgellm_engine *e, int i) {
    const edgellm_model_config &c = e->cfg;
    const edgellm_layer &L = e->layers[i];
    TRY(edgellm_rmsnorm_quantize(e->x, L.attn_norm, c.dim, c.norm_eps, e->xq, e->xds, e->stream));
    const edgellm_qmatrix *w[3] = {&L.wq, &L.wk, &L.wv};
    float *y[3] = {e->q, e->k, e->v};
    const float *b[3] = {L.bq, L.bk, L.bv};
    // Q, K and V in one launch per run of one quant type (Q4_K_M's V is often Q6_K).
    if (rope_from_table(c, L)) {
        TRY(edgellm_gemv_qkv_rope_table(w, b, e->q, e->kcache[i], e->vcache[i], c.head_dim, e->pos, e->rope_table,
                                        e->xq, e->xds, e->stream));
    } else if (rope_in_epilogue(c, L)) {
        TRY(edgellm_gemv_qkv_rope(w, b, e->q, e->kcache[i], e->vcache[i], c.head_dim, e->pos, rope_base(c, L),
                                  e->rope_factors, rope_attn_factor(c), e->xq, e->xds, e->stream));
    } else {
        TRY(edgellm_gemv_many(w, y, b, 3, 0, e->xq, e->xds, e->stream));
        TRY(qk_norms(e, L, e->q, e->k, 1));
        TRY(edgellm_rope_append(e->q, e->k, e->v, e->kcache[i], e->vcache[i], c.n_heads, c.n_kv_heads, c.head_dim,
                                e->pos, rope_base(c, L), e->rope_factors, c.rope_neox, rope_attn_factor(c),
                                e->stream));
    }
    TRY(attention(e, i, true));
    TRY(project_residual(e, L.wo, L.post_attn_norm, e->xq, e->xds));
    TRY(edgellm_rmsnorm_quantize(e->x, L.ffn_norm, c.dim, c.norm_eps, e->xq, e->xds, e->stream));
    if (!geglu(c) && same_kind(L.w_gate, L.w_up) && epilogue_fusion().quantize) {
        // SwiGLU and the down projection's activations in the gate/up launch (into their own buffers).
        TRY(edgellm_gemv_swiglu_quantize(&L.w_gate, &L.w_up, e->xq, e->xds, e->ffn, e->ffn_xq, e->ffn_xds,
                                         e->swiglu_counters, e->stream));
        return project_residual(e, L.w_down, L.post_ffn_norm, e->ffn_xq, e->ffn_xds);
    }
    if (geglu(c)) {
        TRY(gate_up_geglu(e, L));
    } else if (same_kind(L.w_gate, L.w_up)) {
        TRY(edgellm_gemv_swiglu(&L.w_gate, &L.w_up, e->xq, e->xds, e->ffn, e->stream));
    } else {
        TRY(edgellm_gemv(&L.w_gate, e->xq, e->xds, e->gate_up, e->stream));
        TRY(edgellm_gemv(&L.w_up, e->xq, e->xds, e->gate_up + c.hidden, e->stream));
        TRY(edgellm_swiglu(e->gate_up, e->ffn, 1, c.hidden, e->stream));
    }
    TRY(edgellm_quantize_activations(e->ffn, c.hidden, e->xq, e->xds, e->stream));
    return project_residual(e, L.w_down, L.post_ffn_norm, e->xq, e->xds);
}

int layer(edgellm_engine *e, int i) {
    if (!e->cfg.unfused) return fused_layer(e, i);
    const edgellm_model_config &c = e->cfg;
    const edgellm_layer &L = e->layers[i];
    const int qdim = c.n_heads * c.head_dim, kvdim = c.n_kv_heads * c.head_dim;
    TRY(edgellm_rmsnorm(e->x, L.attn_norm, e->h, 1, c.dim, c.norm_eps, e->stream));
    TRY(qkv(e, L));
    if (L.bq) {
        TRY(edgellm_add(e->q, L.bq, qdim, e->stream));
        TRY(edgellm_add(e->k, L.bk, kvdim, e->stream));
        TRY(edgellm_add(e->v, L.bv, kvdim, e->stream));
    }
    TRY(qk_norms(e, L, e->q, e->k, 1));
    const float base = rope_base(c, L), attn_factor = rope_attn_factor(c);
    TRY(edgellm_rope(e->q, 1, c.n_heads, c.head_dim, qdim, e->pos, base, e->rope_factors, c.rope_neox, attn_factor,
                     e->stream));
    TRY(edgellm_rope(e->k, 1, c.n_kv_heads, c.head_dim, kvdim, e->pos, base, e->rope_factors, c.rope_neox, attn_factor,
                     e->stream));
    TRY(edgellm_kv_append(e->k, e->kcache[i], 1, kvdim, kvdim, e->pos, e->stream));
    TRY(edgellm_kv_append(e->v, e->vcache[i], 1, kvdim, kvdim, e->pos, e->stream));
    TRY(attention(e, i, false));
    TRY(linear(e, L.wo, e->att, e->tmp));
    if (L.post_attn_norm) TRY(edgellm_rmsnorm_add(e->x, e->tmp, L.post_attn_norm, 1, c.dim, c.norm_eps, e->stream));
    else TRY(edgellm_add(e->x, e->tmp, c.dim, e->stream));
    TRY(edgellm_rmsnorm(e->x, L.ffn_norm, e->h, 1, c.dim, c.norm_eps, e->stream));
    TRY(edgellm_quantize_activations(e->h, c.dim, e->xq, e->xds, e->stream));
    TRY(edgellm_gemv(&L.w_gate, e->xq, e->xds, e->gate_up, e->stream));
    TRY(edgellm_gemv(&L.w_up, e->xq, e->xds, e->gate_up + c.hidden, e->stream));
    if (geglu(c)) TRY(edgellm_geglu(e->gate_up, e->ffn, 1, c.hidden, e->stream));
    else TRY(edgellm_swiglu(e->gate_up, e->ffn, 1, c.hidden, e->stream));
    TRY(linear(e, L.w_down, e->ffn, e->tmp));
    if (L.post_ffn_norm) return edgellm_rmsnorm_add(e->x, e->tmp, L.post_ffn_norm, 1, c.dim, c.norm_eps, e->stream);
    return edgellm_add(e->x, e->tmp, c.dim, e->stream);
}

// The token embedding of *token into x (gemma: scaled by sqrt(dim)).
int embed_token(edgellm_engine *e) {
    TRY(edgellm_embed(&e->embd, e->token, e->x, e->stream));
    const float s = e->cfg.embedding_scale;
    return s != 0.f && s != 1.f ? edgellm_scale(e->x, e->cfg.dim, s, e->stream) : EDGELLM_OK;
}

// gemma2's soft-capped logits, rows of vocab values.
int cap_logits(edgellm_engine *e, float *logits, int rows) {
    const float cap = e->cfg.final_softcap;
    return cap > 0.f ? edgellm_softcap(logits, (int64_t)rows * e->cfg.vocab, cap, e->stream) : EDGELLM_OK;
}

// Everything one step enqueues; the same sequence is captured into the graph.
int enqueue_step(edgellm_engine *e) {
    if (!e->cfg.unfused) {
        bool table = false;
        for (const edgellm_layer &L : e->layers) table |= rope_from_table(e->cfg, L);
        if (table)
            TRY(edgellm_rope_table(e->pos, e->cfg.head_dim, e->cfg.rope_base, e->rope_factors,
                                   rope_attn_factor(e->cfg), e->rope_table, e->stream));
    }
    TRY(embed_token(e));
    for (int i = 0; i < e->cfg.n_layers; ++i) TRY(layer(e, i));
    if (!e->cfg.unfused) {
        TRY(edgellm_rmsnorm_quantize(e->x, e->output_norm, e->cfg.dim, e->cfg.norm_eps, e->xq, e->xds, e->stream));
        TRY(edgellm_gemv(&e->output, e->xq, e->xds, e->logits, e->stream));
        TRY(cap_logits(e, e->logits, 1));
        return edgellm_argmax_advance(e->logits, e->cfg.vocab, e->token, e->pos, e->stream);
    }
    TRY(edgellm_rmsnorm(e->x, e->output_norm, e->h, 1, e->cfg.dim, e->cfg.norm_eps, e->stream));
    TRY(linear(e, e->output, e->h, e->logits));
    TRY(cap_logits(e, e->logits, 1));
    TRY(edgellm_argmax(e->logits, e->cfg.vocab, e->token, e->stream));
    advance_kernel<<<1, 1, 0, e->stream>>>(e->pos);
    return edgellm::check_launch();
}

// --- prefill ---------------------------------------------------------------------------------------------------

template <typename T>
int prefill_alloc(edgellm_engine *e, T **ptr, size_t count) {
    void *p = nullptr;
    TRY(cuda_rc(cudaMalloc(&p, count * sizeof(T) + 16)));
    e->prefill.owned.push_back(p);
    *ptr = static_cast<T *>(p);
    return EDGELLM_OK;
}

void prefill_free(edgellm_engine *e) {
    for (void *p : e->prefill.owned) cudaFree(p);
    e->prefill = edgellm_engine::Prefill{};
}

// Work buffers for chunks of `chunk` tokens (kept when the present ones are large enough).
int prefill_buffers(edgellm_engine *e, int chunk) {
    edgellm_engine::Prefill &P = e->prefill;
    if (P.chunk >= chunk) return EDGELLM_OK;
    TRY(cuda_rc(cudaStreamSynchronize(e->stream)));  // the old buffers may still be in use
    prefill_free(e);  // the logits rows too: logit_buffer makes them again at their next use
    const edgellm_model_config &c = e->cfg;
    const size_t n = chunk, qdim = (size_t)c.n_heads * c.head_dim, kvdim = (size_t)c.n_kv_heads * c.head_dim;
    // Separate gate and up products: mixed types (no fused SwiGLU GEMM) or GeGLU (no GEMM epilogue for it).
    bool mixed_ffn = geglu(c), post_norms = false;
    for (const edgellm_layer &L : e->layers) {
        mixed_ffn |= !same_kind(L.w_gate, L.w_up);
        post_norms |= L.post_attn_norm || L.post_ffn_norm;
    }
    int rc = prefill_alloc(e, &P.tokens, n);
    if (rc == EDGELLM_OK) rc = prefill_alloc(e, &P.x, n * c.dim);
    if (rc == EDGELLM_OK) rc = prefill_alloc(e, &P.h, n * c.dim);
    if (rc == EDGELLM_OK) rc = prefill_alloc(e, &P.q, n * qdim);
    if (rc == EDGELLM_OK) rc = prefill_alloc(e, &P.k, n * kvdim);
    if (rc == EDGELLM_OK) rc = prefill_alloc(e, &P.v, n * kvdim);
    if (rc == EDGELLM_OK) rc = prefill_alloc(e, &P.qh, n * qdim);
    if (rc == EDGELLM_OK) rc = prefill_alloc(e, &P.att, n * qdim);
    if (rc == EDGELLM_OK) rc = prefill_alloc(e, &P.ffn, n * c.hidden);
    if (rc == EDGELLM_OK && mixed_ffn) rc = prefill_alloc(e, &P.gate, n * c.hidden);
    if (rc == EDGELLM_OK && mixed_ffn) rc = prefill_alloc(e, &P.up, n * c.hidden);
    if (rc == EDGELLM_OK && post_norms) rc = prefill_alloc(e, &P.o, n * c.dim);
    if (rc != EDGELLM_OK) {
        prefill_free(e);
        return rc;
    }
    P.chunk = chunk;
    return EDGELLM_OK;
}

// Rows of logits prefill_logits computes at a time (a [rows, vocab] fp32 buffer).
constexpr int kLogitRows = 64;

int logit_buffer(edgellm_engine *e, int rows) {
    edgellm_engine::Prefill &P = e->prefill;
    if (P.logit_rows >= rows) return EDGELLM_OK;
    TRY(prefill_alloc(e, &P.logits, (size_t)rows * e->cfg.vocab));
    P.logit_rows = rows;
    return EDGELLM_OK;
}

// The product of w with the chunk's fp16 rows `in` into the residual stream P.x: added in the GEMM's epilogue, or
// (gemma's post-norms) written to P.o, normed and added.
int prefill_residual(edgellm_engine *e, const edgellm_qmatrix &w, const void *in, const float *post_norm, int c) {
    edgellm_engine::Prefill &P = e->prefill;
    const edgellm_qmatrix *wp = &w;
    void *x = P.x, *o = P.o;
    if (!post_norm) return edgellm_gemm(&wp, &x, nullptr, 1, in, c, EDGELLM_GEMM_ADD_F32, e->stream);
    TRY(edgellm_gemm(&wp, &o, nullptr, 1, in, c, EDGELLM_GEMM_F32, e->stream));
    return edgellm_rmsnorm_add(P.x, P.o, post_norm, c, e->cfg.dim, e->cfg.norm_eps, e->stream);
}

// One layer over the chunk of c tokens at positions *pos .. *pos + c - 1 (host copy p0): P.x is the residual stream.
int prefill_layer(edgellm_engine *e, int i, int c, int p0) {
    const edgellm_model_config &cfg = e->cfg;
    const edgellm_layer &L = e->layers[i];
    edgellm_engine::Prefill &P = e->prefill;
    const int qdim = cfg.n_heads * cfg.head_dim, kvdim = cfg.n_kv_heads * cfg.head_dim;
    TRY(edgellm_rmsnorm_f16(P.x, L.attn_norm, P.h, c, cfg.dim, cfg.norm_eps, e->stream));
    const edgellm_qmatrix *w[3] = {&L.wq, &L.wk, &L.wv};
    void *y[3] = {P.q, P.k, P.v};
    const float *b[3] = {L.bq, L.bk, L.bv};
    if (same_kind(L.wq, L.wk) && same_kind(L.wq, L.wv)) {
        TRY(edgellm_gemm(w, y, b, 3, P.h, c, EDGELLM_GEMM_F32, e->stream));
    } else {  // mixed quant types (Q4_K_M's V is often Q6_K): one launch each
        for (int j = 0; j < 3; ++j) TRY(edgellm_gemm(&w[j], &y[j], &b[j], 1, P.h, c, EDGELLM_GEMM_F32, e->stream));
    }
    // RoPE and the cache append of the decode step's unfused path, over c rows at *pos + t.
    TRY(qk_norms(e, L, P.q, P.k, c));
    const float base = rope_base(cfg, L), attn_factor = rope_attn_factor(cfg);
    TRY(edgellm_rope(P.q, c, cfg.n_heads, cfg.head_dim, qdim, e->pos, base, e->rope_factors, cfg.rope_neox,
                     attn_factor, e->stream));
    TRY(edgellm_rope(P.k, c, cfg.n_kv_heads, cfg.head_dim, kvdim, e->pos, base, e->rope_factors, cfg.rope_neox,
                     attn_factor, e->stream));
    TRY(edgellm_kv_append(P.k, e->kcache[i], c, kvdim, kvdim, e->pos, e->stream));
    TRY(edgellm_kv_append(P.v, e->vcache[i], c, kvdim, kvdim, e->pos, e->stream));
    TRY(edgellm_to_f16(P.q, P.qh, (int64_t)c * qdim, e->stream));
    // The chunk's queries against the cache rows 0 .. p0 + c - 1, read in place (rows of kvdim, heads of head_dim).
    edgellm_prefill_args a{};
    a.q = P.qh, a.k = e->kcache[i], a.v = e->vcache[i], a.o = P.att;
    a.q_layout = a.o_layout = edgellm_layout{(int64_t)c * qdim, qdim, cfg.head_dim};
    a.k_layout = a.v_layout = edgellm_layout{(int64_t)cfg.max_context * kvdim, kvdim, cfg.head_dim};
    a.batch = 1, a.seq_q = c, a.seq_k = p0 + c, a.n_heads = cfg.n_heads, a.n_kv_heads = cfg.n_kv_heads;
    a.head_dim = cfg.head_dim, a.softmax_scale = softmax_scale(cfg), a.causal = 1;
    a.window = L.window, a.softcap = cfg.attn_softcap;
    TRY(edgellm_attention_prefill(&a, EDGELLM_F16, e->stream));
    TRY(prefill_residual(e, L.wo, P.att, L.post_attn_norm, c));
    TRY(edgellm_rmsnorm_f16(P.x, L.ffn_norm, P.h, c, cfg.dim, cfg.norm_eps, e->stream));
    if (geglu(cfg)) {
        const edgellm_qmatrix *g = &L.w_gate, *u = &L.w_up;
        void *gy = P.gate, *uy = P.up;
        if (same_kind(L.w_gate, L.w_up)) {
            const edgellm_qmatrix *gu[2] = {g, u};
            void *out[2] = {gy, uy};
            TRY(edgellm_gemm(gu, out, nullptr, 2, P.h, c, EDGELLM_GEMM_F32, e->stream));
        } else {
            TRY(edgellm_gemm(&g, &gy, nullptr, 1, P.h, c, EDGELLM_GEMM_F32, e->stream));
            TRY(edgellm_gemm(&u, &uy, nullptr, 1, P.h, c, EDGELLM_GEMM_F32, e->stream));
        }
        TRY(edgellm_geglu_f16(P.gate, P.up, P.ffn, c, cfg.hidden, e->stream));
    } else if (same_kind(L.w_gate, L.w_up)) {
        const edgellm_qmatrix *gu[2] = {&L.w_gate, &L.w_up};
        void *out[2] = {P.ffn, nullptr};
        TRY(edgellm_gemm(gu, out, nullptr, 2, P.h, c, EDGELLM_GEMM_SWIGLU_F16, e->stream));
    } else {
        const edgellm_qmatrix *g = &L.w_gate, *u = &L.w_up;
        void *gy = P.gate, *uy = P.up;
        TRY(edgellm_gemm(&g, &gy, nullptr, 1, P.h, c, EDGELLM_GEMM_F32, e->stream));
        TRY(edgellm_gemm(&u, &uy, nullptr, 1, P.h, c, EDGELLM_GEMM_F32, e->stream));
        TRY(edgellm_swiglu_f16(P.gate, P.up, P.ffn, c, cfg.hidden, e->stream));
    }
    return prefill_residual(e, L.w_down, P.ffn, L.post_ffn_norm, c);
}

// Both prefill entry points: every layer chunk by chunk, the position advanced on the device and the host after each
// chunk; with host_all, every position's logits from the LM head GEMM (its last row also the engine's logits), else
// the last position's from the decode step's own norm and GEMV.  Then argmax and the last advance, as a step ends.
int prefill(edgellm_engine *e, const int *tokens, int n, int chunk, float *host_all, int *next) {
    if (!e || !tokens || n < 1 || chunk < 1 || e->launched != e->collected) return EDGELLM_ERR_ARGUMENT;
    const edgellm_model_config &cfg = e->cfg;
    if (n > cfg.max_context - e->position) return EDGELLM_ERR_ARGUMENT;
    for (int t = 0; t < n; ++t)
        if (tokens[t] < 0 || tokens[t] >= cfg.vocab) return EDGELLM_ERR_ARGUMENT;
    chunk = std::min(std::min(chunk, n), 65535);
    TRY(prefill_buffers(e, chunk));
    if (host_all) TRY(logit_buffer(e, std::min(chunk, kLogitRows)));
    edgellm_engine::Prefill &P = e->prefill;
    for (int t0 = 0; t0 < n; t0 += chunk) {
        const int c = std::min(chunk, n - t0), p0 = e->position;
        const bool last = t0 + c == n;
        TRY(cuda_rc(cudaMemcpyAsync(P.tokens, tokens + t0, c * sizeof(int), cudaMemcpyHostToDevice, e->stream)));
        TRY(edgellm_embed_rows(&e->embd, P.tokens, c, P.x, e->stream));
        if (cfg.embedding_scale != 0.f && cfg.embedding_scale != 1.f)
            TRY(edgellm_scale(P.x, (int64_t)c * cfg.dim, cfg.embedding_scale, e->stream));
        for (int i = 0; i < cfg.n_layers; ++i) TRY(prefill_layer(e, i, c, p0));
        if (host_all) {
            TRY(edgellm_rmsnorm_f16(P.x, e->output_norm, P.h, c, cfg.dim, cfg.norm_eps, e->stream));
            for (int r0 = 0; r0 < c; r0 += P.logit_rows) {
                const int rows = std::min(P.logit_rows, c - r0);
                const edgellm_qmatrix *w = &e->output;
                void *y = P.logits;
                TRY(edgellm_gemm(&w, &y, nullptr, 1, P.h + (size_t)r0 * cfg.dim, rows, EDGELLM_GEMM_F32, e->stream));
                TRY(cap_logits(e, P.logits, rows));
                TRY(cuda_rc(cudaMemcpyAsync(host_all + (size_t)(t0 + r0) * cfg.vocab, P.logits,
                                            (size_t)rows * cfg.vocab * sizeof(float), cudaMemcpyDeviceToHost,
                                            e->stream)));
                if (last && r0 + rows == c)
                    TRY(cuda_rc(cudaMemcpyAsync(e->logits, P.logits + (size_t)(rows - 1) * cfg.vocab,
                                                cfg.vocab * sizeof(float), cudaMemcpyDeviceToDevice, e->stream)));
            }
        } else if (last) {
            TRY(edgellm_rmsnorm_quantize(P.x + (size_t)(c - 1) * cfg.dim, e->output_norm, cfg.dim, cfg.norm_eps, e->xq,
                                         e->xds, e->stream));
            TRY(edgellm_gemv(&e->output, e->xq, e->xds, e->logits, e->stream));
            TRY(cap_logits(e, e->logits, 1));
        }
        const int advance = last ? c - 1 : c;  // the last position's advance is the argmax's, as in a step
        if (advance > 0) {
            advance_by_kernel<<<1, 1, 0, e->stream>>>(e->pos, advance);
            TRY(edgellm::check_launch());
        }
        e->position += advance;
    }
    TRY(edgellm_argmax_advance(e->logits, cfg.vocab, e->token, e->pos, e->stream));
    e->position += 1;
    int *host_next = e->host_token + 2 * edgellm_engine::kQueuedSteps;
    TRY(cuda_rc(cudaMemcpyAsync(host_next, e->token, sizeof(int), cudaMemcpyDeviceToHost, e->stream)));
    TRY(cuda_rc(cudaStreamSynchronize(e->stream)));
    if (next) *next = *host_next;
    return EDGELLM_OK;
}

// One step queued on the stream: the fed token copied in (token >= 0), the step (run eagerly the first time,
// captured the second, replayed after), its choice copied to the step's host slot and an event recorded after it.
int launch_step(edgellm_engine *e, int token) {
    constexpr int kQueued = edgellm_engine::kQueuedSteps;
    if (token >= e->cfg.vocab || e->position >= e->cfg.max_context || e->launched - e->collected >= kQueued)
        return EDGELLM_ERR_ARGUMENT;
    const int slot = static_cast<int>(e->launched % kQueued);
    int *fed = e->host_token + kQueued + slot, *chosen = e->host_token + slot;
    if (token >= 0) {
        // The slot's previous step has been collected, so its copy in has run: the slot may be written.
        *fed = token;
        TRY(cuda_rc(cudaMemcpyAsync(e->token, fed, sizeof(int), cudaMemcpyHostToDevice, e->stream)));
    }
    if (e->exec) {
        TRY(cuda_rc(cudaGraphLaunch(e->exec, e->stream)));
    } else if (e->steps == 0) {
        TRY(enqueue_step(e));  // the first step runs eagerly: kernels configure themselves outside any capture
    } else {
        TRY(cuda_rc(cudaStreamSynchronize(e->stream)));  // the capture starts on an idle stream, once
        TRY(cuda_rc(cudaStreamBeginCapture(e->stream, cudaStreamCaptureModeRelaxed)));
        const int rc = enqueue_step(e);
        cudaGraph_t graph = nullptr;
        const int end_rc = cuda_rc(cudaStreamEndCapture(e->stream, &graph));
        if (rc != EDGELLM_OK) return rc;
        TRY(end_rc);
        e->graph = graph;
        TRY(cuda_rc(cudaGraphInstantiate(&e->exec, graph, 0)));
        TRY(cuda_rc(cudaGraphLaunch(e->exec, e->stream)));
    }
    ++e->steps, ++e->position, ++e->launched;
    TRY(cuda_rc(cudaMemcpyAsync(chosen, e->token, sizeof(int), cudaMemcpyDeviceToHost, e->stream)));
    return cuda_rc(cudaEventRecord(e->chosen[slot], e->stream));
}

}  // namespace

extern "C" int edgellm_engine_create(const edgellm_model_config *c, const edgellm_layer *layers,
                                     const edgellm_qmatrix *embd, const edgellm_qmatrix *output,
                                     const float *output_norm, const float *rope_factors, edgellm_engine **out) {
    if (!c || !layers || !embd || !output || !output_norm || !out || c->n_layers <= 0 || c->dim % 32 ||
        c->hidden % 32 || c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads ||
        (c->head_dim != 64 && c->head_dim != 96 && c->head_dim != 128 && c->head_dim != 256) ||
        c->max_context < 1 || c->vocab < 1)
        return EDGELLM_ERR_ARGUMENT;
    edgellm_engine *e = new (std::nothrow) edgellm_engine();
    if (!e) return EDGELLM_ERR_ARGUMENT;
    e->cfg = *c;
    e->layers.assign(layers, layers + c->n_layers);
    e->embd = *embd, e->output = *output, e->output_norm = output_norm, e->rope_factors = rope_factors;
    int rc = cuda_rc(cudaStreamCreateWithFlags(&e->stream, cudaStreamNonBlocking));
    const int qdim = c->n_heads * c->head_dim, kvdim = c->n_kv_heads * c->head_dim;
    const int widest = std::max(std::max(c->dim, c->hidden), qdim);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->x, c->dim);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->h, c->dim);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->tmp, c->dim);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->q, qdim);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->att, qdim);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->k, kvdim);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->v, kvdim);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->gate_up, 2 * (size_t)c->hidden);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->ffn, c->hidden);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->logits, c->vocab);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->xq, EDGELLM_ACT_BYTES(widest));
    if (rc == EDGELLM_OK) rc = alloc(e, &e->xds, widest / 32);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->ffn_xq, EDGELLM_ACT_BYTES(c->hidden));
    if (rc == EDGELLM_OK) rc = alloc(e, &e->ffn_xds, c->hidden / 32);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->swiglu_counters, edgellm_gemv_swiglu_counters_bytes(c->hidden) / 4);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->rope_table, c->head_dim / 2);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->pos, 1);
    if (rc == EDGELLM_OK) rc = alloc(e, &e->token, 1);
    for (int i = 0; rc == EDGELLM_OK && i < c->n_layers; ++i) {
        __half *kc = nullptr, *vc = nullptr;
        rc = alloc(e, &kc, (size_t)c->max_context * kvdim);
        if (rc == EDGELLM_OK) rc = alloc(e, &vc, (size_t)c->max_context * kvdim);
        e->kcache.push_back(kc), e->vcache.push_back(vc);
    }
    // The decode attention's grid is sized once, for the whole context, as the attention kernel would size it for a
    // cache that long (one wave of blocks); at every replay the kernel shares the live cache among as many of those
    // splits as it fills.
    if (rc == EDGELLM_OK) {
        edgellm_decode_args a = attention_args(e, 0);
        a.window = 0;  // sized for a global layer's whole cache; a window's rows fill fewer of the splits
        e->decode_impl = decode_attention_impl();
        e->splits = std::max(1, edgellm_decode_splits_impl(&a, EDGELLM_F16, e->decode_impl));
        e->workspace_bytes = edgellm_decode_workspace_bytes(1, c->n_heads, c->head_dim, e->splits);
        rc = alloc(e, reinterpret_cast<unsigned char **>(&e->workspace), e->workspace_bytes);
    }
    if (rc == EDGELLM_OK) rc = cuda_rc(cudaMallocHost(&e->host_token, (2 * edgellm_engine::kQueuedSteps + 1) * sizeof(int)));
    for (cudaEvent_t &ev : e->chosen)
        if (rc == EDGELLM_OK) rc = cuda_rc(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    if (rc == EDGELLM_OK) rc = cuda_rc(cudaStreamSynchronize(e->stream));
    if (rc != EDGELLM_OK) {
        edgellm_engine_destroy(e);
        return rc;
    }
    *out = e;
    return EDGELLM_OK;
}

extern "C" int edgellm_engine_reset(edgellm_engine *e) {
    if (!e) return EDGELLM_ERR_ARGUMENT;
    TRY(cuda_rc(cudaMemsetAsync(e->pos, 0, sizeof(int), e->stream)));
    e->position = 0;
    TRY(cuda_rc(cudaStreamSynchronize(e->stream)));
    e->collected = e->launched;  // steps still queued have run; their choices are dropped
    return EDGELLM_OK;
}

extern "C" int edgellm_engine_step(edgellm_engine *e, int token, int *next) {
    if (!e || !next || e->launched != e->collected) return EDGELLM_ERR_ARGUMENT;
    TRY(launch_step(e, token));
    return edgellm_engine_collect(e, next);
}

extern "C" int edgellm_engine_launch(edgellm_engine *e, int token) {
    if (!e) return EDGELLM_ERR_ARGUMENT;
    return launch_step(e, token);
}

extern "C" int edgellm_engine_collect(edgellm_engine *e, int *next) {
    if (!e || !next || e->collected == e->launched) return EDGELLM_ERR_ARGUMENT;
    const int slot = static_cast<int>(e->collected % edgellm_engine::kQueuedSteps);
    TRY(cuda_rc(cudaEventSynchronize(e->chosen[slot])));
    *next = e->host_token[slot];
    ++e->collected;
    return EDGELLM_OK;
}

extern "C" int edgellm_engine_prefill(edgellm_engine *e, const int *tokens, int n, int chunk, int *next) {
    if (!next) return EDGELLM_ERR_ARGUMENT;
    return prefill(e, tokens, n, chunk, nullptr, next);
}

extern "C" int edgellm_engine_prefill_logits(edgellm_engine *e, const int *tokens, int n, int chunk,
                                             float *host_all) {
    if (!host_all) return EDGELLM_ERR_ARGUMENT;
    return prefill(e, tokens, n, chunk, host_all, nullptr);
}

extern "C" int edgellm_engine_graph_nodes(edgellm_engine *e, size_t *count) {
    if (!e || !count) return EDGELLM_ERR_ARGUMENT;
    *count = 0;
    return e->graph ? cuda_rc(cudaGraphGetNodes(e->graph, nullptr, count)) : EDGELLM_OK;
}

extern "C" int edgellm_engine_logits(edgellm_engine *e, float *host) {
    if (!e || !host) return EDGELLM_ERR_ARGUMENT;
    TRY(cuda_rc(cudaMemcpyAsync(host, e->logits, e->cfg.vocab * sizeof(float), cudaMemcpyDeviceToHost, e->stream)));
    return cuda_rc(cudaStreamSynchronize(e->stream));
}

extern "C" void edgellm_engine_destroy(edgellm_engine *e) {
    if (!e) return;
    if (e->stream) cudaStreamSynchronize(e->stream);
    if (e->exec) cudaGraphExecDestroy(e->exec);
    if (e->graph) cudaGraphDestroy(e->graph);
    for (void *p : e->owned) cudaFree(p);
    for (void *p : e->prefill.owned) cudaFree(p);
    if (e->host_token) cudaFreeHost(e->host_token);
    for (cudaEvent_t ev : e->chosen)
        if (ev) cudaEventDestroy(ev);
    if (e->stream) cudaStreamDestroy(e->stream);
    delete e;
}

extern "C" int edgellm_device_alloc(size_t bytes, void **ptr) {
    if (!ptr) return EDGELLM_ERR_ARGUMENT;
    return cuda_rc(cudaMalloc(ptr, bytes ? bytes : 16));
}

extern "C" int edgellm_device_upload(void *dst, const void *src, size_t bytes) {
    if (!dst || (!src && bytes)) return EDGELLM_ERR_ARGUMENT;
    return cuda_rc(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

extern "C" int edgellm_device_free(void *ptr) { return cuda_rc(cudaFree(ptr)); }
