/*
 llmc/cpu_kernels.h: every fast routine of the CPU trainer against its plain reference beside it.
   gemm            vs gemm_ref on shapes with full and partial MR x NR tiles, A read plain and transposed,
                   overwrite and accumulate, leading dimensions wider than the rows. Both sum k in order in
                   fp32, but the fast one may contract a*b+c into an FMA (-ffp-contract=fast) where the
                   reference rounds twice: tolerance |diff| <= 4 K eps32 sum_k |a_k b_k| (+ |C| eps32 when
                   accumulating), the standard bound for K fp32 multiply-adds with a little room.
   exp_fast        vs exp in double on [-87, 88]: relative error <= 4 eps32 (the header claims ~2 ulp for the
                   polynomial; the range reduction in two parts and the final scaling add about one), and
                   exp_fast(x) for x < -87 equals exp_fast(-87) (the clamp).
   normal_cdf      vs erfc in double on [-10, 10]: max abs error <= 3e-7 (the header: 2e-7 in fp32; Numerical
                   Recipes' fit has relative error < 1.2e-7 in erfc, plus fp32 rounding of Phi near 1).
   transpose_rows  vs transpose_rows_ref: bitwise (copies), rows not a multiple of 16.
   dot, axpy, max_of: against double-precision loops (dot: 2 n eps32 sum |a b|; axpy: 1 ulp-scale; max: exact).
 Prints one line per check, "N passed, M failed"; exit 0 only when all pass.
*/
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <float.h>
#include "llmc/utils.h"
#include "llmc/cpu_kernels.h"

static int passed = 0, failed = 0;
static void report(int ok, const char *fmt, double got, double tol, const char *what) {
    printf("%s %-60s ", ok ? "PASS" : "FAIL", what);
    printf(fmt, got, tol);
    printf("\n");
    if (ok) passed++; else failed++;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static float urand(void) {   // uniform in [-1, 1)
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static void check_gemm(int M, int N, int K, int transA, int accumulate) {
    int ldc = N + 3, ldb = N + 5, lda = transA ? M + 2 : K + 1;   // A (M,K) plain, or stored (K,M) and read transposed
    long sam = transA ? 1 : lda, sak = transA ? lda : 1;
    size_t na = (size_t)(transA ? K : M) * lda;
    float *A = malloc(na * sizeof(float)), *B = malloc((size_t)K * ldb * sizeof(float));
    float *C = malloc((size_t)M * ldc * sizeof(float)), *R = malloc((size_t)M * ldc * sizeof(float));
    for (size_t i = 0; i < na; i++) A[i] = urand();
    for (size_t i = 0; i < (size_t)K * ldb; i++) B[i] = urand();
    for (size_t i = 0; i < (size_t)M * ldc; i++) C[i] = R[i] = urand();
    gemm(C, ldc, A, sam, sak, B, ldb, M, N, K, accumulate);
    gemm_ref(R, ldc, A, sam, sak, B, ldb, M, N, K, accumulate);
    double worst = 0.0;   // max over elements of |diff| / bound
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double mag = 0.0;
            for (int k = 0; k < K; k++) mag += fabs((double)A[i * sam + k * sak] * B[(size_t)k * ldb + j]);
            double bound = 4.0 * K * FLT_EPSILON * mag + (accumulate ? fabs(R[(size_t)i * ldc + j]) * FLT_EPSILON : 0.0)
                           + 1e-30;
            double r = fabs((double)C[(size_t)i * ldc + j] - R[(size_t)i * ldc + j]) / bound;
            if (r > worst) worst = r;
        }
    // the padding columns between N and ldc are left alone
    int pad_ok = 1;
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldc; j++) pad_ok &= C[(size_t)i * ldc + j] == R[(size_t)i * ldc + j];
    char what[128];
    snprintf(what, sizeof what, "gemm M=%d N=%d K=%d %s %s", M, N, K, transA ? "A^T" : "A", accumulate ? "+=" : "=");
    report(worst <= 1.0 && pad_ok, "max |diff| / bound %.3f (<= %.0f)", worst, 1.0, what);
    free(A); free(B); free(C); free(R);
}

int main(void) {
    // gemm: exact tiles (MR = 8, NR = 32), partial tiles at both edges, tiny shapes, K = 1
    int shapes[][3] = { { 8, 32, 16 }, { 64, 96, 48 }, { 13, 45, 37 }, { 1, 1, 1 }, { 3, 70, 1 }, { 33, 7, 129 } };
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
        for (int transA = 0; transA <= 1; transA++)
            for (int acc = 0; acc <= 1; acc++) check_gemm(shapes[s][0], shapes[s][1], shapes[s][2], transA, acc);

    // exp_fast on [-87, 88]
    double worst = 0.0;
    for (int i = 0; i <= 2000000; i++) {
        float x = -87.0f + 175.0f * (float)i / 2000000.0f;
        double ref = exp((double)x), r = fabs(exp_fast(x) - ref) / ref;
        if (r > worst) worst = r;
    }
    report(worst <= 4.0 * FLT_EPSILON, "max rel err %.3e (<= %.3e)", worst, 4.0 * FLT_EPSILON, "exp_fast vs exp on [-87, 88], 2e6 points");
    report(exp_fast(-1000.0f) == exp_fast(-87.0f) && exp_fast(-INFINITY) == exp_fast(-87.0f),
           "exp_fast(-1000) = %.3e (the clamp: %.3e)", exp_fast(-1000.0f), exp_fast(-87.0f), "exp_fast clamps below -87");
    report(fabsf(exp_ref(1.0f) - (float)M_E) <= FLT_EPSILON * 3.0f, "exp_ref(1) = %.7f (e = %.7f)", exp_ref(1.0f), M_E,
           "exp_ref is expf");

    // normal_cdf on [-10, 10]
    worst = 0.0;
    double worst_ref = 0.0;
    for (int i = 0; i <= 2000000; i++) {
        float x = -10.0f + 20.0f * (float)i / 2000000.0f;
        double ref = 0.5 * erfc(-(double)x / sqrt(2.0));
        double e = fabs(normal_cdf(x) - ref), e2 = fabs(normal_cdf_ref(x) - ref);
        if (e > worst) worst = e;
        if (e2 > worst_ref) worst_ref = e2;
    }
    report(worst <= 3e-7, "max abs err %.3e (<= %.0e)", worst, 3e-7, "normal_cdf vs erfc (double) on [-10, 10]");
    report(worst_ref <= 3e-7, "max abs err %.3e (<= %.0e)", worst_ref, 3e-7, "normal_cdf_ref (erfcf) vs erfc (double)");

    // transpose_rows: bitwise, rows not a multiple of 16, strides wider than the data
    {
        int rows = 37, cols = 21, ldx = 25, ldo = 41;
        float *x = malloc((size_t)rows * ldx * sizeof(float));
        float *o1 = calloc((size_t)cols * ldo, sizeof(float)), *o2 = calloc((size_t)cols * ldo, sizeof(float));
        for (int i = 0; i < rows * ldx; i++) x[i] = urand();
        transpose_rows(o1, ldo, x, ldx, rows, cols);
        transpose_rows_ref(o2, ldo, x, ldx, rows, cols);
        int diff = 0;
        for (int i = 0; i < cols * ldo; i++) diff += o1[i] != o2[i];
        report(diff == 0, "%.0f elements differ (of %.0f)", (double)diff, (double)cols * ldo, "transpose_rows vs transpose_rows_ref (bitwise)");
        free(x); free(o1); free(o2);
    }

    // dot, axpy, max_of against double loops
    {
        int n = 1037;
        float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
        double ref = 0.0, mag = 0.0;
        float mx = -INFINITY;
        for (int i = 0; i < n; i++) {
            a[i] = urand(); b[i] = urand(); y[i] = urand();
            ref += (double)a[i] * b[i]; mag += fabs((double)a[i] * b[i]); if (a[i] > mx) mx = a[i];
        }
        double e = fabs(dot(a, b, n) - ref), tol = 2.0 * n * FLT_EPSILON * mag;
        report(e <= tol, "|diff| %.3e (<= %.3e)", e, tol, "dot, n = 1037");
        double ey = 0.0;
        float *y0 = malloc(n * sizeof(float));
        memcpy(y0, y, n * sizeof(float));
        axpy(y, 0.37f, a, n);
        for (int i = 0; i < n; i++) {
            double r = (double)y0[i] + 0.37 * (double)a[i], d = fabs(y[i] - r) / (fabs(y0[i]) + fabs(0.37 * a[i]) + 1e-30);
            if (d > ey) ey = d;
        }
        report(ey <= 2.0 * FLT_EPSILON, "max |diff| / (|y| + |a x|) %.3e (<= %.3e)", ey, 2.0 * FLT_EPSILON, "axpy, n = 1037");
        report(max_of(a, n) == mx, "max_of %.7f (loop: %.7f)", max_of(a, n), mx, "max_of, n = 1037 (exact)");
        free(a); free(b); free(y); free(y0);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
