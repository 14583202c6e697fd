/*
 Causal GQA attention, forward: out = softmax(q k^T / sqrt(d) + causal) v, per query head h reading kv head h/(H/Hkv),
 and lse (B,H,T) for the backward.
   version 1: the first GPU version, kept here as written (llm.c style, simple -> fast): 64x64 tiles, 256
              threads, every 16x16 wmma product staged through fp32 shared memory, no load pipelining
   version 2: llmc/attention.cuh attention_forward_mma, what the trainer uses off Hopper: FlashAttention-2 class,
              mma.sync m16n8k16 with ldmatrix, fragments and the online softmax in registers, cp.async double buffering
   version 3: llmc/attention_sm90.cuh attention_forward_sm90(version 3), Hopper (sm_90a): wgmma from
              128-byte-swizzled shared memory, P kept in registers as wgmma's A operand, each product waited for,
              cp.async double buffering by all threads
   version 4: the same with FlashAttention-3's intra-warpgroup overlap (S_j's softmax runs while the tensor cores
              do P_j-1 V_j-1)
   version 5: FlashAttention-3's warp specialization on top of version 4: a producer warpgroup loading K, V by
              TMA into an mbarrier-guarded ring, consumer warpgroups in ping-pong (named barriers): 3 of them
              (192 query rows) at d = 64, 2 at d = 128
   version 6: version 5 with 2 consumer warpgroups at d = 64 too (the same kernel as version 5 at d = 128)
   versions 7, 8: versions 5, 6 with the CTAs in longest-first order across the heads of an L2 section
              (atth_block_order: the longest query blocks of all heads first, the short ones make the tail), and
              no products for a consumer warpgroup whose rows all lie past T
   versions 9, 10: versions 7, 8 persistent: one CTA per SM, taking the work items in turn with the stage ring and
              the turns carried on, the next item's loads under the current one's last products and epilogue
   version 11: by shape, 9 at T <= 2048, else 7 (d = 64) or 5 (d = 128): what the trainer uses on an sm_90 GPU
   Versions 3-11 are checked against the CPU reference and against version 2; the CPU emulator runs them
   through its wgmma, TMA, mbarrier and named-barrier twins (dev/cuda_emu/cuda_emu.h).
 make -C dev/cuda bin/attention_forward && dev/cuda/bin/attention_forward check|bench [version]
 attention_backward.cu includes this file (with ATTENTION_FORWARD_NO_MAIN) for the CPU reference and the setup.
*/
#include "common.h"
#include <mma.h>
#include "../../llmc/attention.cuh"

// ----------------------------------------------------------------------------
// version 1 (was llmc/attention.cuh): FlashAttention-2 tiling on wmma, 64x64 tiles, thread (ty = tid/16,
// tx = tid%16) owns rows ty+16i (i<4), columns tx+16j; S tiles staged through fp32 shared memory

#define ATT1_BT 64        // rows of every tile (queries and keys)
#define ATT1_THREADS 256  // thread (ty = tid/16, tx = tid%16) owns rows ty+16i (i<4), columns tx+16j

// Tiles live in shared memory as bf16 (exact copies of the inputs), rows of HD + 8 elements: 16-byte aligned
// rows for the tensor-core loads, and the padding spreads the rows over the banks.
template <int HD> struct Att1Tile { static constexpr int LD = HD + 8; };
#define ATT1_ZLD (ATT1_BT + 4)   // row stride of the fp32 (64, 64) staging tile of att1_dot_tile
#define ATT1_WLD (ATT1_BT + 8)   // row stride of the bf16 (64, 64) P / dS tiles
typedef nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> Att1Acc;

// dst (64, HD) <- rows [row0, row0+64) of src (row r at src[r*stride]); rows at or past T read as zero
template <int HD>
__device__ void att1_load_tile(floatX *dst, const floatX *src, int stride, int row0, int T) {
    const floatX zero = __float2bfloat16(0.0f);
    for (int e = threadIdx.x; e < ATT1_BT * HD; e += ATT1_THREADS) {
        int r = e / HD, c = e % HD;
        dst[r * Att1Tile<HD>::LD + c] = (row0 + r < T) ? src[(size_t)(row0 + r) * stride + c] : zero;
    }
}

// acc[i][j] = X[ty+16i, :] . Y[tx+16j, :]  over HD, X and Y (64, HD) bf16 tiles, on the tensor cores (bf16
// products are exact in fp32). Warp w owns rows 16(w/2).., columns 32(w%2).. (two 16x16 accumulators), staged
// through Zs (64, ATT1_ZLD) fp32 into the 4x4-per-thread layout. Called by all threads.
template <int HD>
__device__ void att1_dot_tile(float acc[4][4], const floatX *X, const floatX *Y, float *Zs) {
    using namespace nvcuda;
    constexpr int LD = Att1Tile<HD>::LD;
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16, wr = (threadIdx.x / WARP_SIZE) / 2, wc = (threadIdx.x / WARP_SIZE) % 2;
    Att1Acc c[2];
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
    for (int j = 0; j < 2; j++) wmma::store_matrix_sync(Zs + 16 * wr * ATT1_ZLD + 32 * wc + 16 * j, c[j], ATT1_ZLD, wmma::mem_row_major);
    __syncthreads();
    for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) acc[i][j] = Zs[(ty + 16 * i) * ATT1_ZLD + tx + 16 * j];
    __syncthreads();   // Zs is read before a next call stores into it
}

// Products with a (64, HD) result (P V, dS K, P^T dO, dS^T Q) accumulate in fragments on the tensor cores, with
// P and dS rounded to bf16 as FlashAttention-2 does. Warp w owns result rows 16(w%4).., columns
// (w/4)*HD/2 + 16f for f < HD/32.
template <int HD, class FragA>
__device__ __forceinline__ void att1_mma_b(Att1Acc *acc, const FragA &a, const floatX *Y, int kk) {
    using namespace nvcuda;
    constexpr int LD = Att1Tile<HD>::LD;
    int wc = (threadIdx.x / WARP_SIZE) / 4;
    for (int f = 0; f < HD / 32; f++) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, floatX, wmma::row_major> b;
        wmma::load_matrix_sync(b, Y + kk * LD + wc * (HD / 2) + 16 * f, LD);
        wmma::mma_sync(acc[f], a, b, acc[f]);
    }
}
// acc += W Y, or W^T Y when TRANS; W a (64, 64) bf16 tile of row stride ATT1_WLD, Y a (64, HD) bf16 tile
template <int HD, bool TRANS>
__device__ void att1_mma_tile(Att1Acc *acc, const floatX *W, const floatX *Y) {
    using namespace nvcuda;
    int wr = (threadIdx.x / WARP_SIZE) % 4;
    for (int kk = 0; kk < ATT1_BT; kk += 16) {
        if constexpr (TRANS) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, wmma::col_major> a;   // W^T(m, k) = W[k][m]
            wmma::load_matrix_sync(a, W + kk * ATT1_WLD + 16 * wr, ATT1_WLD);
            att1_mma_b<HD>(acc, a, Y, kk);
        } else {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, wmma::row_major> a;
            wmma::load_matrix_sync(a, W + 16 * wr * ATT1_WLD + kk, ATT1_WLD);
            att1_mma_b<HD>(acc, a, Y, kk);
        }
    }
}
// this warp's result fragments <-> Os (64, HD+4) fp32 in shared memory
template <int HD>
__device__ float *att1_out_block(float *Os, int f) {
    int w = threadIdx.x / WARP_SIZE;
    return Os + 16 * (w % 4) * (HD + 4) + (w / 4) * (HD / 2) + 16 * f;
}
template <int HD>
__device__ void att1_store_out(float *Os, const Att1Acc *acc) {
    for (int f = 0; f < HD / 32; f++) nvcuda::wmma::store_matrix_sync(att1_out_block<HD>(Os, f), acc[f], HD + 4, nvcuda::wmma::mem_row_major);
}
template <int HD>
__device__ void att1_load_out(Att1Acc *acc, const float *Os) {
    for (int f = 0; f < HD / 32; f++) nvcuda::wmma::load_matrix_sync(acc[f], att1_out_block<HD>((float *)Os, f), HD + 4, nvcuda::wmma::mem_row_major);
}

// max and sum over the 16 threads that share a row (they are 16 consecutive lanes of one warp)
__device__ __forceinline__ float att1_row_max(float v) {
    for (int o = 1; o < 16; o <<= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float att1_row_sum(float v) {
    for (int o = 1; o < 16; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// ----------------------------------------------------------------------------
// forward: grid (ceil(T/64), H, B). The output tile O (64, HD) lives in shared memory in fp32: threads rescale
// its rows by the online-softmax correction, warps add P V into it on the tensor cores.
template <int HD>
__global__ void __launch_bounds__(ATT1_THREADS)
attention1_forward_kernel(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                         int T, int H, int Hkv) {
    constexpr int LD = Att1Tile<HD>::LD, NC = HD / 16, OLD = HD + 4;
    extern __shared__ __align__(128) unsigned char att1_smem[];
    float *Zs = (float *)att1_smem, *Os = Zs + ATT1_BT * ATT1_ZLD;                  // fp32 (64, ATT1_ZLD), (64, HD+4)
    floatX *Pb = (floatX *)(Os + ATT1_BT * OLD);                                  // bf16 (64, ATT1_WLD)
    floatX *Qs = Pb + ATT1_BT * ATT1_WLD, *KVs = Qs + ATT1_BT * LD;                 // bf16 (64, LD) each
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    int i0 = blockIdx.x * ATT1_BT, h = blockIdx.y, b = blockIdx.z, hk = h / (H / Hkv);
    const float scale = rsqrtf((float)HD);
    const floatX *kb = k + ((size_t)b * T * Hkv + hk) * HD, *vb = v + ((size_t)b * T * Hkv + hk) * HD;
    att1_load_tile<HD>(Qs, q + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
    float m[4], l[4];
    for (int i = 0; i < 4; i++) {
        m[i] = -INFINITY; l[i] = 0.0f;
        for (int c = 0; c < NC; c++) Os[(ty + 16 * i) * OLD + tx + 16 * c] = 0.0f;
    }
    for (int j0 = 0; j0 <= i0; j0 += ATT1_BT) {
        __syncthreads();
        att1_load_tile<HD>(KVs, kb, Hkv * HD, j0, T);
        __syncthreads();
        float sc[4][4];
        att1_dot_tile<HD>(sc, Qs, KVs, Zs);
        for (int i = 0; i < 4; i++) {
            int t = i0 + ty + 16 * i;
            float mx = -INFINITY;
            for (int j = 0; j < 4; j++) {
                int jj = j0 + tx + 16 * j;
                sc[i][j] = (jj <= t && jj < T) ? sc[i][j] * scale : -INFINITY;
                mx = fmaxf(mx, sc[i][j]);
            }
            float m_new = fmaxf(m[i], att1_row_max(mx));   // finite: column j0 <= t is always live
            float corr = expf(m[i] - m_new), rs = 0.0f;
            for (int j = 0; j < 4; j++) {
                float p = expf(sc[i][j] - m_new);
                Pb[(ty + 16 * i) * ATT1_WLD + tx + 16 * j] = __float2bfloat16(p);
                rs += p;
            }
            l[i] = l[i] * corr + att1_row_sum(rs);
            m[i] = m_new;
            for (int c = 0; c < NC; c++) Os[(ty + 16 * i) * OLD + tx + 16 * c] *= corr;
        }
        __syncthreads();                                 // K no longer read, P and the rescaled O complete
        att1_load_tile<HD>(KVs, vb, Hkv * HD, j0, T);     // V in K's place
        __syncthreads();
        Att1Acc o[HD / 32];                               // O += P V
        att1_load_out<HD>(o, Os);
        att1_mma_tile<HD, false>(o, Pb, KVs);
        att1_store_out<HD>(Os, o);
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
// launchers

// dynamic shared memory of a kernel: the fp32 staging tiles (64, 64+4) and (64, HD+4), n_w bf16 (64, 64+8)
// P / dS tiles, n_t bf16 (64, HD+8) input tiles
static size_t att1_smem_bytes(int HD, int n_w, int n_t) {
    return (size_t)ATT1_BT * (ATT1_ZLD + HD + 4) * sizeof(float) + (size_t)ATT1_BT * (n_w * ATT1_WLD + n_t * (HD + 8)) * sizeof(floatX);
}
static size_t attention1_forward_smem(int HD) { return att1_smem_bytes(HD, 1, 2); }
static size_t attention1_dq_smem(int HD) { return att1_smem_bytes(HD, 1, 4); }
static size_t attention1_dkv_smem(int HD) { return att1_smem_bytes(HD, 2, 4); }

static void attention1_check_shape(int B, int T, int H, int Hkv, int d) {
    if (B < 1 || T < 1 || H < 1 || Hkv < 1 || H % Hkv != 0)
        fatal("attention: invalid shape B=%d T=%d H=%d Hkv=%d (H must be a multiple of Hkv)", B, T, H, Hkv);
    if (d != 32 && d != 64 && d != 128) fatal("attention: head width d=%d is not supported (32, 64 or 128)", d);
}

template <int HD>
static void attention1_forward_hd(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                                 int B, int T, int H, int Hkv, cudaStream_t stream) {
    size_t smem = attention1_forward_smem(HD);
    cudaCheck(cudaFuncSetAttribute(attention1_forward_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attention1_forward_kernel<HD><<<dim3(ceil_div(T, ATT1_BT), H, B), ATT1_THREADS, smem, stream>>>(out, lse, q, k, v, T, H, Hkv);
    cudaCheck(cudaGetLastError());
}

static void attention1_forward(floatX *out, float *lse, const floatX *q, const floatX *k, const floatX *v,
                              int B, int T, int H, int Hkv, int d, cudaStream_t stream) {
    attention1_check_shape(B, T, H, Hkv, d);
    if (d == 32) attention1_forward_hd<32>(out, lse, q, k, v, B, T, H, Hkv, stream);
    if (d == 64) attention1_forward_hd<64>(out, lse, q, k, v, B, T, H, Hkv, stream);
    if (d == 128) attention1_forward_hd<128>(out, lse, q, k, v, B, T, H, Hkv, stream);
}


// ----------------------------------------------------------------------------
// CPU reference, double accumulation: out (B,T,H,d), lse (B,H,T); with dout given, also dq (B,T,H,d) and
// dk, dv (B,T,Hkv,d) summed over each kv head's query heads (dq == NULL: forward only)
static void attention_cpu(float *out, float *lse, float *dq, float *dk, float *dv, const float *dout,
                          const float *q, const float *k, const float *v, int B, int T, int H, int Hkv, int d) {
    int g = H / Hkv;
    double scale = 1.0 / sqrt((double)d);
    double *P = (double *)mallocCheck((size_t)T * sizeof(double));
    double *dqa = (double *)mallocCheck((size_t)d * sizeof(double));
    double *dka = dq ? (double *)callocCheck((size_t)B * T * Hkv * d, sizeof(double)) : NULL;
    double *dva = dq ? (double *)callocCheck((size_t)B * T * Hkv * d, sizeof(double)) : NULL;
    for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int t = 0; t < T; t++) {
        size_t qo = (((size_t)b * T + t) * H + h) * d;
        const float *qt = q + qo;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j <= t; j++) {
            const float *kj = k + (((size_t)b * T + j) * Hkv + h / g) * d;
            double z = 0.0;
            for (int i = 0; i < d; i++) z += (double)qt[i] * kj[i];
            P[j] = z * scale;
            mx = fmax(mx, P[j]);
        }
        for (int j = 0; j <= t; j++) sum += (P[j] = exp(P[j] - mx));
        lse[((size_t)b * H + h) * T + t] = (float)(mx + log(sum));
        double delta = 0.0;
        for (int i = 0; i < d; i++) {
            double o = 0.0;
            for (int j = 0; j <= t; j++) o += P[j] / sum * v[(((size_t)b * T + j) * Hkv + h / g) * d + i];
            out[qo + i] = (float)o;
            if (dq) delta += o * dout[qo + i];
        }
        if (!dq) continue;
        for (int i = 0; i < d; i++) dqa[i] = 0.0;
        for (int j = 0; j <= t; j++) {
            size_t ko = (((size_t)b * T + j) * Hkv + h / g) * d;
            double p = P[j] / sum, dp = 0.0;
            for (int i = 0; i < d; i++) dp += (double)dout[qo + i] * v[ko + i];
            double ds = p * (dp - delta);
            for (int i = 0; i < d; i++) {
                dqa[i] += ds * k[ko + i] * scale;
                dka[ko + i] += ds * qt[i] * scale;
                dva[ko + i] += p * dout[qo + i];
            }
        }
        for (int i = 0; i < d; i++) dq[qo + i] = (float)dqa[i];
    }
    if (dq) for (size_t e = 0; e < (size_t)B * T * Hkv * d; e++) { dk[e] = (float)dka[e]; dv[e] = (float)dva[e]; }
    free(P); free(dqa); free(dka); free(dva);
}

// Where q, k, v (and dq, dk, dv) live on the device, in one allocation: dense, three (B,T,heads,d) tensors one
// after the other (ldq = H*d, ldkv = Hkv*d); or stacked, column slices of one (B*T, ld) matrix as the trainer's
// stacked projection makes them (ldq = ldkv = ld = H*d + 2*Hkv*d + 8: the 8 extra columns, 16 bytes, are the
// least pad TMA allows and stand for the trainer's gate columns). Every entry outside the three tensors holds NaN:
// a kernel that reads it (a wrong stride) gets a NaN result, one that writes it is caught by att_pad_intact.
typedef struct { int ldq, ldkv; size_t off[3], n; } AttLayout;
static AttLayout att_layout(int B, int T, int H, int Hkv, int d, int stacked) {
    size_t rows = (size_t)B * T;
    AttLayout L;
    L.ldq = stacked ? (H + 2 * Hkv) * d + 8 : H * d;
    L.ldkv = stacked ? L.ldq : Hkv * d;
    L.off[0] = 0;
    L.off[1] = stacked ? (size_t)H * d : rows * H * d;
    L.off[2] = L.off[1] + (stacked ? (size_t)Hkv * d : rows * Hkv * d);
    L.n = stacked ? rows * L.ldq : rows * (H + 2 * Hkv) * d;
    return L;
}
// tensor i (0: q, 1: k, 2: v) of layout L: its row width (elements) and row stride
static int att_width(int i, int H, int Hkv, int d) { return (i == 0 ? H : Hkv) * d; }
static int att_ld(const AttLayout *L, int i) { return i == 0 ? L->ldq : L->ldkv; }
// a new device allocation in layout L holding the dense host tensors x[3] (NULL: all NaN)
static floatX *att_to_device(const AttLayout *L, int B, int T, int H, int Hkv, int d, float *const x[3]) {
    uint16_t *h = (uint16_t *)mallocCheck(L->n * sizeof(uint16_t));
    for (size_t e = 0; e < L->n; e++) h[e] = 0x7fc0;   // bf16 NaN
    for (int i = 0; i < 3 && x; i++) {
        int w = att_width(i, H, Hkv, d), ld = att_ld(L, i);
        for (size_t r = 0; r < (size_t)B * T; r++) for (int c = 0; c < w; c++)
            h[L->off[i] + r * ld + c] = float_to_bf16(x[i][r * w + c]);
    }
    floatX *dx;
    cudaMallocCheck(&dx, L->n * sizeof(floatX));
    cudaCheck(cudaMemcpy(dx, h, L->n * sizeof(uint16_t), cudaMemcpyHostToDevice));
    free(h);
    return dx;
}
// 1 when every entry of the device allocation dx (layout L) outside the three tensors still holds att_to_device's NaN
static int att_pad_intact(const AttLayout *L, const floatX *dx, int B, int T, int H, int Hkv, int d) {
    uint16_t *h = (uint16_t *)mallocCheck(L->n * sizeof(uint16_t));
    unsigned char *inside = (unsigned char *)callocCheck(L->n, 1);
    cudaCheck(cudaMemcpy(h, dx, L->n * sizeof(uint16_t), cudaMemcpyDeviceToHost));
    for (int i = 0; i < 3; i++) {
        int w = att_width(i, H, Hkv, d), ld = att_ld(L, i);
        for (size_t r = 0; r < (size_t)B * T; r++) memset(inside + L->off[i] + r * ld, 1, w);
    }
    size_t bad = 0;
    for (size_t e = 0; e < L->n; e++) bad += !inside[e] && h[e] != 0x7fc0;
    if (bad) printf("  %zu entries outside the tensors were written: FAIL\n", bad);
    free(h); free(inside);
    return bad == 0;
}

typedef struct {
    int B, T, H, Hkv, d;
    AttLayout L;               // of d_qkv: dense or stacked (see att_layout)
    float *q, *k, *v;          // host, dense, bf16-exact values
    floatX *d_qkv, *d_q, *d_k, *d_v, *d_out;   // d_q, d_k, d_v: into d_qkv
    float *d_lse;
} AttProblem;

static AttProblem make_att_problem(int B, int T, int H, int Hkv, int d, int stacked) {
    AttProblem p = {B, T, H, Hkv, d};
    p.L = att_layout(B, T, H, Hkv, d, stacked);
    size_t nq = (size_t)B * T * H * d, nk = (size_t)B * T * Hkv * d;
    p.q = make_random_float(nq, -2.0f, 2.0f);   // logits of a few units: peaked and flat rows both occur
    p.k = make_random_float(nk, -2.0f, 2.0f);
    p.v = make_random_float(nk, -1.0f, 1.0f);
    round_to_bf16(p.q, nq); round_to_bf16(p.k, nk); round_to_bf16(p.v, nk);
    float *const x[3] = {p.q, p.k, p.v};
    p.d_qkv = att_to_device(&p.L, B, T, H, Hkv, d, x);
    p.d_q = p.d_qkv + p.L.off[0]; p.d_k = p.d_qkv + p.L.off[1]; p.d_v = p.d_qkv + p.L.off[2];
    cudaMallocCheck(&p.d_out, nq * sizeof(floatX));
    cudaMallocCheck(&p.d_lse, (size_t)B * H * T * sizeof(float));
    return p;
}
static void free_att_problem(AttProblem *p) {
    free(p->q); free(p->k); free(p->v);
    cudaCheck(cudaFree(p->d_qkv)); cudaCheck(cudaFree(p->d_out)); cudaCheck(cudaFree(p->d_lse));
}
// version 0: attention_forward, the trainer's choice (11 where usable, else 2); version 1 takes dense inputs only
static void run_att_forward(AttProblem *p, int version) {
    const int ldq = p->L.ldq, ldkv = p->L.ldkv;
    if (version == 1) {
        if (ldq != p->H * p->d || ldkv != p->Hkv * p->d) fatal("attention_forward version 1: dense q, k, v only");
        attention1_forward(p->d_out, p->d_lse, p->d_q, p->d_k, p->d_v, p->B, p->T, p->H, p->Hkv, p->d, 0);
    } else if (version == 2)
        attention_forward_mma(p->d_out, p->d_lse, p->d_q, p->d_k, p->d_v, p->B, p->T, p->H, p->Hkv, p->d, 0, ldq, ldkv);
    else if (version >= 3)
        attention_forward_sm90(p->d_out, p->d_lse, p->d_q, p->d_k, p->d_v, p->B, p->T, p->H, p->Hkv, p->d, 0, version, ldq, ldkv);
    else attention_forward(p->d_out, p->d_lse, p->d_q, p->d_k, p->d_v, p->B, p->T, p->H, p->Hkv, p->d, 0, ldq, ldkv);
}
// 1 when the trainer's attention_forward takes the Hopper path for head width d
static int att_forward_is_sm90(int d) {
#ifndef SESSA_CUDA_EMU_H
    return (d == 64 || d == 128) && attention_sm90_trusted();
#else
    (void)d;
    return 0;
#endif
}
#define ATT_VERSIONS 17   // of the backward
#define ATT_FWD_VERSIONS 11
// the kernels in longest-first order (forward 7-10, backward 5-7) run here with an L2 budget of 100 KiB, which cuts
// the check problems into sections of 1 to 2 GQA groups or kv heads (B=3 T=150 H=2 Hkv=1 d=64: 2 + 1 in the
// forward and the dQ kernel, a smaller last section), every path of atth_block_order; the trainer keeps 32 MiB
static void att_check_sections(bool lpt) { atth_l2_budget = lpt ? (size_t)100 << 10 : (size_t)32 << 20; }
static double att_forward_flops(int B, int T, int H, int d) { return 4.0 * B * H * d * (double)T * (T + 1) / 2; }

// can this version run here? Versions >= 3 are the Hopper kernels: where they cannot run, say why; that is a
// failure (*ok = 0) on a Hopper GPU or when the version was asked for, else a skip. (The emulator runs them all.)
static bool att_version_runs_here(int version, int asked, int *ok) {
#ifndef SESSA_CUDA_EMU_H
    if (version >= 3 && !attention_sm90_usable()) {
        int major = 0;
        cudaCheck(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
        printf("version %d (Hopper wgmma) not usable here: needs an sm_90 GPU, a binary built for sm_90a and "
               "SESSA_ATT_SM90 not 0%s\n", version, asked || major == 9 ? ": FAIL" : " (skipped)");
        if (asked || major == 9) *ok = 0;   // on Hopper, or asked for, it must be there
        return false;
    }
#endif
    (void)version; (void)asked; (void)ok;
    return true;
}

// the shapes the forward and the backward check at every version (check: theirs): GQA groups of 2 and 4, MHA; T not
// a multiple of 64 and several key tiles (the pipelines); every supported head width; T = 1; then q, k, v (and dq,
// dk, dv) as the trainer passes them (column slices of wider matrices: row strides, TMA's too), at every width, GQA
// and MHA, several tiles. Every check runs (&, not &&).
static int att_common_checks(int (*check)(int version, int B, int T, int H, int Hkv, int d, int stacked), int version) {
    return check(version, 2, 200, 4, 2, 64, 0) & check(version, 1, 130, 4, 1, 128, 0) & check(version, 1, 67, 3, 3, 32, 0) &
           check(version, 1, 1, 2, 1, 32, 0) &
           check(version, 1, 333, 4, 1, 128, 0) & check(version, 2, 290, 4, 2, 64, 0) &
           check(version, 2, 200, 4, 2, 64, 1) & check(version, 1, 333, 4, 1, 128, 1) & check(version, 1, 67, 3, 3, 32, 1);
}

#ifndef ATTENTION_FORWARD_NO_MAIN
// stacked: q, k, v column slices of one wider matrix (att_layout), as the trainer passes them
static int check(int version, int B, int T, int H, int Hkv, int d, int stacked) {
    if (version >= 3 && d != 64 && d != 128) return 1;   // not a width of the Hopper kernels
    if (version == 1 && stacked) return 1;                // version 1 takes dense inputs only
    printf("check version %d B=%d T=%d H=%d Hkv=%d d=%d%s\n", version, B, T, H, Hkv, d, stacked ? " stacked q|k|v" : "");
    AttProblem p = make_att_problem(B, T, H, Hkv, d, stacked);
    att_check_sections(version >= 7);
    atth_persistent_ctas = version >= 9 ? 3 : 0;   // persistent: 3 CTAs, each taking many work items in turn
    size_t nq = (size_t)B * T * H * d;
    float *out_ref = (float *)mallocCheck(nq * sizeof(float)), *lse_ref = (float *)mallocCheck((size_t)B * H * T * sizeof(float));
    attention_cpu(out_ref, lse_ref, NULL, NULL, NULL, NULL, p.q, p.k, p.v, B, T, H, Hkv, d);
    run_att_forward(&p, version);
    cudaCheck(cudaDeviceSynchronize());
    // P is rounded to bf16 before P V, as in FlashAttention-2 (2^-9 relative per weight: up to 2^-9 max|v|, about
    // 2e-3 max|out|, when the errors line up), and out is stored in bf16 (2^-9 relative): atol 5e-3 of max|out|,
    // rtol 1e-2 (the CPU emulation of these kernels shows up to 3e-3). lse is fp32 of magnitude log(T) + max logit:
    // 1e-4. A wrong mask or head mapping is off by 1e-1 or more.
    int ok = validate_result(p.d_out, out_ref, "out", (size_t)B * T * H, d, d, 5e-3f * max_abs(out_ref, nq), 1e-2f);
    ok &= validate_result(p.d_lse, lse_ref, "lse", (size_t)B * H, T, T, 1e-4f, 1e-4f);
    if (version >= 3) {
        // against version 2 (mma.sync), the same math with other tiles (64 vs 128 keys: P's bf16 rounding happens
        // after different running maxima) and summation orders: each is within the tolerance above of the exact
        // result, so they are within about twice it of each other (typically far closer)
        float *out2 = (float *)mallocCheck(nq * sizeof(float)), *lse2 = (float *)mallocCheck((size_t)B * H * T * sizeof(float));
        run_att_forward(&p, 2);
        cudaCheck(cudaDeviceSynchronize());
        from_device(out2, p.d_out, nq);
        from_device(lse2, p.d_lse, (size_t)B * H * T);
        run_att_forward(&p, version);
        cudaCheck(cudaDeviceSynchronize());
        printf("  version %d against version 2:\n", version);
        ok &= validate_result(p.d_out, out2, "out", (size_t)B * T * H, d, d, 1e-2f * max_abs(out_ref, nq), 2e-2f);
        ok &= validate_result(p.d_lse, lse2, "lse", (size_t)B * H, T, T, 2e-4f, 2e-4f);
        free(out2); free(lse2);
    }
    ok &= att_pad_intact(&p.L, p.d_qkv, B, T, H, Hkv, d);   // the inputs' pad: nothing writes it
    free(out_ref); free(lse_ref);
    free_att_problem(&p);
    return ok;
}

static void bench(int version, int B, int T, int H, int Hkv, int d) {
    AttProblem p = make_att_problem(B, T, H, Hkv, d, 0);
    float ms = benchmark_kernel(10, run_att_forward, &p, version);
    printf("B=%d T=%d H=%d Hkv=%d d=%d  version %d  %8.3f ms  %6.1f TFLOP/s\n", B, T, H, Hkv, d, version, ms,
           att_forward_flops(B, T, H, d) / (ms * 1e-3) / 1e12);
    free_att_problem(&p);
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, ATT_FWD_VERSIONS);
    cudaCheck(cudaSetDevice(0));
    int ok = 1;
    for (int version = 1; version <= ATT_FWD_VERSIONS; version++) {
        if (a.version && version != a.version) continue;
        if (!att_version_runs_here(version, a.version, &ok)) continue;
        if (a.check) {
            ok &= att_common_checks(check, version);
            // versions 3-11 also: T = 1 and T < 64 at their widths; a longer sequence at both widths (17 key tiles
            // of 128: many turns of the stage rings and of version 5's ping-pong; 5 in the CPU emulator, where 2100
            // would take minutes)
#ifndef SESSA_CUDA_EMU_H
            const int T_long = 2100;
#else
            const int T_long = 520;
#endif
            if (version >= 3)
                ok &= check(version, 1, 1, 2, 1, 64, 0) & check(version, 2, 37, 2, 2, 128, 0) & check(version, 1, T_long, 2, 1, 128, 0) &
                      check(version, 1, T_long, 3, 1, 64, 1) & check(version, 3, 150, 2, 1, 64, 1);   // (sections 2 + 1)
        } else {
            bench(version, 8, 1024, 12, 12, 64);
            bench(version, 8, 1024, 12, 4, 64);
            bench(version, 4, 2048, 8, 2, 128);
        }
    }
    if (a.check) printf(ok ? "attention_forward: all checks passed\n" : "attention_forward: CHECK FAILED\n");
    return ok ? 0 : 1;
}
#endif
