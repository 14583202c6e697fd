/*
 Fused classifier: softmax, cross-entropy and its gradient in one pass over each row of logits.
 logits (N, Vp) bf16, row stride Vp (a multiple of 128): the tied head computes all Vp columns (GEMM shapes
 stay multiples of 8, so cuBLASLt can take its sm90 kernels), only the first V are real classes. Per row,
 one block, 8 bf16 per 16-byte load (packed.cuh):
   m = max_{i<V} x_i, S = sum_{i<V} exp(x_i - m) (online per pack of 8, fp32), loss = log S + m - x[target]
   if dloss != 0: x_i <- (exp(x_i - m) / S - [i == target]) * dloss for i < V, x_i <- 0 for V <= i < Vp
   (in base 2 on the GPU: exp2f of x log2(e), see below)
 in place (bf16), so the logits are never kept in fp32 and the gradient overwrites them (llm.c's approach);
 the zeroed padded columns make the head's backward GEMMs (over Vp) add nothing for padded vocabulary rows.
 Memory (streaming kernel): one read of the row for the loss, one read + one write for the gradient: 3 N Vp bf16
 (the second read mostly from L2: the ~2 x 132 rows in flight are 26 MB of a 50 MB L2), so DRAM moves ~2 N Vp
 bf16: 1.65 GB for
 d12 B=8 T=1024 (N = 8192, Vp = 50304) = 0.38 ms at 4.3 TB/s. Exponentials: 8192 x 50304 x (9/8 + 1) = 0.88 G
 MUFU.EX2 = 0.24 ms at 132 SMs x 16/clk x 1.755 GHz; the two overlap across blocks. Measured 0.92 ms (H200,
 before the block merge by a warp tree and exp2f); predicted 0.5-0.6 ms, measured 0.58 ms (dev/cuda bench v3).
 Rows of up to 8 x 1024 packs (Vp <= 65536, GPT-2's 50304 included) are held in registers instead
 (fused_classifier_regs_kernel): one read and one write per element, all of a thread's loads in flight at once.
 Deterministic: each thread's packs in a fixed order, then a fixed shuffle + shared-memory tree.
*/
#ifndef SESSA_FUSED_CLASSIFIER_CUH
#define SESSA_FUSED_CLASSIFIER_CUH

#include <float.h>
#include "cuda_common.h"
#include "packed.cuh"

#define CLASSIFIER_THREADS 1024

// Exponentials as exp2f of logits pre-scaled by log2(e) (one MUFU.EX2 each; expf adds a range reduction):
// z = x log2(e), m = max z, S = sum 2^(z - m), loss = (log2 S + m) ln 2 - x[target], p_i = 2^(z_i - m) / S.
#define LOG2E_F 1.4426950408889634f

// merge two (max, sum of 2^(z - max)) pairs
__device__ inline float2 softmax_merge(float2 a, float2 b) {
    float m = fmaxf(a.x, b.x);
    return make_float2(m, a.y * exp2f(a.x - m) + b.y * exp2f(b.x - m));
}

// (max, sum) over the warp by a fixed shuffle tree: every lane gets the result
__device__ inline float2 warp_softmax_merge(float2 ms) {
    for (int o = 16; o > 0; o >>= 1)
        ms = softmax_merge(ms, make_float2(__shfl_xor_sync(0xffffffffu, ms.x, o), __shfl_xor_sync(0xffffffffu, ms.y, o)));
    return ms;
}

// The row's (max, sum) from every thread's pair ms: warp trees, then warp 0 merges the warps' pairs by the same
// tree (was: every thread merged all 32 pairs in a row, 62 exponentials per thread, as many as the row's own).
// Fixed order: deterministic. Thread 0 writes the row's loss; every thread gets the row's pair, after every thread
// has read x[target] (the gradient may overwrite it next).
__device__ inline float2 classifier_row_loss(float2 ms, const floatX *x, float *losses, const int *targets) {
    __shared__ float2 shared[CLASSIFIER_THREADS / WARP_SIZE];
    int n = blockIdx.x, lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE, nwarps = blockDim.x / WARP_SIZE;
    ms = warp_softmax_merge(ms);
    if (lane == 0) shared[warp] = ms;
    __syncthreads();
    if (warp == 0) {
        ms = warp_softmax_merge(lane < nwarps ? shared[lane] : make_float2(-FLT_MAX, 0.0f));
        if (lane == 0) shared[0] = ms;
    }
    float xt = __bfloat162float(x[targets[n]]);
    __syncthreads(); // shared[0] is final; everyone has read x[target] before it is overwritten
    ms = shared[0];
    if (threadIdx.x == 0) losses[n] = (log2f(ms.y) + ms.x) / LOG2E_F - xt;
    return ms;
}

__global__ void __launch_bounds__(CLASSIFIER_THREADS)
fused_classifier_kernel(floatX *logits, float *losses, const int *targets, int V, int ld, float dloss) {
    grid_dep_begin();
    floatX *x = logits + (size_t)blockIdx.x * ld;
    // (max, sum) over this thread's packs; -FLT_MAX, not -inf: merging two empty pairs stays finite.
    // Unrolled by 2: two 16-byte loads in flight per thread (the loop carries only ms)
    float2 ms = make_float2(-FLT_MAX, 0.0f);
    int npacks = (V + PACK - 1) / PACK;   // packs holding real columns (the last may be partly padding)
    #pragma unroll 2
    for (int p = threadIdx.x; p < npacks; p += blockDim.x) {
        float v[PACK];
        load8(v, x + p * PACK);
        float pm = -FLT_MAX;
        #pragma unroll
        for (int i = 0; i < PACK; i++) {
            v[i] *= LOG2E_F;
            if (p * PACK + i < V) pm = fmaxf(pm, v[i]);
        }
        float m = fmaxf(ms.x, pm), s = ms.y * exp2f(ms.x - m);
        #pragma unroll
        for (int i = 0; i < PACK; i++) if (p * PACK + i < V) s += exp2f(v[i] - m);
        ms = make_float2(m, s);
    }
    ms = classifier_row_loss(ms, x, losses, targets);
    if (dloss == 0.0f) return;
    float scale = dloss / ms.y;
    int target = targets[blockIdx.x];
    #pragma unroll 2
    for (int p = threadIdx.x; p < ld / PACK; p += blockDim.x) {
        float v[PACK];
        load8(v, x + p * PACK);
        #pragma unroll
        for (int i = 0; i < PACK; i++) {
            int c = p * PACK + i;
            v[i] = c < V ? exp2f(v[i] * LOG2E_F - ms.x) * scale - (c == target ? dloss : 0.0f) : 0.0f;
        }
        store8(x + p * PACK, v);
    }
}

// element k (0..7) of 8 bf16 packed in a uint4, as fp32 (a bf16 is the top half of an fp32)
__device__ __forceinline__ float bf16_bits_to_float(uint4 r, int k) {
    unsigned int w = k < 2 ? r.x : k < 4 ? r.y : k < 6 ? r.z : r.w;
    return __uint_as_float(k % 2 == 0 ? w << 16 : w & 0xffff0000u);
}

// The same with the row held in registers: a thread loads all of its packs (p = threadIdx.x + i blockDim.x,
// i < P) at once, so the gradient pass needs no second read of the row and every load is in flight together.
// Its (max, sum): the max over its packs first, then one sum of 2^(z - max) (no running rescale). DRAM then moves
// 2 N Vp bf16 once each (the floor above: 0.38 ms at d12 B=8 T=1024), and the L2 re-read of the streaming kernel
// is gone. P = 7 packs (28 registers of bf16) per thread for GPT-2's Vp = 50304 at 1024 threads.
template <int P>
__global__ void __launch_bounds__(CLASSIFIER_THREADS)
fused_classifier_regs_kernel(floatX *logits, float *losses, const int *targets, int V, int ld, float dloss) {
    grid_dep_begin();
    floatX *x = logits + (size_t)blockIdx.x * ld;
    int npacks = (V + PACK - 1) / PACK, nall = ld / PACK;
    uint4 raw[P];                               // 8 bf16 each, kept packed: 4 registers a pack
    #pragma unroll
    for (int i = 0; i < P; i++) {
        int p = threadIdx.x + i * blockDim.x;
        raw[i] = p < npacks ? *reinterpret_cast<const uint4 *>(x + p * PACK) : make_uint4(0, 0, 0, 0);
    }
    float m = -FLT_MAX, s = 0.0f;
    #pragma unroll
    for (int i = 0; i < P; i++) {
        int p = threadIdx.x + i * blockDim.x;
        #pragma unroll
        for (int k = 0; k < PACK; k++)
            if (p < npacks && p * PACK + k < V) m = fmaxf(m, bf16_bits_to_float(raw[i], k) * LOG2E_F);
    }
    #pragma unroll
    for (int i = 0; i < P; i++) {
        int p = threadIdx.x + i * blockDim.x;
        #pragma unroll
        for (int k = 0; k < PACK; k++)
            if (p < npacks && p * PACK + k < V) s += exp2f(bf16_bits_to_float(raw[i], k) * LOG2E_F - m);
    }
    float2 ms = classifier_row_loss(make_float2(m, s), x, losses, targets);
    if (dloss == 0.0f) return;
    float scale = dloss / ms.y;
    int target = targets[blockIdx.x];
    #pragma unroll
    for (int i = 0; i < P; i++) {
        int p = threadIdx.x + i * blockDim.x;
        if (p >= nall) break;
        float v[PACK];
        #pragma unroll
        for (int k = 0; k < PACK; k++) {
            int c = p * PACK + k;
            v[k] = c < V ? exp2f(bf16_bits_to_float(raw[i], k) * LOG2E_F - ms.x) * scale - (c == target ? dloss : 0.0f)
                         : 0.0f;
        }
        store8(x + p * PACK, v);
    }
}

// losses (N) = cross-entropy per row; with dloss != 0 the logits are replaced by dloss * dL/dlogits
// (padded columns V..ld-1 set to 0). ld must be a multiple of 8 and logits 16-byte aligned.
static void fused_classifier(floatX *logits, float *losses, const int *targets, int N, int V, int ld, float dloss,
                             cudaStream_t stream) {
    if (ld < V || !packable(logits, ld))
        fatal("fused_classifier: row stride %d must be >= V = %d and a multiple of %d, logits 16-byte aligned (%p)",
              ld, V, PACK, (void *)logits);
    // the row in registers where it fits (up to 8 packs per thread: Vp <= 65536), else streamed twice
    typedef void (*Kernel)(floatX *, float *, const int *, int, int, float);
    static const Kernel regs[] = {fused_classifier_kernel, fused_classifier_regs_kernel<1>,
        fused_classifier_regs_kernel<2>, fused_classifier_regs_kernel<3>, fused_classifier_regs_kernel<4>,
        fused_classifier_regs_kernel<5>, fused_classifier_regs_kernel<6>, fused_classifier_regs_kernel<7>,
        fused_classifier_regs_kernel<8>};
    int P = ceil_div(ld / PACK, CLASSIFIER_THREADS);
    Kernel kernel = P < (int)(sizeof regs / sizeof regs[0]) ? regs[P] : regs[0];
    launch_pdl(kernel, N, CLASSIFIER_THREADS, 0, stream, logits, losses, targets, V, ld, dloss);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_FUSED_CLASSIFIER_CUH
