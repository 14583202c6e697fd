/*
 Feedback solve, backward (DESIGN.md §2): given gs = dL/ds, u = dL/df (transposed solve), dgamma, dqb, dkb.
   version 1: llmc/feedback.cuh feedback_backward (transposed blocked chain, then dZ / dqb / dkb in chunks)
   version 2: dense cuBLAS baseline for the solve only: (B,T,T) matrix A, u = A^{-T} gs by cublasStrsmBatched.
              It computes u alone (not dgamma, dqb, dkb), so its time is a lower bound for a dense backward.
 make -C dev/cuda && dev/cuda/bin/feedback_backward check    (or bench; an optional version number picks one)
*/
#include "feedback_trsm_baseline.cu"

typedef struct {
    int B, T, D, ld;
    float *f, *qkb, *gamma, *gs;   // host: f (B,T,D), [qb | kb] (B,T,2D) (bf16-exact values), gamma (B,T), gs (B,T,D)
    floatX *d_f, *d_qkb;           // qb = d_qkb, kb = d_qkb + D, row stride ld = 2D
    float *d_gamma, *d_gs;
    float *d_s, *d_c, *d_lse;      // the forward's outputs (llmc/feedback.cuh feedback_forward)
    float *scratch;
} Problem;

static Problem make_problem(int B, int T, int D) {
    Problem p = {B, T, D, 2 * D};
    size_t n = (size_t)B * T * D;
    p.f = make_random_float(n, -1.0f, 1.0f);
    p.qkb = make_random_float(2 * n, -1.0f, 1.0f);
    p.gamma = make_random_float((size_t)B * T, 0.9f, 0.999f);
    p.gs = make_random_float(n, -1.0f, 1.0f);
    round_to_bf16(p.f, n);
    round_to_bf16(p.qkb, 2 * n);
    p.d_f = to_device_bf16(p.f, n);
    p.d_qkb = to_device_bf16(p.qkb, 2 * n);
    p.d_gamma = to_device_f32(p.gamma, (size_t)B * T);
    p.d_gs = to_device_f32(p.gs, n);
    cudaMallocCheck(&p.d_s, n * sizeof(float));
    cudaMallocCheck(&p.d_c, n * sizeof(float));
    cudaMallocCheck(&p.d_lse, (size_t)B * T * sizeof(float));
    cudaMallocCheck(&p.scratch, feedback_scratch_bytes(B, T, D));
    feedback_forward(p.d_s, p.d_c, p.d_lse, p.d_f, p.d_qkb, p.d_qkb + D, p.ld, p.d_gamma, B, T, D, p.scratch, 0);
    cudaCheck(cudaDeviceSynchronize());
    return p;
}
static void free_problem(Problem *p) {
    free(p->f); free(p->qkb); free(p->gamma); free(p->gs);
    cudaCheck(cudaFree(p->d_f)); cudaCheck(cudaFree(p->d_qkb)); cudaCheck(cudaFree(p->d_gamma)); cudaCheck(cudaFree(p->d_gs));
    cudaCheck(cudaFree(p->d_s)); cudaCheck(cudaFree(p->d_c)); cudaCheck(cudaFree(p->d_lse)); cudaCheck(cudaFree(p->scratch));
}

// version 1 outputs: df (B,T,D) bf16, dgamma (B,T), [dqb | dkb] (B,T,2D) bf16 with the same stride as qb/kb
typedef struct { floatX *df, *dqkb; float *dgamma; } Grads;
static Grads grads_alloc(const Problem *p) {
    Grads g;
    size_t n = (size_t)p->B * p->T * p->D;
    cudaMallocCheck(&g.df, n * sizeof(floatX));
    cudaMallocCheck(&g.dqkb, 2 * n * sizeof(floatX));
    cudaMallocCheck(&g.dgamma, (size_t)p->B * p->T * sizeof(float));
    return g;
}
static void grads_free(Grads *g) { cudaCheck(cudaFree(g->df)); cudaCheck(cudaFree(g->dqkb)); cudaCheck(cudaFree(g->dgamma)); }
static void run_blocked(const Problem *p, Grads *g) {
    feedback_backward(g->df, g->dgamma, g->dqkb, g->dqkb + p->D, p->ld, p->d_gs, p->d_s, p->d_c, p->d_lse,
                      p->d_qkb, p->d_qkb + p->D, p->d_gamma, p->B, p->T, p->D, p->scratch, 0);
}

// version 2: X holds gs on entry, u on exit
static void run_dense(const Problem *p, DenseBaseline *db, float *X) {
    cudaCheck(cudaMemcpyAsync(X, p->d_gs, (size_t)p->B * p->T * p->D * sizeof(float), cudaMemcpyDeviceToDevice));
    dense_baseline_build_A(db, p->d_qkb, p->d_qkb + p->D, p->ld, p->d_gamma);
    dense_baseline_solve(db, 1);
}

static int check(int B, int T, int D, int version) {
    printf("check B=%d T=%d D=%d\n", B, T, D);
    Problem p = make_problem(B, T, D);
    size_t n = (size_t)B * T * D;
    float *s_ref = (float *)mallocCheck(n * sizeof(float)), *c_ref = (float *)mallocCheck(n * sizeof(float));
    float *lse_ref = (float *)mallocCheck((size_t)B * T * sizeof(float));
    float *u_ref = (float *)mallocCheck(n * sizeof(float)), *dg_ref = (float *)mallocCheck((size_t)B * T * sizeof(float));
    float *dq_ref = (float *)mallocCheck(n * sizeof(float)), *dk_ref = (float *)mallocCheck(n * sizeof(float));
    feedback_forward_cpu(s_ref, c_ref, lse_ref, p.f, p.qkb, p.qkb + D, p.ld, p.gamma, B, T, D);
    feedback_backward_cpu(u_ref, dg_ref, dq_ref, dk_ref, p.gs, s_ref, p.qkb, p.qkb + D, p.ld, p.gamma, B, T, D);
    // df, dqb, dkb are stored in bf16: relative rounding 2^-9 = 2e-3, so rtol 5e-3; on top, fp32-grade sums of
    // O(T + D) terms (the dZ difference u.s_j - dgamma_t loses a few more digits), hence atol 2e-3 of the
    // tensor's largest entry. dgamma stays fp32 and depends on the whole chain for u: its errors are ~1e-7 of
    // max|dgamma| (CPU emulation of these kernels), so atol 2e-5 of the max + rtol 1e-4. A wrong mask, chunk
    // boundary or stride gives errors of order 1e-1 of the largest entry.
    float rb = 5e-3f;
    int ok = 1;
    if (version == 0 || version == 1) {
        printf(" version 1 (blocked)\n");
        Grads g = grads_alloc(&p);
        run_blocked(&p, &g);
        cudaCheck(cudaDeviceSynchronize());
        ok &= validate_result(g.df, u_ref, "u=df", B * T, D, D, 2e-3f * max_abs(u_ref, n), rb);
        ok &= validate_result(g.dgamma, dg_ref, "dgamma", B * T, 1, 1, 2e-5f * max_abs(dg_ref, (size_t)B * T), 1e-4f);
        ok &= validate_result(g.dqkb, dq_ref, "dqb", B * T, D, 2 * D, 2e-3f * max_abs(dq_ref, n), rb);
        ok &= validate_result(g.dqkb + D, dk_ref, "dkb", B * T, D, 2 * D, 2e-3f * max_abs(dk_ref, n), rb);
        // determinism: a second run gives the same bits
        uint16_t *a1 = (uint16_t *)mallocCheck(2 * n * sizeof(uint16_t)), *a2 = (uint16_t *)mallocCheck(2 * n * sizeof(uint16_t));
        cudaCheck(cudaMemcpy(a1, g.dqkb, 2 * n * sizeof(floatX), cudaMemcpyDeviceToHost));
        run_blocked(&p, &g);
        cudaCheck(cudaMemcpy(a2, g.dqkb, 2 * n * sizeof(floatX), cudaMemcpyDeviceToHost));
        int same = memcmp(a1, a2, 2 * n * sizeof(uint16_t)) == 0;
        printf("  %-8s second run bitwise identical: %s\n", "dqb|dkb", same ? "ok" : "FAIL");
        ok &= same;
        free(a1); free(a2);
        grads_free(&g);
    }
    if (version == 0 || version == 2) {
        printf(" version 2 (dense cuBLAS trsm, u only)\n");
        float *X;
        cudaMallocCheck(&X, n * sizeof(float));
        DenseBaseline db = dense_baseline_create(X, B, T, D);
        run_dense(&p, &db, X);
        cudaCheck(cudaDeviceSynchronize());
        ok &= validate_result(X, u_ref, "u", B * T, D, D, 1e-3f * max_abs(u_ref, n), 1e-3f); // fp32 output
        dense_baseline_destroy(&db);
        cudaCheck(cudaFree(X));
    }
    free(s_ref); free(c_ref); free(lse_ref); free(u_ref); free(dg_ref); free(dq_ref); free(dk_ref);
    free_problem(&p);
    return ok;
}

static void bench(int B, int T, int D, int version) {
    Problem p = make_problem(B, T, D);
    size_t n = (size_t)B * T * D;
    float ms1 = 0.0f, ms2 = 0.0f;
    double mib = 1.0 / (1 << 20);
    if (version == 0 || version == 1) {
        Grads g = grads_alloc(&p);
        ms1 = benchmark_kernel(10, run_blocked, &p, &g);
        printf("B=%d T=%d D=%d  version 1 blocked (u,dgamma,dqb,dkb) %9.3f ms  scratch %9.1f MiB\n", B, T, D, ms1,
               feedback_scratch_bytes(B, T, D) * mib);
        grads_free(&g);
    }
    if (version == 0 || version == 2) {
        float *X;
        cudaMallocCheck(&X, n * sizeof(float));
        DenseBaseline db = dense_baseline_create(X, B, T, D);
        ms2 = benchmark_kernel(10, run_dense, &p, &db, X);
        printf("B=%d T=%d D=%d  version 2 dense trsm (u only)       %9.3f ms  dense A %9.1f MiB\n", B, T, D, ms2,
               dense_baseline_bytes(&db) * mib);
        dense_baseline_destroy(&db);
        cudaCheck(cudaFree(X));
    }
    if (version == 0) printf("B=%d T=%d D=%d  dense(u only) / blocked(all) time ratio %.2fx\n", B, T, D, ms2 / ms1);
    free_problem(&p);
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 2);
    cudaCheck(cudaSetDevice(0));
    if (a.check) {
        // T = 201 and 700: one and three dZ chunks of 256 rows, 700 also past one split-K slice; T odd
        int ok = check(2, 201, 72, a.version) & check(1, 700, 160, a.version) & check(2, 1, 64, a.version);
        printf(ok ? "feedback_backward: all checks passed\n" : "feedback_backward: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    bench(8, 1024, 768, a.version);
    bench(2, 4096, 768, a.version);
    return 0;
}
