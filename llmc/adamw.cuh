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

// The per-step scalars of an update (the learning rate and the bias corrections bc_i = 1 - b_i^step) live in device
// memory, written by adamw_step_set on the update's stream: a CUDA graph that replays the update (the trainer's
// update overlapped with the next forward, train_sessa.cu "The optimizer beside the next forward") then reads each
// step's values. bc1, bc2 are computed on the host (powf) in both ways, so the bits do not depend on it.
typedef struct { float lr, bc1, bc2; } AdamWStep;

__global__ void adamw_step_set_kernel(AdamWStep *d, float lr, float bc1, float bc2) {
    grid_dep_begin();
    if (threadIdx.x == 0) { d->lr = lr; d->bc1 = bc1; d->bc2 = bc2; }
}
// step counts from 1
static void adamw_step_set(AdamWStep *d, float lr, float beta1, float beta2, int step, cudaStream_t stream) {
    float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
    launch_pdl(adamw_step_set_kernel, 1, 32, 0, stream, d, lr, bc1, bc2);
    cudaCheck(cudaGetLastError());
}

// adamw_param with the step's scalars and the clip scale read from device memory: one parameter's new value (p, m,
// v in place); the encoder's forward of an update not yet applied (llmc/encoder.cuh) computes the same bits
__device__ __forceinline__ void adamw_param_at(float *p, float *m, float *v, float g, const AdamWStep &st, float scale,
                                               float beta1, float beta2, float eps, float wd) {
    adamw_param(p, m, v, g * scale, st.lr, beta1, beta2, st.bc1, st.bc2, eps, wd);
}

// The parameters of one launch (instead of one launch per tensor): the weight decay changes per tensor, so they come
// as segments of equal decay, passed by value: segment k is the len[k] elements from element off[k] of the arrays,
// handled by the threads' elements [begin[k], begin[k+1]) (begin[k+1] - begin[k] >= len[k]: the elements past len[k]
// are padding, skipped, so that the next segment's groups of 4 may start on a multiple of 4). The whole shard is
// one run of contiguous segments (off[k] = begin[k], no padding); one layer's tensors are scattered (the GPU layout
// keeps each tensor's layers together) and padded. Elements of the zero gaps between tensors (zero weight, gradient
// and moments) stay zero when updated, so leaving them out changes nothing.
#define ADAMW_MAX_SEGMENTS 48
typedef struct { int n; size_t begin[ADAMW_MAX_SEGMENTS + 1], off[ADAMW_MAX_SEGMENTS], len[ADAMW_MAX_SEGMENTS];
                 float wd[ADAMW_MAX_SEGMENTS]; } AdamWSegments;

static void adamw_segments_init(AdamWSegments *seg) { seg->n = 0; seg->begin[0] = 0; }
// append the len elements at off with decay wd (a continuation of the last segment with the same decay extends it);
// pad: start a new segment's threads on a multiple of 4 (for scattered segments, where off is aligned but the
// previous length may not be)
static void adamw_segments_add(AdamWSegments *seg, size_t off, size_t len, float wd, int pad) {
    if (len == 0) return;
    int last = seg->n - 1;
    if (last >= 0 && seg->wd[last] == wd && seg->off[last] + seg->len[last] == off) {   // continues the last one
        seg->len[last] += len; seg->begin[seg->n] += len;
        return;
    }
    if (seg->n == ADAMW_MAX_SEGMENTS) fatal("adamw: more than %d segments in one update", ADAMW_MAX_SEGMENTS);
    int k = seg->n;
    if (pad) seg->begin[k] = (seg->begin[k] + 3) / 4 * 4;
    seg->off[k] = off; seg->len[k] = len; seg->wd[k] = wd;
    seg->begin[k + 1] = seg->begin[k] + len;
    seg->n++;
}

// one parameter of a launch: element i of the threads' range -> its segment (k moves forward only) and place
__device__ __forceinline__ void adamw_segment_one(float *params, floatX *params_bf16, const float *grads, float *m,
                                                  float *v, const AdamWSegments &seg, int &k, size_t i,
                                                  const AdamWStep &st, float scale, float beta1, float beta2, float eps) {
    while (i >= seg.begin[k + 1]) k++;
    size_t j = i - seg.begin[k];
    if (j >= seg.len[k]) return;   // padding
    size_t a = seg.off[k] + j;
    float p = params[a], mi = m[a], vi = v[a];
    adamw_param_at(&p, &mi, &vi, grads[a], st, scale, beta1, beta2, eps, seg.wd[k]);
    m[a] = mi; v[a] = vi; params[a] = p;
    params_bf16[a] = __float2bfloat16(p);
}

__global__ void adamw_segments_kernel(float *params, floatX *params_bf16, const float *grads, float *m, float *v,
                                      AdamWSegments seg, const AdamWStep *step, float beta1, float beta2, float eps,
                                      const float *grad_scale) {
    grid_dep_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= seg.begin[seg.n]) return;
    int k = 0;
    adamw_segment_one(params, params_bf16, grads, m, v, seg, k, i, *step, *grad_scale, beta1, beta2, eps);
}

// the same, 4 parameters per thread: 16-byte loads of g, m, v, p and stores of m, v, p, an 8-byte store of the bf16
// copy (all five arrays 16 / 8-byte aligned) where the 4 are in one segment at an aligned place; else (a group across
// a segment's end, the last group) element by element
__global__ void adamw_segments_vec_kernel(float *params, floatX *params_bf16, const float *grads, float *m, float *v,
                                          AdamWSegments seg, const AdamWStep *step, float beta1, float beta2, float eps,
                                          const float *grad_scale) {
    grid_dep_begin();
    size_t n = seg.begin[seg.n], i0 = 4 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i0 >= n) return;
    const AdamWStep st = *step;
    float scale = *grad_scale;
    int k = 0;
    while (i0 >= seg.begin[k + 1]) k++;
    size_t j = i0 - seg.begin[k], a = seg.off[k] + j;
    if (j + 4 <= seg.len[k] && a % 4 == 0) {
        float4 g4 = *(const float4 *)(grads + a), m4 = *(float4 *)(m + a), v4 = *(float4 *)(v + a);
        float4 p4 = *(float4 *)(params + a);
        float *g = &g4.x, *mm = &m4.x, *vv = &v4.x, *pp = &p4.x;
        union { floatX h[4]; unsigned long long u; } p16;   // the 4 bf16 copies, stored as one 8-byte word
        #pragma unroll
        for (int q = 0; q < 4; q++) {
            adamw_param_at(&pp[q], &mm[q], &vv[q], g[q], st, scale, beta1, beta2, eps, seg.wd[k]);
            p16.h[q] = __float2bfloat16(pp[q]);
        }
        *(float4 *)(m + a) = m4; *(float4 *)(v + a) = v4; *(float4 *)(params + a) = p4;
        *(unsigned long long *)(params_bf16 + a) = p16.u;
        return;
    }
    for (size_t i = i0; i < i0 + 4 && i < n; i++)
        adamw_segment_one(params, params_bf16, grads, m, v, seg, k, i, st, scale, beta1, beta2, eps);
}

// 1: the vector kernel where the arrays are aligned; 0 (SESSA_ADAMW_VEC=0): one parameter per thread; -1: not read yet
static int adamw_vec = -1;
static int adamw_vec_mode(void) {
    if (adamw_vec < 0) { const char *e = getenv("SESSA_ADAMW_VEC"); adamw_vec = e == NULL || atoi(e) != 0; }
    return adamw_vec;
}

// params, params_bf16, grads, m, v: the arrays the segments' offsets count from (the trainer: its shard);
// step: the step's scalars (adamw_step_set); grad_scale: one float in device memory
static void adamw_update_segments(float *params, floatX *params_bf16, const float *grads, float *m, float *v,
                                  const AdamWSegments *seg, const AdamWStep *step, float beta1, float beta2, float eps,
                                  const float *grad_scale, cudaStream_t stream) {
    if (seg->n < 1 || seg->n > ADAMW_MAX_SEGMENTS || seg->begin[0] != 0)
        fatal("adamw_update_segments: %d segments (1..%d, starting at 0)", seg->n, ADAMW_MAX_SEGMENTS);
    size_t n = seg->begin[seg->n];
    if (n == 0) return;
    bool vec = adamw_vec_mode() && (uintptr_t)params % 16 == 0 && (uintptr_t)grads % 16 == 0 && (uintptr_t)m % 16 == 0 &&
               (uintptr_t)v % 16 == 0 && (uintptr_t)params_bf16 % 8 == 0;
    if (vec)
        launch_pdl(adamw_segments_vec_kernel, ceil_div((long long)n, 4 * 512), 512, 0, stream, params, params_bf16, grads,
                   m, v, *seg, step, beta1, beta2, eps, grad_scale);
    else
        launch_pdl(adamw_segments_kernel, ceil_div((long long)n, 512), 512, 0, stream, params, params_bf16, grads, m, v,
                   *seg, step, beta1, beta2, eps, grad_scale);
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
