/*
 Causal grouped-query attention, FlashAttention-2 style: 64x64 tiles, online softmax, no T x T buffer.
 Scale 1/sqrt(d); query head h reads key/value head h / (H/Hkv); the diagonal is included (t attends j <= t).
 RoPE is applied before these calls.

 API (row-major, token-major, bf16 storage, fp32 accumulation):
   void attention_forward(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                          int B, int T, int H, int Hkv, int d, cudaStream_t stream);
       q (B,T,H,d), k/v (B,T,Hkv,d)  ->  out (B,T,H,d), lse (B,H,T) = log sum_{j<=t} exp(q_t.k_j/sqrt(d))
   void attention_backward(floatX *dq, floatX *dk, floatX *dv, const floatX *dout, const floatX *out,
                           const float *lse, const floatX *q, const floatX *k, const floatX *v, float *scratch,
                           int B, int T, int H, int Hkv, int d, cudaStream_t stream);
       dout (B,T,H,d)  ->  dq (B,T,H,d), dk/dv (B,T,Hkv,d) (overwritten; dk, dv summed over the H/Hkv query heads
       of each kv head inside one thread block, in a fixed order: deterministic, no atomics)
   size_t attention_backward_scratch_bytes(int B, int T, int H, int Hkv, int d);   // Delta (B,H,T) fp32
 d must be 32, 64 or 128 (anything else is a fatal error naming it).

 Backward (recompute from lse): P = exp(S - lse), dP = dO V^T, Delta_t = dO_t.O_t, dS = P (dP - Delta);
 dQ = dS K / sqrt(d) (kernel per query tile), dV = P^T dO, dK = dS^T Q / sqrt(d) (kernel per key tile).
 All matrix products run on the tensor cores (bf16 wmma, fp32 accumulation): S = Q K^T and dP = dO V^T from
 the bf16 inputs (exact products); P V, dS K, P^T dO, dS^T Q with P and dS rounded to bf16, as FlashAttention-2
 does. The softmax statistics, the online rescaling of O and Delta stay fp32.
 dev/test/test_feedback_blocked.c runs this tiling on the CPU against naive attention.
*/
#ifndef SESSA_ATTENTION_CUH
#define SESSA_ATTENTION_CUH

#include <math.h>
#include <mma.h>
#include "cuda_common.h"

#define ATT_BT 64        // rows of every tile (queries and keys)
#define ATT_THREADS 256  // thread (ty = tid/16, tx = tid%16) owns rows ty+16i (i<4), columns tx+16j

// Tiles live in shared memory as bf16 (exact copies of the inputs), rows of HD + 8 elements: 16-byte aligned
// rows for the tensor-core loads, and the padding spreads the rows over the banks.
template <int HD> struct AttTile { static constexpr int LD = HD + 8; };
#define ATT_ZLD (ATT_BT + 4)   // row stride of the fp32 (64, 64) staging tile of att_dot_tile
#define ATT_WLD (ATT_BT + 8)   // row stride of the bf16 (64, 64) P / dS tiles
typedef nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> AttAcc;

// dst (64, HD) <- rows [row0, row0+64) of src (row r at src[r*stride]); rows at or past T read as zero
template <int HD>
__device__ void att_load_tile(floatX *dst, const floatX *src, int stride, int row0, int T) {
    const floatX zero = __float2bfloat16(0.0f);
    for (int e = threadIdx.x; e < ATT_BT * HD; e += ATT_THREADS) {
        int r = e / HD, c = e % HD;
        dst[r * AttTile<HD>::LD + c] = (row0 + r < T) ? src[(size_t)(row0 + r) * stride + c] : zero;
    }
}

// acc[i][j] = X[ty+16i, :] . Y[tx+16j, :]  over HD, X and Y (64, HD) bf16 tiles, on the tensor cores (bf16
// products are exact in fp32). Warp w owns rows 16(w/2).., columns 32(w%2).. (two 16x16 accumulators), staged
// through Zs (64, ATT_ZLD) fp32 into the 4x4-per-thread layout. Called by all threads.
template <int HD>
__device__ void att_dot_tile(float acc[4][4], const floatX *X, const floatX *Y, float *Zs) {
    using namespace nvcuda;
    constexpr int LD = AttTile<HD>::LD;
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16, wr = (threadIdx.x / WARP_SIZE) / 2, wc = (threadIdx.x / WARP_SIZE) % 2;
    AttAcc c[2];
    wmma::fill_fragment(c[0], 0.0f);
    wmma::fill_fragment(c[1], 0.0f);
    for (int kk = 0; kk < HD; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, wmma::row_major> a;
        wmma::load_matrix_sync(a, X + 16 * wr * LD + kk, LD);
        for (int j = 0; j < 2; j++) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, floatX, wmma::col_major> b;   // Y's rows as columns
            wmma::load_matrix_sync(b, Y + (32 * wc + 16 * j) * LD + kk, LD);
            wmma::mma_sync(c[j], a, b, c[j]);
        }
    }
    for (int j = 0; j < 2; j++) wmma::store_matrix_sync(Zs + 16 * wr * ATT_ZLD + 32 * wc + 16 * j, c[j], ATT_ZLD, wmma::mem_row_major);
    __syncthreads();
    for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) acc[i][j] = Zs[(ty + 16 * i) * ATT_ZLD + tx + 16 * j];
    __syncthreads();   // Zs is read before a next call stores into it
}

// Products with a (64, HD) result (P V, dS K, P^T dO, dS^T Q) accumulate in fragments on the tensor cores, with
// P and dS rounded to bf16 as FlashAttention-2 does. Warp w owns result rows 16(w%4).., columns
// (w/4)*HD/2 + 16f for f < HD/32.
template <int HD, class FragA>
__device__ __forceinline__ void att_mma_b(AttAcc *acc, const FragA &a, const floatX *Y, int kk) {
    using namespace nvcuda;
    constexpr int LD = AttTile<HD>::LD;
    int wc = (threadIdx.x / WARP_SIZE) / 4;
    for (int f = 0; f < HD / 32; f++) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, floatX, wmma::row_major> b;
        wmma::load_matrix_sync(b, Y + kk * LD + wc * (HD / 2) + 16 * f, LD);
        wmma::mma_sync(acc[f], a, b, acc[f]);
    }
}
// acc += W Y, or W^T Y when TRANS; W a (64, 64) bf16 tile of row stride ATT_WLD, Y a (64, HD) bf16 tile
template <int HD, bool TRANS>
__device__ void att_mma_tile(AttAcc *acc, const floatX *W, const floatX *Y) {
    using namespace nvcuda;
    int wr = (threadIdx.x / WARP_SIZE) % 4;
    for (int kk = 0; kk < ATT_BT; kk += 16) {
        if constexpr (TRANS) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, wmma::col_major> a;   // W^T(m, k) = W[k][m]
            wmma::load_matrix_sync(a, W + kk * ATT_WLD + 16 * wr, ATT_WLD);
            att_mma_b<HD>(acc, a, Y, kk);
        } else {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, wmma::row_major> a;
            wmma::load_matrix_sync(a, W + 16 * wr * ATT_WLD + kk, ATT_WLD);
            att_mma_b<HD>(acc, a, Y, kk);
        }
    }
}
// this warp's result fragments <-> Os (64, HD+4) fp32 in shared memory
template <int HD>
__device__ float *att_out_block(float *Os, int f) {
    int w = threadIdx.x / WARP_SIZE;
    return Os + 16 * (w % 4) * (HD + 4) + (w / 4) * (HD / 2) + 16 * f;
}
template <int HD>
__device__ void att_store_out(float *Os, const AttAcc *acc) {
    for (int f = 0; f < HD / 32; f++) nvcuda::wmma::store_matrix_sync(att_out_block<HD>(Os, f), acc[f], HD + 4, nvcuda::wmma::mem_row_major);
}
template <int HD>
__device__ void att_load_out(AttAcc *acc, const float *Os) {
    for (int f = 0; f < HD / 32; f++) nvcuda::wmma::load_matrix_sync(acc[f], att_out_block<HD>((float *)Os, f), HD + 4, nvcuda::wmma::mem_row_major);
}

// max and sum over the 16 threads that share a row (they are 16 consecutive lanes of one warp)
__device__ __forceinline__ float att_row_max(float v) {
    for (int o = 1; o < 16; o <<= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float att_row_sum(float v) {
    for (int o = 1; o < 16; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// ----------------------------------------------------------------------------
// forward: grid (ceil(T/64), H, B). The output tile O (64, HD) lives in shared memory in fp32: threads rescale
// its rows by the online-softmax correction, warps add P V into it on the tensor cores.
template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attention_forward_kernel(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                         int T, int H, int Hkv) {
    constexpr int LD = AttTile<HD>::LD, NC = HD / 16, OLD = HD + 4;
    extern __shared__ __align__(128) unsigned char att_smem[];
    float *Zs = (float *)att_smem, *Os = Zs + ATT_BT * ATT_ZLD;                  // fp32 (64, ATT_ZLD), (64, HD+4)
    floatX *Pb = (floatX *)(Os + ATT_BT * OLD);                                  // bf16 (64, ATT_WLD)
    floatX *Qs = Pb + ATT_BT * ATT_WLD, *KVs = Qs + ATT_BT * LD;                 // bf16 (64, LD) each
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    int i0 = blockIdx.x * ATT_BT, h = blockIdx.y, b = blockIdx.z, hk = h / (H / Hkv);
    const float scale = rsqrtf((float)HD);
    const floatX *kb = k + ((size_t)b * T * Hkv + hk) * HD, *vb = v + ((size_t)b * T * Hkv + hk) * HD;
    att_load_tile<HD>(Qs, q + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
    float m[4], l[4];
    for (int i = 0; i < 4; i++) {
        m[i] = -INFINITY; l[i] = 0.0f;
        for (int c = 0; c < NC; c++) Os[(ty + 16 * i) * OLD + tx + 16 * c] = 0.0f;
    }
    for (int j0 = 0; j0 <= i0; j0 += ATT_BT) {
        __syncthreads();
        att_load_tile<HD>(KVs, kb, Hkv * HD, j0, T);
        __syncthreads();
        float sc[4][4];
        att_dot_tile<HD>(sc, Qs, KVs, Zs);
        for (int i = 0; i < 4; i++) {
            int t = i0 + ty + 16 * i;
            float mx = -INFINITY;
            for (int j = 0; j < 4; j++) {
                int jj = j0 + tx + 16 * j;
                sc[i][j] = (jj <= t && jj < T) ? sc[i][j] * scale : -INFINITY;
                mx = fmaxf(mx, sc[i][j]);
            }
            float m_new = fmaxf(m[i], att_row_max(mx));   // finite: column j0 <= t is always live
            float corr = expf(m[i] - m_new), rs = 0.0f;
            for (int j = 0; j < 4; j++) {
                float p = expf(sc[i][j] - m_new);
                Pb[(ty + 16 * i) * ATT_WLD + tx + 16 * j] = __float2bfloat16(p);
                rs += p;
            }
            l[i] = l[i] * corr + att_row_sum(rs);
            m[i] = m_new;
            for (int c = 0; c < NC; c++) Os[(ty + 16 * i) * OLD + tx + 16 * c] *= corr;
        }
        __syncthreads();                                 // K no longer read, P and the rescaled O complete
        att_load_tile<HD>(KVs, vb, Hkv * HD, j0, T);     // V in K's place
        __syncthreads();
        AttAcc o[HD / 32];                               // O += P V
        att_load_out<HD>(o, Os);
        att_mma_tile<HD, false>(o, Pb, KVs);
        att_store_out<HD>(Os, o);
    }
    __syncthreads();
    for (int i = 0; i < 4; i++) {
        int t = i0 + ty + 16 * i;
        if (t >= T) continue;
        floatX *orow = out + (((size_t)b * T + t) * H + h) * HD;
        for (int c = 0; c < NC; c++) orow[tx + 16 * c] = __float2bfloat16(Os[(ty + 16 * i) * OLD + tx + 16 * c] / l[i]);
        if (tx == 0) lse[((size_t)b * H + h) * T + t] = m[i] + logf(l[i]);
    }
}

// ----------------------------------------------------------------------------
// backward

// Delta[b,h,t] = dout_t . out_t (fp32, from the bf16 tensors), one warp per (b,t,h) row
__global__ void attention_delta_kernel(float *delta, const floatX *dout, const floatX *out, int B, int T, int H, int d) {
    size_t row = (size_t)blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;
    int lane = threadIdx.x % WARP_SIZE;
    if (row >= (size_t)B * T * H) return;
    float acc = 0.0f;
    for (int c = lane; c < d; c += WARP_SIZE)
        acc = fmaf(__bfloat162float(dout[row * d + c]), __bfloat162float(out[row * d + c]), acc);
    acc = warp_reduce_sum(acc);
    int h = row % H, t = (row / H) % T, b = row / ((size_t)H * T);
    if (lane == 0) delta[((size_t)b * H + h) * T + t] = acc;
}

// this warp's fragments -> rows [row0, row0+64) of dst (row r at dst[r*stride]), times scale, as bf16
template <int HD>
__device__ void att_write_out(floatX *dst, int stride, int row0, int T, const AttAcc *acc, float *Os, float scale) {
    __syncthreads();                                     // Os free
    att_store_out<HD>(Os, acc);
    __syncthreads();
    for (int e = threadIdx.x; e < ATT_BT * HD; e += ATT_THREADS) {
        int r = e / HD, c = e % HD;
        if (row0 + r < T) dst[(size_t)(row0 + r) * stride + c] = __float2bfloat16(Os[r * (HD + 4) + c] * scale);
    }
}

// dq for one query tile: grid (ceil(T/64), H, B)
template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attention_backward_dq_kernel(floatX *dq, const floatX *dout, const float *lse, const float *delta,
                             const floatX *q, const floatX *k, const floatX *v, int T, int H, int Hkv) {
    constexpr int LD = AttTile<HD>::LD;
    extern __shared__ __align__(128) unsigned char att_smem[];
    float *Zs = (float *)att_smem, *Os = Zs + ATT_BT * ATT_ZLD;                  // fp32 (64, ATT_ZLD), (64, HD+4)
    floatX *dSb = (floatX *)(Os + ATT_BT * (HD + 4));                            // bf16 (64, ATT_WLD)
    floatX *Qs = dSb + ATT_BT * ATT_WLD, *dOs = Qs + ATT_BT * LD;                // bf16 (64, LD) each
    floatX *Ks = dOs + ATT_BT * LD, *Vs = Ks + ATT_BT * LD;
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    int i0 = blockIdx.x * ATT_BT, h = blockIdx.y, b = blockIdx.z, hk = h / (H / Hkv);
    const float scale = rsqrtf((float)HD);
    att_load_tile<HD>(Qs, q + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
    att_load_tile<HD>(dOs, dout + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
    float lse_r[4], delta_r[4];
    for (int i = 0; i < 4; i++) {
        int t = i0 + ty + 16 * i;
        lse_r[i] = t < T ? lse[((size_t)b * H + h) * T + t] : 0.0f;
        delta_r[i] = t < T ? delta[((size_t)b * H + h) * T + t] : 0.0f;
    }
    AttAcc acc[HD / 32];
    for (int f = 0; f < HD / 32; f++) nvcuda::wmma::fill_fragment(acc[f], 0.0f);
    for (int j0 = 0; j0 <= i0; j0 += ATT_BT) {
        __syncthreads();
        att_load_tile<HD>(Ks, k + ((size_t)b * T * Hkv + hk) * HD, Hkv * HD, j0, T);
        att_load_tile<HD>(Vs, v + ((size_t)b * T * Hkv + hk) * HD, Hkv * HD, j0, T);
        __syncthreads();
        float sc[4][4], dp[4][4];
        att_dot_tile<HD>(sc, Qs, Ks, Zs);
        att_dot_tile<HD>(dp, dOs, Vs, Zs);
        for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) {
            int t = i0 + ty + 16 * i, jj = j0 + tx + 16 * j;
            float p = (jj <= t && t < T) ? expf(sc[i][j] * scale - lse_r[i]) : 0.0f;
            dSb[(ty + 16 * i) * ATT_WLD + tx + 16 * j] = __float2bfloat16(p * (dp[i][j] - delta_r[i]));
        }
        __syncthreads();
        att_mma_tile<HD, false>(acc, dSb, Ks);            // dq += dS K
    }
    att_write_out<HD>(dq + ((size_t)b * T * H + h) * HD, H * HD, i0, T, acc, Os, scale);
}

// dk, dv for one key tile of one kv head, summed over its g query heads: grid (ceil(T/64), Hkv, B)
template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attention_backward_dkv_kernel(floatX *dk, floatX *dv, const floatX *dout, const float *lse, const float *delta,
                              const floatX *q, const floatX *k, const floatX *v, int T, int H, int Hkv) {
    constexpr int LD = AttTile<HD>::LD;
    extern __shared__ __align__(128) unsigned char att_smem[];
    float *Zs = (float *)att_smem, *Os = Zs + ATT_BT * ATT_ZLD;                  // fp32 (64, ATT_ZLD), (64, HD+4)
    floatX *Pb = (floatX *)(Os + ATT_BT * (HD + 4)), *dSb = Pb + ATT_BT * ATT_WLD; // bf16 (64, ATT_WLD) each
    floatX *Ks = dSb + ATT_BT * ATT_WLD, *Vs = Ks + ATT_BT * LD;                 // bf16 (64, LD) each
    floatX *Qs = Vs + ATT_BT * LD, *dOs = Qs + ATT_BT * LD;
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    int j0 = blockIdx.x * ATT_BT, hk = blockIdx.y, b = blockIdx.z, g = H / Hkv;
    const float scale = rsqrtf((float)HD);
    att_load_tile<HD>(Ks, k + ((size_t)b * T * Hkv + hk) * HD, Hkv * HD, j0, T);
    att_load_tile<HD>(Vs, v + ((size_t)b * T * Hkv + hk) * HD, Hkv * HD, j0, T);
    AttAcc dk_acc[HD / 32], dv_acc[HD / 32];
    for (int f = 0; f < HD / 32; f++) { nvcuda::wmma::fill_fragment(dk_acc[f], 0.0f); nvcuda::wmma::fill_fragment(dv_acc[f], 0.0f); }
    for (int h = hk * g; h < (hk + 1) * g; h++) {
        const float *lse_h = lse + ((size_t)b * H + h) * T, *delta_h = delta + ((size_t)b * H + h) * T;
        for (int i0 = j0; i0 < T; i0 += ATT_BT) {        // query tiles holding some t >= j
            __syncthreads();
            att_load_tile<HD>(Qs, q + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
            att_load_tile<HD>(dOs, dout + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
            __syncthreads();
            float sc[4][4], dp[4][4];                    // rows: queries ty+16i, columns: keys tx+16j
            att_dot_tile<HD>(sc, Qs, Ks, Zs);
            att_dot_tile<HD>(dp, dOs, Vs, Zs);
            for (int i = 0; i < 4; i++) {
                int t = i0 + ty + 16 * i;
                float lse_t = t < T ? lse_h[t] : 0.0f, delta_t = t < T ? delta_h[t] : 0.0f;
                for (int j = 0; j < 4; j++) {
                    int jj = j0 + tx + 16 * j;
                    float p = (jj <= t && t < T) ? expf(sc[i][j] * scale - lse_t) : 0.0f;
                    Pb[(ty + 16 * i) * ATT_WLD + tx + 16 * j] = __float2bfloat16(p);
                    dSb[(ty + 16 * i) * ATT_WLD + tx + 16 * j] = __float2bfloat16(p * (dp[i][j] - delta_t));
                }
            }
            __syncthreads();
            att_mma_tile<HD, true>(dv_acc, Pb, dOs);     // dv += P^T dO
            att_mma_tile<HD, true>(dk_acc, dSb, Qs);     // dk += dS^T Q
        }
    }
    size_t base = ((size_t)b * T * Hkv + hk) * HD;
    att_write_out<HD>(dv + base, Hkv * HD, j0, T, dv_acc, Os, 1.0f);
    att_write_out<HD>(dk + base, Hkv * HD, j0, T, dk_acc, Os, scale);
}

// ----------------------------------------------------------------------------
// launchers

// dynamic shared memory of a kernel: the fp32 staging tiles (64, 64+4) and (64, HD+4), n_w bf16 (64, 64+8)
// P / dS tiles, n_t bf16 (64, HD+8) input tiles
static size_t att_smem_bytes(int HD, int n_w, int n_t) {
    return (size_t)ATT_BT * (ATT_ZLD + HD + 4) * sizeof(float) + (size_t)ATT_BT * (n_w * ATT_WLD + n_t * (HD + 8)) * sizeof(floatX);
}
static size_t attention_forward_smem(int HD) { return att_smem_bytes(HD, 1, 2); }
static size_t attention_dq_smem(int HD) { return att_smem_bytes(HD, 1, 4); }
static size_t attention_dkv_smem(int HD) { return att_smem_bytes(HD, 2, 4); }

static void attention_check_shape(int B, int T, int H, int Hkv, int d) {
    if (B < 1 || T < 1 || H < 1 || Hkv < 1 || H % Hkv != 0)
        fatal("attention: invalid shape B=%d T=%d H=%d Hkv=%d (H must be a multiple of Hkv)", B, T, H, Hkv);
    if (d != 32 && d != 64 && d != 128) fatal("attention: head width d=%d is not supported (32, 64 or 128)", d);
}

template <int HD>
static void attention_forward_hd(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                                 int B, int T, int H, int Hkv, cudaStream_t stream) {
    size_t smem = attention_forward_smem(HD);
    cudaCheck(cudaFuncSetAttribute(attention_forward_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attention_forward_kernel<HD><<<dim3(ceil_div(T, ATT_BT), H, B), ATT_THREADS, smem, stream>>>(out, lse, q, k, v, T, H, Hkv);
    cudaCheck(cudaGetLastError());
}

static void attention_forward(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                              int B, int T, int H, int Hkv, int d, cudaStream_t stream) {
    attention_check_shape(B, T, H, Hkv, d);
    if (d == 32) attention_forward_hd<32>(out, lse, q, k, v, B, T, H, Hkv, stream);
    if (d == 64) attention_forward_hd<64>(out, lse, q, k, v, B, T, H, Hkv, stream);
    if (d == 128) attention_forward_hd<128>(out, lse, q, k, v, B, T, H, Hkv, stream);
}

static size_t attention_backward_scratch_bytes(int B, int T, int H, int Hkv, int d) {
    (void)Hkv; (void)d;
    return (size_t)B * H * T * sizeof(float);   // Delta
}

template <int HD>
static void attention_backward_hd(floatX *dq, floatX *dk, floatX *dv, const floatX *dout, const float *lse,
                                  const float *delta, const floatX *q, const floatX *k, const floatX *v,
                                  int B, int T, int H, int Hkv, cudaStream_t stream) {
    size_t smem_q = attention_dq_smem(HD), smem_kv = attention_dkv_smem(HD);
    cudaCheck(cudaFuncSetAttribute(attention_backward_dq_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_q));
    cudaCheck(cudaFuncSetAttribute(attention_backward_dkv_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_kv));
    attention_backward_dq_kernel<HD><<<dim3(ceil_div(T, ATT_BT), H, B), ATT_THREADS, smem_q, stream>>>(
        dq, dout, lse, delta, q, k, v, T, H, Hkv);
    cudaCheck(cudaGetLastError());
    attention_backward_dkv_kernel<HD><<<dim3(ceil_div(T, ATT_BT), Hkv, B), ATT_THREADS, smem_kv, stream>>>(
        dk, dv, dout, lse, delta, q, k, v, T, H, Hkv);
    cudaCheck(cudaGetLastError());
}

static void attention_backward(floatX *dq, floatX *dk, floatX *dv, const floatX *dout, const floatX *out,
                               const float *lse, const floatX *q, const floatX *k, const floatX *v, float *scratch,
                               int B, int T, int H, int Hkv, int d, cudaStream_t stream) {
    attention_check_shape(B, T, H, Hkv, d);
    float *delta = scratch;   // (B, H, T)
    attention_delta_kernel<<<ceil_div((long long)B * T * H, 8), 8 * WARP_SIZE, 0, stream>>>(delta, dout, out, B, T, H, d);
    cudaCheck(cudaGetLastError());
    if (d == 32) attention_backward_hd<32>(dq, dk, dv, dout, lse, delta, q, k, v, B, T, H, Hkv, stream);
    if (d == 64) attention_backward_hd<64>(dq, dk, dv, dout, lse, delta, q, k, v, B, T, H, Hkv, stream);
    if (d == 128) attention_backward_hd<128>(dq, dk, dv, dout, lse, delta, q, k, v, B, T, H, Hkv, stream);
}

#endif // SESSA_ATTENTION_CUH
