/*
 The dense feedback reference, written once: the naive O(T^2 D) formulas of DESIGN.md §1/§2 in double precision,
 one batch element, independent of the blocked schedule of llmc/feedback.cuh. Plain C (also compiles as C++/CUDA).
 Used by dev/cuda/feedback_trsm_baseline.cu (the CPU check of feedback_forward.cu / feedback_backward.cu) and by
 dev/test/test_feedback_blocked.c (finite differences, and the reference of its fp32 twin of the kernels).
 Layouts: qb, kb (T, D) rows ld apart (ld >= D); f, s, c, gs, u, dqb, dkb (T, D) contiguous; gamma, dgamma, lse (T).
 The includer defines mallocCheck (llmc/utils.h; dev/cuda/common.h gets it through llmc/cuda_common.h).
   alpha[t,j] = softmax_{j<t}(qb_t . kb_j / sqrt(D)), strictly lower, row 0 empty (lse -inf there)
   forward:  c_t = sum_{j<t} alpha[t,j] s_j,  s_t = f_t + gamma_t c_t
   backward: u = (I - diag(gamma) alpha)^-T gs, i.e. u_j = gs_j + sum_{t>j} gamma_t alpha[t,j] u_t;
             dgamma_t = u_t . c_t;  dZ[t,j] = gamma_t alpha[t,j] (u_t . s_j - dgamma_t) (the softmax backward);
             dqb_t = sum_j dZ[t,j] kb_j / sqrt(D),  dkb_j = sum_t dZ[t,j] qb_t / sqrt(D)
*/
#ifndef SESSA_FEEDBACK_DENSE_H
#define SESSA_FEEDBACK_DENSE_H
#include <math.h>
#include <string.h>
#include <stdlib.h>

// alpha (T,T) as above; lse (T) = log sum_{j<t} exp(Z[t,j]), -inf at t = 0 (lse may be NULL)
static void dense_alpha(double *alpha, double *lse, const double *qb, const double *kb, int ld, int T, int D) {
    double scale = 1.0 / sqrt((double)D);
    for (int t = 0; t < T; t++) {
        double mx = -INFINITY;
        for (int j = 0; j < t; j++) {
            double z = 0; for (int i = 0; i < D; i++) z += qb[(size_t)t * ld + i] * kb[(size_t)j * ld + i];
            alpha[(size_t)t * T + j] = z * scale;
            if (alpha[(size_t)t * T + j] > mx) mx = alpha[(size_t)t * T + j];
        }
        double sum = 0;
        for (int j = 0; j < t; j++) { alpha[(size_t)t * T + j] = exp(alpha[(size_t)t * T + j] - mx); sum += alpha[(size_t)t * T + j]; }
        for (int j = 0; j < T; j++) alpha[(size_t)t * T + j] = j < t ? alpha[(size_t)t * T + j] / sum : 0.0;
        if (lse) lse[t] = t == 0 ? -INFINITY : mx + log(sum);
    }
}

// s, c (T,D); lse (T, may be NULL)
static void dense_forward(double *s, double *c, double *lse, const double *f, const double *qb, const double *kb,
                          int ld, const double *gamma, int T, int D) {
    double *alpha = (double *)mallocCheck((size_t)T * T * sizeof(double));
    dense_alpha(alpha, lse, qb, kb, ld, T, D);
    for (int t = 0; t < T; t++) for (int i = 0; i < D; i++) {
        double ct = 0; for (int j = 0; j < t; j++) ct += alpha[(size_t)t * T + j] * s[(size_t)j * D + i];
        c[(size_t)t * D + i] = ct;
        s[(size_t)t * D + i] = f[(size_t)t * D + i] + gamma[t] * ct;
    }
    free(alpha);
}

// given gs and the forward's s: u, dqb, dkb (T,D) contiguous, dgamma (T)
static void dense_backward(double *u, double *dgamma, double *dqb, double *dkb, const double *gs, const double *s,
                           const double *qb, const double *kb, int ld, const double *gamma, int T, int D) {
    double *alpha = (double *)mallocCheck((size_t)T * T * sizeof(double));
    dense_alpha(alpha, NULL, qb, kb, ld, T, D);
    double scale = 1.0 / sqrt((double)D);
    for (int j = T - 1; j >= 0; j--) for (int i = 0; i < D; i++) {      // u_j = gs_j + sum_{t>j} gamma_t alpha[t,j] u_t
        double v = gs[(size_t)j * D + i];
        for (int t = j + 1; t < T; t++) v += gamma[t] * alpha[(size_t)t * T + j] * u[(size_t)t * D + i];
        u[(size_t)j * D + i] = v;
    }
    memset(dqb, 0, (size_t)T * D * sizeof(double));
    memset(dkb, 0, (size_t)T * D * sizeof(double));
    for (int t = 0; t < T; t++) {
        double dg = 0;                                                   // dgamma_t = u_t . c_t
        for (int j = 0; j < t; j++) for (int i = 0; i < D; i++) dg += u[(size_t)t * D + i] * alpha[(size_t)t * T + j] * s[(size_t)j * D + i];
        dgamma[t] = dg;
        for (int j = 0; j < t; j++) {
            double us = 0; for (int i = 0; i < D; i++) us += u[(size_t)t * D + i] * s[(size_t)j * D + i];
            double dz = gamma[t] * alpha[(size_t)t * T + j] * (us - dg);
            for (int i = 0; i < D; i++) {
                dqb[(size_t)t * D + i] += dz * kb[(size_t)j * ld + i] * scale;
                dkb[(size_t)j * D + i] += dz * qb[(size_t)t * ld + i] * scale;
            }
        }
    }
    free(alpha);
}

#endif // SESSA_FEEDBACK_DENSE_H
