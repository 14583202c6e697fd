/*
 The layer's gate: gated = s * gt (elementwise; gt is linear, no activation on it), where s is the
 mixer output (fp32, from the feedback solve) and gt the last D columns of Linear_in's (N, 2D) output.
 Backward: ds = dgated * gt (fp32, what feedback_backward takes), dgt = dgated * s (written into the
 gate half of d(Linear_in output)). The residual add y = x + Linear_out(gated) is fused into the matmul.
 With the feedback the trainer runs neither pass: feedback_forward applies the gate per superblock (FbGate, by
 gate_forward_rows) and feedback_backward forms ds in its solve and writes dgt in its row pass (FbGateBwd), the same
 products in fp32, so the same bits (llmc/feedback.cuh); the f0 baseline runs gate_forward and gate_backward.
 Packed path (D, ld % 8 == 0, aligned rows): one thread per 8 elements, 16-byte accesses, 32-bit index math;
 the one-element kernels remain for other shapes.
*/
#ifndef SESSA_GATE_CUH
#define SESSA_GATE_CUH

#include "cuda_common.h"
#include "packed.cuh"

// gated (N, D) = s (N, D) * gt (N, D) [row stride ld], for the rows n = b T + r0 + r, r < R, of each sequence b =
// blockIdx.y (the whole tensor: one sequence of N rows, r0 = 0, R = T = N)
__global__ void gate_forward_kernel(floatX *gated, const float *s, const floatX *gt, int ld, int T, int r0, int R, int D) {
    grid_dep_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)R * D) return;
    size_t n = (size_t)blockIdx.y * T + r0 + i / D, c = i % D, e = n * D + c;
    gated[e] = __float2bfloat16(s[e] * __bfloat162float(gt[n * ld + c]));
}

// ds (N, D) = dgated * gt; dgt (N, D) [row stride ld] = dgated * s
__global__ void gate_backward_kernel(float *ds, floatX *dgt, const floatX *dgated, const float *s, const floatX *gt,
                                     int ld, int N, int D) {
    grid_dep_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * D) return;
    size_t n = i / D, c = i % D;
    float dg = __bfloat162float(dgated[i]);
    ds[i] = dg * __bfloat162float(gt[n * ld + c]);
    dgt[n * ld + c] = __float2bfloat16(dg * s[i]);
}

// packed versions: thread i handles elements 8 (i % (D/8)) .. +7 of row i / (D/8) (forward: of the rows above)
__global__ void gate_forward_packed_kernel(floatX *__restrict__ gated, const float *__restrict__ s,
                                           const floatX *__restrict__ gt, int ld, int T, int r0, int R, int D) {
    grid_dep_begin();
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x, cp = D / PACK;
    if (i >= (unsigned)R * cp) return;
    unsigned n = blockIdx.y * T + r0 + i / cp, c = (i % cp) * PACK;
    float sv[PACK], g[PACK];
    load8f(sv, s + (size_t)n * D + c);
    load8(g, gt + (size_t)n * ld + c);
    #pragma unroll
    for (int j = 0; j < PACK; j++) g[j] *= sv[j];
    store8(gated + (size_t)n * D + c, g);
}
__global__ void gate_backward_packed_kernel(float *__restrict__ ds, floatX *__restrict__ dgt,
                                            const floatX *__restrict__ dgated, const float *__restrict__ s,
                                            const floatX *__restrict__ gt, int ld, int N, int D) {
    grid_dep_begin();
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x, cp = D / PACK;
    if (i >= (unsigned)N * cp) return;
    unsigned n = i / cp, c = (i % cp) * PACK;
    float dg[PACK], sv[PACK], g[PACK], o[PACK];
    load8(dg, dgated + (size_t)n * D + c);
    load8f(sv, s + (size_t)n * D + c);
    load8(g, gt + (size_t)n * ld + c);
    #pragma unroll
    for (int j = 0; j < PACK; j++) { o[j] = dg[j] * g[j]; g[j] = dg[j] * sv[j]; }
    store8f(ds + (size_t)n * D + c, o);
    store8(dgt + (size_t)n * ld + c, g);
}

// the rows [r0, r1) of each of B sequences of T rows (n = b T + r, row-major (B*T, D) tensors; gt rows ld apart)
static void gate_forward_rows(floatX *gated, const float *s, const floatX *gt, int ld, int B, int T, int r0, int r1, int D,
                              cudaStream_t stream) {
    int R = r1 - r0;
    if (packable_grid((long long)B * T, D) && packable(gated, D) && packable(s, D) && packable(gt, ld))
        launch_pdl(gate_forward_packed_kernel, dim3(ceil_div((long long)R * D / PACK, 256), B), 256, 0, stream, gated, s, gt, ld,
                   T, r0, R, D);
    else
        launch_pdl(gate_forward_kernel, dim3(ceil_div((long long)R * D, 256), B), 256, 0, stream, gated, s, gt, ld, T, r0, R, D);
    cudaCheck(cudaGetLastError());
}
// gated (N, D) = s * gt, all N rows
static void gate_forward(floatX *gated, const float *s, const floatX *gt, int ld, int N, int D, cudaStream_t stream) {
    gate_forward_rows(gated, s, gt, ld, 1, N, 0, N, D, stream);
}
static void gate_backward(float *ds, floatX *dgt, const floatX *dgated, const float *s, const floatX *gt, int ld,
                          int N, int D, cudaStream_t stream) {
    if (packable_grid(N, D) && packable(ds, D) && packable(dgt, ld) && packable(dgated, D) && packable(s, D) && packable(gt, ld))
        launch_pdl(gate_backward_packed_kernel, ceil_div((long long)N * D / PACK, 256), 256, 0, stream, ds, dgt, dgated, s, gt, ld, N, D);
    else
        launch_pdl(gate_backward_kernel, ceil_div((long long)N * D, 256), 256, 0, stream, ds, dgt, dgated, s, gt, ld, N, D);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_GATE_CUH
