/*
 Feedback solve, forward: s = (I - diag(gamma) alpha)^{-1} f  (DESIGN.md §1), strictly causal softmax over width D.
   version 1: the former llmc/feedback.cuh (feedback_v1.cu): lse pass + 64-row blocked substitution, wmma tiles
   version 2: llmc/feedback.cuh feedback_forward: 256-row superblocks, cuBLASLt bf16 hi/lo GEMMs + in-superblock solve
   version 3: dense cuBLAS baseline: (B,T,T) matrix A by GEMM + softmax, then cublasStrsmBatched
 (the forward + backward comparison with the dense form, time and memory, is feedback_backward.cu's bench)
 make -C dev/cuda && dev/cuda/bin/feedback_forward check    (or bench; an optional version number picks one)
 FB_S=128 dev/cuda/bin/feedback_forward bench 2: version 2 with superblocks of 128 rows (a multiple of 32, <= 512;
 unset: llmc/feedback.cuh's fb_superblock, 512 at B <= 4 and T >= 2048, else 256)
 bench (version 0 or 2) also times version 2's two in-superblock solve kernels alone, per call (bench_solves)
*/
#include "feedback_trsm_baseline.cu"
#include "feedback_solves.h"          // bench_solves: the solve kernels alone

typedef struct {
    int B, T, D, ld;
    float *f, *qkb, *gamma;            // host: f (B,T,D), [qb | kb] (B,T,2D) (bf16-exact values), gamma (B,T)
    floatX *d_f, *d_qkb;               // device bf16 copies; qb = d_qkb, kb = d_qkb + D, row stride ld = 2D
    float *d_gamma;
} Problem;

static Problem make_problem(int B, int T, int D) {
    Problem p = {B, T, D, 2 * D};
    p.f = make_random_float((size_t)B * T * D, -1.0f, 1.0f);
    p.qkb = make_random_float((size_t)B * T * 2 * D, -1.0f, 1.0f);
    p.gamma = make_random_float((size_t)B * T, 0.9f, 0.999f);   // near gamma_max = 0.999: the chain gain is ~1
    round_to_bf16(p.f, (size_t)B * T * D);
    round_to_bf16(p.qkb, (size_t)B * T * 2 * D);
    p.d_f = to_device_bf16(p.f, (size_t)B * T * D);
    p.d_qkb = to_device_bf16(p.qkb, (size_t)B * T * 2 * D);
    p.d_gamma = to_device_f32(p.gamma, (size_t)B * T);
    return p;
}
static void free_problem(Problem *p) {
    free(p->f); free(p->qkb); free(p->gamma);
    cudaCheck(cudaFree(p->d_f)); cudaCheck(cudaFree(p->d_qkb)); cudaCheck(cudaFree(p->d_gamma));
}

// version 1 and 2 buffers (k.v: which version)
typedef struct { float *s, *c, *lse, *scratch; int v; } Blocked;
static size_t version_scratch_bytes(int v, int B, int T, int D) {
    return v == 1 ? feedback1_scratch_bytes(B, T, D) : feedback_scratch_bytes(B, T, D);
}
static Blocked blocked_alloc(const Problem *p, int v) {
    Blocked k;
    k.v = v;
    size_t n = (size_t)p->B * p->T * p->D;
    cudaMallocCheck(&k.s, n * sizeof(float));
    cudaMallocCheck(&k.c, n * sizeof(float));
    cudaMallocCheck(&k.lse, (size_t)p->B * p->T * sizeof(float));
    cudaMallocCheck(&k.scratch, version_scratch_bytes(v, p->B, p->T, p->D));
    return k;
}
static void blocked_free(Blocked *k) {
    cudaCheck(cudaFree(k->s)); cudaCheck(cudaFree(k->c)); cudaCheck(cudaFree(k->lse)); cudaCheck(cudaFree(k->scratch));
}
static void run_blocked(const Problem *p, Blocked *k) {
    if (k->v == 1)
        feedback1_forward(k->s, k->c, k->lse, p->d_f, p->d_qkb, p->d_qkb + p->D, p->ld, p->d_gamma, p->B, p->T, p->D,
                          k->scratch, 0);
    else
        feedback_forward(k->s, k->c, k->lse, p->d_f, p->d_qkb, p->d_qkb + p->D, p->ld, p->d_gamma, p->B, p->T, p->D,
                         k->scratch, 0);
}
// memory beyond the inputs and s: c, lse and the scratch (of forward and backward: the trainer holds one)
static size_t blocked_bytes(const Problem *p, int v) {
    return (size_t)p->B * p->T * (p->D + 1) * sizeof(float) + version_scratch_bytes(v, p->B, p->T, p->D);
}

// version 3: X holds f (fp32) on entry, s on exit
static void run_dense(const Problem *p, DenseBaseline *db, float *X, const float *d_f32) {
    cudaCheck(cudaMemcpyAsync(X, d_f32, (size_t)p->B * p->T * p->D * sizeof(float), cudaMemcpyDeviceToDevice));
    dense_baseline_build_A(db, p->d_qkb, p->d_qkb + p->D, p->ld, p->d_gamma);
    dense_baseline_solve(db, 0);
}

// the gate applied per superblock inside the call (FbGate, the trainer's way) against gate_forward on the call's s,
// bit for bit (the same kernel on the same rows); gt = the kb half of qkb (random bf16, rows ld apart), the output
// filled with NaN bytes first so that a row left unwritten fails
static int check_gate(const Problem *p, Blocked *k) {
    size_t n = (size_t)p->B * p->T * p->D;
    floatX *g1, *g2;
    cudaMallocCheck(&g1, n * sizeof(floatX));
    cudaMallocCheck(&g2, n * sizeof(floatX));
    cudaCheck(cudaMemset(g1, 0xff, n * sizeof(floatX)));
    const floatX *gt = p->d_qkb + p->D;
    FbGate gate = {g1, gt, p->ld};
    feedback_forward(k->s, k->c, k->lse, p->d_f, p->d_qkb, p->d_qkb + p->D, p->ld, p->d_gamma, p->B, p->T, p->D,
                     k->scratch, 0, FB_ALL, &gate);
    gate_forward(g2, k->s, gt, p->ld, p->B * p->T, p->D, 0);
    cudaCheck(cudaDeviceSynchronize());
    uint16_t *h1 = (uint16_t *)mallocCheck(n * 2), *h2 = (uint16_t *)mallocCheck(n * 2);
    cudaCheck(cudaMemcpy(h1, g1, n * 2, cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(h2, g2, n * 2, cudaMemcpyDeviceToHost));
    int same = memcmp(h1, h2, n * 2) == 0;
    printf("  %-8s the gate per superblock bitwise gate_forward's: %s\n", "gated", same ? "ok" : "FAIL");
    free(h1); free(h2);
    cudaCheck(cudaFree(g1)); cudaCheck(cudaFree(g2));
    return same;
}

static int check(int B, int T, int D, int version) {
    printf("check B=%d T=%d D=%d\n", B, T, D);
    Problem p = make_problem(B, T, D);
    size_t n = (size_t)B * T * D;
    float *s_ref = (float *)mallocCheck(n * sizeof(float)), *c_ref = (float *)mallocCheck(n * sizeof(float));
    float *lse_ref = (float *)mallocCheck((size_t)B * T * sizeof(float));
    feedback_forward_cpu(s_ref, c_ref, lse_ref, p.f, p.qkb, p.qkb + D, p.ld, p.gamma, B, T, D);
    // GPU vs CPU double on the same bf16 inputs. The GPU sums in fp32 (logits: exact bf16 products; the chain's
    // GEMMs in 3xTF32, fp32-grade) and uses expf: the errors are ~1e-6 of max|s| (seen on the CPU emulation of
    // these kernels). atol 2e-5 of max|ref| (+ rtol 1e-4) keeps a 20x margin, yet fails a plain-TF32 chain
    // (~6e-5) and, by far, a wrong mask, block boundary or stride (~1e-1).
    float as = 2e-5f * max_abs(s_ref, n), ac = 2e-5f * max_abs(c_ref, n), rtol = 1e-4f;
    int ok = 1;
    for (int v = 1; v <= 2; v++) {
        if (version != 0 && version != v) continue;
        printf(v == 1 ? " version 1 (64-row blocks)\n" : " version 2 (superblocks, cuBLASLt hi/lo GEMMs)\n");
        Blocked k = blocked_alloc(&p, v);
        run_blocked(&p, &k);
        cudaCheck(cudaDeviceSynchronize());
        ok &= validate_result(k.s, s_ref, "s", B * T, D, D, as, rtol);
        ok &= validate_result(k.c, c_ref, "c", B * T, D, D, ac, rtol);
        ok &= validate_result(k.lse, lse_ref, "lse", B, T, T, 1e-4f, 1e-4f);   // fp32, magnitude ~log T
        // determinism: a second run gives the same bits
        float *s1 = (float *)mallocCheck(n * sizeof(float)), *s2 = (float *)mallocCheck(n * sizeof(float));
        from_device(s1, k.s, n);
        run_blocked(&p, &k);
        from_device(s2, k.s, n);
        int same = memcmp(s1, s2, n * sizeof(float)) == 0;
        printf("  %-8s second run bitwise identical: %s\n", "s", same ? "ok" : "FAIL");
        ok &= same;
        free(s1); free(s2);
        if (v == 2) ok &= check_gate(&p, &k);
        blocked_free(&k);
    }
    if (version == 0 || version == 3) {
        printf(" version 3 (dense cuBLAS trsm)\n");
        float *X, *d_f32 = to_device_f32(p.f, n);
        cudaMallocCheck(&X, n * sizeof(float));
        DenseBaseline db = dense_baseline_create(X, B, T, D);
        run_dense(&p, &db, X, d_f32);
        cudaCheck(cudaDeviceSynchronize());
        ok &= validate_result(X, s_ref, "s", B * T, D, D, as, rtol);
        dense_baseline_destroy(&db);
        cudaCheck(cudaFree(X)); cudaCheck(cudaFree(d_f32));
    }
    free(s_ref); free(c_ref); free(lse_ref);
    free_problem(&p);
    return ok;
}

// version 2 with the inverses in each of fb_inverse_mode's four places and 32 or 16 columns a solve CTA
// (inverse_modes_agree): s, c bitwise alike
typedef struct { const Problem *p; Blocked *k; } VariantRun;
static void variant_run(void *ctx, void *out) {
    VariantRun *r = (VariantRun *)ctx;
    size_t n = (size_t)r->p->B * r->p->T * r->p->D;
    cudaCheck(cudaMemset(r->k->s, 0xff, n * sizeof(float)));   // NaN: an output left unwritten cannot pass for
    cudaCheck(cudaMemset(r->k->c, 0xff, n * sizeof(float)));   // the previous run's
    run_blocked(r->p, r->k);
    from_device((float *)out, r->k->s, n);
    from_device((float *)out + n, r->k->c, n);
}
static int check_inverse_modes(int B, int T, int D) {
    printf("check B=%d T=%d D=%d S=%d: the inverses' four places, 32 and 16 columns a solve CTA\n", B, T, D, fb_superblock(B, T));
    Problem p = make_problem(B, T, D);
    Blocked k = blocked_alloc(&p, 2);
    VariantRun r = {&p, &k};
    int ok = inverse_modes_agree(variant_run, &r, 2 * (size_t)B * T * D * sizeof(float), k.scratch,
                                 version_scratch_bytes(2, B, T, D), "s, c");
    blocked_free(&k);
    free_problem(&p);
    return ok;
}

static void bench(int B, int T, int D, int version) {
    Problem p = make_problem(B, T, D);
    size_t n = (size_t)B * T * D;
    float ms[3] = {0.0f, 0.0f, 0.0f}, ms2 = 0.0f;
    double mib = 1.0 / (1 << 20);
    for (int v = 1; v <= 2; v++) {
        if (version != 0 && version != v) continue;
        Blocked k = blocked_alloc(&p, v);
        ms[v] = benchmark_kernel(10, run_blocked, &p, &k);
        printf("B=%d T=%d D=%d  version %d %-12s %9.3f ms  c + lse + scratch (fwd and bwd) %9.1f MiB\n", B, T, D, v,
               v == 1 ? "64-row" : "superblock", ms[v], blocked_bytes(&p, v) * mib);
        blocked_free(&k);
    }
    if (version == 0 || version == 3) {
        float *X, *d_f32 = to_device_f32(p.f, n);
        cudaMallocCheck(&X, n * sizeof(float));
        DenseBaseline db = dense_baseline_create(X, B, T, D);
        ms2 = benchmark_kernel(10, run_dense, &p, &db, X, d_f32);
        printf("B=%d T=%d D=%d  version 3 dense trsm   %9.3f ms  dense A                         %9.1f MiB\n", B, T, D, ms2,
               dense_baseline_bytes(&db) * mib);
        dense_baseline_destroy(&db);
        cudaCheck(cudaFree(X)); cudaCheck(cudaFree(d_f32));
    }
    if (version == 0) printf("B=%d T=%d D=%d  forward time: version 2 / dense %.3f, version 2 / version 1 %.3f\n", B, T, D,
                             ms[2] / ms2, ms[2] / ms[1]);
    free_problem(&p);
}

// the two in-superblock solve kernels alone (feedback_solves.h: the chain's part of a call, solve_only_*), one
// superblock of S rows with earlier superblocks (has_acc), the shapes of a training step, with 32 and with 16
// columns a CTA (SESSA_FB_COLS): per-call time, and the
// FMA rate it implies (per 32 columns: 32 x 32 x 32 FMAs per (block, later block) pair and per product with a diagonal
// block's inverse; plus the inverses themselves, 496 x 32 FMAs each, per CTA with SESSA_FB_INV=0, else once per
// sequence)
static void bench_solves(int B, int T, int D) {
    SolveBufs p = solve_bufs_make(B, T, D);
    int keep = fb_cols_mode;
    for (int cols = 32; cols >= 16; cols -= 16) {
        fb_cols_mode = cols;
        solve_call_fwd(&p, 1);                // the inverses (and split panels) a layer makes beside the chain
        float tf = benchmark_kernel(20, solve_only_fwd, &p, 1);
        solve_call_bwd(&p, 1);
        float tb = benchmark_kernel(20, solve_only_bwd, &p, 1);
        int S = p.S, nb = S / 32;
        double ctas = ceil_div(D, cols) * (double)B, c32 = ceil_div(D, 32) * (double)B, blk = 32.0 * 32 * 32;
        double inv = (fb_inverse_where(0) == 0 ? ctas * cols / 32 : B) * nb * 496.0 * 32;
        double ff = c32 * blk * (nb * (nb + 1) / 2 + nb) + inv, fbk = c32 * blk * (nb * (nb - 1) / 2 + nb) + inv;
        printf("B=%d T=%d D=%d  solve kernels alone (S=%d, %d CTAs of %d columns): fwd %8.1f us (%.2f TFMA/s)  bwd %8.1f us (%.2f TFMA/s)\n",
               B, T, D, S, (int)ctas, cols, tf * 1e3, ff / (tf * 1e-3) / 1e12, tb * 1e3, fbk / (tb * 1e-3) / 1e12);
    }
    fb_cols_mode = keep;
    solve_bufs_free(&p);
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 3);
    cudaCheck(cudaSetDevice(0));
    matmul_init();
    if (getenv("FB_S")) fb_superblock_rows = atoi(getenv("FB_S"));   // tune version 2's superblock (as SESSA_FB_S)
    if (a.check) {
        // T not a multiple of 64 and odd, T past 1024 (version 2: 5 superblocks, the last of 6 rows); D not a
        // multiple of the 128-column (version 1) or 32-column (version 2) solve tile; T = 1; T = 300: 2 superblocks,
        // the second partial and not a multiple of 32
        int ok = check(2, 201, 96, a.version) & check(1, 1030, 256, a.version) & check(3, 1, 64, a.version) &
                 check(2, 300, 40, a.version);
        if (a.version == 0 || a.version == 2)     // the inverses' places alike: 8 blocks of 32, then 44 rows (2 blocks)
            ok &= check_inverse_modes(1, 300, 40);
        if (a.version == 0 || a.version == 2) {   // version 2 with 64-row superblocks: many of them, partial last ones
            int keep = fb_superblock_rows;
            fb_superblock_rows = 64;
            printf("version 2 with superblocks of 64 rows\n");
            ok &= check(2, 201, 96, 2) & check(1, 300, 40, 2);
            fb_schedule_toggle();   // the other lookahead and buffers settings (llmc/feedback.cuh)
            printf("version 2 with superblocks of 64 rows, SESSA_FB_LOOKAHEAD=%d SESSA_FB_BUFFERS=%d\n", fb_lookahead(), fb_nbuf());
            ok &= check(2, 201, 96, 2);
            fb_schedule_toggle();
            ok &= check_inverse_modes(2, 300, 40);   // 64-row superblocks: 2 blocks each
            fb_superblock_rows = keep;
            // superblocks of 512 rows (the 16-warp solve): two of them (D = 38: the 4-byte loads and stores, the
            // inverses in every CTA); three, the last of 76 rows (not a multiple of 32); four; B = 1 and 2; the
            // inverses' places and column widths alike
            fb_superblock_rows = 512;
            printf("version 2 with superblocks of 512 rows\n");
            ok &= check(1, 1024, 38, 2) & check(2, 1100, 40, 2) & check(1, 2048, 40, 2);
            ok &= check_inverse_modes(1, 1100, 40);
            fb_superblock_rows = keep;
            printf("version 2, T = 4200: rows of up to 4200 keys, 1, 2, 4 and 8 warps a row in the row pass (B=1: "
                   "superblocks of %d rows, fb_superblock's choice)\n", fb_superblock(1, 4200));
            ok &= check(1, 4200, 32, 2);
        }
        printf(ok ? "feedback_forward: all checks passed\n" : "feedback_forward: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    if (getenv("FB_BENCH_SMALL")) { bench(2, 128, 64, a.version); bench_solves(2, 128, 64); return 0; }   // a smoke test of the bench itself
    bench(8, 1024, 768, a.version);
    bench(2, 4096, 768, a.version);
    if (a.version == 0 || a.version == 2) {
        bench_solves(8, 1024, 768);
        bench_solves(2, 4096, 768);
        bench_solves(1, 8192, 768);
    }
    return 0;
}
