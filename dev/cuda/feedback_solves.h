/*
 The two in-superblock solve kernels of llmc/feedback.cuh alone (fb_fwd_solve, fb_bwd_solve), on the inputs of one
 superblock of S = fb_superblock(B, T) rows at the shapes of a training step: feedback_forward.cu's bench_solves times
 them, feedback_phases.cu reads their phase clocks (FB_PHASES). Included after llmc/feedback.cuh and common.h.
 Also inverse_modes_agree, the check (feedback_forward.cu, feedback_backward.cu) that the four places of the
 diagonal blocks' inverses (fb_inverse_mode) give the same bits.
 Inputs: Pd (B,S,S) alpha-like (strictly lower, entries in [0, 2/S): row sums < 1), PcT = Pd^T per batch element,
 acc (B,S,D), f (bf16) and gs (B,T,D) in [-1, 1], gamma (B,T) in [0.9, 0.999] (the chain gain near 1).
*/
typedef struct {
    int B, T, D, S;
    float *Pd, *PcT, *acc, *gs, *gamma;       // device inputs
    floatX *f;
    float *Minv, *Ls;                         // device scratch: the diagonal blocks' inverses (B, S/32, 32, 32),
                                              // the panels split (B, S, S; SESSA_FB_INV=3)
    float *s, *c;                             // device outputs (forward: s, c, x3 = s3;
    floatX *x3, *df;                          //                 backward: x3 = u3, df; x3 (B, 3T, D))
} SolveBufs;

static SolveBufs solve_bufs_make(int B, int T, int D) {
    SolveBufs p = {B, T, D, fb_superblock(B, T)};
    int S = p.S;
    size_t BSS = (size_t)B * S * S, BSD = (size_t)B * S * D, BTD = (size_t)B * T * D;
    float *Pd = make_random_float(BSS, 0.0f, 2.0f / S), *PcT = (float *)mallocCheck(BSS * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int r = 0; r < S; r++)
            for (int j = 0; j < S; j++) {
                float *x = &Pd[((size_t)b * S + r) * S + j];
                if (j >= r) *x = 0.0f;
                PcT[((size_t)b * S + j) * S + r] = *x;
            }
    float *acc = make_random_float(BSD, -1.0f, 1.0f), *f = make_random_float(BTD, -1.0f, 1.0f);
    float *g = make_random_float((size_t)B * T, 0.9f, 0.999f);
    p.Pd = to_device_f32(Pd, BSS); p.PcT = to_device_f32(PcT, BSS); p.acc = to_device_f32(acc, BSD);
    p.gs = to_device_f32(f, BTD); p.gamma = to_device_f32(g, (size_t)B * T); p.f = to_device_bf16(f, BTD);
    cudaMallocCheck(&p.s, BTD * sizeof(float)); cudaMallocCheck(&p.c, BTD * sizeof(float));
    cudaMallocCheck(&p.x3, 3 * BTD * sizeof(floatX));
    cudaMallocCheck(&p.df, BTD * sizeof(floatX)); cudaMallocCheck(&p.Minv, (size_t)B * S * FB_R * sizeof(float));
    cudaMallocCheck(&p.Ls, BSS * sizeof(float));
    free(Pd); free(PcT); free(acc); free(f); free(g);
    return p;
}
static void solve_bufs_free(SolveBufs *p) {
    cudaCheck(cudaFree(p->Pd)); cudaCheck(cudaFree(p->PcT)); cudaCheck(cudaFree(p->acc)); cudaCheck(cudaFree(p->gs));
    cudaCheck(cudaFree(p->gamma)); cudaCheck(cudaFree(p->f)); cudaCheck(cudaFree(p->s)); cudaCheck(cudaFree(p->c));
    cudaCheck(cudaFree(p->x3)); cudaCheck(cudaFree(p->df)); cudaCheck(cudaFree(p->Minv)); cudaCheck(cudaFree(p->Ls));
}
// one call of a solve: with has_acc the superblock has earlier ones (forward: the last superblock, u0 = T - S;
// backward: the first, u0 = 0), without it is the first one the chain meets (forward u0 = 0, backward u0 = T - S).
// solve_only_*: what a layer runs on its chain (SESSA_FB_INV=1-2: fb_inverse_kernel and the solve; 3: the solve);
// solve_prep_*: with SESSA_FB_INV=3 the inverses and the split panels it reads (beside the chain in a layer);
// solve_call_*: both
static void solve_prep_fwd(SolveBufs *p, int has_acc) {
    if (fb_solve_inv_mode(fb_fwd_vec(p->s, p->c, p->x3, p->f, p->D)) == 3)
        fb_inverses<false>(p->Minv, p->Ls, p->Pd, p->gamma, has_acc ? p->T - p->S : 0, p->S, p->S, p->B, p->T, 0);
}
static void solve_only_fwd(SolveBufs *p, int has_acc) {
    fb_fwd_solve(p->s, p->c, p->x3, p->acc, has_acc, p->Pd, p->f, p->gamma, p->Minv, p->Ls, has_acc ? p->T - p->S : 0,
                 p->S, p->S, p->B, p->T, p->D, 0);
}
static void solve_call_fwd(SolveBufs *p, int has_acc) { solve_prep_fwd(p, has_acc); solve_only_fwd(p, has_acc); }
static void solve_prep_bwd(SolveBufs *p, int has_acc) {
    if (fb_solve_inv_mode(fb_bwd_vec(p->x3, p->df, p->gs, NULL, p->D)) == 3)
        fb_inverses<true>(p->Minv, p->Ls, p->PcT, NULL, has_acc ? 0 : p->T - p->S, p->S, p->S, p->B, p->T, 0);
}
static void solve_only_bwd(SolveBufs *p, int has_acc) {
    fb_bwd_solve(p->x3, p->df, p->acc, has_acc, p->PcT, p->gs, FbGateBwd{}, p->Minv, p->Ls, has_acc ? 0 : p->T - p->S,
                 p->S, p->S, p->B, p->T, p->D, 0);
}
static void solve_call_bwd(SolveBufs *p, int has_acc) { solve_prep_bwd(p, has_acc); solve_only_bwd(p, has_acc); }

// The diagonal blocks' inverses made in each of fb_inverse_mode's four places (in every solve CTA, with the C-layout
// loads of h and f; by fb_inverse_kernel, h and f staged in shared memory; the same with programmatic dependent
// launch; beside the chain, with the panels split there too), with 32 and with 16 columns a solve CTA
// (fb_cols_mode), are the same fp32 operations on the same inputs: run(ctx, out) makes one call and copies its
// outputs (bytes) to the host buffer out, and every other setting must give the bits of SESSA_FB_INV=0 at 32
// columns. The scratch is NaN-filled before each run: an inverse read before fb_inverse_kernel wrote it (a missing
// dependency) cannot pass for the previous run's.
static int inverse_modes_agree(void (*run)(void *ctx, void *out), void *ctx, size_t bytes, void *scratch,
                               size_t scratch_bytes, const char *what) {
    char *ref = (char *)mallocCheck(bytes), *got = (char *)mallocCheck(bytes);
    int keep = fb_inverse_mode, keep_cols = fb_cols_mode, ok = 1;
    for (int cols = 32; cols >= 16; cols -= 16)
        for (int m = 0; m <= 3; m++) {
            fb_inverse_mode = m;
            fb_cols_mode = cols;
            cudaCheck(cudaMemset(scratch, 0xff, scratch_bytes));
            int first = cols == 32 && m == 0;
            run(ctx, first ? ref : got);
            if (first) continue;
            int same = memcmp(ref, got, bytes) == 0;
            printf("  SESSA_FB_INV=%d SESSA_FB_COLS=%d: %s bitwise those of SESSA_FB_INV=0 SESSA_FB_COLS=32: %s\n", m, cols,
                   what, same ? "ok" : "FAIL");
            ok &= same;
        }
    int keep_fx = fb_fused_x_on;              // and the fused x (SESSA_FB_FUSEDX) off: the same bits
    fb_fused_x_on = 1 - fb_fused_x();
    for (int cols = 32; cols >= 16; cols -= 16) {
        fb_inverse_mode = 2;
        fb_cols_mode = cols;
        cudaCheck(cudaMemset(scratch, 0xff, scratch_bytes));
        run(ctx, got);
        int same = memcmp(ref, got, bytes) == 0;
        printf("  SESSA_FB_FUSEDX=%d SESSA_FB_COLS=%d: %s bitwise those of SESSA_FB_INV=0 SESSA_FB_COLS=32: %s\n",
               fb_fused_x_on, cols, what, same ? "ok" : "FAIL");
        ok &= same;
    }
    fb_fused_x_on = keep_fx;
    fb_inverse_mode = keep;
    fb_cols_mode = keep_cols;
    free(ref); free(got);
    return ok;
}
