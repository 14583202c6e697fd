/*
 Common CUDA definitions shared by train_sessa.cu, test_sessa.cu, llmc/*.cuh and dev/cuda/*.cu.
 floatX is the storage type of weights and activations in the mixed-precision trainer (bf16);
 accumulation is always fp32.
*/
#ifndef SESSA_CUDA_COMMON_H
#define SESSA_CUDA_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include "utils.h"

typedef __nv_bfloat16 floatX;   // storage precision of activations and weights
#define WARP_SIZE 32

#define cudaCheck(err) cuda_check_((err), __FILE__, __LINE__)
static inline void cuda_check_(cudaError_t err, const char *file, int line) {
    if (err != cudaSuccess) fatal_at(file, line, "CUDA: %s", cudaGetErrorString(err));
}

// cudaMalloc with a message that names the size when the GPU is out of memory
#define cudaMallocCheck(ptr, size) cuda_malloc_check_((void **)(ptr), (size), __FILE__, __LINE__)
static inline void cuda_malloc_check_(void **ptr, size_t size, const char *file, int line) {
    cudaError_t err = cudaMalloc(ptr, size);
    if (err != cudaSuccess) fatal_at(file, line, "GPU out of memory: cudaMalloc of %zu bytes (%.2f GiB): %s",
                                     size, (double)size / (1u << 30), cudaGetErrorString(err));
}

static inline int ceil_div(long long a, long long b) { return (int)((a + b - 1) / b); }

#ifdef __CUDACC__
__device__ __forceinline__ float warp_reduce_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_reduce_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
#endif

#endif // SESSA_CUDA_COMMON_H
