/*
 The scalars of a training step, computed on the device so that a step needs no host sync (the host reads
 them one step later, when it prints):
 - squared L2 norm of a flat fp32 vector (the gradients), deterministic: a fixed grid of NORM_BLOCKS
   blocks (independent of the GPU) each sums a fixed strided subset in a fixed order, then one block sums
   the partials. With data parallelism the caller all-reduces the partial result before the sqrt.
 - the clip scale of that norm (clip_of_norm2, one function for the device and the host: PyTorch's
   clip_grad_norm_, scale = clip / (norm + 1e-6) when norm > clip, else 1), read by AdamW from device memory
 - the mean of the N per-row losses, in double, in a fixed order, accumulated over the micro-steps of a step
 Cost: the norm reads 4 bytes per parameter once (d12: 0.5 GB at ~4.3 TB/s: 0.116 ms; d4w256h4 V=50257: 15.3 M
 parameters, 61 MB: 14 us; one of the two reads of the gradient per step with AdamW's); the loss mean and the
 clip are one block each (a few microseconds, launch-bound). The norm's loads: 16 bytes each, 4 in flight per
 thread (64 KB per SM at 1024 threads: ~4.3 TB/s x ~1 us of latency / 132 SMs = 33 KB needed). Measured before
 (4-byte loads, one in flight: 8 KB per SM): 29.7 us at d4w256h4 (2.1 TB/s), 171 us at d12 (2.9 TB/s, H200).
*/
#ifndef SESSA_GLOBAL_NORM_CUH
#define SESSA_GLOBAL_NORM_CUH

#include <math.h>
#include "cuda_common.h"
#include "reduce.cuh"

#define NORM_BLOCKS 512
#define NORM_THREADS 512

// partial[block] = sum of x[i]^2 over the block's threads; thread t (of S in the grid) takes the float4s t, t + S,
// t + 2S, ... of the 16-byte aligned body in order (4 loads issued ahead of their adds), then its elements of the
// unaligned head and tail: a fixed order for a given x and n
__global__ void norm_squared_partial_kernel(float *partial, const float *x, size_t n) {
    grid_dep_begin();
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
    size_t head = ((16 - (uintptr_t)x % 16) % 16) / sizeof(float);   // x is 4-byte aligned: 0..3 elements
    if (head > n) head = n;
    size_t n4 = (n - head) / 4;
    const float4 *x4 = (const float4 *)(x + head);
    float acc = 0.0f;
    #pragma unroll 4
    for (size_t i = t; i < n4; i += stride) {
        float4 v = x4[i];
        acc = fmaf(v.x, v.x, acc); acc = fmaf(v.y, v.y, acc); acc = fmaf(v.z, v.z, acc); acc = fmaf(v.w, v.w, acc);
    }
    if (t < head) acc = fmaf(x[t], x[t], acc);
    for (size_t i = head + 4 * n4 + t; i < n; i += stride) acc = fmaf(x[i], x[i], acc);
    acc = block_reduce_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(float *out, const float *partial, int n) {
    grid_dep_begin();
    float acc = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
    acc = block_reduce_sum(acc);
    if (threadIdx.x == 0) *out = acc;
}

static inline size_t global_norm_scratch_bytes(void) { return NORM_BLOCKS * sizeof(float); }

// *out (device) = sum x^2; scratch: global_norm_scratch_bytes()
static void global_norm_squared(float *out, const float *x, size_t n, float *scratch, cudaStream_t stream) {
    launch_pdl(norm_squared_partial_kernel, NORM_BLOCKS, NORM_THREADS, 0, stream, scratch, x, n);
    cudaCheck(cudaGetLastError());
    launch_pdl(sum_partials_kernel, 1, NORM_THREADS, 0, stream, out, scratch, NORM_BLOCKS);
    cudaCheck(cudaGetLastError());
}

// the scalars of one optimizer step, in device memory (and a pinned host copy per step in flight)
typedef struct {
    double loss_sum;   // sum over the micro-steps of each micro-step's mean loss (this rank; on several GPUs
                       // summed over the ranks on the device at the step's end: multi_gpu_sum_device)
    double stop;       // several GPUs: this rank's stop signal (0/1) when the host began the step, then summed
                       // over the ranks with loss_sum (one all-reduce of these two)
    float norm2;       // squared gradient norm (all ranks)
    float norm;        // sqrt(norm2)
    float scale;       // the gradient clip scale that AdamW applies
} StepStats;

// norm and clip scale from norm^2 (clip <= 0: no clipping): IEEE sqrt and division on the device (no
// --use_fast_math) as on the host, so both give the same bits
__host__ __device__ inline void clip_of_norm2(float norm2, float clip, float *norm, float *scale) {
    *norm = sqrtf(norm2);
    *scale = clip > 0.0f && *norm > clip ? clip / (*norm + 1e-6f) : 1.0f;
}

__global__ void grad_clip_kernel(StepStats *s, float clip) {
    grid_dep_begin();
    if (threadIdx.x == 0) clip_of_norm2(s->norm2, clip, &s->norm, &s->scale);
}

// s->norm, s->scale from s->norm2 (global_norm_squared wrote it, summed over the ranks where they hold shards)
static void grad_clip(StepStats *s, float clip, cudaStream_t stream) {
    launch_pdl(grad_clip_kernel, 1, 32, 0, stream, s, clip);
    cudaCheck(cudaGetLastError());
}

// loss_sum = (accumulate ? loss_sum : 0) + (float)(sum_n losses[n] / N): one block, each thread a strided
// double partial, then thread 0 adds the LOSS_THREADS partials in order (no double shuffles needed)
#define LOSS_THREADS 256
__global__ void loss_mean_kernel(StepStats *s, const float *losses, int N, int accumulate) {
    grid_dep_begin();
    __shared__ double part[LOSS_THREADS];
    double acc = 0.0;
    for (int i = threadIdx.x; i < N; i += LOSS_THREADS) acc += losses[i];
    part[threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        double sum = 0.0;
        for (int t = 0; t < LOSS_THREADS; t++) sum += part[t];
        s->loss_sum = (accumulate ? s->loss_sum : 0.0) + (double)(float)(sum / N);
    }
}
static void loss_mean(StepStats *s, const float *losses, int N, int accumulate, cudaStream_t stream) {
    launch_pdl(loss_mean_kernel, 1, LOSS_THREADS, 0, stream, s, losses, N, accumulate);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_GLOBAL_NORM_CUH
