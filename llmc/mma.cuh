/*
 Tensor-core and async-copy building blocks (sm_80+ PTX), one small __device__ wrapper per instruction, so that
 dev/cuda_emu/cuda_emu.h can give each a C++ twin with the same per-lane register layout (see there; the
 emulator defines SESSA_CUDA_EMU_H and these asm versions are then not compiled).

 Fragment layouts of mma.sync.m16n8k16 (bf16 in, fp32 accumulate), lane = 4*g + t (g = lane/4, t = lane%4);
 a register holding two bf16 keeps the lower column (or k) index in its low half:
   A (16x16, row-major)  a[0]: (g, 2t..2t+1)   a[1]: (g+8, 2t..2t+1)   a[2]: (g, 2t+8..)   a[3]: (g+8, 2t+8..)
   B (16x8, k x n)       b[0]: (k=2t..2t+1, n=g)                       b[1]: (k=2t+8..2t+9, n=g)
   C/D (16x8, fp32)      c[0], c[1]: (g, 2t), (g, 2t+1)                c[2], c[3]: (g+8, 2t), (g+8, 2t+1)
 The C layout of two neighbouring n-blocks is the A layout of the next product (FlashAttention-2's trick):
   A(16 x 16 keys kk) = { pack(C[2kk][0..1]), pack(C[2kk][2..3]), pack(C[2kk+1][0..1]), pack(C[2kk+1][2..3]) }.
 ldmatrix.x4: lanes 8i..8i+7 give the 8 row addresses (16 bytes each, 16-byte aligned, shared memory) of
 8x8 b16 matrix i; register i of lane l gets row l/4, columns 2(l%4)..+1 of matrix i (.trans: column l/4,
 rows 2(l%4)..+1, i.e. the transposed matrix).
 cp.async.cg 16 bytes global -> shared, zero-filled when the source is out of range (src-size 0); a thread's
 copies are grouped by commit, and wait<N> waits until at most its N newest groups are still in flight.
*/
#ifndef SESSA_MMA_CUH
#define SESSA_MMA_CUH

#include <stdint.h>
#include <cuda.h>   // CUtensorMap (types only: no -lcuda)
#include "cuda_common.h"

#ifndef SESSA_CUDA_EMU_H   // the emulator has its own versions of everything below

// d += a b   (16x8 fp32 += 16x16 bf16 * 16x8 bf16)
__device__ __forceinline__ void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// four 8x8 b16 matrices from shared memory (this lane gives the address of one row of one of them)
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *smem_row) {
    uint32_t s = (uint32_t)__cvta_generic_to_shared(smem_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *smem_row) {
    uint32_t s = (uint32_t)__cvta_generic_to_shared(smem_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}

// 16 bytes global -> shared, asynchronously; valid == false writes 16 zero bytes (src is not read)
__device__ __forceinline__ void cp_async16(void *smem_dst, const void *gmem_src, bool valid) {
    uint32_t s = (uint32_t)__cvta_generic_to_shared(smem_dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(s), "l"(gmem_src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait(void) { asm volatile("cp.async.wait_group %0;\n" :: "n"(N)); }

// two floats -> one register of two bf16 (round to nearest even), lo in the low half
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}
// grid_dep_wait / grid_dep_launch_dependents (programmatic dependent launch): llmc/cuda_common.h
// 2^x, the SFU's approximation (ex2.approx.ftz: 2 ulp, subnormals flushed; 2^-inf = 0)
__device__ __forceinline__ float ex2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
// the low / high bf16 of a register as float
__device__ __forceinline__ float bf16x2_lo(uint32_t r) { return __uint_as_float(r << 16); }
__device__ __forceinline__ float bf16x2_hi(uint32_t r) { return __uint_as_float(r & 0xffff0000u); }


// ---------------------------------------------------------------------------- Hopper (sm_90a only)
/*
 Warpgroup MMA (wgmma, PTX ISA 9.7.15): the 4 consecutive warps of a warpgroup (128 threads, warp index a
 multiple of 4) compute D (64 x N, fp32, in registers) += A (64 x 16 bf16) B (16 x N bf16), asynchronously.
 A and B come from shared memory through 64-bit matrix descriptors, or A from registers.
 D/accumulator layout (Figure 149 of the ISA): warp w of the warpgroup holds rows 16w..16w+15; lane 4g+t holds
   d[4nb + 0..1] = (row 16w + g,     columns 8nb + 2t, +1)
   d[4nb + 2..3] = (row 16w + g + 8, columns 8nb + 2t, +1)        nb = 0 .. N/8-1
   i.e. per warp the mma.sync m16n8 C layout of each 8-column block, concatenated.
 A in registers (Figure 148): warp w holds rows 16w.., with the mma.sync m16n8k16 A layout above (4 registers),
   so columns 16kk..16kk+15 of an accumulator are the A operand { pack(d[8kk..+1]), pack(d[8kk+2..+3]),
   pack(d[8kk+4..+5]), pack(d[8kk+6..+7]) } of the next product (FlashAttention-3 keeps P in registers so).
 Matrix descriptor (ISA 9.7.15.5.1.2.2): bits 0-13 start address >> 4, 16-29 leading-dimension byte offset
   (LBO) >> 4, 32-45 stride-dimension byte offset (SBO) >> 4, 49-51 base offset (0: our tiles start on a 1024-byte
   boundary), 62-63 swizzle mode (1 = 128-byte swizzle). 128-byte swizzle: the 16-byte chunk c of a 128-byte row r
   of a 1024-byte aligned 8-row atom sits at chunk c ^ (r % 8) (Swizzle<3,4,3> on byte addresses).
   K-major (the operand's k index contiguous, e.g. Q or K rows of 64 bf16): canonical ((8,m),(8,2k)) :
     ((64 elements, SBO), (1, 8)): rows 128 bytes apart, 8-row groups SBO apart, LBO unused (1); the k-slice
     16kk.. of a 64-wide row block starts 32kk bytes further (the hardware swizzles the computed address).
   MN-major (imm-trans = 1; the n index contiguous, e.g. V rows (key k, 64 bf16 of d)): canonical
     ((8,8,m),(8,k)) : ((1, 8, LBO), (64 elements, SBO)): 64 n-values per 128-byte row, the next 64 n LBO bytes
     further, k rows 128 bytes apart, 8-row groups SBO apart.
 Ordering: wgmma_fence() before the first wgmma that reads registers written by ordinary instructions (the
 accumulator, a register A); wgmma_commit() closes a group of issued wgmma; wgmma_wait<N>() waits until at most N
 groups are pending. The accumulators must not be touched between issue and wait: wgmma_fence_operand() keeps the
 compiler from moving their reads and writes across. Shared memory written by ordinary stores or cp.async (the
 generic proxy) must be made visible to wgmma (the async proxy) by fence_proxy_async() in each writing thread
 before the barrier that precedes the wgmma.
 These need sm_90a (-gencode arch=compute_90a,code=sm_90a); compiled elsewhere they are not defined (SESSA_SM90A).
 dev/cuda_emu/cuda_emu.h has C++ twins of them (synchronous, reading shared memory through the descriptor and the
 ISA's canonical layouts), so the emulator runs the Hopper attention too.
*/
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SESSA_SM90A 1

__device__ __forceinline__ void wgmma_fence(void) { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit(void) { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait(void) { asm volatile("wgmma.wait_group.sync.aligned %0;\n" :: "n"(N) : "memory"); }
template <int R> __device__ __forceinline__ void wgmma_fence_operand(float (&d)[R]) {
#pragma unroll
    for (int i = 0; i < R; i++) asm volatile("" : "+f"(d[i]) :: "memory");
}
__device__ __forceinline__ void fence_proxy_async(void) { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// d (64 x N) = (scale_d ? d : 0) + A B: A (64 x 16) and B (16 x N) both K-major in shared memory (descriptors)
template <int N> __device__ __forceinline__ void wgmma_ss(float (&d)[N / 2], uint64_t da, uint64_t db, int scale_d);
// d (64 x N) = (scale_d ? d : 0) + A B: A (64 x 16) in registers (layout above), B (16 x N) MN-major in shared memory
template <int N> __device__ __forceinline__ void wgmma_rs_nmajor(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t db, int scale_d);
// the same with B K-major (as in wgmma_ss; N = 64 only)
template <int N> __device__ __forceinline__ void wgmma_rs_kmajor(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t db, int scale_d);

#define WGMMA_D8(o) "+f"(d[o + 0]), "+f"(d[o + 1]), "+f"(d[o + 2]), "+f"(d[o + 3]), "+f"(d[o + 4]), "+f"(d[o + 5]), "+f"(d[o + 6]), "+f"(d[o + 7])
#define WGMMA_D32 WGMMA_D8(0), WGMMA_D8(8), WGMMA_D8(16), WGMMA_D8(24)
#define WGMMA_D64 WGMMA_D32, WGMMA_D8(32), WGMMA_D8(40), WGMMA_D8(48), WGMMA_D8(56)
template <> __device__ __forceinline__ void wgmma_ss<64>(float (&d)[32], uint64_t da, uint64_t db, int scale_d) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : WGMMA_D32 : "l"(da), "l"(db), "r"(scale_d));
}
template <> __device__ __forceinline__ void wgmma_rs_nmajor<64>(float (&d)[32], const uint32_t (&a)[4], uint64_t db, int scale_d) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
                 : WGMMA_D32 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));
}
template <> __device__ __forceinline__ void wgmma_rs_kmajor<64>(float (&d)[32], const uint32_t (&a)[4], uint64_t db, int scale_d) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
                 : WGMMA_D32 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));
}
template <> __device__ __forceinline__ void wgmma_ss<128>(float (&d)[64], uint64_t da, uint64_t db, int scale_d) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : WGMMA_D64 : "l"(da), "l"(db), "r"(scale_d));
}
template <> __device__ __forceinline__ void wgmma_rs_nmajor<128>(float (&d)[64], const uint32_t (&a)[4], uint64_t db, int scale_d) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
                 : WGMMA_D64 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));
}
#undef WGMMA_D8
#undef WGMMA_D32
#undef WGMMA_D64
#endif // sm_90a
#endif // SESSA_CUDA_EMU_H

// the descriptor of a 128-byte-swizzled operand at smem (shared by the GPU build and the emulator's wgmma twins)
#ifdef SESSA_SM90A
__device__ __forceinline__ uint64_t wgmma_desc(const void *smem, uint32_t lbo_bytes, uint32_t sbo_bytes) {
    uint64_t a = (uint32_t)__cvta_generic_to_shared(smem);
    return ((a & 0x3FFFF) >> 4) | ((uint64_t)((lbo_bytes & 0x3FFFF) >> 4) << 16) |
           ((uint64_t)((sbo_bytes & 0x3FFFF) >> 4) << 32) | (1ull << 62);   // 128-byte swizzle
}
#endif
// ---------------------------------------------------------------------------- Hopper: TMA, mbarriers, named barriers
/*
 The pieces of a warp-specialized pipeline (FlashAttention-3's producer/consumer, PTX ISA 9.7.9.25, 9.7.13.15,
 9.7.4.3, 9.7.19.6), one wrapper per instruction; dev/cuda_emu/cuda_emu.h has C++ twins of each.
 mbarrier (8 bytes of shared memory): initialised with an arrival count; a phase completes when that many arrivals
   have come AND the transaction count (bytes announced by expect_tx, retired by TMA's complete_tx) is back to 0;
   the phase parity then flips. mbar_wait(bar, p) returns once the phase of parity p has completed (a fresh barrier
   is in phase 0: waiting for parity 0 waits for the first completion).
 TMA (cp.async.bulk.tensor): one thread copies a box of a global tensor (described by a CUtensorMap made on the
   host by cuTensorMapEncodeTiled, passed as a __grid_constant__ kernel parameter) into shared memory, in the map's
   swizzle (128-byte: 16-byte chunk c of 128-byte row r at chunk c ^ (r % 8), from a 1024-byte aligned destination:
   the layout wgmma's descriptors name), filling coordinates outside the tensor with zeros, and retires the box's
   bytes on the mbarrier (complete_tx). Coordinates are innermost first, in elements.
 Named barriers (bar.sync / bar.arrive id, n; id 0 is __syncthreads): bar_sync waits until n threads (whole warps)
   have arrived at barrier id, counting itself; bar_arrive counts itself and goes on.
 setmaxnreg: a warpgroup gives registers back (dec) or takes them (inc), per thread, a multiple of 8 in 24..256.
*/
#if defined(SESSA_SM90A) && !defined(SESSA_CUDA_EMU_H)
__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t *bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" :: "r"(smem_u32(bar)), "r"(count) : "memory");
}
// makes the initialised barriers visible to the other threads and to the async proxy (before a __syncthreads)
__device__ __forceinline__ void mbar_fence_init(void) { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
__device__ __forceinline__ void mbar_arrive(uint64_t *bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" :: "r"(smem_u32(bar)) : "memory");
}
// one arrival that also announces bytes the phase must wait for
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t *bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" :: "r"(smem_u32(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity) {
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done) : "r"(smem_u32(bar)), "r"(parity) : "memory");
    } while (!done);
}
// the box at (c0, c1, c2, c3) of the 4-d tensor map -> dst, retiring its bytes on bar
__device__ __forceinline__ void tma_load_4d(void *dst, const CUtensorMap *map, uint64_t *bar, int c0, int c1, int c2, int c3) {
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], [%2];\n"
                 :: "r"(smem_u32(dst)), "l"((uint64_t)map), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
                 : "memory");
}
__device__ __forceinline__ void bar_sync(int id, int n) { asm volatile("bar.sync %0, %1;\n" :: "r"(id), "r"(n) : "memory"); }
__device__ __forceinline__ void bar_arrive(int id, int n) { asm volatile("bar.arrive %0, %1;\n" :: "r"(id), "r"(n) : "memory"); }
template <int R> __device__ __forceinline__ void setmaxnreg_dec(void) { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" :: "n"(R)); }
template <int R> __device__ __forceinline__ void setmaxnreg_inc(void) { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" :: "n"(R)); }
#endif

#endif // SESSA_MMA_CUH
