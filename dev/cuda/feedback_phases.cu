/*
 Where the in-superblock solves of llmc/feedback.cuh spend their time: the kernels compiled with FB_PHASES record
 clock64() per CTA at the phase boundaries (fb_phase_clk, slots described above fb_solve), one call each of the
 forward and backward solve on feedback_solves.h's inputs, and this prints per phase the mean and max over CTAs,
 in SM cycles (clock64 counts the SM clock: ~1.98 GHz boost on an H200, so 1 us ~ 2k cycles).
 Phases per block iteration it (q = it forward, nb-1-it backward; "R start" = warp q past its own update of it-1,
 or the prologue's end for it = 0):
   rhs      warp q: rhs_q as A fragments into ra                                        (RHS - R start)
   bar1     warp q waits at barrier 1 (the other warps' work of it-1)                   (BAR1 - RHS)
   x        warp 0: its C tile of x_q (3-6 mmas), staged into xa and xs                 (X - BAR1)
   bar2     warp 0 waits at barrier 2 (the other warps' x tiles)                        (BAR2 - X)
   upd max  the slowest updating warp: its next-panel cp.async issue, 48 mmas           (max UPD - BAR2)
   upd q+1  the warp whose rhs comes next (the critical one): its update                (UPD[next q] - BAR2)
   c store  forward, warp q: c_q out                                                    (CEND - UPD[q])
   out max  the slowest other warp: update, c, its next-panel block split, x_q stores   (max OUT - BAR2)
   iter     barrier 1 to barrier 1                                                      (BAR1 - previous BAR1)
 With the fused x (llmc/feedback.cuh "Fused x": 16 columns and 16 warps, B=1 T=8192 here) there is no barrier 1:
 warp q makes x_q right after its rhs and records BAR1 and X then, so "bar1" is its x and "x" ~0.
 Doubt: with the former one-barrier schedule, the backward's warp 0 (which updates right after the barrier) read
 its "past the barrier" clock ~5k cycles before warp q's "phase A done" clock, which a barrier forbids (its outputs
 were right); the forward's (warp 0 idle there) read ~100 cycles after. So a clock read right after BAR.SYNC by a
 warp with work behind it may not mark the release: read bar1/bar2 and the updates of such rows with care.
 The clocks cost a few instructions and a store each (they change the schedule a little); the per-call time printed
 is measured with them. Under dev/cuda_emu the numbers are meaningless (a counter), the program must only run.
 SESSA_FB_INV (llmc/feedback.cuh, fb_inverse_where) picks where the diagonal blocks' inverses are made: 0, in each
 CTA, gives the prologue as tri + gamma loads, inverses (and the first panel's split), h and f loads; 1-3
 (fb_inverse_kernel, which also splits the panels, before the solve; by programmatic dependent launch in 2, the
 default; 3 beside the chain in a layer: here once before the timed calls) as the staged loads (gamma, acc, f or
 gs) landing, h and f read from shared memory, Minv and the first panel copied in (waiting for fb_inverse_kernel in
 2), h and f packed; the per-call time includes fb_inverse_kernel with 1-2 (on the chain there), not with 3.
 make -C dev/cuda bin/feedback_phases && dev/cuda/bin/feedback_phases           B=8 T=1024, B=32 T=256, B=1 T=8192, D=768
 (SESSA_FB_COLS=16 or 32: the columns a solve CTA; unset: automatic, llmc/feedback.cuh fb_solve_cols)
 dev/cuda/bin/feedback_phases small (or check)                                   B=2 T=128 D=64 (the emulator)
*/
#define FB_PHASES
#include "common.h"
#include "../../llmc/feedback.cuh"
#include "feedback_solves.h"

static long long ph_clk[FB_PH_CTAS * FB_PH_SLOTS];

// the clock of slot (it, k) of CTA i
static long long clk_it(int i, int it, int k) { return ph_clk[(size_t)i * FB_PH_SLOTS + FB_PH_PRO + it * FB_PH_IT + k]; }
static long long clk_pro(int i, int k) { return ph_clk[(size_t)i * FB_PH_SLOTS + k]; }

#define NPH 9                                 // phases per block iteration (names[] in phases())
typedef struct { double sum, max; } Stat;
static void stat_add(Stat *s, double v) { s->sum += v; if (v > s->max) s->max = v; }
static void stat_print(const char *name, const Stat *s, int n) { printf("  %-30s %10.0f %10.0f\n", name, s->sum / n, s->max); }

static void phases(SolveBufs *p, int bwd, int has_acc) {
    int B = p->B, T = p->T, D = p->D, nb = p->S / FB_R, cols = fb_solve_cols(B, D, p->S), ncta = ceil_div(D, cols) * B;
    if (ncta > FB_PH_CTAS) fatal("feedback_phases: %d CTAs, the clocks hold %d", ncta, FB_PH_CTAS);
    if (bwd) solve_call_bwd(p, has_acc); else solve_call_fwd(p, has_acc);   // warm-up, the inverses (SESSA_FB_INV=3)
    float ms = bwd ? benchmark_kernel(20, solve_only_bwd, p, has_acc) : benchmark_kernel(20, solve_only_fwd, p, has_acc);
    memset(ph_clk, 0, sizeof ph_clk);
    cudaCheck(cudaMemcpyToSymbol(fb_phase_clk, ph_clk, sizeof ph_clk));
    if (bwd) solve_only_bwd(p, has_acc); else solve_only_fwd(p, has_acc);
    cudaCheck(cudaDeviceSynchronize());
    cudaCheck(cudaMemcpyFromSymbol(ph_clk, fb_phase_clk, sizeof ph_clk));
    int nw = fb_solve_warps(p->S);            // the solve's warps (slots of warps >= nw: none)
    for (int i = 0; i < ncta; i++)            // every slot of the prologue and of the nb iterations is written once
        for (int k = 0; k < FB_PH_PRO + nb * FB_PH_IT; k++) {
            int j = (k - FB_PH_PRO) % FB_PH_IT;   // (a slot of an iteration)
            bool none = k >= FB_PH_PRO && ((j >= FB_PH_UPD + nw && j < FB_PH_UPD + FB_NB) || j >= FB_PH_OUT + nw);
            if (!none && ph_clk[(size_t)i * FB_PH_SLOTS + k] == 0) fatal("feedback_phases: CTA %d slot %d not written", i, k);
        }
    printf("%s solve B=%d T=%d D=%d S=%d has_acc=%d SESSA_FB_INV=%d: %d CTAs of %d columns, %.1f us per call (with the clocks)\n",
           bwd ? "backward" : "forward", B, T, D, p->S, has_acc, fb_inverse_where(0), ncta, cols, ms * 1e3);
    printf("  %-30s %10s %10s   (SM cycles over CTAs)\n", "phase", "mean", "max");
    Stat tri = {0, 0}, inv = {0, 0}, hf = {0, 0}, total = {0, 0};
    Stat sum[NPH - 1] = {{0, 0}};             // the phases but iter, summed over the iterations
    Stat per[FB_NB][NPH] = {{{0, 0}}};        // every phase per iteration
    for (int i = 0; i < ncta; i++) {
        stat_add(&tri, clk_pro(i, FB_PH_TRI) - clk_pro(i, FB_PH_START));
        stat_add(&inv, clk_pro(i, FB_PH_INV) - clk_pro(i, FB_PH_TRI));
        stat_add(&hf, clk_pro(i, FB_PH_HF) - clk_pro(i, FB_PH_INV));
        double sk[NPH - 1] = {0};
        long long end = 0;
        for (int it = 0; it < nb; it++) {
            int q = bwd ? nb - 1 - it : it, qn = bwd ? q - 1 : q + 1;
            long long r0 = it == 0 ? clk_pro(i, FB_PH_HF) : clk_it(i, it - 1, FB_PH_UPD + q);
            long long bar2 = clk_it(i, it, FB_PH_BAR2), updmax = bar2, outmax = bar2, outall = bar2;
            for (int w = 0; w < nb; w++)
                if (bwd ? w < q : w >= q) { long long u = clk_it(i, it, FB_PH_UPD + w); if (u > updmax) updmax = u; }
            for (int w = 0; w < nw; w++) {
                long long o = clk_it(i, it, FB_PH_OUT + w);
                if (o > outall) outall = o;
                if (w != qn && o > outmax) outmax = o;
            }
            double v[NPH] = {(double)(clk_it(i, it, FB_PH_RHS) - r0), (double)(clk_it(i, it, FB_PH_BAR1) - clk_it(i, it, FB_PH_RHS)),
                             (double)(clk_it(i, it, FB_PH_X) - clk_it(i, it, FB_PH_BAR1)), (double)(bar2 - clk_it(i, it, FB_PH_X)),
                             (double)(updmax - bar2),
                             qn >= 0 && qn < nb ? (double)(clk_it(i, it, FB_PH_UPD + qn) - bar2) : 0.0,
                             bwd ? 0.0 : (double)(clk_it(i, it, FB_PH_CEND) - clk_it(i, it, FB_PH_UPD + q)),
                             (double)(outmax - bar2),
                             (double)(clk_it(i, it, FB_PH_BAR1) - (it == 0 ? clk_pro(i, FB_PH_HF) : clk_it(i, it - 1, FB_PH_BAR1)))};
            for (int k = 0; k < NPH; k++) { stat_add(&per[it][k], v[k]); if (k < NPH - 1) sk[k] += v[k]; }
            long long e = outall;
            if (e > end) end = e;
        }
        for (int k = 0; k < NPH - 1; k++) stat_add(&sum[k], sk[k]);
        stat_add(&total, end - clk_pro(i, FB_PH_START));
    }
    const char *names[NPH] = {"rhs", "bar1", "x", "bar2", "upd max", "upd q+1", "c store", "out max", "iter"};
    int own = fb_inverse_where(0) == 0;          // the CTA inverts the diagonal blocks itself (else it copies Minv in)
    stat_print(own ? "prologue: tri + gamma loads" : "prologue: acc, f/gs in", &tri, ncta);
    stat_print(own ? "prologue: inverses, splits" : "prologue: h f, Minv, panel in", &inv, ncta);
    stat_print(own ? "prologue: h, f loads" : "prologue: h, f packed", &hf, ncta);
    for (int k = 0; k < NPH - 1; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s (sum over %d blocks)", names[k], nb);
        stat_print(name, &sum[k], ncta);
    }
    stat_print("total (CTA start to its end)", &total, ncta);
    printf("  per block iteration, mean over CTAs:\n  %4s", "it");
    for (int k = 0; k < NPH; k++) printf(" %9s", names[k]);
    printf("\n");
    for (int it = 0; it < nb; it++) {
        printf("  %4d", it);
        for (int k = 0; k < NPH; k++) printf(" %9.0f", per[it][k].sum / ncta);
        printf("\n");
    }
}

static void phases_all(int B, int T, int D) {
    SolveBufs p = solve_bufs_make(B, T, D);
    for (int bwd = 0; bwd < 2; bwd++)
        for (int has_acc = 0; has_acc < 2; has_acc++) phases(&p, bwd, has_acc);
    solve_bufs_free(&p);
}

int main(int argc, char **argv) {
    // small (or check, as dev/cuda's checker calls every kernel binary): the emulator's shape, every slot written
    int small = argc == 2 && (strcmp(argv[1], "small") == 0 || strcmp(argv[1], "check") == 0);
    if (argc > 2 || (argc == 2 && !small)) fatal("usage: %s [small | check]", argv[0]);
    cudaCheck(cudaSetDevice(0));
    if (small) { phases_all(2, 128, 64); return 0; }
    phases_all(8, 1024, 768);
    phases_all(32, 256, 768);
    phases_all(1, 8192, 768);                 // 24 or 48 CTAs (SESSA_FB_COLS), one per SM: the chain's latency
                                              // (S = 512 there: 16 warps a CTA, 16 blocks; SESSA_FB_S=256: 8)
    return 0;
}
