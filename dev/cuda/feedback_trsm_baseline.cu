/*
 Shared by feedback_forward.cu and feedback_backward.cu (included, no main of its own):
 1) the CPU reference: feedback_dense.h (the naive O(T^2 D) formulas of DESIGN.md §1/§2 in double, independent
    of the blocked schedule of llmc/feedback.cuh, shared with dev/test/test_feedback_blocked.c) on fp32 batches;
 2) the dense cuBLAS baseline, as the official PyTorch layer does it: materialise the (B,T,T) matrix
    A = I - diag(gamma) alpha (logits by a cuBLAS GEMM, a row softmax kernel) and solve with cublasStrsmBatched;
    its backward: u = A^-T gs (trsm), then the gradient GEMMs of autograd under bf16 autocast: US = u s^T (B,T,T)
    from bf16 copies, dZ = gamma alpha (US - dgamma) (bf16, B,T,T), dqb = dZ kb, dkb = dZ^T qb (bf16 GEMMs).
 Layouts as llmc/feedback.cuh: qb, kb rows of width D with row stride ld; everything else (B,T,D) / (B,T).
*/
#include <cublas_v2.h>
#include "common.h"
#include "../../llmc/feedback.cuh"   // version 2 (and matmul.cuh: cublasCheck, the cuBLASLt handle)
#include "feedback_v1.cu"            // version 1
#include "feedback_dense.h"          // the dense reference in double: dense_alpha, dense_forward, dense_backward

// ----------------------------------------------------------------------------
// CPU reference

// the formulas are dev/cuda/feedback_dense.h's (one batch element, double); these wrappers take the kernels' fp32
// batched layouts: qb, kb (B,T,D) rows ld apart, the rest (B,T,D) / (B,T) contiguous

// n floats as doubles (a batch element of qb/kb keeps its row stride ld)
static double *dense_in(const float *x, size_t n) {
    double *d = (double *)mallocCheck(n * sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}
static void dense_out(float *x, const double *d, size_t n) { for (size_t i = 0; i < n; i++) x[i] = (float)d[i]; }

// s_t = f_t + gamma_t c_t, c_t = sum_{j<t} alpha[t,j] s_j, lse (-inf at t = 0); all (B,T,D) / (B,T)
static void feedback_forward_cpu(float *s, float *c, float *lse, const float *f, const float *qb, const float *kb,
                                 int ld, const float *gamma, int B, int T, int D) {
    size_t nq = (size_t)(T - 1) * ld + D, n = (size_t)T * D;
    double *sd = (double *)mallocCheck(n * sizeof(double)), *cd = (double *)mallocCheck(n * sizeof(double));
    double *lsed = (double *)mallocCheck((size_t)T * sizeof(double));
    for (int b = 0; b < B; b++) {
        double *q = dense_in(qb + (size_t)b * T * ld, nq), *k = dense_in(kb + (size_t)b * T * ld, nq);
        double *fd = dense_in(f + (size_t)b * n, n), *g = dense_in(gamma + (size_t)b * T, T);
        dense_forward(sd, cd, lsed, fd, q, k, ld, g, T, D);
        dense_out(s + (size_t)b * n, sd, n); dense_out(c + (size_t)b * n, cd, n); dense_out(lse + (size_t)b * T, lsed, T);
        free(q); free(k); free(fd); free(g);
    }
    free(sd); free(cd); free(lsed);
}

// DESIGN.md §2 given gs and the forward's s: u (B,T,D), dgamma (B,T), dqb, dkb (B,T,D) unstrided
static void feedback_backward_cpu(float *u, float *dgamma, float *dqb, float *dkb, const float *gs, const float *s,
                                  const float *qb, const float *kb, int ld, const float *gamma, int B, int T, int D) {
    size_t nq = (size_t)(T - 1) * ld + D, n = (size_t)T * D;
    double *ud = (double *)mallocCheck(n * sizeof(double)), *dgd = (double *)mallocCheck((size_t)T * sizeof(double));
    double *dq = (double *)mallocCheck(n * sizeof(double)), *dk = (double *)mallocCheck(n * sizeof(double));
    for (int b = 0; b < B; b++) {
        double *q = dense_in(qb + (size_t)b * T * ld, nq), *k = dense_in(kb + (size_t)b * T * ld, nq);
        double *gsd = dense_in(gs + (size_t)b * n, n), *sd = dense_in(s + (size_t)b * n, n);
        double *g = dense_in(gamma + (size_t)b * T, T);
        dense_backward(ud, dgd, dq, dk, gsd, sd, q, k, ld, g, T, D);
        dense_out(u + (size_t)b * n, ud, n); dense_out(dgamma + (size_t)b * T, dgd, T);
        dense_out(dqb + (size_t)b * n, dq, n); dense_out(dkb + (size_t)b * n, dk, n);
        free(q); free(k); free(gsd); free(sd); free(g);
    }
    free(ud); free(dgd); free(dq); free(dk);
}

// ----------------------------------------------------------------------------
// dense cuBLAS baseline

// in place, one warp per row t of Z (B*T rows of T): A[t,j] = 1 (j == t), -gamma_t alpha[t,j] (j < t), 0 (j > t)
__global__ void dense_A_from_logits_kernel(float *A, const float *gamma, int BT, int T) {
    int row = blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    if (row >= BT) return;
    int t = row % T;
    float *a = A + (size_t)row * T;
    float mx = -INFINITY, sum = 0.0f;
    for (int j = lane; j < t; j += WARP_SIZE) mx = fmaxf(mx, a[j]);
    mx = warp_reduce_max(mx);
    for (int j = lane; j < t; j += WARP_SIZE) sum += expf(a[j] - mx);
    sum = warp_reduce_sum(sum);
    float g = gamma[row];
    for (int j = lane; j < T; j += WARP_SIZE) a[j] = j < t ? -g * expf(a[j] - mx) / sum : (j == t ? 1.0f : 0.0f);
}

typedef struct {
    cublasHandle_t handle;
    float *A;              // (B,T,T)
    float **A_ptr, **X_ptr; // device pointer arrays for the batched solve
    int B, T, D;
    float *US;             // backward only (dense_baseline_alloc_backward): (B,T,T) u s^T
    floatX *dZ, *ub, *sb;  // (B,T,T) dZ, (B,T,D) bf16 copies of u and s
} DenseBaseline;

static DenseBaseline dense_baseline_create(float *X, int B, int T, int D) { // X: the (B,T,D) right-hand side / solution
    DenseBaseline db = {};
    db.B = B; db.T = T; db.D = D;
    cublasCheck(cublasCreate(&db.handle));
    cudaMallocCheck(&db.A, (size_t)B * T * T * sizeof(float));
    float **hA = (float **)mallocCheck(B * sizeof(float *)), **hX = (float **)mallocCheck(B * sizeof(float *));
    for (int b = 0; b < B; b++) { hA[b] = db.A + (size_t)b * T * T; hX[b] = X + (size_t)b * T * D; }
    cudaMallocCheck(&db.A_ptr, B * sizeof(float *));
    cudaMallocCheck(&db.X_ptr, B * sizeof(float *));
    cudaCheck(cudaMemcpy(db.A_ptr, hA, B * sizeof(float *), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(db.X_ptr, hX, B * sizeof(float *), cudaMemcpyHostToDevice));
    free(hA); free(hX);
    return db;
}
static void dense_baseline_alloc_backward(DenseBaseline *db) {
    size_t BTT = (size_t)db->B * db->T * db->T, BTD = (size_t)db->B * db->T * db->D;
    cudaMallocCheck(&db->US, BTT * sizeof(float));
    cudaMallocCheck(&db->dZ, BTT * sizeof(floatX));
    cudaMallocCheck(&db->ub, BTD * sizeof(floatX));
    cudaMallocCheck(&db->sb, BTD * sizeof(floatX));
}
// memory of the dense form beyond its inputs and outputs: A, and for the backward US, dZ and the bf16 copies
static size_t dense_baseline_bytes(const DenseBaseline *db) {
    size_t BTT = (size_t)db->B * db->T * db->T, BTD = (size_t)db->B * db->T * db->D;
    return BTT * sizeof(float) + (db->US ? BTT * (sizeof(float) + sizeof(floatX)) + 2 * BTD * sizeof(floatX) : 0);
}
static void dense_baseline_destroy(DenseBaseline *db) {
    cublasCheck(cublasDestroy(db->handle));
    cudaCheck(cudaFree(db->A)); cudaCheck(cudaFree(db->A_ptr)); cudaCheck(cudaFree(db->X_ptr));
    if (db->US) { cudaCheck(cudaFree(db->US)); cudaCheck(cudaFree(db->dZ)); cudaCheck(cudaFree(db->ub)); cudaCheck(cudaFree(db->sb)); }
}

// A = I - diag(gamma) alpha, dense (B,T,T)
static void dense_baseline_build_A(DenseBaseline *db, const floatX *qb, const floatX *kb, int ld, const float *gamma) {
    int B = db->B, T = db->T, D = db->D;
    float scale = 1.0f / sqrtf((float)D), zero = 0.0f;
    // row-major Z (T,T) = qb kb^T, i.e. column-major Z^T = kb_cm^T qb_cm with kb_cm, qb_cm (D,T) of leading dim ld
    cublasCheck(cublasGemmStridedBatchedEx(db->handle, CUBLAS_OP_T, CUBLAS_OP_N, T, T, D, &scale,
                                           kb, CUDA_R_16BF, ld, (long long)T * ld, qb, CUDA_R_16BF, ld, (long long)T * ld,
                                           &zero, db->A, CUDA_R_32F, T, (long long)T * T, B,
                                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    dense_A_from_logits_kernel<<<ceil_div((long long)B * T, 8), 8 * WARP_SIZE>>>(db->A, gamma, B * T, T);
    cudaCheck(cudaGetLastError());
}

// X <- A^{-1} X (forward: X = f on entry, s on exit) or X <- A^{-T} X (backward: gs -> u).
// Row-major A (T,T) is the column-major upper-triangular M = A^T, and row-major X (T,D) is column-major X^T (D,T):
// A X = F  <=>  X^T M = F^T (right side, upper, no transpose);  A^T U = G  <=>  U^T M^T = G^T (transpose).
static void dense_baseline_solve(DenseBaseline *db, int transpose) {
    float one = 1.0f;
    cublasCheck(cublasStrsmBatched(db->handle, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_UPPER,
                                   transpose ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_DIAG_UNIT, db->D, db->T, &one,
                                   (const float *const *)db->A_ptr, db->T, db->X_ptr, db->D, db->B));
}

// ----------------------------------------------------------------------------
// dense backward after the solve (X = u): the gradient GEMMs, as autograd runs them under bf16 autocast

__global__ void dense_to_bf16_kernel(floatX *dst, const float *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __float2bfloat16(src[i]);
}

// one warp per row t: ga_j = -A[t,j] = gamma_t alpha[t,j] (j < t); gamma_t dgamma_t = sum_j ga_j US[t,j];
// dZ[t,j] = ga_j (US[t,j] - dgamma_t) for j < t, else 0 (bf16)
__global__ void dense_dz_kernel(floatX *dZ, float *dgamma, const float *A, const float *US, const float *gamma, int BT, int T) {
    int row = blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    if (row >= BT) return;
    int t = row % T;
    const float *a = A + (size_t)row * T, *us = US + (size_t)row * T;
    float acc = 0.0f;
    for (int j = lane; j < t; j += WARP_SIZE) acc += -a[j] * us[j];
    acc = warp_reduce_sum(acc);
    float g = gamma[row], dg = g != 0.0f ? acc / g : 0.0f;
    if (lane == 0) dgamma[row] = dg;
    for (int j = lane; j < T; j += WARP_SIZE) dZ[(size_t)row * T + j] = __float2bfloat16(j < t ? -a[j] * (us[j] - dg) : 0.0f);
}

// after dense_baseline_solve(db, 1) left u in X: dgamma (B,T), dqb/dkb (B,T,D) bf16 with row stride ld
static void dense_baseline_backward(DenseBaseline *db, const float *X, const float *s, const floatX *qb, const floatX *kb,
                                    int ld, const float *gamma, floatX *dqb, floatX *dkb, float *dgamma) {
    int B = db->B, T = db->T, D = db->D;
    size_t BTD = (size_t)B * T * D;
    float one = 1.0f, zero = 0.0f, scale = 1.0f / sqrtf((float)D);
    dense_to_bf16_kernel<<<ceil_div(BTD, 256), 256>>>(db->ub, X, BTD);
    dense_to_bf16_kernel<<<ceil_div(BTD, 256), 256>>>(db->sb, s, BTD);
    cudaCheck(cudaGetLastError());
    // row-major US (T,T) = u s^T: column-major US^T = s_cm^T u_cm (as the logits in dense_baseline_build_A)
    cublasCheck(cublasGemmStridedBatchedEx(db->handle, CUBLAS_OP_T, CUBLAS_OP_N, T, T, D, &one,
                                           db->sb, CUDA_R_16BF, D, (long long)T * D, db->ub, CUDA_R_16BF, D, (long long)T * D,
                                           &zero, db->US, CUDA_R_32F, T, (long long)T * T, B, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    dense_dz_kernel<<<ceil_div((long long)B * T, 8), 8 * WARP_SIZE>>>(db->dZ, dgamma, db->A, db->US, gamma, B * T, T);
    cudaCheck(cudaGetLastError());
    // dqb (T,D) = dZ kb / sqrt(D): column-major dqb^T (D,T) = kb_cm (D,T) dZ_cm^T... dZ_cm is dZ^T, so N, N
    cublasCheck(cublasGemmStridedBatchedEx(db->handle, CUBLAS_OP_N, CUBLAS_OP_N, D, T, T, &scale,
                                           kb, CUDA_R_16BF, ld, (long long)T * ld, db->dZ, CUDA_R_16BF, T, (long long)T * T,
                                           &zero, dqb, CUDA_R_16BF, ld, (long long)T * ld, B, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    // dkb (T,D) = dZ^T qb / sqrt(D): column-major dkb^T = qb_cm dZ_cm^T
    cublasCheck(cublasGemmStridedBatchedEx(db->handle, CUBLAS_OP_N, CUBLAS_OP_T, D, T, T, &scale,
                                           qb, CUDA_R_16BF, ld, (long long)T * ld, db->dZ, CUDA_R_16BF, T, (long long)T * T,
                                           &zero, dkb, CUDA_R_16BF, ld, (long long)T * ld, B, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}
