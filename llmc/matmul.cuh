/*
 Linear layers through cuBLASLt, in row-major terms: out (N, OC) = inp (N, C) W^T + b, W stored (OC, C).
 bf16 inputs, fp32 accumulation; activations come out bf16, weight gradients fp32 (accumulated, beta = 1; or, for
 the first micro-step of an optimizer step, written: beta = 0, so that the gradients need no zeroing first).
 - forward: the bias add is fused (CUBLASLT_EPILOGUE_BIAS); an optional residual is fused too
   (D = residual + inp W^T + b, cuBLASLt's C operand), which is the Sessa layer's y = x + Linear_out(.).
 - no GELU epilogue: cuBLASLt's GELU is the tanh approximation, the spec needs the exact erf GELU (gelu.cuh).
 - bias gradient: db[o] = sum_n dout[n, o] by our deterministic column_sums (reduce.cuh) after the weight-gradient
   GEMM (2 launches, a re-read of dout). cuBLASLt's CUBLASLT_EPILOGUE_BGRADB can produce it from the GEMM instead
   (into an fp32 scratch of OC floats plus one add, since BGRADB overwrites while gradients accumulate over
   micro-steps); SESSA_BGRADB=1 in the environment turns that on. It is off by default because on an H200
   (CUDA 13.0) cuBLASLt runs BGRADB as a separate kernel (cublasLt::globalKernelBgradAB) after the GEMM, which
   measured slower than the column sums (dev/cuda/bin/matmul bench, N=8192 C=768: OC=768 29.6 vs 27.4 us,
   OC=1536 48.0 vs 47.3 us, the head OC=50304 1.22 vs 1.11 ms; d12 B=8 T=1024 step 28.9 vs 28.75 ms).
   Deterministic either way: the plan (algorithm included) is fixed per shape, and cuBLAS guarantees bitwise-
   identical results run to run with one toolkit on one GPU model (cuBLAS docs, "Results reproducibility", for
   cublasLtMatmul with a user-owned workspace, as here); dev/cuda/matmul.cu check and test_sessacu (the whole
   backward) run it twice and compare bits. Where cuBLASLt has no BGRADB algorithm for a shape the plan records
   it once, and that shape falls back to the column sums.
 Algorithm choice: cuBLASLt's heuristic ranks the algorithms for a problem; its first is not always the fastest
 on our shapes, so a table measured once per GPU model (gemm_choices, made by SESSA_GEMM_TUNE=1) names another of
 its results for some problems (every plan, the feedback's too). Fixed per problem, never timed at run time: the
 results stay bitwise reproducible.
 Leading dimensions are explicit so that the tied head can read V of the Vp padded columns (padded
 vocabulary rows never produce logits).
 Per-call-site kernels, times and rates of a d12 step, and the one outlier (the 768 x 768 weight gradient:
 96 CTAs on 132 SMs): dev/gemm_audit.md.
*/
#ifndef SESSA_MATMUL_CUH
#define SESSA_MATMUL_CUH

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
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

// GEMMs on two streams at once must not share a workspace: a stream that runs GEMMs beside the main one (the
// trainer's weight-gradient stream) gets its own (matmul_stream_add); every other stream uses cublaslt_workspace.
// (The feedback's side streams keep theirs in llmc/feedback.cuh.)
#define MATMUL_MAX_STREAMS 8
static cudaStream_t matmul_ws_stream[MATMUL_MAX_STREAMS];
static void *matmul_ws[MATMUL_MAX_STREAMS];
static int matmul_ws_count = 0;
static void matmul_stream_add(cudaStream_t stream) {
    if (matmul_ws_count == MATMUL_MAX_STREAMS) fatal("matmul: more than %d streams with their own workspace", MATMUL_MAX_STREAMS);
    matmul_ws_stream[matmul_ws_count] = stream;
    cudaMallocCheck(&matmul_ws[matmul_ws_count], cublaslt_workspace_size);
    matmul_ws_count++;
}
static void matmul_stream_remove(cudaStream_t stream) {
    for (int i = 0; i < matmul_ws_count; i++)
        if (matmul_ws_stream[i] == stream) {
            cudaCheck(cudaFree(matmul_ws[i]));
            matmul_ws_count--;
            matmul_ws_stream[i] = matmul_ws_stream[matmul_ws_count];
            matmul_ws[i] = matmul_ws[matmul_ws_count];
            return;
        }
}
static void *matmul_workspace(cudaStream_t stream) {
    for (int i = 0; i < matmul_ws_count; i++)
        if (matmul_ws_stream[i] == stream) return matmul_ws[i];
    return cublaslt_workspace;
}

// Which algorithm a plan runs: by default the one cuBLASLt's heuristic ranks first. The heuristic is a model, and
// for some of our shapes its first choice is not the fastest (dev/gemm_audit.md), so a GEMM can instead run the
// heuristic's result number `index` from a table measured on one GPU model (gemm_choices below): still a fixed
// choice per problem, so results stay bitwise reproducible run to run (a choice by timing at startup would not).
// The table is made by SESSA_GEMM_TUNE=1 (with -cg 0: no graph capture), which times the first GEMM_TUNE_N
// results on each new problem's own operands (output into a scratch buffer) and prints one line per problem.
#define GEMM_TUNE_N 8
static char gemm_gpu_name[256];   // the GPU the table applies to, cudaDeviceProp.name (set by matmul_init)
static int gemm_tune = 0;         // SESSA_GEMM_TUNE=1

// a problem's signature: shapes, leading dimensions, batch and strides, transposes, types, epilogue, beta (a
// product that accumulates may want another algorithm than one that overwrites), alignments
static void gemm_signature(char *sig, size_t size, int m, int n, int k, int batch, int lda, int ldb, int ldc,
                           long long sa, long long sb, long long sc, int ta, int tb, int ctype, int epi,
                           float beta, const uint32_t align[4]) {
    snprintf(sig, size, "m%d n%d k%d b%d ld%d,%d,%d s%lld,%lld,%lld t%d%d c%d e%d beta%g al%u,%u,%u,%u", m, n, k,
             batch, lda, ldb, ldc, sa, sb, sc, ta, tb, ctype, epi, beta, align[0], align[1], align[2], align[3]);
}

#include "gemm_choices.h"   // gemm_choices: the measured table
// SESSA_GEMM_PICK="PREFIX=INDEX[;PREFIX=INDEX...]": the problems whose signature starts with PREFIX ('_' for a space)
// run the heuristic's result INDEX instead (before the table): to time a choice inside the step, beside what runs
// concurrently there (SESSA_GEMM_TUNE times each GEMM alone), e.g. AB="SESSA_GEMM_PICK=m256_n2048_k50304=2 -" in
// scripts/gpu_session.sh ab
static int gemm_pick(const char *sig) {
    const char *e = getenv("SESSA_GEMM_PICK");
    while (e != NULL && *e) {
        const char *eq = strchr(e, '='), *end = strchr(e, ';');
        if (eq == NULL || (end != NULL && end < eq)) fatal("SESSA_GEMM_PICK=%s: expected PREFIX=INDEX[;PREFIX=INDEX...]", getenv("SESSA_GEMM_PICK"));
        size_t i = 0;   // ('_' in PREFIX stands for a space)
        while (e + i < eq && sig[i] != 0 && (sig[i] == e[i] || (e[i] == '_' && sig[i] == ' '))) i++;
        if (e + i == eq) return atoi(eq + 1);
        e = end ? end + 1 : NULL;
    }
    return -1;
}
static int gemm_choice(const char *sig) {
    int pick = gemm_pick(sig);
    if (pick >= 0) {
        printf("SESSA_GEMM_PICK: result %d for %s\n", pick, sig);
        return pick;
    }
    for (const GemmChoice *c = gemm_choices; c->sig != NULL; c++)
        if (strcmp(c->gpu, gemm_gpu_name) == 0 && strcmp(c->sig, sig) == 0) return c->index;
    return 0;
}

// up to n of cuBLASLt's heuristic results for a product (C doubles as D), given the workspace and the operands'
// alignments (A, B, C, D in bytes); returns how many (0 when none, or the configuration is not supported)
static int cublaslt_heuristics(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                               cublasLtMatrixLayout_t lc, const uint32_t align[4], cublasLtMatmulHeuristicResult_t *heur,
                               int n) {
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &cublaslt_workspace_size, sizeof(cublaslt_workspace_size)));
    const cublasLtMatmulPreferenceAttributes_t al_attr[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES };
    for (int i = 0; i < 4; i++)
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, al_attr[i], &align[i], sizeof(align[i])));
    int found = 0;
    // NOT_SUPPORTED ("no heuristic function available for current configuration"): none found, as 0 results
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(cublaslt_handle, desc, la, lb, lc, lc, pref, n, heur, &found);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) found = 0;
    else cublasCheck(st);
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    return found;
}

// the algorithm for the problem with signature sig: the heuristic's result gemm_choice(sig) (its first when the
// table has no entry, or lists a result the heuristic no longer returns); 0 when there is none. Used by every plan
// (matmul_lt, the feedback's).
static int cublaslt_heuristic(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                              cublasLtMatrixLayout_t lc, const uint32_t align[4], const char *sig,
                              cublasLtMatmulAlgo_t *algo) {
    cublasLtMatmulHeuristicResult_t heur[GEMM_TUNE_N];
    int index = gemm_choice(sig);
    // as many results as the tuner asked for: the heuristic's ranking may depend on how many are requested
    int found = cublaslt_heuristics(desc, la, lb, lc, align, heur, GEMM_TUNE_N);
    if (found) *algo = heur[index < found ? index : 0].algo;
    return found;
}

// SESSA_GEMM_TUNE=1: time the heuristic's first GEMM_TUNE_N algorithms for a new problem on its operands a, b
// (cuBLASLt's order: A, B) and the workspace ws of its stream, with alpha 1 and the call's beta into a zeroed scratch
// C = D of d_bytes; print the signature, the times and the fastest index, and a line for gemm_choices when that beats
// the first by more than 3%. Not during a graph capture.
static void cublaslt_tune(const char *sig, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t la,
                          cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc, const uint32_t align[4],
                          const void *a, const void *b, float beta, size_t d_bytes, void *ws, cudaStream_t stream) {
    cudaStreamCaptureStatus cs;
    cudaCheck(cudaStreamIsCapturing(stream, &cs));
    if (cs != cudaStreamCaptureStatusNone) { printf("gemm-tune: skipped (graph capture; run with -cg 0): %s\n", sig); return; }
    cublasLtMatmulHeuristicResult_t heur[GEMM_TUNE_N];
    int found = cublaslt_heuristics(desc, la, lb, lc, align, heur, GEMM_TUNE_N);
    void *d;
    cudaMallocCheck(&d, d_bytes);
    cudaCheck(cudaMemsetAsync(d, 0, d_bytes, stream));
    cudaEvent_t e0, e1;
    cudaCheck(cudaEventCreate(&e0));
    cudaCheck(cudaEventCreate(&e1));
    const float alpha = 1.0f;
    float us0 = 0.0f, best_us = 1e30f; int best = 0;
    printf("gemm-tune %s:", sig);
    // rounds over all candidates, each candidate's best round kept: the GPU's clock and cache state drift the same
    // way for all of them (timing each candidate in one go favoured the later ones: the first ran on a colder GPU)
    float us[GEMM_TUNE_N];
    for (int i = 0; i < found; i++) us[i] = 1e30f;
    const int rounds = 5, reps = 5;
    for (int round = -1; round < rounds; round++) {   // round -1 warms up
        for (int i = 0; i < found; i++) {
            cudaCheck(cudaEventRecord(e0, stream));
            for (int r = 0; r < reps; r++)
                cublasCheck(cublasLtMatmul(cublaslt_handle, desc, &alpha, a, la, b, lb, &beta, d, lc, d, lc,
                                           &heur[i].algo, ws, cublaslt_workspace_size, stream));
            cudaCheck(cudaEventRecord(e1, stream));
            cudaCheck(cudaEventSynchronize(e1));
            float ms;
            cudaCheck(cudaEventElapsedTime(&ms, e0, e1));
            if (round >= 0 && 1000.0f * ms / reps < us[i]) us[i] = 1000.0f * ms / reps;
        }
    }
    for (int i = 0; i < found; i++) {
        printf(" [%d] %.1f", i, us[i]);
        if (i == 0) us0 = us[i];
        if (us[i] < best_us) { best_us = us[i]; best = i; }
    }
    printf(" us; fastest [%d]\n", best);
    if (best != 0 && best_us < 0.97f * us0)   // 3%: below that, noise; the table lists real gains only
        printf("gemm-choice { \"%s\", \"%s\", %d },   // %.1f us, the first %.1f us\n", gemm_gpu_name, sig, best, best_us, us0);
    cudaCheck(cudaEventDestroy(e0));
    cudaCheck(cudaEventDestroy(e1));
    cudaCheck(cudaFree(d));
}

// the largest power of two (at most 256) dividing the address: tells the heuristic what the pointer allows
static inline uint32_t ptr_alignment(const void *p) {
    uint32_t a = 256;
    while (a > 1 && ((uintptr_t)p % a) != 0) a >>= 1;
    return a;
}

// One cuBLASLt configuration: descriptors, layouts and the heuristic's algorithm for one problem
// (shapes, leading dimensions, transposes, output type, epilogue, operand alignments). Creating them and
// running the heuristic on every call costs host time that small, launch-bound models feel, so they are made once per key and kept (llm.c keeps one per call site); the bias pointer is the only
// attribute set per call. A full cache falls back to a one-off configuration (sampling makes one shape per
// prefix length). Cached entries live until matmul_free.
enum { MATMUL_EPI_NONE, MATMUL_EPI_BIAS, MATMUL_EPI_BGRADB };   // + bias[row] (bf16) / write dbias[col] (fp32)
typedef struct {
    int dtype, ldd, lda, ldb, m, n, k, transa, transb, epi, beta_nonzero;
    uint32_t al[5];
} MatmulKey;
typedef struct {
    MatmulKey key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    int found;                                   // 0: the heuristic has no algorithm (only allowed for BGRADB)
} MatmulPlan;
#define MATMUL_CACHE_SIZE 256
static MatmulPlan matmul_cache[MATMUL_CACHE_SIZE];
static int matmul_cache_count = 0;

static void matmul_plan_destroy(MatmulPlan *p) {
    cublasCheck(cublasLtMatrixLayoutDestroy(p->la));
    cublasCheck(cublasLtMatrixLayoutDestroy(p->lb));
    cublasCheck(cublasLtMatrixLayoutDestroy(p->lc));
    cublasCheck(cublasLtMatmulDescDestroy(p->desc));
}

// descriptors + algorithm for key (sig: its gemm_signature); found = 0 when there is no algorithm. vec: the call's bias (gradient)
// pointer, set before the heuristic, which reads its alignment from it (cuBLASLt's header says so); the caller
// sets it again on every call, and the key's alignments keep a plan to pointers aligned like this one.
static void matmul_plan_create(MatmulPlan *p, const MatmulKey *key, void *vec, const char *sig) {
    p->key = *key;
    const MatmulKey *q = key;
    cudaDataType_t dtype = (cudaDataType_t)q->dtype;
    cublasCheck(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t opa = q->transa ? CUBLAS_OP_T : CUBLAS_OP_N, opb = q->transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
    if (q->epi != MATMUL_EPI_NONE) {
        // bias: bf16, added to every column of D; bias gradient: fp32 (D's type), sums of op(B)'s columns over k
        cublasLtEpilogue_t epi = q->epi == MATMUL_EPI_BIAS ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_BGRADB;
        cudaDataType_t btype = q->epi == MATMUL_EPI_BIAS ? CUDA_R_16BF : CUDA_R_32F;
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &btype, sizeof(btype)));
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &vec, sizeof(vec)));
    }
    int m = q->m, n = q->n, k = q->k;
    cublasCheck(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, q->transa ? k : m, q->transa ? m : k, q->lda));
    cublasCheck(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, q->transb ? n : k, q->transb ? k : n, q->ldb));
    cublasCheck(cublasLtMatrixLayoutCreate(&p->lc, dtype, m, n, q->ldd));
    p->found = cublaslt_heuristic(p->desc, p->la, p->lb, p->lc, q->al, sig, &p->algo);
    if (!p->found && q->epi != MATMUL_EPI_BGRADB)
        fatal("cuBLASLt found no algorithm for m=%d n=%d k=%d (transa %d transb %d, epilogue %d)",
              m, n, k, q->transa, q->transb, q->epi);
}

// Column-major cuBLASLt call: D (m x n, ld ldd) = op(A) op(B) + beta * C, with epilogue epi on vec:
// MATMUL_EPI_BIAS: + vec[i] (bf16, m) on every column, bf16 D only; MATMUL_EPI_BGRADB: vec[j] (fp32, n) =
// sum_p op(B)[p, j], overwritten, fp32 D only. op(A) is m x k: A stored k x m (lda) when transa, else m x k.
// op(B) is k x n: B stored n x k when transb. C has D's type and layout (C == D when c is NULL).
// Returns 0 (and does nothing) only for a BGRADB shape cuBLASLt has no algorithm for.
static int matmul_lt(void *d, cudaDataType_t dtype, int ldd, const void *c, float beta,
                     const floatX *a, int lda, bool transa, const floatX *b, int ldb, bool transb,
                     int epi, void *vec, int m, int n, int k, cudaStream_t stream) {
    if (c == NULL) c = d;
    if (epi == MATMUL_EPI_BIAS && dtype != CUDA_R_16BF) fatal("matmul_lt: a bias needs a bf16 output");
    if (epi == MATMUL_EPI_BGRADB && dtype != CUDA_R_32F) fatal("matmul_lt: a bias gradient needs an fp32 output");
    if ((epi != MATMUL_EPI_NONE) != (vec != NULL)) fatal("matmul_lt: epilogue %d with vector %p", epi, vec);
    MatmulKey key;
    memset(&key, 0, sizeof(key));   // padding too: keys are compared with memcmp
    key.dtype = (int)dtype; key.ldd = ldd; key.lda = lda; key.ldb = ldb; key.m = m; key.n = n; key.k = k;
    key.transa = transa; key.transb = transb; key.epi = epi; key.beta_nonzero = beta != 0.0f;
    key.al[0] = ptr_alignment(a); key.al[1] = ptr_alignment(b); key.al[2] = ptr_alignment(c); key.al[3] = ptr_alignment(d);
    key.al[4] = vec != NULL ? ptr_alignment(vec) : 0;
    MatmulPlan *plan = NULL, oneoff;
    for (int i = 0; i < matmul_cache_count && plan == NULL; i++)
        if (memcmp(&matmul_cache[i].key, &key, sizeof(key)) == 0) plan = &matmul_cache[i];
    if (plan == NULL) {
        plan = matmul_cache_count < MATMUL_CACHE_SIZE ? &matmul_cache[matmul_cache_count++] : &oneoff;
        char sig[256];
        gemm_signature(sig, sizeof sig, m, n, k, 1, lda, ldb, ldd, 0, 0, 0, transa, transb, (int)dtype, epi, beta, key.al);
        matmul_plan_create(plan, &key, vec, sig);
        if (gemm_tune && plan->found)
            cublaslt_tune(sig, plan->desc, plan->la, plan->lb, plan->lc, key.al, a, b, beta,
                          (size_t)ldd * n * (dtype == CUDA_R_32F ? 4 : 2), matmul_workspace(stream), stream);
        if (!plan->found) printf("cuBLASLt has no bias-gradient (BGRADB) algorithm for m=%d n=%d k=%d: "
                                 "column sums instead\n", m, n, k);
    }
    int found = plan->found;
    if (found) {
        if (vec != NULL)
            cublasCheck(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &vec, sizeof(vec)));
        const float alpha = 1.0f;
        cublasCheck(cublasLtMatmul(cublaslt_handle, plan->desc, &alpha, a, plan->la, b, plan->lb, &beta, c, plan->lc,
                                   d, plan->lc, &plan->algo, matmul_workspace(stream), cublaslt_workspace_size, stream));
    }
    if (plan == &oneoff) matmul_plan_destroy(plan);
    return found;
}

static int matmul_use_bgradb = 0;   // 1: bias gradients by the BGRADB epilogue (SESSA_BGRADB=1)

static void matmul_init(void) {
    const char *e = getenv("SESSA_BGRADB");
    matmul_use_bgradb = e != NULL && atoi(e) != 0;
    e = getenv("SESSA_GEMM_TUNE");
    gemm_tune = e != NULL && atoi(e) != 0;
    int dev;
    cudaDeviceProp prop;
    cudaCheck(cudaGetDevice(&dev));
    cudaCheck(cudaGetDeviceProperties(&prop, dev));
    snprintf(gemm_gpu_name, sizeof gemm_gpu_name, "%s", prop.name);
    cublasCheck(cublasLtCreate(&cublaslt_handle));
    cudaMallocCheck(&cublaslt_workspace, cublaslt_workspace_size);
}
static void matmul_free(void) {
    for (int i = 0; i < matmul_cache_count; i++) matmul_plan_destroy(&matmul_cache[i]);
    matmul_cache_count = 0;
    cudaCheck(cudaFree(cublaslt_workspace));
    cublasCheck(cublasLtDestroy(cublaslt_handle));
}

// out (N, OC) [row stride ld] += bias (OC), for a bias the epilogue cannot take
__global__ void add_bias_kernel(floatX *out, int ld, const floatX *bias, int N, int OC) {
    grid_dep_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * OC) return;
    size_t n = i / OC, c = i % OC;
    out[n * ld + c] = __float2bfloat16(__bfloat162float(out[n * ld + c]) + __bfloat162float(bias[c]));
}

// out (N, OC) [row stride ldo] = inp (N, C) w^T (w: OC, C) + bias (OC) [+ residual (N, OC), same layout as out]
static void matmul_forward(floatX *out, int ldo, const floatX *inp, const floatX *w, const floatX *bias,
                           const floatX *residual, int N, int C, int OC, cudaStream_t stream) {
    // the bias epilogue wants a 16-byte aligned bias; biases stored after gamma_b (L floats) may not
    bool fused_bias = bias != NULL && ptr_alignment(bias) >= 16;
    matmul_lt(out, CUDA_R_16BF, ldo, residual, residual != NULL ? 1.0f : 0.0f, w, C, true, inp, C, false,
              fused_bias ? MATMUL_EPI_BIAS : MATMUL_EPI_NONE, fused_bias ? (void *)bias : NULL, OC, N, C, stream);
    if (bias != NULL && !fused_bias) {
        launch_pdl(add_bias_kernel, ceil_div((long long)N * OC, 256), 256, 0, stream, out, ldo, bias, N, OC);
        cudaCheck(cudaGetLastError());
    }
}

// dinp (N, C) (+)= dout (N, OC) [row stride ldd] w (OC, C)
static void matmul_backward_input(floatX *dinp, const floatX *dout, int ldd, const floatX *w,
                                  int N, int C, int OC, bool accumulate, cudaStream_t stream) {
    matmul_lt(dinp, CUDA_R_16BF, C, NULL, accumulate ? 1.0f : 0.0f,
              w, C, false, dout, ldd, false, MATMUL_EPI_NONE, NULL, C, N, OC, stream);
}

// out[i] += in[i] (acc = 0: out[i] = in[i]) (fp32): the BGRADB bias gradient, written to a scratch, then into the gradient
__global__ void add_inplace_kernel(float *out, const float *in, int n, int acc) {
    grid_dep_begin();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = (acc ? out[i] : 0.0f) + in[i];
}

// dw (OC, C) += dout^T inp (fp32); dbias (OC) += column sums of dout, when dbias is not NULL. acc = 0: = instead of
// += (beta = 0; the sums onto zero), the same values as += into zeroed gradients.
// In cuBLASLt's column-major terms dw^T (C x OC) = inp^T (C x N) dout (N x OC): k = N, and BGRADB's sums of
// op(B) = dout's columns over k are exactly db. scratch: column_sums_scratch_bytes(N, OC) (>= OC floats: the
// BGRADB output; the whole of it only for the column-sums fallback)
static void matmul_backward_weight(float *dw, float *dbias, const floatX *dout, int ldd, const floatX *inp,
                                   int N, int C, int OC, float2 *scratch, cudaStream_t stream, int acc = 1) {
    float *db_new = (float *)scratch;
    float beta = acc ? 1.0f : 0.0f;
    if (dbias != NULL && matmul_use_bgradb &&
        matmul_lt(dw, CUDA_R_32F, C, NULL, beta, inp, C, false, dout, ldd, true, MATMUL_EPI_BGRADB, db_new, C, OC, N, stream)) {
        launch_pdl(add_inplace_kernel, ceil_div(OC, 256), 256, 0, stream, dbias, db_new, OC, acc);
        cudaCheck(cudaGetLastError());
        return;
    }
    matmul_lt(dw, CUDA_R_32F, C, NULL, beta, inp, C, false, dout, ldd, true, MATMUL_EPI_NONE, NULL, C, OC, N, stream);
    if (dbias != NULL) column_sums(dbias, NULL, 0, RowsOp{dout, ldd}, N, OC, scratch, stream, acc);
}

#endif // SESSA_MATMUL_CUH
