/*
 AdamW in PyTorch's form (torch.optim.AdamW): decoupled weight decay, bias-corrected moments,
   p <- p (1 - lr wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
   p <- p - lr (m / bc1) / (sqrt(v / bc2) + eps),  bc_i = 1 - b_i^step   (as train_sessa.c)
 on the flat fp32 master weights, moments fp32; g = grad * grad_scale (gradient clipping).
 Every step also writes the bf16 copy of the weights that the forward and backward use.
 The trainer's kernel (adamw_update_segments) reads grad_scale from device memory, where the gradient norm
 kernels left it (llmc/global_norm.cuh): the host never waits for the norm before the update.
*/
#ifndef SESSA_ADAMW_CUH
#define SESSA_ADAMW_CUH

#include <math.h>
#include "cuda_common.h"

__global__ void adamw_kernel(float *params, floatX *params_bf16, const float *grads, float *m, float *v, size_t n,
                             float lr, float beta1, float beta2, float bc1, float bc2, float eps, float wd,
                             float grad_scale) {
    grid_dep_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grads[i] * grad_scale;
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    float p = params[i] * (1.0f - lr * wd);
    p -= lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
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
    float wd = seg.wd[k];
    float g = grads[i] * *grad_scale;
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    float p = params[i] * (1.0f - lr * wd);
    p -= lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
    m[i] = mi; v[i] = vi; params[i] = p;
    params_bf16[i] = __float2bfloat16(p);
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
    launch_pdl(adamw_segments_kernel, ceil_div((long long)n, 512), 512, 0, stream, params, params_bf16, grads, m, v, *seg, lr,
                                                                          beta1, beta2, bc1, bc2, eps, grad_scale);
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
