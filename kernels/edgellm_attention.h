/* EdgeLLM attention kernels: the C API.
 *
 * FlashAttention-2 style attention on CUDA for the EdgeLLM engine and its tests.  Every pointer is a device pointer;
 * every call only enqueues work on `stream` (no host copies, no synchronisation) and returns EDGELLM_OK or an error
 * code whose text edgellm_error_string() gives.  Launch errors are checked after every launch.
 *
 * Layout: element (b, t, h, d) of a tensor is at  ptr[b*batch_stride + t*row_stride + h*head_stride + d]  (strides in
 * elements, head_dim contiguous), so a KV cache of max_context rows or a fused QKV buffer is used in place.
 */
#ifndef EDGELLM_ATTENTION_H
#define EDGELLM_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    EDGELLM_F32 = 0,
    EDGELLM_F16 = 1,
    EDGELLM_BF16 = 2,
} edgellm_dtype;

enum {
    EDGELLM_OK = 0,
    EDGELLM_ERR_ARGUMENT = 1,      /* a size, stride or pointer the kernels cannot take */
    EDGELLM_ERR_UNSUPPORTED = 2,   /* a head dim / dtype combination that is not built */
    EDGELLM_ERR_WORKSPACE = 3,     /* the decode workspace is too small */
    EDGELLM_ERR_CUDA = 4,          /* a CUDA error; edgellm_last_cuda_error() has its text */
};

typedef struct {
    int64_t batch_stride, row_stride, head_stride;
} edgellm_layout;

/* Causal (or full) attention of seq_q queries against seq_k keys.  With causal set, query i sits at position
 * i + (seq_k - seq_q): the queries are the last seq_q positions (a prompt, or a chunk of one after a cached prefix).
 * Query head h reads KV head h / (n_heads / n_kv_heads) (grouped-query attention; n_heads % n_kv_heads == 0).
 * window > 0 (a sliding-window layer): the query at position p sees only keys p - window + 1 .. p.
 * softcap > 0 (gemma2): each scaled score s becomes softcap * tanh(s / softcap) before the softmax.
 * Zero-initialised arguments (window 0, softcap 0) are plain causal attention. */
typedef struct {
    const void *q, *k, *v;
    void *o;
    edgellm_layout q_layout, k_layout, v_layout, o_layout;
    int batch, seq_q, seq_k, n_heads, n_kv_heads, head_dim;
    float softmax_scale;
    int causal;
    int window;
    float softcap;
} edgellm_prefill_args;

/* Prefill.  dtype F16/BF16: tensor cores, fp32 accumulation and softmax.  F32: the fp32 path (CUDA cores), exact to
 * float rounding, used as the accuracy reference of the engine.  Head dims 64, 96, 128 and 256. */
int edgellm_attention_prefill(const edgellm_prefill_args *args, edgellm_dtype dtype, void *stream);

/* One new query per sequence against its KV cache of seq_k rows (flash-decoding): the cache is split into
 * num_splits chunks along the sequence, each chunk is attended by its own thread block for all the query heads that
 * share a KV head, and the partial results are merged with their log-sum-exp.  q and o are fp32 [batch, n_heads,
 * head_dim] (rows of the layouts unused); k and v are kv_dtype.  num_splits <= 0 picks edgellm_decode_splits().
 * The arithmetic is fp32 on CUDA cores for every KV dtype (exact to float rounding).  Head dims 64, 96, 128, 256.
 * window > 0: only the last `window` rows of the cache are attended to (the splits share those rows alone);
 * softcap > 0: scores soft-capped as in prefill (CUDA cores, fp32 and fp16 caches).  Zero: neither. */
typedef struct {
    const float *q;
    const void *k, *v;
    float *o;
    edgellm_layout q_layout, k_layout, v_layout, o_layout;
    int batch, seq_k, n_heads, n_kv_heads, head_dim;
    float softmax_scale;
    int window;
    float softcap;
} edgellm_decode_args;

int edgellm_attention_decode(const edgellm_decode_args *args, edgellm_dtype kv_dtype, int num_splits,
                             void *workspace, size_t workspace_bytes, void *stream);

/* Decode for a step captured in a CUDA graph: the cache holds *pos + 1 rows (pos in device memory, read at every
 * replay, at most args->seq_k, the capacity, which fixes the split length); num_splits >= 1 must be given.  While the
 * rows fit in the first split, that split alone computes the output.  xq and xds (both or neither; 16- and 8-byte
 * aligned) also receive the output as quantized activations, as edgellm_quantize_activations (edgellm_gemv.h) would
 * make them from the contiguous [batch, n_heads * head_dim] output, bit for bit. */
int edgellm_attention_decode_at(const edgellm_decode_args *args, edgellm_dtype kv_dtype, const int *pos,
                                int num_splits, void *workspace, size_t workspace_bytes, void *xq, void *xds,
                                void *stream);

/* The workspace decode needs for num_splits (partial outputs, their log-sum-exp, arrival counters); 0 when
 * num_splits == 1.  Zero it once (cudaMemset) before its first use: every call leaves its counters at zero again.
 * Calls that may run concurrently need workspaces of their own. */
size_t edgellm_decode_workspace_bytes(int batch, int n_heads, int head_dim, int num_splits);

/* The split count that fills the current device in one wave for this call (at least 1, at most
 * EDGELLM_MAX_SPLITS); callers that decode many steps of one shape compute it once. */
int edgellm_decode_splits(const edgellm_decode_args *args, edgellm_dtype kv_dtype);
#define EDGELLM_MAX_SPLITS 256

const char *edgellm_error_string(int code);
const char *edgellm_last_cuda_error(void);

#ifdef __cplusplus
}
#endif
#endif
