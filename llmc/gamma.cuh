/*
 The feedback gain per token (DESIGN.md sections 1-2):
   r_t = gamma_b + abar_t . w_gamma,   gamma_t = gamma_max tanh(r_t)
 Backward, given dgamma_t = dL/dgamma_t from the feedback solve:
   dr_t = dgamma_t gamma_max (1 - tanh^2 r_t)   (tanh r_t = gamma_t / gamma_max)
   dgamma_b += sum_t dr_t;  dw_gamma += sum_t dr_t abar_t;  dabar_t += dr_t w_gamma
 One warp per token; the parameter sums go through one deterministic column_sums pass (dgamma_b in column 0).
 The backward's dabar += dr w uses 16-byte packs of 8 bf16 (packed.cuh) when D % 8 == 0 and the rows are
 aligned: one read and one write of dabar (2 D bf16 per token), w from L1; so does the forward (its dot product then
 sums a lane's packs l, l + 32, ... in order, in both the fused and the separate kernel: the same bits either way).
 abar = GELU(a) is the only input of gamma, and GELU's backward the only reader of dabar after gamma's, so the
 trainer runs each pair as one kernel (gelu_gamma_forward, gamma_gelu_backward): the same arithmetic in the same
 order as the two kernels, so the same bits (dev/cuda/gamma.cu checks it), without the second launch and, forward,
 the re-read of abar (2 D bytes per token), backward, the write and re-read of dabar (4 D bytes per token): at d12
 B=8 T=1024 25 and 50 MB of the 6 / 12 us floors of each pass, per layer.
*/
#ifndef SESSA_GAMMA_CUH
#define SESSA_GAMMA_CUH

#include "cuda_common.h"
#include "reduce.cuh"
#include "packed.cuh"
#include "gelu.cuh"

#define GAMMA_WARPS 8

// gamma (N) from abar (N, D), w (D), b (1): a warp per token. GELU: from a (N, D, row stride ld_in) instead, writing
// abar = GELU(a) on the way (gelu_forward's values, rounded to bf16 as stored, then in the dot product). The dot
// product's order: lane l sums columns l, l + 32, ... (PACKED 0), or the 16-byte packs l, l + 32, ... of 8 columns each,
// in order (PACKED 1: D % 8 == 0, rows and w 16-byte aligned); the same expression in every instantiation, so the
// fused kernel (GELU) gives gelu_forward + the separate one's bits (dev/cuda/gamma.cu checks it)
template <bool GELU, bool PACKED>
__global__ void gamma_rows_kernel(floatX *abar, float *gamma, const floatX *in, int ld_in, const floatX *w,
                                  const floatX *b, int N, int D, float gamma_max) {
    grid_dep_begin();
    int lane = threadIdx.x % WARP_SIZE;
    int n = blockIdx.x * GAMMA_WARPS + threadIdx.x / WARP_SIZE;
    if (n >= N) return;
    const floatX *x = in + (size_t)n * ld_in;
    floatX *y = GELU ? abar + (size_t)n * D : NULL;
    float dot = 0.0f;
    if (PACKED) {
        for (int c = lane * PACK; c < D; c += WARP_SIZE * PACK) {
            float xv[PACK], wv[PACK];
            load8(xv, x + c); load8(wv, w + c);
            if (GELU) {
                #pragma unroll
                for (int j = 0; j < PACK; j++) xv[j] = __bfloat162float(__float2bfloat16(gelu_value(xv[j])));
                store8(y + c, xv);
            }
            #pragma unroll
            for (int j = 0; j < PACK; j++) dot += xv[j] * wv[j];
        }
    } else {
        for (int c = lane; c < D; c += WARP_SIZE) {
            float v = __bfloat162float(x[c]);
            if (GELU) {
                floatX h = __float2bfloat16(gelu_value(v));
                y[c] = h;
                v = __bfloat162float(h);
            }
            dot += v * __bfloat162float(w[c]);
        }
    }
    float r = __bfloat162float(b[0]) + warp_reduce_sum(dot);
    if (lane == 0) gamma[n] = gamma_max * tanhf(r);
}

// dr (N) = dgamma * gamma_max * (1 - tanh^2 r); dabar (N, D) += dr w
__global__ void gamma_backward_kernel(float *dr, floatX *dabar, const float *dgamma, const float *gamma,
                                      const floatX *w, int N, int D, float gamma_max) {
    grid_dep_begin();
    int lane = threadIdx.x % WARP_SIZE;
    int n = blockIdx.x * GAMMA_WARPS + threadIdx.x / WARP_SIZE;
    if (n >= N) return;
    float th = gamma[n] / gamma_max;
    float d = dgamma[n] * gamma_max * (1.0f - th * th);
    floatX *dx = dabar + (size_t)n * D;
    for (int c = lane; c < D; c += WARP_SIZE) dx[c] = __float2bfloat16(__bfloat162float(dx[c]) + d * __bfloat162float(w[c]));
    if (lane == 0) dr[n] = d;
}

// the same with 16-byte packs: D % 8 == 0, dabar and w 16-byte aligned
__global__ void gamma_backward_packed_kernel(float *__restrict__ dr, floatX *__restrict__ dabar,
                                             const float *__restrict__ dgamma, const float *__restrict__ gamma,
                                             const floatX *__restrict__ w, int N, int D, float gamma_max) {
    grid_dep_begin();
    int lane = threadIdx.x % WARP_SIZE;
    int n = blockIdx.x * GAMMA_WARPS + threadIdx.x / WARP_SIZE;
    if (n >= N) return;
    float th = gamma[n] / gamma_max;
    float d = dgamma[n] * gamma_max * (1.0f - th * th);
    floatX *dx = dabar + (size_t)n * D;
    for (int c = lane * PACK; c < D; c += WARP_SIZE * PACK) {
        float xv[PACK], wv[PACK];
        load8(xv, dx + c); load8(wv, w + c);
        #pragma unroll
        for (int i = 0; i < PACK; i++) xv[i] += d * wv[i];
        store8(dx + c, xv);
    }
    if (lane == 0) dr[n] = d;
}

static void gamma_forward(float *gamma, const floatX *abar, const floatX *w, const floatX *b, int N, int D,
                          float gamma_max, cudaStream_t stream) {
    launch_pdl(packable(abar, D) && packable(w, D) ? gamma_rows_kernel<false, true> : gamma_rows_kernel<false, false>,
               ceil_div(N, GAMMA_WARPS), GAMMA_WARPS * WARP_SIZE, 0, stream, (floatX *)NULL, gamma, abar, D, w, b, N, D,
               gamma_max);
    cudaCheck(cudaGetLastError());
}

// abar (N, D) = GELU(a), a (N, D) with row stride ld_a, and gamma from it: gelu_forward then gamma_forward in one pass
// (gamma_rows_kernel; packed when gamma_forward would pack and a's rows allow it, else the two kernels, so that the bits
// are gamma_forward's whatever the alignment of a)
static void gelu_gamma_forward(floatX *abar, float *gamma, const floatX *a, int ld_a, const floatX *w, const floatX *b,
                               int N, int D, float gamma_max, cudaStream_t stream) {
    bool pack = packable(abar, D) && packable(w, D);
    if (pack && !packable(a, ld_a)) {
        gelu_forward(abar, a, ld_a, N, D, stream);
        gamma_forward(gamma, abar, w, b, N, D, gamma_max, stream);
        return;
    }
    launch_pdl(pack ? gamma_rows_kernel<true, true> : gamma_rows_kernel<true, false>, ceil_div(N, GAMMA_WARPS),
               GAMMA_WARPS * WARP_SIZE, 0, stream, abar, gamma, a, ld_a, w, b, N, D, gamma_max);
    cudaCheck(cudaGetLastError());
}

// (dr[n] abar[n, c], dr[n] in column 0 only): one column_sums pass gives dw_gamma (.x) and dgamma_b (column 0's .y)
struct GammaParamOp {
    const float *dr; const floatX *abar; int D;
    static constexpr bool has_y = true;
    static constexpr int rows_in_flight = 4, blocks = COLSUM_BLOCKS / 2;   // (column_sums, reduce.cuh)
    bool packed(int) const { return packable(abar, D); }
    template <int V>
    __device__ void operator()(int n, int c, float (&dw)[V], float (&db)[V]) const {
        float d = dr[n];
        load_cols<V>(dw, abar + (size_t)n * D + c);
        #pragma unroll
        for (int k = 0; k < V; k++) { dw[k] *= d; db[k] = c + k == 0 ? d : 0.0f; }
    }
};

// dabar += dr w_gamma with dr (N, fp32, written) the derivative of the loss through gamma_t's logit
static void gamma_backward_input(floatX *dabar, float *dr, const float *dgamma, const float *gamma, const floatX *w,
                                 int N, int D, float gamma_max, cudaStream_t stream) {
    if (packable(dabar, D) && packable(w, D))
        launch_pdl(gamma_backward_packed_kernel, ceil_div(N, GAMMA_WARPS), GAMMA_WARPS * WARP_SIZE, 0, stream, dr, dabar, dgamma, gamma, w, N, D, gamma_max);
    else
        launch_pdl(gamma_backward_kernel, ceil_div(N, GAMMA_WARPS), GAMMA_WARPS * WARP_SIZE, 0, stream, dr, dabar, dgamma, gamma, w, N, D, gamma_max);
    cudaCheck(cudaGetLastError());
}
// da (N, D) [row stride ld_da] = GELU'(a) (dabar + dr w) with dr as gamma_backward_input's, a with row stride ld_a:
// gamma_backward_input then gelu_backward in one pass (dabar + dr w rounded to bf16 in between, as stored there);
// the packed kernel only reads dabar (the two kernels of other shapes update it in place first). 16-byte packs (thread i: elements 8 (i % (D/8)) .. +7 of row i / (D/8)); other shapes
// take the two kernels
__global__ void gamma_gelu_backward_packed_kernel(floatX *__restrict__ da, int ld_da, float *__restrict__ dr,
                                                  const floatX *__restrict__ dabar, const float *__restrict__ dgamma,
                                                  const float *__restrict__ gamma, const floatX *__restrict__ w,
                                                  const floatX *__restrict__ a, int ld_a, int N, int D, float gamma_max) {
    grid_dep_begin();
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x, cp = D / PACK;
    if (i >= (unsigned)N * cp) return;
    unsigned n = i / cp, c = (i % cp) * PACK;
    float th = gamma[n] / gamma_max;
    float d = dgamma[n] * gamma_max * (1.0f - th * th);
    float xv[PACK], wv[PACK], av[PACK];
    load8(xv, dabar + (size_t)n * D + c); load8(wv, w + c); load8(av, a + (size_t)n * ld_a + c);
    #pragma unroll
    for (int j = 0; j < PACK; j++) {
        xv[j] += d * wv[j];
        xv[j] = __bfloat162float(__float2bfloat16(xv[j])) * gelu_grad(av[j]);
    }
    store8(da + (size_t)n * ld_da + c, xv);
    if (c == 0) dr[n] = d;
}
static void gamma_gelu_backward(floatX *da, int ld_da, float *dr, floatX *dabar, const float *dgamma, const float *gamma,
                                const floatX *w, const floatX *a, int ld_a, int N, int D, float gamma_max,
                                cudaStream_t stream) {
    if (packable_grid(N, D) && packable(da, ld_da) && packable(dabar, D) && packable(w, D) && packable(a, ld_a)) {
        launch_pdl(gamma_gelu_backward_packed_kernel, ceil_div((long long)N * D / PACK, 256), 256, 0, stream, da, ld_da,
                   dr, dabar, dgamma, gamma, w, a, ld_a, N, D, gamma_max);
        cudaCheck(cudaGetLastError());
    } else {
        gamma_backward_input(dabar, dr, dgamma, gamma, w, N, D, gamma_max, stream);
        gelu_backward(da, ld_da, dabar, a, ld_a, N, D, stream);
    }
}

// dw_gamma += sum_n dr[n] abar[n, :], dgamma_b += sum_n dr[n], from gamma_backward_input's dr (the trainer runs them
// on its weight-gradient stream). scratch: column_sums_scratch_bytes(N, D)
static void gamma_backward_params(float *dw, float *db, const float *dr, const floatX *abar, int N, int D,
                                  float2 *scratch, cudaStream_t stream, int acc = 1) {
    column_sums(dw, db, 1, GammaParamOp{dr, abar, D}, N, D, scratch, stream, acc);
}
// both on one stream; dr: (N) scratch fp32; scratch: column_sums_scratch_bytes(N, D)
static void gamma_backward(floatX *dabar, float *dw, float *db, float *dr, const float *dgamma, const float *gamma,
                           const floatX *abar, const floatX *w, int N, int D, float gamma_max,
                           float2 *scratch, cudaStream_t stream) {
    gamma_backward_input(dabar, dr, dgamma, gamma, w, N, D, gamma_max, stream);
    gamma_backward_params(dw, db, dr, abar, N, D, scratch, stream);
}

#endif // SESSA_GAMMA_CUH
