/*
 Version 1 of the feedback solve, kept for dev/cuda/feedback_forward.cu and feedback_backward.cu (llm.c style:
 simple -> fast). This is the former llmc/feedback.cuh verbatim, with its names prefixed (fb1_, FB1_, feedback1_)
 so that it compiles next to version 2 (the current llmc/feedback.cuh). 64-row blocks, 3 launches per block,
 wmma through fp32 shared memory, 3xTF32 chain GEMMs. Its original header comment follows.
*/
/*
 The Sessa feedback branch on the GPU (DESIGN.md §1-§3): a strictly causal single-head softmax over the full
 width D placed inside a recurrent path, i.e. the unit-lower-triangular solve (I - diag(gamma) alpha) s = f.
 Memory is O(B*T*D) + O(B*T): alpha is never stored whole, it is recomputed tile by tile from qb, kb and
 the per-row log-sum-exp.

 API (row-major, token-major; qb, kb, dqb, dkb are rows of width D with row stride ld, so they can be the
 two halves of one (B,T,2D) buffer: qb[(b*T+t)*ld + i]):

   void feedback1_forward(float *s, float *c, float *lse, const floatX *f, const floatX *qb, const floatX *kb,
                         int ld, const float *gamma, int B, int T, int D, float *scratch, cudaStream_t stream);
       in:  f (B,T,D), qb/kb (B,T,D) strided, gamma (B,T) = gamma_max*tanh(r) already
       out: s (B,T,D)   s_t = f_t + gamma_t c_t
            c (B,T,D)   c_t = sum_{j<t} alpha[t,j] s_j   (the feedback context; the backward's dgamma = u.c)
            lse (B,T)   log sum_{j<t} exp(Z[t,j]), Z = qb kb^T / sqrt(D); -inf for the empty row t = 0

   void feedback1_backward(floatX *df, float *dgamma, floatX *dqb, floatX *dkb, int ld, const float *gs,
                          const float *s, const float *c, const float *lse, const floatX *qb, const floatX *kb,
                          const float *gamma, int B, int T, int D, float *scratch, cudaStream_t stream);
       in:  gs = dL/ds (B,T,D) and the forward's s, c, lse, qb, kb, gamma
       out: df = u = dL/df (B,T,D), dgamma (B,T), dqb/dkb (B,T,D) strided by ld (overwritten, not accumulated)

   size_t feedback1_scratch_bytes(int B, int T, int D);   // device scratch for either call (nothing kept between)

 Precision: s and c are fp32, and so is u inside the backward. s feeds every later row through a chain
 whose gain approaches 1 (gamma_max = 0.999): a bf16 s would re-inject a 2^-9 relative rounding error at
 every row and the chain would carry it almost undamped, while fp32 keeps it at 2^-24 (the same holds for
 u in the transposed chain). c costs one more fp32 (B,T,D) buffer, and buys an exact dgamma_t = u_t.c_t
 without dividing (s_t - f_t) by a gamma_t that may be near 0. All sums are fp32 in a fixed order and
 no atomics are used: results are bitwise identical run to run.
 Tensor cores: the logits qb kb^T are bf16 wmma (exact products, fp32 sums); every product that involves
 s, u, alpha or dZ (the chain GEMMs, u s^T, dqb, dkb) runs in 3xTF32 wmma, which is fp32-grade (plain TF32
 would put 2^-11 relative errors into the chain). Only the small in-block solves are plain fp32 FMAs.
 Memory: outputs s, c (B,T,D) fp32, lse (B,T); scratch (feedback1_scratch_bytes) about 3 B*T*D floats.

 Algorithm (block size FB1_C = 64 rows), DESIGN.md §3:
   forward:  lse for all rows in parallel (online softmax over key tiles), then for each query block I in order
               P      = alpha[I, 0:i0+C]                     (C, i0+C) recomputed from qb, kb, lse
               acc    = P[:, 0:i0] s[0:i0]                   GEMM, parallel over batch, D columns and split-K
               c_t    = acc_t + sum_{j in I, j<t} P[t,j] s_j;  s_t = f_t + gamma_t c_t    (in-block solve, in order)
   backward: for each key block J from last to first
               Pc     = gamma_t alpha[t, J] for t >= j0      (T-j0, C)
               acc    = Pc[t >= j0+C]^T u[t >= j0+C]         GEMM
               u_j    = gs_j + acc_j + sum_{t in J, t>j} Pc[t,j] u_t   (in-block solve, last row first)
             dgamma_t = u_t . c_t; then, R = 256 query rows at a time (so the chunk is O(T*256)):
               dZ[t,j] = gamma_t alpha[t,j] (u_t.s_j - dgamma_t)   (R, T) tile-parallel
               dqb[R rows] = dZ kb / sqrt(D);   dkb += dZ^T qb[R rows] / sqrt(D)   GEMMs, fp32 accumulation
 dev/test/test_feedback_blocked.c runs exactly this schedule on the CPU against the dense formula.
*/
#ifndef SESSA_FEEDBACK_V1_CU
#define SESSA_FEEDBACK_V1_CU

#include <math.h>
#include <mma.h>
#include "../../llmc/cuda_common.h"

#define FB1_C 64          // rows per block of the substitution, and the edge of every square tile
#define FB1_THREADS 256   // threads of a 64x64 tile kernel: each owns 4x4 entries

__device__ __forceinline__ float fb1_load(float x) { return x; }
__device__ __forceinline__ float fb1_load(floatX x) { return __bfloat162float(x); }
__device__ __forceinline__ void fb1_store(float *p, float x) { *p = x; }
__device__ __forceinline__ void fb1_store(floatX *p, float x) { *p = __float2bfloat16(x); }

// ----------------------------------------------------------------------------
// one 64x64 tile of row dot products on the tensor cores: acc[i][j] = A[a0 + ty+16i, :] . Bm[b0 + tx+16j, :]
// over K columns (ty = tid/16, tx = tid%16); rows at or past a_end / b_end read as zero. Called by all
// FB1_THREADS threads. Each of the 8 warps owns a 16x32 block of the tile (two 16x16 accumulators), staged through
// fb1_Zs into the 4x4-per-thread layout. Two versions: bf16 rows (the logits qb kb^T; bf16 products are exact in
// fp32) and fp32 rows (u s^T in the backward, in 3xTF32, see fb1_split_tf32).
#define FB1_TK 32         // depth of one shared-memory slice
#define FB1_TKH 40        // row stride of the bf16 slices: 32 columns + 8 of padding (80 bytes, a multiple of 16)
#define FB1_TKF 36        // row stride of the fp32 slices: 32 columns + 4 of padding (144 bytes)
#define FB1_ZLD (FB1_C + 4)
static __shared__ __align__(32) float fb1_Zs[FB1_C][FB1_ZLD];   // staging tile shared by both versions

// 3xTF32 (x = hi + lo, hi = tf32(x), lo = tf32(x - hi); a*b ~ a_lo b_hi + a_hi b_lo + a_hi b_hi): the tensor cores
// give fp32-grade products (relative error ~2^-21 against fp32's 2^-24, where one tf32 product alone has 2^-11):
// the substitution chain carries these sums from row to row with a gain near 1, so plain tf32 is not enough.
// hi holds x on entry; the operation is elementwise, so it does not depend on the fragment's thread mapping.
template <class Frag>
__device__ __forceinline__ void fb1_split_tf32(Frag &hi, Frag &lo) {
    for (int i = 0; i < hi.num_elements; i++) {
        float x = hi.x[i];
        hi.x[i] = nvcuda::wmma::__float_to_tf32(x);
        lo.x[i] = nvcuda::wmma::__float_to_tf32(x - hi.x[i]);
    }
}

__device__ void fb1_tile_from_staging(float acc[4][4]) {
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    __syncthreads();
    for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) acc[i][j] = fb1_Zs[ty + 16 * i][tx + 16 * j];
    __syncthreads();   // fb1_Zs is read before a next tile stores into it
}

__device__ void fb1_tile_dot(float acc[4][4], const floatX *A, int lda, int a0, int a_end,
                            const floatX *Bm, int ldb, int b0, int b_end, int K) {
    using namespace nvcuda;
    __shared__ __align__(32) floatX As[FB1_C][FB1_TKH], Bs[FB1_C][FB1_TKH];
    int tid = threadIdx.x, wr = (tid / WARP_SIZE) / 2, wc = (tid / WARP_SIZE) % 2;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> c[2];
    wmma::fill_fragment(c[0], 0.0f);
    wmma::fill_fragment(c[1], 0.0f);
    const floatX zero = __float2bfloat16(0.0f);
    for (int k0 = 0; k0 < K; k0 += FB1_TK) {
        for (int e = tid; e < FB1_C * FB1_TK; e += FB1_THREADS) {
            int r = e / FB1_TK, k = e % FB1_TK, gk = k0 + k;
            As[r][k] = (a0 + r < a_end && gk < K) ? A[(size_t)(a0 + r) * lda + gk] : zero;
            Bs[r][k] = (b0 + r < b_end && gk < K) ? Bm[(size_t)(b0 + r) * ldb + gk] : zero;
        }
        __syncthreads();
        for (int kk = 0; kk < FB1_TK; kk += 16) {
            // rows 16wr.. of A times columns 32wc.. of Bm^T: Bm's rows read as a column-major operand
            wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, wmma::row_major> a;
            wmma::load_matrix_sync(a, &As[16 * wr][kk], FB1_TKH);
            for (int j = 0; j < 2; j++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, floatX, wmma::col_major> b;
                wmma::load_matrix_sync(b, &Bs[32 * wc + 16 * j][kk], FB1_TKH);
                wmma::mma_sync(c[j], a, b, c[j]);
            }
        }
        __syncthreads();
    }
    for (int j = 0; j < 2; j++) wmma::store_matrix_sync(&fb1_Zs[16 * wr][32 * wc + 16 * j], c[j], FB1_ZLD, wmma::mem_row_major);
    fb1_tile_from_staging(acc);
}

__device__ void fb1_tile_dot(float acc[4][4], const float *A, int lda, int a0, int a_end,
                            const float *Bm, int ldb, int b0, int b_end, int K) {
    using namespace nvcuda;
    __shared__ __align__(32) float As[FB1_C][FB1_TKF], Bs[FB1_C][FB1_TKF];
    int tid = threadIdx.x, wr = (tid / WARP_SIZE) / 2, wc = (tid / WARP_SIZE) % 2;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> c[2];
    wmma::fill_fragment(c[0], 0.0f);
    wmma::fill_fragment(c[1], 0.0f);
    for (int k0 = 0; k0 < K; k0 += FB1_TK) {
        for (int e = tid; e < FB1_C * FB1_TK; e += FB1_THREADS) {
            int r = e / FB1_TK, k = e % FB1_TK, gk = k0 + k;
            As[r][k] = (a0 + r < a_end && gk < K) ? A[(size_t)(a0 + r) * lda + gk] : 0.0f;
            Bs[r][k] = (b0 + r < b_end && gk < K) ? Bm[(size_t)(b0 + r) * ldb + gk] : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < FB1_TK; kk += 8) {
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a_hi, a_lo;
            wmma::load_matrix_sync(a_hi, &As[16 * wr][kk], FB1_TKF);
            fb1_split_tf32(a_hi, a_lo);
            for (int j = 0; j < 2; j++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> b_hi, b_lo;
                wmma::load_matrix_sync(b_hi, &Bs[32 * wc + 16 * j][kk], FB1_TKF);
                fb1_split_tf32(b_hi, b_lo);
                wmma::mma_sync(c[j], a_lo, b_hi, c[j]);   // small terms first
                wmma::mma_sync(c[j], a_hi, b_lo, c[j]);
                wmma::mma_sync(c[j], a_hi, b_hi, c[j]);
            }
        }
        __syncthreads();
    }
    for (int j = 0; j < 2; j++) wmma::store_matrix_sync(&fb1_Zs[16 * wr][32 * wc + 16 * j], c[j], FB1_ZLD, wmma::mem_row_major);
    fb1_tile_from_staging(acc);
}

// batched strided GEMM: out(m,n) = beta*out(m,n) + scale * sum_{k<K} A(m,k) Bm(k,n)  for m<M, n<N
//   A(m,k) = A[z*sA + m*a_m + k*a_k],  Bm(k,n) = Bm[z*sB + k*b_k + n],  out(m,n) = out[z*sO + m*o_m + n]
// grid (ceil(N/64), ceil(M/64), batch*splits), FB1_THREADS threads; beta == 0 never reads out. K = 0 gives beta*out.
// Split-K: the block of split p sums k in [p*KS, (p+1)*KS) and writes its partial sum to out + p*s_split
// (the caller adds the partials in order); it gives the chain's GEMMs, short in M, enough blocks at long T.
// A 64x64 tile per block on the tensor cores in 3xTF32; each of the 8 warps owns a 16x32 block (two accumulators).
#define FB1_GK 16          // depth of one shared-memory slice
#define FB1_GLD (FB1_C + 4) // row stride of the fp32 slices and of the output staging tile (16-byte multiple)
template <typename TA, typename TB, typename TO>
__global__ void __launch_bounds__(FB1_THREADS)
fb1_gemm_kernel(TO *out, size_t sO, int o_m, const TA *A, size_t sA, int a_m, int a_k,
               const TB *Bm, size_t sB, int b_k, int M, int N, int K, float scale, float beta,
               int splits, int KS, size_t s_split) {
    using namespace nvcuda;
    __shared__ __align__(32) float As[FB1_GK][FB1_GLD], Bs[FB1_GK][FB1_GLD];   // As[k][m] = A(m0+m, k0+k), Bs[k][n]
    __shared__ __align__(32) float Cs[FB1_C][FB1_GLD];
    int tid = threadIdx.x, ty = tid / 16, tx = tid % 16, wr = (tid / WARP_SIZE) / 2, wc = (tid / WARP_SIZE) % 2;
    int m0 = blockIdx.y * FB1_C, n0 = blockIdx.x * FB1_C, z = blockIdx.z / splits, split = blockIdx.z % splits;
    A += z * sA; Bm += z * sB; out += z * sO + split * s_split;
    int kb0 = split * KS, kb1 = min(K, kb0 + KS);
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> c[2];
    wmma::fill_fragment(c[0], 0.0f);
    wmma::fill_fragment(c[1], 0.0f);
    for (int k0 = kb0; k0 < kb1; k0 += FB1_GK) {
        for (int e = tid; e < FB1_GK * FB1_C; e += FB1_THREADS) {
            // walk A along its unit-stride axis so that neighbouring threads read neighbouring addresses
            int m = (a_k == 1) ? e / FB1_GK : e % FB1_C, k = (a_k == 1) ? e % FB1_GK : e / FB1_C;
            As[k][m] = (m0 + m < M && k0 + k < kb1) ? fb1_load(A[(size_t)(m0 + m) * a_m + (size_t)(k0 + k) * a_k]) : 0.0f;
            int n = e % FB1_C, kb = e / FB1_C;
            Bs[kb][n] = (n0 + n < N && k0 + kb < kb1) ? fb1_load(Bm[(size_t)(k0 + kb) * b_k + n0 + n]) : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < FB1_GK; kk += 8) {
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> a_hi, a_lo;
            wmma::load_matrix_sync(a_hi, &As[kk][16 * wr], FB1_GLD);
            fb1_split_tf32(a_hi, a_lo);
            for (int j = 0; j < 2; j++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b_hi, b_lo;
                wmma::load_matrix_sync(b_hi, &Bs[kk][32 * wc + 16 * j], FB1_GLD);
                fb1_split_tf32(b_hi, b_lo);
                wmma::mma_sync(c[j], a_lo, b_hi, c[j]);   // small terms first
                wmma::mma_sync(c[j], a_hi, b_lo, c[j]);
                wmma::mma_sync(c[j], a_hi, b_hi, c[j]);
            }
        }
        __syncthreads();
    }
    for (int j = 0; j < 2; j++) wmma::store_matrix_sync(&Cs[16 * wr][32 * wc + 16 * j], c[j], FB1_GLD, wmma::mem_row_major);
    __syncthreads();
    for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) {
        int m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
        if (m >= M || n >= N) continue;
        TO *p = out + (size_t)m * o_m + n;
        fb1_store(p, scale * Cs[ty + 16 * i][tx + 16 * j] + (beta != 0.0f ? beta * fb1_load(*p) : 0.0f));
    }
}

#define FB1_KSPLIT 256   // K per split of the chain GEMMs
static inline int fb1_splits(int K) { return K <= FB1_KSPLIT ? 1 : ceil_div(K, FB1_KSPLIT); }

template <typename TA, typename TB, typename TO>
static void fb1_gemm(TO *out, size_t sO, int o_m, const TA *A, size_t sA, int a_m, int a_k, const TB *Bm, size_t sB,
                    int b_k, int M, int N, int K, float scale, float beta, int batch, int splits, size_t s_split,
                    cudaStream_t stream) {
    int KS = FB1_GK * ceil_div(ceil_div(K, splits), FB1_GK);
    dim3 grid(ceil_div(N, FB1_C), ceil_div(M, FB1_C), batch * splits);
    fb1_gemm_kernel<<<grid, FB1_THREADS, 0, stream>>>(out, sO, o_m, A, sA, a_m, a_k, Bm, sB, b_k, M, N, K, scale, beta,
                                                    splits, KS, s_split);
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// softmax statistics of the strictly causal logits: lse[b,t] = log sum_{j<t} exp(qb_t.kb_j/sqrt(D))
// grid (ceil(T/64), B). 4 threads share a row (16 columns of each key tile each), merged at the end.
__global__ void __launch_bounds__(FB1_THREADS)
feedback1_lse_kernel(float *lse, const floatX *qb, const floatX *kb, int ld, int T, int D) {
    __shared__ float Zs[FB1_C][FB1_C + 1];
    int tid = threadIdx.x, ty = tid / 16, tx = tid % 16, b = blockIdx.y, i0 = blockIdx.x * FB1_C;
    qb += (size_t)b * T * ld; kb += (size_t)b * T * ld;
    float scale = rsqrtf((float)D);
    int row = tid / 4, part = tid % 4, t = i0 + row;
    float m = -INFINITY, l = 0.0f;                 // running max and sum of this thread's share of row t
    for (int j0 = 0; j0 <= i0; j0 += FB1_C) {      // key tiles holding some j < t
        float acc[4][4];
        fb1_tile_dot(acc, qb, ld, i0, T, kb, ld, j0, T, D);
        for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) Zs[ty + 16 * i][tx + 16 * j] = acc[i][j] * scale;
        __syncthreads();
        for (int k = part * 16; k < part * 16 + 16; k++) {
            if (j0 + k >= t) break;
            float z = Zs[row][k], m_new = fmaxf(m, z);
            l = l * expf(m - m_new) + expf(z - m_new);
            m = m_new;
        }
        __syncthreads();
    }
    for (int o = 1; o < 4; o <<= 1) {             // merge the 4 shares of the row (lanes differ in their low 2 bits)
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), l2 = __shfl_xor_sync(0xffffffffu, l, o);
        float mm = fmaxf(m, m2);
        l = (mm == -INFINITY) ? 0.0f : l * expf(m - mm) + l2 * expf(m2 - mm);
        m = mm;
    }
    if (part == 0 && t < T) lse[(size_t)b * T + t] = (t == 0) ? -INFINITY : m + logf(l);
}

// ----------------------------------------------------------------------------
// forward, one query block I = [i0, i0+C): P[b][r][j] = alpha[i0+r, j] for j < i0+C (0 where j >= t or t >= T)
// P: (B, C, T) scratch. grid (i0/C + 1, B): key tile blockIdx.x, the last one is the diagonal tile.
__global__ void __launch_bounds__(FB1_THREADS)
feedback1_alpha_rows_kernel(float *P, const floatX *qb, const floatX *kb, int ld, const float *lse,
                           int i0, int T, int D) {
    int tid = threadIdx.x, ty = tid / 16, tx = tid % 16, b = blockIdx.y, j0 = blockIdx.x * FB1_C;
    qb += (size_t)b * T * ld; kb += (size_t)b * T * ld; lse += (size_t)b * T; P += (size_t)b * FB1_C * T;
    float acc[4][4];
    fb1_tile_dot(acc, qb, ld, i0, T, kb, ld, j0, T, D);
    float scale = rsqrtf((float)D);
    for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) {
        int r = ty + 16 * i, t = i0 + r, jj = j0 + tx + 16 * j;
        if (jj >= T) continue;
        P[(size_t)r * T + jj] = (jj < t && t < T) ? expf(acc[i][j] * scale - lse[t]) : 0.0f;
    }
}

// forward in-block solve, rows in order: c_t = acc[r] + sum_{j<r} P[r][i0+j] s_{i0+j};  s_t = f_t + gamma_t c_t
// acc = P[:, 0:i0] s[0:i0] as `splits` partial sums (splits, B, C, D), added in order here.
// grid (ceil(D/128), B), 128 threads: one column each, the block's s in registers.
#define FB1_SOLVE_THREADS 128
__global__ void __launch_bounds__(FB1_SOLVE_THREADS)
feedback1_solve_rows_kernel(float *s, float *c, const float *acc, int splits, const float *P, const floatX *f,
                           const float *gamma, int i0, int T, int D, int B) {
    __shared__ float Pd[FB1_C][FB1_C];   // alpha[i0+r, i0+j], the diagonal tile (strictly lower)
    __shared__ float g[FB1_C];
    int b = blockIdx.y, n = blockIdx.x * FB1_SOLVE_THREADS + threadIdx.x;
    P += (size_t)b * FB1_C * T;
    for (int e = threadIdx.x; e < FB1_C * FB1_C; e += FB1_SOLVE_THREADS) {
        int r = e / FB1_C, j = e % FB1_C;
        Pd[r][j] = (i0 + j < T) ? P[(size_t)r * T + i0 + j] : 0.0f;
    }
    for (int r = threadIdx.x; r < FB1_C; r += FB1_SOLVE_THREADS) g[r] = (i0 + r < T) ? gamma[(size_t)b * T + i0 + r] : 0.0f;
    __syncthreads();
    if (n >= D) return;
    acc += (size_t)b * FB1_C * D + n;
    size_t base = ((size_t)b * T + i0) * D + n;
    float sv[FB1_C];
#pragma unroll
    for (int r = 0; r < FB1_C; r++) {
        float cr = 0.0f;
        for (int p = 0; p < splits; p++) cr += acc[((size_t)p * B * FB1_C + r) * D];
#pragma unroll
        for (int j = 0; j < r; j++) cr = fmaf(Pd[r][j], sv[j], cr);
        bool live = i0 + r < T;
        sv[r] = live ? fb1_load(f[base + (size_t)r * D]) + g[r] * cr : 0.0f;
        if (live) { s[base + (size_t)r * D] = sv[r]; c[base + (size_t)r * D] = cr; }
    }
}

// ----------------------------------------------------------------------------
// backward, one key block J = [j0, j0+C): Pc[b][t][r] = gamma_t alpha[t, j0+r] for t >= j0 (0 where j0+r >= t)
// Pc: (B, T, C) scratch. grid (ceil((T-j0)/C), B): query tile t0 = j0 + C*blockIdx.x, the first is diagonal.
__global__ void __launch_bounds__(FB1_THREADS)
feedback1_alpha_cols_kernel(float *Pc, const floatX *qb, const floatX *kb, int ld, const float *lse,
                           const float *gamma, int j0, int T, int D) {
    int tid = threadIdx.x, ty = tid / 16, tx = tid % 16, b = blockIdx.y, t0 = j0 + blockIdx.x * FB1_C;
    qb += (size_t)b * T * ld; kb += (size_t)b * T * ld; lse += (size_t)b * T; gamma += (size_t)b * T;
    Pc += (size_t)b * T * FB1_C;
    float acc[4][4];
    fb1_tile_dot(acc, qb, ld, t0, T, kb, ld, j0, T, D);
    float scale = rsqrtf((float)D);
    for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) {
        int t = t0 + ty + 16 * i, r = tx + 16 * j;
        if (t >= T) continue;
        Pc[(size_t)t * FB1_C + r] = (j0 + r < t) ? gamma[t] * expf(acc[i][j] * scale - lse[t]) : 0.0f;
    }
}

// backward in-block solve, last row first: u_j = gs_j + acc[r] + sum_{r'>r} Pc[j0+r'][r] u_{j0+r'}, j = j0+r
// acc = Pc[j0+C:, :]^T u[j0+C:] as `splits` partial sums (splits, B, C, D). grid (ceil(D/128), B), 128 threads.
__global__ void __launch_bounds__(FB1_SOLVE_THREADS)
feedback1_solve_cols_kernel(float *u, floatX *df, const float *acc, int splits, const float *Pc, const float *gs,
                           int j0, int T, int D, int B) {
    __shared__ float Pd[FB1_C][FB1_C];   // Pd[r'][r] = gamma alpha[j0+r', j0+r], the diagonal tile
    int b = blockIdx.y, n = blockIdx.x * FB1_SOLVE_THREADS + threadIdx.x;
    Pc += (size_t)b * T * FB1_C;
    for (int e = threadIdx.x; e < FB1_C * FB1_C; e += FB1_SOLVE_THREADS) {
        int rr = e / FB1_C, r = e % FB1_C;
        Pd[rr][r] = (j0 + rr < T) ? Pc[(size_t)(j0 + rr) * FB1_C + r] : 0.0f;
    }
    __syncthreads();
    if (n >= D) return;
    acc += (size_t)b * FB1_C * D + n;
    size_t base = ((size_t)b * T + j0) * D + n;
    float uv[FB1_C];
#pragma unroll
    for (int r = FB1_C - 1; r >= 0; r--) {
        float ur = 0.0f;
        for (int p = 0; p < splits; p++) ur += acc[((size_t)p * B * FB1_C + r) * D];
#pragma unroll
        for (int rr = FB1_C - 1; rr > r; rr--) ur = fmaf(Pd[rr][r], uv[rr], ur);
        bool live = j0 + r < T;
        uv[r] = live ? gs[base + (size_t)r * D] + ur : 0.0f;
        if (live) { u[base + (size_t)r * D] = uv[r]; df[base + (size_t)r * D] = __float2bfloat16(uv[r]); }
    }
}

// dgamma_t = u_t . c_t (one warp per row); this is also the Delta_t of the softmax backward
__global__ void feedback1_dgamma_kernel(float *dgamma, const float *u, const float *c, int BT, int D) {
    int row = blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    if (row >= BT) return;
    u += (size_t)row * D; c += (size_t)row * D;
    float acc = 0.0f;
    for (int i = lane; i < D; i += WARP_SIZE) acc = fmaf(u[i], c[i], acc);
    acc = warp_reduce_sum(acc);
    if (lane == 0) dgamma[row] = acc;
}

// dZ for query rows [g0, g0+R): dZ[b][t-g0][j] = gamma_t alpha[t,j] (u_t.s_j - dgamma_t) for j < t, else 0
// dZ: (B, R, T) scratch, written for j < min(g0+R, T). grid (ceil(min(g0+R,T)/C), R/C, B).
__global__ void __launch_bounds__(FB1_THREADS)
feedback1_dz_kernel(float *dZ, const floatX *qb, const floatX *kb, int ld, const float *u, const float *s,
                   const float *lse, const float *gamma, const float *dgamma, int g0, int R, int T, int D) {
    int tid = threadIdx.x, ty = tid / 16, tx = tid % 16, b = blockIdx.z;
    int j0 = blockIdx.x * FB1_C, t0 = g0 + blockIdx.y * FB1_C;
    qb += (size_t)b * T * ld; kb += (size_t)b * T * ld; u += (size_t)b * T * D; s += (size_t)b * T * D;
    lse += (size_t)b * T; gamma += (size_t)b * T; dgamma += (size_t)b * T; dZ += (size_t)b * R * T;
    float z[4][4] = {}, us[4][4] = {};
    if (j0 < t0 + FB1_C - 1) {                      // the tile holds some j < t: compute it
        fb1_tile_dot(z, qb, ld, t0, T, kb, ld, j0, T, D);
        fb1_tile_dot(us, u, D, t0, T, s, D, j0, T, D);
    }
    float scale = rsqrtf((float)D);
    for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) {
        int t = t0 + ty + 16 * i, jj = j0 + tx + 16 * j;
        if (t >= T || jj >= T) continue;
        float v = 0.0f;
        if (jj < t) v = gamma[t] * expf(z[i][j] * scale - lse[t]) * (us[i][j] - dgamma[t]);
        dZ[(size_t)(t - g0) * T + jj] = v;
    }
}

__global__ void feedback1_store_strided_kernel(floatX *dst, int ld, const float *src, int BT, int D) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)BT * D) return;
    size_t row = idx / D, col = idx % D;
    dst[row * ld + col] = __float2bfloat16(src[idx]);
}

// ----------------------------------------------------------------------------
// scratch layout (floats): forward P (B,C,T) | acc (S,B,C,D);  backward Pc (B,T,C) | acc (S,B,C,D) | u (B,T,D) |
// dkb accumulator (B,T,D) | dZ chunk (B,R,T), with S = fb1_splits(T) split-K partials (S*C ~ T/4) and
// R = feedback1_dz_rows(T) <= 256 query rows of dZ per chunk

#define FB1_DZ_ROWS 256  // query rows of dZ per chunk: the chunk (B, 256, T) stays below B*T*D for D >= 256
static inline int feedback1_dz_rows(int T) {
    int Tc = FB1_C * ceil_div(T, FB1_C);
    return FB1_DZ_ROWS < Tc ? FB1_DZ_ROWS : Tc;
}

static size_t feedback1_scratch_bytes(int B, int T, int D) {
    size_t BT = (size_t)B * T, Pn = BT * FB1_C, accn = (size_t)fb1_splits(T) * B * FB1_C * D;
    size_t fwd = Pn + accn;
    size_t bwd = Pn + accn + 2 * BT * D + (size_t)B * feedback1_dz_rows(T) * T;
    return (fwd > bwd ? fwd : bwd) * sizeof(float);
}

static void feedback1_check_shape(int B, int T, int D, int ld) {
    if (B < 1 || T < 1 || D < 1 || ld < D) fatal("feedback: invalid shape B=%d T=%d D=%d ld=%d (need ld >= D >= 1)", B, T, D, ld);
}

static void feedback1_forward(float *s, float *c, float *lse, const floatX *f, const floatX *qb, const floatX *kb,
                             int ld, const float *gamma, int B, int T, int D, float *scratch, cudaStream_t stream) {
    feedback1_check_shape(B, T, D, ld);
    float *P = scratch;                              // (B, C, T)
    float *acc = P + (size_t)B * FB1_C * T;           // (S, B, C, D) split-K partials
    feedback1_lse_kernel<<<dim3(ceil_div(T, FB1_C), B), FB1_THREADS, 0, stream>>>(lse, qb, kb, ld, T, D);
    cudaCheck(cudaGetLastError());
    for (int i0 = 0; i0 < T; i0 += FB1_C) {
        feedback1_alpha_rows_kernel<<<dim3(i0 / FB1_C + 1, B), FB1_THREADS, 0, stream>>>(P, qb, kb, ld, lse, i0, T, D);
        cudaCheck(cudaGetLastError());
        // acc (C, D) = P[:, 0:i0] (C, i0) . s[0:i0] (i0, D)
        int splits = fb1_splits(i0);
        fb1_gemm(acc, (size_t)FB1_C * D, D, P, (size_t)FB1_C * T, T, 1, s, (size_t)T * D, D,
                FB1_C, D, i0, 1.0f, 0.0f, B, splits, (size_t)B * FB1_C * D, stream);
        feedback1_solve_rows_kernel<<<dim3(ceil_div(D, FB1_SOLVE_THREADS), B), FB1_SOLVE_THREADS, 0, stream>>>(
            s, c, acc, splits, P, f, gamma, i0, T, D, B);
        cudaCheck(cudaGetLastError());
    }
}

static void feedback1_backward(floatX *df, float *dgamma, floatX *dqb, floatX *dkb, int ld, const float *gs,
                              const float *s, const float *c, const float *lse, const floatX *qb, const floatX *kb,
                              const float *gamma, int B, int T, int D, float *scratch, cudaStream_t stream) {
    feedback1_check_shape(B, T, D, ld);
    size_t BT = (size_t)B * T;
    int R = feedback1_dz_rows(T);
    float *Pc = scratch;                             // (B, T, C)
    float *acc = Pc + BT * FB1_C;                     // (S, B, C, D) split-K partials
    float *u = acc + (size_t)fb1_splits(T) * B * FB1_C * D;   // (B, T, D)
    float *dkb_acc = u + BT * D;                     // (B, T, D)
    float *dZ = dkb_acc + BT * D;                    // (B, R, T)
    // 1) the transposed chain for u = dL/df, key blocks from last to first
    for (int j0 = FB1_C * ((T - 1) / FB1_C); j0 >= 0; j0 -= FB1_C) {
        feedback1_alpha_cols_kernel<<<dim3(ceil_div(T - j0, FB1_C), B), FB1_THREADS, 0, stream>>>(
            Pc, qb, kb, ld, lse, gamma, j0, T, D);
        cudaCheck(cudaGetLastError());
        // acc (C, D) = Pc[j1:T, :]^T (C, T-j1) . u[j1:T] (T-j1, D), j1 = j0 + C
        int j1 = j0 + FB1_C < T ? j0 + FB1_C : T;
        int splits = fb1_splits(T - j1);
        fb1_gemm(acc, (size_t)FB1_C * D, D, Pc + (size_t)j1 * FB1_C, (size_t)T * FB1_C, 1, FB1_C,
                u + (size_t)j1 * D, (size_t)T * D, D, FB1_C, D, T - j1, 1.0f, 0.0f, B, splits, (size_t)B * FB1_C * D, stream);
        feedback1_solve_cols_kernel<<<dim3(ceil_div(D, FB1_SOLVE_THREADS), B), FB1_SOLVE_THREADS, 0, stream>>>(
            u, df, acc, splits, Pc, gs, j0, T, D, B);
        cudaCheck(cudaGetLastError());
    }
    // 2) dgamma_t = u_t . c_t
    feedback1_dgamma_kernel<<<ceil_div(BT, 8), 8 * WARP_SIZE, 0, stream>>>(dgamma, u, c, (int)BT, D);
    cudaCheck(cudaGetLastError());
    // 3) dZ, R query rows at a time, and its two GEMMs
    float scale = rsqrtf((float)D);
    cudaCheck(cudaMemsetAsync(dkb_acc, 0, BT * D * sizeof(float), stream));
    for (int g0 = 0; g0 < T; g0 += R) {
        int g1 = g0 + R < T ? g0 + R : T;            // rows [g0, g1); their keys are j < g1
        feedback1_dz_kernel<<<dim3(ceil_div(g1, FB1_C), R / FB1_C, B), FB1_THREADS, 0, stream>>>(
            dZ, qb, kb, ld, u, s, lse, gamma, dgamma, g0, R, T, D);
        cudaCheck(cudaGetLastError());
        // dqb[g0:g1] (g1-g0, D) = dZ (g1-g0, g1) . kb[0:g1] (g1, D) / sqrt(D)
        fb1_gemm(dqb + (size_t)g0 * ld, (size_t)T * ld, ld, dZ, (size_t)R * T, T, 1, kb, (size_t)T * ld, ld,
                g1 - g0, D, g1, scale, 0.0f, B, 1, 0, stream);
        // dkb[0:g1] (g1, D) += dZ^T (g1, g1-g0) . qb[g0:g1] (g1-g0, D) / sqrt(D), chunks in order (deterministic)
        fb1_gemm(dkb_acc, (size_t)T * D, D, dZ, (size_t)R * T, 1, T, qb + (size_t)g0 * ld, (size_t)T * ld, ld,
                g1, D, g1 - g0, scale, 1.0f, B, 1, 0, stream);
    }
    feedback1_store_strided_kernel<<<ceil_div(BT * D, 256), 256, 0, stream>>>(dkb, ld, dkb_acc, (int)BT, D);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_FEEDBACK_V1_CU
