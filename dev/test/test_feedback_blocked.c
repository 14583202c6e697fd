/*
 CPU proof of the schedules in llmc/feedback.cuh and llmc/attention.cuh.
 Each GPU kernel has a plain-C twin here that walks the same tiles in the same order (feedback: superblocks of
 256 rows, the bf16 hi/lo split products, the in-superblock solve in 32-row blocks (inverses of the diagonal
 blocks, right-looking updates), the transposed chain over
 key superblocks from last to first, bf16 dZ, dkb once per key superblock and dqb accumulated; attention: the
 FlashAttention-2 tiling with online softmax and lse recomputation, block size 64). The twins run in fp32 (with
 bf16 rounding where the GPU rounds) and are checked against
 the dense formulas of DESIGN.md §1/§2 evaluated in double; the dense backward formulas are themselves checked
 against central finite differences. Prints "N passed, M failed"; the exit status is 0 only if all pass.

   gcc -O2 -o dev/test/bin/test_feedback_blocked dev/test/test_feedback_blocked.c -lm && dev/test/bin/test_feedback_blocked
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "../../llmc/utils.h"

#define C 64          // ATT_BT: rows per block and tile edge of the attention

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
// feedback: dense reference (DESIGN.md §1, §2), double precision, one batch element: dev/cuda/feedback_dense.h
// (dense_alpha, dense_forward, dense_backward), the same code the dev/cuda feedback checks use; here ld = D

#include "../cuda/feedback_dense.h"

// ============================================================================
// feedback: twin of llmc/feedback.cuh, one batch element (the kernels' batch index only offsets pointers).
// It walks the same schedule: superblocks of FB_S rows (forward, in order) / keys (backward, last first); the bf16
// hi/lo split of P, s, Pc, u and the three GEMMs X_hi Y_hi + X_lo Y_hi + X_hi Y_lo; the in-superblock solve in
// blocks of FB_R rows (first the inverses of the diagonal 32x32 blocks in the kernels' fp32 order, then per block
// x_q = Minv_q (rhs + G h_q) and the right-looking update of the later blocks' sums h, both as tensor-core products
// of bf16 hi/lo halves: dot3, the mma's order inside a k16 slice not modelled); dZ
// rounded to bf16; dkb written once per key superblock; dqb accumulated over superblocks in fp32. bf16 rounding is
// modelled exactly (round to nearest even); the GEMMs' fp32 summation order is cuBLASLt's own and not modelled.

#define FB_S 256      // llmc/feedback.cuh: rows of a superblock
#define FB_R 32       // rows of a block of the in-superblock solve

static float dotf(const float *a, const float *b, int n) { // fp32 fmaf chain
    float acc = 0.0f;
    for (int i = 0; i < n; i++) acc = fmaf(a[i], b[i], acc);
    return acc;
}
static float bf16r(float x) { // __float2bfloat16: round to nearest even (finite x)
    unsigned int u;
    memcpy(&u, &x, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    u &= 0xFFFF0000u;
    memcpy(&x, &u, 4);
    return x;
}
static void split(float x, float *hi, float *lo) { *hi = bf16r(x); *lo = bf16r(x - *hi); } // fb_split

// one bf16 GEMM of the three products concatenated along K (fb_gemm on the X3/Y3 layouts: for each k the terms
// A_hi B_hi, A_lo B_hi, A_hi B_lo in turn), one fp32 sum
static float gemm3(const float *ah, const float *al, size_t as, const float *bh, const float *bl, size_t bs, int K) {
    float x = 0.0f;
    for (int k = 0; k < K; k++) {
        x = fmaf(ah[k * as], bh[k * bs], x);
        x = fmaf(al[k * as], bh[k * bs], x);
        x = fmaf(ah[k * as], bl[k * bs], x);
    }
    return x;
}

// one fp32-grade tensor-core dot product: a and b split into bf16 halves on the fly, a_hi b_hi + a_lo b_hi + a_hi b_lo
// (fb_mma3: three mmas into one fp32 accumulator; here three fp32 sums, then added)
static float dot3(const float *a, size_t as, const float *b, size_t bs, int K) {
    float x = 0.0f, y = 0.0f, z = 0.0f;
    for (int k = 0; k < K; k++) {
        float ah, al, bh, bl;
        split(a[k * as], &ah, &al);
        split(b[k * bs], &bh, &bl);
        x = fmaf(ah, bh, x); y = fmaf(al, bh, y); z = fmaf(ah, bl, z);
    }
    return (x + y) + z;
}

// fb_block_inverse: Minv (32 x 32) = (I - diag(g) L_qq)^{-1} for the diagonal block at q0 of L (FB_S x FB_S,
// entries outside [0, Sv)^2 taken as 0; g = NULL: G = I; rev: L upper, rows from last to first), each sum one fp32
// chain (the kernel's sums four chains and adds them: the same to the last bits, every term of one sign)
static void twin_block_inverse(float *Minv, const float *L, int q0, int Sv, const float *g, int rev) {
    for (int j = 0; j < FB_R; j++) {                                    // lane j = column j of the inverse
        float a[FB_R] = {0.0f};
        for (int i = 0; i < FB_R; i++) {
            int r = rev ? FB_R - 1 - i : i;
            float gr = g == NULL ? 1.0f : q0 + r < Sv ? g[q0 + r] : 0.0f;
            float x = fmaf(gr, a[r], r == j ? 1.0f : 0.0f);
            Minv[r * FB_R + j] = x;
            for (int i2 = i + 1; i2 < FB_R; i2++) {
                int r2 = rev ? FB_R - 1 - i2 : i2;
                float l = q0 + r2 < Sv && q0 + r < Sv ? L[(q0 + r2) * FB_S + q0 + r] : 0.0f;
                a[r2] = fmaf(l, x, a[r2]);
            }
        }
    }
}
// phase A of fb_solve: y = Minv x (hi/lo tensor-core products); rows past Sv are 0
static void twin_apply_inverse(float *y, const float *Minv, const float *x, int q0, int Sv) {
    for (int k = 0; k < FB_R; k++) y[k] = q0 + k < Sv ? dot3(&Minv[k * FB_R], 1, x, 1, FB_R) : 0.0f;
}

static void twin_feedback_forward(float *s, float *c, float *lse, const float *f, const float *qb, const float *kb,
                                  const float *gamma, int T, int D) {
    float scale = 1.0f / sqrtf((float)D);
    size_t n = (size_t)T * D;
    float *s_hi = malloc(n * 4), *s_lo = malloc(n * 4);
    float *Ph = malloc((size_t)FB_S * T * 4), *Pl = malloc((size_t)FB_S * T * 4), *Pd = malloc((size_t)FB_S * FB_S * 4);
    float *acc = malloc((size_t)FB_S * D * 4), *h = malloc((size_t)FB_S * 4), *Mi = malloc((size_t)FB_S * FB_R * 4);
    float *zz = malloc((size_t)T * 4);
    for (int u0 = 0; u0 < T; u0 += FB_S) {
        int u1 = imin(u0 + FB_S, T), Sv = u1 - u0;
        for (int r = 0; r < Sv; r++) {                                  // Z GEMM + fb_fwd_rows_kernel
            int t = u0 + r;
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < u1; j++) zz[j] = dotf(&qb[(size_t)t * D], &kb[(size_t)j * D], D) * scale;
            for (int j = 0; j < t; j++) mx = fmaxf(mx, zz[j]);
            for (int j = 0; j < t; j++) sum += expf(zz[j] - mx);
            float l = t == 0 ? -INFINITY : mx + logf(sum);
            for (int j = 0; j < u1; j++) {
                float p = j < t ? expf(zz[j] - l) : 0.0f;
                split(p, &Ph[(size_t)r * T + j], &Pl[(size_t)r * T + j]);
                if (j >= u0) Pd[r * FB_S + j - u0] = p;
            }
            lse[t] = l;
        }
        for (int r = 0; r < Sv; r++) for (int i = 0; i < D; i++)       // acc = P[:, 0:u0] s[0:u0], 1 GEMM
            acc[r * D + i] = u0 > 0 ? gemm3(&Ph[(size_t)r * T], &Pl[(size_t)r * T], 1, &s_hi[i], &s_lo[i], D, u0) : 0.0f;
        int nb = (Sv + FB_R - 1) / FB_R;                                // fb_inverse_kernel: the blocks' inverses
        for (int q = 0; q < nb; q++) twin_block_inverse(&Mi[q * FB_R * FB_R], Pd, q * FB_R, Sv, &gamma[u0], 0);
        for (int i = 0; i < D; i++) {                                   // then every column alike
            for (int r = 0; r < Sv; r++) h[r] = u0 > 0 ? acc[r * D + i] : 0.0f;
            for (int q0 = 0; q0 < Sv; q0 += FB_R) {
                float x[FB_R], sv[FB_R];
                for (int k = 0; k < FB_R; k++) x[k] = q0 + k < Sv ? fmaf(gamma[u0 + q0 + k], h[q0 + k], f[(size_t)(u0 + q0 + k) * D + i]) : 0.0f;
                twin_apply_inverse(sv, &Mi[q0 * FB_R], x, q0, Sv);      // A. s_q = Minv_q (f + g h)
                for (int k = 0; k < FB_R && q0 + k < Sv; k++) {
                    size_t o = (size_t)(u0 + q0 + k) * D + i;
                    s[o] = sv[k];
                    split(sv[k], &s_hi[o], &s_lo[o]);
                }
                for (int r = q0; r < Sv; r++)                           // B. right-looking, this block's rows too
                    h[r] += dot3(&Pd[r * FB_S + q0], 1, sv, 1, imin(FB_R, Sv - q0));
                for (int k = 0; k < FB_R && q0 + k < Sv; k++) c[(size_t)(u0 + q0 + k) * D + i] = h[q0 + k];
            }
        }
    }
    free(s_hi); free(s_lo); free(Ph); free(Pl); free(Pd); free(acc); free(h); free(Mi); free(zz);
}

// u is returned as u_hi + u_lo (how the backward holds it); dqb, dkb as bf16 values
static void twin_feedback_backward(float *u, float *dgamma, float *dqb, float *dkb, const float *gs, const float *s,
                                   const float *c, const float *lse, const float *qb, const float *kb,
                                   const float *gamma, int T, int D) {
    float scale = 1.0f / sqrtf((float)D);
    size_t n = (size_t)T * D;
    float *u_hi = malloc(n * 4), *u_lo = malloc(n * 4), *dq = calloc(n, 4);
    float *Ph = malloc((size_t)T * FB_S * 4), *Pl = malloc((size_t)T * FB_S * 4), *dZ = malloc((size_t)T * FB_S * 4);
    float *acc = malloc((size_t)FB_S * D * 4), *h = malloc((size_t)FB_S * 4), *PcT = malloc((size_t)FB_S * FB_S * 4);
    float *Mi = malloc((size_t)FB_S * FB_R * 4);
    float *sh = malloc((size_t)FB_S * D * 4), *sl = malloc((size_t)FB_S * D * 4);
    for (int u0 = (T - 1) / FB_S * FB_S; u0 >= 0; u0 -= FB_S) {
        int u1 = imin(u0 + FB_S, T), Sv = u1 - u0, M = T - u0;
        for (int i = 0; i < M; i++) for (int jj = 0; jj < Sv; jj++) { // slab GEMM + fb_bwd_slab_kernel
            int t = u0 + i, j = u0 + jj;
            float p = j < t ? gamma[t] * expf(dotf(&qb[(size_t)t * D], &kb[(size_t)j * D], D) * scale - lse[t]) : 0.0f;
            split(p, &Ph[i * FB_S + jj], &Pl[i * FB_S + jj]);
            if (i < Sv) PcT[jj * FB_S + i] = p;                         // the fp32 diagonal block, transposed
        }
        for (int jj = 0; jj < Sv; jj++) for (int i = 0; i < D; i++)    // acc = Pc[u1:T]^T u[u1:T], 1 GEMM
            acc[jj * D + i] = u1 < T ? gemm3(&Ph[Sv * FB_S + jj], &Pl[Sv * FB_S + jj], FB_S,
                                             &u_hi[(size_t)u1 * D + i], &u_lo[(size_t)u1 * D + i], D, T - u1) : 0.0f;
        int nb = (Sv + FB_R - 1) / FB_R;                                // fb_inverse_kernel: the blocks' inverses
        for (int q = 0; q < nb; q++) twin_block_inverse(&Mi[q * FB_R * FB_R], PcT, q * FB_R, Sv, NULL, 1);
        for (int i = 0; i < D; i++) {                                   // then every column alike
            for (int j = 0; j < Sv; j++) h[j] = gs[(size_t)(u0 + j) * D + i] + (u1 < T ? acc[j * D + i] : 0.0f);
            for (int q0 = (nb - 1) * FB_R; q0 >= 0; q0 -= FB_R) {
                float x[FB_R], uv[FB_R];
                for (int k = 0; k < FB_R; k++) x[k] = q0 + k < Sv ? h[q0 + k] : 0.0f;
                twin_apply_inverse(uv, &Mi[q0 * FB_R], x, q0, Sv);      // A. u_q = Minv_q h_q
                for (int k = 0; k < FB_R && q0 + k < Sv; k++) {
                    size_t o = (size_t)(u0 + q0 + k) * D + i;
                    split(uv[k], &u_hi[o], &u_lo[o]);
                }
                for (int j = 0; j < q0; j++)                            // B. right-looking: the earlier keys
                    h[j] += dot3(&PcT[j * FB_S + q0], 1, uv, 1, imin(FB_R, Sv - q0));
            }
        }
        for (int r = 0; r < Sv; r++) {                                  // fb_dgamma_kernel (order aside)
            size_t o = (size_t)(u0 + r) * D;
            float g = 0.0f;
            for (int i = 0; i < D; i++) g = fmaf(u_hi[o + i] + u_lo[o + i], c[o + i], g);
            dgamma[u0 + r] = g;
        }
        for (int r = 0; r < Sv; r++) for (int i = 0; i < D; i++) split(s[(size_t)(u0 + r) * D + i], &sh[r * D + i], &sl[r * D + i]);
        for (int i = 0; i < M; i++) for (int jj = 0; jj < Sv; jj++) { // US, 1 GEMM, then fb_dz_kernel
            size_t o = (size_t)(u0 + i) * D;
            float us = gemm3(&u_hi[o], &u_lo[o], 1, &sh[jj * D], &sl[jj * D], 1, D);
            dZ[i * FB_S + jj] = bf16r((Ph[i * FB_S + jj] + Pl[i * FB_S + jj]) * (us - dgamma[u0 + i]));
        }
        for (int jj = 0; jj < Sv; jj++) for (int i = 0; i < D; i++) {  // dkb[U] = dZ^T qb[u0:T] / sqrt(D), bf16
            float x = 0.0f;
            for (int k = 0; k < M; k++) x = fmaf(dZ[k * FB_S + jj], qb[(size_t)(u0 + k) * D + i], x);
            dkb[(size_t)(u0 + jj) * D + i] = bf16r(scale * x);
        }
        for (int k = 0; k < M; k++) for (int i = 0; i < D; i++) {      // dqb[u0:T] += dZ kb[U] / sqrt(D), fp32
            float x = 0.0f;
            for (int jj = 0; jj < Sv; jj++) x = fmaf(dZ[k * FB_S + jj], kb[(size_t)(u0 + jj) * D + i], x);
            dq[(size_t)(u0 + k) * D + i] += scale * x;
        }
    }
    for (size_t e = 0; e < n; e++) { u[e] = u_hi[e] + u_lo[e]; dqb[e] = bf16r(dq[e]); }
    free(u_hi); free(u_lo); free(dq); free(Ph); free(Pl); free(dZ); free(acc); free(h); free(Mi); free(sh); free(sl); free(PcT);
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
    dense_forward(s, c, NULL, f, qb, kb, D, gamma, T, D);
    dense_backward(u, dg, dq, dk, gs, s, qb, kb, D, gamma, T, D);
    double *x[4] = {f, gamma, qb, kb}, *grad[4] = {u, dg, dq, dk};
    size_t len[4] = {n, (size_t)T, n, n};
    const char *name[4] = {"u = dL/df", "dgamma", "dqb", "dkb"};
    for (int a = 0; a < 4; a++) {
        double *num = malloc(len[a] * 8);
        for (size_t i = 0; i < len[a]; i++) {
            double keep = x[a][i], L[2], h = 1e-5;
            for (int sgn = 0; sgn < 2; sgn++) {
                x[a][i] = keep + (sgn ? -h : h);
                dense_forward(s, c, NULL, f, qb, kb, D, gamma, T, D);
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
    printf("feedback superblock twin vs dense, T=%d D=%d (%d superblocks of %d)\n", T, D, (T + FB_S - 1) / FB_S, FB_S);
    size_t n = (size_t)T * D;
    float *f = rand_f(n, -1, 1), *qb = rand_f(n, -2, 2), *kb = rand_f(n, -2, 2), *gs = rand_f(n, -1, 1);
    float *gamma = rand_f(T, 0.9, 0.999);           // near gamma_max: the chain gain is close to 1
    double *fd = to_d(f, n), *qd = to_d(qb, n), *kd = to_d(kb, n), *gd = to_d(gamma, T), *gsd = to_d(gs, n);
    double *s_ref = malloc(n * 8), *c_ref = malloc(n * 8), *u_ref = malloc(n * 8), *dg_ref = malloc(T * 8);
    double *dq_ref = malloc(n * 8), *dk_ref = malloc(n * 8);
    dense_forward(s_ref, c_ref, NULL, fd, qd, kd, D, gd, T, D);
    dense_backward(u_ref, dg_ref, dq_ref, dk_ref, gsd, s_ref, qd, kd, D, gd, T, D);
    float *s = malloc(n * 4), *c = malloc(n * 4), *lse = malloc(T * 4), *u = malloc(n * 4), *dg = malloc(T * 4);
    float *dq = malloc(n * 4), *dk = malloc(n * 4);
    twin_feedback_forward(s, c, lse, f, qb, kb, gamma, T, D);
    twin_feedback_backward(u, dg, dq, dk, gs, s, c, lse, qb, kb, gamma, T, D);
    // twin vs double: s, c, u, dgamma are fp32-grade (hi/lo products: ~2^-16 per term, fp32 sums, a chain of
    // gain <= 1; ~1e-6 of the largest entry seen): 1e-4 of the tensor's largest entry leaves a wide margin, yet a
    // wrong index, mask or superblock boundary gives errors of order 1e-1..1 and a chain without the lo halves
    // ~1e-3. dqb, dkb are bf16 outputs (2^-9 = 2e-3 relative rounding of each entry) computed from a bf16-rounded
    // dZ (2^-9 of each term dZ kb, and the terms cancel: sum |dZ kb| is a few times |dqb|; seen up to 5.3e-3 of
    // the largest entry at T=7): 1.5e-2 of the largest entry, still far below the O(1e-1) of an indexing error.
    expect_close("s", s, s_ref, n, 1e-4);
    expect_close("c", c, c_ref, n, 1e-4);
    expect_close("u = dL/df", u, u_ref, n, 1e-4);
    expect_close("dgamma", dg, dg_ref, T, 1e-4);
    expect_close("dqb", dq, dq_ref, n, 1.5e-2);
    expect_close("dkb", dk, dk_ref, n, 1.5e-2);
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
    // odd T, T below / at / just past a 32-row sub-block, T within one superblock of 256, T = 256 exactly, T past
    // one (300) and two (600) superblocks with a partial last one, T = 513 (a last superblock of one row)
    int shapes[][2] = {{1, 8}, {7, 5}, {32, 16}, {33, 24}, {130, 40}, {256, 9}, {300, 32}, {513, 12}, {600, 20}};
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) test_feedback_blocked(shapes[i][0], shapes[i][1]);
    test_attention_dense_fd(4, 4, 2, 2);
    int ashapes[][4] = {{1, 1, 1, 32}, {9, 2, 1, 32}, {64, 2, 2, 32}, {70, 4, 2, 32}, {150, 4, 1, 64}, {129, 2, 2, 128}};
    for (size_t i = 0; i < sizeof(ashapes) / sizeof(ashapes[0]); i++)
        test_attention_tiled(ashapes[i][0], ashapes[i][1], ashapes[i][2], ashapes[i][3]);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 ? 0 : 1;
}
