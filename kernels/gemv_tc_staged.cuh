// The tensor-core decode GEMV's steps staged through shared memory (EDGELLM_GEMV_TC_STAGES = S > 0), included by
// gemv_tc.cuh.  The register form keeps kTcUnroll steps of raw bytes in registers, which leaves few warps per SM and
// few bytes in flight; here each lane copies its rows' bytes of the next S - 1 steps into its own slots of shared
// memory (cp.async, no registers held), and the block copies the whole activation vector into shared memory once.
// A lane reads back only the slots it wrote, so its own cp.async wait is the only synchronisation the ring needs (as
// in flash_decode.cu); the activations are read by every warp after one barrier.  The values are those of the
// register form: the same bytes reach the same registers (tc_read mirrors tc_load), the same sums in the same order.
#pragma once

namespace edgellm {

constexpr int kTcStages = EDGELLM_GEMV_TC_STAGES;
static_assert(kTcStages >= 2 && kTcStages <= 8, "2 to 8 stages");

// Bytes of one row's share of a step in a lane's slot: the weight bytes, then the scale words.
template <int QT> __host__ __device__ constexpr int tc_row_bytes() {
    return QT == EDGELLM_Q8_0 || QT == EDGELLM_Q6_K ? 48 : 32;
}
// The activations in shared memory: the digit planes (EDGELLM_ACT_BYTES) then (s, s * sum) per chunk.
// (Rounded up to 16 bytes: the lane slots after it take 16-byte copies.)
__host__ __device__ constexpr size_t tc_act_bytes(int chunks) {
    return (EDGELLM_ACT_BYTES(32 * chunks) + 8 * (size_t)chunks + 15) / 16 * 16;
}
template <int QT, int NM> __host__ __device__ constexpr size_t tc_staged_smem(int chunks, int warps) {
    return tc_act_bytes(chunks) + (size_t)kTcStages * warps * 32 * NM * 2 * tc_row_bytes<QT>();
}

__device__ __forceinline__ uint32_t lds32(uint32_t a) {
    uint32_t v;
    asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(a));
    return v;
}
__device__ __forceinline__ uint4 lds128(uint32_t a) {
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(a));
    return v;
}
__device__ __forceinline__ float half_of_word(uint32_t w, int odd) {
    return __half2float(__ushort_as_half((unsigned short)(odd ? w >> 16 : w & 0xFFFF)));
}
__device__ __forceinline__ int byte_of_words(const uint32_t *w, int i) { return (w[i >> 2] >> (8 * (i & 3))) & 0xFF; }

// The copies of tc_load's bytes into `slot`.  Half-precision scales travel as the 4-byte word that holds them.
template <int QT> __device__ __forceinline__ void tc_issue(const QMatrix &w, int row, int step, int t, int n, uint32_t slot) {
    if constexpr (QT == EDGELLM_Q4_K) {
        const int64_t sb = (int64_t)row * (n / 8) + step / 2;
        cp_async_16(slot, w.qs + sb * 128 + (2 * (step & 1) + t / 2) * 32 + 16 * (t & 1), 16);
        const uint8_t *s = w.scales + sb * 12;
        cp_async_4(slot + 16, s), cp_async_4(slot + 20, s + 4), cp_async_4(slot + 24, s + 8);
        cp_async_4(slot + 28, reinterpret_cast<const uint32_t *>(w.d) + sb);
    } else if constexpr (QT == EDGELLM_Q6_K) {
        const int64_t sb = (int64_t)row * (n / 8) + step / 2;
        const int h = step & 1;
        cp_async_16(slot, w.qs + sb * 128 + h * 64 + 32 * (t / 2) + 16 * (t & 1), 16);
        cp_async_16(slot + 16, w.qh + sb * 64 + h * 32 + 16 * (t & 1), 16);
        cp_async_4(slot + 32, w.scales + sb * 16 + 8 * h), cp_async_4(slot + 36, w.scales + sb * 16 + 8 * h + 4);
        cp_async_4(slot + 40, reinterpret_cast<const uint32_t *>(w.d) + sb / 2);
    } else {
        const int64_t blk = (int64_t)row * n + min(4 * step + t, n - 1);
        if constexpr (QT == EDGELLM_Q8_0) {
            cp_async_16(slot, w.qs + blk * 32, 16), cp_async_16(slot + 16, w.qs + blk * 32 + 16, 16);
            cp_async_4(slot + 32, reinterpret_cast<const uint32_t *>(w.d) + blk / 2);
        } else {
            cp_async_16(slot, w.qs + blk * 16, 16);
            // Q4_1: its (d, m) word; Q4_0 / Q5_0: the word holding d.
            cp_async_4(slot + 16, reinterpret_cast<const uint32_t *>(w.d) + (QT == EDGELLM_Q4_1 ? blk : blk / 2));
            if constexpr (QT == EDGELLM_Q5_0) cp_async_4(slot + 20, reinterpret_cast<const uint32_t *>(w.qh) + blk);
        }
    }
}

// tc_load's TcRow from the slot (row `row` for the parity of its half-precision scale's index).
template <int QT> __device__ __forceinline__ void tc_read(uint32_t slot, int row, int step, int t, int n, TcRow &r) {
    if constexpr (QT == EDGELLM_Q4_K) {
        r.a = lds128(slot);
        const uint32_t s[3] = {lds32(slot + 16), lds32(slot + 20), lds32(slot + 24)};
        const int j = 4 * (step & 1) + t;
        if (j < 4) {
            r.k0 = byte_of_words(s, j) & 63;
            r.k1 = byte_of_words(s, j + 4) & 63;
        } else {
            r.k0 = (byte_of_words(s, j + 4) & 0x0F) | ((byte_of_words(s, j - 4) >> 6) << 4);
            r.k1 = (byte_of_words(s, j + 4) >> 4) | ((byte_of_words(s, j) >> 6) << 4);
        }
        const uint32_t dm = lds32(slot + 28);
        r.s0 = half_of_word(dm, 0), r.s1 = half_of_word(dm, 1);
    } else if constexpr (QT == EDGELLM_Q6_K) {
        r.a = lds128(slot), r.b = lds128(slot + 16);
        const uint32_t s0 = lds32(slot + 32), s1 = lds32(slot + 36);
        r.k0 = (int)(int8_t)((s0 >> (8 * t)) & 0xFF), r.k1 = (int)(int8_t)((s1 >> (8 * t)) & 0xFF);
        const int64_t sb = (int64_t)row * (n / 8) + step / 2;
        r.s0 = half_of_word(lds32(slot + 40), (int)(sb & 1));
    } else {
        const int64_t blk = (int64_t)row * n + min(4 * step + t, n - 1);
        r.a = lds128(slot);
        if constexpr (QT == EDGELLM_Q8_0) {
            r.b = lds128(slot + 16);
            r.s0 = half_of_word(lds32(slot + 32), (int)(blk & 1));
        } else if constexpr (QT == EDGELLM_Q4_1) {
            const uint32_t dm = lds32(slot + 16);
            r.s0 = half_of_word(dm, 0), r.s1 = half_of_word(dm, 1);
        } else {
            r.s0 = half_of_word(lds32(slot + 16), (int)(blk & 1));
            if constexpr (QT == EDGELLM_Q5_0) r.e = lds32(slot + 20);
        }
    }
}

// tc_load_act from the block's copy of the activations (act: its shared address).
template <int QT> __device__ __forceinline__ void tc_read_act(uint32_t act, int n, int step, int lane, TcAct &x) {
    const int digit = (lane >> 2) & 1, c0 = 4 * step;
    const uint32_t ds = act + (uint32_t)EDGELLM_ACT_BYTES(32 * n);
    tc_fill_act<QT>(
        lane, x,
        [&](int chunk, int half) {
            return lds128(act + (uint32_t)EDGELLM_ACT_OFFSET(min(c0 + chunk, n - 1), digit, 16 * half));
        },
        [&](int chunk) {
            const uint32_t at = ds + 8 * min(c0 + chunk, n - 1);
            return make_float2(__uint_as_float(lds32(at)), __uint_as_float(lds32(at + 4)));
        });
}

// tc_block_sums with the staged ring (same contract; the kernel's dynamic shared memory is tc_staged_smem).
template <int QT, int NM, typename RowOf>
__device__ __forceinline__ void tc_block_sums_staged(RowOf row_of, const int8_t *xq, const float2 *xds, int n,
                                                     float (&sums)[NM]) {
    __shared__ float red[NM][kTcWarps][kTcRows];
    extern __shared__ __align__(16) unsigned char tc_smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int steps = (n + 3) / 4;
    const QMatrix *wr[NM][2];
    int rows[NM][2];
#pragma unroll
    for (int m = 0; m < NM; ++m) {
        const auto a = row_of(g, m), b = row_of(g + 8, m);
        wr[m][0] = a.w, rows[m][0] = a.row, wr[m][1] = b.w, rows[m][1] = b.row;
    }
    const uint32_t act = smem_addr(tc_smem);
    // Lane slots after the activations: [stage][m][row of 2][thread], tc_row_bytes each.
    const uint32_t slots = act + (uint32_t)tc_act_bytes(n);
    auto slot = [&](int stage, int m, int rr) {
        return slots + (uint32_t)((((stage * NM + m) * 2 + rr) * (int)blockDim.x + (int)threadIdx.x) * tc_row_bytes<QT>());
    };
    auto issue = [&](int k) {  // the warp's k-th step into stage k % S (nothing past the row; the group still closes)
        const int step = warp + k * warps;
        if (step < steps) {
#pragma unroll
            for (int m = 0; m < NM; ++m)
#pragma unroll
                for (int rr = 0; rr < 2; ++rr) tc_issue<QT>(*wr[m][rr], rows[m][rr], step, t, n, slot(k % kTcStages, m, rr));
        }
        cp_async_commit();
    };
    // Weights first: they do not depend on the previous kernel.
#pragma unroll
    for (int k = 0; k < kTcStages - 1; ++k) issue(k);
    chained_start();  // the activations are the previous kernel's output
    {
        const int bytes = (int)EDGELLM_ACT_BYTES(32 * n), ds_bytes = 8 * n;
        for (int i = 16 * (int)threadIdx.x; i < bytes; i += 16 * (int)blockDim.x) cp_async_16(act + i, xq + i, 16);
        for (int i = 8 * (int)threadIdx.x; i < ds_bytes; i += 8 * (int)blockDim.x)
            cp_async_8(act + bytes + i, reinterpret_cast<const unsigned char *>(xds) + i, 8);
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();
    }
    float acc[NM][2];
#pragma unroll
    for (int m = 0; m < NM; ++m) acc[m][0] = acc[m][1] = 0.f;
    const int mine = (steps - warp + warps - 1) / warps;  // this warp's steps
    for (int k = 0; k < mine; ++k) {
        issue(k + kTcStages - 1);
        cp_async_wait<kTcStages - 1>();  // this lane's copies of step k have landed
        const int step = warp + k * warps;
        TcRow r[NM][2];
#pragma unroll
        for (int m = 0; m < NM; ++m)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) tc_read<QT>(slot(k % kTcStages, m, rr), rows[m][rr], step, t, n, r[m][rr]);
        TcAct x;
        tc_read_act<QT>(act, n, step, lane, x);
#pragma unroll
        for (int m = 0; m < NM; ++m) tc_step<QT>(r[m][0], r[m][1], x, lane, step, n, true, acc[m][0], acc[m][1]);
    }
    cp_async_wait<0>();
    float acc_g[NM], acc_g8[NM];
#pragma unroll
    for (int m = 0; m < NM; ++m) acc_g[m] = acc[m][0], acc_g8[m] = acc[m][1];
    tc_reduce<NM>(acc_g, acc_g8, red, sums);
}

}  // namespace edgellm
