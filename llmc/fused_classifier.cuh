/*
 Fused classifier: softmax, cross-entropy and its gradient in one pass over each row of logits.
 logits (N, V) bf16 with row stride ld (= Vp): only the first V columns exist (the tied head never makes
 logits for padded vocabulary rows). Per row, one block:
   m = max x, S = sum exp(x - m) (online, fp32), loss = log S + m - x[target]
   if dloss != 0: x[i] <- (exp(x[i] - m) / S - [i == target]) * dloss   (in place, bf16)
 so the logits are never kept in fp32 and the gradient overwrites them (llm.c's approach).
*/
#ifndef SESSA_FUSED_CLASSIFIER_CUH
#define SESSA_FUSED_CLASSIFIER_CUH

#include <float.h>
#include "cuda_common.h"

#define CLASSIFIER_THREADS 1024

// merge two (max, sum of exp(x - max)) pairs
__device__ inline float2 softmax_merge(float2 a, float2 b) {
    float m = fmaxf(a.x, b.x);
    return make_float2(m, a.y * expf(a.x - m) + b.y * expf(b.x - m));
}

__global__ void fused_classifier_kernel(floatX *logits, float *losses, const int *targets, int V, int ld, float dloss) {
    __shared__ float2 shared[CLASSIFIER_THREADS / WARP_SIZE];
    int n = blockIdx.x, lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    floatX *x = logits + (size_t)n * ld;
    float2 ms = make_float2(-FLT_MAX, 0.0f);   // -FLT_MAX, not -inf: merging two empty pairs stays finite
    for (int i = threadIdx.x; i < V; i += blockDim.x) ms = softmax_merge(ms, make_float2(__bfloat162float(x[i]), 1.0f));
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
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float p = expf(__bfloat162float(x[i]) - ms.x) * inv_sum;
        x[i] = __float2bfloat16((p - (i == target ? 1.0f : 0.0f)) * dloss);
    }
}

// losses (N) = cross-entropy per row; with dloss != 0 the logits are replaced by dloss * dL/dlogits
static void fused_classifier(floatX *logits, float *losses, const int *targets, int N, int V, int ld, float dloss,
                             cudaStream_t stream) {
    fused_classifier_kernel<<<N, CLASSIFIER_THREADS, 0, stream>>>(logits, losses, targets, V, ld, dloss);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_FUSED_CLASSIFIER_CUH
