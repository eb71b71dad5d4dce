// Where a 16-byte chunk of a row lives in a shared-memory tile of [rows][D] 16-bit elements, for every head dim the
// tensor-core attention kernels take.
#pragma once

#include "attention_common.cuh"

namespace edgellm {

// Head dims 64, 128 and 256 (8, 16, 32 chunks a row) use attention_common.cuh's swizzle as it is: the chunk index
// XORed with the row's low 3 bits.  Head dim 96 has 12 chunks a row, and an XOR with up to 7 would send chunks 8..11
// past the row: there the first 8 chunks are swizzled the same way and the last 4 by the row's low 2 bits, which
// keeps every chunk inside its row (a permutation of each row's chunks).
template <int D>
__device__ __forceinline__ int tile_offset(int row, int chunk) {
    if constexpr (D % 64 == 0) {
        return swizzle<D>(row, chunk);
    } else {
        static_assert(D == 96, "head dims 64, 96, 128, 256");
        const int c = chunk < 8 ? chunk ^ (row & 7) : 8 + ((chunk - 8) ^ (row & 3));
        return row * D + (c << 3);
    }
}

}  // namespace edgellm
