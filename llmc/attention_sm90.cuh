/*
 Causal grouped-query attention forward on Hopper (sm_90a): warpgroup MMA (wgmma) with operands in 128-byte
 swizzled shared memory, FlashAttention-3's math and layouts. Two kernels: the one below (versions 3, 4: all
 threads load by cp.async, no ping-pong) and, further down, versions 5-10 (11, the trainer's, picks 9, 7 or 5 by
 shape): FlashAttention-3's
 warp specialization (a TMA producer warpgroup, an mbarrier ring, consumer warpgroups in ping-pong). Same contract
 as attention_forward in llmc/attention.cuh (which includes this file and selects it): q (B,T,H,d), k/v
 (B,T,Hkv,d) bf16 with rows ldq / ldkv elements apart (column slices of the stacked projection; the TMA tensor maps
 carry the same strides) -> out (B,T,H,d) bf16 dense, lse (B,H,T) fp32 (natural log), scale 1/sqrt(d),
 query head h reads kv head h / (H/Hkv), key j <= t attended; d = 64 or 128.

 Math, per block of BQ = 128 query rows (2 warpgroups x 64 rows), over key tiles of BK = 128 up to its last row
 (causal: the last tile holds the diagonal):
   S = Q K_j^T                 wgmma m64n128k16, A = Q and B = K both K-major from shared memory (d/16 k-steps)
   masked where key > row (only tiles reaching past the warpgroup's first row)
   m' = max(m, rowmax S), P = 2^((S - m') log2e/sqrt(d)), l = l 2^((m - m') ..) + rowsum P, O = O 2^((m - m') ..)
   O += P V_j                  wgmma m64n{d}k16, A = P from registers (the accumulator layout of S is the A layout
                               of the next product: llmc/mma.cuh), B = V N-major (imm-trans-b) from shared memory
   out = O / l, lse = m/sqrt(d) + log l
 P is rounded to bf16 before P V (as in FlashAttention-2/3 and our mma.sync kernel); m, l and O stay fp32.
 Per thread (lane 4g+t of warp w of warpgroup wg): S rows i0 + 64wg + 16w + g (+8), 64 fp32 registers; O 32 (d=64)
 or 64 (d=128); m, l of its two rows, each row's partial sum over its 4-lane quad reduced by shuffles.

 Shared memory (1024-byte aligned; every tile is panels of 64 columns, row r of a panel = 128 bytes at r*128 with
 16-byte chunk c stored at chunk c ^ (r % 8): the 128-byte swizzle that wgmma's descriptors name):
   Q (BQ x d), K two stages (BK x d), V two stages (BK x d): d = 128: 32 + 64 + 64 KiB, d = 64: half that.
   Descriptors (llmc/mma.cuh): Q and K K-major, SBO = 1024 (8 rows), k-step kk at panel kk/4, +32 (kk%4) bytes;
   V MN-major, SBO = 1024 (8 keys), LBO = BK*128 (the next panel of 64 d-columns), key step kk at +2048 kk bytes.
 Pipeline: cp.async (16 bytes per thread, all 256 threads) double buffering, one cp.async group per key tile.
   At tile j: wait for this thread's copies, fence.proxy.async (cp.async writes through the generic proxy, wgmma
   reads through the async proxy), __syncthreads (the tile is visible; every wgmma of tile j-1 has completed, so
   its stages are free), issue the next loads, then the products:
   OVERLAP = false (version 3): S_j; wait; softmax; O += P_j V_j; wait. Loads {K_j+1, V_j+1}.
   OVERLAP = true (version 4; FlashAttention-3's intra-warpgroup overlap): issue S_j and
     O += P_j-1 V_j-1, wait for S_j only, softmax of S_j while the tensor cores run P_j-1 V_j-1, wait, rescale O,
     P_j <- S_j; one P V after the loop. Loads {K_j+1, V_j}: V lags K by a tile (V_j is read at tile j+1).
   The two warpgroups run side by side (no ping-pong), so one's softmax overlaps the other's wgmma by chance only.
 Registers per thread (sm_90a, nvcc 13, ptxas -v; d = 64/128): version 3 185/206, version 4 162/197; no spills.
 Measured on an H200 (version 4, bench_attention.py): 164-218 TFLOP/s at d = 64, 199-317 at d = 128, 0.5-0.58x
 PyTorch SDPA: the loads by the consumers themselves and the lock-step warpgroups leave the tensor cores idle;
 version 5 below is the answer. The wgmma backward is llmc/attention_sm90_bwd.cuh (included at the end, built on
 the helpers here).
 Build: -gencode arch=compute_90a,code=sm_90a (the Makefiles do so for GPU_ARCH=sm_90); in any other build the
 kernel body is empty and attention_sm90_usable() (a probe kernel run once) says no, so it is never launched.
 Off switches: SESSA_ATT_SM90=0 in the environment, or -DATT_NO_SM90 at compile time; SESSA_ATT_FWD_VERSION=4
 (or 3, 6; llmc/attention.cuh) makes the trainer use another kernel.
 The CPU emulator (dev/cuda_emu) runs this kernel through C++ twins of the wgmma wrappers that read shared memory
 with the ISA's canonical swizzled layouts: indexing, masks, barriers and the layouts as understood here are
 checked on the CPU (dev/cuda/attention_forward.cu versions 3-5; version 5 through the emulator's TMA, mbarrier and
 named-barrier twins, which model the phases and the hand-overs but not the concurrency's timing); the hardware's
 reading of the descriptors and tensor maps only on a GPU.
*/
#ifndef SESSA_ATTENTION_SM90_CUH
#define SESSA_ATTENTION_SM90_CUH

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "cuda_common.h"
#include "mma.cuh"

#define ATTH_WG 2                        // consumer warpgroups per block, 64 query rows each
#define ATTH_THREADS (ATTH_WG * 128)
#ifndef ATTH_BK
#define ATTH_BK 128                      // key tile (64 or 128: the n of the S wgmma)
#endif

template <int HD> struct AttHCfg {
    static_assert(HD == 64 || HD == 128, "the Hopper attention takes d = 64 or 128");
    static_assert(ATTH_BK == 64 || ATTH_BK == 128, "ATTH_BK must be 64 or 128");
    static constexpr int BQ = 64 * ATTH_WG, BK = ATTH_BK;
    static constexpr int Q_BYTES = BQ * HD * 2, KV_BYTES = BK * HD * 2;   // multiples of 1024
    static constexpr size_t SMEM = 1024 + Q_BYTES + 4 * KV_BYTES;         // + 1024: the base rounded up to 1024
};

// dst (R rows x HD bf16 as HD/64 swizzled panels of R x 128 bytes; 1024-byte aligned) <- rows [row0, row0+R) of
// src (row t at src[t*stride]), asynchronously; rows >= T become zeros. All threads; the caller commits.
template <int HD, int R>
__device__ __forceinline__ void atth_load_tile(unsigned char *dst, const floatX *src, int stride, int row0, int T) {
    constexpr int CPR = HD / 8;   // 16-byte chunks per row
    for (int e = threadIdx.x; e < R * CPR; e += ATTH_THREADS) {
        int r = e / CPR, c = e % CPR;
        bool valid = row0 + r < T;
        unsigned char *d = dst + (c / 8) * (R * 128) + r * 128 + (((c % 8) ^ (r % 8)) << 4);
        cp_async16(d, valid ? src + (size_t)(row0 + r) * stride + c * 8 : src, valid);
    }
}

// the dynamic shared memory rounded up to a 1024-byte boundary (the 128-byte swizzle's atoms; AttHCfg's + 1024)
__device__ __forceinline__ unsigned char *atth_smem_base(unsigned char *smem) {
    return smem + ((1024 - ((uint32_t)__cvta_generic_to_shared(smem) & 1023)) & 1023);
}
// rows r0, r0 + 8 (< T) of a warpgroup accumulator (HD columns, this thread's HD/2 registers: llmc/mma.cuh) -> dst
// (row t at dst[t*stride]) as bf16, row r0 times s0 and row r0 + 8 times s1.
// rope (the backward's dq, dk only; NULL: none): RoPE's backward fused into the store. This thread's columns 2tq + 8nd,
// +1 are an interleaved pair (x0, x1) = pair p = 4nd + tq of the store, rotated by -theta in fp32 after the scaling,
// then rounded to bf16 once:  x0' = x0 cos + x1 sin, x1' = x1 cos - x0 sin,  (cos, sin) = rope[t * rope_ld + p]
// (llmc/rope.cuh's table, rope_ld = hd/2 pairs a row; rope at the store's first pair: + 32 for the right column half
// of a d = 128 head). A row's HD/8 entries are loaded before its first store (L1/L2 hits: the table is T x hd/2
// float2), since a load issued after a store it may alias waits for that store.
template <int HD>
__device__ __forceinline__ void atth_store_rows(floatX *dst, int stride, int r0, int T, const float (&acc)[HD / 2],
                                                float s0, float s1, const float2 *rope = nullptr, int rope_ld = HD / 2) {
    const int tq = threadIdx.x % 4;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int t = r0 + 8 * r;
        if (t >= T) continue;
        float sc = r ? s1 : s0;
        floatX *row = dst + (size_t)t * stride + 2 * tq;
        const float2 *cs = rope ? rope + (size_t)t * rope_ld + tq : nullptr;
        float2 c[HD / 8];                       // the row's table entries, all loaded before the first store (a load
#pragma unroll                                  // after a store it may alias waits for it: one L2 round trip per
        for (int nd = 0; nd < HD / 8; nd++)     // pair measured +36 us a call at d12 against +15 for a separate pass)
            c[nd] = cs ? __ldg(cs + 4 * nd) : make_float2(1.0f, 0.0f);
#pragma unroll
        for (int nd = 0; nd < HD / 8; nd++) {
            float x0 = acc[4 * nd + 2 * r] * sc, x1 = acc[4 * nd + 2 * r + 1] * sc;
            if (cs) {
                const float y0 = x0 * c[nd].x + x1 * c[nd].y;
                x1 = x1 * c[nd].x - x0 * c[nd].y;
                x0 = y0;
            }
            *(uint32_t *)(row + 8 * nd) = pack_bf16x2(x0, x1);
        }
    }
}

#ifdef SESSA_SM90A
// the pieces of one key tile for one warpgroup (64 query rows; this thread's rows r0, r0 + 8)

// issue S = Q K^T (64 x BK): Qw the warpgroup's rows of the Q tile (BQ rows), Kt a K tile (BK rows); commits a group
template <int HD, int BQ, int BK>
__device__ __forceinline__ void atth_issue_qk(float (&s)[BK / 2], const unsigned char *Qw, const unsigned char *Kt) {
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++)
        wgmma_ss<BK>(s, wgmma_desc(Qw + (kk / 4) * (BQ * 128) + (kk % 4) * 32, 16, 1024),
                     wgmma_desc(Kt + (kk / 4) * (BK * 128) + (kk % 4) * 32, 16, 1024), kk > 0);
    wgmma_commit();
}
// issue O += P V: pa P's A-fragments (keys 16kk..), Vt a V tile (BK rows); commits a group
template <int HD, int BK>
__device__ __forceinline__ void atth_issue_pv(float (&o)[HD / 2], const uint32_t (&pa)[BK / 16][4], const unsigned char *Vt) {
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++)
        wgmma_rs_nmajor<HD>(o, pa[kk], wgmma_desc(Vt + kk * 16 * 128, BK * 128, 1024), 1);
    wgmma_commit();
}
// causal mask (keys j0.. past row r0 (+8) -> -inf) when the tile reaches past the warpgroup's first row wg0, then
// the online softmax: s <- P = 2^(s sl2 - m' sl2), m <- m', l <- l corr + this lane's part of rowsum P; corr[r] is
// the factor for O's row r. m stays finite: tile 0 holds key 0, which every row attends.
template <int BK>
__device__ __forceinline__ void atth_softmax(float (&s)[BK / 2], float (&m)[2], float (&l)[2], float (&corr)[2],
                                             int j0, int wg0, int r0, float sl2) {
    const int tq = threadIdx.x % 4;
    if (j0 + BK - 1 > wg0) {
#pragma unroll
        for (int i = 0; i < BK / 2; i++) {
            int c = j0 + 8 * (i / 4) + 2 * tq + (i & 1), t = r0 + 8 * ((i >> 1) & 1);
            if (c > t) s[i] = -INFINITY;
        }
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {                      // row r0 + 8r: registers 4nb + 2r, 4nb + 2r + 1
        float mx0 = -INFINITY, mx1 = -INFINITY;        // two chains: shorter dependencies
#pragma unroll
        for (int nb = 0; nb < BK / 8; nb++) {
            mx0 = fmaxf(mx0, s[4 * nb + 2 * r]);
            mx1 = fmaxf(mx1, s[4 * nb + 2 * r + 1]);
        }
        float mx = fmaxf(mx0, mx1);
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));   // the row's 4 lanes (a quad)
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        float m_new = fmaxf(m[r], mx), ms = m_new * sl2, rs0 = 0.0f, rs1 = 0.0f;
        corr[r] = ex2_approx((m[r] - m_new) * sl2);    // 0 on the first tile (m = -inf)
        m[r] = m_new;
#pragma unroll
        for (int nb = 0; nb < BK / 8; nb++) {
            s[4 * nb + 2 * r] = ex2_approx(fmaf(s[4 * nb + 2 * r], sl2, -ms));
            s[4 * nb + 2 * r + 1] = ex2_approx(fmaf(s[4 * nb + 2 * r + 1], sl2, -ms));
            rs0 += s[4 * nb + 2 * r];
            rs1 += s[4 * nb + 2 * r + 1];
        }
        l[r] = l[r] * corr[r] + (rs0 + rs1);
    }
}
template <int HD> __device__ __forceinline__ void atth_rescale(float (&o)[HD / 2], const float (&corr)[2]) {
#pragma unroll
    for (int nd = 0; nd < HD / 8; nd++) { o[4 * nd] *= corr[0]; o[4 * nd + 1] *= corr[0]; o[4 * nd + 2] *= corr[1]; o[4 * nd + 3] *= corr[1]; }
}
// P's A-fragment for keys 16kk.. is S's registers 8kk..8kk+7 rounded to bf16 (llmc/mma.cuh)
template <int BK> __device__ __forceinline__ void atth_pack_p(uint32_t (&pa)[BK / 16][4], const float (&s)[BK / 2]) {
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++) {
        pa[kk][0] = pack_bf16x2(s[8 * kk + 0], s[8 * kk + 1]);
        pa[kk][1] = pack_bf16x2(s[8 * kk + 2], s[8 * kk + 3]);
        pa[kk][2] = pack_bf16x2(s[8 * kk + 4], s[8 * kk + 5]);
        pa[kk][3] = pack_bf16x2(s[8 * kk + 6], s[8 * kk + 7]);
    }
}
// keeps the compiler from moving P's registers (read by an in-flight wgmma) before the wait that follows
template <int KB> __device__ __forceinline__ void atth_fence_p(uint32_t (&pa)[KB][4]) {
#pragma unroll
    for (int kk = 0; kk < KB; kk++) for (int i = 0; i < 4; i++) asm volatile("" : "+r"(pa[kk][i]) :: "memory");
}
// the end of a query tile, per thread (rows r0, r0 + 8): l summed over the row's quad, lse = m/sqrt(d) + log l,
// out = O / l
template <int HD>
__device__ __forceinline__ void atth_epilogue(floatX *out, float *lse, const float (&o)[HD / 2], const float (&m)[2],
                                              float (&l)[2], int b, int h, int H, int T, int r0, float sl2) {
    float *lse_bh = lse + ((size_t)b * H + h) * T;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        int t = r0 + 8 * r;
        if (threadIdx.x % 4 == 0 && t < T) lse_bh[t] = m[r] * (sl2 / 1.4426950408889634f) + logf(l[r]);
    }
    atth_store_rows<HD>(out + ((size_t)b * T * H + h) * HD, H * HD, r0, T, o, 1.0f / l[0], 1.0f / l[1]);
}
#endif // SESSA_SM90A

// grid (ceil(T/BQ), H, B), the longest (last) query tiles first; ATTH_THREADS threads, AttHCfg<HD>::SMEM bytes.
// OVERLAP = false: per tile j, S_j, softmax, O += P_j V_j, each wgmma waited for at once; one cp.async group
//   {K_j+1, V_j+1} per tile. (dev/cuda/attention_forward.cu version 3)
// OVERLAP = true (FlashAttention-3's intra-warpgroup overlap): per tile j, issue S_j and O += P_j-1 V_j-1
//   together, wait for S_j only, run S_j's softmax while the tensor cores do P_j-1 V_j-1, then wait and rescale O.
//   V then lags K by a tile: the group issued at tile j is {K_j+1, V_j} (V_j is first read at tile j+1, after
//   that tile's barrier), and a last P V follows the loop. (version 4; the last Hopper fallback of 9 -> 7 -> 5)
template <int HD, bool OVERLAP>
__global__ void __launch_bounds__(ATTH_THREADS, 1)
attention_forward_sm90_kernel(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                              int T, int H, int Hkv, int ldq, int ldkv) {
#ifdef SESSA_SM90A
    using C = AttHCfg<HD>;
    constexpr int BQ = C::BQ, BK = C::BK, NS = BK / 2, NO = HD / 2;   // S and O registers per thread
    extern __shared__ __align__(1024) unsigned char atth_smem[];
    unsigned char *Qs = atth_smem_base(atth_smem);
    unsigned char *Ks = Qs + C::Q_BYTES, *Vs = Ks + 2 * C::KV_BYTES;
    const int tid = threadIdx.x, wg = tid / 128, lane = tid % 32, g = lane / 4;
    const int i0 = (gridDim.x - 1 - blockIdx.x) * BQ, h = blockIdx.y, b = blockIdx.z, hk = h / (H / Hkv);
    const int wg0 = i0 + 64 * wg, r0 = wg0 + 16 * ((tid % 128) / 32) + g;   // warpgroup's first row; rows r0, r0+8
    const floatX *kb = k + (size_t)b * T * ldkv + hk * HD, *vb = v + (size_t)b * T * ldkv + hk * HD;
    const float sl2 = rsqrtf((float)HD) * 1.4426950408889634f;        // scores -> log2 units
    const int n_tiles = (min(i0 + BQ, T) - 1) / BK + 1;                // key tiles up to the block's last row
    const unsigned char *Qw = Qs + wg * 64 * 128;                      // this warpgroup's 64 rows of panel 0

    atth_load_tile<HD, BQ>(Qs, q + (size_t)b * T * ldq + h * HD, ldq, i0, T);
    atth_load_tile<HD, BK>(Ks, kb, ldkv, 0, T);
    if constexpr (!OVERLAP) atth_load_tile<HD, BK>(Vs, vb, ldkv, 0, T);
    cp_async_commit();

    float s[NS], o[NO], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, corr[2];
    uint32_t pa[BK / 16][4];
#pragma unroll
    for (int i = 0; i < NS; i++) s[i] = 0.0f;
#pragma unroll
    for (int i = 0; i < NO; i++) o[i] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++) for (int i = 0; i < 4; i++) pa[kk][i] = 0u;
    for (int j = 0; j < n_tiles; j++) {
        const int st = j & 1, j0 = j * BK;
        cp_async_wait<0>();                            // this thread's copies of K_j (and V_j, or V_j-1) landed
        fence_proxy_async();                           // ... and are visible to wgmma
        __syncthreads();                               // everyone's; tile j-1's wgmma are done in every thread
        if constexpr (!OVERLAP) {
            if (j + 1 < n_tiles) {                     // stage st^1 (tile j-1's) is free
                atth_load_tile<HD, BK>(Ks + (st ^ 1) * C::KV_BYTES, kb, ldkv, j0 + BK, T);
                atth_load_tile<HD, BK>(Vs + (st ^ 1) * C::KV_BYTES, vb, ldkv, j0 + BK, T);
                cp_async_commit();
            }
            wgmma_fence_operand(s);
            wgmma_fence();
            atth_issue_qk<HD, BQ, BK>(s, Qw, Ks + st * C::KV_BYTES);
            wgmma_wait<0>();
            wgmma_fence_operand(s);
            atth_softmax<BK>(s, m, l, corr, j0, wg0, r0, sl2);
            atth_rescale<HD>(o, corr);
            atth_pack_p<BK>(pa, s);
            wgmma_fence_operand(o);
            wgmma_fence();
            atth_issue_pv<HD, BK>(o, pa, Vs + st * C::KV_BYTES);
            wgmma_wait<0>();
            wgmma_fence_operand(o);
            atth_fence_p<BK / 16>(pa);
        } else {
            // K stage st^1 (K_j-1: S_j-1 done) and V stage st (V_j-2: P V_j-2 done) are free
            if (j + 1 < n_tiles) atth_load_tile<HD, BK>(Ks + (st ^ 1) * C::KV_BYTES, kb, ldkv, j0 + BK, T);
            atth_load_tile<HD, BK>(Vs + st * C::KV_BYTES, vb, ldkv, j0, T);
            cp_async_commit();
            wgmma_fence_operand(s);
            wgmma_fence_operand(o);
            wgmma_fence();
            atth_issue_qk<HD, BQ, BK>(s, Qw, Ks + st * C::KV_BYTES);                 // S_j
            if (j > 0) {                                                             // O += P_j-1 V_j-1
                wgmma_fence();   // (ptxas would insert it: this block is not the one of the fence above)
                atth_issue_pv<HD, BK>(o, pa, Vs + (st ^ 1) * C::KV_BYTES);
            }
            if (j > 0) wgmma_wait<1>(); else wgmma_wait<0>();                      // S_j done
            wgmma_fence_operand(s);
            atth_softmax<BK>(s, m, l, corr, j0, wg0, r0, sl2);                       // overlaps P_j-1 V_j-1
            wgmma_wait<0>();
            wgmma_fence_operand(o);
            atth_fence_p<BK / 16>(pa);
            atth_rescale<HD>(o, corr);
            atth_pack_p<BK>(pa, s);
        }
    }
    if constexpr (OVERLAP) {                           // O += P_last V_last
        cp_async_wait<0>();
        fence_proxy_async();
        __syncthreads();
        wgmma_fence_operand(o);
        wgmma_fence();
        atth_issue_pv<HD, BK>(o, pa, Vs + ((n_tiles - 1) & 1) * C::KV_BYTES);
        wgmma_wait<0>();
        wgmma_fence_operand(o);
        atth_fence_p<BK / 16>(pa);
    }
    atth_epilogue<HD>(out, lse, o, m, l, b, h, H, T, r0, sl2);
#endif // SESSA_SM90A
}

// ---------------------------------------------------------------------------- versions 5, 6: warp-specialized
/*
 FlashAttention-3's mainloop (version 5; 6 the same with NWG = 2 at d = 64 too; 7-10 below): the same
 math and tiles as above, with
 - a producer warpgroup: one thread loads Q once and then K_j, V_j through TMA (llmc/mma.cuh) into a ring of
   STAGES stages per operand, each guarded by two mbarriers: full (the producer's expect_tx + TMA's complete_tx)
   and empty (every consumer thread arrives when its wgmma that read the stage has completed); it keeps 24
   registers per thread (setmaxnreg), the consumers take 240 (NWG = 3: 32 and 160);
 - NWG consumer warpgroups (64 query rows each) in ping-pong: named barrier c + 1 is consumer c's turn to issue;
   it issues S_j = Q K_j^T and O += P_j-1 V_j-1 (intra-warpgroup overlap, as version 4), waits for S_j, then
   hands the turn to consumer c + 1 (mod NWG), so its softmax runs while the others' products occupy the tensor
   cores. (FlashAttention-3 hands over right after the issue; here a bar.arrive between wgmma issue and wait makes
   ptxas serialize the wgmma (warning C7514), so the hand-over follows S_j's wait: the next warpgroup's products
   queue behind P_j-1 V_j-1, which is still running, and the tensor cores stay busy.)
 Timeline of one block (NWG = 2, tile j; "|" a wait, "->" a hand-over of the turn):
   producer   K_j+1 | V_j+1 |  (each as soon as its stage's empty barrier completes: up to STAGES tiles ahead)
   consumer 0 [issue S_j, P_j-1 V_j-1] | S_j -> release K_j, softmax_j | P V: release V_j-1, rescale | turn ..
   consumer 1                          turn [issue S_j, P_j-1 V_j-1] | S_j -> release K_j, softmax_j | ...
   tensor cores  S_j(0) PV_j-1(0) S_j(1) PV_j-1(1) S_j+1(0) ...  busy while the other warpgroup does softmax
 Barrier phases: tile j sits in stage j % STAGES; its full barrier completes for the (j / STAGES)-th time, so the
 consumers wait for parity (j / STAGES) & 1; the producer refills stage s for tile j >= STAGES after the empty
 barrier's completion (j / STAGES - 1), parity (j / STAGES - 1) & 1. Turns: consumer NWG-1 hands the first turn
 to consumer 0 before its loop and skips its hand-over at the last tile, so every named barrier is balanced.
 Counts per key tile of 128 (per block): 4 BQ 128 d FLOPs on the tensor cores, BQ 128 exponentials (the SFU's
 16/clock/SM: at d = 64, 2 warpgroups, 1024 clocks, as long as the 2 x 64 x 128 x 64 x 2 x 2 = 4.2 MFLOP of
 wgmma at ~4 kFLOP/clock/SM): so the softmax must hide under the other warpgroup's products (ping-pong); loads
 2 x 128 d 2 bytes per tile from L2 (K, V are shared by H/Hkv heads and the T/BQ query tiles of a head).
 NWG = 3 at d = 64 (version 5; FlashAttention-3's 192 x 128 tile): BQ = 192 rows per block share each K, V tile,
 and while one warpgroup does its softmax two others' products keep the tensor cores fed.
 Registers (ptxas -v, sm_90a, nvcc 13), no spills: NWG = 2: 168 per thread at launch (384 threads,
 __launch_bounds__), setmaxnreg then 24 (producer) / 240 (consumers); NWG = 3 (d = 64): 128 at launch (512
 threads), then 32 / 160. (NWG = 3 at d = 128 spills: not offered.)
 Shared memory: Q + 2 stages of K and V + 9 mbarriers: d = 64 81 KiB (NWG = 3: 89 KiB), d = 128 161 KiB.
 Measured (H200, dev/cuda/bench_attention.py, causal FLOPs once): 222 (T = 1024) to 464 (T = 16384) TFLOP/s at
 d = 64, 342 to 674 at d = 128, 0.74-1.22x PyTorch SDPA (version 4: 164-317, 0.49-0.58x); predicted 1.3-1.5x
 version 4, measured 1.35-2.1x. (FlashAttention-3 reaches 500-600 at d = 128 with persistent blocks, 3-4 stages.)
 Versions 7 and 8 (5 and 6 with two changes, for the short-sequence misses: T = 1024 0.74x at d = 64, 0.86x at
 d = 128):
 - the order of the blocks (atth_block_order): a (nb, H, B) grid starts each head's query blocks in turn, longest
   first, so the long blocks of the last heads start late. With blocks taking time ~ their key tiles, CTAs to the
   first free SM in launch order (dev/cuda/attention_schedule.py), the SMs are busy 0.88-0.91 of the time at
   T = 1024 and 4096 (B H = 192 or 48 heads of 6-32 blocks), 0.91 (192 rows) / 0.99 (128 rows) at T = 16384; the
   longest blocks of all heads of an L2 section first (equal sections, 32 MiB of K, V each) make it 0.97-1.00.
 - LEAN: a consumer whose 64 rows all lie past T does no products. T = 1024, 4096, 16384 are 64 mod 192, so the
   last block of every head has 2 empty warpgroups of 3; with them working it takes as long as a full block (at
   T = 1024 a sixth of the head's work), without them about half of that (one warpgroup's products and unhidden
   softmax).
 Both together in the model: 1.20-1.23x at d = 64 and 1.11-1.13x at d = 128 for T = 1024, 1.17x / 1.13x at 4096,
 1.11x / 1.01x at 16384. Predicted (ms, ratio to attn.log's SDPA; the model on version 5's measured times):
   T = 1024:  d = 64 0.116 -> 0.096 (0.89x), GQA 0.094 (0.91x); d = 128 0.101 -> 0.091 (0.97x), GQA 0.089 (0.97x)
   T = 4096:  d = 64 0.278 -> 0.237 (1.10x), GQA 0.236 (1.10x); d = 128 0.263 -> 0.233 (1.16x), GQA 0.231 (1.15x)
   T = 16384: d = 64 0.889 -> 0.804 (1.17x), GQA 0.804 (1.20x); d = 128 0.818 -> 0.813 (1.23x), GQA 0.811 (1.22x)
 Version 8 (2 consumer warpgroups at d = 64: 128-row blocks) does 0.78 of version 7's wgmma work at T = 1024
 (no partial blocks) but has one fewer warpgroup to hide each softmax: bench_attention.py measures both.
 Measured (H200, bench_attention.py, the order without LEAN): T = 1024 d = 64 0.120 ms (v5) -> 0.117 (v7),
 0.112 (v8): 0.74-0.77x SDPA, far less than the model's 1.09x; T = 4096 d = 64 0.279 -> 0.253-0.260 (1.00-1.03x);
 T = 16384 d = 64 0.890 -> 0.828-0.852, but d = 128 0.813 -> 0.879 (1.13x, from 1.23x: the order costs there, by
 a cause the model does not hold). At T = 1024 a block is short (2-8 key tiles), and each CTA (one per SM) starts
 with its loads and ends with its stores and its last products with nothing else in flight on its SM: about
 4 us of a ~13 us CTA by the T = 1024 vs T = 16384 throughput (222 vs 484 TFLOP/s), which no order removes.
 Versions 9, 10 (7, 8 persistent, as FlashAttention-3): one CTA per SM takes the work items blockIdx.x,
 + gridDim.x, ... (in the same order), carrying the stage ring and the turns from one item to the next; the
 producer loads the next item's Q once the consumers' last S of the item is done (q_empty) and its K, V into
 the stages they free, so that the next item's loads run under the current one's last P V, softmax and stores.
 Predicted at T = 1024, d = 64: most of the ~4 us per CTA hidden, 0.112-0.117 -> ~0.095 ms (~0.9x SDPA); at long
 T, where a block does 32-128 tiles, within a few percent of 7, 8.
 Measured (H200, bench_attention.py, second run; ms and ratio to SDPA), version 9 is the trainer's (worst 0.89x):
   shape (B T H Hkv d)     v5            v7 (LEAN)     v9            v10
   16 1024 12 12 64    0.117 0.73x   0.109 0.79x   0.096 0.89x   0.095 0.90x
   16 1024 12  4 64    0.117 0.73x   0.107 0.80x   0.094 0.91x   0.093 0.92x
   16 1024  8  8 128   0.102 0.85x   0.101 0.85x   0.096 0.91x   (= v9)
   16 1024  8  2 128   0.101 0.85x   0.099 0.87x   0.086 1.01x   (= v9)
    4 4096 12 12 64    0.278 0.94x   0.250 1.04x   0.274 0.95x   0.292 0.89x
    4 4096 12  4 64    0.277 0.93x   0.250 1.03x   0.248 1.04x   0.281 0.92x
    4 4096  8  8 128   0.264 1.01x   0.263 1.01x   0.295 0.90x   (= v9)
    4 4096  8  2 128   0.263 0.99x   0.262 1.00x   0.275 0.95x   (= v9)
    1 16384 12 12 64   0.888 1.07x   0.849 1.12x   1.010 0.94x   1.096 0.87x
    1 16384 12  4 64   0.887 1.06x   0.838 1.12x   0.920 1.02x   1.042 0.90x
    1 16384  8  8 128  0.808 1.25x   0.922 1.09x   1.089 0.93x   (= v9)
    1 16384  8  2 128  0.807 1.21x   0.915 1.07x   1.004 0.97x   (= v9)
 The persistent CTAs win where blocks are short (T = 1024: 1.12-1.22x version 5) and lose where they are long
 (T = 16384: 0.74-0.96x), as does the order at d = 128 (version 7): a round-robin of work items fixed at launch
 cannot even out blocks of 1 to 128 tiles the way the hardware's dynamic start of CTAs does, and something the
 model does not hold (L2 traffic?) costs the order at d = 128. So the trainer's version 11 takes 9 at T <= 2048
 (short blocks; T = 1024 is what d12 trains), 7 at d = 64 and 5 at d = 128 above: 0.89-1.25x over the table
 (T = 2048 is not measured: where 9 stops winning between 1024 and 4096 is a guess). A dynamic work queue (an
 atomic counter) for the persistent CTAs is the next step. At T <= 256 version 11 takes 10 (128-row items: at T = 256
 two equal ones per head, where 9's 192-row items make one of 192 and one of 64 rows; the same bits): the d4w256h4
 B=8 T=256 training step (H = 4, d = 64; the thirteenth session, `AB="- SESSA_ATT_FWD_VERSION=10 ..."
 scripts/gpu_session.sh ab`, three rounds in one call) 1.825M, 1.800M, 1.813M tok/s with 9, 1.832M, 1.816M, 1.829M
 with 10 (the only shape measured; at T = 1024 above the two are equal); with the head dX's choice in
 llmc/gemm_choices.h as well 1.851M, 1.858M, 1.846M, and in the next call (the two together against neither)
 1.809M, 1.831M, 1.826M against 1.828M, 1.822M: ~+1% pooled, inside one call's spread.
*/
// NWG consumer warpgroups: 2 (d = 128, and version 6 at d = 64) or 3 (version 5 at d = 64: 192 query rows, as
// FlashAttention-3; its consumers fit the 128 registers of a 512-thread block, at d = 128 they would spill)
template <int HD, int NWG_> struct AttWCfg {
    static_assert(NWG_ == 2 || NWG_ == 3, "2 or 3 consumer warpgroups");
    static constexpr int NWG = NWG_, THREADS = 128 * (NWG + 1), BQ = 64 * NWG, BK = ATTH_BK, STAGES = 2;
    static constexpr int PRODUCER_REGS = NWG == 2 ? 24 : 32, CONSUMER_REGS = NWG == 2 ? 240 : 160;
    static_assert(128 * (PRODUCER_REGS + NWG * CONSUMER_REGS) <= 65536, "setmaxnreg: the block's registers");
    static constexpr int Q_BYTES = BQ * HD * 2, KV_BYTES = BK * HD * 2;
    static constexpr int BARS = 2 + 4 * STAGES;                          // q_full, k/v full, k/v empty, q_empty
    static constexpr size_t SMEM = 1024 + Q_BYTES + 2 * STAGES * KV_BYTES + 8 * BARS;
    static_assert(BQ <= 256 && BK <= 256, "a TMA box has at most 256 rows");
};

#ifdef SESSA_SM90A
// the warp-specialized kernels' barriers: full (base), then k_full, v_full, k_empty, v_empty (NST each) follow
// it; the fixed tiles' and the full barriers take one arrival (the producer's expect_tx), the empty ones n_consumers
template <int NST>
__device__ __forceinline__ void attw_init_barriers(uint64_t *full, int n_consumers) {
    if (threadIdx.x == 0) {
        mbar_init(full, 1);
        for (int st = 0; st < NST; st++) {
            mbar_init(full + 1 + st, 1);               // k_full
            mbar_init(full + 1 + NST + st, 1);         // v_full
            mbar_init(full + 1 + 2 * NST + st, n_consumers);   // k_empty
            mbar_init(full + 1 + 3 * NST + st, n_consumers);   // v_empty
        }
        mbar_fence_init();
    }
    __syncthreads();
}
// The order in which the CTAs of a warp-specialized kernel take their blocks (the GPU starts CTAs in blockIdx order,
// so this is a schedule): a 1-d grid of nb blocks x nh head-batch pairs; CTA L -> (rank, bh), rank 0 the longest
// block of a causal row (the caller maps it to its query or key block). The pairs are cut into sections of sec
// consecutive ones (a multiple of the GQA group: they share K, V); a section's CTAs go rank by rank, every pair of
// the section at one rank before the next (the longest blocks of all its heads first: longest-processing-time
// order, so the wave's tail is made of short blocks), and the sections one after the other (a section's K, V or
// Q, dO stay in L2: atth_section). sec = 1 is the order of a (nb, heads, B) grid: each head's blocks in turn.
// (L: blockIdx.x, or a persistent CTA's work item)
__device__ __forceinline__ void atth_block_order(int &rank, int &bh, int L, int nb, int nh, int sec) {
    const int s0 = L / (sec * nb) * sec;                  // the first pair of L's section (the ones before are full)
    const int n = min(sec, nh - s0), r = L - s0 * nb;     // the section's pairs; L's place in it
    rank = r / n;
    bh = s0 + r % n;
}
// rows [row0, row0 + R) of head hd, batch b of the tensor map (R x HD as HD/64 swizzled panels) -> dst, by TMA
template <int HD, int R>
__device__ __forceinline__ void attw_load_rows(unsigned char *dst, const CUtensorMap *map, uint64_t *bar, int hd, int row0, int b) {
#pragma unroll
    for (int p = 0; p < HD / 64; p++) tma_load_4d(dst + p * R * 128, map, bar, 64 * p, hd, row0, b);
}
// the producer's loop: K_j, V_j (rows j BK.., kv head hk) into stage g % NST of Ks, Vs (BK x HD each), g = c0 + j
// the tile's place in the ring (c0: tiles the ring carried before, for a persistent CTA's later work items), each
// after the stage's empty barrier says tile g - NST is done with it; k_full as laid out by attw_init_barriers
template <int HD, int BK, int NST>
__device__ __forceinline__ void attw_produce_kv(unsigned char *Ks, unsigned char *Vs, uint64_t *k_full,
                                                const CUtensorMap *tk, const CUtensorMap *tv, int hk, int b, int n_tiles,
                                                int c0 = 0) {
    constexpr int KV_BYTES = BK * HD * 2;
    uint64_t *v_full = k_full + NST, *k_empty = v_full + NST, *v_empty = k_empty + NST;
    for (int j = 0; j < n_tiles; j++) {
        const int g = c0 + j, st = g % NST, ph = (g / NST) & 1;
        if (g >= NST) mbar_wait(k_empty + st, ph ^ 1);                 // tile g - NST is done with K's stage
        mbar_arrive_expect_tx(k_full + st, KV_BYTES);
        attw_load_rows<HD, BK>(Ks + st * KV_BYTES, tk, k_full + st, hk, j * BK, b);
        if (g >= NST) mbar_wait(v_empty + st, ph ^ 1);                 // ... and with V's
        mbar_arrive_expect_tx(v_full + st, KV_BYTES);
        attw_load_rows<HD, BK>(Vs + st * KV_BYTES, tv, v_full + st, hk, j * BK, b);
    }
}
#endif // SESSA_SM90A

// grid: n_work = ceil(T/BQ) B H work items (query blocks) in atth_block_order with sections of sec heads (rank 0 =
// the last query block, the longest); one per CTA (gridDim.x = n_work), or, persistent (versions 9, 10: gridDim.x
// = the SMs), items blockIdx.x, + gridDim.x, ... in turn, the stage ring and the turns carried on from one to the
// next (the producer loads the next item's Q once every consumer's last S of the item is done: q_empty, and its
// K, V while the consumers finish the item: no prologue or epilogue without loads or products in flight).
// AttWCfg<HD, NWG>::THREADS threads, ::SMEM bytes.
// tq, tk, tv: 4-d tensor maps of q, k, v (d, heads, T, B), boxes of 64 columns x BQ (q) or BK (k, v) rows.
// LEAN (versions 7-10): a consumer whose 64 rows all lie past T (in the last block, when T % BQ leaves a warpgroup
// empty: T = 1024, 4096, 16384 with BQ = 192 leave 2 of 3) only takes its turns and releases the stages
template <int HD, int NWG_, bool LEAN>
__global__ void __launch_bounds__(AttWCfg<HD, NWG_>::THREADS, 1)
attention_forward_sm90_ws_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                                 const __grid_constant__ CUtensorMap tv, floatX *out, float *lse, int T, int H, int Hkv,
                                 int sec, int n_work) {
#ifdef SESSA_SM90A
    using C = AttWCfg<HD, NWG_>;
    constexpr int NWG = C::NWG, BQ = C::BQ, BK = C::BK, NST = C::STAGES, NS = BK / 2, NO = HD / 2;
    extern __shared__ __align__(1024) unsigned char atth_smem[];
    unsigned char *Qs = atth_smem_base(atth_smem), *Ks = Qs + C::Q_BYTES, *Vs = Ks + NST * C::KV_BYTES;
    uint64_t *q_full = (uint64_t *)(Vs + NST * C::KV_BYTES), *k_full = q_full + 1, *v_full = k_full + NST;
    uint64_t *k_empty = v_full + NST, *v_empty = k_empty + NST, *q_empty = v_empty + NST;
    const int tid = threadIdx.x, wg = tid / 128, nb = (T + BQ - 1) / BQ;
    // work item w -> its query block i0 (BQ rows) of head h, batch b, and its key tiles up to the block's last row
    auto item = [&](int w, int &i0, int &h, int &b, int &n_tiles) {
        int rank, bh;
        atth_block_order(rank, bh, w, nb, n_work / nb, sec);
        i0 = (nb - 1 - rank) * BQ, h = bh % H, b = bh / H;
        n_tiles = (min(i0 + BQ, T) - 1) / BK + 1;
    };
    if (tid == 0) mbar_init(q_empty, 128 * NWG);       // (fenced with the others by attw_init_barriers)
    attw_init_barriers<NST>(q_full, 128 * NWG);
    if (wg == 0) {                                     // the producer
        setmaxnreg_dec<C::PRODUCER_REGS>();
        if (tid != 0) return;
        for (int w = blockIdx.x, n = 0, c0 = 0, i0, h, b, n_tiles; w < n_work; w += gridDim.x, n++, c0 += n_tiles) {
            item(w, i0, h, b, n_tiles);
            if (n > 0) mbar_wait(q_empty, (n - 1) & 1);                // the previous item's S products are done
            mbar_arrive_expect_tx(q_full, C::Q_BYTES);
            attw_load_rows<HD, BQ>(Qs, &tq, q_full, h, i0, b);
            attw_produce_kv<HD, BK, NST>(Ks, Vs, k_full, &tk, &tv, h / (H / Hkv), b, n_tiles, c0);
        }
        return;
    }

    setmaxnreg_inc<C::CONSUMER_REGS>();                // a consumer: 64 query rows
    const int cw = wg - 1, g = tid % 32 / 4;
    const float sl2 = rsqrtf((float)HD) * 1.4426950408889634f;        // scores -> log2 units
    const unsigned char *Qw = Qs + cw * 64 * 128;                      // this warpgroup's 64 rows of panel 0
    float s[NS], o[NO], m[2], l[2], corr[2];
    uint32_t pa[BK / 16][4];
#pragma unroll
    for (int i = 0; i < NS; i++) s[i] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++) for (int i = 0; i < 4; i++) pa[kk][i] = 0u;
    if (cw == NWG - 1) bar_arrive(1, 256);             // consumer 0 has the first turn
    for (int w = blockIdx.x, n = 0, c0 = 0, i0, h, b, n_tiles; w < n_work; w += gridDim.x, n++, c0 += n_tiles) {
        item(w, i0, h, b, n_tiles);
        const int wg0 = i0 + 64 * cw, r0 = wg0 + 16 * ((tid % 128) / 32) + g;   // warpgroup's first row; rows r0, r0+8
        const bool last = w + gridDim.x >= n_work;     // the CTA's last item: its last turn is not handed on
        const int gl = c0 + n_tiles - 1;               // the item's last tile in the ring
        mbar_wait(q_full, n & 1);
        if (LEAN && wg0 >= T) {                        // no rows: the loop below without its products
            for (int j = 0; j < n_tiles; j++) {
                const int gj = c0 + j, st = gj % NST, sp = (gj + NST - 1) % NST;
                mbar_wait(k_full + st, (gj / NST) & 1);
                if (j > 0) mbar_wait(v_full + sp, ((gj - 1) / NST) & 1);
                bar_sync(1 + cw, 256);
                if (cw < NWG - 1 || j + 1 < n_tiles || !last) bar_arrive(1 + (cw + 1) % NWG, 256);
                mbar_arrive(k_empty + st);
                if (j > 0) mbar_arrive(v_empty + sp);
            }
            mbar_arrive(q_empty);
            mbar_wait(v_full + gl % NST, (gl / NST) & 1);
            mbar_arrive(v_empty + gl % NST);
            continue;
        }
        m[0] = m[1] = -INFINITY;
        l[0] = l[1] = 0.0f;
#pragma unroll
        for (int i = 0; i < NO; i++) o[i] = 0.0f;
        for (int j = 0; j < n_tiles; j++) {
            const int gj = c0 + j, st = gj % NST, sp = (gj + NST - 1) % NST;   // K_j's stage, V_j-1's stage
            mbar_wait(k_full + st, (gj / NST) & 1);
            if (j > 0) mbar_wait(v_full + sp, ((gj - 1) / NST) & 1);
            bar_sync(1 + cw, 256);                     // this warpgroup's turn at the tensor cores
            wgmma_fence_operand(s);
            wgmma_fence_operand(o);
            wgmma_fence();
            atth_issue_qk<HD, BQ, BK>(s, Qw, Ks + st * C::KV_BYTES);                 // S_j
            if (j > 0) {                                                             // O += P_j-1 V_j-1
                wgmma_fence();
                atth_issue_pv<HD, BK>(o, pa, Vs + sp * C::KV_BYTES);
            }
            if (j > 0) wgmma_wait<1>(); else wgmma_wait<0>();                      // S_j done
            wgmma_fence_operand(s);
            // the next one's turn (after the wait: a bar.arrive between issue and wait makes ptxas serialize wgmma)
            if (cw < NWG - 1 || j + 1 < n_tiles || !last) bar_arrive(1 + (cw + 1) % NWG, 256);
            mbar_arrive(k_empty + st);
            atth_softmax<BK>(s, m, l, corr, j * BK, wg0, r0, sl2);              // under the others' products
            wgmma_wait<0>();
            wgmma_fence_operand(o);
            atth_fence_p<BK / 16>(pa);
            if (j > 0) mbar_arrive(v_empty + sp);
            atth_rescale<HD>(o, corr);
            atth_pack_p<BK>(pa, s);
        }
        mbar_arrive(q_empty);                          // this warpgroup's S products of the item are done
        mbar_wait(v_full + gl % NST, (gl / NST) & 1);  // O += P_last V_last
        wgmma_fence_operand(o);
        wgmma_fence();
        atth_issue_pv<HD, BK>(o, pa, Vs + (gl % NST) * C::KV_BYTES);
        wgmma_wait<0>();
        wgmma_fence_operand(o);
        atth_fence_p<BK / 16>(pa);
        mbar_arrive(v_empty + gl % NST);
        atth_epilogue<HD>(out, lse, o, m, l, b, h, H, T, r0, sl2);
    }
#endif // SESSA_SM90A
}

// 1 when this binary holds sm_90a code for the device it runs on (the kernel above is then real), else 0
__global__ void attention_sm90_probe_kernel(int *flag) {
#ifdef SESSA_SM90A
    *flag = 1;
#else
    *flag = 0;
#endif
}

// Whether attention_forward takes the Hopper path: not switched off (-DATT_NO_SM90, SESSA_ATT_SM90=0), the current
// device is compute capability 9.0 and the probe kernel says the binary has sm_90a code. Decided once per process
// (on its first call; it launches the probe and synchronizes, so not inside a CUDA graph capture).
static int attention_sm90_usable(void) {
#ifdef SESSA_CUDA_EMU_H
    return 1;   // dev/cuda_emu runs the wgmma twins of cuda_emu.h
#else
    static int state = -1;
    if (state >= 0) return state;
    state = 0;
#ifndef ATT_NO_SM90
    const char *env = getenv("SESSA_ATT_SM90");
    if (env && strcmp(env, "0") == 0) return state;
    int dev, major, minor;
    cudaCheck(cudaGetDevice(&dev));
    cudaCheck(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    cudaCheck(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    if (major != 9 || minor != 0) return state;
    int *d_flag, flag = 0;
    cudaCheck(cudaMalloc((void **)&d_flag, sizeof(int)));
    cudaCheck(cudaMemset(d_flag, 0, sizeof(int)));
    attention_sm90_probe_kernel<<<1, 1>>>(d_flag);
    if (cudaGetLastError() == cudaSuccess) cudaCheck(cudaMemcpy(&flag, d_flag, sizeof(int), cudaMemcpyDeviceToHost));
    cudaCheck(cudaFree(d_flag));
    state = flag;
#endif
    return state;
#endif // SESSA_CUDA_EMU_H
}

template <int HD, bool OVERLAP>
static void attention_forward_sm90_hd(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                                      int B, int T, int H, int Hkv, int ldq, int ldkv, cudaStream_t stream) {
    size_t smem = AttHCfg<HD>::SMEM;
    cudaCheck(cudaFuncSetAttribute(attention_forward_sm90_kernel<HD, OVERLAP>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attention_forward_sm90_kernel<HD, OVERLAP><<<dim3(ceil_div(T, AttHCfg<HD>::BQ), H, B), ATTH_THREADS, smem, stream>>>(out, lse, q, k, v, T, H, Hkv, ldq, ldkv);
    cudaCheck(cudaGetLastError());
}

// the 4-d tensor map of a (B, T, heads, d) bf16 tensor for TMA, rows ld elements apart (ld >= heads * d: q, k, v
// may be column slices of the stacked projection): dimensions (d, heads, T, B) innermost first, byte strides
// (2d, 2 ld, 2 T ld), boxes of 64 columns (128 bytes: the 128-byte swizzle's row) x 1 head x box_rows rows x 1, rows
// past T read as 0. TMA needs a 16-byte-aligned base and 16-byte-multiple strides; the public functions already
// demand both of every call (attention_check_ptr, attention_row_strides: ld a multiple of 8, d of 32), so no call
// needs to fall back to the cp.async kernels, and the checks here only guard a direct caller.
// cuTensorMapEncodeTiled comes from the driver through the runtime (no -lcuda); it only fills the 128-byte map.
typedef CUresult (*atth_encode_tiled_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                         const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                         CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
static CUtensorMap atth_tensor_map(const floatX *x, int B, int T, int heads, int d, int ld, int box_rows) {
    static atth_encode_tiled_fn encode = NULL;
    if (encode == NULL) {
        void *fn = NULL;
        cudaDriverEntryPointQueryResult found;
        cudaCheck(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found));
        if (found != cudaDriverEntryPointSuccess || fn == NULL)
            fatal("attention (Hopper): the driver has no cuTensorMapEncodeTiled (CUDA 12.0 or newer needed)");
        encode = (atth_encode_tiled_fn)fn;
    }
    if ((uintptr_t)x % 16 || ld % 8 || ld < heads * d)
        fatal("attention (Hopper): tensor %p with row stride %d (heads=%d d=%d) is not 16-byte aligned or its rows "
              "overlap (TMA needs a 16-byte-aligned base and stride)", (const void *)x, ld, heads, d);
    CUtensorMap map;
    cuuint64_t dims[4] = {(cuuint64_t)d, (cuuint64_t)heads, (cuuint64_t)T, (cuuint64_t)B};
    cuuint64_t strides[3] = {(cuuint64_t)d * 2, (cuuint64_t)ld * 2, (cuuint64_t)T * ld * 2};   // bytes
    cuuint32_t box[4] = {64, 1, (cuuint32_t)box_rows, 1}, elem_strides[4] = {1, 1, 1, 1};
    CUresult r = encode(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, (void *)x, dims, strides, box, elem_strides,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) fatal("attention (Hopper): cuTensorMapEncodeTiled failed (%d) for B=%d T=%d heads=%d d=%d", (int)r, B, T, heads, d);
    return map;
}

// the section of atth_block_order, in head-batch pairs: the nh pairs (units of `unit` pairs: a GQA group) cut into
// the fewest sections of equal size (the last one may be smaller) that have their streamed operand (bytes_per_unit:
// K and V of a kv head in the forward) in atth_l2_budget bytes, 32 MiB of the H200's 50 MB L2 (FlashAttention-3's
// budget; dev/cuda's checks make it small to cut their problems into several sections); a lone short section at
// the end would make the wave's tail again (dev/cuda/attention_schedule.py)
static size_t atth_l2_budget = (size_t)32 << 20;
static int atth_section(size_t bytes_per_unit, int unit, int nh) {
    const size_t fit = atth_l2_budget / bytes_per_unit;
    const int nu = nh / unit, most = fit < 1 ? 1 : fit < (size_t)nu ? (int)fit : nu;   // units; per section at most
    const int nsec = (nu + most - 1) / most;
    return (nu + nsec - 1) / nsec * unit;
}

// the CTAs of a persistent kernel: the device's SMs (one CTA each), or atth_persistent_ctas when set (dev/cuda's
// checks: a few, so that every CTA takes many work items)
static int atth_persistent_ctas = 0;
static int atth_sm_count(void) {
    if (atth_persistent_ctas > 0) return atth_persistent_ctas;
    static int n = 0;
#ifdef SESSA_CUDA_EMU_H
    n = 4;   // (the CPU emulator has no device attributes)
#else
    if (n == 0) {
        int dev;
        cudaCheck(cudaGetDevice(&dev));
        cudaCheck(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    }
#endif
    return n;
}

// lpt = false: sections of 1 head (each head's query blocks in turn, longest first: versions 5, 6); true: sections
// of atth_section heads, and the kernel LEAN (versions 7-10); persistent: one CTA per SM taking the work items in
// turn (versions 9, 10), else one per item
template <int HD, int NWG>
static void attention_forward_sm90_ws_hd(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                                         int B, int T, int H, int Hkv, int ldq, int ldkv, bool lpt, bool persistent,
                                         cudaStream_t stream) {
    using C = AttWCfg<HD, NWG>;
    CUtensorMap tq = atth_tensor_map(q, B, T, H, HD, ldq, C::BQ), tk = atth_tensor_map(k, B, T, Hkv, HD, ldkv, C::BK);
    CUtensorMap tv = atth_tensor_map(v, B, T, Hkv, HD, ldkv, C::BK);
    const int sec = lpt ? atth_section((size_t)T * HD * 4, H / Hkv, B * H) : 1, n_work = ceil_div(T, C::BQ) * B * H;
    const int grid = persistent && atth_sm_count() < n_work ? atth_sm_count() : n_work;
    auto kernel = lpt ? attention_forward_sm90_ws_kernel<HD, NWG, true> : attention_forward_sm90_ws_kernel<HD, NWG, false>;
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM));
    kernel<<<grid, C::THREADS, C::SMEM, stream>>>(tq, tk, tv, out, lse, T, H, Hkv, sec, n_work);
    cudaCheck(cudaGetLastError());
}

#ifndef ATTH_FWD_VERSION
#define ATTH_FWD_VERSION 11  // the trainer's Hopper forward: 11 (by shape), 5-10 warp-specialized, 4 overlap, 3 plain
#endif
// the Hopper forward itself (attention_forward picks it when attention_sm90_usable() and d is 64 or 128);
// version: 3 and 4 the kernel with all threads loading (overlap off / on), 5 the warp-specialized one (3 consumer
// warpgroups at d = 64, 2 at d = 128), 6 the same with 2 consumer warpgroups at d = 64 too, 7 and 8 versions 5 and
// 6 with the longest blocks of all heads of an L2 section first (atth_block_order) and no products for warpgroups
// past T (LEAN), 9 and 10 versions 7 and 8 persistent (one CTA per SM), 11 by shape: 9 where blocks are short
// (T <= 2048), else 7 (d = 64) or 5 (d = 128), the fastest of each in bench_attention.py's runs (the table in
// this file's versions 9, 10 comment); ldq, ldkv: the row strides of q and of k, v (0: dense; attention_row_strides)
static void attention_forward_sm90(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                                   int B, int T, int H, int Hkv, int d, cudaStream_t stream, int version = ATTH_FWD_VERSION,
                                   int ldq = 0, int ldkv = 0) {
    attention_check_shape(B, T, H, Hkv, d);
    attention_check_ptr(out, "out"); attention_check_ptr(q, "q"); attention_check_ptr(k, "k"); attention_check_ptr(v, "v");
    int ld[2];
    attention_row_strides(ld, ldq, ldkv, H, Hkv, d);
    if (d != 64 && d != 128) fatal("attention (Hopper): head width d=%d is not supported (64 or 128)", d);
    if (version < 3 || version > 11) fatal("attention (Hopper): forward version %d does not exist (3 to 11)", version);
    if (version == 11) version = T <= 256 ? 10 : T <= 2048 ? 9 : d == 64 ? 7 : 5;
    if (!attention_sm90_usable())
        fatal("attention (Hopper): needs a compute capability 9.0 GPU, a binary built with "
              "-gencode arch=compute_90a,code=sm_90a, and SESSA_ATT_SM90 not 0");
    const int l0 = ld[0], l1 = ld[1];
    const bool lpt = version >= 7, per = version >= 9, nwg3 = version % 2 == 1;   // (3 consumer warpgroups: d = 64 only)
    if (d == 64 && version == 3) attention_forward_sm90_hd<64, false>(out, lse, q, k, v, B, T, H, Hkv, l0, l1, stream);
    if (d == 64 && version == 4) attention_forward_sm90_hd<64, true>(out, lse, q, k, v, B, T, H, Hkv, l0, l1, stream);
    if (d == 64 && version >= 5 && nwg3) attention_forward_sm90_ws_hd<64, 3>(out, lse, q, k, v, B, T, H, Hkv, l0, l1, lpt, per, stream);
    if (d == 64 && version >= 5 && !nwg3) attention_forward_sm90_ws_hd<64, 2>(out, lse, q, k, v, B, T, H, Hkv, l0, l1, lpt, per, stream);
    if (d == 128 && version == 3) attention_forward_sm90_hd<128, false>(out, lse, q, k, v, B, T, H, Hkv, l0, l1, stream);
    if (d == 128 && version == 4) attention_forward_sm90_hd<128, true>(out, lse, q, k, v, B, T, H, Hkv, l0, l1, stream);
    if (d == 128 && version >= 5) attention_forward_sm90_ws_hd<128, 2>(out, lse, q, k, v, B, T, H, Hkv, l0, l1, lpt, per, stream);
}

#include "attention_sm90_bwd.cuh"   // the backward, on the pieces above

#endif // SESSA_ATTENTION_SM90_CUH
