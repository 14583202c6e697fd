/*
 LayerNorm over the last dimension, forward and backward (eps from the config, affine).
 Forward: one warp per row; keeps mean and rstd (fp32) for the backward. 16-byte packs when C % 8 == 0 and
 the rows are aligned: x read once from DRAM (2 more passes from L1), out written once: 4 C bytes per row,
 d12 (8192 x 768): 25 MB = 5.9 us at 4.3 TB/s (the 2-byte version measured 14.3 us).
 Backward: dinp += (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)) * rstd with dnorm = dout * w,
 one warp per row; dweight += sum_n dout * xhat, dbias += sum_n dout through the deterministic column_sums.
 When C % 8 == 0 and the rows are 16-byte aligned (every model width the trainer uses: D % 8 == 0), the
 backward reads and writes 8 bf16 per 16-byte access (packed.cuh), __restrict__ so that a row's loads are
 not ordered after the previous stores; bytes per row: dout and inp twice (the second pass hits L1/L2),
 dinp read + write, w once per block from L1: ~4 C bf16 from DRAM. Other widths: the scalar kernel.
*/
#ifndef SESSA_LAYERNORM_CUH
#define SESSA_LAYERNORM_CUH

#include "cuda_common.h"
#include "reduce.cuh"
#include "packed.cuh"

#define LN_WARPS 8   // rows per block (one warp each)

// out, inp: (N, C); mean, rstd: (N) or NULL (then not stored)
__global__ void layernorm_forward_kernel(floatX *out, float *mean, float *rstd, const floatX *inp,
                                         const floatX *w, const floatX *b, int N, int C, float eps) {
    grid_dep_begin();
    int lane = threadIdx.x % WARP_SIZE;
    int n = blockIdx.x * LN_WARPS + threadIdx.x / WARP_SIZE;
    if (n >= N) return;
    const floatX *x = inp + (size_t)n * C;
    float sum = 0.0f;
    for (int c = lane; c < C; c += WARP_SIZE) sum += __bfloat162float(x[c]);
    float m = warp_reduce_sum(sum) / C;
    float var = 0.0f;
    for (int c = lane; c < C; c += WARP_SIZE) { float d = __bfloat162float(x[c]) - m; var += d * d; }
    float s = rsqrtf(warp_reduce_sum(var) / C + eps);
    floatX *o = out + (size_t)n * C;
    for (int c = lane; c < C; c += WARP_SIZE) {
        float xhat = (__bfloat162float(x[c]) - m) * s;
        o[c] = __float2bfloat16(xhat * __bfloat162float(w[c]) + __bfloat162float(b[c]));
    }
    if (lane == 0 && mean != NULL) { mean[n] = m; rstd[n] = s; }
}

// the same with 16-byte packs: C % 8 == 0, all row pointers 16-byte aligned. Three passes over the row (sum,
// squared deviations, output) as above; the second and third read it from L1 (a warp's row is C bf16)
__global__ void layernorm_forward_packed_kernel(floatX *__restrict__ out, float *__restrict__ mean,
                                                float *__restrict__ rstd, const floatX *__restrict__ inp,
                                                const floatX *__restrict__ w, const floatX *__restrict__ b,
                                                int N, int C, float eps) {
    grid_dep_begin();
    int lane = threadIdx.x % WARP_SIZE;
    int n = blockIdx.x * LN_WARPS + threadIdx.x / WARP_SIZE;
    if (n >= N) return;
    const floatX *x = inp + (size_t)n * C;
    float sum = 0.0f;
    for (int c = lane * PACK; c < C; c += WARP_SIZE * PACK) {
        float xv[PACK];
        load8(xv, x + c);
        #pragma unroll
        for (int i = 0; i < PACK; i++) sum += xv[i];
    }
    float m = warp_reduce_sum(sum) / C;
    float var = 0.0f;
    for (int c = lane * PACK; c < C; c += WARP_SIZE * PACK) {
        float xv[PACK];
        load8(xv, x + c);
        #pragma unroll
        for (int i = 0; i < PACK; i++) { float d = xv[i] - m; var += d * d; }
    }
    float s = rsqrtf(warp_reduce_sum(var) / C + eps);
    floatX *o = out + (size_t)n * C;
    for (int c = lane * PACK; c < C; c += WARP_SIZE * PACK) {
        float xv[PACK], wv[PACK], bv[PACK];
        load8(xv, x + c); load8(wv, w + c); load8(bv, b + c);
        #pragma unroll
        for (int i = 0; i < PACK; i++) xv[i] = (xv[i] - m) * s * wv[i] + bv[i];
        store8(o + c, xv);
    }
    if (lane == 0 && mean != NULL) { mean[n] = m; rstd[n] = s; }
}

static void layernorm_forward(floatX *out, float *mean, float *rstd, const floatX *inp, const floatX *w,
                              const floatX *b, int N, int C, float eps, cudaStream_t stream) {
    if (packable(out, C) && packable(inp, C) && packable(w, C) && packable(b, C))
        launch_pdl(layernorm_forward_packed_kernel, ceil_div(N, LN_WARPS), LN_WARPS * WARP_SIZE, 0, stream, out, mean, rstd, inp, w, b, N, C, eps);
    else
        launch_pdl(layernorm_forward_kernel, ceil_div(N, LN_WARPS), LN_WARPS * WARP_SIZE, 0, stream, out, mean, rstd, inp, w, b, N, C, eps);
    cudaCheck(cudaGetLastError());
}

// dinp (N, C) += LayerNorm input gradient of dout (ADD = false: dinp = it, dinp not read)
template <bool ADD>
__global__ void layernorm_backward_input_kernel(floatX *dinp, const floatX *dout, const floatX *inp, const float *mean,
                                                const float *rstd, const floatX *w, int N, int C) {
    grid_dep_begin();
    int lane = threadIdx.x % WARP_SIZE;
    int n = blockIdx.x * LN_WARPS + threadIdx.x / WARP_SIZE;
    if (n >= N) return;
    const floatX *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
    float m = mean[n], s = rstd[n];
    float dnorm_mean = 0.0f, dnorm_xhat_mean = 0.0f;
    for (int c = lane; c < C; c += WARP_SIZE) {
        float dnorm = __bfloat162float(dy[c]) * __bfloat162float(w[c]);
        dnorm_mean += dnorm;
        dnorm_xhat_mean += dnorm * (__bfloat162float(x[c]) - m) * s;
    }
    dnorm_mean = warp_reduce_sum(dnorm_mean) / C;
    dnorm_xhat_mean = warp_reduce_sum(dnorm_xhat_mean) / C;
    floatX *dx = dinp + (size_t)n * C;
    for (int c = lane; c < C; c += WARP_SIZE) {
        float xhat = (__bfloat162float(x[c]) - m) * s;
        float dnorm = __bfloat162float(dy[c]) * __bfloat162float(w[c]);
        float g = (dnorm - dnorm_mean - xhat * dnorm_xhat_mean) * s;
        dx[c] = __float2bfloat16(ADD ? __bfloat162float(dx[c]) + g : g);
    }
}

// the same with 16-byte packs: C % 8 == 0, all row pointers 16-byte aligned
template <bool ADD>
__global__ void layernorm_backward_input_packed_kernel(floatX *__restrict__ dinp, const floatX *__restrict__ dout,
                                                       const floatX *__restrict__ inp, const float *__restrict__ mean,
                                                       const float *__restrict__ rstd, const floatX *__restrict__ w,
                                                       int N, int C) {
    grid_dep_begin();
    int lane = threadIdx.x % WARP_SIZE;
    int n = blockIdx.x * LN_WARPS + threadIdx.x / WARP_SIZE;
    if (n >= N) return;
    const floatX *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
    float m = mean[n], s = rstd[n];
    float dnorm_mean = 0.0f, dnorm_xhat_mean = 0.0f;
    for (int c = lane * PACK; c < C; c += WARP_SIZE * PACK) {
        float xv[PACK], dyv[PACK], wv[PACK];
        load8(xv, x + c); load8(dyv, dy + c); load8(wv, w + c);
        #pragma unroll
        for (int i = 0; i < PACK; i++) {
            float dnorm = dyv[i] * wv[i];
            dnorm_mean += dnorm;
            dnorm_xhat_mean += dnorm * (xv[i] - m) * s;
        }
    }
    dnorm_mean = warp_reduce_sum(dnorm_mean) / C;
    dnorm_xhat_mean = warp_reduce_sum(dnorm_xhat_mean) / C;
    floatX *dx = dinp + (size_t)n * C;
    for (int c = lane * PACK; c < C; c += WARP_SIZE * PACK) {
        float xv[PACK], dyv[PACK], wv[PACK], dxv[PACK];
        load8(xv, x + c); load8(dyv, dy + c); load8(wv, w + c);
        if (ADD) load8(dxv, dx + c);
        #pragma unroll
        for (int i = 0; i < PACK; i++) {
            float xhat = (xv[i] - m) * s, g = (dyv[i] * wv[i] - dnorm_mean - xhat * dnorm_xhat_mean) * s;
            dxv[i] = ADD ? dxv[i] + g : g;
        }
        store8(dx + c, dxv);
    }
}

// (dout * xhat, dout) for the weight and bias gradients, V columns at a time (column_sums, reduce.cuh)
struct LayerNormParamOp {
    const floatX *dout, *inp; const float *mean, *rstd; int C;
    static constexpr bool has_y = true;
    static constexpr int rows_in_flight = 1, blocks = COLSUM_BLOCKS / 2;   // (column_sums, reduce.cuh)
    bool packed(int) const { return packable(dout, C) && packable(inp, C); }
    template <int V>
    __device__ void operator()(int n, int c, float (&dw)[V], float (&db)[V]) const {
        size_t i = (size_t)n * C + c;
        float x[V], m = mean[n], s = rstd[n];
        load_cols<V>(db, dout + i);
        load_cols<V>(x, inp + i);
        #pragma unroll
        for (int k = 0; k < V; k++) dw[k] = db[k] * (x[k] - m) * s;
    }
};

// dinp += d/dinp (dout, inp (N, C); mean, rstd (N); w (C)); dx_acc = 0: dinp = d/dinp (dinp not read: the final
// LayerNorm's, the first term of the residual stream's gradient, needs no zeroed buffer)
static void layernorm_backward_input(floatX *dinp, const floatX *dout, const floatX *inp, const float *mean,
                                     const float *rstd, const floatX *w, int N, int C, cudaStream_t stream,
                                     int dx_acc = 1) {
    int nb = ceil_div(N, LN_WARPS), nt = LN_WARPS * WARP_SIZE;
    if (packable(dinp, C) && packable(dout, C) && packable(inp, C) && packable(w, C))
        launch_pdl(dx_acc ? layernorm_backward_input_packed_kernel<true> : layernorm_backward_input_packed_kernel<false>,
                   nb, nt, 0, stream, dinp, dout, inp, mean, rstd, w, N, C);
    else
        launch_pdl(dx_acc ? layernorm_backward_input_kernel<true> : layernorm_backward_input_kernel<false>,
                   nb, nt, 0, stream, dinp, dout, inp, mean, rstd, w, N, C);
    cudaCheck(cudaGetLastError());
}
// dw += sum_n dout*xhat; db += sum_n dout (acc = 0: =; they need only the inputs of the backward: the trainer runs them beside the
// rest, on its weight-gradient stream). scratch: column_sums_scratch_bytes(N, C)
static void layernorm_backward_params(float *dw, float *db, const floatX *dout, const floatX *inp, const float *mean,
                                      const float *rstd, int N, int C, float2 *scratch, cudaStream_t stream, int acc = 1) {
    column_sums(dw, db, C, LayerNormParamOp{dout, inp, mean, rstd, C}, N, C, scratch, stream, acc);
}
// both on one stream: dinp += d/dinp; dw += sum_n dout*xhat; db += sum_n dout (acc = 0: dw, db =; dx_acc = 0:
// dinp =). scratch: column_sums_scratch_bytes(N, C)
static void layernorm_backward(floatX *dinp, float *dw, float *db, const floatX *dout, const floatX *inp,
                               const float *mean, const float *rstd, const floatX *w, int N, int C,
                               float2 *scratch, cudaStream_t stream, int acc = 1, int dx_acc = 1) {
    layernorm_backward_input(dinp, dout, inp, mean, rstd, w, N, C, stream, dx_acc);
    layernorm_backward_params(dw, db, dout, inp, mean, rstd, N, C, scratch, stream, acc);
}

#endif // SESSA_LAYERNORM_CUH
