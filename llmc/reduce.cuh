/*
 Deterministic reductions shared by the CUDA kernels.
 - block_reduce_sum: sum over a thread block (fixed shuffle tree, every thread gets the result)
 - column_sums: out0[c] += sum_n op(n,c).x (c < C), out1[c] += sum_n op(n,c).y (c < n1 <= C) over rows n
   of an (N, C) matrix (n1 = 1: the gamma path's scalar gamma_b gradient rides in column 0).
   Used for bias gradients, LayerNorm weight/bias gradients and the gamma path's gradients.
   One launch: rows are cut into fixed chunks of COLSUM_ROWS, each chunk summed in row order, a block's
   chunks added in order into a scratch buffer; the last block of a column block to finish (an atomic
   counter) sums those partials per column in a fixed order. The result is bitwise the same on every run.
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

#define COLSUM_ROWS 32     // rows per warp chunk: fixed, so the order of additions never depends on the GPU
#define COLSUM_WARPS 8     // warps (chunks) per block: a block sums 32 columns over COLSUM_WARPS * COLSUM_ROWS rows

// One launch, grid (row blocks, column blocks of 32), COLSUM_WARPS warps; lane = column c of the block's 32.
//  1. warp w sums, in row order, the 32 rows of its chunk (each load a coalesced 64-byte row piece of bf16);
//     warp 0 adds the COLSUM_WARPS chunk sums in order: partial[row block, c].
//  2. the block that finishes last among the row blocks of its columns (a counter per column block, made
//     visible by __threadfence) adds every row block's partial, in row-block order (warp w takes row blocks
//     w, w + COLSUM_WARPS, ..., then warp 0 those COLSUM_WARPS sums in order) into out0/out1, and sets the
//     counter back to 0 for the next call.
// Which block comes last varies, the order of the additions does not: bitwise the same on every run.
// (Until this kernel: a partial-sums kernel and a finishing kernel, 2 launches per call; the d12 profile had 61
// finishing launches of ~4.2 us each.)
template <class Op>
__global__ void column_sums_kernel(float *out0, float *out1, int n1, float2 *partial, unsigned int *count, Op op,
                                   int N, int C) {
    grid_dep_begin();
    __shared__ float2 part[COLSUM_WARPS][WARP_SIZE];
    __shared__ int is_last;
    int lane = threadIdx.x % WARP_SIZE, w = threadIdx.x / WARP_SIZE;
    int c = blockIdx.y * WARP_SIZE + lane, nblocks = gridDim.x;
    int r0 = (blockIdx.x * COLSUM_WARPS + w) * COLSUM_ROWS, r1 = min(N, r0 + COLSUM_ROWS);
    float2 acc = make_float2(0.0f, 0.0f);
    if (c < C) {
        #pragma unroll 8
        for (int n = r0; n < r1; n++) {
            float2 v = op(n, c);
            acc.x += v.x;
            acc.y += v.y;
        }
    }
    part[w][lane] = acc;
    __syncthreads();
    if (w == 0) {
        for (int j = 1; j < COLSUM_WARPS; j++) { acc.x += part[j][lane].x; acc.y += part[j][lane].y; }
        if (c < C) partial[(size_t)blockIdx.x * C + c] = acc;
        __threadfence();                          // the partial is visible before the count says so
    }
    __syncthreads();
    if (threadIdx.x == 0) is_last = atomicAdd(&count[blockIdx.y], 1u) == (unsigned int)nblocks - 1;
    __syncthreads();
    if (!is_last) return;
    __threadfence();                              // every other block's partial is read after its count
    acc = make_float2(0.0f, 0.0f);
    if (c < C) {
        for (int i = w; i < nblocks; i += COLSUM_WARPS) {
            float2 v = __ldcg(&partial[(size_t)i * C + c]);   // from L2: not a stale L1 line
            acc.x += v.x;
            acc.y += v.y;
        }
    }
    __syncthreads();                              // part is reused
    part[w][lane] = acc;
    __syncthreads();
    if (w != 0) return;
    for (int j = 1; j < COLSUM_WARPS; j++) { acc.x += part[j][lane].x; acc.y += part[j][lane].y; }
    if (c < C) {
        out0[c] += acc.x;
        if (c < n1) out1[c] += acc.y;
    }
    if (lane == 0) count[blockIdx.y] = 0;
}

static inline int column_sums_row_blocks(int N) { return ceil_div(N, COLSUM_WARPS * COLSUM_ROWS); }
static inline size_t column_sums_scratch_bytes(int N, int C) {
    return (size_t)column_sums_row_blocks(N) * C * sizeof(float2);
}

// the arrival counters of column_sums_kernel, one per column block (at most 65535), one set per stream: made and
// zeroed on a stream's first call (cudaMalloc is allowed in the trainer's relaxed-mode graph capture; the zeroing is
// an ordinary memset on the stream, inside a graph a memset node), left at zero by every call. Column sums may run on
// several streams at once (the trainer's main and weight-gradient streams), each with its own scratch.
#define COLSUM_MAX_CBLOCKS 65535
#define COLSUM_MAX_STREAMS 8
static unsigned int *column_sums_count(cudaStream_t stream) {
    static cudaStream_t streams[COLSUM_MAX_STREAMS];
    static unsigned int *counts[COLSUM_MAX_STREAMS];
    static int n = 0;
    for (int i = 0; i < n; i++)
        if (streams[i] == stream) return counts[i];
    if (n == COLSUM_MAX_STREAMS) fatal("column_sums: more than %d streams", COLSUM_MAX_STREAMS);
    cudaMallocCheck(&counts[n], COLSUM_MAX_CBLOCKS * sizeof(unsigned int));
    cudaCheck(cudaMemsetAsync(counts[n], 0, COLSUM_MAX_CBLOCKS * sizeof(unsigned int), stream));
    streams[n] = stream;
    return counts[n++];
}

// out0[c] += column sums of op's .x over N rows (C of them), out1[c] += those of .y for c < n1 (out1 may be
// NULL with n1 = 0); scratch holds column_sums_scratch_bytes(N, C), not used by another stream at the same time
template <class Op>
static void column_sums(float *out0, float *out1, int n1, Op op, int N, int C, float2 *scratch, cudaStream_t stream) {
    if (n1 < 0 || n1 > C || (out1 == NULL) != (n1 == 0)) fatal("column_sums: out1 %p with %d of %d columns", (void *)out1, n1, C);
    int cblocks = ceil_div(C, WARP_SIZE);
    if (cblocks > COLSUM_MAX_CBLOCKS) fatal("column_sums: %d columns is more than %d", C, COLSUM_MAX_CBLOCKS * WARP_SIZE);
    unsigned int *count = column_sums_count(stream);
    dim3 grid(column_sums_row_blocks(N), cblocks);
    launch_pdl(column_sums_kernel<Op>, grid, COLSUM_WARPS * WARP_SIZE, 0, stream, out0, out1, n1, scratch, count, op, N, C);
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
