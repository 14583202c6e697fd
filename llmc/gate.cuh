/*
 The layer's gate: gated = s * gt (elementwise; gt is linear, no activation on it), where s is the
 mixer output (fp32, from the feedback solve) and gt the last D columns of Linear_in's (N, 2D) output.
 Backward: ds = dgated * gt (fp32, what feedback_backward takes), dgt = dgated * s (written into the
 gate half of d(Linear_in output)). The residual add y = x + Linear_out(gated) is fused into the matmul.
*/
#ifndef SESSA_GATE_CUH
#define SESSA_GATE_CUH

#include "cuda_common.h"

// gated (N, D) = s (N, D) * gt (N, D) [row stride ld]
__global__ void gate_forward_kernel(floatX *gated, const float *s, const floatX *gt, int ld, int N, int D) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * D) return;
    size_t n = i / D, c = i % D;
    gated[i] = __float2bfloat16(s[i] * __bfloat162float(gt[n * ld + c]));
}

// ds (N, D) = dgated * gt; dgt (N, D) [row stride ld] = dgated * s
__global__ void gate_backward_kernel(float *ds, floatX *dgt, const floatX *dgated, const float *s, const floatX *gt,
                                     int ld, int N, int D) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * D) return;
    size_t n = i / D, c = i % D;
    float dg = __bfloat162float(dgated[i]);
    ds[i] = dg * __bfloat162float(gt[n * ld + c]);
    dgt[n * ld + c] = __float2bfloat16(dg * s[i]);
}

static void gate_forward(floatX *gated, const float *s, const floatX *gt, int ld, int N, int D, cudaStream_t stream) {
    gate_forward_kernel<<<ceil_div((long long)N * D, 256), 256, 0, stream>>>(gated, s, gt, ld, N, D);
    cudaCheck(cudaGetLastError());
}
static void gate_backward(float *ds, floatX *dgt, const floatX *dgated, const float *s, const floatX *gt, int ld,
                          int N, int D, cudaStream_t stream) {
    gate_backward_kernel<<<ceil_div((long long)N * D, 256), 256, 0, stream>>>(ds, dgt, dgated, s, gt, ld, N, D);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_GATE_CUH
