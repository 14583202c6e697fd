/*
 Exact (erf) GELU, as PyTorch's default nn.GELU(): gelu(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)),
 gelu'(x) = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi).
 The input is a column slice of a wider matrix (the first D columns of Linear_in's (N, 2D) output),
 hence the row strides.
*/
#ifndef SESSA_GELU_CUH
#define SESSA_GELU_CUH

#include "cuda_common.h"

#define GELU_INV_SQRT2 0.70710678118654752f
#define GELU_INV_SQRT_2PI 0.39894228040143268f

// out (N, C) = gelu(inp), inp (N, C) with row stride ld_in
__global__ void gelu_forward_kernel(floatX *out, const floatX *inp, int ld_in, int N, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    size_t n = i / C, c = i % C;
    float x = __bfloat162float(inp[n * ld_in + c]);
    out[i] = __float2bfloat16(0.5f * x * (1.0f + erff(x * GELU_INV_SQRT2)));
}

// dinp (N, C) [row stride ld_dinp] = dout (N, C) * gelu'(inp) [row stride ld_in]
__global__ void gelu_backward_kernel(floatX *dinp, int ld_dinp, const floatX *dout, const floatX *inp, int ld_in,
                                     int N, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    size_t n = i / C, c = i % C;
    float x = __bfloat162float(inp[n * ld_in + c]);
    float grad = 0.5f * (1.0f + erff(x * GELU_INV_SQRT2)) + x * GELU_INV_SQRT_2PI * expf(-0.5f * x * x);
    dinp[n * ld_dinp + c] = __float2bfloat16(__bfloat162float(dout[i]) * grad);
}

static void gelu_forward(floatX *out, const floatX *inp, int ld_in, int N, int C, cudaStream_t stream) {
    gelu_forward_kernel<<<ceil_div((long long)N * C, 256), 256, 0, stream>>>(out, inp, ld_in, N, C);
    cudaCheck(cudaGetLastError());
}
static void gelu_backward(floatX *dinp, int ld_dinp, const floatX *dout, const floatX *inp, int ld_in, int N, int C,
                          cudaStream_t stream) {
    gelu_backward_kernel<<<ceil_div((long long)N * C, 256), 256, 0, stream>>>(dinp, ld_dinp, dout, inp, ld_in, N, C);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_GELU_CUH
