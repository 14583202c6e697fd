/*
 Fused classifier: softmax, cross-entropy and its gradient in one pass over each row of logits. Two kernels:
 version 3 (this comment, the first kernel) and version 4 (the row held in shared memory: its own comment below;
 the trainer's where the row fits, V <= 53248).
 logits (N, Vp) bf16, row stride Vp (a multiple of 128): the tied head computes all Vp columns (GEMM shapes
 stay multiples of 8, so cuBLASLt can take its sm90 kernels), only the first V are real classes. Per row,
 one block, 8 bf16 per 16-byte load (packed.cuh):
   m = max_{i<V} x_i, S = sum_{i<V} exp(x_i - m) (online per pack of 8, fp32), loss = log S + m - x[target]
   if dloss != 0: x_i <- (exp(x_i - m) / S - [i == target]) * dloss for i < V, x_i <- 0 for V <= i < Vp
   (in base 2 on the GPU: exp2f of x log2(e), see below)
 in place (bf16), so the logits are never kept in fp32 and the gradient overwrites them (llm.c's approach);
 the zeroed padded columns make the head's backward GEMMs (over Vp) add nothing for padded vocabulary rows.
 Version 3's memory: one read of the row for the loss, one read + one write for the gradient: 3 N Vp bf16 (the second read
 mostly from L2: the ~2 x 132 rows in flight are 26 MB of a 50 MB L2), so DRAM moves ~2 N Vp bf16: 1.65 GB for
 d12 B=8 T=1024 (N = 8192, Vp = 50304) = 0.38 ms at 4.3 TB/s. Exponentials: 8192 x 50304 x (9/8 + 1) = 0.88 G
 MUFU.EX2 = 0.24 ms at 132 SMs x 16/clk x 1.755 GHz; the two overlap across blocks. Measured 0.92 ms (H200,
 before the block merge by a warp tree and exp2f); predicted 0.5-0.6 ms, measured 0.58 ms (dev/cuda bench v3).
 Tried (H200, dev/cuda bench, B=8 T=1024): the row held in registers (7 packs per thread, 63 registers, one
 block of 1024 threads per SM) so that the gradient pass re-reads nothing: 0.715 ms against this kernel's 0.587
 (one block per SM hides less latency than two; the second read comes from L2 anyway). Not kept.
 Deterministic: each thread's packs in a fixed order, then a fixed shuffle + shared-memory tree.
*/
#ifndef SESSA_FUSED_CLASSIFIER_CUH
#define SESSA_FUSED_CLASSIFIER_CUH

#include <float.h>
#include <limits.h>
#include "cuda_common.h"
#include "packed.cuh"
#include "reduce.cuh"
#include "mma.cuh"

#define CLASSIFIER_THREADS 1024

// Exponentials as exp2f of logits pre-scaled by log2(e) (one MUFU.EX2 each; expf adds a range reduction):
// z = x log2(e), m = max z, S = sum 2^(z - m), loss = (log2 S + m) ln 2 - x[target], p_i = 2^(z_i - m) / S.
#define LOG2E_F 1.4426950408889634f

// merge two (max, sum of 2^(z - max)) pairs
__device__ inline float2 softmax_merge(float2 a, float2 b) {
    float m = fmaxf(a.x, b.x);
    return make_float2(m, a.y * exp2f(a.x - m) + b.y * exp2f(b.x - m));
}

// (max, sum) over the warp by a fixed shuffle tree: every lane gets the result
__device__ inline float2 warp_softmax_merge(float2 ms) {
    for (int o = 16; o > 0; o >>= 1)
        ms = softmax_merge(ms, make_float2(__shfl_xor_sync(0xffffffffu, ms.x, o), __shfl_xor_sync(0xffffffffu, ms.y, o)));
    return ms;
}

__global__ void __launch_bounds__(CLASSIFIER_THREADS)
fused_classifier_kernel(floatX *logits, float *losses, const int *targets, int V, int ld, float dloss) {
    grid_dep_begin();
    __shared__ float2 shared[CLASSIFIER_THREADS / WARP_SIZE];
    int n = blockIdx.x, lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    int nwarps = blockDim.x / WARP_SIZE;
    floatX *x = logits + (size_t)n * ld;
    // (max, sum) over this thread's packs; -FLT_MAX, not -inf: merging two empty pairs stays finite.
    // Unrolled by 2: two 16-byte loads in flight per thread (the loop carries only ms)
    float2 ms = make_float2(-FLT_MAX, 0.0f);
    int npacks = (V + PACK - 1) / PACK;   // packs holding real columns (the last may be partly padding)
    #pragma unroll 2
    for (int p = threadIdx.x; p < npacks; p += blockDim.x) {
        float v[PACK];
        load8(v, x + p * PACK);
        float pm = -FLT_MAX;
        #pragma unroll
        for (int i = 0; i < PACK; i++) {
            v[i] *= LOG2E_F;
            if (p * PACK + i < V) pm = fmaxf(pm, v[i]);
        }
        float m = fmaxf(ms.x, pm), s = ms.y * exp2f(ms.x - m);
        #pragma unroll
        for (int i = 0; i < PACK; i++) if (p * PACK + i < V) s += exp2f(v[i] - m);
        ms = make_float2(m, s);
    }
    // block: warp trees, then warp 0 merges the warps' pairs by the same tree (was: every thread merged all
    // 32 pairs in a row, 62 exponentials per thread, as many as the row's own). Fixed order: deterministic.
    ms = warp_softmax_merge(ms);
    if (lane == 0) shared[warp] = ms;
    __syncthreads();
    if (warp == 0) {
        ms = warp_softmax_merge(lane < nwarps ? shared[lane] : make_float2(-FLT_MAX, 0.0f));
        if (lane == 0) shared[0] = ms;
    }
    int target = targets[n];
    float xt = __bfloat162float(x[target]);
    __syncthreads(); // shared[0] is final; everyone has read x[target] before it is overwritten
    ms = shared[0];
    if (threadIdx.x == 0) losses[n] = (log2f(ms.y) + ms.x) / LOG2E_F - xt;
    if (dloss == 0.0f) return;
    float scale = dloss / ms.y;
    #pragma unroll 2
    for (int p = threadIdx.x; p < ld / PACK; p += blockDim.x) {
        float v[PACK];
        load8(v, x + p * PACK);
        #pragma unroll
        for (int i = 0; i < PACK; i++) {
            int c = p * PACK + i;
            v[i] = c < V ? exp2f(v[i] * LOG2E_F - ms.x) * scale - (c == target ? dloss : 0.0f) : 0.0f;
        }
        store8(x + p * PACK, v);
    }
}

/*
 Version 4: the row held in shared memory, so that DRAM sees ONE read and ONE write of it.
 One block of 512 threads per row, two blocks per SM (2 x 98 KiB of shared memory at V = 50257). Thread t owns the
 packs t + 512 k (k < 13) of the row's npacks = ceil(V / 8) real packs, and only those: it copies them from global
 to shared memory (cp.async, 16 bytes, in 4 commit groups of 4, 4, 4, 1 packs), reads them in three passes and
 writes their gradient, so its own cp.async waits order its reads and the only barriers are the two reductions':
   copy     issue all copies at once (the whole row in flight: ~100 KB a block, no registers held)
   max      group by group as it lands: m = max_{i<V} x_i (the last pack's padded columns set to -inf in shared
            memory first, so no pass needs a per-column test); block max (shuffle tree + warp tree)
   sum      S = sum_{i<V} 2^(x_i log2(e) - m log2(e)), one MUFU.EX2 per element (m known: no online rescale;
            ex2.approx.ftz: no subnormal fix-up around it, results below 2^-126 flushed to 0);
            block sum in a fixed order (block_reduce_sum); loss = (log2 S + m log2 e) ln 2 - x[target]
   gradient (if dloss != 0) x_i <- 2^(x_i log2 e - m log2 e) dloss / S, 16-byte stores; the owner of the target's
            pack then stores x[target] again with - dloss (same thread, same address: the later store stands);
            packs npacks..ld/8 - 1 (padding) <- 0; the last pack's padded columns come out 0 (2^-inf)
 DRAM: N (V + Vp) bf16 (read the real packs, write the row): d12 B=8 T=1024 (N = 8192, Vp = 50304) 1.648 GB
 = 0.383 ms at 4.3 TB/s; d4w256h4 B=8 T=256 (N = 2048) 0.412 GB = 96 us (version 3 moves the same to DRAM if its
 second read hits L2, at 0.587 ms = 2.8 TB/s: it is bound by latency and issue, not bytes). Exponentials: 2 N V
 MUFU.EX2 (version 3: 2.125 N V; the gradient pass cannot reuse the sum pass's: fp32 would not fit, bf16 would
 change the bits) = 0.82 G = 0.22 ms at 132 x 16 / clk x 1.755 GHz. Issue: ~10.5 instructions an element (max 2,
 sum 4, gradient 4.5; version 3 ~16 with its per-column tests and online rescale) = 0.15 ms at 4 warp-instructions
 / clk / SM. Shared memory: 3 reads + 1 write of 100 KB a row = 3.1 K clk a row at 128 B / clk, 62 rows an SM:
 0.11 ms. Both blocks of an SM overlap all of these with the copies and stores, so DRAM sets the pace.
 Predicted 0.43-0.47 ms at d12 (version 3: 0.587), 110-120 us at d4w256h4 (version 3: 155; 2048 rows are 7.8 waves
 of 264 blocks: the last wave's tail counts). Measured (H200, dev/cuda bench, gpu_session clsbench, this session's
 mid call): d12 0.412 ms (4.0 TB/s of DRAM traffic; version 3 0.586), loss only 0.246 ms (3.3 TB/s; version 3
 0.312); d4w256h4 0.109 ms (version 3 0.153). The trainer (ab, same call): d12 B=8 T=1024 410.7k tok/s against
 version 3's 407.4k, d4w256h4 B=8 T=256 1.571M against 1.496M (+5%).
 Tried (same call): a persistent version, 2 blocks per SM each taking rows b, b + grid, ... and copying its next row
 into shared memory pack by pack during its gradient pass (its load overlapping its own stores): 0.438 / 0.117 ms,
 trainer 409.4k / 1.536M tok/s, slower than a block per row (not profiled; perhaps the fixed rows per block, where
 the block scheduler hands rows to whichever SM is free). Not kept.
 Rule: rows of V <= 13 x 512 x 8 = 53248 columns (104 KiB: two blocks fit the SM's 228 KiB); larger V takes
 version 3. Deterministic: a thread's packs in order (8 exponentials by a fixed tree), then block_reduce_sum's
 fixed tree; the bits differ from version 3's (one max, not an online merge per pack; another tree).
*/
#define CLS_SMEM_THREADS 512
#define CLS_SMEM_PACKS 13   // packs a thread owns at most
#define CLS_SMEM_GROUP 4    // packs per cp.async commit group: 4 groups (4, 4, 4, 1)
#define CLS_SMEM_MAX_V (CLS_SMEM_PACKS * CLS_SMEM_THREADS * PACK)
static_assert((CLS_SMEM_PACKS + CLS_SMEM_GROUP - 1) / CLS_SMEM_GROUP == 4, "cls_wait_groups waits on 4 groups");

// wait until this thread's cp.async groups 0..g (of the 4 committed) have landed in shared memory
__device__ __forceinline__ void cls_wait_groups(int g) {
    switch (g) {
        case 0: cp_async_wait<3>(); break;
        case 1: cp_async_wait<2>(); break;
        case 2: cp_async_wait<1>(); break;
        default: cp_async_wait<0>();
    }
}

// v = 2^(x log2 e - m) of the 8 columns at pack (one FFMA + one MUFU.EX2 each)
__device__ __forceinline__ void cls_exp8(float v[PACK], const floatX *pack, float m) {
    load8(v, pack);
    #pragma unroll
    for (int i = 0; i < PACK; i++) v[i] = ex2_approx(fmaf(v[i], LOG2E_F, -m));
}

// copy this thread's k-th pack (pack t + 512 k) of the row at src into shared memory, if it is a real one, and close
// the commit group after a group's last k: every thread commits the same 4 groups a row (cls_wait_groups counts them)
__device__ __forceinline__ void cls_copy(floatX *row, const floatX *src, int k, int npacks) {
    int p = threadIdx.x + k * CLS_SMEM_THREADS;
    if (p < npacks) cp_async16(row + p * PACK, src + p * PACK, true);
    if (k % CLS_SMEM_GROUP == CLS_SMEM_GROUP - 1 || k == CLS_SMEM_PACKS - 1) cp_async_commit();
}

__global__ void __launch_bounds__(CLS_SMEM_THREADS, 2)
fused_classifier_smem_kernel(floatX *logits, float *losses, const int *targets, int V, int ld, float dloss) {
    extern __shared__ __align__(16) floatX row[];   // the row's real packs, npacks x 8 bf16
    __shared__ float shared_max[CLS_SMEM_THREADS / WARP_SIZE];
    grid_dep_begin();
    const int n = blockIdx.x, t = threadIdx.x, lane = t % WARP_SIZE, warp = t / WARP_SIZE;
    const int npacks = (V + PACK - 1) / PACK;
    floatX *x = logits + (size_t)n * ld;
    #pragma unroll
    for (int k = 0; k < CLS_SMEM_PACKS; k++) cls_copy(row, x, k, npacks);
    // max, group by group as the copies land
    float m = -INFINITY;
    #pragma unroll
    for (int k = 0; k < CLS_SMEM_PACKS; k++) {
        int p = t + k * CLS_SMEM_THREADS;
        if (k % CLS_SMEM_GROUP == 0) cls_wait_groups(k / CLS_SMEM_GROUP);
        if (p >= npacks) break;
        if (p == npacks - 1)   // padded columns of the last pack: -inf (out of the max, 2^-inf = 0 in the sum)
            for (int c = V; c < npacks * PACK; c++) row[c] = __float2bfloat16(-INFINITY);
        float v[PACK];
        load8(v, row + p * PACK);
        #pragma unroll
        for (int i = 0; i < PACK; i++) m = fmaxf(m, v[i]);
    }
    m = warp_reduce_max(m);
    if (lane == 0) shared_max[warp] = m;
    __syncthreads();
    m = warp_reduce_max(lane < CLS_SMEM_THREADS / WARP_SIZE ? shared_max[lane] : -INFINITY) * LOG2E_F;
    // sum of 2^(z - m) over the thread's packs in order, each pack's 8 by a fixed tree
    float s = 0.0f;
    #pragma unroll
    for (int k = 0; k < CLS_SMEM_PACKS && t + k * CLS_SMEM_THREADS < npacks; k++) {
        float v[PACK];
        cls_exp8(v, row + (t + k * CLS_SMEM_THREADS) * PACK, m);
        s += ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
    }
    s = block_reduce_sum(s);   // its barriers also make every thread's copies visible to all (row[target])
    const int target = targets[n];
    const float xt = __bfloat162float(row[target]);
    if (t == 0) losses[n] = (log2f(s) + m) / LOG2E_F - xt;
    if (dloss == 0.0f) return;
    const float scale = dloss / s;
    #pragma unroll
    for (int k = 0; k < CLS_SMEM_PACKS && t + k * CLS_SMEM_THREADS < npacks; k++) {
        int p = t + k * CLS_SMEM_THREADS;
        float v[PACK];
        cls_exp8(v, row + p * PACK, m);
        #pragma unroll
        for (int i = 0; i < PACK; i++) v[i] *= scale;
        store8(x + p * PACK, v);
    }
    if (t == target / PACK % CLS_SMEM_THREADS)   // the owner of the target's pack, after its store of that pack
        x[target] = __float2bfloat16(ex2_approx(fmaf(xt, LOG2E_F, -m)) * scale - dloss);
    const float zero[PACK] = {};
    for (int p = npacks + t; p < ld / PACK; p += CLS_SMEM_THREADS) store8(x + p * PACK, zero);
}

// the version the trainer runs at V: 4 (the row in shared memory) where it fits, else 3; SESSA_CLS_VERSION=3 in
// the environment takes 3 always (for comparison)
static int fused_classifier_version(int V) {
    static int env = -1;
    if (env < 0) {
        const char *e = getenv("SESSA_CLS_VERSION");
        env = e == NULL ? 4 : atoi(e);
        if (env != 3 && env != 4) fatal("SESSA_CLS_VERSION=%s: expected 3 or 4", e);
    }
    return V <= CLS_SMEM_MAX_V ? env : 3;
}

// losses (N) = cross-entropy per row; with dloss != 0 the logits are replaced by dloss * dL/dlogits
// (padded columns V..ld-1 set to 0). ld must be a multiple of 8 and logits 16-byte aligned. version 3 or 4
// (V <= CLS_SMEM_MAX_V); fused_classifier below picks it.
static void fused_classifier_run(int version, floatX *logits, float *losses, const int *targets, int N, int V, int ld,
                                 float dloss, cudaStream_t stream) {
    if (ld < V || !packable(logits, ld))
        fatal("fused_classifier: row stride %d must be >= V = %d and a multiple of %d, logits 16-byte aligned (%p)",
              ld, V, PACK, (void *)logits);
    if (version == 3) {
        launch_pdl(fused_classifier_kernel, N, CLASSIFIER_THREADS, 0, stream, logits, losses, targets, V, ld, dloss);
    } else {
        if (V > CLS_SMEM_MAX_V) fatal("fused_classifier version 4: V = %d > %d does not fit shared memory", V, CLS_SMEM_MAX_V);
        static bool attributes_set = false;
        if (!attributes_set) {   // two blocks' rows per SM: the largest shared-memory carveout
            cudaCheck(cudaFuncSetAttribute(fused_classifier_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           CLS_SMEM_MAX_V * (int)sizeof(floatX)));
            cudaCheck(cudaFuncSetAttribute(fused_classifier_smem_kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
            attributes_set = true;
        }
        size_t smem = (size_t)(V + PACK - 1) / PACK * PACK * sizeof(floatX);
        launch_pdl(fused_classifier_smem_kernel, N, CLS_SMEM_THREADS, smem, stream, logits, losses, targets, V, ld, dloss);
    }
    cudaCheck(cudaGetLastError());
}

static void fused_classifier(floatX *logits, float *losses, const int *targets, int N, int V, int ld, float dloss,
                             cudaStream_t stream) {
    fused_classifier_run(fused_classifier_version(V), logits, losses, targets, N, V, ld, dloss, stream);
}

// ----------------------------------------------------------------------------
// argmax (N) of each row's first V logits (bf16, row stride ld): the first index of the largest value, as
// torch.argmax and train_sessa.c's row_argmax (-inf rows: 0; NaN is never taken). For -E (llmc/eval_tasks.h):
// the prediction at every position, then scored on the host. One block of ARGMAX_THREADS per row, each thread a
// strided run (a later index replaces only a strictly larger value), then the block's (value, index) pairs merged:
// the larger value, on equal values the smaller index.
#define ARGMAX_THREADS 256
__device__ inline void argmax_merge(float &v, int &i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i)) { v = v2; i = i2; }
}
__global__ void logits_argmax_kernel(int *out, const floatX *logits, int V, int ld) {
    grid_dep_begin();
    __shared__ float sv[ARGMAX_THREADS / WARP_SIZE];
    __shared__ int si[ARGMAX_THREADS / WARP_SIZE];
    const floatX *x = logits + (size_t)blockIdx.x * ld;
    float v = -INFINITY;
    int i = INT_MAX;
    for (int k = threadIdx.x; k < V; k += ARGMAX_THREADS) argmax_merge(v, i, __bfloat162float(x[k]), k);
    for (int o = 16; o > 0; o >>= 1) argmax_merge(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    if (lane == 0) { sv[warp] = v; si[warp] = i; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < ARGMAX_THREADS / WARP_SIZE; w++) argmax_merge(v, i, sv[w], si[w]);
        out[blockIdx.x] = i == INT_MAX ? 0 : i;
    }
}
static void logits_argmax(int *out, const floatX *logits, int N, int V, int ld, cudaStream_t stream) {
    if (ld < V) fatal("logits_argmax: row stride %d < V = %d", ld, V);
    launch_pdl(logits_argmax_kernel, N, ARGMAX_THREADS, 0, stream, out, logits, V, ld);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_FUSED_CLASSIFIER_CUH
