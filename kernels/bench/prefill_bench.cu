// Prefill GEMM benchmark: achieved TFLOP/s of the quantized tensor-core products of one decoder layer (edgellm_gemm)
// at the shapes of Llama 3.2 1B, Llama 3.2 3B and Llama 3.1 8B, for every quant type and chunk of n tokens.
//
//   prefill_bench [--csv PATH] [--quick]
//
// Per layer: Q/K/V in one launch (bias-free), the output projection added to the residual, gate and up with SwiGLU
// in one product (fp16 out), the down projection added to the residual.  FLOPs are 2 n rows cols per product (the
// SwiGLU product counts both matrices).  Weights are random blocks with fp16 scales of ordinary magnitude (the time
// does not depend on the values); each timing is the median over repetitions of back-to-back calls after a warm-up.
#include <algorithm>
#include <cstring>
#include <functional>
#include <string>

#include "../edgellm_prefill.h"
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
    RandomMatrix(int qtype, int rows, int cols, uint64_t seed)
        : qs(field_size(qtype, rows, cols, 0)), qh(field_size(qtype, rows, cols, 1)),
          scales(field_size(qtype, rows, cols, 2)), d(field_size(qtype, rows, cols, 3)) {
        random_bytes_kernel<<<1024, 256>>>(qs.as<uint8_t>(), qs.bytes, seed);
        if (qh.bytes) random_bytes_kernel<<<1024, 256>>>(qh.as<uint8_t>(), qh.bytes, seed + 1);
        if (scales.bytes) random_bytes_kernel<<<1024, 256>>>(scales.as<uint8_t>(), scales.bytes, seed + 2);
        random_halves_kernel<<<1024, 256>>>(d.as<__half>(), d.bytes / 2, seed + 3, 1e-3f, 2e-2f);
        CUDA_CHECK(cudaGetLastError());
        m.qs = qs.ptr, m.qh = qh.bytes ? qh.ptr : nullptr, m.scales = scales.bytes ? scales.ptr : nullptr, m.d = d.ptr;
        m.qtype = qtype, m.rows = rows, m.cols = cols;
    }
};

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

struct ModelShape {
    const char *name;
    int dim, hidden, n_heads, n_kv_heads, head_dim;
};

int main(int argc, char **argv) {
    const char *csv_path = nullptr;
    bool quick = false;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--csv") && i + 1 < argc) csv_path = argv[++i];
        else if (!std::strcmp(argv[i], "--quick")) quick = true;
        else {
            std::fprintf(stderr, "usage: %s [--csv PATH] [--quick]\n", argv[0]);
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
    return 0;
}
