/*
 The feedback gain per token (DESIGN.md sections 1-2):
   r_t = gamma_b + abar_t . w_gamma,   gamma_t = gamma_max tanh(r_t)
 Backward, given dgamma_t = dL/dgamma_t from the feedback solve:
   dr_t = dgamma_t gamma_max (1 - tanh^2 r_t)   (tanh r_t = gamma_t / gamma_max)
   dgamma_b += sum_t dr_t;  dw_gamma += sum_t dr_t abar_t;  dabar_t += dr_t w_gamma
 One warp per token; the parameter sums go through one deterministic column_sums pass (dgamma_b in column 0).
 The backward's dabar += dr w uses 16-byte packs of 8 bf16 (packed.cuh) when D % 8 == 0 and the rows are
 aligned: one read and one write of dabar (2 D bf16 per token), w from L1.
*/
#ifndef SESSA_GAMMA_CUH
#define SESSA_GAMMA_CUH

#include "cuda_common.h"
#include "reduce.cuh"
#include "packed.cuh"

#define GAMMA_WARPS 8

// gamma (N) from abar (N, D), w (D), b (1)
__global__ void gamma_forward_kernel(float *gamma, const floatX *abar, const floatX *w, const floatX *b,
                                     int N, int D, float gamma_max) {
    grid_dep_begin();
    int lane = threadIdx.x % WARP_SIZE;
    int n = blockIdx.x * GAMMA_WARPS + threadIdx.x / WARP_SIZE;
    if (n >= N) return;
    const floatX *x = abar + (size_t)n * D;
    float dot = 0.0f;
    for (int c = lane; c < D; c += WARP_SIZE) dot += __bfloat162float(x[c]) * __bfloat162float(w[c]);
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
    launch_pdl(gamma_forward_kernel, ceil_div(N, GAMMA_WARPS), GAMMA_WARPS * WARP_SIZE, 0, stream, gamma, abar, w, b, N, D, gamma_max);
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
// dw_gamma += sum_n dr[n] abar[n, :], dgamma_b += sum_n dr[n], from gamma_backward_input's dr (the trainer runs them
// on its weight-gradient stream). scratch: column_sums_scratch_bytes(N, D)
static void gamma_backward_params(float *dw, float *db, const float *dr, const floatX *abar, int N, int D,
                                  float2 *scratch, cudaStream_t stream) {
    column_sums(dw, db, 1, GammaParamOp{dr, abar, D}, N, D, scratch, stream);
}
// both on one stream; dr: (N) scratch fp32; scratch: column_sums_scratch_bytes(N, D)
static void gamma_backward(floatX *dabar, float *dw, float *db, float *dr, const float *dgamma, const float *gamma,
                           const floatX *abar, const floatX *w, int N, int D, float gamma_max,
                           float2 *scratch, cudaStream_t stream) {
    gamma_backward_input(dabar, dr, dgamma, gamma, w, N, D, gamma_max, stream);
    gamma_backward_params(dw, db, dr, abar, N, D, scratch, stream);
}

#endif // SESSA_GAMMA_CUH
