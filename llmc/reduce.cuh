/*
 Deterministic reductions shared by the CUDA kernels.
 - block_reduce_sum: sum over a thread block (fixed shuffle tree, every thread gets the result)
 - column_sums: out0[c] += sum_n op(n,c).x (c < C), out1[c] += sum_n op(n,c).y (c < n1 <= C) over the N rows
   of an (N, C) matrix (n1 = 1: the gamma path's scalar gamma_b gradient rides in column 0). Used for bias
   gradients (RowsOp), LayerNorm weight/bias gradients and the gamma path's gradients (their own files).

 column_sums in one launch, grid (C / 64 column tiles, R row blocks of `rows` rows), 256 threads:
   layout   a tile is 64 columns; with 16-byte packs (C % 8 == 0, rows 16-byte aligned: every width the
            trainer uses) a thread owns 8 columns, 8 threads read 128 contiguous bytes of a row and the block
            reads 32 rows at a time (other widths: a thread owns 1 column, 4 rows at a time, 2-byte loads)
   pass 1   thread (tx, ty) sums rows r0 + ty, r0 + ty + 32, ... in row order, U rows in flight
            (their loads all issued before the adds, a row index past the block's end clamped to its last row
            rather than branched around); the block's 32 row groups are added in order
            (shared memory): partial[row block, c] (.y in a second plane when the op has one)
   pass 2   the block that finishes last among the R row blocks of its tile (a counter per tile, made
            visible by __threadfence) reads the R partials of its 64 columns (16-byte L2 loads; 16 groups of
            row blocks b, b + 16, ..., then the 16 group sums in order) and adds them into out0/out1 (read
            by every block at its start, so that the last one's finish does not wait for them); it sets the
            counter back to 0 for the next call.
   Which block comes last varies, the order of the additions does not: bitwise the same on every run, and
   on every GPU (the grid depends on N and C only). The bits differ from the previous kernel's (32-row warp
   chunks, 256-row blocks).
   grid     R = blocks / tiles row blocks (rows a multiple of 32), one wave: `blocks` and U are the op's,
            the H200's best of 264, 528, 1056 blocks x 1, 2, 4 rows in flight (dev/cuda/reduce.cu bench): bias
            gradients 528 (4 per SM; C = 768: 12 x 43 blocks of 192 rows, C = 3840: 60 x 8 of 1024) x 2 rows,
            LayerNorm 264 x 1 row (2 matrices), gamma 264 x 4
 bytes      the op's inputs once (bf16 rows: 2 N C per matrix read; LayerNorm: dout and inp, 4 N C) plus
            R x C x 4 (x2) partials written and read back from L2 (~0.1-0.3 MB): the floor is the input bytes /
            ~3.7 TB/s, + ~2 us of launch, the partial hand-over and the finishing read.
 d12 (N = 8192), us per call (dev/cuda/reduce.cu bench: cold inputs, 50 calls in a CUDA graph, H200; the previous
 kernel -> this one; floor = bytes / 3.7 TB/s; ~3 us of every call is latency: launch, the hand-over, the finish):
            RowsOp C = 768            12.6 MB    8.1 -> 6.5 us  (floor 3.4)   x12 per step
            RowsOp C = 1536           25.2 MB   11.9 -> 9.2 us  (floor 6.8)   x12
            RowsOp C = 3840           62.9 MB   25.5 -> 18.3 us (floor 17)    x12
            LayerNormParamOp C = 768  25.2 MB   15.2 -> 10.2 us (floor 6.8)   x13
            GammaParamOp C = 768      12.6 MB    9.3 -> 7.3 us  (floor 3.4)   x12
            per step 856 -> 629 us. Small model d4w256h4 (N = 2048, C = 256 .. 1280, 1-5 MB; latency bound):
            RowsOp 4.4 / 4.7 / 5.2 -> 3.3 / 3.9 / 4.9 us, LayerNorm 12.2 -> 4.6, gamma 6.0 -> 4.6: 142 -> 90 us.
*/
#ifndef SESSA_REDUCE_CUH
#define SESSA_REDUCE_CUH

#include "cuda_common.h"
#include "packed.cuh"

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

#define COLSUM_THREADS 256
#define COLSUM_W 64          // columns per tile
#define COLSUM_RB 32         // a block's row count is a multiple of this (the row groups of the packed form)
#define COLSUM_G 16          // row-block groups of the finishing pass (x 16 threads of 4 columns)
#define COLSUM_BLOCKS 528    // the most blocks an op asks for (Op::blocks): 4 per SM of a 132-SM H100/H200, one wave

// V columns of a bf16 row starting at p into fp32: V = PACK (one 16-byte load, p aligned) or 1
template <int V>
__device__ __forceinline__ void load_cols(float out[V], const floatX *p) {
    if constexpr (V == PACK) load8(out, p);
    else out[0] = __bfloat162float(p[0]);
}

// V = PACK (16-byte packs, C % 8 == 0) or 1; the op fills x[i], y[i] (Op::has_y) for columns c .. c + V - 1 of row n
template <int V, int U, class Op>
__global__ void __launch_bounds__(COLSUM_THREADS, 4)
column_sums_kernel(float *out0, float *out1, int n1, float *partial, unsigned int *count, Op op, int N, int C, int rows,
                   int acc) {
    constexpr int TX = COLSUM_W / V, TY = COLSUM_THREADS / TX;         // threads per row, rows at a time
    constexpr int SR = TY > COLSUM_G ? TY : COLSUM_G;
    constexpr bool Y = Op::has_y;
    __shared__ float sx[SR][COLSUM_W], sy[Y ? SR : 1][COLSUM_W];
    __shared__ bool is_last;
    grid_dep_begin();
    int t = threadIdx.x, tx = t % TX, ty = t / TX;
    int c0 = blockIdx.x * COLSUM_W, Cp = gridDim.x * COLSUM_W, R = gridDim.y;
    int c = c0 + tx * V, r0 = blockIdx.y * rows, r1 = min(N, r0 + rows);
    // thread j < 64 (and 64 + j, for .y) sums column c0 + j in shared memory (sum_rows below) and, in the tile's
    // last block, adds it into out0 (out1) (acc = 0: onto zero, i.e. overwrites them): read here, so that the finish
    // does not wait for it (any block may be last)
    int j = t % COLSUM_W;
    bool sums = t < (Y ? 2 : 1) * COLSUM_W, owns = sums && c0 + j < (t < COLSUM_W ? C : n1);
    float *out = t < COLSUM_W ? out0 : out1;
    float before = owns && acc ? out[c0 + j] : 0.0f;
    // pass 1: this thread's rows, then the block's row groups
    float ax[V], ay[V];
    #pragma unroll
    for (int i = 0; i < V; i++) { ax[i] = 0.0f; ay[i] = 0.0f; }
    if (c < C) {   // V = PACK: C % 8 == 0, so all 8 columns are in
        for (int n = r0 + ty; n < r1; n += U * TY) {
            float x[U][V], y[U][V];
            #pragma unroll
            for (int u = 0; u < U; u++) op(min(n + u * TY, r1 - 1), c, x[u], y[u]);   // no branch: U loads in flight
            #pragma unroll
            for (int u = 0; u < U; u++) {
                if (n + u * TY >= r1) break;                   // (a row past r1 was read as row r1 - 1: not added)
                #pragma unroll
                for (int i = 0; i < V; i++) { ax[i] += x[u][i]; if (Y) ay[i] += y[u][i]; }
            }
        }
    }
    // column j of sx (sy) summed over its first k rows in order
    auto sum_rows = [&](int k) {
        float (*s)[COLSUM_W] = t < COLSUM_W ? sx : sy;
        float v = 0.0f;
        for (int i = 0; i < k; i++) v += s[i][j];
        return v;
    };
    #pragma unroll
    for (int i = 0; i < V; i++) { sx[ty][tx * V + i] = ax[i]; if (Y) sy[ty][tx * V + i] = ay[i]; }
    __syncthreads();
    float *px = partial, *py = partial + (size_t)R * Cp;     // the .x and .y planes, (R, Cp) each
    if (sums) {
        (t < COLSUM_W ? px : py)[(size_t)blockIdx.y * Cp + c0 + j] = sum_rows(TY);
        __threadfence();                                     // the partial is visible before the count says so
    }
    __syncthreads();
    if (t == 0) is_last = atomicAdd(&count[blockIdx.x], 1u) == (unsigned int)R - 1;
    __syncthreads();
    if (!is_last) return;
    // pass 2 (the tile's last block): thread (q, g) sums columns c0 + 4q .. + 3 of row blocks g, g + 16, ...
    __threadfence();                                         // every other block's partial is read after its count
    int q = t % (COLSUM_W / 4), g = t / (COLSUM_W / 4);
    float4 vx = {0.0f, 0.0f, 0.0f, 0.0f}, vy = vx;
    #pragma unroll 4
    for (int b = g; b < R; b += COLSUM_G) {
        size_t i = (size_t)b * Cp + c0 + 4 * q;
        float4 a = __ldcg(reinterpret_cast<const float4 *>(px + i));   // from L2: not a stale L1 line
        vx.x += a.x; vx.y += a.y; vx.z += a.z; vx.w += a.w;
        if (Y) {
            a = __ldcg(reinterpret_cast<const float4 *>(py + i));
            vy.x += a.x; vy.y += a.y; vy.z += a.z; vy.w += a.w;
        }
    }
    // (sx, sy were last read before the count's __syncthreads)
    sx[g][4 * q] = vx.x; sx[g][4 * q + 1] = vx.y; sx[g][4 * q + 2] = vx.z; sx[g][4 * q + 3] = vx.w;
    if (Y) { sy[g][4 * q] = vy.x; sy[g][4 * q + 1] = vy.y; sy[g][4 * q + 2] = vy.z; sy[g][4 * q + 3] = vy.w; }
    __syncthreads();
    if (owns) out[c0 + j] = before + sum_rows(COLSUM_G);
    if (t == 0) count[blockIdx.x] = 0;
}

// the grid of column_sums: C / 64 tiles x R row blocks of *rows rows (a multiple of 32), at most `blocks` blocks
// (COLSUM_BLOCKS; dev/cuda/reduce.cu times others) unless C / 64 tiles alone are more
static inline dim3 column_sums_grid(int N, int C, int blocks, int *rows) {
    int tiles = ceil_div(C, COLSUM_W), want = blocks / tiles > 1 ? blocks / tiles : 1;
    *rows = ceil_div(ceil_div(N, want), COLSUM_RB) * COLSUM_RB;
    return dim3(tiles, ceil_div(N, *rows));
}
// the partials' two (R, tiles x 64) fp32 planes; R x tiles <= max(COLSUM_BLOCKS, tiles) and <= tiles x N / 32,
// so this never shrinks as C grows: the scratch for the widest C serves every narrower one (at the same N)
static inline size_t column_sums_scratch_bytes(int N, int C) {
    long long tiles = ceil_div(C, COLSUM_W), blocks = tiles > COLSUM_BLOCKS ? tiles : COLSUM_BLOCKS;
    long long most = tiles * ceil_div(N, COLSUM_RB);
    return (size_t)(blocks < most ? blocks : most) * COLSUM_W * 2 * sizeof(float);
}

// the arrival counters of column_sums_kernel, one per column tile (at most 65535), one set per stream: made and
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
// NULL with n1 = 0; an op with .y: has_y); scratch holds column_sums_scratch_bytes(N, C) (16-byte aligned), not
// used by another stream at the same time. The op's packed(C) says whether its rows can be read in 16-byte packs.
// acc = 0: out0, out1 = the sums (the sums added onto zero: the bits of += into zeroed outputs)
template <class Op>
static void column_sums(float *out0, float *out1, int n1, Op op, int N, int C, float2 *scratch, cudaStream_t stream,
                        int acc = 1) {
    if (n1 < 0 || n1 > C || (out1 == NULL) != (n1 == 0) || (n1 > 0 && !Op::has_y))
        fatal("column_sums: out1 %p with %d of %d columns", (void *)out1, n1, C);
    if (N < 1 || C < 1) fatal("column_sums: an empty matrix (%d rows, %d columns)", N, C);
    if (ceil_div(C, COLSUM_W) > COLSUM_MAX_CBLOCKS) fatal("column_sums: %d columns is more than %d", C, COLSUM_MAX_CBLOCKS * COLSUM_W);
    if ((uintptr_t)scratch % 16 != 0) fatal("column_sums: scratch %p is not 16-byte aligned", (void *)scratch);
    unsigned int *count = column_sums_count(stream);
    static_assert(Op::blocks <= COLSUM_BLOCKS, "column_sums_scratch_bytes counts at most COLSUM_BLOCKS blocks");
    int rows;
    dim3 grid = column_sums_grid(N, C, Op::blocks, &rows);
    constexpr int U = Op::rows_in_flight;
    if (op.packed(C))
        launch_pdl(column_sums_kernel<PACK, U, Op>, grid, COLSUM_THREADS, 0, stream, out0, out1, n1, (float *)scratch, count, op, N, C, rows, acc);
    else
        launch_pdl(column_sums_kernel<1, U, Op>, grid, COLSUM_THREADS, 0, stream, out0, out1, n1, (float *)scratch, count, op, N, C, rows, acc);
    cudaCheck(cudaGetLastError());
}

// ----------------------------------------------------------------------------
// ops for column_sums: op(n, c, x, y) fills the terms of columns c .. c + V - 1 of row n (V deduced: PACK or 1);
// has_y: a second sum; rows_in_flight, blocks: the op's grid (measured, see the header)

// bias gradient: rows of dout (N, C) with row stride ld
struct RowsOp {
    const floatX *x; int ld;
    static constexpr bool has_y = false;
    static constexpr int rows_in_flight = 2, blocks = COLSUM_BLOCKS;
    bool packed(int C) const { return C % PACK == 0 && packable(x, ld); }
    template <int V>
    __device__ void operator()(int n, int c, float (&vx)[V], float (&)[V]) const { load_cols<V>(vx, x + (size_t)n * ld + c); }
};

#endif // SESSA_REDUCE_CUH
