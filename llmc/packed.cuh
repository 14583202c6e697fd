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
// can rows of C elements starting at p be read 8 at a time?
static inline bool packable(const void *p, int C) { return C % PACK == 0 && ((uintptr_t)p % 16) == 0; }

#endif // SESSA_PACKED_CUH
