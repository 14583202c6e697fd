/*
 Feedback solve, backward (DESIGN.md §2): given gs = dL/ds, u = dL/df (transposed solve), dgamma, dqb, dkb.
   version 1: the former llmc/feedback.cuh (feedback_v1.cu): transposed 64-row blocked chain, then dZ / dqb / dkb
   version 2: llmc/feedback.cuh feedback_backward: key superblocks of 256 from last to first, cuBLASLt bf16 hi/lo GEMMs
   version 3: the dense form, as the official layer under bf16 autocast: u = A^-T gs (cublasStrsmBatched on the
              forward's (B,T,T) A), US = u s^T (B,T,T), dZ (B,T,T), dqb = dZ kb, dkb = dZ^T qb (bf16 GEMMs)
 make -C dev/cuda && dev/cuda/bin/feedback_backward check    (or bench; an optional version number picks one)
 FB_S=128 dev/cuda/bin/feedback_backward bench: version 2 with superblocks of 128 rows (a multiple of 32, <= 256)
 bench: forward and backward of every version at B*T = 8192, D = 768, T = 256 .. 8192 (B=8 T=1024 and B=2 T=4096
        among them), time and memory, and the ratio version 2 / dense for forward + backward.
 dev/cuda/bin/feedback_backward io IN OUT: version 2 forward + backward on inputs from a file, for
        dev/cuda/feedback_precision.py. IN: int32 B, T, D; float32 f (B,T,D), qb (B,T,D), kb (B,T,D), gamma (B,T),
        gs (B,T,D) (f, qb, kb are rounded to bf16 on the way in). OUT: float32 s, u (fp32-grade: u_hi + u_lo from the
        scratch's u3), dqb, dkb (bf16 values), all (B,T,D), then dgamma (B,T).
*/
#include "feedback_trsm_baseline.cu"
#include "feedback_solves.h"          // inverse_modes_agree
#include "feedback_side_v1.h"         // session 6's slab kernel (the bitwise check, the bench)

typedef struct {
    int B, T, D, ld;
    float *f, *qkb, *gamma, *gs;   // host: f (B,T,D), [qb | kb] (B,T,2D) (bf16-exact values), gamma (B,T), gs (B,T,D)
    floatX *d_f, *d_qkb;           // qb = d_qkb, kb = d_qkb + D, row stride ld = 2D
    float *d_gamma, *d_gs;
    float *d_s, *d_c, *d_lse;      // the forward's outputs (version 2)
    float *scratch;                // large enough for versions 1 and 2
    size_t scratch_bytes;
} Problem;

static Problem make_problem_from(int B, int T, int D, float *f, float *qkb, float *gamma, float *gs) {
    Problem p = {B, T, D, 2 * D};
    size_t n = (size_t)B * T * D;
    p.f = f; p.qkb = qkb; p.gamma = gamma; p.gs = gs;
    round_to_bf16(p.f, n);
    round_to_bf16(p.qkb, 2 * n);
    p.d_f = to_device_bf16(p.f, n);
    p.d_qkb = to_device_bf16(p.qkb, 2 * n);
    p.d_gamma = to_device_f32(p.gamma, (size_t)B * T);
    p.d_gs = to_device_f32(p.gs, n);
    cudaMallocCheck(&p.d_s, n * sizeof(float));
    cudaMallocCheck(&p.d_c, n * sizeof(float));
    cudaMallocCheck(&p.d_lse, (size_t)B * T * sizeof(float));
    size_t s1 = feedback1_scratch_bytes(B, T, D), s2 = feedback_scratch_bytes(B, T, D);
    p.scratch_bytes = s1 > s2 ? s1 : s2;
    cudaMallocCheck(&p.scratch, p.scratch_bytes);
    feedback_forward(p.d_s, p.d_c, p.d_lse, p.d_f, p.d_qkb, p.d_qkb + D, p.ld, p.d_gamma, B, T, D, p.scratch, 0);
    cudaCheck(cudaDeviceSynchronize());
    return p;
}
static Problem make_problem(int B, int T, int D) {
    size_t n = (size_t)B * T * D;
    float *f = make_random_float(n, -1.0f, 1.0f), *qkb = make_random_float(2 * n, -1.0f, 1.0f);
    float *gamma = make_random_float((size_t)B * T, 0.9f, 0.999f), *gs = make_random_float(n, -1.0f, 1.0f);
    return make_problem_from(B, T, D, f, qkb, gamma, gs);
}
static void free_problem(Problem *p) {
    free(p->f); free(p->qkb); free(p->gamma); free(p->gs);
    cudaCheck(cudaFree(p->d_f)); cudaCheck(cudaFree(p->d_qkb)); cudaCheck(cudaFree(p->d_gamma)); cudaCheck(cudaFree(p->d_gs));
    cudaCheck(cudaFree(p->d_s)); cudaCheck(cudaFree(p->d_c)); cudaCheck(cudaFree(p->d_lse)); cudaCheck(cudaFree(p->scratch));
}

// outputs: df (B,T,D) bf16, dgamma (B,T), [dqb | dkb] (B,T,2D) bf16 with the same stride as qb/kb
typedef struct { floatX *df, *dqkb; float *dgamma; int v; } Grads;
static Grads grads_alloc(const Problem *p, int v) {
    Grads g;
    size_t n = (size_t)p->B * p->T * p->D;
    g.v = v;
    cudaMallocCheck(&g.df, n * sizeof(floatX));
    cudaMallocCheck(&g.dqkb, 2 * n * sizeof(floatX));
    cudaMallocCheck(&g.dgamma, (size_t)p->B * p->T * sizeof(float));
    return g;
}
static void grads_free(Grads *g) { cudaCheck(cudaFree(g->df)); cudaCheck(cudaFree(g->dqkb)); cudaCheck(cudaFree(g->dgamma)); }
static void run_blocked(const Problem *p, Grads *g) {
    if (g->v == 1)
        feedback1_backward(g->df, g->dgamma, g->dqkb, g->dqkb + p->D, p->ld, p->d_gs, p->d_s, p->d_c, p->d_lse,
                           p->d_qkb, p->d_qkb + p->D, p->d_gamma, p->B, p->T, p->D, p->scratch, 0);
    else
        feedback_backward(g->df, g->dgamma, g->dqkb, g->dqkb + p->D, p->ld, p->d_gs, p->d_s, p->d_c, p->d_lse,
                          p->d_qkb, p->d_qkb + p->D, p->d_gamma, p->B, p->T, p->D, p->scratch, 0);
}
static void run_blocked_forward(const Problem *p, int v, float *s, float *c, float *lse) {
    if (v == 1)
        feedback1_forward(s, c, lse, p->d_f, p->d_qkb, p->d_qkb + p->D, p->ld, p->d_gamma, p->B, p->T, p->D, p->scratch, 0);
    else
        feedback_forward(s, c, lse, p->d_f, p->d_qkb, p->d_qkb + p->D, p->ld, p->d_gamma, p->B, p->T, p->D, p->scratch, 0);
}

// version 3 (dense): forward = build A + solve (X: f in, s out); backward = solve transposed (X: gs in, u out) +
// gradient GEMMs. A stays from the forward, as autograd keeps it.
static void run_dense_forward(const Problem *p, DenseBaseline *db, float *X, const float *d_f32) {
    cudaCheck(cudaMemcpyAsync(X, d_f32, (size_t)p->B * p->T * p->D * sizeof(float), cudaMemcpyDeviceToDevice));
    dense_baseline_build_A(db, p->d_qkb, p->d_qkb + p->D, p->ld, p->d_gamma);
    dense_baseline_solve(db, 0);
}
static void run_dense_backward(const Problem *p, DenseBaseline *db, float *X, Grads *g) {
    cudaCheck(cudaMemcpyAsync(X, p->d_gs, (size_t)p->B * p->T * p->D * sizeof(float), cudaMemcpyDeviceToDevice));
    dense_baseline_solve(db, 1);
    dense_baseline_backward(db, X, p->d_s, p->d_qkb, p->d_qkb + p->D, p->ld, p->d_gamma, g->dqkb, g->dqkb + p->D, g->dgamma);
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
    // O(T + D) terms (the dZ difference u.s_j - dgamma_t loses a few more digits; version 2 also rounds dZ to bf16,
    // an error of 2^-9 per term that averages out over the sum), hence atol 2e-3 of the tensor's largest entry.
    // dgamma stays fp32 and depends on the whole chain for u: its errors are ~1e-7 of max|dgamma| in version 1 and
    // ~1e-6 in version 2 (u kept as bf16 hi + lo halves: 17 bits) on the CPU emulation of these kernels, so atol
    // 2e-5 of the max + rtol 1e-4. A wrong mask, superblock boundary or stride gives errors of order 1e-1 of the
    // largest entry; a plain-bf16 chain (no lo halves) gives ~1e-3 of max|dgamma|.
    float rb = 5e-3f;
    int ok = 1;
    for (int v = 1; v <= 2; v++) {
        if (version != 0 && version != v) continue;
        printf(v == 1 ? " version 1 (64-row blocks)\n" : " version 2 (superblocks, cuBLASLt hi/lo GEMMs)\n");
        Grads g = grads_alloc(&p, v);
        run_blocked(&p, &g);
        cudaCheck(cudaDeviceSynchronize());
        ok &= validate_result(g.df, u_ref, "u=df", B * T, D, D, 2e-3f * max_abs(u_ref, n), rb);
        ok &= validate_result(g.dgamma, dg_ref, "dgamma", B * T, 1, 1, 2e-5f * max_abs(dg_ref, (size_t)B * T), 1e-4f);
        ok &= validate_result(g.dqkb, dq_ref, "dqb", B * T, D, 2 * D, 2e-3f * max_abs(dq_ref, n), rb);
        ok &= validate_result(g.dqkb + D, dk_ref, "dkb", B * T, D, 2 * D, 2e-3f * max_abs(dk_ref, n), rb);
        // determinism: a second run gives the same bits
        uint16_t *a1 = (uint16_t *)mallocCheck(2 * n * sizeof(uint16_t)), *a2 = (uint16_t *)mallocCheck(2 * n * sizeof(uint16_t));
        float *g1 = (float *)mallocCheck((size_t)B * T * sizeof(float)), *g2 = (float *)mallocCheck((size_t)B * T * sizeof(float));
        cudaCheck(cudaMemcpy(a1, g.dqkb, 2 * n * sizeof(floatX), cudaMemcpyDeviceToHost));
        from_device(g1, g.dgamma, (size_t)B * T);
        run_blocked(&p, &g);
        cudaCheck(cudaMemcpy(a2, g.dqkb, 2 * n * sizeof(floatX), cudaMemcpyDeviceToHost));
        from_device(g2, g.dgamma, (size_t)B * T);
        int same = memcmp(a1, a2, 2 * n * sizeof(uint16_t)) == 0 && memcmp(g1, g2, (size_t)B * T * sizeof(float)) == 0;
        printf("  %-8s second run bitwise identical: %s\n", "dqb|dkb|dgamma", same ? "ok" : "FAIL");
        ok &= same;
        free(a1); free(a2); free(g1); free(g2);
        grads_free(&g);
    }
    if (version == 0 || version == 3) {
        // the dense form in bf16 autocast style: u in fp32 (trsm), then bf16 copies of u and s for US, bf16 dZ.
        // Its errors are bf16-sized (US from bf16 operands: 2^-9 relative, then the difference US - dgamma), so
        // this only shows the baseline computes the right thing: atol 5e-2 of the max (a layout error gives O(1)).
        printf(" version 3 (dense: cuBLAS trsm + gradient GEMMs)\n");
        float *X, *d_f32 = to_device_f32(p.f, n);
        cudaMallocCheck(&X, n * sizeof(float));
        DenseBaseline db = dense_baseline_create(X, B, T, D);
        dense_baseline_alloc_backward(&db);
        Grads g = grads_alloc(&p, 3);
        run_dense_forward(&p, &db, X, d_f32);
        cudaCheck(cudaDeviceSynchronize());
        ok &= validate_result(X, s_ref, "s", B * T, D, D, 1e-3f * max_abs(s_ref, n), 1e-3f);
        run_dense_backward(&p, &db, X, &g);
        cudaCheck(cudaDeviceSynchronize());
        ok &= validate_result(X, u_ref, "u", B * T, D, D, 1e-3f * max_abs(u_ref, n), 1e-3f); // fp32 output
        ok &= validate_result(g.dgamma, dg_ref, "dgamma", B * T, 1, 1, 5e-2f * max_abs(dg_ref, (size_t)B * T), 5e-2f);
        ok &= validate_result(g.dqkb, dq_ref, "dqb", B * T, D, 2 * D, 5e-2f * max_abs(dq_ref, n), 5e-2f);
        ok &= validate_result(g.dqkb + D, dk_ref, "dkb", B * T, D, 2 * D, 5e-2f * max_abs(dk_ref, n), 5e-2f);
        grads_free(&g);
        dense_baseline_destroy(&db);
        cudaCheck(cudaFree(X)); cudaCheck(cudaFree(d_f32));
    }
    free(s_ref); free(c_ref); free(lse_ref); free(u_ref); free(dg_ref); free(dq_ref); free(dk_ref);
    free_problem(&p);
    return ok;
}

// the gate folded into the call (FbGateBwd, the trainer's way: gs NULL, dgated and gt given, dgt written) against the
// same call on gs = dgated * gt from gate_backward (llmc/gate.cuh), bit for bit: df, dgamma, dqb, dkb and gate_backward's
// dgt; dgated = f's random bf16, gt = the kb half (rows 2D apart), dgt into the first half of a (B*T, 2D) buffer filled
// with NaN bytes (a row left unwritten fails)
static int same_dev(const void *a, const void *b, size_t bytes) {
    char *x = (char *)mallocCheck(2 * bytes);
    cudaCheck(cudaMemcpy(x, a, bytes, cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(x + bytes, b, bytes, cudaMemcpyDeviceToHost));
    int same = memcmp(x, x + bytes, bytes) == 0;
    free(x);
    return same;
}
static int check_gate(int B, int T, int D) {
    Problem p = make_problem(B, T, D);
    size_t n = (size_t)B * T * D;
    const floatX *dgated = p.d_f, *gt = p.d_qkb + D;
    float *gs;
    floatX *dgt_ref, *dgt;
    cudaMallocCheck(&gs, n * sizeof(float));
    cudaMallocCheck(&dgt_ref, 2 * n * sizeof(floatX));
    cudaMallocCheck(&dgt, 2 * n * sizeof(floatX));
    cudaCheck(cudaMemset(dgt_ref, 0xff, 2 * n * sizeof(floatX)));
    cudaCheck(cudaMemset(dgt, 0xff, 2 * n * sizeof(floatX)));
    gate_backward(gs, dgt_ref, dgated, p.d_s, gt, 2 * D, B * T, D, 0);
    Grads a = grads_alloc(&p, 2), b = grads_alloc(&p, 2);
    feedback_backward(a.df, a.dgamma, a.dqkb, a.dqkb + D, p.ld, gs, p.d_s, p.d_c, p.d_lse, p.d_qkb, p.d_qkb + D,
                      p.d_gamma, B, T, D, p.scratch, 0);
    FbGateBwd gate = {dgated, gt, dgt, 2 * D};
    feedback_backward(b.df, b.dgamma, b.dqkb, b.dqkb + D, p.ld, NULL, p.d_s, p.d_c, p.d_lse, p.d_qkb, p.d_qkb + D,
                      p.d_gamma, B, T, D, p.scratch, 0, FB_ALL, &gate);
    cudaCheck(cudaDeviceSynchronize());
    int ok = same_dev(a.df, b.df, n * sizeof(floatX)) && same_dev(a.dgamma, b.dgamma, (size_t)B * T * sizeof(float)) &&
             same_dev(a.dqkb, b.dqkb, 2 * n * sizeof(floatX));
    int ok_dgt = same_dev(dgt_ref, dgt, 2 * n * sizeof(floatX));
    printf("check B=%d T=%d D=%d: the gate folded in: df, dgamma, dqb, dkb bitwise those from gate_backward's gs: %s; "
           "dgt bitwise gate_backward's: %s\n", B, T, D, ok ? "ok" : "FAIL", ok_dgt ? "ok" : "FAIL");
    grads_free(&a); grads_free(&b);
    cudaCheck(cudaFree(gs)); cudaCheck(cudaFree(dgt_ref)); cudaCheck(cudaFree(dgt));
    free_problem(&p);
    return ok && ok_dgt;
}

// the forward's kept slab (FbKeep: one superblock, T <= S) against the same calls without it: whole, and in the
// trainer's parts (forward FB_BEGIN, FB_CHAIN | FB_END; backward FB_BEGIN, FB_CHAIN, FB_END; the parts put the
// inverses on the side stream: not the whole call's last bits on a GPU, so each is compared with its own kind). Every
// output and the keep buffer filled with NaN bytes first (PcT's entries past a partial superblock must come out zero:
// a missed write shows). The forward's s, c, lse bitwise (keep adds a kernel beside it, changes nothing in it); the
// backward's df, dgamma, dqb, dkb bitwise when the forward's logits GEMM has the slab GEMM's plan (T = S, a multiple
// of 64: the trainer's T = 256); else (T = 201: another row stride, maybe another cuBLASLt kernel, logits a rounding
// apart) within one bf16 rounding of the other's plus 1e-5 of its largest |value|. Then the kept Pc3 zeroed: the
// backward's dqb, dkb must change (it reads the kept slab, not a recomputed one).
static int close_dev(const void *a, const void *b, size_t n, int bf16, int *bitwise) {
    float *x = (float *)mallocCheck(n * sizeof(float)), *y = (float *)mallocCheck(n * sizeof(float));
    if (bf16) {
        floatX *h = (floatX *)mallocCheck(2 * n * sizeof(floatX));
        cudaCheck(cudaMemcpy(h, a, n * sizeof(floatX), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(h + n, b, n * sizeof(floatX), cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < n; i++) { x[i] = __bfloat162float(h[i]); y[i] = __bfloat162float(h[n + i]); }
        free(h);
    } else {
        from_device(x, (const float *)a, n);
        from_device(y, (const float *)b, n);
    }
    float mx = 0.0f;
    for (size_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(x[i]));
    int ok = 1;
    *bitwise &= memcmp(x, y, n * sizeof(float)) == 0;
    for (size_t i = 0; i < n; i++) ok &= isfinite(y[i]) && fabsf(x[i] - y[i]) <= 0x1p-8f * fabsf(x[i]) + 1e-5f * mx;
    free(x); free(y);
    return ok;
}
typedef struct { float *s, *c, *lse; Grads g; } KeepRun;
// forward then backward of p's inputs, whole (split 0) or in the trainer's parts, with keep or without (NULL)
static void keep_run(const Problem *p, KeepRun *r, int split, const FbKeep *keep) {
    int B = p->B, T = p->T, D = p->D;
    size_t n = (size_t)B * T * D, bt = (size_t)B * T;
    if (keep) cudaCheck(cudaMemset(keep->mem, 0xff, keep->bytes));
    cudaCheck(cudaMemset(r->s, 0xff, n * sizeof(float))); cudaCheck(cudaMemset(r->c, 0xff, n * sizeof(float)));
    cudaCheck(cudaMemset(r->lse, 0xff, bt * sizeof(float)));
    cudaCheck(cudaMemset(r->g.df, 0xff, n * sizeof(floatX))); cudaCheck(cudaMemset(r->g.dqkb, 0xff, 2 * n * sizeof(floatX)));
    cudaCheck(cudaMemset(r->g.dgamma, 0xff, bt * sizeof(float)));
    const int fparts[2][2] = {{FB_ALL, 0}, {FB_BEGIN, FB_CHAIN | FB_END}}, bparts[2][3] = {{FB_ALL, 0, 0}, {FB_BEGIN, FB_CHAIN, FB_END}};
    for (int i = 0; i < 2 && fparts[split][i]; i++)
        feedback_forward(r->s, r->c, r->lse, p->d_f, p->d_qkb, p->d_qkb + D, p->ld, p->d_gamma, B, T, D, p->scratch, 0,
                         fparts[split][i], NULL, keep);
    for (int i = 0; i < 3 && bparts[split][i]; i++)
        feedback_backward(r->g.df, r->g.dgamma, r->g.dqkb, r->g.dqkb + D, p->ld, p->d_gs, r->s, r->c, r->lse, p->d_qkb,
                          p->d_qkb + D, p->d_gamma, B, T, D, p->scratch, 0, bparts[split][i], NULL, keep);
    cudaCheck(cudaDeviceSynchronize());
}
static int check_keep(int B, int T, int D) {
    Problem p = make_problem(B, T, D);
    int S = fb_superblock(B, T);
    size_t n = (size_t)B * T * D, bt = (size_t)B * T, kb = feedback_keep_bytes(B, T, D);
    if (kb == 0) fatal("check_keep: B=%d T=%d has more than one superblock (S = %d): nothing is kept", B, T, S);
    FbKeep keep = {NULL, kb};
    cudaMallocCheck(&keep.mem, kb);
    KeepRun r[2];
    for (int k = 0; k < 2; k++) {
        cudaMallocCheck(&r[k].s, n * sizeof(float)); cudaMallocCheck(&r[k].c, n * sizeof(float));
        cudaMallocCheck(&r[k].lse, bt * sizeof(float));
        r[k].g = grads_alloc(&p, 2);
    }
    int want_bits = T == S && T % 64 == 0, ok = 1;
    for (int split = 0; split <= 1; split++) {
        keep_run(&p, &r[0], split, NULL);
        keep_run(&p, &r[1], split, &keep);
        int fwd = same_dev(r[0].s, r[1].s, n * sizeof(float)) && same_dev(r[0].c, r[1].c, n * sizeof(float)) &&
                  same_dev(r[0].lse, r[1].lse, bt * sizeof(float));
        int bits = 1;
        int bwd = close_dev(r[0].g.df, r[1].g.df, n, 1, &bits) & close_dev(r[0].g.dgamma, r[1].g.dgamma, bt, 0, &bits) &
                  close_dev(r[0].g.dqkb, r[1].g.dqkb, 2 * n, 1, &bits);
        int pass = fwd && bwd && (bits || !want_bits);
        printf("check B=%d T=%d D=%d S=%d, the forward's kept slab against none (calls %s): s, c, lse bitwise: %s; df, "
               "dgamma, dqb, dkb %s%s: %s\n", B, T, D, S, split ? "in parts" : "whole", fwd ? "yes" : "NO",
               bits ? "bitwise" : "within tolerance", want_bits ? " (bitwise expected)" : "", pass ? "ok" : "FAIL");
        ok &= pass;
    }
    // the kept Pc3 zeroed: dkb = dZ^T qb over the kept slab's rows (dZ written over them) must change
    cudaCheck(cudaMemset(keep.mem, 0, (size_t)3 * B * T * S * sizeof(floatX)));
    feedback_backward(r[1].g.df, r[1].g.dgamma, r[1].g.dqkb, r[1].g.dqkb + D, p.ld, p.d_gs, r[1].s, r[1].c, r[1].lse,
                      p.d_qkb, p.d_qkb + D, p.d_gamma, B, T, D, p.scratch, 0, FB_ALL, NULL, &keep);
    cudaCheck(cudaDeviceSynchronize());
    int reads = !same_dev(r[0].g.dqkb, r[1].g.dqkb, 2 * n * sizeof(floatX));
    printf("check B=%d T=%d D=%d: with the kept Pc3 zeroed the backward's dqb, dkb change (it reads the kept slab): %s\n",
           B, T, D, reads ? "ok" : "FAIL");
    ok &= reads;
    for (int k = 0; k < 2; k++) {
        grads_free(&r[k].g);
        cudaCheck(cudaFree(r[k].s)); cudaCheck(cudaFree(r[k].c)); cudaCheck(cudaFree(r[k].lse));
    }
    cudaCheck(cudaFree(keep.mem));
    free_problem(&p);
    return ok;
}

// version 2 with the inverses in each of fb_inverse_mode's four places and 32 or 16 columns a solve CTA: df, dqb,
// dkb, dgamma bitwise alike
// (inverse_modes_agree; the forward's s, c, lse are made once, by make_problem)
// the tree's slab kernel against session 6's (feedback_side_v1.h), bit for bit, on every superblock of a B x T
// problem: Zs uniform in [-6, 6) (every entry: also rows and keys no GEMM would write), lse in [2, 6), gamma in
// [0, 1); each output buffer filled with 0xff bytes before each run, so entries one writes and the other does not
// differ too. Returns 1 when all agree.
static int same_bytes(const void *d_a, const void *d_b, size_t bytes) {
    char *a = (char *)mallocCheck(bytes), *b = (char *)mallocCheck(bytes);
    cudaCheck(cudaMemcpy(a, d_a, bytes, cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(b, d_b, bytes, cudaMemcpyDeviceToHost));
    int ok = memcmp(a, b, bytes) == 0;
    free(a); free(b);
    return ok;
}
static int check_slab_bitwise(int B, int T, int D) {
    unsigned long long rng = dev_rng_state;   // (restored at the end: the other checks draw the inputs they always drew)
    int S = fb_superblock(B, T), n = ceil_div(T, S);
    size_t nzs = (size_t)B * T * S, nd = (size_t)B * S * S, bt = (size_t)B * T;
    void *scratch;
    cudaMallocCheck(&scratch, feedback_scratch_bytes(B, T, D));
    float *h = make_random_float(bt, 2.0f, 6.0f), *d_lse = to_device_f32(h, bt);
    free(h);
    h = make_random_float(bt, 0.0f, 1.0f);
    float *d_gamma = to_device_f32(h, bt);
    free(h);
    FbBwdScratch bw;
    fb_bwd_carve(&bw, scratch, B, T, D);
    float *zs = make_random_float(nzs, -6.0f, 6.0f);
    cudaCheck(cudaMemcpy(bw.Zs[0], zs, nzs * sizeof(float), cudaMemcpyHostToDevice));
    free(zs);
    floatX *Pc3[2];
    float *PcT[2];
    for (int v = 0; v < 2; v++) {
        cudaMallocCheck(&Pc3[v], 3 * nzs * sizeof(floatX));
        cudaMallocCheck(&PcT[v], nd * sizeof(float));
    }
    int ok = 1;
    for (int q = 0; q < n; q++) {
        int u0 = q * S, Sv = (u0 + S < T ? u0 + S : T) - u0;
        for (int v = 0; v < 2; v++) {
            cudaCheck(cudaMemset(bw.Pc3[0], 0xff, 3 * nzs * sizeof(floatX)));
            cudaCheck(cudaMemset(bw.PcT[0], 0xff, nd * sizeof(float)));
            if (v == 0) fb_launch_slab_v1(&bw, 0, d_lse, d_gamma, u0, Sv, S, B, T, 0);
            else fb_launch_slab(&bw, 0, d_lse, d_gamma, u0, Sv, S, B, T, 0);
            cudaCheck(cudaMemcpy(Pc3[v], bw.Pc3[0], 3 * nzs * sizeof(floatX), cudaMemcpyDeviceToDevice));
            cudaCheck(cudaMemcpy(PcT[v], bw.PcT[0], nd * sizeof(float), cudaMemcpyDeviceToDevice));
        }
        int same = same_bytes(Pc3[0], Pc3[1], 3 * nzs * sizeof(floatX)) & same_bytes(PcT[0], PcT[1], nd * sizeof(float));
        if (!same) printf("  fb_bwd_slab B=%d T=%d S=%d superblock %d: NOT the bits of fb_bwd_slab_v1\n", B, T, S, q);
        ok &= same;
    }
    for (int v = 0; v < 2; v++) { cudaCheck(cudaFree(Pc3[v])); cudaCheck(cudaFree(PcT[v])); }
    cudaCheck(cudaFree(scratch)); cudaCheck(cudaFree(d_lse)); cudaCheck(cudaFree(d_gamma));
    dev_rng_state = rng;
    printf("slab B=%d T=%d S=%d (%d superblocks): fb_bwd_slab %s fb_bwd_slab_v1 bit for bit\n", B, T, S, n,
           ok ? "matches" : "does NOT match");
    return ok;
}

// check_slab_bitwise with superblocks of S rows (fb_launch_slab_v1 knew S <= FB_SMAX_V1 only)
static int check_slab_with(int S, int B, int T, int D) {
    int keep = fb_superblock_rows;
    fb_superblock_rows = S;
    int ok = check_slab_bitwise(B, T, D);
    fb_superblock_rows = keep;
    return ok;
}

// feedback_scratch_bytes(B, T, D) covers every call of at most B x T (the trainer holds one scratch for its largest
// shape), though a smaller batch may take the larger superblock: host arithmetic over batches, lengths about the
// superblock rule's bounds and widths below and above 512 (without the smaller batch's term, B=5 T=2048 D=768 falls
// short of B=4 T=2048 at S = 512: 150 against 186 MB)
static int check_scratch_covers(void) {
    const int Ts[] = {1, 300, 1024, 2047, 2048, 2049, 4096, 5000, 8192}, Ds[] = {64, 256, 768};
    const int nT = sizeof Ts / sizeof Ts[0], nD = sizeof Ds / sizeof Ds[0];
    int ok = 1;
    for (int B = 1; B <= FB_S_LONG_B + 2; B++)
        for (int i = 0; i < nT; i++)
            for (int d = 0; d < nD; d++) {
                size_t have = feedback_scratch_bytes(B, Ts[i], Ds[d]);
                for (int b = 1; b <= B; b++)
                    for (int j = 0; j <= i; j++)
                        if (fb_scratch_at(b, Ts[j], Ds[d]) > have) {
                            printf("  scratch of B=%d T=%d D=%d: %zu bytes, but a call of B=%d T=%d needs %zu\n", B, Ts[i],
                                   Ds[d], have, b, Ts[j], fb_scratch_at(b, Ts[j], Ds[d]));
                            ok = 0;
                        }
            }
    printf("scratch: feedback_scratch_bytes(B, T, D) covers every call of b <= B, t <= T (B <= %d, T <= 8192, D = 64, "
           "256, 768): %s\n", FB_S_LONG_B + 2, ok ? "ok" : "FAIL");
    return ok;
}

typedef struct { const Problem *p; Grads *g; } VariantRun;
static void variant_run(void *ctx, void *out) {
    VariantRun *r = (VariantRun *)ctx;
    size_t n = (size_t)r->p->B * r->p->T * r->p->D;
    char *o = (char *)out;
    cudaCheck(cudaMemset(r->g->df, 0xff, n * sizeof(floatX)));   // NaN: an output left unwritten cannot pass for
    cudaCheck(cudaMemset(r->g->dqkb, 0xff, 2 * n * sizeof(floatX)));   // the previous run's
    cudaCheck(cudaMemset(r->g->dgamma, 0xff, (size_t)r->p->B * r->p->T * sizeof(float)));
    run_blocked(r->p, r->g);
    cudaCheck(cudaMemcpy(o, r->g->df, n * sizeof(floatX), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(o + n * sizeof(floatX), r->g->dqkb, 2 * n * sizeof(floatX), cudaMemcpyDeviceToHost));
    from_device((float *)(o + 3 * n * sizeof(floatX)), r->g->dgamma, (size_t)r->p->B * r->p->T);
}
static int check_inverse_modes(int B, int T, int D) {
    printf("check B=%d T=%d D=%d S=%d: the inverses' four places, 32 and 16 columns a solve CTA\n", B, T, D, fb_superblock(B, T));
    Problem p = make_problem(B, T, D);
    Grads g = grads_alloc(&p, 2);
    VariantRun r = {&p, &g};
    size_t n = (size_t)B * T * D;
    int ok = inverse_modes_agree(variant_run, &r, 3 * n * sizeof(floatX) + (size_t)B * T * sizeof(float), p.scratch,
                                 p.scratch_bytes, "df, dqb, dkb, dgamma");
    grads_free(&g);
    free_problem(&p);
    return ok;
}

// the median of 5 runs of 10 calls each (after benchmark_kernel's warm-up call): with the side streams the time
// varies run to run (the H200, B=1 T=8192, one run of 10 each: 4.08 and 5.21 ms for the same configuration)
template <class Kernel, class... Args>
static float bench_median(Kernel f, Args &&...args) {
    float t[5];
    for (int i = 0; i < 5; i++) {
        t[i] = benchmark_kernel(10, f, args...);
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) { float x = t[j]; t[j] = t[j - 1]; t[j - 1] = x; }
    }
    return t[2];
}

static void bench(int B, int T, int D, int version) {
    Problem p = make_problem(B, T, D);
    size_t n = (size_t)B * T * D;
    float fw[4] = {0}, bw[4] = {0};
    double mib = 1.0 / (1 << 20), mem[4] = {0};
    for (int v = 1; v <= 2; v++) {
        if (version != 0 && version != v) continue;
        float *s, *c, *lse;
        cudaMallocCheck(&s, n * sizeof(float)); cudaMallocCheck(&c, n * sizeof(float));
        cudaMallocCheck(&lse, (size_t)B * T * sizeof(float));
        fw[v] = v == 2 ? bench_median(run_blocked_forward, &p, v, s, c, lse) : benchmark_kernel(10, run_blocked_forward, &p, v, s, c, lse);
        cudaCheck(cudaFree(s)); cudaCheck(cudaFree(c)); cudaCheck(cudaFree(lse));
        Grads g = grads_alloc(&p, v);
        bw[v] = v == 2 ? bench_median(run_blocked, &p, &g) : benchmark_kernel(10, run_blocked, &p, &g);
        grads_free(&g);
        size_t bytes = (v == 1 ? feedback1_scratch_bytes(B, T, D) : feedback_scratch_bytes(B, T, D)) + n * sizeof(float);
        mem[v] = (double)bytes;
        printf("B=%d T=%5d D=%d  version %d %-10s fwd %8.3f ms  bwd %8.3f ms  sum %8.3f ms  memory (c + scratch) %8.1f MiB\n",
               B, T, D, v, v == 1 ? "64-row" : "superblock", fw[v], bw[v], fw[v] + bw[v], bytes * mib);
    }
    if (version == 0 || version == 3) {
        float *X, *d_f32 = to_device_f32(p.f, n);
        cudaMallocCheck(&X, n * sizeof(float));
        DenseBaseline db = dense_baseline_create(X, B, T, D);
        dense_baseline_alloc_backward(&db);
        Grads g = grads_alloc(&p, 3);
        fw[3] = benchmark_kernel(10, run_dense_forward, &p, &db, X, d_f32);
        bw[3] = benchmark_kernel(10, run_dense_backward, &p, &db, X, &g);
        printf("B=%d T=%5d D=%d  version 3 %-10s fwd %8.3f ms  bwd %8.3f ms  sum %8.3f ms  memory (A, US, dZ, bf16 u s) %8.1f MiB\n",
               B, T, D, "dense", fw[3], bw[3], fw[3] + bw[3], dense_baseline_bytes(&db) * mib);
        mem[3] = (double)dense_baseline_bytes(&db);
        grads_free(&g);
        dense_baseline_destroy(&db);
        cudaCheck(cudaFree(X)); cudaCheck(cudaFree(d_f32));
    }
    if (version == 0)
        printf("B=%d T=%5d D=%d  forward+backward time: version 2 / dense %.3f (goal <= 0.5), version 2 / version 1 %.3f;"
               "  memory version 2 / dense %.2f\n",
               B, T, D, (fw[2] + bw[2]) / (fw[3] + bw[3]), (fw[2] + bw[2]) / (fw[1] + bw[1]), mem[2] / mem[3]);
    free_problem(&p);
}

// version 2's elementwise side kernels alone (llmc/feedback.cuh: fb_fwd_rows, slab, fb_bwd_rows, fb_dz), each
// launched for every superblock of a layer in the order of the calls, on the scratch a forward (then a backward)
// left: time per layer and per call, the bytes each moves (from its header comment) and the rate. The layer's
// calls are one CUDA graph, replayed 20 times: the kernels' time without the ~2-3 us a stream launch adds to each
// (the d12 profile's ncu durations count none either; the CPU emulator has no graphs: plain launches there).
// fb_bwd_slab_v1 (feedback_side_v1.h: session 6's slab, the same bits) is timed beside its successor, on the same
// scratch.
static void side_layer(const Problem *p, int which, float *dgamma, cudaStream_t stream) {
    int B = p->B, T = p->T, D = p->D, S = fb_superblock(B, T), n = ceil_div(T, S), sets = fb_sets(B, T);
    FbFwdScratch fw;
    FbBwdScratch bw;
    fb_fwd_carve(&fw, p->scratch, B, T, D);
    fb_bwd_carve(&bw, p->scratch, B, T, D);
    for (int q = 0; q < n; q++) {
        int u0 = q * S, Sv = (u0 + S < T ? u0 + S : T) - u0, k = q % sets;
        if (which == 0) fb_launch_fwd_rows(&fw, k, p->d_lse, u0, Sv, S, B, T, stream);
        if (which == 1) fb_launch_slab(&bw, k, p->d_lse, p->d_gamma, u0, Sv, S, B, T, stream);
        if (which == 2) fb_launch_bwd_rows(&bw, dgamma, p->d_c, p->d_s, u0, Sv, S, B, T, D, stream);
        if (which == 3) fb_launch_dz(&bw, k, dgamma, u0, Sv, S, B, T, stream);
        if (which == 4) fb_launch_slab_v1(&bw, k, p->d_lse, p->d_gamma, u0, Sv, S, B, T, stream);
    }
}
static float side_layer_ms(const Problem *p, int which, float *dgamma) {
    cudaStream_t st;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    cudaEvent_t e0, e1;
    cudaCheck(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaCheck(cudaEventCreate(&e0));
    cudaCheck(cudaEventCreate(&e1));
    int use_graph = cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal) == cudaSuccess;
    if (use_graph) {
        side_layer(p, which, dgamma, st);
        cudaCheck(cudaStreamEndCapture(st, &graph));
        cudaCheck(cudaGraphInstantiate(&exec, graph, 0));
    }
    const int reps = 20;
    for (int i = -1; i < reps; i++) {                // i = -1: warm-up
        if (i == 0) cudaCheck(cudaEventRecord(e0, st));
        if (use_graph) cudaCheck(cudaGraphLaunch(exec, st));
        else side_layer(p, which, dgamma, st);
    }
    cudaCheck(cudaEventRecord(e1, st));
    cudaCheck(cudaEventSynchronize(e1));
    float ms;
    cudaCheck(cudaEventElapsedTime(&ms, e0, e1));
    if (use_graph) {
        cudaCheck(cudaGraphExecDestroy(exec));
        cudaCheck(cudaGraphDestroy(graph));
    }
    cudaCheck(cudaEventDestroy(e0));
    cudaCheck(cudaEventDestroy(e1));
    cudaCheck(cudaStreamDestroy(st));
    return ms / reps;
}
static void bench_side(int B, int T, int D) {
    Problem p = make_problem(B, T, D);   // (runs the forward: the scratch holds its Z)
    int S = fb_superblock(B, T), n = ceil_div(T, S);
    double bytes[5] = {0};
    for (int q = 0; q < n; q++) {
        double u0 = q * S, Sv = (u0 + S < T ? u0 + S : T) - u0, M = T - u0;
        bytes[0] += B * Sv * (4 * (u0 + Sv) + 6 * u0 + 4 * Sv);   // Z in; P3, Pd out
        bytes[1] += B * (10 * M * S + 4 * Sv * Sv);                // Zs in, Pc3 out; PcT
        bytes[2] += B * Sv * D * 18.0;                             // u_hi, u_lo, c, s in; sU3 out
        bytes[3] += B * M * Sv * 10.0;                             // Pc_hi, Pc_lo, US in; dZ out
    }
    bytes[4] = bytes[1];
    const char *names[5] = {"fb_fwd_rows", "fb_bwd_slab", "fb_bwd_rows", "fb_dz", "fb_bwd_slab_v1"};
    float *dgamma;
    cudaMallocCheck(&dgamma, (size_t)B * T * sizeof(float));
    printf("B=%d T=%5d D=%d  side kernels alone, per layer (%d calls each):", B, T, D, n);
    const int order[5] = {0, 1, 4, 2, 3};   // the v1 slab (feedback_side_v1.h) beside its successor
    for (int o = 0; o < 5; o++) {
        int which = order[o];
        if (which == 4 && S > FB_SMAX_V1) continue;   // (v1 knew S <= 256)
        if (which == 1) {                // the backward's kernels on the scratch of a backward
            Grads g = grads_alloc(&p, 2);
            run_blocked(&p, &g);
            grads_free(&g);
        }
        float ms = side_layer_ms(&p, which, dgamma);
        printf("  %s %.1f us (%.1f/call, %.0f MB, %.2f TB/s)", names[which], 1e3 * ms, 1e3 * ms / n, bytes[which] * 1e-6,
               bytes[which] * 1e-9 / ms);
    }
    printf("\n");
    cudaCheck(cudaFree(dgamma));
    free_problem(&p);
}

// io mode for dev/cuda/feedback_precision.py (see the header)
static void read_exact(void *p, size_t bytes, FILE *fp, const char *path) {
    if (fread(p, 1, bytes, fp) != bytes) fatal("io: %s is too short (wanted %zu more bytes)", path, bytes);
}
static int io_mode(const char *in_path, const char *out_path) {
    FILE *fp = fopen(in_path, "rb");
    if (!fp) fatal("io: cannot open %s", in_path);
    int h[3];
    read_exact(h, sizeof h, fp, in_path);
    int B = h[0], T = h[1], D = h[2];
    if (B < 1 || T < 1 || D < 1 || (double)B * T * D > 1e9) fatal("io: bad shape B=%d T=%d D=%d in %s", B, T, D, in_path);
    size_t n = (size_t)B * T * D, bt = (size_t)B * T;
    float *f = (float *)mallocCheck(n * sizeof(float)), *q = (float *)mallocCheck(n * sizeof(float));
    float *k = (float *)mallocCheck(n * sizeof(float)), *gamma = (float *)mallocCheck(bt * sizeof(float));
    float *gs = (float *)mallocCheck(n * sizeof(float)), *qkb = (float *)mallocCheck(2 * n * sizeof(float));
    read_exact(f, n * sizeof(float), fp, in_path);
    read_exact(q, n * sizeof(float), fp, in_path);
    read_exact(k, n * sizeof(float), fp, in_path);
    read_exact(gamma, bt * sizeof(float), fp, in_path);
    read_exact(gs, n * sizeof(float), fp, in_path);
    if (fgetc(fp) != EOF) fatal("io: %s is longer than B=%d T=%d D=%d needs", in_path, B, T, D);
    fclose(fp);
    for (size_t r = 0; r < bt; r++) {
        memcpy(qkb + r * 2 * D, q + r * D, D * sizeof(float));
        memcpy(qkb + r * 2 * D + D, k + r * D, D * sizeof(float));
    }
    free(q); free(k);
    Problem p = make_problem_from(B, T, D, f, qkb, gamma, gs);   // runs the version 2 forward
    Grads g = grads_alloc(&p, 2);
    run_blocked(&p, &g);
    cudaCheck(cudaDeviceSynchronize());
    FbBwdScratch w;
    fb_bwd_carve(&w, p.scratch, B, T, D);
    float *out = (float *)mallocCheck(n * sizeof(float));
    FILE *fo = fopen(out_path, "wb");
    if (!fo) fatal("io: cannot write %s", out_path);
    from_device(out, p.d_s, n);
    fwrite(out, sizeof(float), n, fo);
    float *u3 = (float *)mallocCheck(3 * n * sizeof(float));
    from_device(u3, w.u3, 3 * n);                 // u = u_hi + u_lo: rows 3t and 3t+2 of u3, as the backward holds it
    for (size_t r = 0; r < bt; r++)
        for (int i = 0; i < D; i++) out[r * D + i] = u3[3 * r * D + i] + u3[(3 * r + 2) * D + i];
    free(u3);
    fwrite(out, sizeof(float), n, fo);
    for (int half = 0; half < 2; half++) {        // dqb, dkb: the halves of the (B,T,2D) gradient buffer
        float *all = (float *)mallocCheck(2 * n * sizeof(float));
        from_device(all, g.dqkb, 2 * n);
        for (size_t r = 0; r < bt; r++) memcpy(out + r * D, all + r * 2 * D + half * D, D * sizeof(float));
        free(all);
        fwrite(out, sizeof(float), n, fo);
    }
    from_device(out, g.dgamma, bt);
    fwrite(out, sizeof(float), bt, fo);
    if (fclose(fo) != 0) fatal("io: writing %s failed", out_path);
    free(out);
    grads_free(&g);
    free_problem(&p);
    printf("io: B=%d T=%d D=%d done, wrote %s\n", B, T, D, out_path);
    return 0;
}

int main(int argc, char **argv) {
    if (getenv("FB_S")) fb_superblock_rows = atoi(getenv("FB_S"));   // tune version 2's superblock (as SESSA_FB_S)
    if (argc >= 2 && strcmp(argv[1], "io") == 0) {
        if (argc != 4) fatal("usage: %s io IN OUT", argv[0]);
        cudaCheck(cudaSetDevice(0));
        matmul_init();
        return io_mode(argv[2], argv[3]);
    }
    DevArgs a = parse_dev_args(argc, argv, 3);
    cudaCheck(cudaSetDevice(0));
    matmul_init();
    if (a.check) {
        // T = 201 and 700: one and three superblocks of 256 (and dZ chunks of version 1), 700 also past one split-K
        // slice of version 1; T odd; D = 72, 160, 40 not multiples of the 32-column solve tile;
        // T = 1; T = 300 with D = 40: a partial second superblock not a multiple of 32 rows
        int ok = check(2, 201, 72, a.version) & check(1, 700, 160, a.version) & check(2, 1, 64, a.version) &
                 check(2, 300, 40, a.version);
        if (a.version == 0 || a.version == 2)     // the inverses' places alike: 8 blocks of 32, then 44 rows (2 blocks)
            ok &= check_inverse_modes(1, 300, 40);
        if (a.version == 0 || a.version == 2)     // the gate folded in: one superblock; three; D = 38 (4-byte paths)
            ok &= check_gate(2, 201, 72) & check_gate(1, 700, 160) & check_gate(2, 300, 38);
        if (a.version == 0 || a.version == 2)     // the forward's kept slab: T = S = 256 (bitwise); a partial superblock
            ok &= check_keep(2, 256, 72) & check_keep(2, 201, 40);   // of 201 rows (PcT's zeros past it), D = 40
        if (a.version == 0 || a.version == 2) ok &= check_scratch_covers();
        if (a.version == 0 || a.version == 2)     // the slab bit for bit as session 6's: a partial superblock of 44
            ok &= check_slab_bitwise(2, 300, 38) & check_slab_with(256, 1, 4200, 8);   // rows; 17 superblocks
        if (a.version == 0 || a.version == 2) {   // version 2 with 64-row superblocks: many of them, partial last ones;
            int keep = fb_superblock_rows;         // D = 38: not a multiple of 4 (the row passes' scalar paths)
            fb_superblock_rows = 64;
            printf("version 2 with superblocks of 64 rows\n");
            ok &= check(2, 201, 72, 2) & check(1, 300, 40, 2) & check(1, 150, 38, 2);
            ok &= check(1, 1500, 64, 2);   // 24 superblocks: the side streams cycle the buffer sets 8 times (on a GPU,
                                           // with real concurrency: the second run's bits catch a missing event)
            fb_schedule_toggle();   // the other lookahead, buffers and dqb-stream settings (llmc/feedback.cuh)
            printf("version 2 with superblocks of 64 rows, SESSA_FB_LOOKAHEAD=%d SESSA_FB_BUFFERS=%d SESSA_FB_DQ_SIDE=%d\n",
                   fb_lookahead(), fb_nbuf(), fb_dq_side());
            ok &= check(2, 201, 72, 2) & check(1, 1500, 64, 2);
            fb_schedule_toggle();
            ok &= check_inverse_modes(2, 300, 40);   // 64-row superblocks: 2 blocks each
            ok &= check_slab_bitwise(2, 201, 8) & check_slab_bitwise(1, 1500, 8);
            // superblocks of 512 rows (the 16-warp solve, slab CTAs of 2 rows, dZ CTAs of 8): two of them (D = 38:
            // the 4-byte loads and stores, the inverses in every CTA); three, the last of 76 rows (not a multiple of
            // 32); four; B = 1 and 2; the inverses' places and column widths alike
            fb_superblock_rows = 512;
            printf("version 2 with superblocks of 512 rows\n");
            ok &= check(1, 1024, 38, 2) & check(2, 1100, 40, 2) & check(1, 2048, 40, 2);
            ok &= check_inverse_modes(1, 1100, 40);
            fb_superblock_rows = keep;
        }
        printf(ok ? "feedback_backward: all checks passed\n" : "feedback_backward: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    // B*T = 8192 tokens, D = 768 (B=8 T=1024 and B=2 T=4096 among them); FB_BENCH_SMALL=1: B*T = 256, D = 64, T
    // 64 .. 256 (a smoke test of the bench itself, e.g. under the CPU emulator)
    // FB_BENCH_LONG=1: only the long sequences at small batch, where fb_superblock picks 512 rows (B <= 4,
    // T >= 2048: B=1 T=8192, B=2 T=4096, B=1 T=4096, B=4 T=4096, B=4 T=2048, B=1 T=2048), and past its rule's
    // bounds (B=8 T=2048, B=8 T=1024: 256); scripts/gpu_session.sh fbbench runs them with SESSA_FB_S=256 and 512
    if (getenv("FB_BENCH_LONG")) {
        const int shapes[8][2] = {{1, 8192}, {2, 4096}, {1, 4096}, {4, 4096}, {4, 2048}, {1, 2048}, {8, 2048}, {8, 1024}};
        for (int i = 0; i < 8; i++) bench(shapes[i][0], shapes[i][1], 768, a.version);
        return 0;
    }
    int small = getenv("FB_BENCH_SMALL") != NULL, tokens = small ? 256 : 8192;
    for (int T = small ? 64 : 256; T <= tokens; T *= 2) bench(tokens / T, T, small ? 64 : 768, a.version);
    if (a.version == 0)                    // the elementwise side kernels alone, at d12's B=8 T=1024 and at B=1 T=8192
        for (int T = small ? 64 : 1024; T <= tokens; T *= 8) bench_side(tokens / T, T, small ? 64 : 768);
    return 0;
}
