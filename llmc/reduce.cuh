/*
 Deterministic reductions shared by the CUDA kernels.
 - block_reduce_sum: sum over a thread block (fixed shuffle tree, every thread gets the result)
 - column_sums: out0[c] += sum_n op(n,c).x, out1[c] += sum_n op(n,c).y over rows n of an (N, C) matrix.
   Used for bias gradients, LayerNorm weight/bias gradients and the gamma path's gradients.
   No atomics: rows are cut into fixed chunks of COLSUM_ROWS, each chunk summed in row order into a
   scratch buffer, then the chunks are summed by one warp per column in a fixed order (strided per lane,
   then a shuffle tree). The result is bitwise the same on every run.
*/
#ifndef SESSA_REDUCE_CUH
#define SESSA_REDUCE_CUH

#include "cuda_common.h"

// sum of v over the block; blockDim.x must be a multiple of 32 (at most 1024); every thread gets the sum
__device__ inline float block_reduce_sum(float v) {
    __shared__ float shared[WARP_SIZE];
    int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE, nwarps = blockDim.x / WARP_SIZE;
    v = warp_reduce_sum(v);
    __syncthreads(); // shared may still be read by a previous call
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < nwarps ? shared[lane] : 0.0f;
    return warp_reduce_sum(v);
}

#define COLSUM_ROWS 32     // rows per chunk: fixed, so the order of additions never depends on the GPU
#define COLSUM_THREADS 256
#define COLSUM_FINISH_WARPS 8

// partial[chunk, c] = sum over the chunk's rows, in order, of op(n, c). Grid: (chunks, column blocks).
// 32-row chunks (128 before): 4x more blocks in flight, which is what this latency-bound loop needs.
template <class Op>
__global__ void column_partial_sums_kernel(float2 *partial, Op op, int N, int C) {
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int n0 = blockIdx.x * COLSUM_ROWS, n1 = min(N, n0 + COLSUM_ROWS);
    float2 acc = make_float2(0.0f, 0.0f);
    #pragma unroll 8
    for (int n = n0; n < n1; n++) {
        float2 v = op(n, c);
        acc.x += v.x;
        acc.y += v.y;
    }
    partial[(size_t)blockIdx.x * C + c] = acc;
}

// out0[c] += sum_chunk partial[chunk, c].x; out1[c] += ... .y (out1 may be NULL). One warp per column:
// lane j sums chunks j, j + 32, ... in order, then a fixed shuffle tree: the same order on every run.
__global__ void column_finish_kernel(float *out0, float *out1, const float2 *partial, int nchunks, int C) {
    int lane = threadIdx.x % WARP_SIZE;
    int c = blockIdx.x * COLSUM_FINISH_WARPS + threadIdx.x / WARP_SIZE;
    if (c >= C) return;
    float2 acc = make_float2(0.0f, 0.0f);
    for (int i = lane; i < nchunks; i += WARP_SIZE) {
        float2 v = partial[(size_t)i * C + c];
        acc.x += v.x;
        acc.y += v.y;
    }
    acc.x = warp_reduce_sum(acc.x);
    acc.y = warp_reduce_sum(acc.y);
    if (lane != 0) return;
    out0[c] += acc.x;
    if (out1 != NULL) out1[c] += acc.y;
}

static inline size_t column_sums_scratch_bytes(int N, int C) {
    return (size_t)ceil_div(N, COLSUM_ROWS) * C * sizeof(float2);
}

// out0[c] (+ out1[c]) += column sums of op over N rows; scratch holds column_sums_scratch_bytes(N, C)
template <class Op>
static void column_sums(float *out0, float *out1, Op op, int N, int C, float2 *scratch, cudaStream_t stream) {
    int nchunks = ceil_div(N, COLSUM_ROWS), cblocks = ceil_div(C, COLSUM_THREADS);
    if (cblocks > 65535) fatal("column_sums: %d columns is more than %d", C, 65535 * COLSUM_THREADS);
    dim3 grid(nchunks, cblocks);
    column_partial_sums_kernel<<<grid, COLSUM_THREADS, 0, stream>>>(scratch, op, N, C);
    cudaCheck(cudaGetLastError());
    column_finish_kernel<<<ceil_div(C, COLSUM_FINISH_WARPS), COLSUM_FINISH_WARPS * WARP_SIZE, 0, stream>>>(out0, out1, scratch, nchunks, C);
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// ops for column_sums

// bias gradient: rows of dout (N, C) with row stride ld
struct RowsOp {
    const floatX *x; int ld;
    __device__ float2 operator()(int n, int c) const {
        return make_float2(__bfloat162float(x[(size_t)n * ld + c]), 0.0f);
    }
};

// sum_n w[n] * x[n, c] (x with row stride ld); with x == NULL it is sum_n w[n] (use C = 1)
struct WeightedRowsOp {
    const float *w; const floatX *x; int ld;
    __device__ float2 operator()(int n, int c) const {
        float xv = x != NULL ? __bfloat162float(x[(size_t)n * ld + c]) : 1.0f;
        return make_float2(w[n] * xv, 0.0f);
    }
};

#endif // SESSA_REDUCE_CUH
