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
// 2^x, the SFU's approximation (ex2.approx.ftz: 2 ulp, subnormals flushed; 2^-inf = 0)
__device__ __forceinline__ float ex2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
// the low / high bf16 of a register as float
__device__ __forceinline__ float bf16x2_lo(uint32_t r) { return __uint_as_float(r << 16); }
__device__ __forceinline__ float bf16x2_hi(uint32_t r) { return __uint_as_float(r & 0xffff0000u); }

#endif // SESSA_CUDA_EMU_H
#endif // SESSA_MMA_CUH
