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
 Memory: one read of the row for the loss, one read + one write for the gradient: 3 N Vp bf16 (the second read
 mostly from L2: the ~2 x 132 rows in flight are 26 MB of a 50 MB L2), so DRAM moves ~2 N Vp bf16: 1.65 GB for
 d12 B=8 T=1024 (N = 8192, Vp = 50304) = 0.38 ms at 4.3 TB/s. Exponentials: 8192 x 50304 x (9/8 + 1) = 0.88 G
 MUFU.EX2 = 0.24 ms at 132 SMs x 16/clk x 1.755 GHz; the two overlap across blocks. Measured 0.92 ms (H200,
 before the block merge by a warp tree and exp2f); predicted 0.5-0.6 ms, measured 0.58 ms (dev/cuda bench v3).
 Tried (H200, dev/cuda bench, B=8 T=1024): the row held in registers (7 packs per thread, 63 registers, one
 block of 1024 threads per SM) so that the gradient pass re-reads nothing: 0.715 ms against this kernel's 0.587
 (one block per SM hides less latency than two; the second read comes from L2 anyway). Not kept.
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

__global__ void __launch_bounds__(CLASSIFIER_THREADS)
fused_classifier_kernel(floatX *logits, float *losses, const int *targets, int V, int ld, float dloss) {
    grid_dep_begin();
    __shared__ float2 shared[CLASSIFIER_THREADS / WARP_SIZE];
    int n = blockIdx.x, lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    int nwarps = blockDim.x / WARP_SIZE;
    floatX *x = logits + (size_t)n * ld;
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
    // block: warp trees, then warp 0 merges the warps' pairs by the same tree (was: every thread merged all
    // 32 pairs in a row, 62 exponentials per thread, as many as the row's own). Fixed order: deterministic.
    ms = warp_softmax_merge(ms);
    if (lane == 0) shared[warp] = ms;
    __syncthreads();
    if (warp == 0) {
        ms = warp_softmax_merge(lane < nwarps ? shared[lane] : make_float2(-FLT_MAX, 0.0f));
        if (lane == 0) shared[0] = ms;
    }
    int target = targets[n];
    float xt = __bfloat162float(x[target]);
    __syncthreads(); // shared[0] is final; everyone has read x[target] before it is overwritten
    ms = shared[0];
    if (threadIdx.x == 0) losses[n] = (log2f(ms.y) + ms.x) / LOG2E_F - xt;
    if (dloss == 0.0f) return;
    float scale = dloss / ms.y;
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

// losses (N) = cross-entropy per row; with dloss != 0 the logits are replaced by dloss * dL/dlogits
// (padded columns V..ld-1 set to 0). ld must be a multiple of 8 and logits 16-byte aligned.
static void fused_classifier(floatX *logits, float *losses, const int *targets, int N, int V, int ld, float dloss,
                             cudaStream_t stream) {
    if (ld < V || !packable(logits, ld))
        fatal("fused_classifier: row stride %d must be >= V = %d and a multiple of %d, logits 16-byte aligned (%p)",
              ld, V, PACK, (void *)logits);
    launch_pdl(fused_classifier_kernel, N, CLASSIFIER_THREADS, 0, stream, logits, losses, targets, V, ld, dloss);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_FUSED_CLASSIFIER_CUH
