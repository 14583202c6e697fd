/*
 Fused classifier: softmax, cross-entropy and its gradient in one pass over each row of logits.
 logits (N, Vp) bf16, row stride Vp (a multiple of 128): the tied head computes all Vp columns (GEMM shapes
 stay multiples of 8, so cuBLASLt can take its sm90 kernels), only the first V are real classes. Per row,
 one block, 8 bf16 per 16-byte load (packed.cuh):
   m = max_{i<V} x_i, S = sum_{i<V} exp(x_i - m) (online per pack of 8, fp32), loss = log S + m - x[target]
   if dloss != 0: x_i <- (exp(x_i - m) / S - [i == target]) * dloss for i < V, x_i <- 0 for V <= i < Vp
 in place (bf16), so the logits are never kept in fp32 and the gradient overwrites them (llm.c's approach);
 the zeroed padded columns make the head's backward GEMMs (over Vp) add nothing for padded vocabulary rows.
 Memory: one read of the row for the loss, one read + one write for the gradient: 3 N Vp bf16.
 Deterministic: each thread's packs in a fixed order, then a fixed shuffle + shared-memory tree.
*/
#ifndef SESSA_FUSED_CLASSIFIER_CUH
#define SESSA_FUSED_CLASSIFIER_CUH

#include <float.h>
#include "cuda_common.h"
#include "packed.cuh"

#define CLASSIFIER_THREADS 1024

// merge two (max, sum of exp(x - max)) pairs
__device__ inline float2 softmax_merge(float2 a, float2 b) {
    float m = fmaxf(a.x, b.x);
    return make_float2(m, a.y * expf(a.x - m) + b.y * expf(b.x - m));
}

__global__ void __launch_bounds__(CLASSIFIER_THREADS)
fused_classifier_kernel(floatX *logits, float *losses, const int *targets, int V, int ld, float dloss) {
    __shared__ float2 shared[CLASSIFIER_THREADS / WARP_SIZE];
    int n = blockIdx.x, lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    floatX *x = logits + (size_t)n * ld;
    // (max, sum) over this thread's packs; -FLT_MAX, not -inf: merging two empty pairs stays finite
    float2 ms = make_float2(-FLT_MAX, 0.0f);
    int npacks = (V + PACK - 1) / PACK;   // packs holding real columns (the last may be partly padding)
    for (int p = threadIdx.x; p < npacks; p += blockDim.x) {
        float v[PACK];
        load8(v, x + p * PACK);
        float pm = -FLT_MAX;
        #pragma unroll
        for (int i = 0; i < PACK; i++) if (p * PACK + i < V) pm = fmaxf(pm, v[i]);
        float m = fmaxf(ms.x, pm), s = ms.y * expf(ms.x - m);
        #pragma unroll
        for (int i = 0; i < PACK; i++) if (p * PACK + i < V) s += expf(v[i] - m);
        ms = make_float2(m, s);
    }
    for (int o = 16; o > 0; o >>= 1)
        ms = softmax_merge(ms, make_float2(__shfl_xor_sync(0xffffffffu, ms.x, o), __shfl_xor_sync(0xffffffffu, ms.y, o)));
    if (lane == 0) shared[warp] = ms;
    __syncthreads();
    ms = shared[0];
    for (int w = 1; w < (int)blockDim.x / WARP_SIZE; w++) ms = softmax_merge(ms, shared[w]);
    int target = targets[n];
    float xt = __bfloat162float(x[target]);
    __syncthreads(); // everyone has read x[target] before it is overwritten
    if (threadIdx.x == 0) losses[n] = logf(ms.y) + ms.x - xt;
    if (dloss == 0.0f) return;
    float inv_sum = 1.0f / ms.y;
    for (int p = threadIdx.x; p < ld / PACK; p += blockDim.x) {
        float v[PACK];
        load8(v, x + p * PACK);
        #pragma unroll
        for (int i = 0; i < PACK; i++) {
            int c = p * PACK + i;
            v[i] = c < V ? (expf(v[i] - ms.x) * inv_sum - (c == target ? 1.0f : 0.0f)) * dloss : 0.0f;
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
    fused_classifier_kernel<<<N, CLASSIFIER_THREADS, 0, stream>>>(logits, losses, targets, V, ld, dloss);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_FUSED_CLASSIFIER_CUH
