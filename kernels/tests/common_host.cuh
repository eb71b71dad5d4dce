// Host helpers shared by the accuracy test and the benchmark: checked CUDA calls, device buffers, random fills.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../attention_common.cuh"

#define CUDA_CHECK(call)                                                                                   \
    do {                                                                                                   \
        cudaError_t err_ = (call);                                                                         \
        if (err_ != cudaSuccess) {                                                                         \
            std::fprintf(stderr, "error: %s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(err_)); \
            std::exit(2);                                                                                  \
        }                                                                                                  \
    } while (0)

#define EDGELLM_CHECK(call)                                                                                    \
    do {                                                                                                       \
        int rc_ = (call);                                                                                      \
        if (rc_ != EDGELLM_OK) {                                                                               \
            std::fprintf(stderr, "error: %s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call, edgellm_error_string(rc_), \
                         edgellm_last_cuda_error());                                                           \
            std::exit(2);                                                                                      \
        }                                                                                                      \
    } while (0)

struct DeviceBuffer {
    void *ptr = nullptr;
    size_t bytes = 0;
    DeviceBuffer() = default;
    explicit DeviceBuffer(size_t n) : bytes(n) { CUDA_CHECK(cudaMalloc(&ptr, n ? n : 16)); }
    ~DeviceBuffer() { if (ptr) cudaFree(ptr); }
    DeviceBuffer(const DeviceBuffer &) = delete;
    DeviceBuffer &operator=(const DeviceBuffer &) = delete;
    template <typename T> T *as() const { return static_cast<T *>(ptr); }
};

inline size_t dtype_size(edgellm_dtype t) { return t == EDGELLM_F32 ? 4 : 2; }
inline const char *dtype_name(edgellm_dtype t) { return t == EDGELLM_F32 ? "f32" : t == EDGELLM_F16 ? "f16" : "bf16"; }

__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Uniform values in [-amp, amp], rounded to T: the reference reads the very same rounded values.
template <typename T>
__global__ void fill_uniform_kernel(T *dst, size_t n, uint64_t seed, float amp) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const double u = (splitmix64(seed * 0x100000001B3ull + i) >> 11) * (1.0 / 9007199254740992.0);
        dst[i] = edgellm::from_float<T>((float)((2.0 * u - 1.0) * amp));
    }
}

inline void fill_uniform(void *dst, edgellm_dtype t, size_t n, uint64_t seed, float amp) {
    const int blocks = 1024;
    if (t == EDGELLM_F32) fill_uniform_kernel<float><<<blocks, 256>>>(static_cast<float *>(dst), n, seed, amp);
    else if (t == EDGELLM_F16) fill_uniform_kernel<__half><<<blocks, 256>>>(static_cast<__half *>(dst), n, seed, amp);
    else fill_uniform_kernel<__nv_bfloat16><<<blocks, 256>>>(static_cast<__nv_bfloat16 *>(dst), n, seed, amp);
    CUDA_CHECK(cudaGetLastError());
}

template <typename T>
__global__ void to_double_kernel(const T *src, double *dst, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = (double)edgellm::to_float(src[i]);
}
inline void to_double(const void *src, edgellm_dtype t, double *dst, size_t n) {
    if (t == EDGELLM_F32) to_double_kernel<float><<<1024, 256>>>(static_cast<const float *>(src), dst, n);
    else if (t == EDGELLM_F16) to_double_kernel<__half><<<1024, 256>>>(static_cast<const __half *>(src), dst, n);
    else to_double_kernel<__nv_bfloat16><<<1024, 256>>>(static_cast<const __nv_bfloat16 *>(src), dst, n);
    CUDA_CHECK(cudaGetLastError());
}

inline edgellm_layout contiguous_layout(int64_t rows_per_batch, int heads, int D) {
    return edgellm_layout{rows_per_batch * heads * D, (int64_t)heads * D, D};
}
