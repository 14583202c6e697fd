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
 S = Q K^T and dP = dO V^T run on the tensor cores (bf16 wmma, exact products, fp32 sums); P V, dS K, P^T dO
 and dS^T Q keep P and dS in fp32 and run as fp32 FMAs. Tiles of bf16 inputs live in shared memory.
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
#define ATT_PLD (ATT_BT + 1)   // row stride of the fp32 (64, 64) P / dS tiles

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
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> c[2];
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

__device__ __forceinline__ float att_f(floatX x) { return __bfloat162float(x); }

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
// forward: grid (ceil(T/64), H, B)
template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attention_forward_kernel(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                         int T, int H, int Hkv) {
    constexpr int LD = AttTile<HD>::LD, NC = HD / 16;
    extern __shared__ __align__(128) unsigned char att_smem[];
    float *Zs = (float *)att_smem, *Ps = Zs + ATT_BT * ATT_ZLD;                  // fp32 (64, ATT_ZLD), (64, ATT_PLD)
    floatX *Qs = (floatX *)(Ps + ATT_BT * ATT_PLD), *KVs = Qs + ATT_BT * LD;     // bf16 (64, LD) each
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    int i0 = blockIdx.x * ATT_BT, h = blockIdx.y, b = blockIdx.z, hk = h / (H / Hkv);
    const float scale = rsqrtf((float)HD);
    const floatX *kb = k + ((size_t)b * T * Hkv + hk) * HD, *vb = v + ((size_t)b * T * Hkv + hk) * HD;
    att_load_tile<HD>(Qs, q + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
    float m[4], l[4], o[4][NC];
    for (int i = 0; i < 4; i++) { m[i] = -INFINITY; l[i] = 0.0f; for (int c = 0; c < NC; c++) o[i][c] = 0.0f; }
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
                Ps[(ty + 16 * i) * ATT_PLD + tx + 16 * j] = p;
                rs += p;
            }
            l[i] = l[i] * corr + att_row_sum(rs);
            m[i] = m_new;
            for (int c = 0; c < NC; c++) o[i][c] *= corr;
        }
        __syncthreads();                                 // K no longer read: load V in its place
        att_load_tile<HD>(KVs, vb, Hkv * HD, j0, T);
        __syncthreads();
        for (int kk = 0; kk < ATT_BT; kk++) {            // o += P V
            float p[4];
            for (int i = 0; i < 4; i++) p[i] = Ps[(ty + 16 * i) * ATT_PLD + kk];
            for (int c = 0; c < NC; c++) {
                float vv = att_f(KVs[kk * LD + tx + 16 * c]);
                for (int i = 0; i < 4; i++) o[i][c] = fmaf(p[i], vv, o[i][c]);
            }
        }
    }
    for (int i = 0; i < 4; i++) {
        int t = i0 + ty + 16 * i;
        if (t >= T) continue;
        floatX *orow = out + (((size_t)b * T + t) * H + h) * HD;
        for (int c = 0; c < NC; c++) orow[tx + 16 * c] = __float2bfloat16(o[i][c] / l[i]);
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

// dq for one query tile: grid (ceil(T/64), H, B)
template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attention_backward_dq_kernel(floatX *dq, const floatX *dout, const float *lse, const float *delta,
                             const floatX *q, const floatX *k, const floatX *v, int T, int H, int Hkv) {
    constexpr int LD = AttTile<HD>::LD, NC = HD / 16;
    extern __shared__ __align__(128) unsigned char att_smem[];
    float *Zs = (float *)att_smem, *dSs = Zs + ATT_BT * ATT_ZLD;                 // fp32 (64, ATT_ZLD), (64, ATT_PLD)
    floatX *Qs = (floatX *)(dSs + ATT_BT * ATT_PLD), *dOs = Qs + ATT_BT * LD;    // bf16 (64, LD) each
    floatX *Ks = dOs + ATT_BT * LD, *Vs = Ks + ATT_BT * LD;
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    int i0 = blockIdx.x * ATT_BT, h = blockIdx.y, b = blockIdx.z, hk = h / (H / Hkv);
    const float scale = rsqrtf((float)HD);
    att_load_tile<HD>(Qs, q + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
    att_load_tile<HD>(dOs, dout + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
    float lse_r[4], delta_r[4], acc[4][NC];
    for (int i = 0; i < 4; i++) {
        int t = i0 + ty + 16 * i;
        lse_r[i] = t < T ? lse[((size_t)b * H + h) * T + t] : 0.0f;
        delta_r[i] = t < T ? delta[((size_t)b * H + h) * T + t] : 0.0f;
        for (int c = 0; c < NC; c++) acc[i][c] = 0.0f;
    }
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
            dSs[(ty + 16 * i) * ATT_PLD + tx + 16 * j] = p * (dp[i][j] - delta_r[i]);
        }
        __syncthreads();
        for (int kk = 0; kk < ATT_BT; kk++) {            // acc += dS K
            float ds[4];
            for (int i = 0; i < 4; i++) ds[i] = dSs[(ty + 16 * i) * ATT_PLD + kk];
            for (int c = 0; c < NC; c++) {
                float kv = att_f(Ks[kk * LD + tx + 16 * c]);
                for (int i = 0; i < 4; i++) acc[i][c] = fmaf(ds[i], kv, acc[i][c]);
            }
        }
    }
    for (int i = 0; i < 4; i++) {
        int t = i0 + ty + 16 * i;
        if (t >= T) continue;
        floatX *row = dq + (((size_t)b * T + t) * H + h) * HD;
        for (int c = 0; c < NC; c++) row[tx + 16 * c] = __float2bfloat16(acc[i][c] * scale);
    }
}

// dk, dv for one key tile of one kv head, summed over its g query heads: grid (ceil(T/64), Hkv, B)
template <int HD>
__global__ void __launch_bounds__(ATT_THREADS)
attention_backward_dkv_kernel(floatX *dk, floatX *dv, const floatX *dout, const float *lse, const float *delta,
                              const floatX *q, const floatX *k, const floatX *v, int T, int H, int Hkv) {
    constexpr int LD = AttTile<HD>::LD, NC = HD / 16;
    extern __shared__ __align__(128) unsigned char att_smem[];
    float *Zs = (float *)att_smem, *Ps = Zs + ATT_BT * ATT_ZLD, *dSs = Ps + ATT_BT * ATT_PLD;   // fp32
    floatX *Ks = (floatX *)(dSs + ATT_BT * ATT_PLD), *Vs = Ks + ATT_BT * LD;                     // bf16 (64, LD)
    floatX *Qs = Vs + ATT_BT * LD, *dOs = Qs + ATT_BT * LD;
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    int j0 = blockIdx.x * ATT_BT, hk = blockIdx.y, b = blockIdx.z, g = H / Hkv;
    const float scale = rsqrtf((float)HD);
    att_load_tile<HD>(Ks, k + ((size_t)b * T * Hkv + hk) * HD, Hkv * HD, j0, T);
    att_load_tile<HD>(Vs, v + ((size_t)b * T * Hkv + hk) * HD, Hkv * HD, j0, T);
    float dk_acc[4][NC], dv_acc[4][NC];   // key rows j0+ty+16i, columns tx+16c
    for (int i = 0; i < 4; i++) for (int c = 0; c < NC; c++) { dk_acc[i][c] = 0.0f; dv_acc[i][c] = 0.0f; }
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
                    Ps[(ty + 16 * i) * ATT_PLD + tx + 16 * j] = p;
                    dSs[(ty + 16 * i) * ATT_PLD + tx + 16 * j] = p * (dp[i][j] - delta_t);
                }
            }
            __syncthreads();
            for (int tt = 0; tt < ATT_BT; tt++) {        // dv += P^T dO,  dk += dS^T Q
                float p[4], ds[4];
                for (int i = 0; i < 4; i++) {
                    p[i] = Ps[tt * ATT_PLD + ty + 16 * i];
                    ds[i] = dSs[tt * ATT_PLD + ty + 16 * i];
                }
                for (int c = 0; c < NC; c++) {
                    float dov = att_f(dOs[tt * LD + tx + 16 * c]), qv = att_f(Qs[tt * LD + tx + 16 * c]);
                    for (int i = 0; i < 4; i++) {
                        dv_acc[i][c] = fmaf(p[i], dov, dv_acc[i][c]);
                        dk_acc[i][c] = fmaf(ds[i], qv, dk_acc[i][c]);
                    }
                }
            }
        }
    }
    for (int i = 0; i < 4; i++) {
        int j = j0 + ty + 16 * i;
        if (j >= T) continue;
        size_t base = (((size_t)b * T + j) * Hkv + hk) * HD;
        for (int c = 0; c < NC; c++) {
            dk[base + tx + 16 * c] = __float2bfloat16(dk_acc[i][c] * scale);
            dv[base + tx + 16 * c] = __float2bfloat16(dv_acc[i][c]);
        }
    }
}

// ----------------------------------------------------------------------------
// launchers

// dynamic shared memory of a kernel: the fp32 staging tile, n_p fp32 P/dS tiles, n_t bf16 (64, HD+8) tiles
static size_t att_smem_bytes(int HD, int n_p, int n_t) {
    return (size_t)ATT_BT * (ATT_ZLD + n_p * ATT_PLD) * sizeof(float) + (size_t)n_t * ATT_BT * (HD + 8) * sizeof(floatX);
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
