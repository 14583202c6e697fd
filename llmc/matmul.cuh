/*
 Linear layers through cuBLASLt, in row-major terms: out (N, OC) = inp (N, C) W^T + b, W stored (OC, C).
 bf16 inputs, fp32 accumulation; activations come out bf16, weight gradients fp32 (accumulated, beta = 1).
 - forward: the bias add is fused (CUBLASLT_EPILOGUE_BIAS); an optional residual is fused too
   (D = residual + inp W^T + b, cuBLASLt's C operand), which is the Sessa layer's y = x + Linear_out(.).
 - no GELU epilogue: cuBLASLt's GELU is the tanh approximation, the spec needs the exact erf GELU (gelu.cuh).
 - bias gradient: column sums of dout with our deterministic column_sums (reduce.cuh). cuBLASLt's BGRADB
   epilogue overwrites its output, but gradients must accumulate over micro-steps, so it would need a
   second buffer and pass anyway.
 Leading dimensions are explicit so that the tied head can read V of the Vp padded columns (padded
 vocabulary rows never produce logits).
*/
#ifndef SESSA_MATMUL_CUH
#define SESSA_MATMUL_CUH

#include <stdint.h>
#include <cublasLt.h>
#include "cuda_common.h"
#include "reduce.cuh"

#define cublasCheck(status) cublas_check_((status), __FILE__, __LINE__)
static inline void cublas_check_(cublasStatus_t status, const char *file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) fatal_at(file, line, "cuBLAS error %d", (int)status);
}

static cublasLtHandle_t cublaslt_handle;
static void *cublaslt_workspace = NULL;
static const size_t cublaslt_workspace_size = 32 << 20;

static void matmul_init(void) {
    cublasCheck(cublasLtCreate(&cublaslt_handle));
    cudaMallocCheck(&cublaslt_workspace, cublaslt_workspace_size);
}
static void matmul_free(void) {
    cudaCheck(cudaFree(cublaslt_workspace));
    cublasCheck(cublasLtDestroy(cublaslt_handle));
}

// the largest power of two (at most 256) dividing the address: tells the heuristic what the pointer allows
static inline uint32_t ptr_alignment(const void *p) {
    uint32_t a = 256;
    while (a > 1 && ((uintptr_t)p % a) != 0) a >>= 1;
    return a;
}

// Column-major cuBLASLt call: D (m x n, ld ldd) = op(A) op(B) + beta * C (+ bias[m] on every column).
// op(A) is m x k: A stored k x m (lda) when transa, else m x k. op(B) is k x n: B stored n x k when transb.
// C has D's type and layout (C == D when c is NULL). bias (bf16) only with a bf16 D.
static void matmul_lt(void *d, cudaDataType_t dtype, int ldd, const void *c, float beta,
                      const floatX *a, int lda, bool transa, const floatX *b, int ldb, bool transb,
                      const floatX *bias, int m, int n, int k, cudaStream_t stream) {
    if (c == NULL) c = d;
    cublasLtMatmulDesc_t desc;
    cublasCheck(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t opa = transa ? CUBLAS_OP_T : CUBLAS_OP_N, opb = transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
    if (bias != NULL) {
        if (dtype != CUDA_R_16BF) fatal("matmul_lt: a bias needs a bf16 output");
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t btype = CUDA_R_16BF;
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &btype, sizeof(btype)));
        cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
    cublasLtMatrixLayout_t la, lb, lc;
    cublasCheck(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, transa ? k : m, transa ? m : k, lda));
    cublasCheck(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, transb ? n : k, transb ? k : n, ldb));
    cublasCheck(cublasLtMatrixLayoutCreate(&lc, dtype, m, n, ldd));

    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &cublaslt_workspace_size, sizeof(cublaslt_workspace_size)));
    uint32_t al[4] = { ptr_alignment(a), ptr_alignment(b), ptr_alignment(c), ptr_alignment(d) };
    const cublasLtMatmulPreferenceAttributes_t al_attr[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES };
    for (int i = 0; i < 4; i++)
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, al_attr[i], &al[i], sizeof(al[i])));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(cublaslt_handle, desc, la, lb, lc, lc, pref, 1, &heur, &found));
    if (found == 0) fatal("cuBLASLt found no algorithm for m=%d n=%d k=%d (transa %d transb %d, bias %d)",
                          m, n, k, transa, transb, bias != NULL);
    const float alpha = 1.0f;
    cublasCheck(cublasLtMatmul(cublaslt_handle, desc, &alpha, a, la, b, lb, &beta, c, lc, d, lc,
                               &heur.algo, cublaslt_workspace, cublaslt_workspace_size, stream));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    cublasCheck(cublasLtMatrixLayoutDestroy(la));
    cublasCheck(cublasLtMatrixLayoutDestroy(lb));
    cublasCheck(cublasLtMatrixLayoutDestroy(lc));
    cublasCheck(cublasLtMatmulDescDestroy(desc));
}

// out (N, OC) [row stride ld] += bias (OC), for a bias the epilogue cannot take
__global__ void add_bias_kernel(floatX *out, int ld, const floatX *bias, int N, int OC) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * OC) return;
    size_t n = i / OC, c = i % OC;
    out[n * ld + c] = __float2bfloat16(__bfloat162float(out[n * ld + c]) + __bfloat162float(bias[c]));
}

// out (N, OC) [row stride ldo] = inp (N, C) w^T (w: OC, C) + bias (OC) [+ residual (N, OC), same layout as out]
static void matmul_forward(floatX *out, int ldo, const floatX *inp, const floatX *w, const floatX *bias,
                           const floatX *residual, int N, int C, int OC, cudaStream_t stream) {
    // the bias epilogue wants a 16-byte aligned bias; biases stored after gamma_b (L floats) may not be
    bool fused_bias = bias != NULL && ptr_alignment(bias) >= 16;
    matmul_lt(out, CUDA_R_16BF, ldo, residual, residual != NULL ? 1.0f : 0.0f,
              w, C, true, inp, C, false, fused_bias ? bias : NULL, OC, N, C, stream);
    if (bias != NULL && !fused_bias) {
        add_bias_kernel<<<ceil_div((long long)N * OC, 256), 256, 0, stream>>>(out, ldo, bias, N, OC);
        cudaCheck(cudaGetLastError());
    }
}

// dinp (N, C) (+)= dout (N, OC) [row stride ldd] w (OC, C)
static void matmul_backward_input(floatX *dinp, const floatX *dout, int ldd, const floatX *w,
                                  int N, int C, int OC, bool accumulate, cudaStream_t stream) {
    matmul_lt(dinp, CUDA_R_16BF, C, NULL, accumulate ? 1.0f : 0.0f,
              w, C, false, dout, ldd, false, NULL, C, N, OC, stream);
}

// dw (OC, C) += dout^T inp (fp32); dbias (OC) += column sums of dout, when dbias is not NULL.
// scratch: column_sums_scratch_bytes(N, OC)
static void matmul_backward_weight(float *dw, float *dbias, const floatX *dout, int ldd, const floatX *inp,
                                   int N, int C, int OC, float2 *scratch, cudaStream_t stream) {
    matmul_lt(dw, CUDA_R_32F, C, NULL, 1.0f, inp, C, false, dout, ldd, true, NULL, C, OC, N, stream);
    if (dbias != NULL) column_sums(dbias, NULL, RowsOp{dout, ldd}, N, OC, scratch, stream);
}

#endif // SESSA_MATMUL_CUH
