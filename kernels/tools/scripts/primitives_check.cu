// The older architectures' primitives of attention_common.cuh against the sm_80 instructions, on a card of 8.0 or
// newer: mma m16n8k16 from two m16n8k8 (fp16) and from FMAs over shuffled fragments (bf16), and the synchronous
// 16- and 8-byte copies with their zero fill against cp.async.  Inputs are small integers times powers of two, so
// every product and sum is exact in fp32 and both sides must agree bit for bit.
//   nvcc -std=c++17 -O3 -arch=native -I kernels kernels/tools/scripts/primitives_check.cu -o primitives_check
// Exit status 0 when everything agrees, 1 otherwise (each disagreement printed).
#include <cstdio>
#include <cstring>
#include <vector>

#include "attention_common.cuh"

using namespace edgellm;

// -8..7 times 2^-2..2^1: 4-bit significands, so a product spans at most 8 bits and a sum of 16 of them with the
// accumulator stays within fp32's 24 whatever the order of the additions.
template <typename T> __device__ T element(int i) {
    const float v = (float)((i * 7919) % 16 - 8) * (float)(1 << ((i * 31) % 4)) / 4.f;
    return T(v);
}
template <typename T> __device__ uint32_t pair(int i) {  // elements i (low half) and i + 1 (high half)
    const T lo = element<T>(i), hi = element<T>(i + 1);
    uint16_t l, h;
    memcpy(&l, &lo, 2), memcpy(&h, &hi, 2);
    return (uint32_t)l | ((uint32_t)h << 16);
}

// One warp: out[0..127] = the sm_80 product, out[128..255] = the sm_75 one, from the same fragments.
template <typename T> __global__ void mma_kernel(float *out, int seed) {
    const int lane = threadIdx.x;
    uint32_t a[4], b[2];
    for (int r = 0; r < 4; ++r) a[r] = pair<T>(seed + lane * 8 + 2 * r);
    for (int r = 0; r < 2; ++r) b[r] = pair<T>(seed + 5000 + lane * 4 + 2 * r);
    float d80[4], d75[4];
    for (int i = 0; i < 4; ++i) d80[i] = d75[i] = (float)(lane - 16 + i);  // a nonzero accumulator
    mma_16816_sm80<T>(d80, a, b);
    mma_16816_sm75<T>(d75, a, b);
    for (int i = 0; i < 4; ++i) out[lane * 4 + i] = d80[i], out[128 + lane * 4 + i] = d75[i];
}

// One block of 64 threads: thread t copies 16 (t < 32) or 8 bytes of src with src_bytes cycling through 0, a part
// and the whole, asynchronously into one shared buffer and synchronously into another; both are written out.
__global__ void copy_kernel(const unsigned char *src, unsigned char *out) {
    __shared__ __align__(16) unsigned char async_buf[64 * 16], sync_buf[64 * 16];
    const int t = threadIdx.x, size = t < 32 ? 16 : 8;
    const int bytes = (t % 3 == 0) ? 0 : (t % 3 == 1) ? size / 2 : size;
    for (int i = 0; i < 16; ++i) async_buf[t * 16 + i] = sync_buf[t * 16 + i] = 0xAB;  // what a missed fill leaves
    __syncthreads();
    if (size == 16) {
        cp_async_16_sm80(smem_addr(async_buf + t * 16), src + t * 16, bytes);
        copy_sync<uint4>(smem_addr(sync_buf + t * 16), src + t * 16, bytes);
    } else {
        cp_async_8_sm80(smem_addr(async_buf + t * 16), src + t * 16, bytes);
        copy_sync<uint2>(smem_addr(sync_buf + t * 16), src + t * 16, bytes);
    }
    asm volatile("cp.async.commit_group;\n" ::);
    asm volatile("cp.async.wait_group 0;\n" ::);
    __syncthreads();
    for (int i = 0; i < 16; ++i) out[t * 16 + i] = async_buf[t * 16 + i], out[1024 + t * 16 + i] = sync_buf[t * 16 + i];
}

#define CHECK(call)                                                                                               \
    do {                                                                                                          \
        cudaError_t e_ = (call);                                                                                  \
        if (e_ != cudaSuccess) {                                                                                  \
            std::printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__);                  \
            return 1;                                                                                             \
        }                                                                                                         \
    } while (0)

template <typename T> int check_mma(const char *name) {
    float *d;
    CHECK(cudaMalloc(&d, 256 * sizeof(float)));
    int bad = 0;
    for (int seed = 0; seed < 64; ++seed) {
        mma_kernel<T><<<1, 32>>>(d, seed * 257);
        CHECK(cudaDeviceSynchronize());
        std::vector<float> h(256);
        CHECK(cudaMemcpy(h.data(), d, 256 * sizeof(float), cudaMemcpyDeviceToHost));
        for (int i = 0; i < 128; ++i)
            if (memcmp(&h[i], &h[128 + i], 4) != 0 && bad++ < 5)
                std::printf("%s seed %d element %d: sm_80 %g, sm_75 path %g\n", name, seed, i, h[i], h[128 + i]);
    }
    CHECK(cudaFree(d));
    std::printf("mma m16n8k16 %-5s sm_75 path against sm_80: %s (64 products of 128 outputs)\n", name,
                bad ? "DIFFERENT" : "identical");
    return bad ? 1 : 0;
}

int check_copies() {
    unsigned char *src, *out;
    CHECK(cudaMalloc(&src, 1024));
    CHECK(cudaMalloc(&out, 2048));
    std::vector<unsigned char> h(1024);
    for (int i = 0; i < 1024; ++i) h[i] = (unsigned char)(i * 37 + 11);
    CHECK(cudaMemcpy(src, h.data(), 1024, cudaMemcpyHostToDevice));
    copy_kernel<<<1, 64>>>(src, out);
    CHECK(cudaDeviceSynchronize());
    std::vector<unsigned char> got(2048);
    CHECK(cudaMemcpy(got.data(), out, 2048, cudaMemcpyDeviceToHost));
    const bool same = memcmp(got.data(), got.data() + 1024, 1024) == 0;
    std::printf("16- and 8-byte copies with zero fill, sm_75 path against cp.async: %s\n",
                same ? "identical" : "DIFFERENT");
    CHECK(cudaFree(src));
    CHECK(cudaFree(out));
    return same ? 0 : 1;
}

int main() {
    int major = 0;
    CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
    if (major < 8) {
        std::printf("needs compute capability 8.0 or newer (the sm_80 instructions are the reference)\n");
        return 1;
    }
    const int failed = check_mma<__half>("fp16") + check_mma<__nv_bfloat16>("bf16") + check_copies();
    std::printf("%s\n", failed ? "FAILED" : "all primitives agree");
    return failed ? 1 : 0;
}
