// Error reporting of the C API, and the launch mode every kernel shares.
#include <cstdlib>

#include "attention_common.cuh"

namespace edgellm {
static thread_local cudaError_t last_cuda_error = cudaSuccess;
void set_cuda_error(cudaError_t err) { last_cuda_error = err; }

bool chained_launches_enabled() {
    static const bool enabled = [] {
        const char *off = std::getenv("EDGELLM_NO_PDL");
        if (off && *off && *off != '0') return false;
        int dev = 0, major = 0;
        return cudaGetDevice(&dev) == cudaSuccess &&
               cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9;
    }();
    return enabled;
}
}  // namespace edgellm

extern "C" const char *edgellm_error_string(int code) {
    switch (code) {
    case EDGELLM_OK: return "ok";
    case EDGELLM_ERR_ARGUMENT: return "invalid argument (size, stride, alignment or pointer)";
    case EDGELLM_ERR_UNSUPPORTED: return "unsupported head dim or dtype";
    case EDGELLM_ERR_WORKSPACE: return "decode workspace missing or too small";
    case EDGELLM_ERR_CUDA: return "CUDA error";
    default: return "unknown error";
    }
}

extern "C" const char *edgellm_last_cuda_error(void) { return cudaGetErrorString(edgellm::last_cuda_error); }
