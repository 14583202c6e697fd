/*
 16-byte packs of 8 bf16 (llm.c's x128): one 128-bit load or store per thread instead of eight 2-byte ones.
 The address must be 16-byte aligned: rows of a multiple of 8 elements starting on a 16-byte boundary.
 Values are converted to fp32 in registers; the math stays fp32.
*/
#ifndef SESSA_PACKED_CUH
#define SESSA_PACKED_CUH

#include <stdint.h>
#include "cuda_common.h"

#define PACK 8   // bf16 per 16 bytes

struct alignas(16) Bf16x8 { floatX v[PACK]; };

__device__ __forceinline__ void load8(float out[PACK], const floatX *p) {
    Bf16x8 t = *reinterpret_cast<const Bf16x8 *>(p);
    #pragma unroll
    for (int i = 0; i < PACK; i++) out[i] = __bfloat162float(t.v[i]);
}
__device__ __forceinline__ void store8(floatX *p, const float in[PACK]) {
    Bf16x8 t;
    #pragma unroll
    for (int i = 0; i < PACK; i++) t.v[i] = __float2bfloat16(in[i]);
    *reinterpret_cast<Bf16x8 *>(p) = t;
}
// 8 fp32 as two 16-byte accesses (p 16-byte aligned)
struct alignas(16) F32x4 { float v[4]; };
__device__ __forceinline__ void load8f(float out[PACK], const float *p) {
    F32x4 a = reinterpret_cast<const F32x4 *>(p)[0], b = reinterpret_cast<const F32x4 *>(p)[1];
    #pragma unroll
    for (int i = 0; i < 4; i++) { out[i] = a.v[i]; out[4 + i] = b.v[i]; }
}
__device__ __forceinline__ void store8f(float *p, const float in[PACK]) {
    F32x4 a, b;
    #pragma unroll
    for (int i = 0; i < 4; i++) { a.v[i] = in[i]; b.v[i] = in[4 + i]; }
    reinterpret_cast<F32x4 *>(p)[0] = a; reinterpret_cast<F32x4 *>(p)[1] = b;
}

// can rows of C elements starting at p be read 8 at a time?
static inline bool packable(const void *p, int C) { return C % PACK == 0 && ((uintptr_t)p % 16) == 0; }
// an (N, C) elementwise pass in packs: C and every row stride multiples of 8, pointers aligned, and few enough
// packs for 32-bit index math (64-bit division is what made the one-element kernels slow)
static inline bool packable_grid(long long N, int C) { return C % PACK == 0 && N * (C / PACK) < (1ll << 31); }

#endif // SESSA_PACKED_CUH
