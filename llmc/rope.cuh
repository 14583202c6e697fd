/*
 Rotary position embedding on interleaved pairs (DESIGN.md section 1), in place on (N, nh, hd) tensors whose rows
 may be ld >= nh*hd elements apart (column slices of a wider matrix), N = B*T rows, position t = n % T:
   w_i = 10000^(-2i/hd), theta = t w_i,  (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos)
 The backward is the inverse rotation (theta -> -theta) applied to the gradient.
 cos/sin come from a table made once on the host in double precision.
 When hd % 8 == 0 (and the tensors are 16-byte aligned) each thread rotates 4 pairs with one 16-byte load and
 store (packed.cuh): the tensor is read and written once, the table (T x hd/2 float2) stays in L2.
 q and k are rotated by one launch. Cost for d12 B=8 T=1024 (nhq = nhk = 12, hd = 64): 2 x 8192 x 768 bf16 read +
 written = 50 MB, 11.7 us at 4.3 TB/s; measured 8 us per tensor before.
 The trainer runs rope_forward once a layer (12 launches per d12 step). Its backward is no launch of its own: the
 trainer passes the table to attention_backward (llmc/attention.cuh), whose Hopper kernels apply the same inverse
 rotation to dq, dk in fp32 right before their bf16 stores (atth_store_rows, llmc/attention_sm90.cuh) and whose
 mma.sync path (other GPUs, the CPU emulator) calls rope_backward below after its kernels.
*/
#ifndef SESSA_ROPE_CUH
#define SESSA_ROPE_CUH

#include <math.h>
#include "cuda_common.h"
#include "packed.cuh"

// device table (T, hd/2) of (cos theta, sin theta)
static float2 *rope_table_create(int T, int hd) {
    int half = hd / 2;
    float2 *h = (float2 *)mallocCheck((size_t)T * half * sizeof(float2));
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            double theta = t * pow(10000.0, -2.0 * i / hd);
            h[(size_t)t * half + i] = make_float2((float)cos(theta), (float)sin(theta));
        }
    }
    float2 *d;
    cudaMallocCheck(&d, (size_t)T * half * sizeof(float2));
    cudaCheck(cudaMemcpy(d, h, (size_t)T * half * sizeof(float2), cudaMemcpyHostToDevice));
    free(h);
    return d;
}

// q (N, nhq, hd) and k (N, nhk, hd) are rotated by one launch: thread indices run over q's units, then k's.
// The unit index i of the pair (q, k) -> its tensor, its row stride ld and i within it; returns its head count.
__device__ inline int rope_select(floatX *&x, int &ld, size_t &i, size_t units_q, floatX *q, int ldq, int nhq,
                                  floatX *k, int ldk, int nhk) {
    if (i < units_q) { x = q; ld = ldq; return nhq; }
    i -= units_q; x = k; ld = ldk; return nhk;
}

// sign = +1 rotates by theta (forward), -1 by -theta (backward); one thread per pair
__global__ void rope_kernel(floatX *q, int ldq, int nhq, floatX *k, int ldk, int nhk, const float2 *table, int N,
                            int T, int hd, float sign) {
    grid_dep_begin();
    int half = hd / 2;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * (nhq + nhk) * half) return;
    floatX *x;
    int ld, nh = rope_select(x, ld, i, (size_t)N * nhq * half, q, ldq, nhq, k, ldk, nhk);
    int p = i % half;
    size_t n = i / ((size_t)half * nh);
    float2 cs = table[(size_t)(n % T) * half + p];
    float sn = sign * cs.y;
    floatX *xp = x + n * ld + (2 * i - n * nh * hd);  // pairs are contiguous: element 2i of the (N, nh, hd) tensor
    float x0 = __bfloat162float(xp[0]), x1 = __bfloat162float(xp[1]);
    xp[0] = __float2bfloat16(x0 * cs.x - x1 * sn);
    xp[1] = __float2bfloat16(x0 * sn + x1 * cs.x);
}

// the same, 4 pairs (8 bf16, one 16-byte pack) per thread: hd % 8 == 0, q and k 16-byte aligned
__global__ void rope_packed_kernel(floatX *q, int ldq, int nhq, floatX *k, int ldk, int nhk,
                                   const float2 *__restrict__ table, int N, int T, int hd, float sign) {
    grid_dep_begin();
    int half = hd / 2;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;   // pack index: elements 8i .. 8i+7
    if (i >= (size_t)N * (nhq + nhk) * hd / PACK) return;
    floatX *x;
    int ld, nh = rope_select(x, ld, i, (size_t)N * nhq * hd / PACK, q, ldq, nhq, k, ldk, nhk);
    size_t e = i * PACK;                                         // element of the (N, nh, hd) tensor
    int p0 = (int)(e % hd) / 2;                                  // first pair of the pack within its head
    size_t n = e / ((size_t)hd * nh);
    const float2 *cs = table + (size_t)(n % T) * half + p0;
    floatX *xp = x + n * ld + (e - n * nh * hd);                 // row n of stride ld
    float v[PACK];
    load8(v, xp);
    #pragma unroll
    for (int j = 0; j < PACK / 2; j++) {
        float2 c = cs[j];
        float sn = sign * c.y, x0 = v[2 * j], x1 = v[2 * j + 1];
        v[2 * j] = x0 * c.x - x1 * sn;
        v[2 * j + 1] = x0 * sn + x1 * c.x;
    }
    store8(xp, v);
}

static void rope_launch(floatX *q, int ldq, int nhq, floatX *k, int ldk, int nhk, const float2 *table, int N, int T,
                        int hd, float sign, cudaStream_t stream) {
    if (ldq < nhq * hd || ldk < nhk * hd || hd % 2)
        fatal("rope: row strides ldq=%d ldk=%d for nhq=%d nhk=%d heads of hd=%d (at least the heads; hd even)",
              ldq, ldk, nhq, nhk, hd);
    long long heads = (long long)N * (nhq + nhk);
    if (packable(q, hd) && packable(k, hd) && ldq % PACK == 0 && ldk % PACK == 0)
        launch_pdl(rope_packed_kernel, ceil_div(heads * hd / PACK, 256), 256, 0, stream, q, ldq, nhq, k, ldk, nhk, table, N, T,
                                                                                hd, sign);
    else
        launch_pdl(rope_kernel, ceil_div(heads * (hd / 2), 256), 256, 0, stream, q, ldq, nhq, k, ldk, nhk, table, N, T, hd,
                                                                         sign);
    cudaCheck(cudaGetLastError());
}

// q (N, nhq, hd) and k (N, nhk, hd), rows ldq and ldk elements apart (the trainer's are column slices of its stacked
// projection; nhq * hd and nhk * hd when dense), in place, in one launch
static void rope_forward(floatX *q, int ldq, int nhq, floatX *k, int ldk, int nhk, const float2 *table, int N, int T,
                         int hd, cudaStream_t stream) {
    rope_launch(q, ldq, nhq, k, ldk, nhk, table, N, T, hd, 1.0f, stream);
}
// dq, dk in place: gradients with respect to the inputs of rope_forward
static void rope_backward(floatX *dq, int ldq, int nhq, floatX *dk, int ldk, int nhk, const float2 *table, int N,
                          int T, int hd, cudaStream_t stream) {
    rope_launch(dq, ldq, nhq, dk, ldk, nhk, table, N, T, hd, -1.0f, stream);
}

#endif // SESSA_ROPE_CUH
