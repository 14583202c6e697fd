/*
 Common CUDA definitions shared by train_sessa.cu, test_sessa.cu, llmc/*.cuh and dev/cuda/*.cu.
 floatX is the storage type of weights and activations in the mixed-precision trainer (bf16);
 accumulation is always fp32.
*/
#ifndef SESSA_CUDA_COMMON_H
#define SESSA_CUDA_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
// Programmatic dependent launch (sm_90+; PTX griddepcontrol): a kernel launched with the attribute
// cudaLaunchAttributeProgrammaticStreamSerialization may start before the kernel ahead of it in the stream has
// ended, once every CTA of that kernel has called grid_dep_launch_dependents (or exited). grid_dep_wait blocks
// until the kernel ahead has completed and its memory is visible; a kernel launched without the attribute
// passes it at once. Below sm_90 both are empty (the launch attribute is then not to be used: no early start).
__device__ __forceinline__ void grid_dep_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void grid_dep_launch_dependents(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// The small kernels (elementwise, normalization, reductions, the classifier, AdamW) begin with this: wait for the
// kernel ahead (all of its memory), then let the next one launch. Launched by launch_pdl, a kernel's launch and
// CTA setup overlap the tail of the kernel ahead; launched plainly, both are no-ops.
__device__ __forceinline__ void grid_dep_begin(void) {
    grid_dep_wait();
    grid_dep_launch_dependents();
}
#endif

// kernel<<<grid, block, smem, stream>>>(args...) with programmatic dependent launch (sm_90+): the kernel may be
// launched while the kernel ahead of it in the stream finishes, and must call grid_dep_begin() (or grid_dep_wait())
// before it touches memory. SESSA_PDL=0 in the environment launches plainly (for comparison; the same bits).
// does the current GPU take programmatic dependent launch (compute capability 9.0+)? (asked once)
static inline int pdl_supported(void) {
    static int major = -1;
    if (major < 0) {
        int dev = 0;
        cudaDeviceProp prop;
        cudaCheck(cudaGetDevice(&dev));
        cudaCheck(cudaGetDeviceProperties(&prop, dev));
        major = prop.major;
    }
    return major >= 9;
}
static inline int pdl_enabled(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("SESSA_PDL");
        on = !(e != NULL && e[0] == '0') && pdl_supported();
    }
    return on;
}
template <typename... KArgs, typename... Args>
static void launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args... args) {
    cudaLaunchAttribute pdl;
    pdl.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    pdl.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = grid; cfg.blockDim = block; cfg.dynamicSmemBytes = smem; cfg.stream = stream;
    cfg.attrs = &pdl; cfg.numAttrs = pdl_enabled();
    cudaCheck(cudaLaunchKernelEx(&cfg, kernel, args...));
}

#endif // SESSA_CUDA_COMMON_H
