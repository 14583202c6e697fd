/*
 CPU proof of the schedules in llmc/feedback.cuh and llmc/attention.cuh.
 Each GPU kernel has a plain-C twin here that walks the same tiles in the same order (block size 64, lse
 by 4 shares of 16 columns merged at the end, alpha recomputed from lse, the blocked substitution, the
 transposed chain over key blocks from last to first, dZ in chunks of R rows, the FlashAttention-2 tiling
 of attention with online softmax and lse recomputation). The twins run in fp32 and are checked against
 the dense formulas of DESIGN.md §1/§2 evaluated in double; the dense backward formulas are themselves checked
 against central finite differences. Prints "N passed, M failed"; the exit status is 0 only if all pass.

   gcc -O2 -o dev/test/bin/test_feedback_blocked dev/test/test_feedback_blocked.c -lm && dev/test/bin/test_feedback_blocked
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "../../llmc/utils.h"

#define C 64          // FB_C / ATT_BT: rows per block and tile edge
#define PARTS 4       // feedback_lse_kernel: 4 threads share a row, 16 columns of a tile each

static int n_pass = 0, n_fail = 0;

// ----------------------------------------------------------------------------
// helpers

static unsigned long long rng = 42;
static double urand(void) { // uniform [0,1)
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}
static float *rand_f(size_t n, double lo, double hi) {
    float *x = (float *)mallocCheck(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * urand());
    return x;
}
static double *to_d(const float *x, size_t n) {
    double *y = (double *)mallocCheck(n * sizeof(double));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}
static int imin(int a, int b) { return a < b ? a : b; }

// max |got - ref| / max |ref|: one relative error per tensor, robust to entries near zero
static void expect_close(const char *what, const float *got, const double *ref, size_t n, double tol) {
    double max_err = 0.0, max_ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= max_err)) max_err = e;           // NaN propagates into a failure
        if (fabs(ref[i]) > max_ref) max_ref = fabs(ref[i]);
    }
    double rel = max_err / (max_ref > 0.0 ? max_ref : 1.0);
    int ok = rel <= tol;
    printf("  %-34s max abs err %.3e  rel to max|ref| %.3e  (tol %.0e)  %s\n", what, max_err, rel, tol, ok ? "ok" : "FAIL");
    if (ok) n_pass++; else n_fail++;
}
static void expect_close_d(const char *what, const double *got, const double *ref, size_t n, double tol) {
    double max_err = 0.0, max_ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - ref[i]);
        if (!(e <= max_err)) max_err = e;
        if (fabs(ref[i]) > max_ref) max_ref = fabs(ref[i]);
    }
    double rel = max_err / (max_ref > 0.0 ? max_ref : 1.0);
    int ok = rel <= tol;
    printf("  %-34s max abs err %.3e  rel to max|ref| %.3e  (tol %.0e)  %s\n", what, max_err, rel, tol, ok ? "ok" : "FAIL");
    if (ok) n_pass++; else n_fail++;
}

// ============================================================================
// feedback: dense reference (DESIGN.md §1, §2), double precision, one batch element; qb, kb rows of width D

static void dense_alpha(double *alpha, const double *qb, const double *kb, int T, int D) { // (T,T), strictly lower
    double scale = 1.0 / sqrt((double)D);
    for (int t = 0; t < T; t++) {
        double mx = -INFINITY;
        for (int j = 0; j < t; j++) {
            double z = 0; for (int i = 0; i < D; i++) z += qb[t * D + i] * kb[j * D + i];
            alpha[t * T + j] = z * scale;
            if (alpha[t * T + j] > mx) mx = alpha[t * T + j];
        }
        double sum = 0;
        for (int j = 0; j < t; j++) { alpha[t * T + j] = exp(alpha[t * T + j] - mx); sum += alpha[t * T + j]; }
        for (int j = 0; j < T; j++) alpha[t * T + j] = j < t ? alpha[t * T + j] / sum : 0.0;
    }
}

static void dense_forward(double *s, double *c, const double *f, const double *qb, const double *kb,
                          const double *gamma, int T, int D) {
    double *alpha = (double *)mallocCheck((size_t)T * T * sizeof(double));
    dense_alpha(alpha, qb, kb, T, D);
    for (int t = 0; t < T; t++) for (int i = 0; i < D; i++) {
        double ct = 0; for (int j = 0; j < t; j++) ct += alpha[t * T + j] * s[j * D + i];
        c[t * D + i] = ct;
        s[t * D + i] = f[t * D + i] + gamma[t] * ct;
    }
    free(alpha);
}

static void dense_backward(double *u, double *dgamma, double *dqb, double *dkb, const double *gs, const double *s,
                           const double *qb, const double *kb, const double *gamma, int T, int D) {
    double *alpha = (double *)mallocCheck((size_t)T * T * sizeof(double));
    dense_alpha(alpha, qb, kb, T, D);
    double scale = 1.0 / sqrt((double)D);
    for (int j = T - 1; j >= 0; j--) for (int i = 0; i < D; i++) {      // u_j = gs_j + sum_{t>j} gamma_t alpha[t,j] u_t
        double v = gs[j * D + i];
        for (int t = j + 1; t < T; t++) v += gamma[t] * alpha[t * T + j] * u[t * D + i];
        u[j * D + i] = v;
    }
    memset(dqb, 0, (size_t)T * D * sizeof(double));
    memset(dkb, 0, (size_t)T * D * sizeof(double));
    for (int t = 0; t < T; t++) {
        double dg = 0;                                                   // dgamma_t = u_t . c_t
        for (int j = 0; j < t; j++) for (int i = 0; i < D; i++) dg += u[t * D + i] * alpha[t * T + j] * s[j * D + i];
        dgamma[t] = dg;
        for (int j = 0; j < t; j++) {
            double us = 0; for (int i = 0; i < D; i++) us += u[t * D + i] * s[j * D + i];
            double dz = gamma[t] * alpha[t * T + j] * (us - dg);
            for (int i = 0; i < D; i++) {
                dqb[t * D + i] += dz * kb[j * D + i] * scale;
                dkb[j * D + i] += dz * qb[t * D + i] * scale;
            }
        }
    }
    free(alpha);
}

// ============================================================================
// feedback: twin of llmc/feedback.cuh, fp32, one batch element (the kernels' batch index only offsets pointers)

static float dotf(const float *a, const float *b, int n) { // fp32 fmaf chain, as fb_tile_dot accumulates
    float acc = 0.0f;
    for (int i = 0; i < n; i++) acc = fmaf(a[i], b[i], acc);
    return acc;
}

// feedback_lse_kernel: query tiles; per row 4 shares of 16 columns of each key tile, online, merged at the end
static void twin_lse(float *lse, const float *qb, const float *kb, int T, int D) {
    float scale = 1.0f / sqrtf((float)D);
    for (int i0 = 0; i0 < T; i0 += C) for (int t = i0; t < imin(i0 + C, T); t++) {
        float m[PARTS], l[PARTS];
        for (int p = 0; p < PARTS; p++) { m[p] = -INFINITY; l[p] = 0.0f; }
        for (int j0 = 0; j0 <= i0; j0 += C) for (int p = 0; p < PARTS; p++)
            for (int k = p * 16; k < p * 16 + 16 && j0 + k < t; k++) {
                float z = dotf(&qb[t * D], &kb[(j0 + k) * D], D) * scale, mn = fmaxf(m[p], z);
                l[p] = l[p] * expf(m[p] - mn) + expf(z - mn);
                m[p] = mn;
            }
        for (int o = 1; o < PARTS; o <<= 1) {       // the shuffle xor merge: every lane p combines with p^o
            float m2[PARTS], l2[PARTS];
            for (int p = 0; p < PARTS; p++) {
                float mo = m[p ^ o], lo = l[p ^ o], mm = fmaxf(m[p], mo);
                l2[p] = (mm == -INFINITY) ? 0.0f : l[p] * expf(m[p] - mm) + lo * expf(mo - mm);
                m2[p] = mm;
            }
            memcpy(m, m2, sizeof m); memcpy(l, l2, sizeof l);
        }
        lse[t] = (t == 0) ? -INFINITY : m[0] + logf(l[0]);
    }
}

// fb_gemm_kernel: out(m,n) = beta*out + scale * sum_k A(m,k) Bm(k,n), strided
static void twin_gemm(float *out, int o_m, const float *A, int a_m, int a_k, const float *Bm, int b_k,
                      int M, int N, int K, float scale, float beta) {
    for (int m = 0; m < M; m++) for (int n = 0; n < N; n++) {
        float acc = 0.0f;
        for (int k = 0; k < K; k++) acc = fmaf(A[(size_t)m * a_m + (size_t)k * a_k], Bm[(size_t)k * b_k + n], acc);
        float *p = &out[(size_t)m * o_m + n];
        *p = scale * acc + (beta != 0.0f ? beta * *p : 0.0f);
    }
}

// the chain's GEMM with fb_gemm's split-K: partial sums over k in [p*KS, (p+1)*KS), added in order by the solve
#define KSPLIT 256   // FB_KSPLIT
static void twin_gemm_split(float *acc, const float *A, int a_m, int a_k, const float *Bm, int b_k, int M, int N, int K) {
    int splits = K <= KSPLIT ? 1 : (K + KSPLIT - 1) / KSPLIT;
    int KS = 16 * (((K + splits - 1) / splits + 15) / 16);
    float *part = (float *)mallocCheck((size_t)M * N * sizeof(float));
    for (int i = 0; i < M * N; i++) acc[i] = 0.0f;
    for (int p = 0; p < splits; p++) {
        int k0 = p * KS, k1 = imin(K, k0 + KS);
        twin_gemm(part, N, A + (size_t)k0 * a_k, a_m, a_k, Bm + (size_t)k0 * b_k, b_k, M, N, k1 > k0 ? k1 - k0 : 0, 1.0f, 0.0f);
        for (int i = 0; i < M * N; i++) acc[i] += part[i];
    }
    free(part);
}

static void twin_feedback_forward(float *s, float *c, float *lse, const float *f, const float *qb, const float *kb,
                                  const float *gamma, int T, int D) {
    float scale = 1.0f / sqrtf((float)D);
    float *P = (float *)callocCheck((size_t)C * T, sizeof(float));    // (C, T)
    float *acc = (float *)callocCheck((size_t)C * D, sizeof(float));  // (C, D)
    twin_lse(lse, qb, kb, T, D);
    for (int i0 = 0; i0 < T; i0 += C) {
        for (int r = 0; r < C; r++) for (int j = 0; j < imin(i0 + C, T); j++) {   // feedback_alpha_rows_kernel
            int t = i0 + r;
            P[r * T + j] = (j < t && t < T) ? expf(dotf(&qb[t * D], &kb[j * D], D) * scale - lse[t]) : 0.0f;
        }
        twin_gemm_split(acc, P, T, 1, s, D, C, D, i0);                  // acc = P[:, 0:i0] s[0:i0]
        for (int n = 0; n < D; n++) {                                   // feedback_solve_rows_kernel
            float sv[C];
            for (int r = 0; r < C; r++) {
                float cr = acc[r * D + n];
                for (int j = 0; j < r; j++) cr = fmaf(i0 + j < T ? P[r * T + i0 + j] : 0.0f, sv[j], cr);
                int live = i0 + r < T;
                sv[r] = live ? f[(i0 + r) * D + n] + gamma[live ? i0 + r : 0] * cr : 0.0f;
                if (live) { s[(i0 + r) * D + n] = sv[r]; c[(i0 + r) * D + n] = cr; }
            }
        }
    }
    free(P); free(acc);
}

static int twin_dz_rows(int T) { // feedback_dz_rows
    int R = 256, Tc = C * ((T + C - 1) / C);
    return R < Tc ? R : Tc;
}

static void twin_feedback_backward(float *u, float *dgamma, float *dqb, float *dkb, const float *gs, const float *s,
                                   const float *c, const float *lse, const float *qb, const float *kb,
                                   const float *gamma, int T, int D) {
    float scale = 1.0f / sqrtf((float)D);
    int R = twin_dz_rows(T);
    float *Pc = (float *)callocCheck((size_t)T * C, sizeof(float));   // (T, C)
    float *acc = (float *)callocCheck((size_t)C * D, sizeof(float));  // (C, D)
    float *dZ = (float *)callocCheck((size_t)R * T, sizeof(float));   // (R, T)
    for (int j0 = C * ((T - 1) / C); j0 >= 0; j0 -= C) {
        for (int t = j0; t < T; t++) for (int r = 0; r < C; r++)       // feedback_alpha_cols_kernel
            Pc[t * C + r] = (j0 + r < t) ? gamma[t] * expf(dotf(&qb[t * D], &kb[(j0 + r) * D], D) * scale - lse[t]) : 0.0f;
        int j1 = imin(j0 + C, T);
        twin_gemm_split(acc, Pc + j1 * C, 1, C, u + (size_t)j1 * D, D, C, D, T - j1);
        for (int n = 0; n < D; n++) {                                   // feedback_solve_cols_kernel
            float uv[C];
            for (int r = C - 1; r >= 0; r--) {
                float ur = acc[r * D + n];
                for (int rr = C - 1; rr > r; rr--) ur = fmaf(j0 + rr < T ? Pc[(j0 + rr) * C + r] : 0.0f, uv[rr], ur);
                int live = j0 + r < T;
                uv[r] = live ? gs[(j0 + r) * D + n] + ur : 0.0f;
                if (live) u[(j0 + r) * D + n] = uv[r];
            }
        }
    }
    for (int t = 0; t < T; t++) dgamma[t] = dotf(&u[t * D], &c[t * D], D);   // feedback_dgamma_kernel (order aside)
    memset(dkb, 0, (size_t)T * D * sizeof(float));
    for (int g0 = 0; g0 < T; g0 += R) {
        int g1 = imin(g0 + R, T);
        for (int t = g0; t < g1; t++) for (int j = 0; j < g1; j++)     // feedback_dz_kernel
            dZ[(t - g0) * T + j] = j < t ? gamma[t] * expf(dotf(&qb[t * D], &kb[j * D], D) * scale - lse[t])
                                               * (dotf(&u[t * D], &s[j * D], D) - dgamma[t]) : 0.0f;
        twin_gemm(dqb + (size_t)g0 * D, D, dZ, T, 1, kb, D, g1 - g0, D, g1, scale, 0.0f);
        twin_gemm(dkb, D, dZ, 1, T, qb + (size_t)g0 * D, D, g1, D, g1 - g0, scale, 1.0f);
    }
    free(Pc); free(acc); free(dZ);
}

// ----------------------------------------------------------------------------
// feedback tests

// the dense backward against central differences of L = sum gs.s (double, tiny shape)
static void test_feedback_dense_fd(int T, int D) {
    printf("feedback dense backward vs finite differences, T=%d D=%d\n", T, D);
    size_t n = (size_t)T * D;
    double *f = to_d(rand_f(n, -1, 1), n), *qb = to_d(rand_f(n, -1, 1), n), *kb = to_d(rand_f(n, -1, 1), n);
    double *gamma = to_d(rand_f(T, 0.5, 0.999), T), *gs = to_d(rand_f(n, -1, 1), n);
    double *s = malloc(n * 8), *c = malloc(n * 8), *u = malloc(n * 8), *dg = malloc(T * 8), *dq = malloc(n * 8), *dk = malloc(n * 8);
    dense_forward(s, c, f, qb, kb, gamma, T, D);
    dense_backward(u, dg, dq, dk, gs, s, qb, kb, gamma, T, D);
    double *x[4] = {f, gamma, qb, kb}, *grad[4] = {u, dg, dq, dk};
    size_t len[4] = {n, (size_t)T, n, n};
    const char *name[4] = {"u = dL/df", "dgamma", "dqb", "dkb"};
    for (int a = 0; a < 4; a++) {
        double *num = malloc(len[a] * 8);
        for (size_t i = 0; i < len[a]; i++) {
            double keep = x[a][i], L[2], h = 1e-5;
            for (int sgn = 0; sgn < 2; sgn++) {
                x[a][i] = keep + (sgn ? -h : h);
                dense_forward(s, c, f, qb, kb, gamma, T, D);
                L[sgn] = 0; for (size_t k = 0; k < n; k++) L[sgn] += gs[k] * s[k];
            }
            x[a][i] = keep;
            num[i] = (L[0] - L[1]) / (2 * h);
        }
        // central differences in double: truncation ~h^2 = 1e-10, rounding ~1e-16/h = 1e-11 relative
        expect_close_d(name[a], grad[a], num, len[a], 1e-7);
        free(num);
    }
    free(f); free(qb); free(kb); free(gamma); free(gs); free(s); free(c); free(u); free(dg); free(dq); free(dk);
}

static void test_feedback_blocked(int T, int D) {
    printf("feedback blocked twin vs dense, T=%d D=%d (dZ chunk R=%d)\n", T, D, twin_dz_rows(T));
    size_t n = (size_t)T * D;
    float *f = rand_f(n, -1, 1), *qb = rand_f(n, -2, 2), *kb = rand_f(n, -2, 2), *gs = rand_f(n, -1, 1);
    float *gamma = rand_f(T, 0.9, 0.999);           // near gamma_max: the chain gain is close to 1
    double *fd = to_d(f, n), *qd = to_d(qb, n), *kd = to_d(kb, n), *gd = to_d(gamma, T), *gsd = to_d(gs, n);
    double *s_ref = malloc(n * 8), *c_ref = malloc(n * 8), *u_ref = malloc(n * 8), *dg_ref = malloc(T * 8);
    double *dq_ref = malloc(n * 8), *dk_ref = malloc(n * 8);
    dense_forward(s_ref, c_ref, fd, qd, kd, gd, T, D);
    dense_backward(u_ref, dg_ref, dq_ref, dk_ref, gsd, s_ref, qd, kd, gd, T, D);
    float *s = malloc(n * 4), *c = malloc(n * 4), *lse = malloc(T * 4), *u = malloc(n * 4), *dg = malloc(T * 4);
    float *dq = malloc(n * 4), *dk = malloc(n * 4);
    twin_feedback_forward(s, c, lse, f, qb, kb, gamma, T, D);
    twin_feedback_backward(u, dg, dq, dk, gs, s, c, lse, qb, kb, gamma, T, D);
    // fp32 twin vs double: each entry is a sum of O(T + D) fp32 products (error ~1e-7 each) carried by a chain of
    // gain <= 1; 1e-4 of the tensor's largest entry leaves two orders of margin over the ~1e-6 seen, yet a wrong
    // index, mask or block boundary gives errors of order 1e-1..1.
    expect_close("s", s, s_ref, n, 1e-4);
    expect_close("c", c, c_ref, n, 1e-4);
    expect_close("u = dL/df", u, u_ref, n, 1e-4);
    expect_close("dgamma", dg, dg_ref, T, 1e-4);
    expect_close("dqb", dq, dq_ref, n, 1e-4);
    expect_close("dkb", dk, dk_ref, n, 1e-4);
    free(f); free(qb); free(kb); free(gs); free(gamma); free(fd); free(qd); free(kd); free(gd); free(gsd);
    free(s_ref); free(c_ref); free(u_ref); free(dg_ref); free(dq_ref); free(dk_ref);
    free(s); free(c); free(lse); free(u); free(dg); free(dq); free(dk);
}

// ============================================================================
// attention: dense GQA reference in double. q, out, dq: (T,H,d); k, v, dk, dv: (T,Hkv,d); one batch element

static void dense_attention(double *out, double *dq, double *dk, double *dv, const double *dout,
                            const double *q, const double *k, const double *v, int T, int H, int Hkv, int d) {
    int g = H / Hkv;
    double scale = 1.0 / sqrt((double)d);
    double *P = malloc((size_t)T * 8), *dP = malloc((size_t)T * 8);
    if (dq) { memset(dq, 0, (size_t)T * H * d * 8); memset(dk, 0, (size_t)T * Hkv * d * 8); memset(dv, 0, (size_t)T * Hkv * d * 8); }
    for (int h = 0; h < H; h++) for (int t = 0; t < T; t++) {
        const double *qt = &q[(t * H + h) * d];
        int hk = h / g;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j <= t; j++) {
            double z = 0; for (int i = 0; i < d; i++) z += qt[i] * k[(j * Hkv + hk) * d + i];
            P[j] = z * scale; if (P[j] > mx) mx = P[j];
        }
        for (int j = 0; j <= t; j++) { P[j] = exp(P[j] - mx); sum += P[j]; }
        for (int j = 0; j <= t; j++) P[j] /= sum;
        double *ot = &out[(t * H + h) * d];
        for (int i = 0; i < d; i++) { ot[i] = 0; for (int j = 0; j <= t; j++) ot[i] += P[j] * v[(j * Hkv + hk) * d + i]; }
        if (!dq) continue;
        const double *dot = &dout[(t * H + h) * d];
        double delta = 0; for (int i = 0; i < d; i++) delta += dot[i] * ot[i];
        for (int j = 0; j <= t; j++) {
            dP[j] = 0; for (int i = 0; i < d; i++) dP[j] += dot[i] * v[(j * Hkv + hk) * d + i];
            double ds = P[j] * (dP[j] - delta);
            for (int i = 0; i < d; i++) {
                dq[(t * H + h) * d + i] += ds * k[(j * Hkv + hk) * d + i] * scale;
                dk[(j * Hkv + hk) * d + i] += ds * qt[i] * scale;
                dv[(j * Hkv + hk) * d + i] += P[j] * dot[i];
            }
        }
    }
    free(P); free(dP);
}

// ----------------------------------------------------------------------------
// attention: twin of llmc/attention.cuh's tiling, in fp32 (the kernels also round P and dS to bf16 before their
// products, as FlashAttention-2 does; that precision is checked by dev/cuda/attention_*.cu, not here)

// attention_forward_kernel: per (head, query tile), key tiles j0 <= i0, online softmax with the tile's row max
static void twin_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                                   int T, int H, int Hkv, int d) {
    int g = H / Hkv;
    float scale = 1.0f / sqrtf((float)d);
    float *o = malloc((size_t)d * 4);
    for (int h = 0; h < H; h++) for (int i0 = 0; i0 < T; i0 += C) for (int t = i0; t < imin(i0 + C, T); t++) {
        int hk = h / g;
        float m = -INFINITY, l = 0.0f, sc[C];
        for (int i = 0; i < d; i++) o[i] = 0.0f;
        for (int j0 = 0; j0 <= i0; j0 += C) {
            float mx = -INFINITY;
            for (int jj = 0; jj < C; jj++) {
                int j = j0 + jj;
                sc[jj] = (j <= t && j < T) ? dotf(&q[(t * H + h) * d], &k[(j * Hkv + hk) * d], d) * scale : -INFINITY;
                mx = fmaxf(mx, sc[jj]);
            }
            float mn = fmaxf(m, mx), corr = expf(m - mn), rs = 0.0f;
            for (int jj = 0; jj < C; jj++) { sc[jj] = expf(sc[jj] - mn); rs += sc[jj]; }
            l = l * corr + rs; m = mn;
            for (int i = 0; i < d; i++) {
                o[i] *= corr;
                for (int jj = 0; jj < C && j0 + jj < T; jj++) o[i] = fmaf(sc[jj], v[((j0 + jj) * Hkv + hk) * d + i], o[i]);
            }
        }
        for (int i = 0; i < d; i++) out[(t * H + h) * d + i] = o[i] / l;
        lse[h * T + t] = m + logf(l);
    }
    free(o);
}

// attention_backward_{dq,dkv}_kernel: dq per query tile over key tiles <= it; dk, dv per key tile over the g heads
// of its kv head and the query tiles >= it; P recomputed from lse, Delta = dout.out
static void twin_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                    const float *lse, const float *q, const float *k, const float *v,
                                    int T, int H, int Hkv, int d) {
    int g = H / Hkv;
    float scale = 1.0f / sqrtf((float)d);
    float *delta = malloc((size_t)H * T * 4);
    for (int t = 0; t < T; t++) for (int h = 0; h < H; h++)
        delta[h * T + t] = dotf(&dout[(t * H + h) * d], &out[(t * H + h) * d], d);
    for (int h = 0; h < H; h++) for (int i0 = 0; i0 < T; i0 += C) for (int t = i0; t < imin(i0 + C, T); t++) {
        int hk = h / g;
        float *dqt = &dq[(t * H + h) * d];
        for (int i = 0; i < d; i++) dqt[i] = 0.0f;
        for (int j0 = 0; j0 <= i0; j0 += C) for (int j = j0; j < imin(j0 + C, T); j++) {
            if (j > t) continue;
            float p = expf(dotf(&q[(t * H + h) * d], &k[(j * Hkv + hk) * d], d) * scale - lse[h * T + t]);
            float ds = p * (dotf(&dout[(t * H + h) * d], &v[(j * Hkv + hk) * d], d) - delta[h * T + t]);
            for (int i = 0; i < d; i++) dqt[i] = fmaf(ds, k[(j * Hkv + hk) * d + i], dqt[i]);
        }
        for (int i = 0; i < d; i++) dqt[i] *= scale;
    }
    for (int hk = 0; hk < Hkv; hk++) for (int j0 = 0; j0 < T; j0 += C) for (int j = j0; j < imin(j0 + C, T); j++) {
        float *dkj = &dk[(j * Hkv + hk) * d], *dvj = &dv[(j * Hkv + hk) * d];
        for (int i = 0; i < d; i++) { dkj[i] = 0.0f; dvj[i] = 0.0f; }
        for (int h = hk * g; h < (hk + 1) * g; h++) for (int i0 = j0; i0 < T; i0 += C)
            for (int t = i0; t < imin(i0 + C, T); t++) {
                if (j > t) continue;
                float p = expf(dotf(&q[(t * H + h) * d], &k[(j * Hkv + hk) * d], d) * scale - lse[h * T + t]);
                float ds = p * (dotf(&dout[(t * H + h) * d], &v[(j * Hkv + hk) * d], d) - delta[h * T + t]);
                for (int i = 0; i < d; i++) {
                    dvj[i] = fmaf(p, dout[(t * H + h) * d + i], dvj[i]);
                    dkj[i] = fmaf(ds, q[(t * H + h) * d + i], dkj[i]);
                }
            }
        for (int i = 0; i < d; i++) dkj[i] *= scale;
    }
    free(delta);
}

// ----------------------------------------------------------------------------
// attention tests

static void test_attention_dense_fd(int T, int H, int Hkv, int d) {
    printf("attention dense backward vs finite differences, T=%d H=%d Hkv=%d d=%d\n", T, H, Hkv, d);
    size_t nq = (size_t)T * H * d, nk = (size_t)T * Hkv * d;
    double *q = to_d(rand_f(nq, -1, 1), nq), *k = to_d(rand_f(nk, -1, 1), nk), *v = to_d(rand_f(nk, -1, 1), nk);
    double *dout = to_d(rand_f(nq, -1, 1), nq), *out = malloc(nq * 8);
    double *dq = malloc(nq * 8), *dk = malloc(nk * 8), *dv = malloc(nk * 8);
    dense_attention(out, dq, dk, dv, dout, q, k, v, T, H, Hkv, d);
    double *x[3] = {q, k, v}, *grad[3] = {dq, dk, dv};
    size_t len[3] = {nq, nk, nk};
    const char *name[3] = {"dq", "dk (summed over the group)", "dv (summed over the group)"};
    for (int a = 0; a < 3; a++) {
        double *num = malloc(len[a] * 8);
        for (size_t i = 0; i < len[a]; i++) {
            double keep = x[a][i], L[2], h = 1e-5;
            for (int sgn = 0; sgn < 2; sgn++) {
                x[a][i] = keep + (sgn ? -h : h);
                dense_attention(out, NULL, NULL, NULL, NULL, q, k, v, T, H, Hkv, d);
                L[sgn] = 0; for (size_t e = 0; e < nq; e++) L[sgn] += dout[e] * out[e];
            }
            x[a][i] = keep;
            num[i] = (L[0] - L[1]) / (2 * h);
        }
        expect_close_d(name[a], grad[a], num, len[a], 1e-7); // as for the feedback: h^2 and 1e-16/h are far below
        free(num);
    }
    free(q); free(k); free(v); free(dout); free(out); free(dq); free(dk); free(dv);
}

static void test_attention_tiled(int T, int H, int Hkv, int d) {
    printf("attention tiled twin vs dense, T=%d H=%d Hkv=%d d=%d\n", T, H, Hkv, d);
    size_t nq = (size_t)T * H * d, nk = (size_t)T * Hkv * d;
    float *q = rand_f(nq, -2, 2), *k = rand_f(nk, -2, 2), *v = rand_f(nk, -1, 1), *dout = rand_f(nq, -1, 1);
    double *qd = to_d(q, nq), *kd = to_d(k, nk), *vd = to_d(v, nk), *dod = to_d(dout, nq);
    double *out_ref = malloc(nq * 8), *dq_ref = malloc(nq * 8), *dk_ref = malloc(nk * 8), *dv_ref = malloc(nk * 8);
    dense_attention(out_ref, dq_ref, dk_ref, dv_ref, dod, qd, kd, vd, T, H, Hkv, d);
    float *out = malloc(nq * 4), *lse = malloc((size_t)H * T * 4), *dq = malloc(nq * 4), *dk = malloc(nk * 4), *dv = malloc(nk * 4);
    twin_attention_forward(out, lse, q, k, v, T, H, Hkv, d);
    twin_attention_backward(dq, dk, dv, dout, out, lse, q, k, v, T, H, Hkv, d);
    // fp32 sums of <= T + d products against double: ~1e-6 of the largest entry; 1e-4 keeps margin, a wrong mask,
    // head mapping or tile bound is of order 1e-1
    expect_close("out", out, out_ref, nq, 1e-4);
    expect_close("dq", dq, dq_ref, nq, 1e-4);
    expect_close("dk", dk, dk_ref, nk, 1e-4);
    expect_close("dv", dv, dv_ref, nk, 1e-4);
    free(q); free(k); free(v); free(dout); free(qd); free(kd); free(vd); free(dod);
    free(out_ref); free(dq_ref); free(dk_ref); free(dv_ref); free(out); free(lse); free(dq); free(dk); free(dv);
}

int main(void) {
    test_feedback_dense_fd(5, 3);
    // odd T, T below / at / just past one block, several blocks, T not a multiple of 64, T past one dZ chunk
    // of 256 rows (300, 600) and past one split-K slice of the chain GEMMs (600: up to 3 slices)
    int shapes[][2] = {{1, 8}, {7, 5}, {64, 16}, {65, 24}, {130, 40}, {200, 33}, {300, 72}, {600, 20}};
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) test_feedback_blocked(shapes[i][0], shapes[i][1]);
    test_attention_dense_fd(4, 4, 2, 2);
    int ashapes[][4] = {{1, 1, 1, 32}, {9, 2, 1, 32}, {64, 2, 2, 32}, {70, 4, 2, 32}, {150, 4, 1, 64}, {129, 2, 2, 128}};
    for (size_t i = 0; i < sizeof(ashapes) / sizeof(ashapes[0]); i++)
        test_attention_tiled(ashapes[i][0], ashapes[i][1], ashapes[i][2], ashapes[i][3]);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 ? 0 : 1;
}
