/*
 Recurrent decoding kernels (DESIGN.md section 1, "recurrent decoding ... gives exactly the same s_t"):
 one new position t per sequence, against per-layer caches of the earlier positions.

 Caches of one layer, for Bs sequences of at most Tc positions (row-major, sequence b at b * Tc rows):
   kc, vc (Bs, Tc, Hkv*hd) bf16    k after RoPE, v            (the attention's keys and values)
   kbc    (Bs, Tc, D)      bf16    kb                          (the feedback's keys)
   sc     (Bs, Tc, D)      fp32    s                           (the feedback's values: fp32 as the trainer keeps s)

 Per new token (rows of the B = Bs current tokens; q, k, v, qb, kb from the Linears of that token):
   decode_append:    q, k rotated by RoPE at position t (same table and arithmetic as rope_kernel);
                     k, v, kb stored into row t of the caches
   decode_attention: att_h = sum_{j<=t} softmax_j(q_h . k_{j,h/g} / sqrt(hd)) v_{j,h/g}      (GQA, diagonal included)
   decode_feedback:  c = sum_{j<t} softmax_j(qb . kb_j / sqrt(D)) s_j;  s_t = f + gamma * c  (strictly causal;
                     t = 0: s_0 = f), stored into row t of sc and into s (B, D)
 Both softmax readouts are one kernel pair, flash-decoding style: the keys 0..n-1 are split into nsplit
 contiguous chunks; block (split, head, b) computes its chunk's max m, sum l = sum exp(z - m) and
 acc = sum exp(z - m) v (fp32, online over tiles of DEC_TILE keys); the combine kernel merges the nsplit
 partials in split order (M = max m_i, out = sum_i acc_i e^(m_i - M) / sum_i l_i e^(m_i - M)). No atomics:
 the result is deterministic, and nsplit depends only on B, heads and the GPU (not on t), so one batch 1
 sequence at long T still fills the GPU; at small t some splits are empty (m = -inf, l = 0).
 The position t is read from device memory (pos), so that one token's launches are the same for every t
 and can be replayed as a CUDA graph.
*/
#ifndef SESSA_DECODE_CUH
#define SESSA_DECODE_CUH

#include "cuda_common.h"

#define DEC_THREADS 128          // 4 warps
#define DEC_TILE DEC_THREADS     // keys per tile (logits in shared memory): one per thread
#define DEC_MAX_SPLIT 256        // partials per (head, sequence)

// ----------------------------------------------------------------------------
// RoPE at position t on q (B, Dq) in place and on k, then k, v, kb into row t of the caches

__global__ void decode_append_kernel(floatX *q, const floatX *k, const floatX *v, const floatX *kb, int ld,
                                     floatX *kc, floatX *vc, floatX *kbc, const float2 *rope, int use_rope,
                                     const int *pos, int Tc, int B, int Dq, int Dkv, int D, int hd) {
    int t = *pos;
    if (t < 0 || t >= Tc) return;             // never: the host checked it (decoder_step)
    int per_b = Dq / 2 + Dkv / 2 + Dkv + D;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)B * per_b) return;
    int b = (int)(i / per_b), r = (int)(i % per_b), half = hd / 2;
    size_t krow = ((size_t)b * Tc + t) * Dkv, kbrow = ((size_t)b * Tc + t) * D;
    if (r < Dq / 2) {                         // q pair r, in place
        floatX *xp = q + (size_t)b * ld + 2 * r;
        if (use_rope) {
            float2 cs = rope[(size_t)t * half + r % half];
            float x0 = __bfloat162float(xp[0]), x1 = __bfloat162float(xp[1]);
            xp[0] = __float2bfloat16(x0 * cs.x - x1 * cs.y);
            xp[1] = __float2bfloat16(x0 * cs.y + x1 * cs.x);
        }
        return;
    }
    r -= Dq / 2;
    if (r < Dkv / 2) {                        // k pair r -> kc row t
        const floatX *xp = k + (size_t)b * ld + 2 * r;
        floatX *dst = kc + krow + 2 * r;
        if (use_rope) {
            float2 cs = rope[(size_t)t * half + r % half];
            float x0 = __bfloat162float(xp[0]), x1 = __bfloat162float(xp[1]);
            dst[0] = __float2bfloat16(x0 * cs.x - x1 * cs.y);
            dst[1] = __float2bfloat16(x0 * cs.y + x1 * cs.x);
        } else {
            dst[0] = xp[0]; dst[1] = xp[1];
        }
        return;
    }
    r -= Dkv / 2;
    if (r < Dkv) { vc[krow + r] = v[(size_t)b * ld + r]; return; }
    r -= Dkv;
    kbc[kbrow + r] = kb[(size_t)b * ld + r];
}

// q (B, Dq) [RoPE'd in place], k, v (B, Dkv), kb (B, D), all four with row stride ld (e.g. column blocks of one
// projection's output); caches of Tc rows per sequence
static void decode_append(floatX *q, const floatX *k, const floatX *v, const floatX *kb, int ld, floatX *kc,
                          floatX *vc, floatX *kbc, const float2 *rope, int use_rope, const int *pos, int Tc, int B, int Dq,
                          int Dkv, int D, int hd, cudaStream_t stream) {
    if (hd % 2 != 0 && use_rope) fatal("decode_append: RoPE needs an even head width (got %d)", hd);
    long long n = (long long)B * (Dq / 2 + Dkv / 2 + Dkv + D);
    decode_append_kernel<<<ceil_div(n, 256), 256, 0, stream>>>(q, k, v, kb, ld, kc, vc, kbc, rope, use_rope, pos, Tc,
                                                               B, Dq, Dkv, D, hd);
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// one softmax readout over cached keys, split over blocks

__device__ __forceinline__ float decode_to_float(floatX x) { return __bfloat162float(x); }
__device__ __forceinline__ float decode_to_float(float x) { return x; }

// the (m, l) pairs follow the acc partials, at a 16-byte boundary
static inline size_t decode_ml_offset(size_t acc_floats) { return (acc_floats + 3) / 4 * 4; }

// Block (split, h, b): keys j in this split's chunk of [0, n_keys) of sequence b, key/value head h / group;
// n_keys = *pos + key_offset (1: attention, j <= t; 0: feedback, j < t).
//   q    (B, H*W) bf16, row stride ldq; query head h at column h*W
//   kc   (B, Tc, ldk) bf16, key head h/group at column (h/group)*W;  vc the same with VT (bf16 or fp32)
// writes ml[(b*H + h)*nsplit + split] = (m, l) and acc[((b*H + h)*nsplit + split)*W + c]
// shared memory: (W + DEC_TILE) floats
template <typename VT>
__global__ void decode_partial_kernel(float *acc_out, float2 *ml_out, const floatX *q, int ldq, const floatX *kc,
                                      const VT *vc, int ldk, int Tc, int H, int group, int W, const int *pos,
                                      int key_offset, int nsplit, float scale, int tile, int warp_per_key) {
    extern __shared__ float dec_smem[];
    float *qs = dec_smem;                 // (W) the query in fp32
    float *zs = dec_smem + W;             // (DEC_TILE) scaled logits of the current tile
    int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    int n_keys = *pos + key_offset;
    int chunk = (n_keys + nsplit - 1) / nsplit;
    int j0 = split * chunk, j1 = min(n_keys, j0 + chunk);
    const floatX *qrow = q + (size_t)b * ldq + (size_t)h * W;
    size_t kvcol = (size_t)(h / group) * W;
    const floatX *kbase = kc + (size_t)b * Tc * ldk + kvcol;
    const VT *vbase = vc + (size_t)b * Tc * ldk + kvcol;
    float *acc = acc_out + ((size_t)(b * H + h) * nsplit + split) * W;
    for (int c = threadIdx.x; c < W; c += blockDim.x) { qs[c] = __bfloat162float(qrow[c]); acc[c] = 0.0f; }
    __syncthreads();
    float m_run = -INFINITY, l_run = 0.0f;    // the same values in every thread (same order of operations)
    for (int jt = j0; jt < j1; jt += tile) {
        int nt = min(tile, j1 - jt);
        // logits of the tile. Narrow keys (head width): thread jj takes key jt + jj, a sequential dot over the
        // width (q from shared memory, read by all threads at once: a broadcast), many rows in flight.
        // Wide keys (the feedback's D): warp w takes keys w, w + 4, ..., its lanes split the width (coalesced
        // loads, a fixed shuffle tree), so a long dot is not one thread's chain of dependent loads.
        if (warp_per_key) {
            int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE, nwarps = blockDim.x / WARP_SIZE;
            for (int jj = warp; jj < nt; jj += nwarps) {
                const floatX *krow = kbase + (size_t)(jt + jj) * ldk;
                float dot = 0.0f;
                #pragma unroll 4
                for (int c = lane; c < W; c += WARP_SIZE) dot += qs[c] * __bfloat162float(krow[c]);
                dot = warp_reduce_sum(dot);
                if (lane == 0) zs[jj] = dot * scale;
            }
        } else {
            for (int jj = threadIdx.x; jj < nt; jj += blockDim.x) {
                const floatX *krow = kbase + (size_t)(jt + jj) * ldk;
                float dot = 0.0f;
                #pragma unroll 8
                for (int c = 0; c < W; c++) dot += qs[c] * __bfloat162float(krow[c]);
                zs[jj] = dot * scale;
            }
        }
        __syncthreads();
        float tmax = -INFINITY;
        for (int jj = 0; jj < nt; jj++) tmax = fmaxf(tmax, zs[jj]);
        float m_new = fmaxf(m_run, tmax);
        float corr = expf(m_run - m_new);     // 0 on the first tile (m_run = -inf)
        __syncthreads();                      // every thread has read the logits: they become p_j in place
        for (int jj = threadIdx.x; jj < nt; jj += blockDim.x) zs[jj] = expf(zs[jj] - m_new);
        __syncthreads();
        float lsum = 0.0f;
        for (int jj = 0; jj < nt; jj++) lsum += zs[jj];
        l_run = l_run * corr + lsum;
        // acc[c] = acc[c] corr + sum_j p_j v_j[c]: thread owns columns c = tid, tid + blockDim, ...
        for (int c = threadIdx.x; c < W; c += blockDim.x) {
            float a = acc[c] * corr;
            #pragma unroll 8
            for (int jj = 0; jj < nt; jj++) a += zs[jj] * decode_to_float(vbase[(size_t)(jt + jj) * ldk + c]);
            acc[c] = a;
        }
        m_run = m_new;
        __syncthreads();                      // zs is rewritten by the next tile
    }
    if (threadIdx.x == 0) ml_out[(size_t)(b * H + h) * nsplit + split] = make_float2(m_run, l_run);
}

// merges the nsplit partials of (h, b) in split order: out[c] = sum_i acc_i[c] e^(m_i-M) / sum_i l_i e^(m_i-M)
// (0 when there were no keys). mode 0: att (B, ldo) bf16 at column h*W. mode 1 (feedback, H = 1):
// s = f + gamma[b] * out, into s_out (B, W) fp32 and into row t of the s cache sc (B, Tc, W)
__global__ void decode_combine_kernel(floatX *att, int ldo, float *s_out, float *sc, const floatX *f,
                                      const float *gamma, const int *pos, int Tc, const float *acc_in,
                                      const float2 *ml_in, int H, int W, int nsplit, int mode) {
    int h = blockIdx.y, b = blockIdx.z, t = *pos;
    const float2 *ml = ml_in + (size_t)(b * H + h) * nsplit;
    const float *acc = acc_in + (size_t)(b * H + h) * nsplit * W;
    float M = -INFINITY;
    for (int i = 0; i < nsplit; i++) M = fmaxf(M, ml[i].x);
    float L = 0.0f;
    for (int i = 0; i < nsplit; i++) if (ml[i].y > 0.0f) L += ml[i].y * expf(ml[i].x - M);
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < W; c += gridDim.x * blockDim.x) {
        float o = 0.0f;
        for (int i = 0; i < nsplit; i++) if (ml[i].y > 0.0f) o += acc[(size_t)i * W + c] * expf(ml[i].x - M);
        o = L > 0.0f ? o / L : 0.0f;
        if (mode == 0) {
            att[(size_t)b * ldo + (size_t)h * W + c] = __float2bfloat16(o);
        } else {
            float s = __bfloat162float(f[(size_t)b * W + c]) + gamma[b] * o;
            s_out[(size_t)b * W + c] = s;
            sc[((size_t)b * Tc + t) * W + c] = s;
        }
    }
}

// number of splits over B * heads (head, sequence) pairs: enough blocks for the GPU's SMs (4 per SM), at most
// DEC_MAX_SPLIT; independent of t. Tests set decode_sms to force many splits (the emulator has 1 SM), and
// decode_tile (<= DEC_TILE) to force several tiles per split, decode_warp_width to move the width from which a warp
// (not a thread) computes one logit; 0 means: the SM count of GPU 0, DEC_TILE, DEC_WARP_WIDTH.
#define DEC_WARP_WIDTH 256
static int decode_sms = 0, decode_tile = 0, decode_warp_width = 0;
static int decode_num_splits(int B, int heads) {
    if (decode_sms == 0) {
        cudaDeviceProp prop;
        cudaCheck(cudaGetDeviceProperties(&prop, 0));
        decode_sms = prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
    }
    int n = ceil_div(4LL * decode_sms, (long long)B * heads);
    if (n > DEC_MAX_SPLIT) n = DEC_MAX_SPLIT;
    return n < 1 ? 1 : n;
}

// scratch for decode_attention / decode_feedback: partial sums of B sequences
static size_t decode_scratch_bytes(int B, int H, int hd, int D) {
    size_t w = (size_t)H * hd > (size_t)D ? (size_t)H * hd : (size_t)D;   // heads * W of either readout
    return (size_t)B * DEC_MAX_SPLIT * (w * sizeof(float) + (size_t)(H > 1 ? H : 1) * sizeof(float2)) + 256;
}

static void decode_check_ptr_(const void *p, const char *name) {
    if ((uintptr_t)p % 16) fatal("decode: %s (%p) is not 16-byte aligned", name, p);
}

template <typename VT>
static void decode_partial_launch(float *scratch, const floatX *q, int ldq, const floatX *kc, const VT *vc, int ldk,
                                  int Tc, int B, int H, int group, int W, const int *pos, int key_offset, int nsplit,
                                  float scale,
                                  cudaStream_t stream) {
    float *acc = scratch;
    float2 *ml = (float2 *)(scratch + decode_ml_offset((size_t)B * H * nsplit * W));
    size_t smem = (size_t)(W + DEC_TILE) * sizeof(float);
    if (smem > 48 * 1024) fatal("decode: width %d needs %zu bytes of shared memory (more than 48 KiB)", W, smem);
    dim3 grid(nsplit, H, B);
    decode_partial_kernel<VT><<<grid, DEC_THREADS, smem, stream>>>(acc, ml, q, ldq, kc, vc, ldk, Tc, H, group, W,
                                                                  pos, key_offset, nsplit, scale,
                                                                  decode_tile > 0 && decode_tile < DEC_TILE ? decode_tile : DEC_TILE,
                                                                  W >= (decode_warp_width > 0 ? decode_warp_width : DEC_WARP_WIDTH));
    cudaCheck(cudaGetLastError());
}

// att (B, H*hd) = causal attention of the current q (B, H*hd) [row stride ldq], RoPE'd, over rows 0..t of kc, vc
// (Hkv heads), t = *pos
static void decode_attention(floatX *att, const floatX *q, int ldq, const floatX *kc, const floatX *vc, float *scratch,
                             const int *pos, int Tc, int B, int H, int Hkv, int hd, cudaStream_t stream) {
    decode_check_ptr_(scratch, "scratch");
    int nsplit = decode_num_splits(B, H);
    decode_partial_launch<floatX>(scratch, q, ldq, kc, vc, Hkv * hd, Tc, B, H, H / Hkv, hd, pos, 1, nsplit,
                                  1.0f / sqrtf((float)hd), stream);
    const float2 *ml = (const float2 *)(scratch + decode_ml_offset((size_t)B * H * nsplit * hd));
    dim3 grid(ceil_div(hd, DEC_THREADS), H, B);
    decode_combine_kernel<<<grid, DEC_THREADS, 0, stream>>>(att, H * hd, NULL, NULL, NULL, NULL, pos, Tc, scratch, ml, H,
                                                            hd, nsplit, 0);
    cudaCheck(cudaGetLastError());
}

// s (B, D) = f + gamma * sum_{j<t} softmax_j(qb . kb_j / sqrt(D)) s_j, also into row t = *pos of sc; qb row
// stride ld_qb. At t = 0 every split is empty (m = -inf, l = 0) and s_0 = f.
static void decode_feedback(float *s, float *sc, const floatX *f, const float *gamma, const floatX *qb, int ld_qb,
                            const floatX *kbc, float *scratch, const int *pos, int Tc, int B, int D, cudaStream_t stream) {
    decode_check_ptr_(scratch, "scratch");
    int nsplit = decode_num_splits(B, 1);
    decode_partial_launch<float>(scratch, qb, ld_qb, kbc, sc, D, Tc, B, 1, 1, D, pos, 0, nsplit, 1.0f / sqrtf((float)D),
                                 stream);
    const float2 *ml = (const float2 *)(scratch + decode_ml_offset((size_t)B * nsplit * D));
    dim3 grid(ceil_div(D, DEC_THREADS), 1, B);
    decode_combine_kernel<<<grid, DEC_THREADS, 0, stream>>>(NULL, 0, s, sc, f, gamma, pos, Tc, scratch, ml, 1, D, nsplit, 1);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_DECODE_CUH
