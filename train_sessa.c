/*
 train_sessa.c: trains a Sessa language model on the CPU in fp32, in the manner of llm.c's train_gpt2.c.
 Every forward and its backward are written by hand, side by side; OpenMP, no BLAS. The speed work (a tiled
 GEMM, exp and normal-CDF polynomials, blocked transposes) is in llmc/cpu_kernels.h beside plain references, so
 this file is the model: layers, then the model (forward, backward, update), then the training loop. Names,
 order and arguments follow train_sessa.cu (Model, model_forward, model_backward, model_update, ...).
 The model, its init, the feedback backward and the files follow DESIGN.md (sections 1-5).

 Build: make train_sessa  (gcc -O3 -march=native -ffp-contract=fast -fopenmp train_sessa.c -lm -o train_sessa)
 On a machine shared with other jobs, OMP_WAIT_POLICY=passive avoids threads spinning at barriers.
 Run:   ./train_sessa -e d4w256h4 -b 4 -t 256 -o out    (trains on data/default; -h for flags)
 Flags: those of llmc/args.h (DESIGN.md section 5), and
   -E EVALFILE  long-context eval file of data/long_context.py (TASK_eval.bin), with its val shard as -j
                and -t its seq_len: at every validation (-v) and at the end, the accuracy of the argmax
                prediction at its scored positions, one line per nominal distance, also into main.log
                ("step N eval_acc d=128 0.953125 61/64"; llmc/eval_tasks.h)
   -x 0         no training: only the validation and -E evaluation of the model at step 0, e.g.
                ./train_sessa -e out/model_00000500.bin -x 0 -t 512 -b 8 -E data/long_context/needle/needle_eval.bin \
                    -i data/long_context/needle/needle_val_000000.bin -j data/long_context/needle/needle_val_000000.bin

 Memory is O(B*T*D) per layer: no (T,T) matrix is ever stored. The attention keeps a log-sum-exp per
 query row and recomputes the probabilities in its backward (FlashAttention's idea); the feedback
 branch keeps s, the context c and a log-sum-exp per row, and recomputes alpha in its backward.
 The forward is written over the rows [t0, t1) of each sequence, with the rows before t0 already
 computed: training runs it over [0, T), sampling over one new row at a time against those earlier
 rows, which are then exactly the recurrent decode caches (k, v, kb, s): each new token costs O(T).
*/
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <omp.h>
// defines: fatal, mallocCheck, fopenCheck, now_seconds, bf16 conversions
#include "llmc/utils.h"
// defines: SessaConfig, the parameter table (P_*), sessa_param_decays, init, checkpoints, Rng
#include "llmc/sessa.h"
// defines: TrainArgs, train_args_parse (the flags of DESIGN.md section 5), -h
#include "llmc/args.h"
// defines: lr_at_step, step_validates, step_samples, step_checkpoints
#include "llmc/schedule.h"
// defines: sample_logits_topk, argmax_logits, sampler_seed
#include "llmc/sampler.h"
// defines: train_state_read/write, the run directory (lock, args.txt, main.log, run_log_val/run_log_train)
#include "llmc/train_state.h"
// defines: DataLoader
#include "llmc/dataloader.h"
// defines: Tokenizer
#include "llmc/tokenizer.h"
// defines: EvalTasks (-E)
#include "llmc/eval_tasks.h"
#include "llmc/cpu_kernels.h"   // gemm, exp_fast, normal_cdf, dot, axpy, max_of, transpose_rows

// ----------------------------------------------------------------------------
// Linear: out = inp W^T + b, W (OC, C) as PyTorch stores it. Rows have strides ldo / ldi.

static void linear_forward(float *out, int ldo, const float *inp, int ldi, const float *W, const float *b,
                           int N, int C, int OC, float *wT /* scratch (C, OC) */) {
    #pragma omp parallel for
    for (int c = 0; c < C; c++)
        for (int o = 0; o < OC; o++) wT[(size_t)c * OC + o] = W[(size_t)o * C + c];
    gemm(out, ldo, inp, ldi, 1, wT, OC, N, OC, C, 0);
    if (b == NULL) return;
    #pragma omp parallel for
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) out[(size_t)n * ldo + o] += b[o];
}

// dinp (N,C) += dout W;  dW (OC,C) += dout^T inp;  db (OC) += column sums of dout. dinp may be NULL.
static void linear_backward(float *dinp, int ldd, float *dW, float *db, const float *dout, int ldo,
                            const float *inp, int ldi, const float *W, int N, int C, int OC) {
    if (dinp) gemm(dinp, ldd, dout, ldo, 1, W, C, N, C, OC, 1);
    gemm(dW, C, dout, 1, ldo, inp, ldi, OC, C, N, 1);
    if (db == NULL) return;
    #pragma omp parallel for
    for (int o0 = 0; o0 < OC; o0 += 64) {                       // blocks of 64 columns, rows in order
        int oe = o0 + 64 < OC ? o0 + 64 : OC;
        for (int n = 0; n < N; n++)
            for (int o = o0; o < oe; o++) db[o] += dout[(size_t)n * ldo + o];
    }
}

// ----------------------------------------------------------------------------
// LayerNorm over D, affine; keeps mean and 1/std per row for the backward

static void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                              const float *b, int N, int D, float eps) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * D;
        float m = 0.0f, v = 0.0f;
        #pragma omp simd reduction(+:m)    // vector partial sums (as dot): a serial sum is one add per 4 cycles
        for (int i = 0; i < D; i++) m += x[i];
        m /= D;
        #pragma omp simd reduction(+:v)
        for (int i = 0; i < D; i++) v += (x[i] - m) * (x[i] - m);
        float s = 1.0f / sqrtf(v / D + eps);
        for (int i = 0; i < D; i++) out[(size_t)n * D + i] = (x[i] - m) * s * w[i] + b[i];
        mean[n] = m; rstd[n] = s;
    }
}

// dinp += LN backward; dw, db accumulate (columns split over threads: no races, fixed order)
static void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                               const float *w, const float *mean, const float *rstd, int N, int D) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * D, *dy = dout + (size_t)n * D;
        float m = mean[n], s = rstd[n], dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        #pragma omp simd reduction(+:dnorm_mean, dnorm_norm_mean)
        for (int i = 0; i < D; i++) {
            float dnorm = w[i] * dy[i];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * (x[i] - m) * s;
        }
        dnorm_mean /= D; dnorm_norm_mean /= D;
        for (int i = 0; i < D; i++) {
            float norm = (x[i] - m) * s;
            dinp[(size_t)n * D + i] += (w[i] * dy[i] - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
    // blocks of 64 columns, each summed over the rows in order into local sums: the same sums as one column
    // at a time, but the loop over a row's 64 columns vectorises and reads rows contiguously
    #pragma omp parallel for
    for (int i0 = 0; i0 < D; i0 += 64) {
        int nc = D - i0 < 64 ? D - i0 : 64;
        float gw[64] = {0}, gb[64] = {0};
        for (int n = 0; n < N; n++) {
            const float *dy = dout + (size_t)n * D + i0, *x = inp + (size_t)n * D + i0;
            float m = mean[n], s = rstd[n];
            #pragma omp simd
            for (int i = 0; i < nc; i++) { gw[i] += dy[i] * (x[i] - m) * s; gb[i] += dy[i]; }
        }
        for (int i = 0; i < nc; i++) { dw[i0 + i] += gw[i]; db[i0 + i] += gb[i]; }
    }
}

// ----------------------------------------------------------------------------
// GELU, exact erf form: gelu(x) = x Phi(x), Phi the standard normal CDF (normal_cdf, llmc/cpu_kernels.h)

static void gelu_forward(float *out, int ldo, const float *inp, int ldi, int N, int D) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        #pragma omp simd
        for (int i = 0; i < D; i++) {
            float x = inp[(size_t)n * ldi + i];
            out[(size_t)n * ldo + i] = x * normal_cdf(x);
        }
    }
}

// dinp = dout * gelu'(x), gelu'(x) = Phi(x) + x phi(x)
static void gelu_backward(float *dinp, int ldd, const float *dout, int ldo, const float *inp, int ldi, int N, int D) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        #pragma omp simd
        for (int i = 0; i < D; i++) {
            float x = inp[(size_t)n * ldi + i];
            float pdf = exp_fast(-0.5f * x * x) * 0.3989422804014327f;
            dinp[(size_t)n * ldd + i] = dout[(size_t)n * ldo + i] * (normal_cdf(x) + x * pdf);
        }
    }
}

// ----------------------------------------------------------------------------
// RoPE, interleaved pairs: (x[2i], x[2i+1]) rotated by theta = pos * 10000^(-2i/d).
// Rows r of x (stride ld) have position r % T; sign = +1 forward, -1 backward (rotation by -theta).

static void rope_rotate(float *x, int ld, int N, int T, int r0, int n_heads, int hd, const float *cos_t,
                        const float *sin_t, float sign) {
    int half = hd / 2;
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        int pos = (r0 + n) % T;
        const float *cs = cos_t + (size_t)pos * half, *sn = sin_t + (size_t)pos * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)n * ld + h * hd;
            for (int i = 0; i < half; i++) {
                float a = v[2 * i], b = v[2 * i + 1], c = cs[i], s = sign * sn[i];
                v[2 * i] = a * c - b * s;
                v[2 * i + 1] = a * s + b * c;
            }
        }
    }
}

// Both causal parts run over blocks of QB query rows, FlashAttention style: the logits of a block
// against all earlier keys are one matmul into a (QB, T) tile, softmaxed per row, and used at once.
// Per-thread scratch: two (D, T) transposed operands and two (QB, T) tiles: O(T D), never (T, T).
#ifndef QB
#define QB 64   // dev/test: build test_sessa with -DQB=5 to run the many-block paths on the short reference dumps
#endif
// leading dimension of the scratch tiles: T padded so that consecutive rows do not alias in the caches
// (a stride of a power of two, e.g. T = 2048 floats = 8 KiB, maps all rows of a panel to the same sets)
static inline int causal_ld(int T) { return T + 16; }
static inline size_t causal_scratch_floats(int T, int D) { return 2 * (size_t)D * causal_ld(T) + 2 * (size_t)QB * causal_ld(T) + 64; }

// ----------------------------------------------------------------------------
// causal grouped-query attention; query head h reads kv head h / g; scale 1/sqrt(hd).
// q (B*T, H*hd), k/v (B*T, Hkv*hd) (pointers at row 0 of the batch), att (B*T, H*hd), lse (B*T, H).

// rows [t0, t1) of each sequence: att_t = sum_{j<=t} softmax_j(q_t . k_j / sqrt(hd)) v_j
static void attention_forward(float *att, float *lse, const float *q, const float *k, const float *v,
                              int B, int T, int t0, int t1, int H, int Hkv, int hd, float *scratch, size_t stride) {
    int g = H / Hkv, Dq = H * hd, Dkv = Hkv * hd;
    float scale = 1.0f / sqrtf((float)hd);
    int ld = causal_ld(T);
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            float *kT = scratch + (size_t)omp_get_thread_num() * stride, *p = kT + (size_t)hd * ld;
            size_t r0 = (size_t)b * T;
            const float *kh = k + r0 * Dkv + (h / g) * hd, *vh = v + r0 * Dkv + (h / g) * hd;
            transpose_rows(kT, ld, kh, Dkv, t1, hd);                             // (hd, t1)
            for (int i0 = t0; i0 < t1; i0 += QB) {
                int n = t1 - i0 < QB ? t1 - i0 : QB, nk = i0 + n;               // keys j <= t < i0 + n
                const float *qI = q + (r0 + i0) * Dq + h * hd;
                gemm(p, ld, qI, Dq, 1, kT, ld, n, nk, hd, 0);                     // (n, nk) logits
                for (int i = 0; i < n; i++) {
                    int t = i0 + i;
                    float *pr = p + (size_t)i * ld, maxv = max_of(pr, t + 1) * scale, sum = 0.0f;
                    #pragma omp simd reduction(+:sum)
                    for (int j = 0; j <= t; j++) { pr[j] = exp_fast(pr[j] * scale - maxv); sum += pr[j]; }
                    for (int j = 0; j <= t; j++) pr[j] /= sum;
                    for (int j = t + 1; j < nk; j++) pr[j] = 0.0f;
                    lse[(r0 + t) * H + h] = maxv + logf(sum);
                }
                gemm(att + (r0 + i0) * Dq + h * hd, Dq, p, ld, 1, vh, Dkv, n, hd, nk, 0);   // P V
            }
        }
}

// P recomputed from lse; dP = dO V^T; dS = P (dP - rowsum(dO * O)); dq += dS k / sqrt(hd),
// dk += dS^T q / sqrt(hd), dv += P^T dO. dq, dk, dv zeroed by the caller.
// Threads own (b, kv head) pairs, so dk and dv are written without races.
static void attention_backward(float *dq, float *dk, float *dv, const float *datt, const float *att,
                               const float *lse, const float *q, const float *k, const float *v,
                               int B, int T, int H, int Hkv, int hd, float *scratch, size_t stride) {
    int g = H / Hkv, Dq = H * hd, Dkv = Hkv * hd;
    float scale = 1.0f / sqrtf((float)hd);
    int ld = causal_ld(T);
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int kvh = 0; kvh < Hkv; kvh++) {
            float *kT = scratch + (size_t)omp_get_thread_num() * stride, *vT = kT + (size_t)hd * ld;
            float *p = vT + (size_t)hd * ld, *dp = p + (size_t)QB * ld;
            size_t r0 = (size_t)b * T;
            const float *kh = k + r0 * Dkv + kvh * hd, *vh = v + r0 * Dkv + kvh * hd;
            float *dkh = dk + r0 * Dkv + kvh * hd, *dvh = dv + r0 * Dkv + kvh * hd;
            transpose_rows(kT, ld, kh, Dkv, T, hd);
            transpose_rows(vT, ld, vh, Dkv, T, hd);
            for (int h = kvh * g; h < (kvh + 1) * g; h++)
                for (int i0 = 0; i0 < T; i0 += QB) {
                    int n = T - i0 < QB ? T - i0 : QB, nk = i0 + n;
                    size_t rI = (r0 + i0) * Dq + h * hd;
                    gemm(p, ld, q + rI, Dq, 1, kT, ld, n, nk, hd, 0);
                    gemm(dp, ld, datt + rI, Dq, 1, vT, ld, n, nk, hd, 0);
                    for (int i = 0; i < n; i++) {
                        int t = i0 + i;
                        size_t rt = (r0 + t) * Dq + h * hd;
                        float *pr = p + (size_t)i * ld, *dpr = dp + (size_t)i * ld, row_lse = lse[(r0 + t) * H + h];
                        float delta = dot(datt + rt, att + rt, hd);
                        #pragma omp simd
                        for (int j = 0; j <= t; j++) {
                            pr[j] = exp_fast(pr[j] * scale - row_lse);
                            dpr[j] = pr[j] * (dpr[j] - delta) * scale;
                        }
                        for (int j = t + 1; j < nk; j++) pr[j] = dpr[j] = 0.0f;
                    }
                    gemm(dq + rI, Dq, dp, ld, 1, kh, Dkv, n, hd, nk, 1);          // dS K
                    gemm(dkh, Dkv, dp, 1, ld, q + rI, Dq, nk, hd, n, 1);          // dS^T Q
                    gemm(dvh, Dkv, p, 1, ld, datt + rI, Dq, nk, hd, n, 1);        // P^T dO
                }
        }
}

// ----------------------------------------------------------------------------
// the feedback branch (DESIGN.md sections 1-3): one head over the full width D, strictly causal.
//   alpha[t,j] = softmax_{j<t}(qb_t . kb_j / sqrt(D)),  c_t = sum_{j<t} alpha[t,j] s_j,  s_t = f_t + gamma_t c_t
// Blocked forward substitution (DESIGN.md section 3): for each block I of query rows, alpha[I, :] is one
// matmul and a row softmax; c_I = alpha[I, <I] s[<I] is one matmul; only the c x c part inside the block
// is sequential. s, c, f rows have stride D; qb, kb rows stride ldqk; pointers at row 0 of the batch.

// rows [t0, t1) of each sequence (rows < t0 already computed); lse (B*T) per row (0 for row 0, which has no keys)
static void feedback_forward(float *s, float *c, float *lse, const float *f, const float *qb, const float *kb,
                             int ldqk, const float *gamma, int B, int T, int t0, int t1, int D,
                             float *scratch, size_t stride) {
    float scale = 1.0f / sqrtf((float)D);
    int ld = causal_ld(T);
    // threads over sequences; with fewer sequences than threads, the matmuls inside use the threads instead
    #pragma omp parallel for schedule(static, 1) if (B >= omp_get_max_threads())
    for (int b = 0; b < B; b++) {
        float *kbT = scratch + (size_t)omp_get_thread_num() * stride, *alpha = kbT + (size_t)D * ld;
        size_t r0 = (size_t)b * T;
        float *sb = s + r0 * D, *cb = c + r0 * D;
        const float *qbb = qb + r0 * ldqk, *kbb = kb + r0 * ldqk;
        transpose_rows(kbT, ld, kbb, ldqk, t1, D);
        for (int i0 = t0; i0 < t1; i0 += QB) {
            // keys j < t <= i0 + n - 1; the tile spans nk = i0 + n columns (a multiple of QB for full
            // blocks: no edge tiles), the ones at j >= t are masked to zero
            int n = t1 - i0 < QB ? t1 - i0 : QB, nk = i0 + n;
            gemm(alpha, ld, qbb + (size_t)i0 * ldqk, ldqk, 1, kbT, ld, n, nk, D, 0);
            for (int i = 0; i < n; i++) {                                        // row softmax over j < t
                int t = i0 + i;
                float *ar = alpha + (size_t)i * ld, maxv = max_of(ar, t) * scale, sum = 0.0f, row_lse = 0.0f;
                #pragma omp simd reduction(+:sum)
                for (int j = 0; j < t; j++) sum += exp_fast(ar[j] * scale - maxv);
                if (t > 0) row_lse = maxv + logf(sum);
                #pragma omp simd
                for (int j = 0; j < t; j++) ar[j] = exp_fast(ar[j] * scale - row_lse);
                for (int j = t; j < nk; j++) ar[j] = 0.0f;
                lse[r0 + t] = row_lse;
            }
            if (i0 > 0) gemm(cb + (size_t)i0 * D, D, alpha, ld, 1, sb, D, n, D, i0, 0);   // alpha[I, <I] s[<I]
            else memset(cb, 0, (size_t)n * D * sizeof(float));
            for (int i = 0; i < n; i++) {                                        // inside the block, in order
                int t = i0 + i;
                float *ct = cb + (size_t)t * D, *st = sb + (size_t)t * D, g = gamma[r0 + t];
                for (int j = i0; j < t; j++) axpy(ct, alpha[(size_t)i * ld + j], sb + (size_t)j * D, D);
                for (int e = 0; e < D; e++) st[e] = f[(r0 + t) * D + e] + g * ct[e];
            }
        }
    }
}

// Given gs = dL/ds, the transposed solve u_j = gs_j + sum_{t>j} gamma_t alpha[t,j] u_t (u = dL/df) runs over
// query blocks from last to first: with W = diag(gamma) alpha (DESIGN.md §2), the block's own rows are finished in reverse order
// (each final u_t pushes into the u_j below it inside the block), then u_I is final and gives
//   dgamma_t = u_t . c_t,  dZ[t,j] = W[t,j] (u_t . s_j - dgamma_t) (the softmax backward, Delta_t = dgamma_t),
//   dqb_I += dZ kb / sqrt(D),  dkb += dZ^T qb_I / sqrt(D),  and u[<I] += W[I, <I]^T u_I (one matmul).
// u (B*T, D) holds gs on entry (in place); dqb/dkb (stride ldqk) zeroed by the caller.
static void feedback_backward(float *u, float *dgamma, float *dqb, float *dkb, const float *s, const float *c,
                              const float *lse, const float *qb, const float *kb, int ldqk, const float *gamma,
                              int B, int T, int D, float *scratch, size_t stride) {
    float scale = 1.0f / sqrtf((float)D);
    int ld = causal_ld(T);
    // threads over sequences; with fewer sequences than threads, the matmuls inside use the threads instead
    #pragma omp parallel for schedule(static, 1) if (B >= omp_get_max_threads())
    for (int b = 0; b < B; b++) {
        float *kbT = scratch + (size_t)omp_get_thread_num() * stride, *sT = kbT + (size_t)D * ld;
        float *w = sT + (size_t)D * ld, *dz = w + (size_t)QB * ld;
        size_t r0 = (size_t)b * T;
        float *ub = u + r0 * D, *dqbb = dqb + r0 * ldqk, *dkbb = dkb + r0 * ldqk;
        const float *sb = s + r0 * D, *qbb = qb + r0 * ldqk, *kbb = kb + r0 * ldqk;
        transpose_rows(kbT, ld, kbb, ldqk, T, D);
        transpose_rows(sT, ld, sb, D, T, D);
        for (int i0 = (T - 1) / QB * QB; i0 >= 0; i0 -= QB) {
            int n = T - i0 < QB ? T - i0 : QB, nk = i0 + n;                     // as in the forward
            gemm(w, ld, qbb + (size_t)i0 * ldqk, ldqk, 1, kbT, ld, n, nk, D, 0);
            for (int i = 0; i < n; i++) {                                        // W = gamma alpha, recomputed
                int t = i0 + i;
                float *wr = w + (size_t)i * ld, g = gamma[r0 + t], row_lse = lse[r0 + t];
                #pragma omp simd
                for (int j = 0; j < t; j++) wr[j] = g * exp_fast(wr[j] * scale - row_lse);
                for (int j = t; j < nk; j++) wr[j] = 0.0f;
            }
            for (int i = n - 1; i >= 0; i--) {                                   // finish u_I in reverse
                int t = i0 + i;
                for (int j = i0; j < t; j++) axpy(ub + (size_t)j * D, w[(size_t)i * ld + j], ub + (size_t)t * D, D);
            }
            gemm(dz, ld, ub + (size_t)i0 * D, D, 1, sT, ld, n, nk, D, 0);          // u_t . s_j
            for (int i = 0; i < n; i++) {
                int t = i0 + i;
                float dg = dot(ub + (size_t)t * D, c + (r0 + t) * D, D), *dzr = dz + (size_t)i * ld, *wr = w + (size_t)i * ld;
                dgamma[r0 + t] = dg;
                for (int j = 0; j < nk; j++) dzr[j] = wr[j] * (dzr[j] - dg) * scale;  // wr = 0 for j >= t
#ifdef BREAK_FEEDBACK   // a deliberate sign error (Delta_t added, not subtracted), built only by
                        // dev/test/test_cpu_errors.sh to show that test_sessa catches a wrong feedback gradient
                for (int j = 0; j < nk; j++) dzr[j] += 2.0f * wr[j] * dg * scale;
#endif
            }
            gemm(dqbb + (size_t)i0 * ldqk, ldqk, dz, ld, 1, kbb, ldqk, n, D, nk, 1);      // dZ kb
            gemm(dkbb, ldqk, dz, 1, ld, qbb + (size_t)i0 * ldqk, ldqk, nk, D, n, 1);      // dZ^T qb_I
            if (i0 > 0) gemm(ub, D, w, 1, ld, ub + (size_t)i0 * D, D, i0, D, n, 1);       // u[<I] += W^T u_I
        }
    }
}

// gamma_t = gamma_max tanh(gamma_b + abar_t . w_gamma)
static void gamma_forward(float *gamma, const float *abar, const float *w, float b, float gamma_max, int N, int D) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) gamma[n] = gamma_max * tanhf(b + dot(abar + (size_t)n * D, w, D));
}

// dr = dgamma gamma_max (1 - tanh^2 r) = dgamma (gamma_max - gamma^2 / gamma_max);
// dgamma_b += sum dr, dw_gamma += sum dr abar, dabar += dr w_gamma
static void gamma_backward(float *dabar, float *dw, float *db, const float *dgamma, const float *gamma,
                           const float *abar, const float *w, float gamma_max, int N, int D) {
    float sum = 0.0f;
    for (int n = 0; n < N; n++) sum += dgamma[n] * (gamma_max - gamma[n] * gamma[n] / gamma_max);
    *db += sum;
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        float dr = dgamma[n] * (gamma_max - gamma[n] * gamma[n] / gamma_max);
        axpy(dabar + (size_t)n * D, dr, w, D);
    }
    #pragma omp parallel for
    for (int i0 = 0; i0 < D; i0 += 64) {       // blocks of 64 columns, rows in order (as layernorm_backward)
        int nc = D - i0 < 64 ? D - i0 : 64;
        float acc[64] = {0};
        for (int n = 0; n < N; n++) {
            float dr = dgamma[n] * (gamma_max - gamma[n] * gamma[n] / gamma_max);
            const float *a = abar + (size_t)n * D + i0;
            #pragma omp simd
            for (int i = 0; i < nc; i++) acc[i] += dr * a[i];
        }
        for (int i = 0; i < nc; i++) dw[i0 + i] += acc[i];
    }
}

// ----------------------------------------------------------------------------
// the model

// activations of one layer (N = B*T rows; a forward over rows [t0, t1) of one sequence fills rows t0..t1-1)
typedef struct {
    float *x, *y;              // (N, D) layer input and output: the residual stream (rows of m->res)
    float *ln_mean, *ln_rstd;  // (N)
    float *xn;                 // (N, D) LayerNorm(x)
    float *ag;                 // (N, 2D) Linear_in(xn) = [a | gt]
    float *abar;               // (N, D) GELU(a)
    float *q, *k, *v;          // (N, H*hd), (N, Hkv*hd), (N, Hkv*hd); q and k after RoPE
    float *qbkb;               // (N, 2D) Linear_fb(abar) = [qb | kb]
    float *att, *att_lse;      // (N, D) attention output (heads concatenated), (N, H)
    float *f;                  // (N, D) att Wo^T, or att itself when H == 1
    float *gamma;              // (N) gamma_max tanh(r)
    float *s, *c, *fb_lse;     // (N, D) feedback output, (N, D) feedback context, (N) its log-sum-exp
    float *gated;              // (N, D) s * gt
} LayerActs;

typedef struct {
    float *dres;               // (N, D) dL/dx of the residual stream
    float *dgated, *dabar, *u, *datt, *dq, *dxn; // (N, D)
    float *dk, *dv;            // (N, Hkv*hd)
    float *dag, *dqbkb;        // (N, 2D)
    float *dgamma;             // (N)
} BackwardBufs;

typedef struct {
    SessaConfig config;
    ParameterTensors params, grads;
    float *params_memory, *grads_memory, *m_memory, *v_memory;
    size_t num_parameters;
    // activations, allocated at the first forward for up to N rows
    int max_rows, max_T;       // B*T and T of the allocation
    LayerActs *layers;         // (L)
    float *res;                // (L+1, N, D) residual stream x_0 .. x_L: x_0 = wte[tokens], x_{l+1} = layer l output
    float *lnf, *lnf_mean, *lnf_rstd; // (N, D), (N), (N)
    float *row_loss;           // (N)
    int *row_argmax;           // (N) argmax of each row's logits (first index on ties, as torch.argmax)
    BackwardBufs bw;
    float *wT;                 // transposed weight scratch: (max(2D, V), D)
    float *logits;             // (chunk rows, V)
    int chunk_rows;
    float *rope_cos, *rope_sin;// (max_T, hd/2)
    float *scratch;            // (threads, scratch_stride) per-thread buffers of the causal parts
    size_t scratch_stride;
    // the last forward
    int B, T;
    float mean_loss;
} Model;

static void model_build(Model *m, const SessaConfig *cfg, float *params_memory) {
    memset(m, 0, sizeof(*m));
    m->config = *cfg;
    m->num_parameters = sessa_num_parameters(cfg);
    m->params_memory = params_memory;
    sessa_carve_parameters(&m->params, params_memory, cfg);
    m->grads_memory = (float *)callocCheck(m->num_parameters, sizeof(float));
    sessa_carve_parameters(&m->grads, m->grads_memory, cfg);
    m->m_memory = (float *)callocCheck(m->num_parameters, sizeof(float));   // AdamW moments, zero until a
    m->v_memory = (float *)callocCheck(m->num_parameters, sizeof(float));   // resume state is read into them
}

static float *alloc_floats(size_t n) { return (float *)callocCheck(n, sizeof(float)); }

static void model_alloc_activations(Model *m, int B, int T) {
    const SessaConfig *c = &m->config;
    size_t N = (size_t)B * T, L = c->n_layer, D = c->d_model, H = c->n_head, hd = D / H, Dkv = c->n_kv_head * hd;
    size_t V = c->vocab_size;
    m->max_rows = B * T; m->max_T = T;
    m->res = alloc_floats((L + 1) * N * D);
    m->layers = (LayerActs *)callocCheck(L, sizeof(LayerActs));
    for (size_t l = 0; l < L; l++) {
        LayerActs *la = &m->layers[l];
        la->x = m->res + l * N * D;
        la->y = m->res + (l + 1) * N * D;
        la->ln_mean = alloc_floats(N); la->ln_rstd = alloc_floats(N);
        la->xn = alloc_floats(N * D);
        la->ag = alloc_floats(N * 2 * D);
        la->abar = alloc_floats(N * D);
        la->q = alloc_floats(N * D);
        la->k = alloc_floats(N * Dkv); la->v = alloc_floats(N * Dkv);
        la->qbkb = alloc_floats(N * 2 * D);
        la->att = alloc_floats(N * D); la->att_lse = alloc_floats(N * H);
        la->f = H > 1 ? alloc_floats(N * D) : la->att;
        la->gamma = alloc_floats(N);
        la->s = alloc_floats(N * D); la->c = alloc_floats(N * D); la->fb_lse = alloc_floats(N);
        la->gated = alloc_floats(N * D);
    }
    m->lnf = alloc_floats(N * D); m->lnf_mean = alloc_floats(N); m->lnf_rstd = alloc_floats(N);
    m->row_loss = alloc_floats(N);
    m->row_argmax = (int *)callocCheck(N, sizeof(int));
    BackwardBufs *g = &m->bw;
    g->dres = alloc_floats(N * D); g->dgated = alloc_floats(N * D); g->dabar = alloc_floats(N * D);
    g->u = alloc_floats(N * D); g->datt = alloc_floats(N * D); g->dq = alloc_floats(N * D); g->dxn = alloc_floats(N * D);
    g->dk = alloc_floats(N * Dkv); g->dv = alloc_floats(N * Dkv);
    g->dag = alloc_floats(N * 2 * D); g->dqbkb = alloc_floats(N * 2 * D);
    g->dgamma = alloc_floats(N);
    m->wT = alloc_floats((V > 2 * D ? V : 2 * D) * D);
    m->chunk_rows = (int)(N < 256 ? N : 256);
    m->logits = alloc_floats((size_t)m->chunk_rows * V);
    // RoPE tables in double, rounded once
    m->rope_cos = alloc_floats((size_t)T * hd / 2); m->rope_sin = alloc_floats((size_t)T * hd / 2);
    for (size_t t = 0; t < (size_t)T; t++)
        for (size_t i = 0; i < hd / 2; i++) {
            double theta = (double)t * pow(10000.0, -2.0 * (double)i / (double)hd);
            m->rope_cos[t * hd / 2 + i] = (float)cos(theta);
            m->rope_sin[t * hd / 2 + i] = (float)sin(theta);
        }
    m->scratch_stride = causal_scratch_floats(T, (int)D);
    m->scratch = alloc_floats((size_t)omp_get_max_threads() * m->scratch_stride);
}

static void model_free(Model *m) {
    if (m->max_rows) {
        for (int l = 0; l < m->config.n_layer; l++) {
            LayerActs *a = &m->layers[l];
            if (a->f != a->att) free(a->f);
            float *bufs[] = { a->ln_mean, a->ln_rstd, a->xn, a->ag, a->abar, a->q, a->k, a->v, a->qbkb, a->att,
                              a->att_lse, a->gamma, a->s, a->c, a->fb_lse, a->gated };
            for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) free(bufs[i]);
        }
        free(m->layers);
        float *bufs[] = { m->res, m->lnf, m->lnf_mean, m->lnf_rstd, m->row_loss, m->bw.dres, m->bw.dgated,
                          m->bw.dabar, m->bw.u, m->bw.datt, m->bw.dq, m->bw.dxn, m->bw.dk, m->bw.dv, m->bw.dag,
                          m->bw.dqbkb, m->bw.dgamma, m->wT,
                          m->logits, m->rope_cos, m->rope_sin, m->scratch };
        for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) free(bufs[i]);
        free(m->row_argmax);
    }
    free(m->params_memory); free(m->grads_memory); free(m->m_memory); free(m->v_memory);
}

// ----------------------------------------------------------------------------
// forward over rows [t0, t1) of each of B sequences of length T (rows before t0 already computed).
// Either the whole sequences (t0 = 0, t1 = T) or one sequence (B = 1), so the rows are contiguous.
// targets may be NULL (no loss).

// m->wT = wte[:V]^T (D, V)
static void transpose_wte(Model *m) {
    int V = m->config.vocab_size, D = m->config.d_model;
    #pragma omp parallel for
    for (int i = 0; i < D; i++)
        for (int k = 0; k < V; k++) m->wT[(size_t)i * V + k] = m->params.wte[(size_t)k * D + i];
}

// logits (n, V) of rows [r0, r0+n) from the forward's final LayerNorm output: lnf wte[:V]^T (m->wT current)
static void model_logits(Model *m, float *out, int r0, int n) {
    int V = m->config.vocab_size, D = m->config.d_model;
    gemm(out, V, m->lnf + (size_t)r0 * D, D, 1, m->wT, V, n, V, D, 0);
}

// the tied head over rows [r0, r0+n): per row log-sum-exp, loss, argmax; chunked, so the (rows, V) logits
// never exist at once
static void head_forward(Model *m, const int *targets, int r0, int n) {
    const SessaConfig *c = &m->config;
    int V = c->vocab_size;
    transpose_wte(m);
    for (int rc = r0; rc < r0 + n; rc += m->chunk_rows) {
        int R = r0 + n - rc < m->chunk_rows ? r0 + n - rc : m->chunk_rows;
        model_logits(m, m->logits, rc, R);
        #pragma omp parallel for
        for (int i = 0; i < R; i++) {
            const float *lg = m->logits + (size_t)i * V;
            float maxv = max_of(lg, V), sum = 0.0f;
            int argmax = 0;
            while (argmax < V - 1 && lg[argmax] != maxv) argmax++;
            m->row_argmax[rc + i] = argmax;
            #pragma omp simd reduction(+:sum)
            for (int k = 0; k < V; k++) sum += exp_fast(lg[k] - maxv);
            m->row_loss[rc + i] = targets ? maxv + logf(sum) - lg[targets[rc + i]] : 0.0f;
        }
    }
}

// layer l over rows [t0, t1) of each of the B sequences (rows r0 = t0 .. of x already written: see model_forward)
static void layer_forward(Model *m, int l, int B, int T, int t0, int t1) {
    const SessaConfig *c = &m->config;
    const LayerActs *a = &m->layers[l];
    int D = c->d_model, H = c->n_head, Hkv = c->n_kv_head, hd = D / H, Dkv = Hkv * hd;
    int r0 = t0, N = B * (t1 - t0);
    ParameterTensors *p = &m->params;
    // the row-wise parts start at row r0; the causal parts (q, k, v, att, f, qbkb, gamma, s, c) take whole
    // sequences (row 0 = the first row of the layer) and compute rows [t0, t1)
    float *x = a->x + (size_t)r0 * D, *y = a->y + (size_t)r0 * D;
    float *xn = a->xn + (size_t)r0 * D, *ag = a->ag + (size_t)r0 * 2 * D, *abar = a->abar + (size_t)r0 * D;
    float *qbkb = a->qbkb + (size_t)r0 * 2 * D, *gated = a->gated + (size_t)r0 * D;
    // xn = LN(x); [a, gt] = Linear_in(xn); abar = GELU(a)
    layernorm_forward(xn, a->ln_mean + r0, a->ln_rstd + r0, x, p->ln_w + l * D, p->ln_b + l * D, N, D, c->ln_eps);
    linear_forward(ag, 2 * D, xn, D, p->in_w + (size_t)l * 2 * D * D, p->in_b + l * 2 * D, N, D, 2 * D, m->wT);
    gelu_forward(abar, D, ag, 2 * D, N, D);
    // q, k, v, RoPE, causal GQA attention, Linear_o
    linear_forward(a->q + (size_t)r0 * D, D, abar, D, p->q_w + (size_t)l * D * D, p->q_b + l * D, N, D, D, m->wT);
    linear_forward(a->k + (size_t)r0 * Dkv, Dkv, abar, D, p->k_w + (size_t)l * Dkv * D, p->k_b + l * Dkv, N, D, Dkv, m->wT);
    linear_forward(a->v + (size_t)r0 * Dkv, Dkv, abar, D, p->v_w + (size_t)l * Dkv * D, p->v_b + l * Dkv, N, D, Dkv, m->wT);
    if (c->use_rope) {
        rope_rotate(a->q + (size_t)r0 * D, D, N, T, r0, H, hd, m->rope_cos, m->rope_sin, 1.0f);
        rope_rotate(a->k + (size_t)r0 * Dkv, Dkv, N, T, r0, Hkv, hd, m->rope_cos, m->rope_sin, 1.0f);
    }
    attention_forward(a->att, a->att_lse, a->q, a->k, a->v, B, T, t0, t1, H, Hkv, hd, m->scratch, m->scratch_stride);
    if (H > 1)
        linear_forward(a->f + (size_t)r0 * D, D, a->att + (size_t)r0 * D, D, p->o_w + (size_t)l * D * D, NULL, N, D, D, m->wT);
    if (!c->no_feedback) {
        // feedback: [qb, kb] = Linear_fb(abar); gamma; s = (I - diag(gamma) alpha)^{-1} f
        linear_forward(qbkb, 2 * D, abar, D, p->fb_w + (size_t)l * 2 * D * D, p->fb_b + l * 2 * D, N, D, 2 * D, m->wT);
        gamma_forward(a->gamma + r0, abar, p->gamma_w + l * D, p->gamma_b[l], c->gamma_max, N, D);
        feedback_forward(a->s, a->c, a->fb_lse, a->f, a->qbkb, a->qbkb + D, 2 * D, a->gamma, B, T, t0, t1, D,
                         m->scratch, m->scratch_stride);
    } else {
        // the feedback-off baseline f0: s = f
        memcpy(a->s + (size_t)r0 * D, a->f + (size_t)r0 * D, (size_t)N * D * sizeof(float));
    }
    // y = x + Linear_out(s * gt)
    const float *s = a->s;
    #pragma omp parallel for
    for (int n = 0; n < N; n++)
        for (int i = 0; i < D; i++) gated[(size_t)n * D + i] = s[(size_t)(r0 + n) * D + i] * ag[(size_t)n * 2 * D + D + i];
    linear_forward(y, D, gated, D, p->out_w + (size_t)l * D * D, p->out_b + l * D, N, D, D, m->wT);
    #pragma omp parallel for
    for (int n = 0; n < N; n++)
        for (int i = 0; i < D; i++) y[(size_t)n * D + i] += x[(size_t)n * D + i];
}

static void model_forward(Model *m, const int *inputs, const int *targets, int B, int T, int t0, int t1) {
    const SessaConfig *c = &m->config;
    int L = c->n_layer, D = c->d_model;
    if (!(t0 >= 0 && t0 < t1 && t1 <= T && (B == 1 || (t0 == 0 && t1 == T))))
        fatal("model_forward: bad rows [%d, %d) of B=%d sequences of T=%d", t0, t1, B, T);
    if (m->max_rows == 0) model_alloc_activations(m, B, T);
    if (B * T > m->max_rows || T > m->max_T)
        fatal("model_forward: B=%d T=%d exceed the allocation for B*T=%d rows of T<=%d", B, T, m->max_rows, m->max_T);
    m->B = B; m->T = T;
    int r0 = t0, N = B * (t1 - t0);
    ParameterTensors *p = &m->params;
    for (int r = r0; r < r0 + N; r++) {
        int tok = inputs[r];
        if (tok < 0 || tok >= c->vocab_size) fatal("token %d at position %d is out of range [0, %d)", tok, r, c->vocab_size);
        if (targets && (targets[r] < 0 || targets[r] >= c->vocab_size))
            fatal("target %d at position %d is out of range [0, %d)", targets[r], r, c->vocab_size);
        memcpy(m->res + (size_t)r * D, p->wte + (size_t)tok * D, D * sizeof(float));
    }
    for (int l = 0; l < L; l++) layer_forward(m, l, B, T, t0, t1);
    layernorm_forward(m->lnf + (size_t)r0 * D, m->lnf_mean + r0, m->lnf_rstd + r0, m->layers[L - 1].y + (size_t)r0 * D,
                      p->lnf_w, p->lnf_b, N, D, c->ln_eps);
    head_forward(m, targets, r0, N);
    if (targets) {
        double sum = 0.0;
        for (int r = r0; r < r0 + N; r++) sum += m->row_loss[r];
        m->mean_loss = (float)(sum / N);
    }
}

// ----------------------------------------------------------------------------
// backward of the last full forward (t0 = 0, t1 = T); gradients accumulate into m->grads,
// scaled by dloss (= 1 / gradient-accumulation steps for a mean over the whole step)

// tied head + cross-entropy: recompute each chunk's logits, dlogits = (softmax - onehot) dloss / N,
// dlnf = dlogits wte[:V], dwte[:V] += dlogits^T lnf
static void head_backward(Model *m, float *dlnf, const int *targets, int N, float dloss) {
    const SessaConfig *c = &m->config;
    int V = c->vocab_size, D = c->d_model;
    transpose_wte(m);
    for (int rc = 0; rc < N; rc += m->chunk_rows) {
        int R = N - rc < m->chunk_rows ? N - rc : m->chunk_rows;
        gemm(m->logits, V, m->lnf + (size_t)rc * D, D, 1, m->wT, V, R, V, D, 0);
        #pragma omp parallel for
        for (int i = 0; i < R; i++) {
            float *lg = m->logits + (size_t)i * V;
            float lse = m->row_loss[rc + i] + lg[targets[rc + i]]; // row_loss = lse - logit[target]
            #pragma omp simd
            for (int k = 0; k < V; k++) lg[k] = exp_fast(lg[k] - lse) * dloss / N;
            lg[targets[rc + i]] -= dloss / N;
        }
        gemm(dlnf + (size_t)rc * D, D, m->logits, V, 1, m->params.wte, D, R, D, V, 0);
        gemm(m->grads.wte, D, m->logits, 1, V, m->lnf + (size_t)rc * D, D, V, D, R, 1);
    }
}

// backward of layer l (the last forward's whole sequences): bw->dres holds dL/dy and becomes dL/dx;
// parameter gradients accumulate into m->grads
static void layer_backward(Model *m, int l, int B, int T) {
    const SessaConfig *c = &m->config;
    const LayerActs *a = &m->layers[l];
    int N = B * T, D = c->d_model, H = c->n_head, Hkv = c->n_kv_head, hd = D / H, Dkv = Hkv * hd;
    ParameterTensors *p = &m->params, *g = &m->grads;
    BackwardBufs *bw = &m->bw;
    float *x = a->x, *xn = a->xn, *ag = a->ag, *abar = a->abar;
    float *q = a->q, *k = a->k, *v = a->v, *att = a->att;
    float *qbkb = a->qbkb, *gamma = a->gamma, *s = a->s, *cc = a->c;
    // y = x + Linear_out(s * gt): dgated; then gs = dL/ds = dgated * gt (into u), dgt = dgated * s
    memset(bw->dgated, 0, (size_t)N * D * sizeof(float));
    linear_backward(bw->dgated, D, g->out_w + (size_t)l * D * D, g->out_b + l * D, bw->dres, D,
                    a->gated, D, p->out_w + (size_t)l * D * D, N, D, D);
    #pragma omp parallel for
    for (int n = 0; n < N; n++)
        for (int i = 0; i < D; i++) {
            size_t e = (size_t)n * D + i;
            bw->u[e] = bw->dgated[e] * ag[(size_t)n * 2 * D + D + i];
            bw->dag[(size_t)n * 2 * D + D + i] = bw->dgated[e] * s[e];
        }
    memset(bw->dabar, 0, (size_t)N * D * sizeof(float));
    if (!c->no_feedback) {
        // feedback: u = dL/df, dgamma, d[qb, kb]; then the gamma path and Linear_fb
        memset(bw->dqbkb, 0, (size_t)N * 2 * D * sizeof(float));
        feedback_backward(bw->u, bw->dgamma, bw->dqbkb, bw->dqbkb + D, s, cc, a->fb_lse, qbkb, qbkb + D, 2 * D,
                          gamma, B, T, D, m->scratch, m->scratch_stride);
        gamma_backward(bw->dabar, g->gamma_w + l * D, g->gamma_b + l, bw->dgamma, gamma, abar, p->gamma_w + l * D,
                       c->gamma_max, N, D);
        linear_backward(bw->dabar, D, g->fb_w + (size_t)l * 2 * D * D, g->fb_b + l * 2 * D, bw->dqbkb, 2 * D,
                        abar, D, p->fb_w + (size_t)l * 2 * D * D, N, D, 2 * D);
    }   // f0 (s = f): u = gs = dL/ds is already dL/df
#ifdef BREAK_F0   // a deliberate error in the f0 path: dev/test/test_cpu_errors.sh checks that test_sessa catches it
    if (c->no_feedback) for (size_t e = 0; e < (size_t)N * D; e++) bw->u[e] *= 0.5f;
#endif
    // Linear_o (H > 1), attention, RoPE, q/k/v
    float *datt = bw->u;
    if (H > 1) {
        memset(bw->datt, 0, (size_t)N * D * sizeof(float));
        linear_backward(bw->datt, D, g->o_w + (size_t)l * D * D, NULL, bw->u, D, att, D,
                        p->o_w + (size_t)l * D * D, N, D, D);
        datt = bw->datt;
    }
    memset(bw->dq, 0, (size_t)N * D * sizeof(float));
    memset(bw->dk, 0, (size_t)N * Dkv * sizeof(float));
    memset(bw->dv, 0, (size_t)N * Dkv * sizeof(float));
    attention_backward(bw->dq, bw->dk, bw->dv, datt, att, a->att_lse, q, k, v, B, T, H, Hkv, hd,
                       m->scratch, m->scratch_stride);
    if (c->use_rope) {
        rope_rotate(bw->dq, D, N, T, 0, H, hd, m->rope_cos, m->rope_sin, -1.0f);
        rope_rotate(bw->dk, Dkv, N, T, 0, Hkv, hd, m->rope_cos, m->rope_sin, -1.0f);
    }
    linear_backward(bw->dabar, D, g->q_w + (size_t)l * D * D, g->q_b + l * D, bw->dq, D, abar, D,
                    p->q_w + (size_t)l * D * D, N, D, D);
    linear_backward(bw->dabar, D, g->k_w + (size_t)l * Dkv * D, g->k_b + l * Dkv, bw->dk, Dkv, abar, D,
                    p->k_w + (size_t)l * Dkv * D, N, D, Dkv);
    linear_backward(bw->dabar, D, g->v_w + (size_t)l * Dkv * D, g->v_b + l * Dkv, bw->dv, Dkv, abar, D,
                    p->v_w + (size_t)l * Dkv * D, N, D, Dkv);
    // GELU, Linear_in, LayerNorm; dres accumulates the LayerNorm path (residual: dx = dy + ...)
    gelu_backward(bw->dag, 2 * D, bw->dabar, D, ag, 2 * D, N, D);
    memset(bw->dxn, 0, (size_t)N * D * sizeof(float));
    linear_backward(bw->dxn, D, g->in_w + (size_t)l * 2 * D * D, g->in_b + l * 2 * D, bw->dag, 2 * D, xn, D,
                    p->in_w + (size_t)l * 2 * D * D, N, D, 2 * D);
    layernorm_backward(bw->dres, g->ln_w + l * D, g->ln_b + l * D, bw->dxn, x, p->ln_w + l * D,
                       a->ln_mean, a->ln_rstd, N, D);
}

static void model_backward(Model *m, const int *inputs, const int *targets, float dloss) {
    const SessaConfig *c = &m->config;
    int B = m->B, T = m->T, N = B * T, L = c->n_layer, D = c->d_model;
    ParameterTensors *p = &m->params, *g = &m->grads;
    BackwardBufs *bw = &m->bw;
    // final LayerNorm and head: dres = dL/dx_L
    head_backward(m, bw->dxn, targets, N, dloss);
    memset(bw->dres, 0, (size_t)N * D * sizeof(float));
    layernorm_backward(bw->dres, g->lnf_w, g->lnf_b, bw->dxn, m->layers[L - 1].y, p->lnf_w,
                       m->lnf_mean, m->lnf_rstd, N, D);
    for (int l = L - 1; l >= 0; l--) layer_backward(m, l, B, T);
    // encoder: dwte[tok] += dres (serial: tokens repeat)
    for (int r = 0; r < N; r++) axpy(g->wte + (size_t)inputs[r] * D, 1.0f, bw->dres + (size_t)r * D, D);
}

static void model_zero_grad(Model *m) { memset(m->grads_memory, 0, m->num_parameters * sizeof(float)); }

// global L2 norm of the gradient; fixed-size blocks summed in order (independent of the thread count)
static float model_grad_norm(Model *m) {
    size_t n = m->num_parameters, nb = (n + 65535) / 65536;
    double *part = (double *)callocCheck(nb, sizeof(double));
    #pragma omp parallel for
    for (size_t b = 0; b < nb; b++) {
        double s = 0.0;
        const float *g = m->grads_memory;
        size_t end = (b + 1) * 65536 < n ? (b + 1) * 65536 : n;
        #pragma omp simd reduction(+:s)
        for (size_t i = b * 65536; i < end; i++) s += (double)g[i] * g[i];
        part[b] = s;
    }
    double total = 0.0;
    for (size_t b = 0; b < nb; b++) total += part[b];
    free(part);
    return (float)sqrt(total);
}

// AdamW in PyTorch's form: p -= lr wd p; m, v moments; p -= lr mhat / (sqrt(vhat) + eps). step t >= 1.
// decay_all = 1 decays every parameter (the reference's setting); 0 the mask of llmc/sessa.h (sessa_param_decays).
static void model_update(Model *m, float lr, float beta1, float beta2, float eps, float wd, int t, int decay_all,
                         float grad_scale) {
    size_t sizes[NUM_PARAMETER_TENSORS], off = 0;
    sessa_param_sizes(&m->config, sizes);
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    for (int k = 0; k < NUM_PARAMETER_TENSORS; k++) {
        float decay = decay_all || sessa_param_decays(k) ? wd : 0.0f;
        #pragma omp parallel for
        for (size_t i = off; i < off + sizes[k]; i++) {
            float grad = m->grads_memory[i] * grad_scale, param = m->params_memory[i];
            float mm = beta1 * m->m_memory[i] + (1.0f - beta1) * grad;
            float vv = beta2 * m->v_memory[i] + (1.0f - beta2) * grad * grad;
            m->m_memory[i] = mm; m->v_memory[i] = vv;
            param -= lr * decay * param;
            m->params_memory[i] = param - lr * (mm / bc1) / (sqrtf(vv / bc2) + eps);
        }
        off += sizes[k];
    }
}

// ----------------------------------------------------------------------------
// sampling through the recurrent decode path: one new row per token against the cached rows

// tokens[0..P-1] is the prompt (P >= 1); tokens[P..n_tokens-1] are sampled (temperature 0: greedy; top_k 0: all),
// one coin per new token. The prompt's rows run through the same one-row forward (a recurrent prefill).
static void model_generate(Model *m, int *tokens, int P, int n_tokens, Rng *rng, Tokenizer *tok, float temperature,
                           int top_k) {
    int V = m->config.vocab_size;
    float *logits_row = m->logits;
    for (int t = 0; t + 1 < n_tokens; t++) {
        model_forward(m, tokens, NULL, 1, n_tokens, t, t + 1);
        if (t + 1 < P) continue;   // the next token is the prompt's
        // head_forward left row t's logits in the first row of m->logits
        int next = sample_logits_topk(logits_row, V, temperature, top_k, rng_f32(rng));
        tokens[t + 1] = next;
        if (tok->init_ok && (uint32_t)next < tok->vocab_size) safe_printf(tokenizer_decode(tok, next));
        else printf("<%d>", next);
        fflush(stdout);
    }
    printf("\n");
}

// ----------------------------------------------------------------------------
// training

#ifndef TESTING

static float evaluate(Model *m, DataLoader *loader, int steps, int B, int T) {
    dataloader_reset(loader);
    double sum = 0.0;
    for (int i = 0; i < steps; i++) {
        dataloader_next_batch(loader);
        model_forward(m, loader->inputs, loader->targets, B, T, 0, T);
        sum += m->mean_loss;
    }
    return (float)(sum / steps);
}

// accuracy at the scored positions of the eval file, per nominal distance, over its sequences = the first
// rows of the (unshuffled) val loader; printed and logged as "step N eval_acc d=D ACC correct/count"
static void evaluate_tasks(Model *m, DataLoader *loader, EvalTasks *e, int step, FILE *log) {
    dataloader_reset(loader);
    eval_tasks_zero(e);
    for (int k = 0; k < eval_tasks_steps(e, loader); k++) {
        dataloader_next_batch(loader);
        model_forward(m, loader->inputs, loader->targets, (int)loader->B, (int)loader->T, 0, (int)loader->T);
        eval_tasks_score(e, eval_tasks_row0(loader, k), (int)loader->B, m->row_argmax, loader->targets);
    }
    eval_tasks_report(e, step, log);
}

static void save_checkpoint(Model *m, const char *dir, int step, DataLoader *loader, Rng *rng, FILE *log, int keep) {
    char model_path[4096], state_path[4096], done_path[4096];
    train_state_paths(model_path, state_path, done_path, sizeof(model_path), dir, step);
    sessa_checkpoint_write(model_path, &m->config, m->params_memory, 1);
    DataLoaderState st;
    dataloader_get_state(loader, &st);
    train_state_write(state_path, step, m->num_parameters, m->m_memory, m->v_memory, &st, sizeof(st), rng->s,
                      run_dir_log_bytes(log));
    train_state_mark_done(done_path);
    printf("saved checkpoint %s\n", model_path);
    train_state_prune(dir, keep);
}

// the flags of this trainer beyond llmc/args.h: -E EVALFILE
static const char cpu_usage[] =
    "CPU trainer (the CUDA trainer takes it too, on one GPU):\n  -E FILE  long-context eval file (data/long_context.py) of the -j "
    "shards: accuracy per distance at each validation and the end\n"
    "  (-x 0: no training, only the validation, -E evaluation and a sample (-s > 0) at step 0)\n";
static int cpu_extra_flags(void *ctx, const char *flag, const char *value) {
    if (strcmp(flag, "-E") == 0) { *(const char **)ctx = value; return 1; }
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);   // whole lines, at once, also into a file or a pipe
    TrainArgs args;
    const char *eval_file = NULL;
    train_args_parse(&args, argc, argv, cpu_usage, cpu_extra_flags, &eval_file);
    Tokenizer tok;
    tokenizer_init(&tok, args.tokenizer);

    // the run directory: locked for this run, cleaned of a failed save, the run's flags kept in it;
    // with -y 1 the checkpoint to resume from
    int start_step = 0;
    char resume_model[4096] = "", resume_state[4096] = "", done_path[4096];
    if (args.out_dir) {
        if (mkdir(args.out_dir, 0755) != 0 && errno != EEXIST) fatal("cannot create output dir '%s': %s", args.out_dir, strerror(errno));
        run_dir_lock(args.out_dir);
        run_dir_clean(args.out_dir);
        if (args.resume) {
            int latest = train_state_latest(args.out_dir);
            if (latest < 0) printf("no checkpoint in '%s' to resume from: starting from scratch\n", args.out_dir);
            else {
                train_state_paths(resume_model, resume_state, done_path, sizeof(resume_model), args.out_dir, latest);
                start_step = latest;
            }
        }
        else if (train_state_latest(args.out_dir) >= 0)
            printf("warning: '%s' holds checkpoints of an earlier run (up to step %d); this new run replaces main.log "
                   "and args.txt, and -y 1 would resume the newest checkpoint there, of either run\n", args.out_dir,
                   train_state_latest(args.out_dir));
        train_args_save(&args, args.out_dir);
    }
    train_install_signal_handlers();

    // the model: resumed checkpoint, a checkpoint file given by -e, or a descriptor
    SessaConfig cfg;
    float *params;
    const char *init = resume_model[0] ? resume_model : args.init;
    if (access(init, F_OK) == 0) {
        params = sessa_checkpoint_read(init, &cfg);
        printf("model from checkpoint %s\n", init);
    } else {
        int V = train_args_vocab(&args, tok.init_ok, (int)tok.vocab_size);
        char err[512];
        if (sessa_config_from_descriptor(&cfg, init, V, args.T, err, sizeof(err)) != 0)
            fatal("-e '%s' is not a checkpoint file, and: %s", init, err);
        params = (float *)mallocCheck(sessa_num_parameters(&cfg) * sizeof(float));
        sessa_init_parameters(params, &cfg, args.seed);
        printf("model from descriptor %s, seed %llu\n", init, args.seed);
    }
    if (tok.init_ok && tok.vocab_size != (uint32_t)cfg.vocab_size)
        printf("warning: tokenizer has %u tokens, the model %d\n", tok.vocab_size, cfg.vocab_size);
    if (args.T > cfg.max_seq_len) cfg.max_seq_len = args.T;
    sessa_config_print(&cfg);
    Model model;
    model_build(&model, &cfg, params);
    args.total_batch = (int)train_args_total_batch(&args, 1);   // one process: -d, else B*T
    printf("| parameters %zu | B %d | T %d | grad accumulation %d | threads %d |\n", model.num_parameters,
           args.B, args.T, args.total_batch / (args.B * args.T), omp_get_max_threads());

    // data (every shard checked completely here, before step 1)
    int B = args.B, T = args.T, accum = args.total_batch / (B * T);
    DataLoader train_loader, val_loader;
    dataloader_init(&train_loader, args.train_glob, B, T, 0, 1, args.shuffle, args.seed, cfg.vocab_size);
    int use_val = args.val_every > 0 || eval_file;
    if (use_val) dataloader_init(&val_loader, args.val_glob, B, T, 0, 1, 0, args.seed, cfg.vocab_size);
    EvalTasks eval_tasks;
    if (eval_file) {
        eval_tasks_load(&eval_tasks, eval_file, cfg.vocab_size);
        eval_tasks_check_loader(&eval_tasks, &val_loader);
        printf("eval tasks: %s, %d sequences of T=%d, %d scored positions, %d distances (%s)\n",
               eval_task_name(eval_tasks.task), eval_tasks.num_sequences, eval_tasks.T, eval_tasks.num_scored,
               eval_tasks.num_distances, eval_file);
    }
    int max_steps = args.max_steps >= 0 ? args.max_steps : (int)(train_loader.steps_per_epoch / accum);
    if (args.max_steps < 0 && max_steps < 1) fatal("the training data holds less than one step of %d tokens", args.total_batch);
    Rng rng;
    rng_seed(&rng, sampler_seed(args.seed));
    model_alloc_activations(&model, B, T);
    long long log_bytes = -1;
    if (resume_state[0]) {
        DataLoaderState st;
        train_state_read(resume_state, model.num_parameters, model.m_memory, model.v_memory, &st, sizeof(st), rng.s,
                         &log_bytes);
        dataloader_set_state(&train_loader, &st);
        printf("resumed from step %d (%s)\n", start_step, resume_state);
    }
    FILE *log = args.out_dir ? run_dir_open_log(args.out_dir, start_step > 0, log_bytes) : NULL;
    int *gen_tokens = (int *)mallocCheck((size_t)B * T * sizeof(int));
    // the sampling prompt (-sp / -sf; default: the end-of-text token): its rows and the new ones share the T rows
    int prompt_len = 0;
    int *prompt = train_args_prompt(&args, tok.init_ok && tok.eot_token >= 0 && tok.eot_token < cfg.vocab_size ?
                                    (int)tok.eot_token : 0, cfg.vocab_size, &prompt_len);
    if (args.sample_every > 0 && prompt_len >= T)
        fatal("the prompt has %d tokens: with -t %d no row is left for a new token (give -t > %d)", prompt_len, T,
              prompt_len);

    // at step s: validation, eval, sample, checkpoint (these belong to step s: a run resumed from the
    // checkpoint of step s does not repeat them), then the optimizer step s -> s + 1
    StepRange range = { start_step, max_steps };
    for (int step = start_step; step <= max_steps; step++) {
        int last = step == max_steps;
        if (step_validates(range, step, args.val_every)) {
            run_log_val(log, step, evaluate(&model, &val_loader, args.val_steps, B, T));
        }
        if (eval_file && !step_resumed_here(range, step) && (step_validates(range, step, args.val_every) || last))
            evaluate_tasks(&model, &val_loader, &eval_tasks, step, log);
        // -x 0 samples at step 0: a way to sample from a checkpoint (-e FILE -x 0 -s 1)
        if (step_samples(range, step, args.sample_every)) {
            int n = prompt_len + args.gen_tokens < T ? prompt_len + args.gen_tokens : T;   // prompt + new, at most T
            if (n < prompt_len + args.gen_tokens)
                printf("note: -t %d rows hold the prompt (%d) and %d of the -g %d new tokens\n", T, prompt_len,
                       n - prompt_len, args.gen_tokens);
            memcpy(gen_tokens, prompt, prompt_len * sizeof(int));
            printf("generating:\n---\n");
            model_generate(&model, gen_tokens, prompt_len, n, &rng, &tok, args.temperature, args.top_k);
            printf("---\n");
        }
        int stop = train_stop_signal;   // Ctrl-C / SIGTERM during the step before: save it, then exit
        if (args.out_dir && step_checkpoints(range, step, args.ckpt_every, stop))
            save_checkpoint(&model, args.out_dir, step, &train_loader, &rng, log, args.keep_last);
        if (stop && !last) {
            printf("stopped by signal %d at step %d%s\n", stop, step,
                   args.out_dir ? (step > start_step ? ": resume with -y 1" : " (nothing new to save)") : " (no -o: nothing saved)");
            if (log) fcloseCheck(log, "main.log");
            return 128 + stop;
        }
        if (last) break;

        double t_start = now_seconds();
        model_zero_grad(&model);
        double loss = 0.0;
        for (int micro = 0; micro < accum; micro++) {
            dataloader_next_batch(&train_loader);
            model_forward(&model, train_loader.inputs, train_loader.targets, B, T, 0, T);
            model_backward(&model, train_loader.inputs, train_loader.targets, 1.0f / accum);
            loss += model.mean_loss;
        }
        loss /= accum;
        if (!isfinite(loss)) fatal("step %d: the loss is %f: training diverged", step + 1, loss);
        float norm = model_grad_norm(&model);
        float scale = args.grad_clip > 0.0f && norm > args.grad_clip ? args.grad_clip / (norm + 1e-6f) : 1.0f;
        float lr = lr_at_step(args.lr, step, args.warmup, max_steps, args.final_lr_frac);
        model_update(&model, lr, 0.9f, 0.95f, 1e-8f, args.weight_decay, step + 1, 0, scale);
        double dt = now_seconds() - t_start;
        float tok_s = (float)(args.total_batch / dt);
        printf("step %d/%d | loss %.6f | lr %.2e | norm %.4f | %.1f ms | %.0f tok/s\n", step + 1, max_steps, loss,
               lr, norm, dt * 1e3, tok_s);
        run_log_train(log, step + 1, loss, lr, norm, tok_s);
    }
    if (train_stop_signal) printf("signal %d at the last step: the run is complete\n", (int)train_stop_signal);
    if (log) fcloseCheck(log, "main.log");
    free(gen_tokens);
    free(prompt);
    dataloader_free(&train_loader);
    if (use_val) dataloader_free(&val_loader);
    if (eval_file) eval_tasks_free(&eval_tasks);
    tokenizer_free(&tok);
    model_free(&model);
    return 0;
}
#endif // TESTING
