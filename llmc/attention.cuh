/*
 Causal grouped-query attention, FlashAttention-2 class: fragments in registers (mma.sync m16n8k16 bf16 ->
 fp32, ldmatrix), cp.async double-buffered K/V (or Q/dO) tiles, online softmax in registers, causal tile
 skipping. Scale 1/sqrt(d); query head h reads key/value head h / (H/Hkv); the diagonal is included (t attends
 j <= t). RoPE is applied before these calls (its backward within attention_backward: rope below). (The simple
 wmma version this replaced is version 1 of dev/cuda/attention_forward.cu and attention_backward.cu.)

 API (row-major, token-major, bf16 storage, fp32 accumulation; every pointer 16-byte aligned):
   void attention_forward(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                          int B, int T, int H, int Hkv, int d, cudaStream_t stream, int ldq = 0, int ldkv = 0);
       q (B,T,H,d), k/v (B,T,Hkv,d)  ->  out (B,T,H,d), lse (B,H,T) = log sum_{j<=t} exp(q_t.k_j/sqrt(d))
   void attention_backward(floatX *dq, floatX *dk, floatX *dv, const floatX *dout, const floatX *out,
                           const float *lse, const floatX *q, const floatX *k, const floatX *v, float *scratch,
                           int B, int T, int H, int Hkv, int d, cudaStream_t stream, int ldq = 0, int ldkv = 0,
                           const float2 *rope = NULL);
       ldq, ldkv: row strides (elements) of q and dq, of k, v, dk, dv (0: dense, H*d and Hkv*d). The trainer
       passes the columns of its stacked projection [q | k | v | qb | kb] (row stride H*d + 2 Hkv*d + 2D) as is;
       out, dout, lse and Delta stay dense.
       dout (B,T,H,d)  ->  dq (B,T,H,d), dk/dv (B,T,Hkv,d) (overwritten; deterministic, no atomics: dq in its
       own kernel per query tile, dk, dv per key tile summing the H/Hkv query heads of its kv head in order)
       rope != NULL (llmc/rope.cuh's table (>= T, d/2) of cos, sin; the forward's q, k were rope_forward's output):
       dq, dk come out as the gradients of rope_forward's inputs, i.e. with rope_backward applied. The Hopper
       kernels rotate each interleaved pair in fp32 right before their one bf16 store (atth_store_rows: no extra
       pass, one rounding); the mma.sync path runs rope_backward after its kernels (two roundings). One
       implementation of the math each way; dev/cuda/attention_backward.cu checks both against the CPU.
   size_t attention_backward_scratch_bytes(int B, int T, int H, int Hkv, int d);   // Delta (B,H,T) fp32
 d must be 32, 64 or 128 (anything else is a fatal error naming it).
 On an sm_90 GPU with a binary built for sm_90a (-gencode arch=compute_90a,code=sm_90a: the Makefiles' default for
 GPU_ARCH=sm_90), attention_forward runs the Hopper kernel of llmc/attention_sm90.cuh (wgmma, FlashAttention-3
 style) for d = 64 and 128; SESSA_ATT_SM90=0 in the environment or -DATT_NO_SM90 keeps the mma.sync kernel below.
 attention_backward likewise runs the Hopper backward of llmc/attention_sm90_bwd.cuh (wgmma, deterministic) for d = 64
 and 128 there, with the same switches (and SESSA_ATT_SM90_BWD=0 for the backward alone); each Hopper path is
 also self-tested once against mma.sync (attention_setup).

 Math. Forward per query tile (128 rows: 4 warps x 2 m-tiles of 16 rows, so every K/V fragment read from
 shared memory feeds 4 mma): for 64-key tiles up to the tile's last row:
   S = Q K^T (Q's A-fragments kept in registers for d <= 64), masked where a key follows the row,
   m' = max(m, rowmax S), P = exp2((S - m') log2e/sqrt(d)), l = l exp2((m - m') ..) + rowsum P,
   O = O exp2(..) + P V with P rounded to bf16 and fed as the A operand straight from the accumulator layout
   (llmc/mma.cuh); out = O / l, lse = m/sqrt(d) + log l. A warp skips key tiles that are wholly after its rows.
 Backward (recompute from lse): P = exp(S/sqrt(d) - lse), dP = dO V^T, Delta_t = dO_t.O_t, dS = P (dP - Delta);
   dQ = dS K / sqrt(d)            kernel per query tile (128 rows, 4 warps x 2 m-tiles), 32-key tiles up to the
                                  diagonal
   dV = P^T dO, dK = dS^T Q / sqrt(d)   kernel per key tile (64 keys, 4 warps x 16), loops over the H/Hkv query
                                  heads in order, then over query tiles at or after the key tile (64 rows; 32 at
                                  d = 128). S^T = K Q^T and dP^T = V dO^T there, so P^T and dS^T come out in
                                  accumulator layout: A operands again.
 The tile shapes are AttFwdCfg / AttBwdCfg (ATT_FWD_MT, ATT_DQ_MT, ATT_KV_MT can be overridden with -D to tune).
 P and dS are rounded to bf16 before their products, as FlashAttention-2 does; softmax statistics, the online
 rescaling and Delta stay fp32; exp2 is the SFU's ex2.approx. dev/test/test_feedback_blocked.c runs this tiling's
 math on the CPU against naive attention. Registers per thread (sm_90, nvcc 13, ptxas -v;
 d = 32/64/128): forward 164/234/254, dQ 160/210/255, dK/dV 132/174/255; spills only at d = 128: forward 8 bytes
 (32-key tiles would have none, but run 11-13% slower), dK/dV 4 bytes.

 Shared memory tiles are bf16 with rows of d + 8 elements: 16-byte aligned rows for cp.async and ldmatrix, and
 (row stride 2d + 16 bytes) 8 consecutive rows fall in 8 different 16-byte bank groups: ldmatrix is conflict-free.
*/
#ifndef SESSA_ATTENTION_CUH
#define SESSA_ATTENTION_CUH

#include <math.h>
#include <stdint.h>
#include "cuda_common.h"
#include "mma.cuh"
#include "rope.cuh"   // rope_backward: the mma.sync path's RoPE backward (attention_backward's rope argument)

#define ATT_WARPS 4
#define ATT_THREADS (ATT_WARPS * WARP_SIZE)
#define ATT_LOG2E 1.4426950408889634f

template <int HD> struct AttCfg { static constexpr int LD = HD + 8; };   // shared-memory row stride (elements)

// dst (R, LD) <- rows [row0, row0+R) of src (row r at src[r*stride]), asynchronously; rows >= T become zeros.
// Called by all threads; the caller commits the group.
template <int HD, int R>
__device__ __forceinline__ void att_load_async(floatX *dst, const floatX *src, int stride, int row0, int T) {
    constexpr int CPR = HD / 8;   // 16-byte chunks per row
    for (int e = threadIdx.x; e < R * CPR; e += ATT_THREADS) {
        int r = e / CPR, c = (e % CPR) * 8;
        bool valid = row0 + r < T;
        cp_async16(dst + r * AttCfg<HD>::LD + c, valid ? src + (size_t)(row0 + r) * stride + c : src, valid);
    }
}

// A-fragment (16x16) of rows row0.., columns col0.. of a row-major smem tile
template <int LD> __device__ __forceinline__ void att_ldA(uint32_t a[4], const floatX *tile, int row0, int col0) {
    int lane = threadIdx.x % WARP_SIZE;
    ldmatrix_x4(a, tile + (row0 + lane % 16) * LD + col0 + (lane / 16) * 8);
}
// B-fragments of two n-blocks for X^T, X a row-major smem tile: rows n0..n0+15 of X as the n index, columns
// k0..k0+15 as k. b[0..1]: n-block n0, b[2..3]: n-block n0+8
template <int LD> __device__ __forceinline__ void att_ldBt(uint32_t b[4], const floatX *tile, int n0, int k0) {
    int lane = threadIdx.x % WARP_SIZE;
    ldmatrix_x4(b, tile + (n0 + lane % 8 + (lane / 16) * 8) * LD + k0 + ((lane / 8) % 2) * 8);
}
// B-fragments of two n-blocks for X itself: rows k0..k0+15 of X as k, columns n0..n0+15 as n (ldmatrix.trans)
template <int LD> __device__ __forceinline__ void att_ldB(uint32_t b[4], const floatX *tile, int k0, int n0) {
    int lane = threadIdx.x % WARP_SIZE;
    ldmatrix_x4_trans(b, tile + (k0 + lane % 8 + ((lane / 8) % 2) * 8) * LD + n0 + (lane / 16) * 8);
}
// the A-fragment of columns 16kk..16kk+15 of a 16 x (8*NB) fp32 accumulator, rounded to bf16
template <int NB> __device__ __forceinline__ void att_acc_to_A(uint32_t a[4], const float (*c)[4], int kk) {
    a[0] = pack_bf16x2(c[2 * kk][0], c[2 * kk][1]);
    a[1] = pack_bf16x2(c[2 * kk][2], c[2 * kk][3]);
    a[2] = pack_bf16x2(c[2 * kk + 1][0], c[2 * kk + 1][1]);
    a[3] = pack_bf16x2(c[2 * kk + 1][2], c[2 * kk + 1][3]);
}
// acc[mt] (16 x 8*NB) += rows row0 + 16mt .. of tile X (16 x HD each) times Y^T, Y rows n0..n0+8*NB-1 (HD):
// every B-fragment pair from shared memory feeds 2*MT mma
template <int HD, int NB, int MT>
__device__ __forceinline__ void att_mma_ABt(float (*acc)[NB][4], const floatX *X, int row0, const floatX *Y, int n0) {
    constexpr int LD = AttCfg<HD>::LD;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) att_ldA<LD>(a[mt], X, row0 + 16 * mt, kk * 16);
#pragma unroll
        for (int nb = 0; nb < NB; nb += 2) {
            uint32_t b[4];
            att_ldBt<LD>(b, Y, n0 + nb * 8, kk * 16);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma_bf16_16816(acc[mt][nb], a[mt], b);
                mma_bf16_16816(acc[mt][nb + 1], a[mt], b + 2);
            }
        }
    }
}
// acc[mt] (16 x HD) += W[mt] (16 x 16*KB, an fp32 accumulator rounded to bf16) times Y (rows k0.., 16*KB x HD)
template <int HD, int KB, int MT>
__device__ __forceinline__ void att_mma_PY(float (*acc)[HD / 8][4], const float (*w)[2 * KB][4], const floatX *Y, int k0) {
    constexpr int LD = AttCfg<HD>::LD;
#pragma unroll
    for (int kk = 0; kk < KB; kk++) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) att_acc_to_A<2 * KB>(a[mt], w[mt], kk);
#pragma unroll
        for (int nd = 0; nd < HD / 8; nd += 2) {
            uint32_t b[4];
            att_ldB<LD>(b, Y, k0 + kk * 16, nd * 8);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma_bf16_16816(acc[mt][nd], a[mt], b);
                mma_bf16_16816(acc[mt][nd + 1], a[mt], b + 2);
            }
        }
    }
}
// rows (t, 16 x HD fp32 accumulator of rows r0 + g, r0 + g + 8) * scale -> bf16 dst rows (row t at dst[t*stride])
template <int HD>
__device__ __forceinline__ void att_store_rows(floatX *dst, int stride, int r0, int T, const float (*acc)[4],
                                               float s_lo, float s_hi) {
    int lane = threadIdx.x % WARP_SIZE, g = lane / 4, tq = lane % 4;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        int t = r0 + g + 8 * half;
        float s = half ? s_hi : s_lo;
        if (t >= T) continue;
        floatX *row = dst + (size_t)t * stride + 2 * tq;
#pragma unroll
        for (int nd = 0; nd < HD / 8; nd++)
            *(uint32_t *)(row + nd * 8) = pack_bf16x2(acc[nd][2 * half] * s, acc[nd][2 * half + 1] * s);
    }
}

// ----------------------------------------------------------------------------
// forward: grid (ceil(T/BQ), H, B), the longest (last) query tiles first. Each warp owns MT = 2 m-tiles of 16
// rows (32 consecutive rows), so every K/V fragment read from shared memory feeds 4 mma. Shared memory: Q (BQ, LD),
// K and V two stages of (BK, LD) each. cp.async groups: {Q, K0}, {V0}, then per tile {K_j+1} {V_j+1}.
// d = 128 re-reads Q's fragments from shared memory (registers: O alone is 128 per thread).
#ifndef ATT_FWD_MT
#define ATT_FWD_MT 2   // m-tiles (of 16 rows) per warp in the forward
#endif
#ifndef ATT_FWD_BK128
#define ATT_FWD_BK128 64   // key tile of the d = 128 forward (32: no spill, 11-13% slower on an H200)
#endif
#ifndef ATT_DQ_MT
#define ATT_DQ_MT 2    // ... in the dQ kernel
#endif
#ifndef ATT_KV_MT
#define ATT_KV_MT 1    // ... (of 16 keys) in the dK/dV kernel, for d <= 64 (d = 128: 1)
#endif
template <int HD> struct AttFwdCfg {
    static constexpr int MT = ATT_FWD_MT, BQ = 16 * MT * ATT_WARPS, BK = HD == 128 ? ATT_FWD_BK128 : 64;
    static constexpr bool QREG = HD <= 64;   // Q's A-fragments held in registers
};
template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attention_forward_kernel(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                         int T, int H, int Hkv, int ldq, int ldkv) {
    using C = AttFwdCfg<HD>;
    constexpr int LD = AttCfg<HD>::LD, MT = C::MT, BQ = C::BQ, BK = C::BK, NB = BK / 8, ND = HD / 8, KS = HD / 16;
    extern __shared__ __align__(128) unsigned char att_smem[];
    floatX *Qs = (floatX *)att_smem, *Ks = Qs + BQ * LD, *Vs = Ks + 2 * BK * LD;
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE, g = lane / 4, tq = lane % 4;
    int i0 = (gridDim.x - 1 - blockIdx.x) * BQ, h = blockIdx.y, b = blockIdx.z, hk = h / (H / Hkv);
    int wr = warp * 16 * MT, w0 = i0 + wr;             // this warp's first row: in the tile, in the sequence
    const floatX *kb = k + (size_t)b * T * ldkv + hk * HD, *vb = v + (size_t)b * T * ldkv + hk * HD;
    const float sl2 = rsqrtf((float)HD) * ATT_LOG2E;   // scores -> log2 units
    const int n_tiles = (min(i0 + BQ, T) - 1) / BK + 1;  // key tiles up to the block's last row

    att_load_async<HD, BQ>(Qs, q + (size_t)b * T * ldq + h * HD, ldq, i0, T);
    att_load_async<HD, BK>(Ks, kb, ldkv, 0, T);
    cp_async_commit();
    att_load_async<HD, BK>(Vs, vb, ldkv, 0, T);
    cp_async_commit();

    float o[MT][ND][4], m[MT][2], l[MT][2];            // rows g, g+8 of each m-tile
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        m[mt][0] = m[mt][1] = -INFINITY; l[mt][0] = l[mt][1] = 0.0f;
#pragma unroll
        for (int nd = 0; nd < ND; nd++) for (int i = 0; i < 4; i++) o[mt][nd][i] = 0.0f;
    }
    uint32_t qf[C::QREG ? MT : 1][C::QREG ? KS : 1][4];
    for (int j = 0; j < n_tiles; j++) {
        const floatX *Kt = Ks + (j & 1) * BK * LD, *Vt = Vs + (j & 1) * BK * LD;
        const int j0 = j * BK;
        const bool active = j0 <= w0 + 16 * MT - 1;      // the tile holds a key some row of this warp attends
        cp_async_wait<1>();                            // Q, K_j landed (V_j may be in flight)
        __syncthreads();                               // ... for every thread; K stage j+1 free (S_j-1 done)
        if constexpr (C::QREG) {
            if (j == 0) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++) for (int kk = 0; kk < KS; kk++) att_ldA<LD>(qf[mt][kk], Qs, wr + 16 * mt, kk * 16);
            }
        }
        if (j + 1 < n_tiles) { att_load_async<HD, BK>(Ks + ((j + 1) & 1) * BK * LD, kb, ldkv, j0 + BK, T); cp_async_commit(); }
        float s[MT][NB][4];
        if (active) {
            // S = Q K^T (32 x BK per warp)
#pragma unroll
            for (int mt = 0; mt < MT; mt++) for (int nb = 0; nb < NB; nb++) for (int i = 0; i < 4; i++) s[mt][nb][i] = 0.0f;
            if constexpr (C::QREG) {
#pragma unroll
                for (int kk = 0; kk < KS; kk++) {
#pragma unroll
                    for (int nb = 0; nb < NB; nb += 2) {
                        uint32_t bf[4];
                        att_ldBt<LD>(bf, Kt, nb * 8, kk * 16);
#pragma unroll
                        for (int mt = 0; mt < MT; mt++) {
                            mma_bf16_16816(s[mt][nb], qf[mt][kk], bf);
                            mma_bf16_16816(s[mt][nb + 1], qf[mt][kk], bf + 2);
                        }
                    }
                }
            } else {
                att_mma_ABt<HD, NB, MT>(s, Qs, wr, Kt, 0);
            }
            if (j0 + BK - 1 > w0) {                    // a key past some row of this warp: causal mask
#pragma unroll
                for (int mt = 0; mt < MT; mt++) for (int nb = 0; nb < NB; nb++) for (int i = 0; i < 4; i++) {
                    int t = w0 + 16 * mt + g + 8 * (i >> 1), c = j0 + nb * 8 + 2 * tq + (i & 1);
                    if (c > t) s[mt][nb][i] = -INFINITY;
                }
            }
            // online softmax; a row's BK scores are spread over the 4 lanes of its quad. m stays finite: tile 0
            // holds key 0, which every row attends
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    float mx0 = -INFINITY, mx1 = -INFINITY;   // two chains: shorter dependencies
#pragma unroll
                    for (int nb = 0; nb < NB; nb += 2) {
                        mx0 = fmaxf(mx0, fmaxf(s[mt][nb][2 * r], s[mt][nb][2 * r + 1]));
                        mx1 = fmaxf(mx1, fmaxf(s[mt][nb + 1][2 * r], s[mt][nb + 1][2 * r + 1]));
                    }
                    float mx = fmaxf(mx0, mx1);
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    float m_new = fmaxf(m[mt][r], mx);
                    float corr = ex2_approx((m[mt][r] - m_new) * sl2), ms = m_new * sl2, rs0 = 0.0f, rs1 = 0.0f;
                    m[mt][r] = m_new;
#pragma unroll
                    for (int nb = 0; nb < NB; nb++) {
                        s[mt][nb][2 * r] = ex2_approx(fmaf(s[mt][nb][2 * r], sl2, -ms));
                        s[mt][nb][2 * r + 1] = ex2_approx(fmaf(s[mt][nb][2 * r + 1], sl2, -ms));
                        rs0 += s[mt][nb][2 * r];
                        rs1 += s[mt][nb][2 * r + 1];
                    }
                    float rs = rs0 + rs1;
                    l[mt][r] = l[mt][r] * corr + rs;   // this lane's part of the row sum (quad-summed at the end)
#pragma unroll
                    for (int nd = 0; nd < ND; nd++) { o[mt][nd][2 * r] *= corr; o[mt][nd][2 * r + 1] *= corr; }
                }
            }
        }
        if (j + 1 < n_tiles) cp_async_wait<1>(); else cp_async_wait<0>();   // V_j landed
        __syncthreads();                               // ... for every thread; V stage j+1 free (P V_j-1 done)
        if (active) att_mma_PY<HD, BK / 16, MT>(o, s, Vt, 0);   // O += P V
        if (j + 1 < n_tiles) { att_load_async<HD, BK>(Vs + ((j + 1) & 1) * BK * LD, vb, ldkv, j0 + BK, T); cp_async_commit(); }
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float inv[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            l[mt][r] += __shfl_xor_sync(0xffffffffu, l[mt][r], 1);
            l[mt][r] += __shfl_xor_sync(0xffffffffu, l[mt][r], 2);
            inv[r] = 1.0f / l[mt][r];
            int t = w0 + 16 * mt + g + 8 * r;
            if (tq == 0 && t < T) lse[((size_t)b * H + h) * T + t] = m[mt][r] * (sl2 / ATT_LOG2E) + logf(l[mt][r]);
        }
        att_store_rows<HD>(out + ((size_t)b * T * H + h) * HD, H * HD, w0 + 16 * mt, T, o[mt], inv[0], inv[1]);
    }
}

// ----------------------------------------------------------------------------
// backward

// Delta[b,h,t] = dout_t . out_t (fp32, from the bf16 tensors), one warp per (b,t,h) row
// Delta[b,h,t] = dout_t . out_t (fp32 sums of the bf16 products), grid-stride free: d/8 threads per (b,t,h) row
// (4, 8 or 16: a power of two, so a row's threads sit in one warp), 16 bytes of each tensor per thread, the row
// summed by shuffles. Reads 2 B T H d bf16 and writes B H T fp32: bandwidth bound (d12 step: 25 MB, ~7 us at
// 4 TB/s; the one-warp-per-row version it replaces read 4 bytes per lane per tensor and took 28 us).
__global__ void attention_delta_kernel(float *delta, const floatX *dout, const floatX *out, int B, int T, int H, int d) {
    const int tpr = d / 8;
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x, row = e / tpr, rows = (size_t)B * T * H;
    float acc = 0.0f;
    if (row < rows) {
        uint4 a = *(const uint4 *)(dout + e * 8), o = *(const uint4 *)(out + e * 8);
        const uint32_t aw[4] = {a.x, a.y, a.z, a.w}, ow[4] = {o.x, o.y, o.z, o.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            acc = fmaf(bf16x2_lo(aw[i]), bf16x2_lo(ow[i]), acc);
            acc = fmaf(bf16x2_hi(aw[i]), bf16x2_hi(ow[i]), acc);
        }
    }
    for (int off = tpr / 2; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (row < rows && e % tpr == 0) {
        int h = row % H, t = (row / H) % T, b = row / ((size_t)H * T);
        delta[((size_t)b * H + h) * T + t] = acc;
    }
}

// Backward tiling. dQ kernel: 4 warps x MT = 2 m-tiles of 16 query rows (128 rows per block), 32-key tiles.
// dK/dV kernel: 4 warps x KV_MT m-tiles of 16 keys (128 keys per block for d <= 64; 64 for d = 128, whose dK and dV
// accumulators alone take 128 registers per m-tile), 32-query tiles.
template <int HD> struct AttBwdCfg {
    static constexpr int DQ_MT = ATT_DQ_MT, DQ_BQ = 16 * DQ_MT * ATT_WARPS, DQ_BK = DQ_MT == 1 && HD <= 64 ? 64 : 32;
    static constexpr int KV_MT = HD == 128 ? 1 : ATT_KV_MT, KV_BK = 16 * KV_MT * ATT_WARPS;
    static constexpr int KV_BQ = KV_MT == 1 && HD <= 64 ? 64 : 32;
};

// dq for one query tile: grid (ceil(T/DQ_BQ), H, B), longest first. Shared memory: Q, dO (DQ_BQ, LD), K and V
// two stages of (DQ_BK, LD) each; one cp.async group per key tile (K_j, V_j), the next one loading during tile j.
template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attention_backward_dq_kernel(floatX *dq, const floatX *dout, const float *lse, const float *delta,
                             const floatX *q, const floatX *k, const floatX *v, int T, int H, int Hkv, int ldq, int ldkv) {
    using C = AttBwdCfg<HD>;
    constexpr int LD = AttCfg<HD>::LD, MT = C::DQ_MT, BQ = C::DQ_BQ, BK = C::DQ_BK, NB = BK / 8, ND = HD / 8;
    extern __shared__ __align__(128) unsigned char att_smem[];
    floatX *Qs = (floatX *)att_smem, *dOs = Qs + BQ * LD, *Ks = dOs + BQ * LD, *Vs = Ks + 2 * BK * LD;
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE, g = lane / 4, tq = lane % 4;
    int i0 = (gridDim.x - 1 - blockIdx.x) * BQ, h = blockIdx.y, b = blockIdx.z, hk = h / (H / Hkv);
    int wr = warp * 16 * MT, w0 = i0 + wr;             // this warp's first row: in the tile, in the sequence
    const floatX *kb = k + (size_t)b * T * ldkv + hk * HD, *vb = v + (size_t)b * T * ldkv + hk * HD;
    const float scale = rsqrtf((float)HD), sl2 = scale * ATT_LOG2E;
    const int n_tiles = (min(i0 + BQ, T) - 1) / BK + 1;

    att_load_async<HD, BQ>(Qs, q + (size_t)b * T * ldq + h * HD, ldq, i0, T);
    att_load_async<HD, BQ>(dOs, dout + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
    att_load_async<HD, BK>(Ks, kb, ldkv, 0, T);
    att_load_async<HD, BK>(Vs, vb, ldkv, 0, T);
    cp_async_commit();
    float lse2[MT][2], dl[MT][2];                      // rows g, g+8 of each m-tile: lse in log2 units, Delta
#pragma unroll
    for (int mt = 0; mt < MT; mt++) for (int r = 0; r < 2; r++) {
        int t = w0 + 16 * mt + g + 8 * r;
        lse2[mt][r] = t < T ? lse[((size_t)b * H + h) * T + t] * ATT_LOG2E : 0.0f;
        dl[mt][r] = t < T ? delta[((size_t)b * H + h) * T + t] : 0.0f;
    }
    float acc[MT][ND][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) for (int nd = 0; nd < ND; nd++) for (int i = 0; i < 4; i++) acc[mt][nd][i] = 0.0f;
    for (int j = 0; j < n_tiles; j++) {
        const floatX *Kt = Ks + (j & 1) * BK * LD, *Vt = Vs + (j & 1) * BK * LD;
        const int j0 = j * BK;
        cp_async_wait<0>();
        __syncthreads();                               // tile j visible to all; stage j+1 free (tile j-1 done)
        if (j + 1 < n_tiles) {
            att_load_async<HD, BK>(Ks + ((j + 1) & 1) * BK * LD, kb, ldkv, j0 + BK, T);
            att_load_async<HD, BK>(Vs + ((j + 1) & 1) * BK * LD, vb, ldkv, j0 + BK, T);
            cp_async_commit();
        }
        if (j0 > w0 + 16 * MT - 1) continue;           // every key of the tile is after every row of this warp
        float s[MT][NB][4], dp[MT][NB][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) for (int nb = 0; nb < NB; nb++) for (int i = 0; i < 4; i++) { s[mt][nb][i] = 0.0f; dp[mt][nb][i] = 0.0f; }
        att_mma_ABt<HD, NB, MT>(s, Qs, wr, Kt, 0);      // S = Q K^T
        att_mma_ABt<HD, NB, MT>(dp, dOs, wr, Vt, 0);    // dP = dO V^T
        const bool diag = j0 + BK - 1 > w0;
#pragma unroll
        for (int mt = 0; mt < MT; mt++) for (int nb = 0; nb < NB; nb++) for (int i = 0; i < 4; i++) {
            int r = i >> 1, t = w0 + 16 * mt + g + 8 * r, c = j0 + nb * 8 + 2 * tq + (i & 1);
            float p = (diag && c > t) ? 0.0f : ex2_approx(fmaf(s[mt][nb][i], sl2, -lse2[mt][r]));
            dp[mt][nb][i] = p * (dp[mt][nb][i] - dl[mt][r]);   // dS
        }
        att_mma_PY<HD, BK / 16, MT>(acc, dp, Kt, 0);    // dQ += dS K
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
        att_store_rows<HD>(dq + (size_t)b * T * ldq + h * HD, ldq, w0 + 16 * mt, T, acc[mt], scale, scale);
}

// dk, dv for one key tile of one kv head, summed over its H/Hkv query heads in order: grid (ceil(T/KV_BK), Hkv, B).
// Shared memory: K, V (KV_BK, LD); Q, dO two stages of (KV_BQ, LD) each, lse (log2 units) and Delta two stages of
// KV_BQ floats. The work list: for each query head of the group, the query tiles i0 = j0, j0 + KV_BQ, .. < T.
template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attention_backward_dkv_kernel(floatX *dk, floatX *dv, const floatX *dout, const float *lse, const float *delta,
                              const floatX *q, const floatX *k, const floatX *v, int T, int H, int Hkv, int ldq, int ldkv) {
    using C = AttBwdCfg<HD>;
    constexpr int LD = AttCfg<HD>::LD, MT = C::KV_MT, BKV = C::KV_BK, BQ = C::KV_BQ, NB = BQ / 8, ND = HD / 8;
    static_assert(BQ <= ATT_THREADS, "one thread per query row fetches lse and Delta");
    extern __shared__ __align__(128) unsigned char att_smem[];
    floatX *Ks = (floatX *)att_smem, *Vs = Ks + BKV * LD, *Qs = Vs + BKV * LD, *dOs = Qs + 2 * BQ * LD;
    float *Ls = (float *)(dOs + 2 * BQ * LD), *Ds = Ls + 2 * BQ;
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE, g = lane / 4, tq = lane % 4;
    int j0 = blockIdx.x * BKV, hk = blockIdx.y, b = blockIdx.z, grp = H / Hkv;
    int wr = warp * 16 * MT, w0 = j0 + wr;             // this warp's first key: in the tile, in the sequence
    const float scale = rsqrtf((float)HD), sl2 = scale * ATT_LOG2E;
    const int n_q = (T - j0 + BQ - 1) / BQ, n_it = grp * n_q;   // query tiles per head, work items

    // lse (log2 units) and Delta of row threadIdx.x (< BQ) of work item it, fetched into registers one item ahead:
    // the global loads' latency then hides behind a whole item of mma work instead of stalling the store
    float l_next = 0.0f, d_next = 0.0f;
    auto fetch = [&](int it) {
        int h = hk * grp + it / n_q, t = j0 + (it % n_q) * BQ + threadIdx.x;
        l_next = t < T ? lse[((size_t)b * H + h) * T + t] * ATT_LOG2E : 0.0f;
        d_next = t < T ? delta[((size_t)b * H + h) * T + t] : 0.0f;
    };
    // work item it -> stage it&1: Q, dO rows [i0, i0+BQ) of head h (async); lse, Delta from the registers
    auto issue = [&](int it) {
        int h = hk * grp + it / n_q, i0 = j0 + (it % n_q) * BQ, st = it & 1;
        att_load_async<HD, BQ>(Qs + st * BQ * LD, q + (size_t)b * T * ldq + h * HD, ldq, i0, T);
        att_load_async<HD, BQ>(dOs + st * BQ * LD, dout + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
        cp_async_commit();
        if (threadIdx.x < BQ) {
            Ls[st * BQ + threadIdx.x] = l_next;
            Ds[st * BQ + threadIdx.x] = d_next;
            if (it + 1 < n_it) fetch(it + 1);
        }
    };
    if (threadIdx.x < BQ) fetch(0);
    att_load_async<HD, BKV>(Ks, k + (size_t)b * T * ldkv + hk * HD, ldkv, j0, T);
    att_load_async<HD, BKV>(Vs, v + (size_t)b * T * ldkv + hk * HD, ldkv, j0, T);
    issue(0);                                         // one group: K, V and work item 0

    float dka[MT][ND][4], dva[MT][ND][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) for (int nd = 0; nd < ND; nd++) for (int i = 0; i < 4; i++) { dka[mt][nd][i] = 0.0f; dva[mt][nd][i] = 0.0f; }
    for (int it = 0; it < n_it; it++) {
        int i0 = j0 + (it % n_q) * BQ, st = it & 1;
        const floatX *Qt = Qs + st * BQ * LD, *dOt = dOs + st * BQ * LD;
        const float *Lt = Ls + st * BQ, *Dt = Ds + st * BQ;
        cp_async_wait<0>();
        __syncthreads();                               // item it visible to all; stage it+1 free (item it-1 done)
        if (it + 1 < n_it) issue(it + 1);
        if (i0 + BQ - 1 < w0) continue;                // every query of the tile is before every key of this warp
        float s[MT][NB][4], dp[MT][NB][4];             // rows: keys w0 + 16 mt + (g, g+8); columns: queries
#pragma unroll
        for (int mt = 0; mt < MT; mt++) for (int nb = 0; nb < NB; nb++) for (int i = 0; i < 4; i++) { s[mt][nb][i] = 0.0f; dp[mt][nb][i] = 0.0f; }
        att_mma_ABt<HD, NB, MT>(s, Ks, wr, Qt, 0);      // S^T = K Q^T
        att_mma_ABt<HD, NB, MT>(dp, Vs, wr, dOt, 0);    // dP^T = V dO^T
        const bool edge = i0 < w0 + 16 * MT || i0 + BQ > T;   // a query before some key, or past the end: mask
#pragma unroll
        for (int mt = 0; mt < MT; mt++) for (int nb = 0; nb < NB; nb++) for (int i = 0; i < 4; i++) {
            int c = nb * 8 + 2 * tq + (i & 1), t = i0 + c, key = w0 + 16 * mt + g + 8 * (i >> 1);
            float p = (edge && (t < key || t >= T)) ? 0.0f : ex2_approx(fmaf(s[mt][nb][i], sl2, -Lt[c]));
            s[mt][nb][i] = p;                          // P^T
            dp[mt][nb][i] = p * (dp[mt][nb][i] - Dt[c]);   // dS^T
        }
        att_mma_PY<HD, BQ / 16, MT>(dva, s, dOt, 0);    // dV += P^T dO
        att_mma_PY<HD, BQ / 16, MT>(dka, dp, Qt, 0);    // dK += dS^T Q
    }
    size_t base = (size_t)b * T * ldkv + hk * HD;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        att_store_rows<HD>(dv + base, ldkv, w0 + 16 * mt, T, dva[mt], 1.0f, 1.0f);
        att_store_rows<HD>(dk + base, ldkv, w0 + 16 * mt, T, dka[mt], scale, scale);
    }
}

// ----------------------------------------------------------------------------
// launchers

template <int HD> static size_t attention_forward_smem() {
    return (size_t)(AttFwdCfg<HD>::BQ + 4 * AttFwdCfg<HD>::BK) * (HD + 8) * sizeof(floatX);
}
template <int HD> static size_t attention_dq_smem() {
    return (size_t)(2 * AttBwdCfg<HD>::DQ_BQ + 4 * AttBwdCfg<HD>::DQ_BK) * (HD + 8) * sizeof(floatX);
}
template <int HD> static size_t attention_dkv_smem() {
    using C = AttBwdCfg<HD>;
    return (size_t)(2 * C::KV_BK + 4 * C::KV_BQ) * (HD + 8) * sizeof(floatX) + (size_t)4 * C::KV_BQ * sizeof(float);
}

static void attention_check_shape(int B, int T, int H, int Hkv, int d) {
    if (B < 1 || T < 1 || H < 1 || Hkv < 1 || H % Hkv != 0)
        fatal("attention: invalid shape B=%d T=%d H=%d Hkv=%d (H must be a multiple of Hkv)", B, T, H, Hkv);
    if (d != 32 && d != 64 && d != 128) fatal("attention: head width d=%d is not supported (32, 64 or 128)", d);
    if (H > 65535 || B > 65535)
        fatal("attention: grid too large for B=%d T=%d H=%d", B, T, H);
}
// cp.async and the paired bf16 stores need 16-byte aligned tensors
static void attention_check_ptr(const void *p, const char *name) {
    if ((uintptr_t)p % 16) fatal("attention: %s (%p) is not 16-byte aligned", name, p);
}
// the row strides (elements) of q/dq and of k/v/dk/dv: 0 means dense rows (H*d, Hkv*d); a stride must hold the
// heads and keep every row 16-byte aligned. Returns the strides to use in ld[0], ld[1].
static void attention_row_strides(int ld[2], int ldq, int ldkv, int H, int Hkv, int d) {
    ld[0] = ldq != 0 ? ldq : H * d;
    ld[1] = ldkv != 0 ? ldkv : Hkv * d;
    if (ld[0] < H * d || ld[1] < Hkv * d || ld[0] % 8 || ld[1] % 8)
        fatal("attention: row strides ldq=%d ldkv=%d for H=%d Hkv=%d d=%d (at least H*d, Hkv*d; multiples of 8)",
              ldq, ldkv, H, Hkv, d);
}

template <int HD>
static void attention_forward_hd(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                                 int B, int T, int H, int Hkv, int ldq, int ldkv, cudaStream_t stream) {
    size_t smem = attention_forward_smem<HD>();
    cudaCheck(cudaFuncSetAttribute(attention_forward_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attention_forward_kernel<HD><<<dim3(ceil_div(T, AttFwdCfg<HD>::BQ), H, B), ATT_THREADS, smem, stream>>>(out, lse, q, k, v, T, H, Hkv, ldq, ldkv);
    cudaCheck(cudaGetLastError());
}

// the mma.sync forward (any GPU from sm_80; dev/cuda/attention_forward.cu version 2)
static void attention_forward_mma(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                                  int B, int T, int H, int Hkv, int d, cudaStream_t stream, int ldq = 0, int ldkv = 0) {
    attention_check_shape(B, T, H, Hkv, d);
    attention_check_ptr(out, "out"); attention_check_ptr(q, "q"); attention_check_ptr(k, "k"); attention_check_ptr(v, "v");
    int ld[2];
    attention_row_strides(ld, ldq, ldkv, H, Hkv, d);
    if (d == 32) attention_forward_hd<32>(out, lse, q, k, v, B, T, H, Hkv, ld[0], ld[1], stream);
    if (d == 64) attention_forward_hd<64>(out, lse, q, k, v, B, T, H, Hkv, ld[0], ld[1], stream);
    if (d == 128) attention_forward_hd<128>(out, lse, q, k, v, B, T, H, Hkv, ld[0], ld[1], stream);
}

// The Hopper forward (wgmma, llmc/attention_sm90.cuh; version 3 in dev/cuda/attention_forward.cu). The CPU
// emulator runs it through its wgmma twins (dev/cuda_emu), but its trainer keeps the mma.sync path.
#include "attention_sm90.cuh"

// Delta (B,H,T) fp32, then the Hopper backward versions 12-17's dQ accumulator and counters
static size_t attention_delta_bytes(int B, int T, int H) { return ((size_t)B * H * T * sizeof(float) + 255) / 256 * 256; }
static size_t attention_backward_scratch_bytes(int B, int T, int H, int Hkv, int d) {
    (void)Hkv;
    return attention_delta_bytes(B, T, H) + atth_dq_work_bytes(B, T, H, d);
}

static void attention_backward_check(const floatX *dq, const floatX *dk, const floatX *dv, const floatX *dout,
                                     const floatX *out, const floatX *q, const floatX *k, const floatX *v,
                                     int B, int T, int H, int Hkv, int d) {
    attention_check_shape(B, T, H, Hkv, d);
    attention_check_ptr(dq, "dq"); attention_check_ptr(dk, "dk"); attention_check_ptr(dv, "dv");
    attention_check_ptr(dout, "dout"); attention_check_ptr(out, "out");
    attention_check_ptr(q, "q"); attention_check_ptr(k, "k"); attention_check_ptr(v, "v");
}
// Delta (B,H,T) = rowwise dout . out, the first step of either backward
static void attention_delta(float *delta, const floatX *dout, const floatX *out, int B, int T, int H, int d,
                            cudaStream_t stream) {
    attention_delta_kernel<<<ceil_div((long long)B * T * H * (d / 8), 256), 256, 0, stream>>>(delta, dout, out, B, T, H, d);
    cudaCheck(cudaGetLastError());
}

template <int HD>
static void attention_backward_hd(floatX *dq, floatX *dk, floatX *dv, const floatX *dout, const float *lse,
                                  const float *delta, const floatX *q, const floatX *k, const floatX *v,
                                  int B, int T, int H, int Hkv, int ldq, int ldkv, cudaStream_t stream) {
    size_t smem_q = attention_dq_smem<HD>(), smem_kv = attention_dkv_smem<HD>();
    cudaCheck(cudaFuncSetAttribute(attention_backward_dq_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_q));
    cudaCheck(cudaFuncSetAttribute(attention_backward_dkv_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_kv));
    attention_backward_dkv_kernel<HD><<<dim3(ceil_div(T, AttBwdCfg<HD>::KV_BK), Hkv, B), ATT_THREADS, smem_kv, stream>>>(
        dk, dv, dout, lse, delta, q, k, v, T, H, Hkv, ldq, ldkv);
    cudaCheck(cudaGetLastError());
    attention_backward_dq_kernel<HD><<<dim3(ceil_div(T, AttBwdCfg<HD>::DQ_BQ), H, B), ATT_THREADS, smem_q, stream>>>(
        dq, dout, lse, delta, q, k, v, T, H, Hkv, ldq, ldkv);
    cudaCheck(cudaGetLastError());
}

// the mma.sync backward (any GPU from sm_80; dev/cuda/attention_backward.cu version 2); rope != NULL: then
// rope_backward (llmc/rope.cuh) on dq, dk in place, a separate pass (the Hopper kernels fuse it into their stores)
static void attention_backward_mma(floatX *dq, floatX *dk, floatX *dv, const floatX *dout, const floatX *out,
                                   const float *lse, const floatX *q, const floatX *k, const floatX *v, float *scratch,
                                   int B, int T, int H, int Hkv, int d, cudaStream_t stream, int ldq = 0, int ldkv = 0,
                                   const float2 *rope = NULL) {
    attention_backward_check(dq, dk, dv, dout, out, q, k, v, B, T, H, Hkv, d);
    int ld[2];
    attention_row_strides(ld, ldq, ldkv, H, Hkv, d);
    float *delta = scratch;   // (B, H, T)
    attention_delta(delta, dout, out, B, T, H, d, stream);
    if (d == 32) attention_backward_hd<32>(dq, dk, dv, dout, lse, delta, q, k, v, B, T, H, Hkv, ld[0], ld[1], stream);
    if (d == 64) attention_backward_hd<64>(dq, dk, dv, dout, lse, delta, q, k, v, B, T, H, Hkv, ld[0], ld[1], stream);
    if (d == 128) attention_backward_hd<128>(dq, dk, dv, dout, lse, delta, q, k, v, B, T, H, Hkv, ld[0], ld[1], stream);
    if (rope) rope_backward(dq, ld[0], H, dk, ld[1], Hkv, rope, B * T, T, d, stream);
}
// the Hopper backward (wgmma, llmc/attention_sm90_bwd.cuh; dev/cuda/attention_backward.cu versions 3-17: 4 with the
// warp-specialized kernels, 5 the same in longest-first order, 6 that with its consumer warpgroups in ping-pong,
// 7 that with register A operands; 8-11 with software-pipelined consumers in one or both kernels at d = 64: 9 the
// dQ kernel's, the same bits as 7, 1-2% faster; 11 that in ping-pong; 12 dQ in the dK/dV kernel (5 products
// instead of 7, the adds ordered by counters: deterministic; at d = 128 each consumer warpgroup makes a column
// half of dQ); 13 is 12 with the adds made by writer warps, the same bits; 14 that with TMA bulk reductions, the
// same bits; 16 is 14 with 2 staging buffers per warpgroup and one reduction in flight per writer, the same bits;
// (slower than 14 everywhere: H200); 17 is 14 with those 2 buffers only, the same bits; 15, the trainer's, 14 at d = 64 from T = 8192 on and at d = 128 from T = 16384
// on (H200: 7% and 3-6% faster than 9 at T = 16384), else 9: atth_bwd_version15), d = 64, 128
#ifndef ATTH_BWD_VERSION
#define ATTH_BWD_VERSION 15
#endif
static void attention_backward_sm90(floatX *dq, floatX *dk, floatX *dv, const floatX *dout, const floatX *out,
                                    const float *lse, const floatX *q, const floatX *k, const floatX *v, float *scratch,
                                    int B, int T, int H, int Hkv, int d, cudaStream_t stream, int version = ATTH_BWD_VERSION,
                                    int ldq = 0, int ldkv = 0, const float2 *rope = NULL) {
    attention_backward_check(dq, dk, dv, dout, out, q, k, v, B, T, H, Hkv, d);
    int ld[2];
    attention_row_strides(ld, ldq, ldkv, H, Hkv, d);
    float *delta = scratch, *work = (float *)((char *)scratch + attention_delta_bytes(B, T, H));
    attention_delta(delta, dout, out, B, T, H, d, stream);
    attention_backward_sm90_kernels(dq, dk, dv, dout, lse, delta, q, k, v, work, B, T, H, Hkv, d, ld[0], ld[1], version,
                                    stream, rope);
}

// Whether the trainer takes the Hopper paths: attention_sm90_usable() and, once per process, a self-test on a small
// random problem (B=1, T=300, H=2, Hkv=1, d = 64 and 128, the mma.sync forward's out, lse and a random dout; q, k, v
// and dq, dk, dv column slices of a (T, 4d + 8) matrix as the trainer's stacked projection makes them): the
// Hopper forward against the mma.sync one within the tolerance of dev/cuda/attention_forward.cu's check (|diff| <=
// 1e-2 max|x| + 2e-2 |x|; lse 1e-3), the Hopper backward against the mma.sync one with the same bound on dq, dk and
// dv (each is within 1e-2 max + 1e-2 |x| of the exact gradient: dev/cuda/attention_backward.cu's check), both with
// a RoPE table as the trainer's (the Hopper kernels' fused rotation in their stores against mma.sync + rope_backward;
// a rotation preserves each pair's norm, so the same bound holds). A Hopper
// kernel that is wrong on this GPU is then bypassed (forward and backward separately), with a message on stderr,
// instead of training on wrong attention; the warp-specialized (TMA) versions fall back first to the previous ones
// (forward 11 -> 9 -> 7 -> 5 -> 4, 10 -> 8 -> 6 -> 4, backward 9 -> 8 -> 7 -> 6 -> 5 -> 4 -> 3: dev/cuda/attention_*.cu),
// and to mma.sync only when those fail too.
static int attention_sm90_state = -1, attention_sm90_bwd_state = -1;   // -1: not decided yet
static int attention_sm90_fwd_version = ATTH_FWD_VERSION;               // the Hopper forward the trainer runs
static int attention_sm90_bwd_version = ATTH_BWD_VERSION;               // and backward
static int attention_sm90_selftest_failures = 0;                       // failed self-tests (0 on a sound GPU)
static int attention_sm90_decided(void) { return attention_sm90_state >= 0; }

// 1 when the bf16 device tensors x (the Hopper kernel's) and ref (the mma.sync one's), rows x cols entries with
// rows ld apart, agree within 1e-2 max|ref| + 2e-2 |ref| (a NaN fails); else 0 and a message naming the tensor
static int attention_selftest_close(const floatX *x, const floatX *ref, int rows, int cols, int ld, const char *name, int d) {
    size_t n = (size_t)rows * cols;
    floatX *h = (floatX *)mallocCheck(2 * n * sizeof(floatX));
    cudaCheck(cudaMemcpy2D(h, cols * sizeof(floatX), x, ld * sizeof(floatX), cols * sizeof(floatX), rows, cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy2D(h + n, cols * sizeof(floatX), ref, ld * sizeof(floatX), cols * sizeof(floatX), rows, cudaMemcpyDeviceToHost));
    float mx = 0.0f, worst = 0.0f;
    for (size_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(__bfloat162float(h[n + i])));
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        float r = __bfloat162float(h[n + i]), e = fabsf(__bfloat162float(h[i]) - r);
        if (!(e <= 1e-2f * mx + 2e-2f * fabsf(r))) ok = 0;
        worst = fmaxf(worst, e);
    }
    if (!ok)
        fprintf(stderr, "attention: the Hopper (wgmma) kernel disagrees with the mma.sync one on %s at d=%d (max |diff| "
                "%.3g of max|%s| %.3g): bypassing it. Run dev/cuda/bin/attention_forward and attention_backward check.\n",
                name, d, worst, name, mx);
    free(h);
    return ok;
}

// the self-test of Hopper forward `version` (into out, lse) against the mma.sync one's ref_out, ref_lse: 1 if close
static int attention_selftest_forward(int version, floatX *out, float *lse, const floatX *ref_out, const float *ref_lse,
                                      const floatX *q, const floatX *k, const floatX *v, int B, int T, int H, int Hkv, int d,
                                      int ld) {
    size_t nl = (size_t)B * H * T;
    attention_forward_sm90(out, lse, q, k, v, B, T, H, Hkv, d, 0, version, ld, ld);
    int ok = attention_selftest_close(out, ref_out, B * T, H * d, H * d, "out", d);
    float *hl = (float *)mallocCheck(2 * nl * sizeof(float)), worst_lse = 0.0f;
    cudaCheck(cudaMemcpy(hl, lse, nl * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(hl + nl, ref_lse, nl * sizeof(float), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < nl; i++) worst_lse = fmaxf(worst_lse, fabsf(hl[i] - hl[nl + i]));
    if (!(worst_lse <= 1e-3f)) {                      // NaN fails too
        fprintf(stderr, "attention: the Hopper (wgmma) forward's lse is off by %.3g at d=%d.\n", worst_lse, d);
        ok = 0;
    }
    free(hl);
    return ok;
}

static void attention_sm90_decide(void) {
    if (attention_sm90_state >= 0) return;
    attention_sm90_state = attention_sm90_bwd_state = attention_sm90_usable();
    const char *bwd_env = getenv("SESSA_ATT_SM90_BWD");   // 0: the Hopper forward only (to compare the backwards)
    if (bwd_env && strcmp(bwd_env, "0") == 0) attention_sm90_bwd_state = 0;
    // SESSA_ATT_FWD_VERSION=3..11, SESSA_ATT_BWD_VERSION=3..17: another Hopper version (dev/cuda/attention_*.cu), to compare
    const char *fv = getenv("SESSA_ATT_FWD_VERSION"), *bv = getenv("SESSA_ATT_BWD_VERSION");
    if (fv) attention_sm90_fwd_version = atoi(fv);
    if (bv) attention_sm90_bwd_version = atoi(bv);
    if (attention_sm90_fwd_version < 3 || attention_sm90_fwd_version > 11 || attention_sm90_bwd_version < 3 || attention_sm90_bwd_version > 17)
        fatal("attention: SESSA_ATT_FWD_VERSION=%s (3 to 11) or SESSA_ATT_BWD_VERSION=%s (3 to 17) is not a Hopper version",
              fv ? fv : "unset", bv ? bv : "unset");
    for (int d = 64; attention_sm90_usable() && d <= 128; d *= 2) {
        const int B = 1, T = 300, H = 2, Hkv = 1, ld = (H + 2 * Hkv) * d + 8;   // 8: the least pad TMA allows
        size_t nq = (size_t)B * T * H * d, nl = (size_t)B * H * T, nqkv = (size_t)B * T * ld;
        floatX *h = (floatX *)mallocCheck((nqkv + nq) * sizeof(floatX));   // q | k | v | pad rows, then dout
        uint32_t x = 12345u;
        for (size_t i = 0; i < nqkv + nq; i++) {      // q, k, dout uniform in [-2, 2), v in [-1, 1), the pad 0
            x = x * 1664525u + 1013904223u;
            float u = (float)(x >> 8) / 16777216.0f;
            int c = i < nqkv ? (int)(i % ld) : 0;
            h[i] = __float2bfloat16(c < (H + Hkv) * d ? 4.0f * u - 2.0f : c < (H + 2 * Hkv) * d ? 2.0f * u - 1.0f : 0.0f);
        }
        floatX *din, *dout2, *dgrad;                  // inputs; out of both forwards; dq | dk | dv of both backwards
        float *dlse, *dscratch;
        cudaCheck(cudaMalloc((void **)&din, (nqkv + nq) * sizeof(floatX)));
        cudaCheck(cudaMalloc((void **)&dout2, 2 * nq * sizeof(floatX)));
        cudaCheck(cudaMalloc((void **)&dgrad, 2 * nqkv * sizeof(floatX)));
        cudaCheck(cudaMalloc((void **)&dlse, 2 * nl * sizeof(float)));
        cudaCheck(cudaMalloc((void **)&dscratch, attention_backward_scratch_bytes(B, T, H, Hkv, d)));
        cudaCheck(cudaMemcpy(din, h, (nqkv + nq) * sizeof(floatX), cudaMemcpyHostToDevice));
        const floatX *q = din, *k = din + H * d, *v = k + Hkv * d, *dout = din + nqkv;
        attention_forward_mma(dout2, dlse, q, k, v, B, T, H, Hkv, d, 0, ld, ld);
        int fwd_ok = 0;   // the version asked for, then the previous ones: 11 -> 9 -> 7 -> 5 -> 4, 10 -> 8 -> 6 -> 4
        for (int ver = attention_sm90_fwd_version; ver >= 3 && !fwd_ok; ver = ver >= 7 ? ver - 2 : ver > 4 ? 4 : 0) {
            if (ver != attention_sm90_fwd_version)
                fprintf(stderr, "attention: the Hopper forward version %d failed its self-test at d=%d: trying version %d.\n",
                        attention_sm90_fwd_version, d, ver);
            attention_sm90_fwd_version = ver;
            fwd_ok = attention_selftest_forward(ver, dout2 + nq, dlse + nl, dout2, dlse, q, k, v, B, T, H, Hkv, d, ld);
            attention_sm90_selftest_failures += !fwd_ok;
        }
        floatX *g0 = dgrad, *g1 = dgrad + nqkv;       // dq | dk | dv rows of the mma.sync / Hopper backward
        float2 *rope = rope_table_create(T, d);       // both backwards with RoPE's backward (the trainer's call)
        const int offs[3] = {0, H * d, (H + Hkv) * d}, widths[3] = {H * d, Hkv * d, Hkv * d};
        const char *names[3] = {"dq", "dk", "dv"};
        attention_backward_mma(g0, g0 + offs[1], g0 + offs[2], dout, dout2, dlse, q, k, v, dscratch, B, T, H, Hkv, d, 0, ld, ld,
                               rope);
        int bwd_ok = 0;
        for (int ver = attention_sm90_bwd_version; ver >= 3 && !bwd_ok; ver--) {   // 17 .. 7, 6, 5, 4, then 3
            if (ver < attention_sm90_bwd_version)
                fprintf(stderr, "attention: the Hopper backward version %d failed its self-test at d=%d: trying version %d.\n",
                        ver + 1, d, ver);
            attention_sm90_bwd_version = ver;
            attention_backward_sm90(g1, g1 + offs[1], g1 + offs[2], dout, dout2, dlse, q, k, v, dscratch, B, T, H, Hkv, d, 0,
                                    ver, ld, ld, rope);
            bwd_ok = 1;
            for (int i = 0; i < 3; i++)
                bwd_ok &= attention_selftest_close(g1 + offs[i], g0 + offs[i], B * T, widths[i], ld, names[i], d);
            attention_sm90_selftest_failures += !bwd_ok;
        }
        if (!fwd_ok) attention_sm90_state = 0;
        if (!bwd_ok) attention_sm90_bwd_state = 0;
        free(h);
        cudaCheck(cudaFree(din)); cudaCheck(cudaFree(dout2)); cudaCheck(cudaFree(dgrad));
        cudaCheck(cudaFree(dlse)); cudaCheck(cudaFree(dscratch)); cudaCheck(cudaFree(rope));
    }
}
static int attention_sm90_trusted(void) { attention_sm90_decide(); return attention_sm90_state; }
static int attention_sm90_bwd_trusted(void) { attention_sm90_decide(); return attention_sm90_bwd_state; }

// Decide the kernels now (the probe and the self-test launch, allocate and synchronize), so that no later call
// does it inside a CUDA graph capture. The trainer calls this when it allocates its activations.
static void attention_setup(void) {
#ifndef SESSA_CUDA_EMU_H
    attention_sm90_decide();
#endif
}

// the forward and backward below take the Hopper kernels when the device is sm_90, the binary has sm_90a code,
// d is 64 or 128, they are not switched off (SESSA_ATT_SM90=0 both, SESSA_ATT_SM90_BWD=0 the backward only,
// -DATT_NO_SM90 both) and their self-test passed (each its own); else the mma.sync kernels. The CPU emulator's
// trainer keeps mma.sync.
static int attention_use_sm90(int d, cudaStream_t stream, int backward) {
#ifndef SESSA_CUDA_EMU_H
    if (d != 64 && d != 128) return 0;
    cudaStreamCaptureStatus capturing;
    cudaCheck(cudaStreamIsCapturing(stream, &capturing));
    if (capturing != cudaStreamCaptureStatusNone && !attention_sm90_decided())
        fatal("attention inside a CUDA graph capture before attention_setup(): call it first");
    return backward ? attention_sm90_bwd_trusted() : attention_sm90_trusted();
#else
    (void)d; (void)stream; (void)backward;
    return 0;
#endif
}

// what the trainer calls (see attention_use_sm90)
static void attention_forward(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                              int B, int T, int H, int Hkv, int d, cudaStream_t stream, int ldq = 0, int ldkv = 0) {
    if (attention_use_sm90(d, stream, 0))
        attention_forward_sm90(out, lse, q, k, v, B, T, H, Hkv, d, stream, attention_sm90_fwd_version, ldq, ldkv);
    else attention_forward_mma(out, lse, q, k, v, B, T, H, Hkv, d, stream, ldq, ldkv);
}
static void attention_backward(floatX *dq, floatX *dk, floatX *dv, const floatX *dout, const floatX *out,
                               const float *lse, const floatX *q, const floatX *k, const floatX *v, float *scratch,
                               int B, int T, int H, int Hkv, int d, cudaStream_t stream, int ldq = 0, int ldkv = 0,
                               const float2 *rope = NULL) {
    if (attention_use_sm90(d, stream, 1))
        attention_backward_sm90(dq, dk, dv, dout, out, lse, q, k, v, scratch, B, T, H, Hkv, d, stream, attention_sm90_bwd_version,
                                ldq, ldkv, rope);
    else attention_backward_mma(dq, dk, dv, dout, out, lse, q, k, v, scratch, B, T, H, Hkv, d, stream, ldq, ldkv, rope);
}

#endif // SESSA_ATTENTION_CUH
