/*
 cuda_emu.h: a CPU emulation of the part of the CUDA runtime and device language that sessa.c's kernels use,
 so that the real llmc/*.cuh kernels run (after dev/cuda_emu/transform.py) on a machine with no GPU.
 It stands in for <cuda_runtime.h>, <cuda_bf16.h> and <mma.h> (see include/): the repo's own
 llmc/cuda_common.h is compiled unchanged on top of it.

 What it models
 - Launches: `k<<<grid, block, smem, stream>>>(args)` becomes emu_launch(grid, block, smem, stream, body).
   Blocks run one after another; inside a block every thread is a fiber (ucontext) with its own stack,
   so thread-local variables, early returns and divergent control flow behave as on the GPU.
 - __syncthreads is a real barrier: a thread waits there until every thread of the block that has not
   exited waits there too. Warp shuffles are a real warp barrier (all live lanes of the warp); __syncwarp
   (full mask only) is one too, and every lane of the warp must be live.
   A block where some threads wait at __syncthreads and others at a shuffle can never proceed: that is
   reported (fatal) as a divergent barrier, as is a shuffle that reads a lane that has exited.
 - Uninitialised memory is NaN: cudaMalloc'd buffers and dynamic shared memory (per block) are filled with
   0xff bytes (a NaN in fp32 and in bf16), so a kernel that reads what nobody wrote produces NaN.
 - Launch configuration errors (block > 1024 threads, grid.y/z > 65535, dynamic shared memory above
   the H100's 227 KiB) are returned by cudaGetLastError, as the runtime does.
 - wmma (nvcuda::wmma) 16x16x16 fragments: each lane holds the whole tile, mma_sync is an fp32 loop;
   bf16 inputs are exact, __float_to_tf32 rounds to 10 mantissa bits (round half away, as cvt.rna).
   Loads and stores check the alignment that the API requires (256-bit pointers, 16-byte strides).
 - __nv_bfloat16 conversions round to nearest even (utils.h), as __float2bfloat16 does.
 - The PTX wrappers of llmc/mma.cuh, with the exact per-lane register layouts of the PTX ISA (see there):
   mma_bf16_16816 (mma.sync m16n8k16 bf16 -> fp32: every lane puts its fragments, the warp meets, each lane
   computes its 4 outputs from the others' registers, in fp32, k in order), ldmatrix_x4 (.trans) (lanes 8i..8i+7
   give the row addresses of matrix i; rows must be 16-byte aligned and inside the launch's dynamic shared memory),
   cp_async16 + cp_async_commit + cp_async_wait<N> (the 16 source bytes are read at issue, and written to shared
   memory only when a wait covers their group: a read before the wait sees the old contents, NaN at first).
   These are warp-collective: every lane of the warp must be live (an exited lane is fatal).
 What it does not model
 - Timing, occupancy, bank conflicts, the memory model across blocks (blocks never overlap here, so a
   missing __threadfence or an inter-block race is not seen), atomics (atomicAdd on unsigned int and the L2 adds
   red_add_f32x2/x4 are plain read-modify-writes; the counters of sem_wait_eq / sem_release_inc are plain reads
   and writes, a wait that the blocks before did not satisfy being fatal), streams (everything is synchronous).
 - Summation order of the hardware: wmma sums, erff/expf and friends are the host's, so results agree
   with the GPU to rounding, not bitwise.
 - Static __shared__ arrays are plain statics: kept from block to block, not NaN-filled per block.
 - Only the API below: what the project's kernels call. Anything else fails to compile, on purpose.
*/
#ifndef SESSA_CUDA_EMU_H
#define SESSA_CUDA_EMU_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <stdint.h>
#include <time.h>
#include <ucontext.h>
#include <sys/mman.h>
#include <functional>
#include <map>
#include <vector>
#include <cuda.h>   // include/cuda.h: the tensor-map types
#include "../../llmc/utils.h"

#define __CUDACC__ 1            // the device parts of llmc/cuda_common.h (warp reductions) are compiled
#define __global__ static       // a kernel is a host function here; static: every test file has its own
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))

#define EMU_MAX_THREADS 1024                 // threads per block
#define EMU_MAX_DYN_SMEM_BYTES_ (227 * 1024) // the H100's opt-in shared memory per block
#define EMU_STACK_BYTES (128 * 1024)         // per fiber

// ----------------------------------------------------------------------------
// runtime API: errors, memory, streams, events (all synchronous)

typedef enum {
    cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorInvalidConfiguration = 9,
    cudaErrorNotSupported = 801,
} cudaError_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize, cudaFuncAttributePreferredSharedMemoryCarveout };
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType_t;
#define cudaStreamNonBlocking 1
#define cudaStreamDefault 0
#define cudaEventDisableTiming 2
typedef struct emu_stream *cudaStream_t;   // never dereferenced: every call runs at once, in order
typedef struct emu_event *cudaEvent_t;

static cudaError_t emu_last_error = cudaSuccess;
static const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNotSupported: return "operation not supported";
    }
    return "unknown error";
}
static cudaError_t cudaGetLastError(void) { cudaError_t e = emu_last_error; emu_last_error = cudaSuccess; return e; }

// device memory is host memory, 256-byte aligned as cudaMalloc's, filled with 0xff bytes: NaN in fp32 and bf16,
// so reads of unwritten data show
static cudaError_t cudaMalloc(void **p, size_t n) {
    *p = aligned_alloc(256, (n / 256 + 1) * 256);
    if (*p == NULL) return cudaErrorMemoryAllocation;
    memset(*p, 0xff, n);
    return cudaSuccess;
}
static cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
// pinned host memory is plain host memory here (copies are synchronous anyway)
static cudaError_t cudaMallocHost(void **p, size_t n) { *p = malloc(n); return *p == NULL ? cudaErrorMemoryAllocation : cudaSuccess; }
static cudaError_t cudaFreeHost(void *p) { free(p); return cudaSuccess; }
static cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind) { memmove(d, s, n); return cudaSuccess; }
static cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t = 0) { return cudaMemcpy(d, s, n, k); }
static cudaError_t cudaMemcpy2D(void *d, size_t dpitch, const void *s, size_t spitch, size_t width, size_t rows, cudaMemcpyKind) {
    if (width > dpitch || width > spitch) return cudaErrorInvalidValue;
    for (size_t r = 0; r < rows; r++) memmove((char *)d + r * dpitch, (const char *)s + r * spitch, width);
    return cudaSuccess;
}
static cudaError_t cudaMemcpy2DAsync(void *d, size_t dpitch, const void *s, size_t spitch, size_t width, size_t rows,
                                     cudaMemcpyKind k, cudaStream_t = 0) { return cudaMemcpy2D(d, dpitch, s, spitch, width, rows, k); }
// a __device__ variable is a host variable here (llmc/feedback.cuh's FB_PHASES clocks)
template <class T> static cudaError_t cudaMemcpyFromSymbol(void *d, const T &sym, size_t n, size_t off = 0,
                                                           cudaMemcpyKind = cudaMemcpyDeviceToHost) {
    memcpy(d, (const char *)&sym + off, n); return cudaSuccess;
}
template <class T> static cudaError_t cudaMemcpyToSymbol(T &sym, const void *s, size_t n, size_t off = 0,
                                                         cudaMemcpyKind = cudaMemcpyHostToDevice) {
    memcpy((char *)&sym + off, s, n); return cudaSuccess;
}
static cudaError_t cudaMemset(void *d, int v, size_t n) { memset(d, v, n); return cudaSuccess; }
static cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t = 0) { return cudaMemset(d, v, n); }
static cudaError_t cudaSetDevice(int) { return cudaSuccess; }
static cudaError_t cudaGetDevice(int *d) { *d = 0; return cudaSuccess; }
static cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
static cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
static cudaError_t cudaStreamCreate(cudaStream_t *s) { *s = NULL; return cudaSuccess; }
static cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { *s = NULL; return cudaSuccess; }
// priorities: accepted and ignored (work runs in issue order); the H200's range (least 0, greatest -5)
static cudaError_t cudaStreamCreateWithPriority(cudaStream_t *s, unsigned, int) { *s = NULL; return cudaSuccess; }
static cudaError_t cudaDeviceGetStreamPriorityRange(int *least, int *greatest) { *least = 0; *greatest = -5; return cudaSuccess; }
static cudaError_t cudaStreamGetPriority(cudaStream_t, int *p) { *p = 0; return cudaSuccess; }
static cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
static cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
static cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned = 0) { return cudaSuccess; }
// an event holds the host time of its record: the work is synchronous, so that is when the work before it ended
struct emu_event { double ms; };
static cudaError_t cudaEventCreate(cudaEvent_t *e) { *e = new emu_event{ 0.0 }; return cudaSuccess; }
static cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) { return cudaEventCreate(e); }
static cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = 0) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (e != NULL) e->ms = ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
    return cudaSuccess;
}
static cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
static cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) { *ms = (float)(b->ms - a->ms); return cudaSuccess; }
static cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
template <class F> static cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) { return cudaSuccess; }
// CUDA graphs: not emulated. Stream capture reports cudaErrorNotSupported, so code that uses graphs takes
// its ungraphed fallback here (the GPU checks graphs against that fallback bit for bit).
typedef struct emu_graph *cudaGraph_t;
typedef struct emu_graph_exec *cudaGraphExec_t;
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal, cudaStreamCaptureModeThreadLocal, cudaStreamCaptureModeRelaxed };
static cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) { return cudaErrorNotSupported; }
static cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g) { *g = NULL; return cudaErrorNotSupported; }
enum cudaStreamCaptureStatus { cudaStreamCaptureStatusNone, cudaStreamCaptureStatusActive, cudaStreamCaptureStatusInvalidated };
static cudaError_t cudaStreamIsCapturing(cudaStream_t, cudaStreamCaptureStatus *s) { *s = cudaStreamCaptureStatusNone; return cudaSuccess; }
static const unsigned long long cudaGraphInstantiateFlagUseNodePriority = 8;
static cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t, unsigned long long = 0) { *e = NULL; return cudaErrorNotSupported; }
static cudaError_t cudaGraphLaunch(cudaGraphExec_t, cudaStream_t) { return cudaErrorNotSupported; }
static cudaError_t cudaGraphDestroy(cudaGraph_t) { return cudaSuccess; }
static cudaError_t cudaGraphExecDestroy(cudaGraphExec_t) { return cudaSuccess; }

struct cudaDeviceProp { char name[256]; int major, minor, multiProcessorCount; size_t totalGlobalMem, sharedMemPerBlockOptin; };
static cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CPU emulation (cuda_emu.h)");
    p->major = 9; p->minor = 0; p->multiProcessorCount = 1;
    p->totalGlobalMem = (size_t)16 << 30; p->sharedMemPerBlockOptin = EMU_MAX_DYN_SMEM_BYTES_;
    return cudaSuccess;
}

// ----------------------------------------------------------------------------
// device types and intrinsics

struct dim3 { unsigned x, y, z; dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
struct float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) uint4 { unsigned int x, y, z, w; };
static inline float2 make_float2(float x, float y) { float2 v; v.x = x; v.y = y; return v; }
struct __nv_bfloat16 { uint16_t x; };
static inline float __bfloat162float(__nv_bfloat16 h) { return bf16_to_float(h.x); }
static inline __nv_bfloat16 __float2bfloat16(float f) { __nv_bfloat16 h; h.x = float_to_bf16(f); return h; }
// clock64: a count that only grows (the emulator has no cycles; FB_PHASES reads it, meaningless here)
static long long emu_clock = 0;
static inline long long clock64(void) { return ++emu_clock; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }

static dim3 threadIdx, blockIdx, blockDim, gridDim;

// ----------------------------------------------------------------------------
// the block scheduler: one fiber per thread; a fiber runs until it waits (barrier or warp sync) or exits

enum { EMU_READY, EMU_AT_BARRIER, EMU_AT_WARP, EMU_EXITED, EMU_AT_MBAR, EMU_AT_NAMED };
// Switching: a thread enters its stack once through setcontext (ucontext); every later switch is a
// __builtin_setjmp/__builtin_longjmp pair (no system call, unlike swapcontext, and no _FORTIFY_SOURCE
// check against jumping between stacks, unlike longjmp).
static ucontext_t emu_ctx[EMU_MAX_THREADS];
static intptr_t emu_sched_jmp[5], emu_thread_jmp[EMU_MAX_THREADS][5];
static char emu_state[EMU_MAX_THREADS], emu_started[EMU_MAX_THREADS];
static int emu_cur;                              // linear id of the running thread
static char *emu_stacks;                         // EMU_MAX_THREADS stacks, mapped once, touched as used
static std::function<void()> *emu_body;
static char *emu_dyn_smem;                       // the launch's dynamic shared memory
static float emu_shfl_slot[EMU_MAX_THREADS];
static size_t emu_dyn_smem_bytes;                // its size
struct emu_cp_copy { char *dst; unsigned char data[16]; long group; };
static std::vector<emu_cp_copy> emu_cp_pending[EMU_MAX_THREADS];   // cp.async copies in flight, per thread
static long emu_cp_committed[EMU_MAX_THREADS];                     // groups committed so far, per thread
// mbarriers (by shared-memory offset) and named barriers of the running block; what a waiting thread waits on
struct emu_mbar_write { uint32_t off; uint16_t v; };
struct emu_mbar { int count, pending, phase; long tx, tx_flight; std::vector<emu_mbar_write> writes; };
static std::map<uint32_t, emu_mbar> emu_mbars;
static int emu_nbar_count[16];
static uint32_t emu_wait_on[EMU_MAX_THREADS];

__attribute__((noipa, noreturn)) static void emu_to_scheduler(void) { __builtin_longjmp(emu_sched_jmp, 1); }
__attribute__((noipa, noreturn)) static void emu_to_thread(int t) { __builtin_longjmp(emu_thread_jmp[t], 1); }

// the running thread waits (state EMU_AT_BARRIER or EMU_AT_WARP) until the scheduler releases it
__attribute__((noipa)) static void emu_wait(int state) {
    emu_state[emu_cur] = (char)state;
    if (__builtin_setjmp(emu_thread_jmp[emu_cur]) == 0) emu_to_scheduler();
}
static void __syncthreads(void) { emu_wait(EMU_AT_BARRIER); }
// blocks run one after another and threads one at a time: a fence orders nothing more, an atomic is a plain
// read-modify-write, an L2 load a load (the GPU-only hazards these guard against are not modelled: see above)
static void __threadfence(void) {}
static unsigned int atomicAdd(unsigned int *p, unsigned int v) { unsigned int old = *p; *p = old + v; return old; }
template <class T> static T __ldg(const T *p) { return *p; }
template <class T> static T __ldcg(const T *p) { return *p; }
template <class T> static void __stcg(T *p, T v) { *p = v; }
static void red_add_f32x2(float *p, float a, float b) { p[0] += a; p[1] += b; }   // (llmc/attention_sm90_bwd.cuh)
static void red_add_f32x4(float *p, float4 v) { p[0] += v.x; p[1] += v.y; p[2] += v.z; p[3] += v.w; }
// the TMA bulk copies and reductions shared -> global (llmc/attention_sm90_bwd.cuh versions 14, 16): the source is
// read at issue, global memory written (copied or added in fp32) only when the thread's bulk_wait<n> covers it: the
// ops of each bulk_commit form a group, and bulk_wait<n> completes the oldest groups until at most n are pending
// (ops issued after the last commit are in no group: a wait does not cover them, as cp.async.bulk.wait_group)
struct emu_bulk_op { float *dst; std::vector<float> src; bool add; };
static std::vector<emu_bulk_op> emu_bulk_pending[EMU_MAX_THREADS];
static std::vector<std::vector<emu_bulk_op>> emu_bulk_groups[EMU_MAX_THREADS];   // committed, oldest first
static void bulk_s2g(float *dst, const float *src, int bytes, bool add) {
    if (bytes % 16 || (uintptr_t)dst % 16 || (uintptr_t)src % 16)
        fatal("cuda_emu: a bulk copy of %d bytes from %p to %p: 16-byte multiples and alignment only", bytes,
              (const void *)src, (void *)dst);
    emu_bulk_pending[emu_cur].push_back({dst, std::vector<float>(src, src + bytes / 4), add});
}
static void bulk_commit(void) {
    emu_bulk_groups[emu_cur].push_back(std::move(emu_bulk_pending[emu_cur]));
    emu_bulk_pending[emu_cur].clear();
}
template <int N> static void bulk_wait(void) {
    std::vector<std::vector<emu_bulk_op>> &gs = emu_bulk_groups[emu_cur];
    while (gs.size() > (size_t)N) {
        for (const emu_bulk_op &op : gs.front())
            for (size_t i = 0; i < op.src.size(); i++) op.dst[i] = op.add ? op.dst[i] + op.src[i] : op.src[i];
        gs.erase(gs.begin());
    }
}
static void fence_proxy_async_global(void) {}
// the counters that order the adds of llmc/attention_sm90_bwd.cuh's version 12 (sem_wait_eq: one thread waits until
// the counter equals v; sem_release_inc: counts one more, after the adds). Blocks run one after another here, so a
// wait that the blocks before have not satisfied would wait forever (a deadlock or a wrong order on the GPU): fatal
static void sem_wait_eq(const unsigned *c, unsigned v) {
    if (*c != v) fatal("cuda_emu: block (%u,%u,%u) thread %d waits for counter %p to be %u, it is %u, and the blocks "
                       "before have finished: it would wait forever", blockIdx.x, blockIdx.y, blockIdx.z, emu_cur,
                       (const void *)c, v, *c);
}
static void sem_release_inc(unsigned *c) { *c += 1; }

// every live lane of the warp puts its value, waits for the others, reads its source lane, waits again
// (so that no lane overwrites its slot before every lane has read it)
static float emu_shuffle(float v, int src_lane) {
    int t = emu_cur, src = (t & ~31) | (src_lane & 31);
    emu_shfl_slot[t] = v;
    emu_wait(EMU_AT_WARP);
    if (src >= (int)(blockDim.x * blockDim.y * blockDim.z) || emu_state[src] == EMU_EXITED)
        fatal("cuda_emu: block (%u,%u,%u) thread %d shuffles from lane %d, which has exited",
              blockIdx.x, blockIdx.y, blockIdx.z, t, src);
    float r = emu_shfl_slot[src];
    emu_wait(EMU_AT_WARP);
    return r;
}
static float __shfl_xor_sync(unsigned, float v, int lane_mask) { return emu_shuffle(v, (emu_cur & 31) ^ lane_mask); }
static float __shfl_sync(unsigned, float v, int src_lane) { return emu_shuffle(v, src_lane); }
static unsigned __shfl_sync(unsigned, unsigned v, int src_lane) {   // the bits, through the float slot
    float f;
    memcpy(&f, &v, sizeof f);
    f = emu_shuffle(f, src_lane);
    memcpy(&v, &f, sizeof v);
    return v;
}
// ints by their bits too (a plain int argument would otherwise convert to float and back: INT_MAX overflowed)
static int __shfl_sync(unsigned m, int v, int src_lane) { return (int)__shfl_sync(m, (unsigned)v, src_lane); }
static unsigned __shfl_xor_sync(unsigned m, unsigned v, int lane_mask) { return __shfl_sync(m, v, (emu_cur & 31) ^ lane_mask); }
static int __shfl_xor_sync(unsigned m, int v, int lane_mask) { return (int)__shfl_xor_sync(m, (unsigned)v, lane_mask); }
static float __shfl_down_sync(unsigned, float v, unsigned delta) {
    int src = (emu_cur & 31) + (int)delta;
    return emu_shuffle(v, src < 32 ? src : (emu_cur & 31));   // out of the warp: a lane gets its own value
}

static void emu_wgmma_check_retired(void);
static void emu_fiber_main(void) {
    (*emu_body)();
    emu_wgmma_check_retired();
    emu_state[emu_cur] = EMU_EXITED;
    emu_to_scheduler();
}

// runs thread t until it waits or exits
__attribute__((noipa)) static void emu_resume(int t) {
    if (__builtin_setjmp(emu_sched_jmp) == 0) {
        if (emu_started[t]) emu_to_thread(t);
        emu_started[t] = 1;
        setcontext(&emu_ctx[t]);
    }
}

static void emu_wgmma_reset(int t);
// runs every thread of the current block to its end
static void emu_run_block(int n) {
    for (int t = 0; t < n; t++) {
        getcontext(&emu_ctx[t]);
        emu_ctx[t].uc_stack.ss_sp = emu_stacks + (size_t)t * EMU_STACK_BYTES;
        emu_ctx[t].uc_stack.ss_size = EMU_STACK_BYTES;
        emu_ctx[t].uc_link = NULL;   // emu_fiber_main never returns
        makecontext(&emu_ctx[t], emu_fiber_main, 0);
        emu_state[t] = EMU_READY;
        emu_started[t] = 0;
        emu_cp_pending[t].clear();
        emu_cp_committed[t] = 0;
        emu_wgmma_reset(t);
    }
    emu_mbars.clear();
    memset(emu_nbar_count, 0, sizeof emu_nbar_count);
    for (;;) {
        int ran = 0;
        for (int t = 0; t < n; t++) {
            if (emu_state[t] != EMU_READY) continue;
            emu_cur = t;
            threadIdx = dim3(t % blockDim.x, t / blockDim.x % blockDim.y, t / (blockDim.x * blockDim.y));
            emu_resume(t);
            ran = 1;
        }
        if (ran) continue;
        // nobody can run: release the warps whose live lanes all wait at a shuffle, else the barrier
        int live = 0, at_barrier = 0, released = 0, at_mbar = 0, at_named = 0;
        for (int w = 0; w < n; w += 32) {
            int wlive = 0, wat = 0;
            for (int t = w; t < w + 32 && t < n; t++) {
                wlive += emu_state[t] != EMU_EXITED;
                wat += emu_state[t] == EMU_AT_WARP;
                at_barrier += emu_state[t] == EMU_AT_BARRIER;
                at_mbar += emu_state[t] == EMU_AT_MBAR;
                at_named += emu_state[t] == EMU_AT_NAMED;
            }
            live += wlive;
            if (wat > 0 && wat == wlive) {
                for (int t = w; t < w + 32 && t < n; t++) if (emu_state[t] == EMU_AT_WARP) emu_state[t] = EMU_READY;
                released = 1;
            }
        }
        if (released) continue;
        if (live == 0) return;
        if (at_barrier != live)
            fatal("cuda_emu: block (%u,%u,%u) deadlocks: %d threads wait at __syncthreads, %d at an mbarrier, %d at "
                  "a named barrier, %d at a warp shuffle (divergent barrier, or a wait nobody completes)", blockIdx.x,
                  blockIdx.y, blockIdx.z, at_barrier, at_mbar, at_named, live - at_barrier - at_mbar - at_named);
        for (int t = 0; t < n; t++) if (emu_state[t] == EMU_AT_BARRIER) emu_state[t] = EMU_READY;
    }
}

// CUDA_EMU_LAUNCHES=1 in the environment: at exit the run's kernel launches and cuBLASLt products are printed
// (cublas_emu.h counts those), e.g. per training step as the difference of a 2-step and a 1-step run
static long long emu_kernel_launches = 0, emu_gemm_launches = 0;
static void emu_print_launches(void) {
    fprintf(stderr, "cuda_emu: %lld kernel launches, %lld cuBLASLt products\n", emu_kernel_launches, emu_gemm_launches);
}
static void emu_count_launch(long long *counter) {
    static int registered = 0;
    if (!registered) { registered = 1; if (getenv("CUDA_EMU_LAUNCHES") != NULL) atexit(emu_print_launches); }
    (*counter)++;
}

static void emu_launch(dim3 grid, dim3 block, size_t smem, cudaStream_t, std::function<void()> body) {
    size_t n = (size_t)block.x * block.y * block.z;
    if (n == 0 || n > EMU_MAX_THREADS || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        grid.y > 65535 || grid.z > 65535 || smem > EMU_MAX_DYN_SMEM_BYTES_) {
        emu_last_error = cudaErrorInvalidConfiguration;   // the kernel does not run, as on the GPU
        return;
    }
    emu_count_launch(&emu_kernel_launches);
    if (emu_stacks == NULL) {
        emu_stacks = (char *)mmap(NULL, (size_t)EMU_MAX_THREADS * EMU_STACK_BYTES, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (emu_stacks == MAP_FAILED) fatal("cuda_emu: cannot map the fiber stacks");
    }
    static char dyn[EMU_MAX_DYN_SMEM_BYTES_] __attribute__((aligned(1024)));
    emu_body = &body; blockDim = block; gridDim = grid; emu_dyn_smem = dyn; emu_dyn_smem_bytes = smem;
    for (unsigned bz = 0; bz < grid.z; bz++) for (unsigned by = 0; by < grid.y; by++) for (unsigned bx = 0; bx < grid.x; bx++) {
        blockIdx = dim3(bx, by, bz);
        memset(dyn, 0xff, smem);   // shared memory starts as garbage
        emu_run_block((int)n);
    }
}
static void emu_launch(dim3 grid, dim3 block, std::function<void()> body) { emu_launch(grid, block, 0, 0, body); }
static void emu_launch(dim3 grid, dim3 block, size_t smem, std::function<void()> body) { emu_launch(grid, block, smem, 0, body); }

// cudaLaunchKernelEx: a launch like <<<grid, block, smem, stream>>>; the attributes (programmatic dependent launch)
// change only when the kernel may start, and kernels run in order here
enum cudaLaunchAttributeID { cudaLaunchAttributeProgrammaticStreamSerialization = 1 };
union cudaLaunchAttributeValue { int programmaticStreamSerializationAllowed; };
struct cudaLaunchAttribute { cudaLaunchAttributeID id; cudaLaunchAttributeValue val; };
struct cudaLaunchConfig_t { dim3 gridDim, blockDim; size_t dynamicSmemBytes; cudaStream_t stream; cudaLaunchAttribute *attrs; unsigned numAttrs; };
template <typename... KArgs, typename... Args>
static cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t *cfg, void (*kernel)(KArgs...), Args... args) {
    emu_launch(cfg->gridDim, cfg->blockDim, cfg->dynamicSmemBytes, cfg->stream, [=]() { kernel(args...); });
    return emu_last_error;
}

// ----------------------------------------------------------------------------
// llmc/mma.cuh: mma.sync, ldmatrix, cp.async with the PTX ISA's per-lane layouts (lane = 4g + t)

struct emu_lane_regs { uint32_t r[10]; const void *p; };
static emu_lane_regs emu_lane_slot[EMU_MAX_THREADS];

// the warp of the running thread meets (after each lane stored its slot); every lane must be live
static void emu_warp_meet(const char *what) {
    emu_wait(EMU_AT_WARP);
    int w = emu_cur & ~31, n = (int)(blockDim.x * blockDim.y * blockDim.z);
    for (int t = w; t < w + 32; t++)
        if (t >= n || emu_state[t] == EMU_EXITED)
            fatal("cuda_emu: block (%u,%u,%u) thread %d: %s with lane %d of its warp absent or exited "
                  "(warp-collective: all 32 lanes must take part)", blockIdx.x, blockIdx.y, blockIdx.z, emu_cur, what, t & 31);
}
// __syncwarp (full mask): the warp meets (every lane must be live), then meets again so that no lane runs on
// (possibly to its exit) before every lane has checked the others
static void __syncwarp(unsigned mask = 0xffffffffu) {
    if (mask != 0xffffffffu) fatal("cuda_emu: __syncwarp with mask %#x: only the full warp is emulated", mask);
    emu_warp_meet("__syncwarp");
    emu_wait(EMU_AT_WARP);
}
static inline uint32_t emu_u32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float emu_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline float emu_bf16_half(uint32_t r, int hi) { return bf16_to_float((uint16_t)(hi ? r >> 16 : r & 0xffff)); }

// d += a b: A 16x16, B 16x8 (k x n), C 16x8; a[i] holds A(g + 8(i&1), 2t + 8(i>>1) + {0,1}), b[i] holds
// B(2t + 8i + {0,1}, g), c[i] is C(g + 8(i>>1), 2t + (i&1))
static void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    emu_lane_regs &me = emu_lane_slot[emu_cur];
    for (int i = 0; i < 4; i++) me.r[i] = a[i];
    me.r[4] = b[0]; me.r[5] = b[1];
    emu_warp_meet("mma.sync");
    int w = emu_cur & ~31, lane = emu_cur & 31, g = lane / 4, t = lane % 4;
    float out[4];
    for (int i = 0; i < 4; i++) {
        int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
        float acc = d[i];
        for (int k = 0; k < 16; k++) {
            // A(row, k) lives in lane 4(row%8) + (k%8)/2, register (row>=8) + 2(k>=8), half k%2
            float av = emu_bf16_half(emu_lane_slot[w + 4 * (row % 8) + (k % 8) / 2].r[(row >= 8) + 2 * (k >= 8)], k & 1);
            // B(k, col) lives in lane 4col + (k%8)/2, register k>=8, half k%2
            float bv = emu_bf16_half(emu_lane_slot[w + 4 * col + (k % 8) / 2].r[4 + (k >= 8)], k & 1);
            acc += av * bv;
        }
        out[i] = acc;
    }
    emu_wait(EMU_AT_WARP);   // nobody overwrites its slot before every lane has read it
    for (int i = 0; i < 4; i++) d[i] = out[i];
}

static void emu_check_smem_row(const void *p, const char *what) {
    const char *c = (const char *)p;
    if ((uintptr_t)c % 16 || c < emu_dyn_smem || c + 16 > emu_dyn_smem + emu_dyn_smem_bytes)
        fatal("cuda_emu: block (%u,%u,%u) thread %d: %s address %p is not a 16-byte aligned row inside the "
              "launch's dynamic shared memory [%p, +%zu)", blockIdx.x, blockIdx.y, blockIdx.z, emu_cur, what, p,
              (void *)emu_dyn_smem, emu_dyn_smem_bytes);
}
// lanes 8i..8i+7 give the rows of 8x8 b16 matrix i; register i of lane l: row l/4, columns 2(l%4), 2(l%4)+1
// (trans: rows 2(l%4), 2(l%4)+1 of column l/4)
static void emu_ldmatrix_x4(uint32_t r[4], const void *row, bool trans, const char *what) {
    emu_check_smem_row(row, what);
    emu_lane_slot[emu_cur].p = row;
    emu_warp_meet(what);
    int w = emu_cur & ~31, lane = emu_cur & 31;
    uint32_t out[4];
    for (int i = 0; i < 4; i++) {
        uint16_t lo, hi;
        if (!trans) {
            const uint16_t *src = (const uint16_t *)emu_lane_slot[w + 8 * i + lane / 4].p;
            lo = src[2 * (lane % 4)]; hi = src[2 * (lane % 4) + 1];
        } else {
            lo = ((const uint16_t *)emu_lane_slot[w + 8 * i + 2 * (lane % 4)].p)[lane / 4];
            hi = ((const uint16_t *)emu_lane_slot[w + 8 * i + 2 * (lane % 4) + 1].p)[lane / 4];
        }
        out[i] = (uint32_t)lo | (uint32_t)hi << 16;
    }
    emu_wait(EMU_AT_WARP);
    for (int i = 0; i < 4; i++) r[i] = out[i];
}
static void ldmatrix_x4(uint32_t r[4], const void *row) { emu_ldmatrix_x4(r, row, false, "ldmatrix"); }
static void ldmatrix_x4_trans(uint32_t r[4], const void *row) { emu_ldmatrix_x4(r, row, true, "ldmatrix.trans"); }

// cp.async: the source is read now, shared memory is written when a wait covers the copy's group
static void cp_async16(void *dst, const void *src, bool valid) {
    emu_check_smem_row(dst, "cp.async destination");
    if (valid && (uintptr_t)src % 16)
        fatal("cuda_emu: block (%u,%u,%u) thread %d: cp.async source %p is not 16-byte aligned",
              blockIdx.x, blockIdx.y, blockIdx.z, emu_cur, src);
    emu_cp_copy c;
    c.dst = (char *)dst;
    c.group = emu_cp_committed[emu_cur];
    if (valid) memcpy(c.data, src, 16); else memset(c.data, 0, 16);
    emu_cp_pending[emu_cur].push_back(c);
}
static void cp_async_commit(void) { emu_cp_committed[emu_cur]++; }
// completes this thread's copies of every committed group but the N newest
template <int N> static void cp_async_wait(void) {
    std::vector<emu_cp_copy> &q = emu_cp_pending[emu_cur];
    long done_below = emu_cp_committed[emu_cur] - N;
    size_t keep = 0;
    for (size_t i = 0; i < q.size(); i++) {
        if (q[i].group < done_below) memcpy(q[i].dst, q[i].data, 16);
        else q[keep++] = q[i];
    }
    q.resize(keep);
}

// programmatic dependent launch: llmc/cuda_common.h's grid_dep_wait / grid_dep_launch_dependents compile to empty
// functions here (no __CUDA_ARCH__): kernels run one after the other, so the kernel ahead has always ended

// ----------------------------------------------------------------------------
// llmc/mma.cuh's Hopper wrappers (wgmma), asynchronous as the PTX ISA allows: a wgmma's product is computed when
// it is issued (the accumulator's input: d, or the result of the same thread's wgmma into d still in flight) and
// d is then NaN until a wgmma_wait retires its commit group, which writes the result; at retirement the product
// is computed again in part (each lane's first and last element: all 16 rows of the warp, 8 columns) from the
// operands as they are then (the A registers this lane gave, shared memory) and must be the same, so a register or shared-memory operand changed before the wait (a stage handed back too early, P's
// fragments rewritten under their product) is reported, and so is reading the accumulator before the wait (NaN),
// a wgmma never waited for (at the thread's end) and a wait for groups not committed. wgmma_fence and the operand
// fences are no-ops. Shared memory is read
// through the descriptor with the PTX ISA's canonical 128-byte-swizzle layouts (ISA 9.7.15.5.1.2, in bytes,
// bf16; the swizzle XORs address bits 4-6 with bits 7-9, addresses relative to the dynamic shared memory):
//   K-major  element (mn, k): start + (mn % 8) 128 + (mn / 8) SBO + 2k
//   MN-major element (mn, k): start + 2 (mn % 64) + (mn / 64) LBO + (k % 8) 128 + (k / 8) SBO
// Each warp of the warpgroup computes its 16 rows (16w..16w+15 of the 64) from its own lanes' registers, so a
// warp meet suffices; every lane must take part. Sums in fp32, k in order.
#define SESSA_SM90A 1
static uint32_t __cvta_generic_to_shared(const void *p) {
    const char *c = (const char *)p;
    if (c < emu_dyn_smem || c > emu_dyn_smem + emu_dyn_smem_bytes)
        fatal("cuda_emu: thread %d: __cvta_generic_to_shared(%p) outside the dynamic shared memory", emu_cur, p);
    return (uint32_t)(c - emu_dyn_smem);
}
static void fence_proxy_async(void) {}
static void wgmma_fence(void) {}
template <int R> static void wgmma_fence_operand(float (&)[R]) {}
static float emu_wgmma_elem(uint64_t desc, int mn, int k, bool mn_major) {
    uint32_t start = (uint32_t)(desc & 0x3FFF) << 4, lbo = (uint32_t)((desc >> 16) & 0x3FFF) << 4;
    uint32_t sbo = (uint32_t)((desc >> 32) & 0x3FFF) << 4;
    if ((desc >> 62) != 1 || ((desc >> 49) & 7) != 0)
        fatal("cuda_emu: wgmma descriptor %#llx: only the 128-byte swizzle with base offset 0 is emulated", (unsigned long long)desc);
    uint32_t off = mn_major ? start + 2 * (mn % 64) + (mn / 64) * lbo + (k % 8) * 128 + (k / 8) * sbo
                            : start + (mn % 8) * 128 + (mn / 8) * sbo + 2 * k;
    off ^= ((off >> 7) & 7) << 4;
    if (off + 2 > emu_dyn_smem_bytes)
        fatal("cuda_emu: thread %d: wgmma reads byte %u, past the dynamic shared memory (%zu)", emu_cur, off, emu_dyn_smem_bytes);
    uint16_t v;
    memcpy(&v, emu_dyn_smem + off, 2);
    return bf16_to_float(v);
}
// one wgmma of a thread in flight: its accumulator d (n floats), the result, what it read (the warp's register A
// slots, this lane's A registers and their values at issue, the descriptors) and its commit group (-1: open)
struct emu_wgmma_op {
    float *d;
    int n, group;
    std::vector<float> in, out;                  // the accumulator's input and the result
    uint32_t warp_a[32][4], lane_a[4];
    const uint32_t *a;
    uint64_t da, db;
    bool b_mn;
};
static std::vector<emu_wgmma_op> emu_wg_pending[EMU_MAX_THREADS];   // per thread, in issue order
static long emu_wg_committed[EMU_MAX_THREADS];                      // commit groups so far, per thread
// element i of this lane's part of the product (row g + 8((i>>1)&1) of its warp's 16, column 8(i/4) + 2t + (i&1))
static float emu_wgmma_out(int i, float in, const uint32_t (*warp_a)[4], bool reg_a, uint64_t da, uint64_t db, bool b_mn) {
    int lane = emu_cur & 31, g = lane / 4, t = lane % 4, wrow = 16 * ((emu_cur / 32) % 4);
    int row = g + 8 * ((i >> 1) & 1), col = 8 * (i / 4) + 2 * t + (i & 1);
    float acc = in;
    for (int k = 0; k < 16; k++) {
        float av = reg_a ? emu_bf16_half(warp_a[4 * (row % 8) + (k % 8) / 2][(row >= 8) + 2 * (k >= 8)], k & 1)
                         : emu_wgmma_elem(da, wrow + row, k, false);
        acc += av * emu_wgmma_elem(db, col, k, b_mn);
    }
    return acc;
}
// d (this lane's part of 64 x N) = (scale_d ? d : 0) + A B, A from a (register A: the mma.sync A layout of this
// warp's 16 rows, in the lane slots) or the K-major descriptor da, B from db (K-major, or MN-major when b_mn)
template <int N>
static void emu_wgmma(float (&d)[N / 2], const uint32_t *a, uint64_t da, uint64_t db, bool b_mn, int scale_d) {
    emu_lane_regs &me = emu_lane_slot[emu_cur];
    if (a) for (int i = 0; i < 4; i++) me.r[i] = a[i];
    emu_warp_meet("wgmma");
    std::vector<emu_wgmma_op> &q = emu_wg_pending[emu_cur];
    emu_wgmma_op op;
    op.d = d; op.n = N / 2; op.group = -1; op.a = a; op.da = da; op.db = db; op.b_mn = b_mn;
    op.in.assign(N / 2, 0.0f);
    op.out.resize(N / 2);
    if (scale_d) {
        const float *src = d;                    // the newest result into d still in flight, else d
        for (size_t i = q.size(); i-- > 0;) if (q[i].d == d) { src = q[i].out.data(); break; }
        for (int i = 0; i < N / 2; i++) op.in[i] = src[i];
    }
    int w = emu_cur & ~31;
    if (a) {
        for (int l = 0; l < 32; l++) for (int r = 0; r < 4; r++) op.warp_a[l][r] = emu_lane_slot[w + l].r[r];
        for (int r = 0; r < 4; r++) op.lane_a[r] = a[r];
    }
    // the lane's 2 rows of A and N / 4 columns of B once (emu_wgmma_out's sums, each operand read once)
    const int lane = emu_cur & 31, g = lane / 4, t = lane % 4, wrow = 16 * ((emu_cur / 32) % 4);
    float av[2][16], bv[N / 4][16];
    for (int r = 0; r < 2; r++) for (int k = 0; k < 16; k++) {
        const int row = g + 8 * r;
        av[r][k] = a ? emu_bf16_half(op.warp_a[4 * (row % 8) + (k % 8) / 2][r + 2 * (k >= 8)], k & 1)
                     : emu_wgmma_elem(da, wrow + row, k, false);
    }
    for (int c = 0; c < N / 4; c++) for (int k = 0; k < 16; k++) bv[c][k] = emu_wgmma_elem(db, 8 * (c / 2) + 2 * t + (c & 1), k, b_mn);
    for (int i = 0; i < N / 2; i++) {
        float acc = op.in[i];
        for (int k = 0; k < 16; k++) acc += av[(i >> 1) & 1][k] * bv[2 * (i / 4) + (i & 1)][k];
        op.out[i] = acc;
    }
    emu_wait(EMU_AT_WARP);   // nobody overwrites its slot before every lane has read it
    for (int i = 0; i < N / 2; i++) d[i] = NAN;   // in flight
    q.push_back(op);
}
static void wgmma_commit(void) {
    long g = ++emu_wg_committed[emu_cur];
    std::vector<emu_wgmma_op> &q = emu_wg_pending[emu_cur];
    for (size_t i = 0; i < q.size(); i++) if (q[i].group < 0) q[i].group = (int)g;
}
// retires the groups but the newest N: each product again from its operands as they are now (this lane's first
// and last elements: the warp's 16 rows and 8 columns between the lanes; a refilled tile shows), then d
template <int N> static void wgmma_wait(void) {
    std::vector<emu_wgmma_op> &q = emu_wg_pending[emu_cur];
    const long done_upto = emu_wg_committed[emu_cur] - N;
    size_t keep = 0;
    for (size_t i = 0; i < q.size(); i++) {
        emu_wgmma_op &op = q[i];
        if (op.group < 0)
            fatal("cuda_emu: thread %d: wgmma_wait<%d> with a wgmma issued and not committed", emu_cur, N);
        if (op.group > done_upto) { q[keep++] = op; continue; }
        if (op.a && memcmp(op.a, op.lane_a, sizeof op.lane_a) != 0)
            fatal("cuda_emu: thread %d: a wgmma's register A operand changed before the wgmma_wait that retires it", emu_cur);
        bool same = true;
        for (int i = 0; i < op.n; i += op.n - 1) {
            float again = emu_wgmma_out(i, op.in[i], op.warp_a, op.a != NULL, op.da, op.db, op.b_mn);
            same = same && memcmp(&again, &op.out[i], sizeof again) == 0;
        }
        if (!same)
            fatal("cuda_emu: thread %d: a wgmma's shared-memory operand changed before the wgmma_wait that retires it",
                  emu_cur);
        bool newer = false;                      // a later wgmma into the same d still in flight: d stays NaN
        for (size_t k = i + 1; k < q.size(); k++) newer = newer || (q[k].d == op.d && q[k].group > done_upto);
        if (!newer) memcpy(op.d, op.out.data(), op.n * sizeof(float));
    }
    q.resize(keep);
}
static void emu_wgmma_reset(int t) {
    emu_wg_pending[t].clear();
    emu_wg_committed[t] = 0;
}
static void emu_wgmma_check_retired(void) {
    if (!emu_wg_pending[emu_cur].empty())
        fatal("cuda_emu: block (%u,%u,%u) thread %d ends with %zu wgmma not retired by a wgmma_wait", blockIdx.x,
              blockIdx.y, blockIdx.z, emu_cur, emu_wg_pending[emu_cur].size());
}
template <int N> static void wgmma_ss(float (&d)[N / 2], uint64_t da, uint64_t db, int scale_d) {
    emu_wgmma<N>(d, NULL, da, db, false, scale_d);
}
template <int N> static void wgmma_rs_nmajor(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t db, int scale_d) {
    emu_wgmma<N>(d, a, 0, db, true, scale_d);
}
template <int N> static void wgmma_rs_kmajor(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t db, int scale_d) {
    emu_wgmma<N>(d, a, 0, db, false, scale_d);
}

// ----------------------------------------------------------------------------
// llmc/mma.cuh's warp-specialization wrappers (sm_90a): mbarriers, TMA, named barriers, setmaxnreg.
// mbarrier: the state lives beside shared memory (emu_mbars, by offset): arrivals left, the transaction count,
//   the phase. A phase completes when every arrival has come and the transaction count is 0; mbar_wait(bar, p)
//   blocks the thread (EMU_AT_MBAR) while the current phase has parity p, and a completion wakes it.
// TMA: tma_load_4d reads the box from global memory at issue (zeros outside the tensor), in the map's 128-byte
//   swizzle (address bits 4-6 XOR bits 7-9, offsets from the 1024-byte aligned dynamic shared memory, as the
//   wgmma twins read); its bytes are retired on the mbarrier (complete_tx) only when a thread first waits on that
//   barrier, and shared memory is written only when the phase then completes: a consumer that reads a stage
//   without its full barrier's wait sees the old contents (NaN at first), and a producer that refills a stage
//   without waiting for its empty barrier breaks the phases (a deadlock or wrong results).
// Named barriers: bar_sync / bar_arrive count threads at barrier id; the n-th arrival releases those waiting.
// Not modelled: the asynchrony of the copy engine beyond that, timing, registers (setmaxnreg is a no-op).
#define __grid_constant__
struct emu_tmap { const char *addr; int rank, swizzle; uint64_t dims[5], strides[5]; uint32_t box[5]; };
static_assert(sizeof(emu_tmap) <= sizeof(CUtensorMap), "emu_tmap must fit a CUtensorMap");
// cuTensorMapEncodeTiled for what the project uses (bf16, no interleave, unit element strides, zero fill),
// with the driver's checks: 16-byte aligned address and strides, boxes of 1..256, the inner box within the swizzle
static CUresult emu_encode_tiled(CUtensorMap *map, CUtensorMapDataType type, cuuint32_t rank, void *addr,
                                 const cuuint64_t *dims, const cuuint64_t *strides, const cuuint32_t *box,
                                 const cuuint32_t *elem_strides, CUtensorMapInterleave il, CUtensorMapSwizzle sw,
                                 CUtensorMapL2promotion, CUtensorMapFloatOOBfill fill) {
    if (type != CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 || rank < 1 || rank > 5 || (uintptr_t)addr % 16 ||
        il != CU_TENSOR_MAP_INTERLEAVE_NONE || fill != CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE ||
        (sw != CU_TENSOR_MAP_SWIZZLE_NONE && sw != CU_TENSOR_MAP_SWIZZLE_128B) ||
        box[0] * 2 % 16 || (sw == CU_TENSOR_MAP_SWIZZLE_128B && box[0] * 2 > 128))
        return CUDA_ERROR_INVALID_VALUE;
    emu_tmap m;
    memset(&m, 0, sizeof m);
    m.addr = (const char *)addr; m.rank = (int)rank; m.swizzle = sw == CU_TENSOR_MAP_SWIZZLE_128B;
    for (int i = 0; i < (int)rank; i++) {
        if (dims[i] == 0 || box[i] == 0 || box[i] > 256 || elem_strides[i] != 1) return CUDA_ERROR_INVALID_VALUE;
        m.dims[i] = dims[i]; m.box[i] = box[i];
        m.strides[i] = i == 0 ? 2 : strides[i - 1];
        if (i > 0 && (m.strides[i] % 16 || m.strides[i] >= (1ull << 40))) return CUDA_ERROR_INVALID_VALUE;
    }
    memset(map, 0, sizeof *map);
    memcpy(map, &m, sizeof m);
    return CUDA_SUCCESS;
}
typedef enum { cudaDriverEntryPointSuccess = 0, cudaDriverEntryPointSymbolNotFound = 1,
               cudaDriverEntryPointVersionNotSufficent = 2 } cudaDriverEntryPointQueryResult;
#define cudaEnableDefault 0
static cudaError_t cudaGetDriverEntryPointByVersion(const char *symbol, void **fn, unsigned int, unsigned long long,
                                                    cudaDriverEntryPointQueryResult *status) {
    bool found = strcmp(symbol, "cuTensorMapEncodeTiled") == 0;
    *fn = found ? (void *)emu_encode_tiled : NULL;
    if (status) *status = found ? cudaDriverEntryPointSuccess : cudaDriverEntryPointSymbolNotFound;
    return cudaSuccess;
}

static emu_mbar &emu_mbar_of(uint64_t *bar, const char *what) {
    uint32_t off = __cvta_generic_to_shared(bar);
    std::map<uint32_t, emu_mbar>::iterator it = emu_mbars.find(off);
    if (off % 8 || it == emu_mbars.end())
        fatal("cuda_emu: block (%u,%u,%u) thread %d: %s on shared byte %u, which is no initialised mbarrier",
              blockIdx.x, blockIdx.y, blockIdx.z, emu_cur, what, off);
    return it->second;
}
static void mbar_init(uint64_t *bar, int count) {
    uint32_t off = __cvta_generic_to_shared(bar);
    if (off % 8 || count < 1 || count >= (1 << 20)) fatal("cuda_emu: mbar_init(byte %u, %d): misaligned or bad count", off, count);
    emu_mbar &mb = emu_mbars[off];
    mb.count = mb.pending = count; mb.phase = 0; mb.tx = mb.tx_flight = 0; mb.writes.clear();
}
static void mbar_fence_init(void) {}
// the threads waiting on the mbarrier at bar run again (and look at it again)
static void emu_mbar_wake(uint64_t *bar) {
    uint32_t off = __cvta_generic_to_shared(bar);
    int n = (int)(blockDim.x * blockDim.y * blockDim.z);
    for (int t = 0; t < n; t++) if (emu_state[t] == EMU_AT_MBAR && emu_wait_on[t] == off) emu_state[t] = EMU_READY;
}
// the phase completes when nothing is pending: the TMA writes land, the parity flips, the waiters wake
static void emu_mbar_progress(uint64_t *bar, emu_mbar &mb) {
    if (mb.pending < 0) fatal("cuda_emu: thread %d: more arrivals on an mbarrier than its count (%d)", emu_cur, mb.count);
    if (mb.pending > 0 || mb.tx != 0) return;
    for (size_t i = 0; i < mb.writes.size(); i++) memcpy(emu_dyn_smem + mb.writes[i].off, &mb.writes[i].v, 2);
    mb.writes.clear();
    mb.phase ^= 1;
    mb.pending = mb.count;
    emu_mbar_wake(bar);
}
static void mbar_arrive(uint64_t *bar) {
    emu_mbar &mb = emu_mbar_of(bar, "mbar_arrive");
    mb.pending--;
    emu_mbar_progress(bar, mb);
}
static void mbar_arrive_expect_tx(uint64_t *bar, uint32_t bytes) {
    emu_mbar &mb = emu_mbar_of(bar, "mbar_arrive_expect_tx");
    mb.tx += bytes;
    mb.pending--;
    emu_mbar_progress(bar, mb);
}
static void mbar_wait(uint64_t *bar, uint32_t parity) {
    for (;;) {
        emu_mbar &mb = emu_mbar_of(bar, "mbar_wait");
        if (mb.tx_flight) {                          // the copies in flight complete now (complete_tx)
            mb.tx -= mb.tx_flight;
            mb.tx_flight = 0;
            emu_mbar_progress(bar, mb);
        }
        if (mb.phase != (int)(parity & 1)) return;
        emu_wait_on[emu_cur] = __cvta_generic_to_shared(bar);
        emu_wait(EMU_AT_MBAR);
    }
}
static void tma_load_4d(void *dst, const CUtensorMap *map, uint64_t *bar, int c0, int c1, int c2, int c3) {
    emu_tmap m;
    memcpy(&m, map, sizeof m);
    const int c[4] = {c0, c1, c2, c3};
    uint32_t d = __cvta_generic_to_shared(dst);
    size_t bytes = 2ull * m.box[0] * m.box[1] * m.box[2] * m.box[3];
    if (m.rank != 4 || d % (m.swizzle ? 1024 : 128) || d + bytes > emu_dyn_smem_bytes)
        fatal("cuda_emu: thread %d: tma_load_4d of a rank-%d map to shared byte %u (+%zu bytes): needs rank 4, an "
              "aligned destination inside the dynamic shared memory", emu_cur, m.rank, d, bytes);
    emu_mbar &mb = emu_mbar_of(bar, "tma_load_4d");
    uint32_t e = 0;
    for (uint32_t i3 = 0; i3 < m.box[3]; i3++) for (uint32_t i2 = 0; i2 < m.box[2]; i2++)
    for (uint32_t i1 = 0; i1 < m.box[1]; i1++) for (uint32_t i0 = 0; i0 < m.box[0]; i0++, e++) {
        const uint32_t ix[4] = {i0, i1, i2, i3};
        uint16_t v = 0;
        size_t src = 0;
        bool in = true;
        for (int k = 0; k < 4; k++) {
            long x = (long)c[k] + ix[k];
            in = in && x >= 0 && x < (long)m.dims[k];
            src += (size_t)x * m.strides[k];
        }
        if (in) memcpy(&v, m.addr + src, 2);
        uint32_t off = d + 2 * e;
        if (m.swizzle) off ^= ((off >> 7) & 7) << 4;
        mb.writes.push_back(emu_mbar_write{off, v});
    }
    mb.tx_flight += (long)bytes;   // retired (complete_tx) when a thread first waits on the barrier
    emu_mbar_wake(bar);            // (threads already waiting there count: they retire it)
}
// named barrier id: the n-th thread to arrive (bar_sync or bar_arrive) releases the threads waiting in bar_sync
static bool emu_named_arrive(int id, int n) {
    if (id < 1 || id > 15 || n % 32 || n < 32 || n > (int)(blockDim.x * blockDim.y * blockDim.z))
        fatal("cuda_emu: thread %d: named barrier %d with %d threads (ids 1..15, whole warps)", emu_cur, id, n);
    if (++emu_nbar_count[id] < n) return false;
    emu_nbar_count[id] = 0;
    int nt = (int)(blockDim.x * blockDim.y * blockDim.z);
    for (int t = 0; t < nt; t++) if (emu_state[t] == EMU_AT_NAMED && emu_wait_on[t] == (uint32_t)id) emu_state[t] = EMU_READY;
    return true;
}
static void bar_sync(int id, int n) {
    if (emu_named_arrive(id, n)) return;
    emu_wait_on[emu_cur] = (uint32_t)id;
    emu_wait(EMU_AT_NAMED);
}
static void bar_arrive(int id, int n) { emu_named_arrive(id, n); }
template <int R> static void setmaxnreg_dec(void) { static_assert(R % 8 == 0 && R >= 24 && R <= 256, "setmaxnreg"); }
template <int R> static void setmaxnreg_inc(void) { static_assert(R % 8 == 0 && R >= 24 && R <= 256, "setmaxnreg"); }

static inline float ex2_approx(float x) { return exp2f(x); }   // the host's exp2f: agrees to rounding
static inline uint32_t pack_bf16x2(float lo, float hi) { return (uint32_t)float_to_bf16(lo) | (uint32_t)float_to_bf16(hi) << 16; }
static inline float bf16x2_lo(uint32_t r) { return emu_bf16_half(r, 0); }
static inline float bf16x2_hi(uint32_t r) { return emu_bf16_half(r, 1); }

// ----------------------------------------------------------------------------
// nvcuda::wmma: every lane holds the whole 16x16 tile in x[r * 16 + c] and computes it in fp32

namespace nvcuda { namespace wmma {
struct row_major {}; struct col_major {}; struct matrix_a {}; struct matrix_b {}; struct accumulator {};
namespace precision { struct tf32 {}; }
enum layout_t { mem_row_major, mem_col_major };
template <class Use, int M, int N, int K> struct dims;
template <int M, int N, int K> struct dims<matrix_a, M, N, K> { enum { R = M, C = K }; };
template <int M, int N, int K> struct dims<matrix_b, M, N, K> { enum { R = K, C = N }; };
template <int M, int N, int K> struct dims<accumulator, M, N, K> { enum { R = M, C = N }; };
template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static_assert(M == 16 && N == 16 && K == 16 || M == 16 && N == 16 && K == 8, "cuda_emu: only 16x16 tiles");
    static const int num_elements = 256;
    float x[256];
    fragment() { for (int i = 0; i < 256; i++) x[i] = NAN; }   // uninitialised, as on the GPU
};
static inline float emu_f(float v) { return v; }
static inline float emu_f(__nv_bfloat16 v) { return __bfloat162float(v); }
// round to tf32 (10 mantissa bits), to nearest with ties away from zero (cvt.rna.tf32.f32)
static inline float __float_to_tf32(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
    memcpy(&f, &u, 4); return f;
}
static inline void emu_check_ptr(const void *p, size_t ld_bytes, const char *what) {
    if ((uintptr_t)p % 32 || ld_bytes % 16) fatal("cuda_emu: wmma %s misaligned (pointer %p, stride %zu bytes)", what, p, ld_bytes);
}
template <class F> static void fill_fragment(F &f, float v) { for (int i = 0; i < 256; i++) f.x[i] = v; }
template <class Use, int M, int N, int K, class T, class S>
static void load_matrix_sync(fragment<Use, M, N, K, T, row_major> &f, const S *p, unsigned ld) {
    emu_check_ptr(p, ld * sizeof(S), "load");
    for (int r = 0; r < dims<Use, M, N, K>::R; r++) for (int c = 0; c < dims<Use, M, N, K>::C; c++) f.x[r * 16 + c] = emu_f(p[(size_t)r * ld + c]);
}
template <class Use, int M, int N, int K, class T, class S>
static void load_matrix_sync(fragment<Use, M, N, K, T, col_major> &f, const S *p, unsigned ld) {
    emu_check_ptr(p, ld * sizeof(S), "load");
    for (int r = 0; r < dims<Use, M, N, K>::R; r++) for (int c = 0; c < dims<Use, M, N, K>::C; c++) f.x[r * 16 + c] = emu_f(p[(size_t)c * ld + r]);
}
template <int M, int N, int K>
static void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const float *p, unsigned ld, layout_t l) {
    emu_check_ptr(p, ld * sizeof(float), "accumulator load");
    for (int r = 0; r < M; r++) for (int c = 0; c < N; c++) f.x[r * 16 + c] = l == mem_row_major ? p[(size_t)r * ld + c] : p[(size_t)c * ld + r];
}
// a warp-collective store, done by lane 0 for the warp: lane 0 runs first after every wait, so no lane of its
// warp reads the tile before it is stored, and a later lane cannot store stale data over the warp's next writes
template <int M, int N, int K>
static void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ld, layout_t l) {
    emu_check_ptr(p, ld * sizeof(float), "store");
    if (emu_cur % 32 != 0) return;
    for (int r = 0; r < M; r++) for (int c = 0; c < N; c++) (l == mem_row_major ? p[(size_t)r * ld + c] : p[(size_t)c * ld + r]) = f.x[r * 16 + c];
}
template <int M, int N, int K, class FA, class FB>
static void mma_sync(fragment<accumulator, M, N, K, float> &d, const FA &a, const FB &b, const fragment<accumulator, M, N, K, float> &c) {
    float t[256];   // d may be c: sum into a copy; each element sums k in order (i, k, j loops vectorise over j)
    memcpy(t, c.x, sizeof t);
    for (int i = 0; i < M; i++) for (int k = 0; k < K; k++) {
        float aik = a.x[i * 16 + k];
        for (int j = 0; j < N; j++) t[i * 16 + j] += aik * b.x[k * 16 + j];
    }
    memcpy(d.x, t, sizeof t);
}
}} // namespace nvcuda::wmma

#endif // SESSA_CUDA_EMU_H
