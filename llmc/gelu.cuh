/*
 Exact (erf) GELU, as PyTorch's default nn.GELU(): gelu(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)),
 gelu'(x) = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi).
 The input is a column slice of a wider matrix (the first D columns of Linear_in's (N, 2D) output),
 hence the row strides.
 Packed path (C, strides % 8 == 0, aligned rows): one thread per 8 elements, 16-byte accesses, 32-bit index
 math; the one-element kernels (64-bit index division) remain for other shapes.
*/
#ifndef SESSA_GELU_CUH
#define SESSA_GELU_CUH

#include "cuda_common.h"
#include "packed.cuh"

#define GELU_INV_SQRT2 0.70710678118654752f
#define GELU_INV_SQRT_2PI 0.39894228040143268f

// gelu(x) and gelu'(x) in fp32: every kernel that applies them (these, and the fused ones of gamma.cuh) calls these,
// so they all give the same bits
__device__ __forceinline__ float gelu_value(float x) { return 0.5f * x * (1.0f + erff(x * GELU_INV_SQRT2)); }
__device__ __forceinline__ float gelu_grad(float x) {
    return 0.5f * (1.0f + erff(x * GELU_INV_SQRT2)) + x * GELU_INV_SQRT_2PI * expf(-0.5f * x * x);
}

// out (N, C) = gelu(inp), inp (N, C) with row stride ld_in
__global__ void gelu_forward_kernel(floatX *out, const floatX *inp, int ld_in, int N, int C) {
    grid_dep_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    size_t n = i / C, c = i % C;
    out[i] = __float2bfloat16(gelu_value(__bfloat162float(inp[n * ld_in + c])));
}

// dinp (N, C) [row stride ld_dinp] = dout (N, C) * gelu'(inp) [row stride ld_in]
__global__ void gelu_backward_kernel(floatX *dinp, int ld_dinp, const floatX *dout, const floatX *inp, int ld_in,
                                     int N, int C) {
    grid_dep_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    size_t n = i / C, c = i % C;
    dinp[n * ld_dinp + c] = __float2bfloat16(__bfloat162float(dout[i]) * gelu_grad(__bfloat162float(inp[n * ld_in + c])));
}

// packed versions: thread i handles elements 8 (i % (C/8)) .. +7 of row i / (C/8)
__global__ void gelu_forward_packed_kernel(floatX *__restrict__ out, const floatX *__restrict__ inp, int ld_in, int N, int C) {
    grid_dep_begin();
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x, cp = C / PACK;
    if (i >= (unsigned)N * cp) return;
    unsigned n = i / cp, c = (i % cp) * PACK;
    float v[PACK];
    load8(v, inp + (size_t)n * ld_in + c);
    #pragma unroll
    for (int j = 0; j < PACK; j++) v[j] = gelu_value(v[j]);
    store8(out + (size_t)n * C + c, v);
}
__global__ void gelu_backward_packed_kernel(floatX *__restrict__ dinp, int ld_dinp, const floatX *__restrict__ dout,
                                            const floatX *__restrict__ inp, int ld_in, int N, int C) {
    grid_dep_begin();
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x, cp = C / PACK;
    if (i >= (unsigned)N * cp) return;
    unsigned n = i / cp, c = (i % cp) * PACK;
    float x[PACK], d[PACK];
    load8(x, inp + (size_t)n * ld_in + c);
    load8(d, dout + (size_t)n * C + c);
    #pragma unroll
    for (int j = 0; j < PACK; j++) d[j] *= gelu_grad(x[j]);
    store8(dinp + (size_t)n * ld_dinp + c, d);
}

static void gelu_forward(floatX *out, const floatX *inp, int ld_in, int N, int C, cudaStream_t stream) {
    if (packable_grid(N, C) && packable(out, C) && packable(inp, ld_in))
        launch_pdl(gelu_forward_packed_kernel, ceil_div((long long)N * C / PACK, 256), 256, 0, stream, out, inp, ld_in, N, C);
    else
        launch_pdl(gelu_forward_kernel, ceil_div((long long)N * C, 256), 256, 0, stream, out, inp, ld_in, N, C);
    cudaCheck(cudaGetLastError());
}
static void gelu_backward(floatX *dinp, int ld_dinp, const floatX *dout, const floatX *inp, int ld_in, int N, int C,
                          cudaStream_t stream) {
    if (packable_grid(N, C) && packable(dinp, ld_dinp) && packable(dout, C) && packable(inp, ld_in))
        launch_pdl(gelu_backward_packed_kernel, ceil_div((long long)N * C / PACK, 256), 256, 0, stream, dinp, ld_dinp, dout, inp, ld_in, N, C);
    else
        launch_pdl(gelu_backward_kernel, ceil_div((long long)N * C, 256), 256, 0, stream, dinp, ld_dinp, dout, inp, ld_in, N, C);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_GELU_CUH
