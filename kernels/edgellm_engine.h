/* EdgeLLM's decoder on the GPU: the C API.
 *
 * The caller (src/edgellm/cuda_engine.py) reads the GGUF file, uploads each weight once (edgellm_device_upload;
 * quantized matrices as their planar blocks, edgellm_gemv.h) and describes them here.  A step feeds one token
 * (a prompt token from the host, or the engine's own previous choice, which stays on the device) through every
 * layer, appends its K and V to the fp16 cache, and returns the greedy next token: one 4-byte device-to-host copy
 * per step.  From the second step on, the step is a CUDA graph replayed as is: the position and the token live in
 * device memory.
 */
#ifndef EDGELLM_ENGINE_H
#define EDGELLM_ENGINE_H

#include "edgellm_ops.h"
#include "edgellm_prefill.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Beyond the llama family (the zeros are its behaviour): query_scale multiplies q.k (0: 1/sqrt(head_dim));
 * embedding_scale multiplies the token embeddings (gemma: sqrt(dim); 0 or 1: none); activation 1 is GeGLU with
 * tanh-approximated GELU (gemma), 0 SwiGLU; attn_softcap / final_softcap > 0 soft-cap the attention scores / the
 * logits as cap * tanh(x / cap) (gemma2); rope_attn_factor scales cos and sin (phi3; 0 or 1: none). */
typedef struct {
    int n_layers, dim, n_heads, n_kv_heads, head_dim, hidden, vocab, max_context;
    float norm_eps, rope_base;
    int rope_neox; /* qwen2, phi3, gemma: 1; llama: 0 */
    int unfused;   /* 1: one launch per operation (the reference the fused step is tested against); 0: fused */
    float query_scale, embedding_scale;
    int activation;
    float attn_softcap, final_softcap, rope_attn_factor;
} edgellm_model_config;

/* Fused matrices of a file (phi3's attn_qkv, its ffn_up of gate then up) are passed as row views: wq, wk, wv the
 * row ranges of the one matrix, each a matrix of its own here.  The gemma norms (post_attn_norm, post_ffn_norm: the
 * attention and FFN outputs normed before the residual; q_norm, k_norm: gemma3's per-head norms of [head_dim]) are
 * null where a model has none.  window > 0: a sliding-window layer; rope_base > 0: this layer's RoPE base (gemma3's
 * local layers), else the config's. */
typedef struct {
    edgellm_qmatrix wq, wk, wv, wo, w_gate, w_up, w_down;
    const float *attn_norm, *ffn_norm;
    const float *bq, *bk, *bv; /* null without biases */
    const float *post_attn_norm, *post_ffn_norm, *q_norm, *k_norm;
    int window;
    float rope_base;
} edgellm_layer;

typedef struct edgellm_engine edgellm_engine;

/* layers: n_layers entries; token_embd may be F32/F16 (qtype 0/1) or any planar quant type; output (the LM head)
 * a planar quant matrix; rope_factors null without llama3 scaling.  Weights stay owned by the caller. */
int edgellm_engine_create(const edgellm_model_config *config, const edgellm_layer *layers,
                          const edgellm_qmatrix *token_embd, const edgellm_qmatrix *output, const float *output_norm,
                          const float *rope_factors, edgellm_engine **engine);
/* Forget the sequence: the next step is position 0. */
int edgellm_engine_reset(edgellm_engine *engine);
/* One token through the model.  token >= 0: that token (prompt); token < 0: the previous step's choice.
 * *next: the greedy choice after it.  Refused (EDGELLM_ERR_ARGUMENT) once max_context tokens are in the cache. */
int edgellm_engine_step(edgellm_engine *engine, int token, int *next);
/* edgellm_engine_step in two halves, so that the next step can be queued before this one's choice is read (the GPU
 * then never waits on the host between tokens): launch queues a step (token as in edgellm_engine_step) and returns at
 * once; collect waits for the oldest step queued and gives its choice.  At most 4 steps queued; step, prefill and
 * prefill_logits are refused while any is, reset drops them (after they have run), logits gives the last one's. */
int edgellm_engine_launch(edgellm_engine *engine, int token);
int edgellm_engine_collect(edgellm_engine *engine, int *next);
/* The n prompt tokens as a batch (edgellm_prefill.h), chunk tokens at a time (each chunk's queries attend to the
 * cached prefix and to themselves, its K and V written into the same fp16 cache the step reads), then the last
 * position's logits and greedy choice on the device: afterwards the engine is where n calls of edgellm_engine_step
 * with these tokens would have left it (position advanced by n, *next chosen and held on the device, so
 * edgellm_engine_step(engine, -1, &next) continues from it; edgellm_engine_logits gives the last position's logits).
 * Refused (EDGELLM_ERR_ARGUMENT) before any device work when position + n > max_context or a token is outside the
 * vocabulary.  Work buffers are sized for the chunk at the first call (again only when a larger chunk comes). */
int edgellm_engine_prefill(edgellm_engine *engine, const int *tokens, int n, int chunk, int *next);
/* edgellm_engine_prefill that also writes every position's logits (teacher forcing): host_all [n, vocab] floats in
 * host memory; the engine's state afterwards is the same (the choice taken from the same products' last row). */
int edgellm_engine_prefill_logits(edgellm_engine *engine, const int *tokens, int n, int chunk, float *host_all);
/* The number of kernels (and other nodes) in the captured step graph; 0 before the second step captures it. */
int edgellm_engine_graph_nodes(edgellm_engine *engine, size_t *count);
/* The last step's logits (vocab floats) into host memory (tests and teacher-forced comparisons). */
int edgellm_engine_logits(edgellm_engine *engine, float *host);
void edgellm_engine_destroy(edgellm_engine *engine);

/* Device memory for the weights. */
int edgellm_device_alloc(size_t bytes, void **ptr);
int edgellm_device_upload(void *dst, const void *src, size_t bytes);
int edgellm_device_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif
