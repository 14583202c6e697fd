/*
 cublas_emu.h: plain-loop CPU stand-ins for the cuBLAS and cuBLASLt calls that sessa.c makes
 (llmc/matmul.cuh, dev/cuda/feedback_trsm_baseline.cu), on top of cuda_emu.h. Column-major, as cuBLAS.
 - cublasLtMatmul: D = alpha op(A) op(B) + beta C (+ bias[row] with CUBLASLT_EPILOGUE_BIAS), fp32 sums over k
   (CUBLASLT_EPILOGUE_BGRADB: also bias[col] = sum_k op(B)[k, col], fp32 sums in k order, overwritten; one batch)
   in order, bf16 or fp32 matrices as the layouts say, strided batches (CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT and
   _STRIDED_BATCH_OFFSET, same count on every layout); C is not read when beta == 0 (cuBLAS's rule, and
   cudaMalloc'd memory is NaN here). Shapes that do not fit together give CUBLAS_STATUS_INVALID_VALUE.
 - cublasGemmStridedBatchedEx: the same product, batched with strides.
 - cublasStrsmBatched: triangular solves (any side, fill, transpose, diagonal), fp64 sums.
 Only the descriptors and attributes the project sets are known; any other one is an error.
 Algorithm heuristics always find one algorithm; workspace and alignment preferences are accepted and unused.
*/
#ifndef SESSA_CUBLAS_EMU_H
#define SESSA_CUBLAS_EMU_H

#include "cuda_emu.h"

typedef enum {
    CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_NOT_SUPPORTED = 15,
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef enum { CUBLAS_SIDE_LEFT = 0, CUBLAS_SIDE_RIGHT = 1 } cublasSideMode_t;
typedef enum { CUBLAS_FILL_MODE_LOWER = 0, CUBLAS_FILL_MODE_UPPER = 1 } cublasFillMode_t;
typedef enum { CUBLAS_DIAG_NON_UNIT = 0, CUBLAS_DIAG_UNIT = 1 } cublasDiagType_t;

static inline float emu_load(const void *p, cudaDataType_t t, size_t i) {
    return t == CUDA_R_16BF ? __bfloat162float(((const __nv_bfloat16 *)p)[i]) : ((const float *)p)[i];
}
static inline void emu_store(void *p, cudaDataType_t t, size_t i, float v) {
    if (t == CUDA_R_16BF) ((__nv_bfloat16 *)p)[i] = __float2bfloat16(v);
    else ((float *)p)[i] = v;
}
static inline int emu_known_type(cudaDataType_t t) { return t == CUDA_R_16BF || t == CUDA_R_32F; }

// D (m x n, ldd) = alpha op(A) op(B) + beta C (ldc) + bias[i]; op(A) is m x k, op(B) k x n, all column-major
static void emu_gemm(int m, int n, int k, float alpha, const void *A, cudaDataType_t ta, int lda, bool transa,
                     const void *B, cudaDataType_t tb, int ldb, bool transb, float beta, const void *C,
                     cudaDataType_t tc, int ldc, void *D, cudaDataType_t td, int ldd, const void *bias, cudaDataType_t tbias) {
    for (int j = 0; j < n; j++) for (int i = 0; i < m; i++) {
        float acc = 0.0f;
        for (int p = 0; p < k; p++) {
            float a = transa ? emu_load(A, ta, (size_t)i * lda + p) : emu_load(A, ta, (size_t)p * lda + i);
            float b = transb ? emu_load(B, tb, (size_t)p * ldb + j) : emu_load(B, tb, (size_t)j * ldb + p);
            acc += a * b;
        }
        float v = alpha * acc;
        if (beta != 0.0f) v += beta * emu_load(C, tc, (size_t)j * ldc + i);
        if (bias != NULL) v += emu_load(bias, tbias, i);
        emu_store(D, td, (size_t)j * ldd + i, v);
    }
}

// ----------------------------------------------------------------------------
// cuBLAS

typedef struct emu_cublas *cublasHandle_t;
static cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = NULL; return CUBLAS_STATUS_SUCCESS; }
static cublasStatus_t cublasDestroy(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }

static cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t opa, cublasOperation_t opb,
        int m, int n, int k, const void *alpha, const void *A, cudaDataType_t ta, int lda, long long sa,
        const void *B, cudaDataType_t tb, int ldb, long long sb, const void *beta, void *C, cudaDataType_t tc,
        int ldc, long long sc, int batch, cublasComputeType_t compute, cublasGemmAlgo_t) {
    if (compute != CUBLAS_COMPUTE_32F || !emu_known_type(ta) || !emu_known_type(tb) || !emu_known_type(tc))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < (opa ? k : m) || ldb < (opb ? n : k) || ldc < m)
        return CUBLAS_STATUS_INVALID_VALUE;
    size_t ea = ta == CUDA_R_16BF ? 2 : 4, eb = tb == CUDA_R_16BF ? 2 : 4, ec = tc == CUDA_R_16BF ? 2 : 4;
    for (int i = 0; i < batch; i++)
        emu_gemm(m, n, k, *(const float *)alpha, (const char *)A + i * sa * ea, ta, lda, opa == CUBLAS_OP_T,
                 (const char *)B + i * sb * eb, tb, ldb, opb == CUBLAS_OP_T, *(const float *)beta,
                 (char *)C + i * sc * ec, tc, ldc, (char *)C + i * sc * ec, tc, ldc, NULL, CUDA_R_32F);
    return CUBLAS_STATUS_SUCCESS;
}

// op(A) X = alpha B (left) or X op(A) = alpha B (right); B (m x n, ldb) is overwritten by X
static cublasStatus_t cublasStrsmBatched(cublasHandle_t, cublasSideMode_t side, cublasFillMode_t uplo,
        cublasOperation_t trans, cublasDiagType_t diag, int m, int n, const float *alpha,
        const float *const A[], int lda, float *const B[], int ldb, int batch) {
    int na = side == CUBLAS_SIDE_LEFT ? m : n;
    if (m < 0 || n < 0 || lda < na || ldb < m) return CUBLAS_STATUS_INVALID_VALUE;
    bool upper = (uplo == CUBLAS_FILL_MODE_UPPER) != (trans == CUBLAS_OP_T);   // the triangle of op(A)
    for (int b = 0; b < batch; b++) {
        const float *a = A[b];
        float *x = B[b];
        auto M = [&](int i, int j) -> double {   // op(A)(i, j)
            return trans == CUBLAS_OP_T ? a[(size_t)i * lda + j] : a[(size_t)j * lda + i];
        };
        // one right-hand side of length na: element e(i) of x; solve M y = rhs (left) or y M = rhs (right)
        int nrhs = side == CUBLAS_SIDE_LEFT ? n : m;
        for (int r = 0; r < nrhs; r++) {
            auto e = [&](int i) -> float & { return side == CUBLAS_SIDE_LEFT ? x[(size_t)r * ldb + i] : x[(size_t)i * ldb + r]; };
            // left: row i of M couples x_i with x_p (p < i lower, p > i upper); right: column i of M, transposed
            bool forward = side == CUBLAS_SIDE_LEFT ? !upper : upper;
            for (int s = 0; s < na; s++) {
                int i = forward ? s : na - 1 - s;
                double v = (double)*alpha * e(i);
                for (int t = 0; t < s; t++) {
                    int p = forward ? t : na - 1 - t;
                    v -= (side == CUBLAS_SIDE_LEFT ? M(i, p) : M(p, i)) * e(p);
                }
                e(i) = (float)(diag == CUBLAS_DIAG_UNIT ? v : v / M(i, i));
            }
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}

// ----------------------------------------------------------------------------
// cuBLASLt

typedef struct emu_cublaslt *cublasLtHandle_t;
typedef enum { CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4, CUBLASLT_EPILOGUE_BGRADB = 512 } cublasLtEpilogue_t;
typedef enum {
    CUBLASLT_MATMUL_DESC_TRANSA = 3, CUBLASLT_MATMUL_DESC_TRANSB = 4, CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
    CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8, CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET = 15, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26,
} cublasLtMatmulDescAttributes_t;
typedef enum {
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
} cublasLtMatmulPreferenceAttributes_t;
struct emu_lt_desc { cublasComputeType_t compute; cublasOperation_t transa, transb; cublasLtEpilogue_t epilogue;
                     const void *bias; cudaDataType_t bias_type; bool bias_type_set; };
typedef enum { CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6 }
    cublasLtMatrixLayoutAttribute_t;
struct emu_lt_layout { cudaDataType_t type; uint64_t rows, cols; int64_t ld; int32_t batch; int64_t stride; };
struct emu_lt_pref { size_t workspace; };
typedef emu_lt_desc *cublasLtMatmulDesc_t;
typedef emu_lt_layout *cublasLtMatrixLayout_t;
typedef emu_lt_pref *cublasLtMatmulPreference_t;
typedef struct { uint64_t data[8]; } cublasLtMatmulAlgo_t;
typedef struct { cublasLtMatmulAlgo_t algo; size_t workspaceSize; cublasStatus_t state; float wavesCount; int reserved[4]; }
    cublasLtMatmulHeuristicResult_t;

static cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { *h = NULL; return CUBLAS_STATUS_SUCCESS; }
static cublasStatus_t cublasLtDestroy(cublasLtHandle_t) { return CUBLAS_STATUS_SUCCESS; }

static cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale) {
    if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *d = new emu_lt_desc{compute, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, NULL, CUDA_R_32F, false};
    return CUBLAS_STATUS_SUCCESS;
}
static cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { delete d; return CUBLAS_STATUS_SUCCESS; }
static cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                                     const void *buf, size_t size) {
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA: if (size != sizeof d->transa) break; memcpy(&d->transa, buf, size); return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_TRANSB: if (size != sizeof d->transb) break; memcpy(&d->transb, buf, size); return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: if (size != sizeof d->epilogue) break; memcpy(&d->epilogue, buf, size); return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: if (size != sizeof d->bias) break; memcpy(&d->bias, buf, size); return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: if (size != sizeof d->bias_type) break; memcpy(&d->bias_type, buf, size); d->bias_type_set = true; return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET: if (size != sizeof(int32_t)) break; return CUBLAS_STATUS_SUCCESS;   // a scheduling hint: no effect here
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}
static cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type, uint64_t rows,
                                                 uint64_t cols, int64_t ld) {
    if (!emu_known_type(type)) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (ld < (int64_t)rows) return CUBLAS_STATUS_INVALID_VALUE;
    *l = new emu_lt_layout{type, rows, cols, ld, 1, 0};
    return CUBLAS_STATUS_SUCCESS;
}
// strided batches: matrix i of the layout starts i * stride elements after the first (stride 0 repeats it)
static cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr,
                                                       const void *buf, size_t size) {
    switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT:
        if (size != sizeof l->batch) break;
        memcpy(&l->batch, buf, size);
        if (l->batch < 1) return CUBLAS_STATUS_INVALID_VALUE;
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: if (size != sizeof l->stride) break; memcpy(&l->stride, buf, size); return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}
static cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { delete l; return CUBLAS_STATUS_SUCCESS; }
static cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) { *p = new emu_lt_pref{0}; return CUBLAS_STATUS_SUCCESS; }
static cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { delete p; return CUBLAS_STATUS_SUCCESS; }
static cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t attr,
                                                           const void *buf, size_t size) {
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: if (size != sizeof p->workspace) break; memcpy(&p->workspace, buf, size); return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
        if (size != sizeof(uint32_t)) break;
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}
static cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t,
        cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatmulPreference_t, int requested,
        cublasLtMatmulHeuristicResult_t *results, int *found) {
    if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    memset(&results[0], 0, sizeof results[0]);
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}
static cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
        cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta, const void *C,
        cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld, const cublasLtMatmulAlgo_t *, void *, size_t,
        cudaStream_t) {
    emu_count_launch(&emu_gemm_launches);
    bool ta = desc->transa == CUBLAS_OP_T, tb = desc->transb == CUBLAS_OP_T;
    uint64_t m = ld->rows, n = ld->cols, k = ta ? la->rows : la->cols;
    if ((ta ? la->cols : la->rows) != m || (tb ? lb->cols : lb->rows) != k || (tb ? lb->rows : lb->cols) != n ||
        lc->rows != m || lc->cols != n || lc->type != ld->type)
        return CUBLAS_STATUS_INVALID_VALUE;
    // cuBLASLt wants the same batch count on all four layouts
    if (la->batch != ld->batch || lb->batch != ld->batch || lc->batch != ld->batch) return CUBLAS_STATUS_INVALID_VALUE;
    const void *bias = NULL;
    if (desc->epilogue == CUBLASLT_EPILOGUE_BIAS) {
        if (desc->bias == NULL) return CUBLAS_STATUS_INVALID_VALUE;
        bias = desc->bias;
    } else if (desc->epilogue == CUBLASLT_EPILOGUE_BGRADB) {
        if (desc->bias == NULL || ld->batch != 1) return CUBLAS_STATUS_INVALID_VALUE;
        cudaDataType_t tbias = desc->bias_type_set ? desc->bias_type : ld->type;   // default: D's type
        for (uint64_t j = 0; j < n; j++) {
            float acc = 0.0f;
            for (uint64_t p = 0; p < k; p++) acc += emu_load(B, lb->type, tb ? p * lb->ld + j : j * lb->ld + p);
            emu_store((void *)desc->bias, tbias, j, acc);
        }
    } else if (desc->epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    auto at = [](const void *p, const emu_lt_layout *l, int i) -> const char * {   // matrix i of a strided batch
        return (const char *)p + (size_t)i * l->stride * (l->type == CUDA_R_16BF ? 2 : 4);
    };
    for (int i = 0; i < ld->batch; i++)
        emu_gemm((int)m, (int)n, (int)k, *(const float *)alpha, at(A, la, i), la->type, (int)la->ld, ta, at(B, lb, i),
                 lb->type, (int)lb->ld, tb, *(const float *)beta, at(C, lc, i), lc->type, (int)lc->ld,
                 (void *)at(D, ld, i), ld->type, (int)ld->ld, bias,
                 desc->bias_type_set ? desc->bias_type : ld->type);   // cuBLASLt's default bias type is D's
    return CUBLAS_STATUS_SUCCESS;
}

#endif // SESSA_CUBLAS_EMU_H
