// Prefill GEMM benchmark: achieved TFLOP/s of the quantized tensor-core products of one decoder layer (edgellm_gemm)
// at the shapes of Llama 3.2 1B, Llama 3.2 3B and Llama 3.1 8B, for every quant type and chunk of n tokens.
//
//   prefill_bench [--csv PATH] [--quick] [--engine | --engine-only] [--engine-csv PATH]
//
// Per layer: Q/K/V in one launch (bias-free), the output projection added to the residual, gate and up with SwiGLU
// in one product (fp16 out), the down projection added to the residual.  FLOPs are 2 n rows cols per product (the
// SwiGLU product counts both matrices).  Weights are random blocks with fp16 scales of ordinary magnitude (the time
// does not depend on the values); each timing is the median over repetitions of back-to-back calls after a warm-up.
//
// --engine also times edgellm_engine_prefill end to end (host call to greedy token on the host, as a first token's
// time) on whole synthetic models of those shapes: 1B all Q8_0; 3B and 8B Q4_K with Q6_K V, down projection and LM
// head (the mix of Q4_K_M files), weights of about 0.02; prompts of 512, 2048 and 8192 tokens, chunks of 512 and
// 2048; median of 3 after a warm-up; prompt tokens per second.
#include <chrono>
#include <memory>
#include <algorithm>
#include <cstring>
#include <functional>
#include <string>

#include "../edgellm_engine.h"
#include "../tests/common_host.cuh"
#include "../tests/quant_host.cuh"

extern "C" int edgellm_gemm_variant(const edgellm_qmatrix *const *w, void *const *y, const float *const *bias,
                                    int count, const void *x, int n, int epilogue, int bm, void *stream);

__global__ void random_bytes_kernel(uint8_t *p, size_t n, uint64_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = (uint8_t)(splitmix64(seed + i) >> 56);
}
// fp16 values in [lo, hi) (scales, or Q4_1's and Q4_K's second field where `pairs`).
__global__ void random_halves_kernel(__half *p, size_t n, uint64_t seed, float lo, float hi) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const double u = (splitmix64(seed + i) >> 11) * (1.0 / 9007199254740992.0);
        p[i] = __float2half_rn((float)(lo + (hi - lo) * u));
    }
}

// Bytes of field `which` (0 qs, 1 qh, 2 scales, 3 d) of a [rows, cols] matrix.
static size_t field_size(int qtype, int rows, int cols, int which) {
    int b[4];
    field_bytes(qtype, b[0], b[1], b[2], b[3]);
    return (size_t)rows * (cols / block_weights(qtype)) * b[which];
}

// A random matrix made on the device (each field its own allocation).
struct RandomMatrix {
    DeviceBuffer qs, qh, scales, d;
    edgellm_qmatrix m{};
    RandomMatrix(int qtype, int rows, int cols, uint64_t seed, float d_lo = 1e-3f, float d_hi = 2e-2f)
        : qs(field_size(qtype, rows, cols, 0)), qh(field_size(qtype, rows, cols, 1)),
          scales(field_size(qtype, rows, cols, 2)), d(field_size(qtype, rows, cols, 3)) {
        random_bytes_kernel<<<1024, 256>>>(qs.as<uint8_t>(), qs.bytes, seed);
        if (qh.bytes) random_bytes_kernel<<<1024, 256>>>(qh.as<uint8_t>(), qh.bytes, seed + 1);
        if (scales.bytes) random_bytes_kernel<<<1024, 256>>>(scales.as<uint8_t>(), scales.bytes, seed + 2);
        random_halves_kernel<<<1024, 256>>>(d.as<__half>(), d.bytes / 2, seed + 3, d_lo, d_hi);
        CUDA_CHECK(cudaGetLastError());
        m.qs = qs.ptr, m.qh = qh.bytes ? qh.ptr : nullptr, m.scales = scales.bytes ? scales.ptr : nullptr, m.d = d.ptr;
        m.qtype = qtype, m.rows = rows, m.cols = cols;
    }
};

static uint64_t splitmix64_host(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static double median_ms(const std::function<void()> &fn, int calls, int reps) {
    cudaEvent_t a, b;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    for (int i = 0; i < calls; ++i) fn();
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
        CUDA_CHECK(cudaEventRecord(a));
        for (int i = 0; i < calls; ++i) fn();
        CUDA_CHECK(cudaEventRecord(b));
        CUDA_CHECK(cudaEventSynchronize(b));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms / calls);
    }
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaEventDestroy(a));
    CUDA_CHECK(cudaEventDestroy(b));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

// Scales that give weights of about 0.02 (a trained model's order): d times the type's typical |q| (and scale).
static float typical_d(int qtype) {
    switch (qtype) {
    case EDGELLM_Q8_0: return 0.02f / 64;
    case EDGELLM_Q4_K: return 0.02f / 240;
    case EDGELLM_Q6_K: return 0.02f / 1024;
    default: return 0.02f / 8;
    }
}

struct EngineModel {
    const char *name;
    int n_layers, dim, hidden, n_heads, n_kv_heads, head_dim, vocab;
    int main_type, v_down_type, output_type;
};

static void engine_section(FILE *csv, const char *device) {
    const EngineModel models[] = {
        {"llama3.2-1b-q8_0", 16, 2048, 8192, 32, 8, 64, 128256, EDGELLM_Q8_0, EDGELLM_Q8_0, EDGELLM_Q8_0},
        {"llama3.2-3b-q4_k_m", 28, 3072, 8192, 24, 8, 128, 128256, EDGELLM_Q4_K, EDGELLM_Q6_K, EDGELLM_Q6_K},
        {"llama3.1-8b-q4_k_m", 32, 4096, 14336, 32, 8, 128, 128256, EDGELLM_Q4_K, EDGELLM_Q6_K, EDGELLM_Q6_K}};
    const int max_context = 8192;
    if (csv) std::fprintf(csv, "device,model,prompt_tokens,chunk,ms,prompt_tok_s\n");
    uint64_t seed = 5000;
    for (const EngineModel &em : models) {
        std::vector<std::unique_ptr<RandomMatrix>> mats;
        const auto matrix = [&](int qtype, int rows, int cols) {
            const float d = typical_d(qtype);
            mats.emplace_back(new RandomMatrix(qtype, rows, cols, seed++, 0.5f * d, 1.5f * d));
            return mats.back()->m;
        };
        DeviceBuffer ones((size_t)std::max(em.dim, em.hidden) * 4);
        {
            std::vector<float> h(ones.bytes / 4, 1.f);
            CUDA_CHECK(cudaMemcpy(ones.ptr, h.data(), ones.bytes, cudaMemcpyHostToDevice));
        }
        const int qdim = em.n_heads * em.head_dim, kvdim = em.n_kv_heads * em.head_dim;
        std::vector<edgellm_layer> layers(em.n_layers);
        for (edgellm_layer &L : layers) {
            L.wq = matrix(em.main_type, qdim, em.dim), L.wk = matrix(em.main_type, kvdim, em.dim);
            L.wv = matrix(em.v_down_type, kvdim, em.dim), L.wo = matrix(em.main_type, em.dim, qdim);
            L.w_gate = matrix(em.main_type, em.hidden, em.dim), L.w_up = matrix(em.main_type, em.hidden, em.dim);
            L.w_down = matrix(em.v_down_type, em.dim, em.hidden);
            L.attn_norm = L.ffn_norm = ones.as<float>();
        }
        const edgellm_qmatrix embd = matrix(em.main_type, em.vocab, em.dim);
        const edgellm_qmatrix output = matrix(em.output_type, em.vocab, em.dim);
        CUDA_CHECK(cudaDeviceSynchronize());
        edgellm_model_config cfg{};
        cfg.n_layers = em.n_layers, cfg.dim = em.dim, cfg.n_heads = em.n_heads, cfg.n_kv_heads = em.n_kv_heads;
        cfg.head_dim = em.head_dim, cfg.hidden = em.hidden, cfg.vocab = em.vocab, cfg.max_context = max_context;
        cfg.norm_eps = 1e-5f, cfg.rope_base = 500000.f, cfg.rope_neox = 0, cfg.unfused = 0;
        edgellm_engine *e = nullptr;
        EDGELLM_CHECK(edgellm_engine_create(&cfg, layers.data(), &embd, &output, ones.as<float>(), nullptr, &e));
        std::vector<int> tokens(max_context);
        for (int i = 0; i < max_context; ++i) tokens[i] = (int)(splitmix64_host(i) % em.vocab);
        for (int n : {512, 2048, 8192})
            for (int chunk : {512, 2048}) {
                if (chunk > n) continue;
                std::vector<double> ms;
                for (int r = 0; r < 4; ++r) {  // the first is a warm-up (buffers, kernel attributes)
                    EDGELLM_CHECK(edgellm_engine_reset(e));
                    int next = 0;
                    const auto t0 = std::chrono::steady_clock::now();
                    EDGELLM_CHECK(edgellm_engine_prefill(e, tokens.data(), n, chunk, &next));
                    const auto t1 = std::chrono::steady_clock::now();
                    if (r > 0) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
                }
                std::sort(ms.begin(), ms.end());
                const double med = ms[ms.size() / 2];
                std::printf("engine %-20s prompt %5d chunk %4d %9.2f ms %9.0f prompt tok/s\n", em.name, n, chunk, med,
                            n / (med * 1e-3));
                if (csv) std::fprintf(csv, "%s,%s,%d,%d,%.3f,%.1f\n", device, em.name, n, chunk, med, n / (med * 1e-3));
            }
        edgellm_engine_destroy(e);
    }
}

struct ModelShape {
    const char *name;
    int dim, hidden, n_heads, n_kv_heads, head_dim;
};

int main(int argc, char **argv) {
    const char *csv_path = nullptr, *engine_csv_path = nullptr;
    bool quick = false, engine = false, engine_only = false;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--csv") && i + 1 < argc) csv_path = argv[++i];
        else if (!std::strcmp(argv[i], "--engine-csv") && i + 1 < argc) engine_csv_path = argv[++i];
        else if (!std::strcmp(argv[i], "--quick")) quick = true;
        else if (!std::strcmp(argv[i], "--engine")) engine = true;
        else if (!std::strcmp(argv[i], "--engine-only")) engine = engine_only = true;
        else {
            std::fprintf(stderr, "usage: %s [--csv PATH] [--quick] [--engine | --engine-only] [--engine-csv PATH]\n",
                         argv[0]);
            return 2;
        }
    }
    FILE *csv = nullptr;
    if (csv_path && !(csv = std::fopen(csv_path, "w"))) {
        std::fprintf(stderr, "error: cannot write %s\n", csv_path);
        return 2;
    }
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
    if (csv) std::fprintf(csv, "device,model,qtype,n,product,rows,cols,ms,tflops\n");
    const ModelShape models[] = {{"llama3.2-1b", 2048, 8192, 32, 8, 64},
                                 {"llama3.2-3b", 3072, 8192, 24, 8, 128},
                                 {"llama3.1-8b", 4096, 14336, 32, 8, 128}};
    const int types[] = {EDGELLM_Q4_0, EDGELLM_Q4_1, EDGELLM_Q5_0, EDGELLM_Q8_0, EDGELLM_Q4_K, EDGELLM_Q6_K};
    const std::vector<int> ns = quick ? std::vector<int>{512} : std::vector<int>{512, 2048};
    const int max_n = 2048;
    uint64_t seed = 1000;
    for (const ModelShape &ms : models) {
        if (engine_only) break;
        const int d = ms.dim, f = ms.hidden, kv = ms.n_kv_heads * ms.head_dim, qd = ms.n_heads * ms.head_dim;
        DeviceBuffer x((size_t)max_n * std::max(d, f) * 2), y0((size_t)max_n * std::max(qd, f) * 4),
            y1((size_t)max_n * kv * 4), y2((size_t)max_n * kv * 4), res((size_t)max_n * d * 4);
        fill_uniform(x.ptr, EDGELLM_F16, x.bytes / 2, 7, 1.f);
        CUDA_CHECK(cudaMemset(res.ptr, 0, res.bytes));
        for (int qt : types) {
            RandomMatrix wq(qt, qd, d, seed++), wk(qt, kv, d, seed++), wv(qt, kv, d, seed++), wo(qt, d, qd, seed++),
                wg(qt, f, d, seed++), wu(qt, f, d, seed++), wd(qt, d, f, seed++);
            CUDA_CHECK(cudaDeviceSynchronize());
            for (int n : ns) {
                double layer_ms = 0, layer_flop = 0;
                const auto run = [&](const char *what, const edgellm_qmatrix *const *w, void *const *y, int count,
                                     int epi, int rows, int cols, double flop) {
                    const double t = median_ms(
                        [&] { EDGELLM_CHECK(edgellm_gemm_variant(w, y, nullptr, count, x.ptr, n, epi, 0, nullptr)); },
                        3, quick ? 5 : 9);
                    const double tf = flop / (t * 1e-3) / 1e12;
                    layer_ms += t, layer_flop += flop;
                    std::printf("%-12s %-4s n=%-5d %-10s %6d x %-6d %8.3f ms %7.1f TFLOP/s\n", ms.name,
                                qtype_name(qt), n, what, rows, cols, t, tf);
                    if (csv)
                        std::fprintf(csv, "%s,%s,%s,%d,%s,%d,%d,%.5f,%.2f\n", prop.name, ms.name, qtype_name(qt), n,
                                     what, rows, cols, t, tf);
                };
                {
                    const edgellm_qmatrix *w[3] = {&wq.m, &wk.m, &wv.m};
                    void *y[3] = {y0.ptr, y1.ptr, y2.ptr};
                    run("qkv", w, y, 3, EDGELLM_GEMM_F16, qd + 2 * kv, d, 2.0 * n * (qd + 2 * kv) * d);
                }
                {
                    const edgellm_qmatrix *w[1] = {&wo.m};
                    void *y[1] = {res.ptr};
                    run("out+res", w, y, 1, EDGELLM_GEMM_ADD_F32, d, qd, 2.0 * n * d * qd);
                }
                {
                    const edgellm_qmatrix *w[2] = {&wg.m, &wu.m};
                    void *y[2] = {y0.ptr, nullptr};
                    run("gate_up", w, y, 2, EDGELLM_GEMM_SWIGLU_F16, 2 * f, d, 2.0 * n * 2 * f * d);
                }
                {
                    const edgellm_qmatrix *w[1] = {&wd.m};
                    void *y[1] = {res.ptr};
                    run("down+res", w, y, 1, EDGELLM_GEMM_ADD_F32, d, f, 2.0 * n * d * f);
                }
                const double tf = layer_flop / (layer_ms * 1e-3) / 1e12;
                std::printf("%-12s %-4s n=%-5d %-10s %17s %8.3f ms %7.1f TFLOP/s\n", ms.name, qtype_name(qt), n,
                            "layer", "", layer_ms, tf);
                if (csv)
                    std::fprintf(csv, "%s,%s,%s,%d,layer,0,0,%.5f,%.2f\n", prop.name, ms.name, qtype_name(qt), n,
                                 layer_ms, tf);
            }
        }
    }
    if (csv) std::fclose(csv);
    if (engine) {
        FILE *ecsv = nullptr;
        if (engine_csv_path && !(ecsv = std::fopen(engine_csv_path, "w"))) {
            std::fprintf(stderr, "error: cannot write %s\n", engine_csv_path);
            return 2;
        }
        engine_section(ecsv, prop.name);
        if (ecsv) std::fclose(ecsv);
    }
    return 0;
}
