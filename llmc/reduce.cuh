/*
 Deterministic reductions shared by the CUDA kernels.
 - block_reduce_sum: sum over a thread block (fixed shuffle tree, every thread gets the result)
 - column_sums: out0[c] += sum_n op(n,c).x (c < C), out1[c] += sum_n op(n,c).y (c < n1 <= C) over rows n
   of an (N, C) matrix (n1 = 1: the gamma path's scalar gamma_b gradient rides in column 0).
   Used for bias gradients, LayerNorm weight/bias gradients and the gamma path's gradients.
   No atomics: rows are cut into fixed chunks of COLSUM_ROWS, each chunk summed in row order into a
   scratch buffer, then the chunks are summed per column in a fixed order (32 strided partial sums, then
   those 32 in order). The result is bitwise the same on every run.
   (Bias gradients no longer come here: cuBLASLt's BGRADB epilogue makes them, llmc/matmul.cuh.)
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
#define COLSUM_FINISH_WARPS 32   // chunk lanes of column_finish_kernel: 32 columns x 32 warps per block

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

// out0[c] += sum_chunk partial[chunk, c].x; out1[c] += ... .y for c < n1 (0 when out1 is NULL). A block is 32 columns x
// COLSUM_FINISH_WARPS chunk lanes: warp w sums chunks w, w + 32, ... of its 32 consecutive columns (each load a
// coalesced 256-byte row piece; the one-warp-per-column layout before read 32 scattered rows per load), then
// warp 0 adds the 32 partial sums in order: the same order on every run.
__global__ void column_finish_kernel(float *out0, float *out1, int n1, const float2 *partial, int nchunks, int C) {
    __shared__ float2 part[COLSUM_FINISH_WARPS][WARP_SIZE];
    int lane = threadIdx.x % WARP_SIZE, w = threadIdx.x / WARP_SIZE;
    int c = blockIdx.x * WARP_SIZE + lane;
    float2 acc = make_float2(0.0f, 0.0f);
    if (c < C) {
        #pragma unroll 4
        for (int i = w; i < nchunks; i += COLSUM_FINISH_WARPS) {
            float2 v = partial[(size_t)i * C + c];
            acc.x += v.x;
            acc.y += v.y;
        }
    }
    part[w][lane] = acc;
    __syncthreads();
    if (w != 0 || c >= C) return;
    for (int j = 1; j < COLSUM_FINISH_WARPS; j++) {
        acc.x += part[j][lane].x;
        acc.y += part[j][lane].y;
    }
    out0[c] += acc.x;
    if (c < n1) out1[c] += acc.y;
}

static inline size_t column_sums_scratch_bytes(int N, int C) {
    return (size_t)ceil_div(N, COLSUM_ROWS) * C * sizeof(float2);
}

// out0[c] += column sums of op's .x over N rows (C of them), out1[c] += those of .y for c < n1 (out1 may be
// NULL with n1 = 0); scratch holds column_sums_scratch_bytes(N, C)
template <class Op>
static void column_sums(float *out0, float *out1, int n1, Op op, int N, int C, float2 *scratch, cudaStream_t stream) {
    if (n1 < 0 || n1 > C || (out1 == NULL) != (n1 == 0)) fatal("column_sums: out1 %p with %d of %d columns", (void *)out1, n1, C);
    int nchunks = ceil_div(N, COLSUM_ROWS), cblocks = ceil_div(C, COLSUM_THREADS);
    if (cblocks > 65535) fatal("column_sums: %d columns is more than %d", C, 65535 * COLSUM_THREADS);
    dim3 grid(nchunks, cblocks);
    column_partial_sums_kernel<<<grid, COLSUM_THREADS, 0, stream>>>(scratch, op, N, C);
    cudaCheck(cudaGetLastError());
    column_finish_kernel<<<ceil_div(C, WARP_SIZE), COLSUM_FINISH_WARPS * WARP_SIZE, 0, stream>>>(out0, out1, n1, scratch, nchunks, C);
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

#endif // SESSA_REDUCE_CUH
