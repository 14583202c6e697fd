/*
 Squared L2 norm of a flat fp32 vector (the gradients), deterministic: a fixed grid of NORM_BLOCKS
 blocks (independent of the GPU) each sums a fixed strided subset in a fixed order, then one block sums
 the partials. With data parallelism the caller all-reduces the partial result before the sqrt.
*/
#ifndef SESSA_GLOBAL_NORM_CUH
#define SESSA_GLOBAL_NORM_CUH

#include "cuda_common.h"
#include "reduce.cuh"

#define NORM_BLOCKS 512
#define NORM_THREADS 512

__global__ void norm_squared_partial_kernel(float *partial, const float *x, size_t n) {
    float acc = 0.0f;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        acc += x[i] * x[i];
    acc = block_reduce_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(float *out, const float *partial, int n) {
    float acc = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
    acc = block_reduce_sum(acc);
    if (threadIdx.x == 0) *out = acc;
}

static inline size_t global_norm_scratch_bytes(void) { return NORM_BLOCKS * sizeof(float); }

// *out (device) = sum x^2; scratch: global_norm_scratch_bytes()
static void global_norm_squared(float *out, const float *x, size_t n, float *scratch, cudaStream_t stream) {
    norm_squared_partial_kernel<<<NORM_BLOCKS, NORM_THREADS, 0, stream>>>(scratch, x, n);
    cudaCheck(cudaGetLastError());
    sum_partials_kernel<<<1, NORM_THREADS, 0, stream>>>(out, scratch, NORM_BLOCKS);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_GLOBAL_NORM_CUH
