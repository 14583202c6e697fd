/*
 LayerNorm over the last dimension, forward and backward (eps from the config, affine).
 Forward: one warp per row; keeps mean and rstd (fp32) for the backward.
 Backward: dinp += (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)) * rstd with dnorm = dout * w,
 one warp per row; dweight += sum_n dout * xhat, dbias += sum_n dout through the deterministic column_sums.
*/
#ifndef SESSA_LAYERNORM_CUH
#define SESSA_LAYERNORM_CUH

#include "cuda_common.h"
#include "reduce.cuh"

#define LN_WARPS 8   // rows per block (one warp each)

// out, inp: (N, C); mean, rstd: (N) or NULL (then not stored)
__global__ void layernorm_forward_kernel(floatX *out, float *mean, float *rstd, const floatX *inp,
                                         const floatX *w, const floatX *b, int N, int C, float eps) {
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

static void layernorm_forward(floatX *out, float *mean, float *rstd, const floatX *inp, const floatX *w,
                              const floatX *b, int N, int C, float eps, cudaStream_t stream) {
    layernorm_forward_kernel<<<ceil_div(N, LN_WARPS), LN_WARPS * WARP_SIZE, 0, stream>>>(out, mean, rstd, inp, w, b, N, C, eps);
    cudaCheck(cudaGetLastError());
}

// dinp (N, C) += LayerNorm input gradient of dout
__global__ void layernorm_backward_input_kernel(floatX *dinp, const floatX *dout, const floatX *inp, const float *mean,
                                                const float *rstd, const floatX *w, int N, int C) {
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
        dx[c] = __float2bfloat16(__bfloat162float(dx[c]) + g);
    }
}

// (dout * xhat, dout) for the weight and bias gradients
struct LayerNormParamOp {
    const floatX *dout, *inp; const float *mean, *rstd; int C;
    __device__ float2 operator()(int n, int c) const {
        size_t i = (size_t)n * C + c;
        float dy = __bfloat162float(dout[i]);
        return make_float2(dy * (__bfloat162float(inp[i]) - mean[n]) * rstd[n], dy);
    }
};

// dinp += d/dinp; dw += sum_n dout*xhat; db += sum_n dout. scratch: column_sums_scratch_bytes(N, C)
static void layernorm_backward(floatX *dinp, float *dw, float *db, const floatX *dout, const floatX *inp,
                               const float *mean, const float *rstd, const floatX *w, int N, int C,
                               float2 *scratch, cudaStream_t stream) {
    layernorm_backward_input_kernel<<<ceil_div(N, LN_WARPS), LN_WARPS * WARP_SIZE, 0, stream>>>(dinp, dout, inp, mean, rstd, w, N, C);
    cudaCheck(cudaGetLastError());
    column_sums(dw, db, LayerNormParamOp{dout, inp, mean, rstd, C}, N, C, scratch, stream);
}

#endif // SESSA_LAYERNORM_CUH
