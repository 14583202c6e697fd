/*
 AdamW in PyTorch's form (torch.optim.AdamW): decoupled weight decay, bias-corrected moments,
   p <- p (1 - lr wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
   p <- p - lr (m / bc1) / (sqrt(v / bc2) + eps),  bc_i = 1 - b_i^step   (as train_sessa.c)
 on the flat fp32 master weights, moments fp32; g = grad * grad_scale (gradient clipping).
 Every step also writes the bf16 copy of the weights that the forward and backward use.
 The trainer's kernel (adamw_update_segments) reads grad_scale from device memory, where the gradient norm
 kernels left it (llmc/global_norm.cuh): the host never waits for the norm before the update.
 Cost: reads g, m, v, p (16 bytes) and writes m, v, p, bf16 p (14 bytes) per parameter: 30 bytes, d12 (102 M) 3.1 GB
 = 0.71 ms at 4.3 TB/s, d4w256h4 (15.3 M) 0.46 GB = 107 us. Measured (H200) with one parameter per thread, 4-byte
 loads: 808 / 120 us (3.8 TB/s): 16 bytes in flight per thread. The segments kernel therefore takes 4 parameters per
 thread with 16-byte loads and stores where the shard is 16-byte aligned (64 bytes in flight per thread; the same
 per-parameter math, adamw_param, so the same bits; SESSA_ADAMW_VEC=0 keeps one per thread).
*/
#ifndef SESSA_ADAMW_CUH
#define SESSA_ADAMW_CUH

#include <math.h>
#include <stdlib.h>
#include "cuda_common.h"

// one parameter: p, m, v updated in place from the gradient g (clip scale applied by the caller). Every product that
// meets a sum is an explicit fmaf, so no multiply is left for the compiler to fuse into an add or not: each kernel
// that calls this gives the same bits (the fusions nvcc chose differed between the one- and four-per-thread kernels)
__device__ inline void adamw_param(float *p, float *m, float *v, float g, float lr, float beta1, float beta2, float bc1,
                                   float bc2, float eps, float wd) {
    float mi = fmaf(beta1, *m, (1.0f - beta1) * g);
    float vi = fmaf(beta2, *v, ((1.0f - beta2) * g) * g);
    float step = lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
    *p = fmaf(*p, fmaf(-lr, wd, 1.0f), -step);   // p (1 - lr wd) - step
    *m = mi; *v = vi;
}

__global__ void adamw_kernel(float *params, floatX *params_bf16, const float *grads, float *m, float *v, size_t n,
                             float lr, float beta1, float beta2, float bc1, float bc2, float eps, float wd,
                             float grad_scale) {
    grid_dep_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float p = params[i], mi = m[i], vi = v[i];
    adamw_param(&p, &mi, &vi, grads[i] * grad_scale, lr, beta1, beta2, bc1, bc2, eps, wd);
    m[i] = mi; v[i] = vi; params[i] = p;
    params_bf16[i] = __float2bfloat16(p);
}

// step counts from 1
static void adamw_update(float *params, floatX *params_bf16, const float *grads, float *m, float *v, size_t n,
                         float lr, float beta1, float beta2, float eps, float wd, float grad_scale, int step,
                         cudaStream_t stream) {
    float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
    launch_pdl(adamw_kernel, ceil_div((long long)n, 512), 512, 0, stream, params, params_bf16, grads, m, v, n, lr, beta1, beta2,
                                                                 bc1, bc2, eps, wd, grad_scale);
    cudaCheck(cudaGetLastError());
}

// The whole optimizer shard in one launch (instead of one per tensor): the weight decay changes per tensor,
// so the shard is cut into contiguous segments [begin[k], begin[k+1]) with decay wd[k], passed by value.
// Per element the math is adamw_kernel's, so the results are bitwise the same; elements in the zero gaps
// between tensors (zero weight, zero gradient, zero moments) stay zero.
#define ADAMW_MAX_SEGMENTS 48
typedef struct { int n; size_t begin[ADAMW_MAX_SEGMENTS + 1]; float wd[ADAMW_MAX_SEGMENTS]; } AdamWSegments;

__global__ void adamw_segments_kernel(float *params, floatX *params_bf16, const float *grads, float *m, float *v,
                                      AdamWSegments seg, float lr, float beta1, float beta2, float bc1, float bc2,
                                      float eps, const float *grad_scale) {
    grid_dep_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= seg.begin[seg.n]) return;
    int k = 0;
    while (i >= seg.begin[k + 1]) k++;
    float p = params[i], mi = m[i], vi = v[i];
    adamw_param(&p, &mi, &vi, grads[i] * *grad_scale, lr, beta1, beta2, bc1, bc2, eps, seg.wd[k]);
    m[i] = mi; v[i] = vi; params[i] = p;
    params_bf16[i] = __float2bfloat16(p);
}

// the same, 4 parameters per thread: 16-byte loads of g, m, v, p and stores of m, v, p, an 8-byte store of the bf16
// copy (all five arrays 16 / 8-byte aligned); the last group may be partial (element by element)
__global__ void adamw_segments_vec_kernel(float *params, floatX *params_bf16, const float *grads, float *m, float *v,
                                          AdamWSegments seg, float lr, float beta1, float beta2, float bc1, float bc2,
                                          float eps, const float *grad_scale) {
    grid_dep_begin();
    size_t n = seg.begin[seg.n], i0 = 4 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i0 >= n) return;
    float scale = *grad_scale;
    int k = 0;
    while (i0 >= seg.begin[k + 1]) k++;
    if (i0 + 4 <= n) {
        float4 g4 = *(const float4 *)(grads + i0), m4 = *(float4 *)(m + i0), v4 = *(float4 *)(v + i0);
        float4 p4 = *(float4 *)(params + i0);
        float *g = &g4.x, *mm = &m4.x, *vv = &v4.x, *pp = &p4.x;
        union { floatX h[4]; unsigned long long u; } p16;   // the 4 bf16 copies, stored as one 8-byte word
        #pragma unroll
        for (int j = 0; j < 4; j++) {
            while (i0 + j >= seg.begin[k + 1]) k++;
            adamw_param(&pp[j], &mm[j], &vv[j], g[j] * scale, lr, beta1, beta2, bc1, bc2, eps, seg.wd[k]);
            p16.h[j] = __float2bfloat16(pp[j]);
        }
        *(float4 *)(m + i0) = m4; *(float4 *)(v + i0) = v4; *(float4 *)(params + i0) = p4;
        *(unsigned long long *)(params_bf16 + i0) = p16.u;
        return;
    }
    for (size_t i = i0; i < n; i++) {
        while (i >= seg.begin[k + 1]) k++;
        float p = params[i], mi = m[i], vi = v[i];
        adamw_param(&p, &mi, &vi, grads[i] * scale, lr, beta1, beta2, bc1, bc2, eps, seg.wd[k]);
        m[i] = mi; v[i] = vi; params[i] = p;
        params_bf16[i] = __float2bfloat16(p);
    }
}

// 1: the vector kernel where the arrays are aligned; 0 (SESSA_ADAMW_VEC=0): one parameter per thread; -1: not read yet
static int adamw_vec = -1;
static int adamw_vec_mode(void) {
    if (adamw_vec < 0) { const char *e = getenv("SESSA_ADAMW_VEC"); adamw_vec = e == NULL || atoi(e) != 0; }
    return adamw_vec;
}

// params, params_bf16, grads, m, v all start at the shard's first element; seg.begin[0] == 0;
// grad_scale: one float in device memory
static void adamw_update_segments(float *params, floatX *params_bf16, const float *grads, float *m, float *v,
                                  const AdamWSegments *seg, float lr, float beta1, float beta2, float eps,
                                  const float *grad_scale, int step, cudaStream_t stream) {
    if (seg->n < 1 || seg->n > ADAMW_MAX_SEGMENTS || seg->begin[0] != 0)
        fatal("adamw_update_segments: %d segments (1..%d, starting at 0)", seg->n, ADAMW_MAX_SEGMENTS);
    size_t n = seg->begin[seg->n];
    if (n == 0) return;
    float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
    bool vec = adamw_vec_mode() && (uintptr_t)params % 16 == 0 && (uintptr_t)grads % 16 == 0 && (uintptr_t)m % 16 == 0 &&
               (uintptr_t)v % 16 == 0 && (uintptr_t)params_bf16 % 8 == 0;
    if (vec)
        launch_pdl(adamw_segments_vec_kernel, ceil_div((long long)n, 4 * 512), 512, 0, stream, params, params_bf16, grads,
                   m, v, *seg, lr, beta1, beta2, bc1, bc2, eps, grad_scale);
    else
        launch_pdl(adamw_segments_kernel, ceil_div((long long)n, 512), 512, 0, stream, params, params_bf16, grads, m, v,
                   *seg, lr, beta1, beta2, bc1, bc2, eps, grad_scale);
    cudaCheck(cudaGetLastError());
}

// dst (n) = bf16(src): the working copy of freshly loaded master weights
__global__ void float_to_bf16_kernel(floatX *dst, const float *src, size_t n) {
    grid_dep_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __float2bfloat16(src[i]);
}
static void float_to_bf16(floatX *dst, const float *src, size_t n, cudaStream_t stream) {
    launch_pdl(float_to_bf16_kernel, ceil_div((long long)n, 512), 512, 0, stream, dst, src, n);
    cudaCheck(cudaGetLastError());
}

// dst (n) = float(src): widening copy, exact (the f0 baseline's s = f, DESIGN.md section 1)
__global__ void bf16_to_float_kernel(float *dst, const floatX *src, size_t n) {
    grid_dep_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __bfloat162float(src[i]);
}
static void bf16_to_float(float *dst, const floatX *src, size_t n, cudaStream_t stream) {
    launch_pdl(bf16_to_float_kernel, ceil_div((long long)n, 512), 512, 0, stream, dst, src, n);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_ADAMW_CUH
