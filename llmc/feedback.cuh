/*
 The Sessa feedback branch on the GPU (DESIGN.md §1-§3): a strictly causal single-head softmax over the full
 width D placed inside a recurrent path, i.e. the unit-lower-triangular solve (I - diag(gamma) alpha) s = f.
 Memory is O(B*T*D): alpha is never stored whole; it is produced S rows (forward) or S columns (backward) at a
 time, S = 256 or 512 (a "superblock", fb_superblock), and the heavy work is a few large strided-batched bf16 cuBLASLt GEMMs
 (sm90 tensor cores, fp32 accumulation, deterministic) per superblock.

 API (row-major, token-major; qb, kb, dqb, dkb are rows of width D with row stride ld, so they can be the
 two halves of one (B,T,2D) buffer: qb[(b*T+t)*ld + i]):

   void feedback_forward(float *s, float *c, float *lse, const floatX *f, const floatX *qb, const floatX *kb,
                         int ld, const float *gamma, int B, int T, int D, float *scratch, cudaStream_t stream);
       in:  f (B,T,D), qb/kb (B,T,D) strided, gamma (B,T) = gamma_max*tanh(r) already
       out: s (B,T,D)   s_t = f_t + gamma_t c_t
            c (B,T,D)   c_t = sum_{j<t} alpha[t,j] s_j   (the feedback context; the backward's dgamma = u.c)
            lse (B,T)   log sum_{j<t} exp(Z[t,j]), Z = qb kb^T / sqrt(D); -inf for the empty row t = 0

   void feedback_backward(floatX *df, float *dgamma, floatX *dqb, floatX *dkb, int ld, const float *gs,
                          const float *s, const float *c, const float *lse, const floatX *qb, const floatX *kb,
                          const float *gamma, int B, int T, int D, float *scratch, cudaStream_t stream);
       in:  gs = dL/ds (B,T,D) and the forward's s, c, lse, qb, kb, gamma
       out: df = u = dL/df (B,T,D), dgamma (B,T), dqb/dkb (B,T,D) strided by ld (overwritten, not accumulated)

   size_t feedback_scratch_bytes(int B, int T, int D);   // device scratch for either call (nothing kept between)
   Both take an optional argument parts (FB_ALL: the whole call), to issue a call in parts with the caller's work in
   between ("Parts", above feedback_forward), and then the layer's gate (optional, NULL: none): the forward's
   FbGate {out, gt, ld} makes out = s * gt superblock by superblock beside the chain; the backward's FbGateBwd
   {dgated, gt, dgt, ld} (with gs NULL) stands for gs = dgated * gt, formed where the solve reads it, and writes the
   gate's dgt = dgated * s (both: the bits of gate.cuh's kernels).
   The GEMMs use the cuBLASLt handle and workspace of matmul.cuh: matmul_init() must have run.

 Algorithm. Superblocks U = [u0, u1), u1 = min(u0 + S, T), Sv = u1 - u0 rows; every GEMM is batched over B. Only
 the chain (steps forward 3-4, backward 2-3) goes superblock after superblock; the other steps run beside it on two
 side streams ("Overlap", above feedback_forward).
   forward, U in order (4 launches per superblock):
     1. Z    = qb[U] kb[0:u1]^T / sqrt(D)                          (Sv, u1) fp32          1 GEMM
     2. rows: lse_t = log sum_{j<t} exp Z[t,j];  P = exp(Z - lse) masked to j < t, stored as bf16 hi/lo parts
        (P3, Y3 layout), and the diagonal block A_UU = P[:, u0:u1] in fp32   1 kernel (1-8 warps per row)
     3. acc  = P[:, 0:u0] s[0:u0]                                  (Sv, D) fp32-grade     1 GEMM (K = 3 u0)
        (or 2: its far part beside the previous superblock's chain, its near part on the chain: "Lookahead")
     4. in-superblock solve (CTA = (32 columns, b), S/32 warps; "in-superblock solves" below): the inverses of the
        S/32 diagonal 32x32 blocks of (I - G A_UU) first, once per sequence (fb_inverse_kernel, a warp each: 1 more
        launch; the solve, launched programmatically dependent on it, copies them in), then per 32-row
        block q in order: s_q = Minv_q (f_q + G_q h_q) (a 32x32 product), and right-looking h_p += A_pq s_q for all
        blocks p >= q (warp p; tensor-core hi/lo products, fp32 accumulators in registers, A's panel
        double-buffered in shared memory by cp.async); h starts at acc, so c_U = acc + A_UU s_U = h;  writes s, c
        and s's bf16 halves (s3, X3 layout) the next superblocks read.
   backward, key superblocks U from last to first (u = dL/df solves u = gs + (G alpha)^T u), 9 launches each:
     1. slab Zs = qb[u0:T] kb[U]^T / sqrt(D)                       (T-u0, Sv)             1 GEMM
        Pc = gamma_t exp(Zs - lse_t) for j < t, as bf16 hi/lo parts (Pc3, Y3 layout), and the diagonal block
        (t, j in U) in fp32, transposed, for the in-superblock solve                      1 kernel
     2. acc  = Pc[u1:T]^T u[u1:T]                                  (Sv, D) fp32-grade     1 GEMM (K = 3 (T-u1))
        (or 2, far and near part, as the forward)
     3. transposed in-superblock solve (the forward's schedule, blocks from last to first, L = PcT, G = I, h
        starting at gs + acc): u_U, stored as bf16 halves (u3, X3 layout), df
     4. dgamma_t = u_t . c_t for t in U (every u_t, t >= u0, is known now), and s[U] split (sU3, Y3)   1 kernel
     5. US = u[u0:T] s[U]^T (fp32-grade, 1 GEMM of K = 3D);
        dZ = Pc (US - dgamma_t), rounded to bf16 (as FlashAttention-2 rounds dS)         1 kernel
     6. dkb[U]     = dZ^T qb[u0:T] / sqrt(D): complete for these keys, written once as bf16   1 GEMM
     7. dqb[u0:T] += dZ kb[U] / sqrt(D) into an fp32 accumulator, superblocks in a fixed order  1 GEMM
   then dqb -> bf16 strided (with one superblock, T <= S, step 7 writes dqb as bf16 at once). The slab's Pc
   serves the chain and dZ, so the logits are computed once in the backward.

 fp32-grade products from bf16 GEMMs: X = X_hi + X_lo with X_hi = bf16(X), X_lo = bf16(X - X_hi) (X_hi + X_lo
 holds X to ~2^-17 relative); X Y ~ X_hi Y_hi + X_lo Y_hi + X_hi Y_lo, the three products concatenated along K
 into ONE GEMM with one fp32 accumulator (the X3 / Y3 layouts, fb_split3: the operands are stored with their parts
 interleaved per token, so that any K range of tokens is one strided matrix), the dropped X_lo Y_lo is ~2^-18 of
 the product. (Until this layout: three GEMMs into one C with beta = 1: 3 launches, C written 3 and read 2 times,
 3 short K loops; the same three terms, so the same precision: the dev/cuda checks' errors moved by +-20%.)
 So every product in the chain (P s, Pc^T u, u s^T) has relative error ~2^-16 per term (summed in fp32), far
 below the official layer's (bf16 logits and alpha: 2^-9). s, c and the in-superblock sums are fp32; u lives as
 u_hi + u_lo (17 bits) outside the superblock being solved. The chain's gain approaches 1 (gamma_max = 0.999), so
 a plain bf16 s or u (2^-9 re-injected every row) would not do.
 Determinism: no atomics; all sums in a fixed order (cuBLASLt GEMMs are bitwise reproducible for a fixed
 configuration and GPU); dqb accumulates over superblocks in order.

 Cost. Per sequence, with n = T/S superblocks (MACs; x2 for FLOPs; every GEMM on bf16 tensor cores):
   forward:  logits sum_U Sv u1 D = D T (T+S) / 2;   chain 3 sum_U Sv u0 D = 3 D T (T-S) / 2
   backward: slab D T (T+S)/2; chain 3 D T (T-S)/2; u s^T 3 D T (T+S)/2; dkb and dqb D T (T+S)/2 each
   B=8 T=1024 D=768:  forward 11.3 GMAC (22.6 GFLOP), backward 31.4 GMAC (62.9 GFLOP)
   B=2 T=4096 D=768:  forward 49.9 GMAC (100 GFLOP),  backward 118 GMAC (237 GFLOP)
   At 400-600 TFLOP/s for these shapes on an H200: GEMMs ~0.05 + 0.13 ms (T=1024) and ~0.2 + 0.5 ms (T=4096).
   Elementwise passes (row pass, slab, dZ) move ~16 bytes per (t, j < t) pair and direction: ~0.1 ms at T=4096.
   In-superblock solves (a CTA = 32 columns of one sequence, 8 warps; count in "in-superblock solves" below):
   ~2.1k (forward) / ~1.7k (backward) mma.sync m16n8k16 per CTA and superblock, 8 sequential 32-row steps of
   ~1.5 us each (warp q+1's update, rhs, x on all warps, two barriers): predicted ~19 us (forward) and ~16 us
   (backward) per call at B=8 T=1024 D=768 (192 CTAs, 2 per SM: one wave); measured (H200, d12 step by ncu) 36 and
   32 us, ~42-46k SM cycles per CTA by dev/cuda/feedback_phases.cu, of which ~16k prologue (loads, inverses); at B=2 T=4096 48 CTAs (one per SM, 16 superblocks), latency-bound at about the same per call.
   Launches: 4 (forward) and 9 (backward) per superblock (6 and 13 before the K-concatenated products: at B=8
   T=1024, 4 superblocks of which one has no chain, 21 + 49 launches a layer are now 15 + 35); cuBLASLt plans are
   cached per shape.
   K-concatenated products: the d12 profile (B=8 T=1024) had ~550 feedback GEMMs per step taking ~4.4 ms for
   ~1.0 TFLOP, i.e. ~1.7 ms of tensor work at 600 TFLOP/s and ~5 us of ramp, epilogue and C traffic per GEMM; one
   GEMM per product removes 240 of them (per layer the 2 extra GEMMs of 9 chains and 12 u s^T products): predicted
   ~0.1 ms per layer, fwd + bwd 0.849 -> ~0.75 ms; measured (H200, dev/cuda feedback_backward bench) 0.749 ms, and
   B=1 T=8192 6.85 -> 5.90 ms, B=2 T=4096 2.95 -> 2.64 (d12 step 23.8 -> 22.8 ms with the other helpers' changes).
   Split K was tried and measured slower (chunks of K as extra batch entries into fp32 partials, summed by a
   kernel, when few 128 x 128 output tiles: B=1 T=8192 6.23 ms against 5.90 unsplit, B=2 T=4096 3.15 against
   2.64, B=4 T=2048 1.50 against 1.29): the nvjet kernels cuBLASLt picks run a persistent grid of ~128 CTAs
   (the profile's grids of 2 x 64) that already spreads a small output over the SMs, so the split only added two
   launches and the partials' traffic per product. Removed.
   Measured on an H200 with the former solve kernels (dev/cuda feedback_backward bench, fwd + bwd): 1.93 ms at
   B=8 T=1024 and 4.99 ms at B=2 T=4096 (dense form 1.71 and 6.34 ms), of which the solves were ~1.45 ms at T=1024 (4 x (140 + 223) us, the profile's per-call times).
   The 32x32-block solves below (predicted ~0.6 ms at B=8 T=1024) measured 1.12 ms at B=8 T=1024 (fwd 0.42, bwd
   0.71) and 3.83 ms at B=2 T=4096: the solves take ~75-90 us per call, not 15-20. The FMAs are ~22.5k clk (11 us)
   per SM; the rest is shared memory and latency. Counting per warp and call the 16-byte shared loads (544 in the
   updates, 320 in x_q, plus 496 scalar loads in the inverses), only the model "every LDS.128 costs 4 cycles, the
   broadcasts of one address across quarter-warps not merged" (~63k cycles per SM, ~32 us) comes near it, with
   phase A and the inverses on the critical path between 16 barriers and only 8 warps per CTA. If so, the bound is
   register bytes per FMA: the 1 row x 4 columns tile is the most 32 accumulators allow; the next step is a
   2 rows x 4 columns tile (64 accumulators, 1 CTA per SM, 64 columns per CTA) or tensor cores for the updates.
   ncu (`scripts/gpu_session.sh fbncu`) then showed those fp32-FMA solves latency-bound (16 warps per SM, 7.7 cycles
   per issued instruction, neither shared memory nor the FMA pipes saturated): the solves were rewritten for tensor
   cores (below); `scripts/gpu_session.sh build fbncu` profiles the new ones under the same names.
   Those (one warp solving x_q per block while 7 waited) measured 62 (forward) and 53 us (backward) per call in the
   d12 profile, and B=8 T=1024 fwd + bwd 1.03 ms (dense 1.68); dev/cuda/feedback_phases.cu (per-phase clocks) put
   2/3 of it on the one warp's x_q: its mmas and, most of all, its 32 rows stored one by one; now spread over 8 warps:
   36/32 us per call, one layer's fwd + bwd 0.849 ms at B=8 T=1024 (dense 1.713: 0.496) and 2.954 ms at B=2 T=4096
   (dense 6.340: 0.466). The prologue (diagonal blocks, the 32x32 inverses recomputed by each of the D/32 CTAs of a
   sequence, h/f loads) was then ~1/3 of a CTA (16-19k of 46-48k cycles): the inverses are now made once per
   sequence by fb_inverse_kernel and the prologue's loads are 16-byte copies into shared memory: 11.5k cycles
   (forward with acc), a layer's fwd + bwd at B=8 T=1024 0.667 ms against 0.696 with the former prologue in the same
   run (SESSA_FB_INV below; "in-superblock solves" has the count). The clocks then put ~60% of a CTA in X (x stored
   from the C layout by 2-byte stores between the two barriers) and in the per-load splits of the updates' fragments:
   x is now staged and stored as 16-byte row spans by the warps off the chain, Minv and the panels are split once,
   and B=1 may run 16 columns a CTA (SESSA_FB_COLS): X measured 27.8k -> 10.1k cycles a CTA, the warps' work after
   their update then set the pace; with the splits in fb_inverse_kernel predicted ~25 / ~23 us per call at B=8
   T=1024 (31-34 / 28-30 before; "in-superblock solves" has the count).
   Superblocks of 512 rows (fb_superblock: B <= 4 and T >= 2048). The chain is T / S steps a layer and direction,
   each a GEMM, fb_inverse_kernel and a solve, all latency-bound at small B. Measured at B=1 T=8192 D=768, S = 256
   (H200, the eighth session's ungraphed d12 step timeline, critical path): the chain GEMM (M = 256, N = 768,
   K = 3 u0: cuBLASLt split-K nvjet + its reduce kernel) ~15 us a call ((5.2 + 4.3 + 1.9) ms over 744 calls),
   fb_inverse_kernel 4.2 us, the solve ~11 us (8 blocks of ~1 us and a ~3 us prologue): ~38 us a step with the
   launch gaps, 32 steps, ~1.2 ms a layer and direction, ~29 ms of the 68 ms step. Counted for S = 512, a step:
     GEMM    512 x 768 x 3 u0 (24 output tiles of 128 x 128 instead of 12; mean K 12288, 9.7 GFLOP, twice the
             work of a 256 step): with t = 6 us (ramp, tail, reduce) + W / 520 TFLOP/s, which gives the measured
             15 us at S = 256 (4.8 GFLOP), ~25 us
     inverse 16 warps of the same 32-row chain (grid 16 x 16 with the panels' splits): ~4.3 us
     solve   16 sequential blocks instead of 8, each with the critical path of today's (warp q+1's update of its
             own block, its rhs, x_q; every warp updates only its block, so the right-looking updates of the p > q
             blocks are spread over the 16 warps); the SM runs 16 warps of one CTA (512 threads, 128 registers,
             206 KiB shared), as it runs 2 CTAs of 8 warps at B=8; prologue loads twice the rows: ~16 x 1 + 4 =
             ~20 us
   ~50 us a step with the launch gaps, 16 steps: ~0.8 ms a layer and direction against ~1.2 (-0.4 ms), i.e. ~-9 ms
   on the ungraphed d12 step at B=1 T=8192; fbbench fwd + bwd at B=1 T=8192 (4.1 ms, of which the two chains
   ~2.4) predicted ~3.3-3.5 ms, B=2 T=4096 (1.9 ms, 16 steps of a smaller GEMM) ~1.7 ms; the trainer's B=1
   T=8192 step 59.2 -> ~52 ms (graphed: less of the gaps to win). The other side: the solve's sequential length a
   step doubles, the side work grows (logits and slab ~T S: 10 B T S bytes a buffer set) and the SMs a GEMM step
   leaves to the side streams are fewer; where B T / S is large (B=8 T=1024: 4 steps of 256 already) the steps'
   fixed costs are a small part.
   Measured (H200, the eighth session's mid call; fbbench fwd + bwd per layer, SESSA_FB_S=512 / 256 in one run):
   B=1 T=8192 2.661 / 3.567 ms (predicted ~3.4 / 4.1: the backward gained too, 1.67 / 2.35, not only the chain),
   B=2 T=4096 1.503 / 1.873, B=1 T=4096 0.994 / 1.358, B=4 T=4096 2.296 / 2.852, B=2 T=2048 0.593 / 0.766, B=1 T=2048
   0.438 / 0.608: -19 to -28% everywhere; forced at B=4 T=2048 0.835 / 1.04 (an earlier call's 256), B=8 T=1024 0.585
   / 0.62, B=16 T=512 0.431 / 0.439. d12 training step at B=1 T=8192 51.7 / 59.1 ms (predicted ~52); at B=8 T=1024
   20.5 / 20.4 (no gain, 239 / 154 MiB of scratch): hence the rule B <= 4 and T >= 2048, the region measured to win
   by ~20% (B=8 at T >= 2048 not measured: the fbbench FB_BENCH_LONG lines at B=8 T=2048 and B=8 T=1024 show it).
 Memory (scratch, the larger of forward and backward): forward 6BTD (s3) + 4 B S T (Z) + nb x (6 B S T (P3)
   + 4 B S^2 (Pd) + 4 B S D (acc) + 128 B S (Minv)); backward 6BTD (u3) + 4BTD (fp32 dqb accumulator) + nb x
   (10 B T S (slab: Zs/US fp32, Pc3, dZ over its rows 3i) + 4 B S^2 (PcT) + 4 B S D (acc) + 128 B S) + 6 B S D (sU3),
   and 4 B S^2 a set for the split panels (Ls; 2 MiB at B=8); the
   nb = 2 (at most n) x: buffers of two superblocks in flight ("Overlap", "Buffers" below: each set 10 B T S +
   4 B S^2 + 4 B S D, 28 MiB at B=8 T=1024). B=8 T=1024 D=768: 125 MiB + 4 (Ls) (153 with SESSA_FB_BUFFERS=3), plus c
   (24 MiB) kept from the forward: 149 MiB, against 104 MiB for the dense form's A, u s^T, dZ and bf16 u, s (10 B T^2 +
   4 B T D bytes). The X3 / Y3 layouts cost 2BTD + 2BTS +
   2BSD bytes more than separate hi and lo halves (u_hi twice, Pc_hi twice, s_hi twice: 19 MiB of the 121 at
   B=8 T=1024; the trainer holds one scratch for all layers); the alternative for u s^T, three GEMMs on separate
   halves, would write and re-read the (T-u0) x S fp32 product 3 times per superblock (~21 MB at B=8 T=1024) and
   launch 2 more GEMMs. At a fixed number of tokens B*T ours stays ~125-145 MiB while the dense form grows like T
   (344 MiB at T=4096, 664 at T=8192); below T ~ 2000 the dense form is the smaller one. With S = 512 (B <= 4,
   T >= 2048) the backward's scratch is 149 MiB at B=1 T=8192 (104 at S = 256) and 159 MiB at B=2 T=4096 (107).
 Deviations from the design first proposed (issue 11), and why:
   - u is kept only as u_hi + u_lo (17 bits, in u3; fp32 inside the superblock being solved): the fp32 copy would
     add 4BTD bytes, and every use of u outside the solve is a hi/lo GEMM anyway; dgamma = (u_hi + u_lo) . c.
   - dZ overwrites Pc_hi's first copy and u s^T overwrites the slab's logits: the slab costs 10 bytes per entry,
     not 16.
   - the in-superblock solves read fp32 diagonal blocks (Pd, PcT) and split them into bf16 hi/lo when they load
     the mma fragments; their products are fp32-grade as the chain GEMMs (2^-16 per product, not fp32 FMAs'
     2^-24; dev/test/test_feedback_blocked.c models it). feedback_precision.py on the emulator, T=4096 D=64, normwise
     vs float64: s 2.6e-6, u 3.9e-6, dgamma 4.3e-6 (fp32-FMA solves: 6.2e-7, 2.9e-6, 3.3e-6; the official bf16
     form: 1.9e-4, 2.0e-4, 3.4e-4).
     They invert the 32x32 diagonal blocks of the M-matrix I - G L (inverse >= 0: sums of one sign, fp32 rounding
     only) so that the sequential part is 8 small products, not 256 dependent rows.
   - S is a runtime value (fb_superblock: 512 at B <= 4 and T >= 2048, else 256, at most T rounded up to 32;
     SESSA_FB_S, or FB_S in the dev bench, for tuning).
 dev/test/test_feedback_blocked.c runs this schedule (superblocks, 32-row sub-blocks, hi/lo splits) on the CPU.
*/
#ifndef SESSA_FEEDBACK_CUH
#define SESSA_FEEDBACK_CUH

#include <math.h>
#include <string.h>
#include "cuda_common.h"
#include "matmul.cuh"
#include "mma.cuh"          // cp.async wrappers
#include "gate.cuh"         // the layer's gate, optionally applied per superblock by feedback_forward

#define FB_SMAX 512       // the largest superblock: the in-superblock solves keep 3 S x 32 fp32 in shared memory
                          // and a warp per 32-row block (S = 512: 16 warps, one CTA an SM, 206 KiB shared)
// rows S of a superblock (keys of a backward slab): FB_S_LONG for long sequences at small batch (B <= FB_S_LONG_B
// and T >= FB_S_LONG_T: few superblock columns B T / S, so the chain's sequential steps, T / S a layer and
// direction, set the time), else FB_S_SHORT; or a multiple of 32 in [32, FB_SMAX] set by SESSA_FB_S in the
// environment (read at the first call; 0: automatic) or by fb_superblock_rows (dev/cuda's bench sets it from FB_S).
// S trades the solves' sequential work (~T S) and the slabs' memory (~T S) against launches (~T / S) and the chain
// GEMMs' size ("Cost" above: 512 measured 19-28% faster at B <= 4, T >= 2048; no gain in the B=8 T=1024 step).
#define FB_S_SHORT 256
#define FB_S_LONG 512
#define FB_S_LONG_B 4
#define FB_S_LONG_T 2048
static inline int fb_round_up(int x, int m) { return (x + m - 1) / m * m; }
static int fb_superblock_rows = -1;   // -1: SESSA_FB_S not read yet; 0: automatic
static inline int fb_superblock(int B, int T) {
    if (fb_superblock_rows < 0) {
        const char *e = getenv("SESSA_FB_S");
        char *end = NULL;
        fb_superblock_rows = e ? (int)strtol(e, &end, 10) : 0;
        if (e && (*e == 0 || *end != 0)) fatal("feedback: SESSA_FB_S=%s (need a number of rows, 0 for automatic)", e);
    }
    int S = fb_superblock_rows ? fb_superblock_rows : B <= FB_S_LONG_B && T >= FB_S_LONG_T ? FB_S_LONG : FB_S_SHORT;
    if (S < 32 || S > FB_SMAX || S % 32 != 0) fatal("feedback: superblock of %d rows (SESSA_FB_S / FB_S: need a multiple of 32 in [32, %d], or 0 for automatic)", S, FB_SMAX);
    int cap = fb_round_up(T, 32);   // one superblock holds all of a short sequence; no slab wider than T
    return S < cap ? S : cap;
}

struct __align__(16) FbF4 { float x, y, z, w; };   // one 16-byte load (float4 without the vector-type header)
struct __align__(8) FbF2 { float x, y; };
struct __align__(8) FbU2 { uint32_t x, y; };
struct __align__(16) FbU4 { uint32_t x, y, z, w; };

// ----------------------------------------------------------------------------
// row-major strided-batched GEMM on cuBLASLt: C (m x n, C.ld) = alpha op(A) op(B) + beta C, for each of sh.batch
// matrices (X.stride elements apart). A, B bf16; C fp32 or bf16 (C.type). op(A) = A stored m x k (A.ld), or when
// A.trans, A stored k x m; op(B) = B stored k x n (B.ld), or when B.trans, B stored n x k. fp32 accumulation.
// Column-major view: C^T (n x m) = op(B)^T op(A)^T, i.e. cuBLASLt's A is our B (transposed iff B.trans), its B our A.
// (The plan key below keeps cuBLAS's short names: lda = A.ld, sa = A.stride, ta = A.trans, and so on.)
// Plans (descriptor, layouts, the heuristic's algorithm) are cached per shape in a small hash table: a cuBLASLt
// heuristic query costs tens of microseconds of CPU time, and a superblock issues ~9 GEMMs.
typedef struct {
    int m, n, k, lda, ldb, ldc, batch, ta, tb, ctype, beta_nonzero, sms;
    long long sa, sb, sc;
    uint32_t align[4];
} FbGemmKey;
typedef struct {
    int used;
    FbGemmKey key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} FbGemmPlan;
#define FB_GEMM_PLANS 4096   // a power of two; when full, plans are made and freed per call
static FbGemmPlan fb_gemm_plans[FB_GEMM_PLANS];
static int fb_gemm_nplans = 0;

static void fb_layout(cublasLtMatrixLayout_t *l, cudaDataType_t type, int rows, int cols, int ld, int batch, long long stride) {
    cublasCheck(cublasLtMatrixLayoutCreate(l, type, rows, cols, ld));
    int32_t bc = batch;
    int64_t st = stride;
    cublasCheck(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc)));
    cublasCheck(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &st, sizeof(st)));
}

static uint32_t fb_align(const void *p, size_t stride_bytes, int batch) {
    uint32_t a = ptr_alignment(p);
    while (batch > 1 && a > 1 && stride_bytes % a != 0) a >>= 1;
    return a;
}

static void fb_plan_make(FbGemmPlan *p, const FbGemmKey *k, const char *sig) {
    p->key = *k;
    cublasCheck(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t opa = k->tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
    if (k->sms > 0) {   // a side stream's GEMM planned for fewer SMs (fb_side_sms_set)
        int32_t sms = k->sms;
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET, &sms, sizeof(sms)));
    }
    fb_layout(&p->la, CUDA_R_16BF, k->tb ? k->k : k->n, k->tb ? k->n : k->k, k->ldb, k->batch, k->sb);
    fb_layout(&p->lb, CUDA_R_16BF, k->ta ? k->m : k->k, k->ta ? k->k : k->m, k->lda, k->batch, k->sa);
    fb_layout(&p->lc, (cudaDataType_t)k->ctype, k->n, k->m, k->ldc, k->batch, k->sc);
    if (!cublaslt_heuristic(p->desc, p->la, p->lb, p->lc, k->align, sig, &p->algo))
        fatal("fb_gemm: cuBLASLt found no algorithm for m=%d n=%d k=%d batch=%d (ta %d tb %d)",
              k->m, k->n, k->k, k->batch, k->ta, k->tb);
}
static void fb_plan_free(FbGemmPlan *p) {
    cublasCheck(cublasLtMatrixLayoutDestroy(p->la));
    cublasCheck(cublasLtMatrixLayoutDestroy(p->lb));
    cublasCheck(cublasLtMatrixLayoutDestroy(p->lc));
    cublasCheck(cublasLtMatmulDescDestroy(p->desc));
}

// the operands of one strided-batched GEMM: matrix b of a batch starts at ptr + b * stride (elements), rows ld apart
typedef struct { const floatX *ptr; int ld; long long stride; bool trans; } FbIn;        // bf16 A or B; trans: op(X) = X^T
typedef struct { void *ptr; cudaDataType_t type; int ld; long long stride; } FbOut;     // C: fp32 or bf16
typedef struct { int m, n, k, batch; } FbShape;                                            // C is m x n, k inner

// the overlap's side streams (fb_streams) and their own cuBLASLt workspaces: GEMMs running at the same time on
// different streams must not share one (cuBLASLt keeps split-K partials and the CTAs' counters there)
#define FB_SIDE_STREAMS 3
static cudaStream_t fb_side_stream[FB_SIDE_STREAMS];
static void *fb_side_workspace[FB_SIDE_STREAMS];
// The side streams' GEMMs may be planned for fewer SMs (cuBLASLt's SM_COUNT_TARGET, "for when a concurrent stream
// uses some of the device"): the nvjet kernels run a persistent grid of ~1 CTA per SM with ~200 KB of shared memory
// for the whole GEMM, so a solve or acc GEMM of the chain issued while one runs finds no SM free until it ends.
// SESSA_FB_SIDE_SMS=N: N SMs (0: all); unset (or -1): half the SMs when the chain's solve has at most 48 CTAs
// (B ceil(D/32): B=1 and 2 at D=768), else all. Measured (H200 fbbench fwd + bwd, median of 5, lookahead off,
// 2 sets; all SMs / 66 / 33): B=8 T=1024 0.653 / 0.694 / 0.752 ms, B=4 T=2048 1.140 / 1.179 / 1.277, B=2 T=4096
// 1.933 / 1.902 / 2.243, B=1 T=8192 4.194 / 3.854 / 4.451.
static int fb_sm_count(void) {   // the device's SMs (asked once)
    static int sms = 0;
    if (sms == 0) {
        int dev;
        cudaDeviceProp prop;
        cudaCheck(cudaGetDevice(&dev));
        cudaCheck(cudaGetDeviceProperties(&prop, dev));
        sms = prop.multiProcessorCount;
    }
    return sms;
}
static int fb_side_sms_call = 0;   // the SMs the current call's side GEMMs target (fb_side_sms_set)
static void fb_side_sms_set(int B, int D) {
    static int env = -2;
    if (env == -2) {
        const char *e = getenv("SESSA_FB_SIDE_SMS");
        env = e ? atoi(e) : -1;
        if (env < -1) fatal("feedback: SESSA_FB_SIDE_SMS=%d (need a number of SMs, 0 for all, -1 automatic)", env);
    }
    fb_side_sms_call = env >= 0 ? env : B * ceil_div(D, 32) <= 48 ? fb_sm_count() / 2 : 0;
}

static void fb_gemm(FbOut C, FbIn A, FbIn B, FbShape sh, float alpha, float beta, cudaStream_t stream) {
    int m = sh.m, n = sh.n, k = sh.k, batch = sh.batch;
    if (m <= 0 || n <= 0 || k <= 0 || batch <= 0) fatal("fb_gemm: empty product m=%d n=%d k=%d batch=%d", m, n, k, batch);
    FbGemmKey key;
    memset(&key, 0, sizeof key);   // the padding too: keys are compared and hashed bytewise
    key.m = m; key.n = n; key.k = k; key.lda = A.ld; key.ldb = B.ld; key.ldc = C.ld; key.batch = batch;
    key.ta = A.trans; key.tb = B.trans; key.ctype = (int)C.type; key.beta_nonzero = beta != 0.0f;
    key.sa = A.stride; key.sb = B.stride; key.sc = C.stride;
    // pointer alignments as matmul_lt tells them, lowered to what the batch strides keep for every matrix of the batch
    size_t ce = C.type == CUDA_R_16BF ? 2 : 4;
    key.align[0] = fb_align(B.ptr, (size_t)B.stride * 2, batch); key.align[1] = fb_align(A.ptr, (size_t)A.stride * 2, batch);
    key.align[2] = fb_align(C.ptr, (size_t)C.stride * ce, batch); key.align[3] = key.align[2];
    void *ws = cublaslt_workspace;   // each side stream has its own: GEMMs on two streams at once must not share one
    for (int i = 0; i < FB_SIDE_STREAMS; i++)
        if (fb_side_workspace[i] && stream == fb_side_stream[i]) { ws = fb_side_workspace[i]; key.sms = fb_side_sms_call; }
    uint64_t h = 1469598103934665603ull;           // FNV-1a over the key's bytes
    for (size_t i = 0; i < sizeof key; i++) h = (h ^ ((const unsigned char *)&key)[i]) * 1099511628211ull;
    FbGemmPlan *plan = NULL, tmp;
    int probe = 0;
    for (; probe < FB_GEMM_PLANS; probe++) {
        FbGemmPlan *e = &fb_gemm_plans[(h + probe) & (FB_GEMM_PLANS - 1)];
        if (e->used && memcmp(&e->key, &key, sizeof key) == 0) { plan = e; break; }
        if (!e->used) break;
    }
    if (plan == NULL) {   // a new problem: its plan, into the table while it is at most half full
        FbGemmPlan *e = &fb_gemm_plans[(h + probe) & (FB_GEMM_PLANS - 1)];
        plan = probe < FB_GEMM_PLANS && fb_gemm_nplans < FB_GEMM_PLANS / 2 ? e : &tmp;
        char sig[256];
        gemm_signature(sig, sizeof sig, m, n, k, batch, key.lda, key.ldb, key.ldc, key.sa, key.sb, key.sc, key.ta, key.tb,
                       key.ctype, MATMUL_EPI_NONE, beta, key.align);
        fb_plan_make(plan, &key, sig);
        if (plan != &tmp) { plan->used = 1; fb_gemm_nplans++; }
        if (gemm_tune)
            cublaslt_tune(sig, plan->desc, plan->la, plan->lb, plan->lc, key.align, B.ptr, A.ptr, beta,
                          ((size_t)(batch - 1) * C.stride + (size_t)C.ld * m) * ce, ws, stream);
    }
    cublasCheck(cublasLtMatmul(cublaslt_handle, plan->desc, &alpha, B.ptr, plan->la, A.ptr, plan->lb,
                               &beta, C.ptr, plan->lc, C.ptr, plan->lc, &plan->algo,
                               ws, cublaslt_workspace_size, stream));
    if (plan == &tmp) fb_plan_free(&tmp);
}

__device__ __forceinline__ float fb_join(floatX hi, floatX lo) { return __bfloat162float(hi) + __bfloat162float(lo); }

// fp32-grade products in ONE bf16 GEMM, the three products concatenated along K (see "fp32-grade products" above):
//   X Y ~ X_hi Y_hi + X_hi Y_lo + X_lo Y_hi = [Y-side parts] . [X-side parts] with one K loop of 3K.
// X3 layout (s and u, the vectors of the chain; written by the solves): row t of X becomes rows 3t (X_hi), 3t+1
// (X_hi), 3t+2 (X_lo) of a (3T, D) bf16 matrix; the same bytes are the (T, 3D) matrix of rows [X_hi | X_hi | X_lo].
// Y3 layout (their partners P, Pc, s[U]): each element y becomes the three bf16 y_hi, y_lo, y_hi, `step` apart
// (consecutive columns for P, rows for Pc, D-wide column blocks for s[U]). Part k of X3 meets part k of Y3:
// hi hi + hi lo + lo hi.
__device__ __forceinline__ void fb_split3(floatX *y, size_t step, float x) {
    floatX h = __float2bfloat16(x);
    y[0] = h;
    y[step] = __float2bfloat16(x - __bfloat162float(h));
    y[2 * step] = h;
}
// element (t, col) of an X3 matrix of D columns from its bf16 halves' bits (the solves' stores)
__device__ __forceinline__ void fb_store_x3(floatX *x3, size_t t, int col, int D, uint16_t hi, uint16_t lo) {
    size_t o = 3 * t * D + col;
    *(uint16_t *)&x3[o] = hi;
    *(uint16_t *)&x3[o + D] = hi;
    *(uint16_t *)&x3[o + 2 * D] = lo;
}
// x = x_hi + x_lo of element (t, col) of an X3 matrix
__device__ __forceinline__ float fb_load_x3(const floatX *x3, size_t t, int col, int D) {
    size_t o = 3 * t * D + col;
    return fb_join(x3[o], x3[o + 2 * D]);
}

// ----------------------------------------------------------------------------
// forward kernels

// two floats (lower k index first) -> their bf16 hi halves and lo halves, packed: two paired conversions
// (cvt.rn.bf16x2.f32), the hi halves unpacked by bit operations (single F2F conversions run at a quarter rate)
__device__ __forceinline__ void fb_split_pack(uint32_t *hi, uint32_t *lo, float a, float b) {
    *hi = pack_bf16x2(a, b);
    *lo = pack_bf16x2(a - bf16x2_lo(*hi), b - bf16x2_hi(*hi));
}

// the row pass's threads: wpr warps per row (1, 2, 4 or 8), so that a lane takes at most ~32 keys per pass
// (rows of u1 <= 1024 keys keep one warp each; at B = 1 and long T the 8 x fewer rows still fill the SMs)
static inline int fb_row_warps(int u1) { return u1 <= 1024 ? 1 : u1 <= 2048 ? 2 : u1 <= 4096 ? 4 : 8; }

// v reduced (max or sum) over the wpr warps of this warp's row group, the same value on all of them, in a fixed
// order (deterministic; wpr = 1: the warp's own value). red: 8 floats of shared memory; every thread calls it.
template <bool MAX>
__device__ __forceinline__ float fb_group_reduce(float v, float *red, int wpr) {
    int w = threadIdx.x / WARP_SIZE, g0 = w / wpr * wpr;
    v = MAX ? warp_reduce_max(v) : warp_reduce_sum(v);
    __syncthreads();                            // red's previous values read by everyone
    if (threadIdx.x % WARP_SIZE == 0) red[w] = v;
    __syncthreads();
    float x = red[g0];
    for (int k = 1; k < wpr; k++) x = MAX ? fmaxf(x, red[g0 + k]) : x + red[g0 + k];
    return x;
}

// keys of a row a lane of the row pass holds in registers: fb_row_warps gives a lane at most 32 keys of the rows
// up to 8192 keys, so Z is read once; longer rows go in chunks of FB_ROW_KEYS keys a lane (those chunks read up to
// 3 times, from L2). (A -DFB_ROW_KEYS=4 build runs the chunked path on the emulator's short rows.)
#ifndef FB_ROW_KEYS
#define FB_ROW_KEYS 32
#endif
// zr[k] = z[j0 + k nth] for the keys below n, -inf past n (not loaded): FB_ROW_KEYS independent loads in flight
__device__ __forceinline__ void fb_row_load(float (&zr)[FB_ROW_KEYS], const float *z, int j0, int nth, int n) {
#pragma unroll
    for (int k = 0; k < FB_ROW_KEYS; k++) zr[k] = j0 + k * nth < n ? z[j0 + k * nth] : -INFINITY;
}

// row pass of superblock [u0, u0+Sv): row r (t = u0 + r) by wpr warps (fb_row_warps(u1)), 8 / wpr rows per CTA.
// Z (B, S, ldz) fp32 logits for keys j < u1. lse_t = log sum_{j<t} exp Z[r,j]; P[r,j] = exp(Z[r,j] - lse_t) for
// j < t else 0: the keys j < u0 into P3 (B, S, 3 ldz) in the Y3 layout (columns 3j, 3j+1, 3j+2 = P_hi, P_lo, P_hi;
// the chain GEMM's A), the diagonal block j in U in fp32 into Pd (B, S, S): Pd[r][jj] = P[r, u0+jj]. Lane tid of
// a row's nth = 32 wpr threads takes the keys j = tid + k nth, k < FB_ROW_KEYS (registers zr[k]): one read of the
// row, then three passes over the registers (max, sum in the order of k, write). P3 row offsets: ldz and u0 are
// multiples of 32 (fb_ldz, S), so a warp's 32 keys start at a 4-byte boundary of P3.
// Cost (B=8 T=1024, superblock 4 of 4: 2048 rows of 1024 keys): Z 8.4 MB in (from L2: the GEMM just wrote it), P3
// 9.4 MB and Pd 2.1 MB out, ~4.5 us at ~4.3 TB/s; a layer's 4 calls 48 MB, ~11 us (+ ~4 x 2 us launch and ramp).
// The former kernel read Z from global memory in each of the three passes, one 4-byte load in flight per lane
// (a dependent loop): 11.7 us per call, latency-bound. Same sums in the same order: the same bits.
// A CTA per row (8 keys a thread through shared memory, session 7's fb12, the same bits) measured (H200, fbbench
// "side kernels alone", per layer) 25.1 against this kernel's 27.7 us at B=8 T=1024 but 281.5 against 230.8 at B=1
// T=8192, where the side stream is the bottleneck: removed.
// grid (ceil(Sv wpr / 8), B), 256 threads.
__global__ void fb_fwd_rows_kernel(floatX *P3, float *Pd, float *lse, const float *Z, int ldz,
                                   int u0, int Sv, int S, int T, int wpr) {
    __shared__ float red[8];
    int w = threadIdx.x / WARP_SIZE, b = blockIdx.y;
    int r = blockIdx.x * (8 / wpr) + w / wpr, nth = wpr * WARP_SIZE, tid = threadIdx.x % nth;
    bool on = r < Sv;                           // (no early return: the group reductions have barriers)
    int t = u0 + r, u1 = u0 + Sv, tt = on ? t : 0, span = FB_ROW_KEYS * nth;
    size_t row = ((size_t)b * S + r) * ldz;
    const float *z = Z + row;
    float zr[FB_ROW_KEYS];
    int held = 0;                               // zr holds the keys [held, held + span) of the row
    fb_row_load(zr, z, tid, nth, tt);
    float mx = -INFINITY, sum = 0.0f;
    for (int c0 = 0; c0 < tt; c0 += span) {
        if (c0 != held) { held = c0; fb_row_load(zr, z, c0 + tid, nth, tt); }
#pragma unroll
        for (int k = 0; k < FB_ROW_KEYS; k++) mx = fmaxf(mx, zr[k]);   // (-inf past t)
    }
    mx = fb_group_reduce<true>(mx, red, wpr);
    for (int c0 = 0; c0 < tt; c0 += span) {
        if (c0 != held) { held = c0; fb_row_load(zr, z, c0 + tid, nth, tt); }
#pragma unroll
        for (int k = 0; k < FB_ROW_KEYS; k++)
            if (c0 + tid + k * nth < tt) sum += expf(zr[k] - mx);
    }
    sum = fb_group_reduce<false>(sum, red, wpr);
    if (!on) return;                            // (whole warps: the shuffles below see all 32 lanes)
    float l = t == 0 ? -INFINITY : mx + logf(sum);
    int lane = tid % WARP_SIZE;
    for (int c0 = 0; c0 < u1; c0 += span) {
        if (c0 != held) { held = c0; fb_row_load(zr, z, c0 + tid, nth, tt); }
        // two of the warp's blocks of 32 keys at a time, A = j0 + lane (zr[k]) and B = j0 + nth + lane (zr[k + 1])
        // (u0 is a multiple of 32: a block's 32 keys all go to P3, or all to Pd). P3: the 96 bf16 of a block in the
        // Y3 layout (key e: hi, lo, hi) are 48 words; lane m < 16 writes block A's words 3m..3m+2, i.e. keys 2m and
        // 2m+1 (hi0 | lo0, hi0 | hi1, lo1 | hi1), lane 16 + m block B's, from hl = hi | lo << 16 (fb_split3's
        // bits) of the two keys' lanes: 4 shuffles and 3 coalesced 4-byte stores a lane per 64 keys
#pragma unroll
        for (int k = 0; k < FB_ROW_KEYS; k += 2) {
            int j0 = c0 + tid - lane + k * nth, j = j0 + lane;
            if (j0 >= u1) break;
            bool b_on = j0 + nth < u1;
            float pa = j < t ? expf(zr[k] - l) : 0.0f, pb = b_on && j + nth < t ? expf(zr[k + 1] - l) : 0.0f;
            if (j0 < u0) {                      // (then j0 + nth < u0 or not, the same for the whole warp)
                float ha = bf16x2_lo(pack_bf16x2(pa, 0.0f)), hb = bf16x2_lo(pack_bf16x2(pb, 0.0f));
                uint32_t hla = pack_bf16x2(ha, pa - ha), hlb = pack_bf16x2(hb, pb - hb);
                int m = lane % 16;
                uint32_t a0 = __shfl_sync(0xffffffffu, hla, 2 * m), a1 = __shfl_sync(0xffffffffu, hla, 2 * m + 1);
                uint32_t b0 = __shfl_sync(0xffffffffu, hlb, 2 * m), b1 = __shfl_sync(0xffffffffu, hlb, 2 * m + 1);
                bool mine_b = lane >= 16;
                uint32_t x0 = mine_b ? b0 : a0, x1 = mine_b ? b1 : a1;
                if (!mine_b || j0 + nth < u0) {
                    uint32_t *dst = (uint32_t *)&P3[3 * (row + j0 + (mine_b ? nth : 0))] + 3 * m;
                    dst[0] = x0;
                    dst[1] = (x0 & 0xffffu) | x1 << 16;
                    dst[2] = x1 >> 16 | x1 << 16;
                }
            } else if (j < u1) {
                Pd[((size_t)b * S + r) * S + (j - u0)] = pa;
            }
            if (b_on && j0 + nth >= u0 && j + nth < u1) Pd[((size_t)b * S + r) * S + (j + nth - u0)] = pb;
        }
    }
    if (tid == 0) lse[(size_t)b * T + t] = l;
}

// ----------------------------------------------------------------------------
// in-superblock solves (forward and backward share one schedule, on tensor cores)
//
// Both directions solve, inside a superblock of Sv <= S rows and for the 32 (or 16) columns of a CTA,
// x = rhs + G (acc + L x) with L (S x S, fp32, in global memory) strictly triangular and >= 0: forward L = Pd (lower),
// G = diag(gamma), x = s, and the sums acc + L x are c; backward L = PcT (upper, gamma already inside), G = I, x = u.
// Rows go in blocks of 32 (q = 0 .. nb-1, from last to first in the backward). Per block q, with h_q = acc + (L x)_q
// over the blocks solved so far:
//   R. rhs_q = f_q + G_q h_q (forward), h_q (backward)                                 (warp q, whose h_q it is)
//   X. x_q = Minv_q rhs_q,  Minv_q = (I - G_q L_qq)^{-1}          (32x32 by 32x32, 8 (4) warps: a 16x8 tile each)
//   U. right-looking: h_p += L_pq x_q for every block p after q (forward also p = q: L_qq is strictly lower, so
//      h_q becomes c_q, complete)                                                   (32x32 by 32x32, warp p)
// The diagonal blocks' inverses come first: forward substitution of 32 dependent rows in fp32, a warp per block
// (fb_block_inverse). L >= 0 and gamma >= 0, so Minv >= 0 (an M-matrix inverse): sums of one sign, fp32 rounding
// only, no cancellation. They are the same for the D/32 CTAs of a sequence, so fb_inverse_kernel makes them once per
// (sequence, superblock) before the solve (into scratch: 128 B S bytes, 0.25 MiB at B=8), and each CTA copies them
// in (cp.async, 32 KiB) in its prologue, after the loads of the first panel, gamma, acc and f (gs): those come as
// 16-byte cp.async into shared memory (panel buffer 1 and Minv's buffer, free then; swizzled for the C-layout reads,
// fb_sw_c / fb_sw_h), not as the C layout's 4-byte loads (a warp's load then takes 512 contiguous bytes of 4 rows,
// not 128: the H200 clocks put those loads at 8.5-13.7k cycles of a ~48-54k CTA, forward, B=8 T=1024). The solve is
// launched by programmatic dependent launch (fb_inverse_mode 2): its CTAs start and load while fb_inverse_kernel
// runs, and wait for it (grid_dep_wait) only before the copy of Minv (0.7-0.9k cycles measured).
// Count (B=8 T=1024 D=768, H200 clocks of dev/cuda/feedback_phases.cu, mean per CTA, forward with acc): the prologue
// was 18.7k cycles of 48k (diagonal blocks and gamma 5.8k, inverses 5.1k, h and f 7.8k; the inverses issue-bound: 16
// warps of an SM each issuing ~700 instructions, 496 FMAs, 136 LDS.128, shuffles). With the inverses made once and
// every load in one round trip it measured 15.7k (13.7k of it the loads: the same as before, so not latency but
// throughput: a warp's 4-byte load in the C layout touches 4 rows, 4 cache lines for 128 bytes, and acc and f need
// 2048 of those line requests per CTA, 4096 per SM), and fb_inverse_kernel ~4.6 us alone (ncu; beside the loads
// under programmatic dependent launch). Staged by 16-byte cp.async they need 512 (and the first panel 256): measured
// 4.0k cycles (predicted 4.6k), but then the CTAs wait for fb_inverse_kernel: 5.6-7.4k cycles for the smem reads,
// that wait and Minv's copy, so the prologue is 11.5k (forward with acc; 20.9k with SESSA_FB_INV=0 in the same run)
// and the solve 35.7 us per call alone (38.4; that run also issued the panels during U, since dropped: 1-3% slower
// over a layer). Layer fwd + bwd (fbbench, B=8 T=1024): 0.667 ms against 0.696 with
// SESSA_FB_INV=0 (B=1 T=8192: 4.091 / 4.224). fb_block_inverse's four chains (a row's dependent FMAs r/4, not r)
// are to shorten that wait (not measured yet). SESSA_FB_INV=0 keeps the inverses in
// every CTA and the 4-byte loads (the former prologue; buffer 1 of the panel holds the diagonal blocks then), 1
// launches the solve after fb_inverse_kernel in the ordinary way: all give the same bits (dev/cuda's checks compare).
// Tensor cores: every 32x32 by 32x32 product of A and B is done transposed, as mma.sync m16n8k16 bf16 tiles with
// fp32 accumulators in registers: warp p keeps h_p^T (the CTA's 32 columns x 32 rows of block p) in the C layout
// (2 m-tiles x 4 n-tiles x 4 floats = 32 registers a lane; 16 with 16 columns a CTA, MT = 1), and
//   R. warp q packs rhs_q^T from its accumulators as A fragments (the C layout of two n-tiles is the A layout of one
//      k16 slice, mma.cuh) into shared memory (ra: packed bf16 hi and lo, one 16-byte load per fragment);
//   X. x_q^T = rhs_q^T Minv_q^T: warp w < 4 MT computes the C tile (m-tile w / 4, n-tile w % 4): A from ra, B[k][n] =
//      Minv_q[n][k] from shared memory, split; it writes its tile as half of an A fragment into xa and, fp32, into
//      the staging tile xs (nothing to global memory here);
//   U. h_p^T += x_q^T L_pq^T: A = x_q^T from xa, B = L_pq[n][k] from the panel, split.
// fp32-grade products as the chain GEMMs: X = X_hi + X_lo (bf16 halves, 17 bits), X Y ~ X_hi Y_hi + X_lo Y_hi +
// X_hi Y_lo, three mmas into the fp32 accumulator (relative error ~2^-16 per product; the former fp32-FMA kernels:
// ~2^-24). The fp32 operands (Minv, the panel's blocks) are split into their B fragments ONCE (fb_split_block: bf16
// hi and lo of a lane's 4 elements in one 16-byte chunk, in place), not at every fragment load.
// CTA = 16 MT columns x one batch element, NW = 8 warps (warp w owns block w: at most 8 blocks, S <= 256), grid
// (ceil(D/(16 MT)), B): B=8 D=768 is 192 CTAs of 32 columns, 2 per SM (109 KiB shared each), one wave on 132 SMs.
// S = 512 (fb_solve_warps): NW = 16 warps, the same code with twice the blocks, one CTA per SM (206 KiB shared,
// 128 registers a thread as the 8-warp CTAs have at 2 per SM); B=1 D=768: 48 CTAs of 16 columns, one per SM.
// Shared memory (floats, S rows):
//   Minv  [S/32][32][32]   the diagonal blocks' inverses, split (fb_sw_b)
//   panel [2][S][32]       L[rows, block q's 32 columns], double-buffered (iteration & 1); its block p (rows 32p..)
//                          at 1024 p, read by warp p only. Warp p brings it in fp32 by cp.async (fb_sw_b) two
//                          iterations ahead, into the place its update has just read; everyone waits for their
//                          copies before barrier 2 of the next iteration, and after that iteration's update warp p
//                          (forward: warp q for the next panel's diagonal block, warp q+1's: the critical one) splits
//                          it in place. The first two panels: by the CTA in the prologue (fb_inverse_mode 0: the
//                          prologue's diagonal blocks use buffer 1 before the second panel). With SESSA_FB_INV=1-3
//                          (default 2) fb_inverse_kernel has split every block already (Ls): the copies are flat
//                          (the first two panels after its wait, with Minv's) and the solve splits nothing.
//   ra, xa [hi, lo][2 m-tiles][2 k-slices][32 lanes][4]   rhs_q^T and x_q^T as A fragments
//   xs    [32][32]         x_q fp32 (fb_sw_c), for the stores
//   gsh   [S]              forward: gamma of the superblock's rows
// (With the fused x, "Fused x" above fb_fwd_solve_w, at 16 columns and 16 warps: R and X both by warp q from its
// registers, no barrier 1, xa and xs double-buffered by the iteration's parity.)
// Per block: R (warp q), barrier 1, X (warps < 4 MT), barrier 2, U (every warp p after q), then every warp but the
// critical one (qn = q+1 forward, q-1 backward: its update, then its R, is the chain) does the rest: forward warp q
// stores c_q from its accumulators (4 rows x 32 bytes a store: whole sectors), the owners split their block of the
// next panel (SESSA_FB_INV=0 only: else fb_inverse_kernel split them), and x_q goes out from xs as 16-byte row spans
// (fb_store_x) by the warps without an update in this block when there are 2 or more (forward from block 2 on,
// backward from block nb-2 down), else by all of them but the forward's warp q. ra is free again after barrier 2;
// xa and xs after barrier 1 (every warp is past its work of q-1 there); a warp's panel block once it has read it.
// Why (dev/cuda/feedback_phases.cu, the H200, forward B=8 T=1024, mean per CTA of 47.7k cycles; the sixth session): the
// former X was 2.6-4.4k cycles a block (27.8k of the 47.7k), where its header counted ~0.2k of mma chain. Count per
// warp and block of that X: after barrier 1 the next panel's cp.async issue (up to 7 LDGSTS a thread, ~12 address
// instructions each), <= 4 LDS.128 (ra), <= 4 LDS.64 + 4 splits (~24 ALU) of Minv, <= 6 chained mmas, 2 splits,
// 2 STS.64, then x to global memory straight from the C layout: 16 stores a lane (forward 3 x 2-byte s3 + 4-byte s
// per element, backward 3 + 1 x 2-byte), ~40 instructions of 64-bit addresses. Per CTA and block that is 128 store
// instructions of 4 rows each: 512 sector writes, 384 of them half sectors (16 bytes of bf16 in a 32-byte sector),
// plus up to 56 warp LDGSTS of the panel, ~150-200 instructions a warp, all between the two barriers with the 16
// warps of an SM in the same phase: the LSU queue (MIO/LG throttle) sets X's time, not the mmas. And the former U:
// 16 fragment loads of the fp32 panel a warp, each 2 LDS.64 + 2 splits (~14 instructions): ~280 instructions per
// 48 mmas. Now: X ~35 instructions a warp (<= 6 LDS.128, <= 6 mmas, 2 splits, 6 STS), no global memory; U 8 + 8
// LDS.128 and 48 mmas (~70); after U, off the chain, a warp's panel issue (8 LDGSTS a lane, two iterations ahead:
// the copy's latency hidden) and split (8 LDS.128, 16 splits, 8 STS.128 a lane), x_q's stores (forward 256 16-byte fp32 chunks + 128 groups of 8 columns, 3 STG.128
// each; backward 128 groups, 4 each: ~2 of those a thread over 7 warps). Global store instructions per CTA and block:
// forward 8 + 12 warp STG.128 (s, s3) + 32 (c) = 52, all whole sectors (was 160, 384 half sectors); backward 16 (was
// 96). Same bits: the same splits of the same fp32 values, the same mma order (dev/cuda checks compare the places of
// the inverses and the column widths bitwise; this change against the former kernels: bitwise on the emulator).
// Critical path per block, as first predicted: U of warp qn (48 mmas in 8 chains of 6: >= ~0.2k latency, 0.4-1.5k
// while all the SM's warps update at the first blocks), R (~190 instructions, ~0.4-0.6k), barrier 1, X (LDS, <= 6
// chained mmas, STS: ~0.35k), barrier 2: ~1.5-2.5k a block, ~25-27k cycles a CTA with the prologue.
// Measured (H200 fbphases, this scheme with the panels still split by the owner warps after their update, SESSA_FB_INV
// =3 timed with fb_inverse_kernel; forward B=8 T=1024, mean per CTA): 39.2k cycles (47.7k before), x 27.8k -> 10.1k,
// but the warps' work after their update ("out max": update, split, c, stores) 24.0k, 2.0-3.9k a block, set the pace
// (the critical warp's update + rhs ~2.2k); 32.8 us per call (33.9), of which ~13 us outside the CTAs' clocks (the
// inverse kernel ahead, launches). B=1 T=8192 at 16 columns: 25.6k cycles, out max 15.7k; 21.8 / 21.1 us per call.
// Hence the splits moved into fb_inverse_kernel (SESSA_FB_INV=1-3), and the forward's warp q (c_q, 32 stores a lane,
// ~0.5-1.1k cycles a block) stores no x when others can. Predicted now, a block: max(warp qn: update + R ~1.3k (B=1)
// - 2.3k (B=8), warp q: update + c ~1.2-2.3k, the others: update + ~2 store units) + X ~0.5k + barriers: ~2k (B=1) to
// ~3k (B=8) a block, ~21k / ~32k cycles a CTA with the prologue; per call with fb_inverse_kernel ahead (mode 2):
// B=8 T=1024 fwd ~25 us, bwd ~23 us; B=1 T=8192 (16 columns) ~17 / ~16 us. fbbench fwd + bwd (mode 2, the in-solve
// splits measured 0.656 / 1.873 / 3.659 ms at B=8 / 2 / 1): ~0.62, ~1.8, ~3.5 ms; at B <= 2 the side streams, not
// the chain, set the pace (the lead's B=1 timeline), so the chain's gain shows only in part there.
// Registers (ptxas -v, CUDA 13, INV / own inverses): 32 columns forward 128 / 128 (36 bytes of spills, SESSA_FB_INV=0
// only), backward 116 / 126; 16 columns 94 / 128, 96 / 124. 2 CTAs per SM. The same counts with 16 warps (1 CTA per SM).
// Determinism: fixed owners, fixed mma order, no atomics.
#define FB_R 32                              // rows of a block (= the columns of a solve CTA of 2 m-tiles)
#define FB_NB (FB_SMAX / FB_R)               // blocks of a superblock, at most
// the warps of a solve CTA, NW (fb_solve's template argument), a warp per block: 8 for S <= 256 (2 CTAs an SM),
// 16 for larger S (1 CTA an SM); either way 128 registers a thread at most and S <= 32 NW (gamma: a thread a row)
static inline int fb_solve_warps(int S) { return S <= 8 * FB_R ? 8 : 16; }
static_assert(FB_NB == 16, "fb_solve_warps: 8 or 16 warps");
static inline size_t fb_solve_smem(int S) {   // (with 16 warps one tile more: the fused x's second xa)
    return ((size_t)3 * S * FB_R + (S > 8 * FB_R ? 4 : 3) * FB_R * FB_R + S) * sizeof(float);
}

// the [rows][32] tiles read as mma B operands (the panel, Minv): the 16-byte chunk index XOR-ed by (row & 1) * 4 +
// (row / 2) % 4, so that a quarter-warp's 16-byte reads reach 8 different bank quads both when it reads one chunk
// of 8 rows (the in-place split, fb_split_block: a lane a row) and when it reads chunks 4kt..4kt+3 of rows g = 0, 1
// (the split B fragments, fb_frag_b: lane 4g + t reads chunk 4kt + t of row n0 + g)
__device__ __forceinline__ int fb_sw_b(int row, int k) { return row * FB_R + (((k >> 2) ^ ((row & 1) << 2) ^ ((row >> 1) & 3)) << 2) + (k & 3); }
// [rows][32] tiles read in the C layout (lane 4g + t reads row 2t (+1), column g (+8, +16, +24) of a block): fp32
// (fb_sw_c) with the 16-byte chunk index XOR-ed by (row & 6), bf16 (fb_sw_h, 8 a chunk) by (row / 2) % 4, so that a
// warp's read (4 rows x 8 columns) reaches 32 banks, or 16 with pairs of lanes on one word
__device__ __forceinline__ int fb_sw_c(int row, int k) { return row * FB_R + (((k >> 2) ^ (row & 6)) << 2) + (k & 3); }
__device__ __forceinline__ int fb_sw_h(int row, int k) { return row * FB_R + (((k >> 3) ^ ((row >> 1) & 3)) << 3) + (k & 7); }

struct FbFragA { uint32_t hi[4], lo[4]; };   // a 16x16 A operand as bf16 halves (mma.cuh layout)
struct FbFragB { uint32_t hi[2], lo[2]; };   // a 16x8 B operand as bf16 halves

// the A fragment (16 x k16) made of two neighbouring C tiles c0 (k 0..7) and c1 (k 8..15)
__device__ __forceinline__ void fb_pack_a(FbFragA *a, const float c0[4], const float c1[4]) {
    fb_split_pack(&a->hi[0], &a->lo[0], c0[0], c0[1]); fb_split_pack(&a->hi[1], &a->lo[1], c0[2], c0[3]);
    fb_split_pack(&a->hi[2], &a->lo[2], c1[0], c1[1]); fb_split_pack(&a->hi[3], &a->lo[3], c1[2], c1[3]);
}
// A 32x32 fp32 tile (fb_sw_b) split once into the B fragments it serves: B[k][n] = tile[n0 + n][k] for the k16
// slice kt is, for lane 4g + t, the bf16 hi and lo halves of tile[n0 + g][16 kt + 2t (+1, +8, +9)]. In place, a lane
// a row (its slice kt's 16 floats = 4 chunks in, the 4 lanes' fragments = 4 chunks out, chunk t = {hi[0], hi[1],
// lo[0], lo[1]} of lane 4g + t): 8 LDS.128, 16 paired splits, 8 STS.128 a lane per tile. fb_split_pack's bits, as
// the split at every fragment load had (the same products).
__device__ __forceinline__ void fb_split_block(float *tile, int lane) {
#pragma unroll
    for (int kt = 0; kt < 2; kt++) {
        float v[16];
#pragma unroll
        for (int c = 0; c < 4; c++) {
            FbF4 x = *(const FbF4 *)&tile[fb_sw_b(lane, 16 * kt + 4 * c)];
            v[4 * c] = x.x; v[4 * c + 1] = x.y; v[4 * c + 2] = x.z; v[4 * c + 3] = x.w;
        }
#pragma unroll
        for (int t = 0; t < 4; t++) {
            FbU4 o;
            fb_split_pack(&o.x, &o.z, v[2 * t], v[2 * t + 1]);
            fb_split_pack(&o.y, &o.w, v[2 * t + 8], v[2 * t + 9]);
            *(FbU4 *)&tile[fb_sw_b(lane, 16 * kt + 4 * t)] = o;
        }
    }
}
// the B fragment (n-tile rows n0..n0+7, k16 slice kt) of a split tile: one LDS.128 (n0 is a multiple of 8, so the
// swizzle of row n0 + g is that of row g)
__device__ __forceinline__ FbFragB fb_frag_b(const float *tile, int n0, int kt, int lane) {
    FbU4 v = *(const FbU4 *)&tile[n0 * FB_R + fb_sw_b(lane / 4, 16 * kt + 4 * (lane % 4))];
    return FbFragB{{v.x, v.y}, {v.z, v.w}};
}
// d += a b in fp32-grade: a_hi b_hi + a_lo b_hi + a_hi b_lo
__device__ __forceinline__ void fb_mma3(float d[4], const FbFragA &a, const FbFragB &b) {
    mma_bf16_16816(d, a.hi, b.hi);
    mma_bf16_16816(d, a.lo, b.hi);
    mma_bf16_16816(d, a.hi, b.lo);
}
// fragment (m-tile mt, k-slice kt) of an A operand kept in shared memory as hi (hl = 0) and lo (hl = 1) halves
// (ra, xa: [2 hl][2 mt][2 kt][32 lanes] x 16 bytes, one LDS.128 per lane and half)
__device__ __forceinline__ FbU4 *fb_frag_at(uint32_t *buf, int hl, int mt, int kt, int lane) {
    return (FbU4 *)buf + ((hl * 2 + mt) * 2 + kt) * WARP_SIZE + lane;
}
__device__ __forceinline__ FbFragA fb_frag_load(uint32_t *buf, int mt, int kt, int lane) {
    FbU4 vh = *fb_frag_at(buf, 0, mt, kt, lane), vl = *fb_frag_at(buf, 1, mt, kt, lane);
    return FbFragA{{vh.x, vh.y, vh.z, vh.w}, {vl.x, vl.y, vl.z, vl.w}};
}
// element i of the C tile (mt, nt) of a lane (lane = 4 g + t): row 8 nt + 2 t + i % 2 of a block, column
// 16 mt + g + 8 (i / 2) of the CTA's 32
__device__ __forceinline__ int fb_c_row(int nt, int i, int lane) { return 8 * nt + 2 * (lane % 4) + i % 2; }
__device__ __forceinline__ int fb_c_col(int mt, int i, int lane) { return 16 * mt + lane / 4 + 8 * (i / 2); }

// Minv = (I - diag(g) L)^{-1} for one diagonal block tri ([32][32] row-major, plain layout; strictly lower, or
// strictly upper when REV), one warp, lane = column j of the inverse. Forward substitution, left-looking: row r of
// X is e_r + g_r sum_k L[r][k] X[k] over the rows k solved before it (REV: rows from last to first), X[k] in the
// lane's registers, L's row r read as broadcast 16-byte loads (~136 LDS.128 a warp, not 496 scalar ones). Each sum
// is four fp32 chains (the terms k % 4 = 0..3 of the 16-byte chunks, in the order of the solve), added pairwise at
// the end: a chain of r / 4 dependent FMAs a row, not r (fb_inverse_kernel runs one warp per SM, latency-bound;
// the sums are of one sign, so the order changes only the last bit). 496 FMAs per lane; g of row r is lane r's g_lane.
template <bool REV>
__device__ __forceinline__ void fb_block_inverse(float *Minv, const float *tri, float g_lane, int lane) {
    float x[FB_R];
#pragma unroll
    for (int i = 0; i < FB_R; i++) {
        const int r = REV ? FB_R - 1 - i : i;
        float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int c = 0; c < FB_R / 4; c++) {    // the 16-byte chunks of row r, in the order of the solve
            const int k4 = REV ? FB_R - 4 - 4 * c : 4 * c;
            if (REV ? k4 + 3 <= r : k4 >= r) break;
            FbF4 v = *(const FbF4 *)&tri[r * FB_R + k4];
            const float e[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                const int k = REV ? k4 + 3 - kk : k4 + kk;
                if (REV ? k > r : k < r) a[kk] = fmaf(e[k - k4], x[k], a[kk]);
            }
        }
        x[r] = fmaf(__shfl_sync(0xffffffffu, g_lane, r), (a[0] + a[1]) + (a[2] + a[3]), r == lane ? 1.0f : 0.0f);
        Minv[fb_sw_b(r, lane)] = x[r];
    }
}

// the nb diagonal blocks of L into tri ([nb][32][32] plain; entries outside [0, Sv)^2 are 0), by all NW warps
template <int NW>
__device__ __forceinline__ void fb_load_tri(float *tri, const float *L, int S, int Sv, int nb) {
    constexpr int nth = NW * WARP_SIZE, per = NW * FB_R * FB_R / nth;   // 32 a thread
    float v[per];
#pragma unroll
    for (int k = 0; k < per; k++) {
        int idx = threadIdx.x + k * nth, qb = idx / (FB_R * FB_R);
        int r = qb * FB_R + idx / FB_R % FB_R, col = qb * FB_R + idx % FB_R;
        v[k] = qb < nb && r < Sv && col < Sv ? L[(size_t)r * S + col] : 0.0f;
    }
#pragma unroll
    for (int k = 0; k < per; k++) {
        int idx = threadIdx.x + k * nth;
        if (idx < nb * FB_R * FB_R) tri[idx] = v[k];
    }
}

// cp.async of the panel L[r0:r1, k0:k0+32] into pan (row r - r0, fb_sw_b), rows >= rvalid zero-filled, by the
// threads tid of nth (the CTA, or one warp for its own block). L's rows are S floats (a multiple of 32) and k0 a
// multiple of 32: every 16-byte chunk is aligned.
__device__ __forceinline__ void fb_load_panel(float *pan, const float *L, int S, int r0, int r1, int k0, int rvalid,
                                              int tid, int nth) {
    for (int idx = tid; idx < (r1 - r0) * (FB_R / 4); idx += nth) {
        int row = idx / (FB_R / 4), k = idx % (FB_R / 4) * 4, r = r0 + row;
        cp_async16(pan + fb_sw_b(row, k), L + (size_t)(r < rvalid ? r : 0) * S + k0 + k, r < rvalid);
    }
}

// FB_PHASES (dev/cuda/feedback_phases.cu only): lane 0 of the warp named writes clock64() at the solve's phase
// boundaries into fb_phase_clk[CTA][slot] (CTA = blockIdx.y * gridDim.x + blockIdx.x, the first FB_PH_CTAS):
//   prologue: START (warp 0), TRI (warp 0, after the diagonal blocks and gamma are in: a barrier), INV (warp 0,
//   after the inverses and the first panel's split: a barrier), HF (warp 0, its h (and f) loaded); with Minv from
//   fb_inverse_kernel (INV) TRI comes once the staged loads are in (a barrier), INV once h, f are read and Minv and
//   the first panel are in (a barrier), HF once h, f are packed;
//   block it (q = it forward, nb-1-it backward), at FB_PH_PRO + it FB_PH_IT: RHS (warp q, ra written), BAR1
//   (warp 0, past barrier 1), X (warp 0, its x tile staged), BAR2 (warp 0, past barrier 2), UPD + w (each warp w,
//   past its update), CEND (warp q, forward: c_q stored), OUT + w (each warp w, past its work after the update:
//   c_q, the split of its block of the next panel, its share of x_q's stores)
#ifdef FB_PHASES
#define FB_PH_CTAS 1024
enum { FB_PH_START, FB_PH_TRI, FB_PH_INV, FB_PH_HF, FB_PH_PRO };
enum { FB_PH_RHS, FB_PH_BAR1, FB_PH_X, FB_PH_BAR2, FB_PH_UPD, FB_PH_CEND = FB_PH_UPD + FB_NB, FB_PH_OUT,
       FB_PH_IT = FB_PH_OUT + FB_NB };
#define FB_PH_SLOTS (FB_PH_PRO + FB_NB * FB_PH_IT)
__device__ long long fb_phase_clk[FB_PH_CTAS * FB_PH_SLOTS];
#define FB_PHASE(slot, warp) do { int cta_ = blockIdx.y * gridDim.x + blockIdx.x;                                   \
        if (threadIdx.x == (warp) * WARP_SIZE && cta_ < FB_PH_CTAS) fb_phase_clk[cta_ * FB_PH_SLOTS + (slot)] = clock64(); \
    } while (0)
#else
#define FB_PHASE(slot, warp) do { } while (0)
#endif
#define FB_PHASE_IT(it, slot, warp) FB_PHASE(FB_PH_PRO + (it) * FB_PH_IT + (slot), warp)   // slot of block iteration it

// The layer's gate folded into the backward (optional last argument of feedback_backward; the trainer's way): the
// gradient arriving at s is gs = dgated * gt (gated = s * gt), so the solve takes dgated and gt instead of a gs
// buffer and forms gs itself where it reads it, and fb_bwd_rows_kernel, which reads s[U] anyway, writes the gate's
// other gradient dgt = dgated * s for the superblock's rows (rows ld apart, as gt): no gate_backward pass before the
// call (at d12 B=8 T=1024 it read 8 and wrote 6 bytes an element, ~20 us a layer on the main stream). The same fp32
// products as gate_backward: the same bits.
typedef struct { const floatX *dgated, *gt; floatX *dgt; int ld; } FbGateBwd;

// x_q's outputs from its staged fp32 tile xs ([32][32], fb_sw_c; rows q0.., the NC columns n0.. of the CTA) by the
// threads tid of nth: forward s (fp32) and s3, backward u3 and df = bf16(u) = u_hi (s3, u3: the X3 layout,
// fb_store_x3; the halves are fb_split_pack's, the bits the C-layout stores had). vec (D a multiple of 8, the
// outputs 16-byte aligned): 16-byte stores, a row's 32 columns in 8 (fp32) or 4 (bf16) of them, i.e. whole 128-byte
// (fp32) and 64-byte (bf16) row spans (NC = 32; half those at 16): forward 256 fp32 chunks + 128 groups of 8
// columns (3 stores each), backward 128 groups (4 stores each); else element by element. Rows q0 + r >= Sv and columns >= D are not stored.
template <bool BWD, int NC>
__device__ __forceinline__ void fb_store_x(const float *xs, float *xf, floatX *x3, floatX *xb, size_t base,
                                           size_t t0, int q0, int n0, int Sv, int D, int vec, int tid, int nth) {
    if (!vec) {
        for (int e = tid; e < FB_R * NC; e += nth) {
            int r = e / NC, col = n0 + e % NC;
            if (q0 + r >= Sv || col >= D) continue;
            float x = xs[fb_sw_c(r, e % NC)];
            uint32_t hi, lo;
            fb_split_pack(&hi, &lo, x, 0.0f);
            size_t o = base + (size_t)(q0 + r) * D + col;
            fb_store_x3(x3, t0 + q0 + r, col, D, (uint16_t)hi, (uint16_t)lo);
            if (BWD) *(uint16_t *)&xb[o] = (uint16_t)hi; else xf[o] = x;
        }
        return;
    }
    const int nf = BWD ? 0 : FB_R * NC / 4;     // forward: the fp32 chunks first
    for (int e = tid; e < nf + FB_R * NC / 8; e += nth) {
        if (e < nf) {
            int r = e / (NC / 4), k = e % (NC / 4) * 4;
            if (q0 + r < Sv && n0 + k < D)
                *(FbF4 *)&xf[base + (size_t)(q0 + r) * D + n0 + k] = *(const FbF4 *)&xs[fb_sw_c(r, k)];
            continue;
        }
        int r = (e - nf) / (NC / 8), k = (e - nf) % (NC / 8) * 8;
        if (q0 + r >= Sv || n0 + k >= D) continue;
        FbF4 a = *(const FbF4 *)&xs[fb_sw_c(r, k)], b = *(const FbF4 *)&xs[fb_sw_c(r, k + 4)];
        FbU4 hi, lo;
        fb_split_pack(&hi.x, &lo.x, a.x, a.y); fb_split_pack(&hi.y, &lo.y, a.z, a.w);
        fb_split_pack(&hi.z, &lo.z, b.x, b.y); fb_split_pack(&hi.w, &lo.w, b.z, b.w);
        floatX *y = x3 + 3 * (t0 + q0 + r) * D + n0 + k;
        *(FbU4 *)y = hi;
        *(FbU4 *)(y + D) = hi;
        *(FbU4 *)(y + 2 * D) = lo;
        if (BWD) *(FbU4 *)&xb[base + (size_t)(q0 + r) * D + n0 + k] = hi;
    }
}

// The solve of one CTA (both directions; BWD picks the backward). Element (mt, nt, i) of a lane's C tiles is
// column 16 mt + g + 8 (i / 2) of the CTA's 32 and row 8 nt + 2 t + (i % 2) of a block (lane = 4 g + t).
//   forward:  x = s, rhs = f + gamma h; writes s, c (fp32) and s3;         L = Pd,  h starts at acc
//   backward: x = u, rhs = h;           writes u3 and df = bf16(u);        L = PcT, h starts at gs + acc
// (s3, u3: x's bf16 halves in the X3 layout, fb_store_x3)
//   INV: the diagonal blocks' inverses come from fb_inverse_kernel (Minv_g, already split; copied in; D a multiple
//   of 8 and f or gs 16-byte aligned) and h, f (gs) come through shared memory by 16-byte cp.async; else the CTA
//   inverts (and splits) the blocks itself and loads h, f (gs) in the C layout (4-byte loads)
//   vec: the outputs go by 16-byte stores (fb_store_x; D a multiple of 8, the outputs 16-byte aligned)
//   Ls (INV): the panels' blocks already split by fb_inverse_kernel, copied flat; else the fp32 blocks of L, split here
template <bool BWD, bool INV, int MT, int NW, bool FXX = false>
__device__ __forceinline__ void fb_solve(float *xf, float *c, floatX *x3, floatX *xb,
                                         const float *acc, int has_acc, const float *L, const float *Minv_g,
                                         const float *Ls, const floatX *f, const float *gs, const float *gamma, int vec,
                                         int u0, int Sv, int S, int T, int D, FbGateBwd gb = FbGateBwd{}) {
    extern __shared__ __align__(128) float fb_solve_smem_buf[];
    float *Minv = fb_solve_smem_buf, *pan0 = Minv + S * FB_R, *pan1 = pan0 + S * FB_R;
    uint32_t *ra = (uint32_t *)(pan1 + S * FB_R);   // rhs_q^T as A fragments
    uint32_t *xa = ra + FB_R * FB_R;                // x_q^T as A fragments
    float *xs = (float *)(xa + FB_R * FB_R);        // x_q fp32 [32][32] (fb_sw_c), staged for fb_store_x
    float *gsh = xs + FB_R * FB_R;                  // forward: gamma of the superblock's rows (0 past Sv)
    // FXX with MT = 1 and 16 warps (INV): warp q makes x_q itself ("Fused x" above fb_fwd_solve_w), into xa / xs by
    // the parity of the iteration: xa and this second one, xs and ra (which the fused x does not use)
    constexpr bool FX = FXX && MT == 1 && NW == 16 && INV;
    uint32_t *xa2 = (uint32_t *)(gsh + S);
    int w = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE, t = lane % 4, b = blockIdx.y;
    constexpr int NC = 16 * MT;                 // the CTA's columns: MT m-tiles of 16
    constexpr int NTH = NW * WARP_SIZE;         // the CTA's threads: a warp per block
    int n0 = blockIdx.x * NC;                   // the CTA's first column
    int nb = (Sv + FB_R - 1) / FB_R;
    L += (size_t)b * S * S; acc += (size_t)b * S * D;
    size_t base = ((size_t)b * T + u0) * D, t0 = (size_t)b * T + u0;   // row u0 of batch b
    FB_PHASE(FB_PH_START, 0);
    // the panel of block q, L[rows, 32q:32q+32] (forward rows [32q, 32 nb), backward [0, 32q)), by the whole CTA into
    // buffer pan: block p (rows 32p..) at pan + 1024 p, warp p's (fb_split_block splits it in place)
    // (INV: the split blocks made by fb_inverse_kernel, block (q, p) = Ls[b][q][p], 1024 floats, copied flat)
    const float *Lsb = INV ? Ls + (size_t)b * S * S : NULL;
    auto ls_block = [&](int q, int p) { return Lsb + ((size_t)q * (S / FB_R) + p) * FB_R * FB_R; };
    auto panel_in = [&](float *pan, int q) {
        int r0 = BWD ? 0 : q * FB_R, r1 = BWD ? q * FB_R : nb * FB_R;
        if (INV)
            for (int i = 4 * threadIdx.x; i < (r1 - r0) * FB_R; i += 4 * NTH)
                cp_async16(pan + r0 * FB_R + i, ls_block(q, r0 / FB_R) + i, true);   // blocks r0/32.. of panel q
        else
            fb_load_panel(pan + r0 * FB_R, L, S, r0, r1, q * FB_R, Sv, threadIdx.x, NTH);
        cp_async_commit();
    };
    int qfirst = BWD ? nb - 1 : 0, q2nd = BWD ? nb - 2 : 1;   // the blocks of iterations 0 and 1
    if (!INV) panel_in(pan0, qfirst);           // (INV: once fb_inverse_kernel has split it)
    // forward: gamma of row threadIdx.x (S <= NTH) into gsh, stored once the other loads are issued
    // (a warp issues in order: the store would hold them back by a memory round trip)
    float gv = !BWD && threadIdx.x < Sv ? gamma[(size_t)b * T + u0 + threadIdx.x] : 0.0f;
    // h_w^T (C layout), and (forward) f of block w's rows as bf16 pairs (rows 2t, 2t+1); 0 outside
    float h[MT][4][4], hg[MT][4][4];            // hg: backward gs, forward f (its bf16 value)
    if (!INV) {
        // the diagonal blocks' inverses (I - G_q L_qq)^{-1}, a warp per block, split in place; the blocks in panel
        // buffer 1
        fb_load_tri<NW>(pan1, L, S, Sv, nb);
        if (!BWD && threadIdx.x < S) gsh[threadIdx.x] = gv;
        cp_async_wait<0>();
        __syncthreads();                        // tri, gsh, the first panel in
        FB_PHASE(FB_PH_TRI, 0);
        if (w < nb) {
            fb_block_inverse<BWD>(Minv + w * FB_R * FB_R, pan1 + w * FB_R * FB_R, BWD ? 1.0f : gsh[w * FB_R + lane], lane);
            __syncwarp();
            fb_split_block(Minv + w * FB_R * FB_R, lane);
        }
        if (BWD ? w < qfirst : w < nb) fb_split_block(pan0 + w * FB_R * FB_R, lane);
        __syncthreads();                        // Minv and the first panel split, tri read (h loads after it: not
        FB_PHASE(FB_PH_INV, 0);                 // live in the inverse)
        if (nb > 1) panel_in(pan1, q2nd);       // (waited for before barrier 2 of iteration 0)
        // every load issued before any is used: one memory round trip, not one per element (the clocks measured
        // 6-17k cycles here with the loads and their uses interleaved)
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    int r = w * FB_R + fb_c_row(nt, i, lane), col = n0 + fb_c_col(mt, i, lane);
                    bool in = w < nb && r < Sv && col < D;
                    h[mt][nt][i] = in && has_acc ? acc[(size_t)r * D + col] : 0.0f;
                    size_t e = t0 + r;           // the token
                    hg[mt][nt][i] = !in ? 0.0f
                                  : !BWD ? __bfloat162float(f[base + (size_t)r * D + col])
                                  : gs ? gs[base + (size_t)r * D + col]
                                  : __bfloat162float(gb.dgated[e * D + col]) * __bfloat162float(gb.gt[e * gb.ld + col]);
                }
    } else {
        // acc's tile into panel buffer 1 and gs's (fp32) or f's (bf16) into Minv's buffer, both free until later, by
        // 16-byte cp.async (rows past Sv, columns past D zero-filled; D a multiple of 8: a chunk is all in or all
        // out): a warp's copy takes 512 contiguous bytes of 4 rows, where a 4-byte load in the C layout takes 128 of
        // 4 rows (the clocks put the C-layout loads of acc and f at 8.5-13.7k cycles per CTA, forward, B=8 T=1024)
        for (int idx = threadIdx.x; has_acc && idx < nb * FB_R * (NC / 4); idx += NTH) {
            int r = idx / (NC / 4), k = idx % (NC / 4) * 4;
            cp_async16(pan1 + fb_sw_c(r, k), acc + (size_t)r * D + n0 + k, r < Sv && n0 + k < D);
        }
        if (BWD && gs)
            for (int idx = threadIdx.x; idx < nb * FB_R * (NC / 4); idx += NTH) {
                int r = idx / (NC / 4), k = idx % (NC / 4) * 4;
                cp_async16(Minv + fb_sw_c(r, k), gs + base + (size_t)r * D + n0 + k, r < Sv && n0 + k < D);
            }
        else if (BWD)                           // dgated and gt (bf16) into the buffer's two halves, as f below
            for (int idx = threadIdx.x; idx < nb * FB_R * (NC / 8); idx += NTH) {
                int r = idx / (NC / 8), k = idx % (NC / 8) * 8;
                bool in = r < Sv && n0 + k < D;
                cp_async16((floatX *)Minv + fb_sw_h(r, k), gb.dgated + base + (size_t)r * D + n0 + k, in);
                cp_async16((floatX *)Minv + S * FB_R + fb_sw_h(r, k), gb.gt + (t0 + r) * gb.ld + n0 + k, in);
            }
        else
            for (int idx = threadIdx.x; idx < nb * FB_R * (NC / 8); idx += NTH) {
                int r = idx / (NC / 8), k = idx % (NC / 8) * 8;
                cp_async16((floatX *)Minv + fb_sw_h(r, k), f + base + (size_t)r * D + n0 + k, r < Sv && n0 + k < D);
            }
        cp_async_commit();
        if (!BWD && threadIdx.x < S) gsh[threadIdx.x] = gv;
        cp_async_wait<0>();
        __syncthreads();                        // gsh, the staged tiles complete
        FB_PHASE(FB_PH_TRI, 0);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    int r = w * FB_R + fb_c_row(nt, i, lane), k = fb_c_col(mt, i, lane);
                    h[mt][nt][i] = w < nb && has_acc ? pan1[fb_sw_c(r, k)] : 0.0f;
                    const floatX *hb = (const floatX *)Minv;
                    hg[mt][nt][i] = w >= nb ? 0.0f
                                  : !BWD ? __bfloat162float(hb[fb_sw_h(r, k)])
                                  : gs ? Minv[fb_sw_c(r, k)]
                                  : __bfloat162float(hb[fb_sw_h(r, k)]) * __bfloat162float(hb[S * FB_R + fb_sw_h(r, k)]);
                }
        __syncthreads();                        // the staged gs / f read: Minv's buffer is free
        // the inverses of this superblock and sequence, [nb][32][32] split as in shared memory, and the first two
        // panels, split: flat copies, once fb_inverse_kernel (the kernel ahead, which may still run: programmatic
        // dependent launch) is done
        grid_dep_wait();
        const float *src = Minv_g + (size_t)b * S * FB_R;
        for (int i = 4 * threadIdx.x; i < nb * FB_R * FB_R; i += 4 * NTH) cp_async16(Minv + i, src + i, true);
        panel_in(pan0, qfirst);                 // (one group with Minv's copy)
        if (nb > 1) panel_in(pan1, q2nd);       // (waited for before barrier 2 of iteration 0)
        if (nb > 1) cp_async_wait<1>(); else cp_async_wait<0>();
        __syncthreads();                        // Minv and the first panel complete
        FB_PHASE(FB_PH_INV, 0);
    }
    uint32_t fp[MT][4][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            if (BWD) {
#pragma unroll
                for (int i = 0; i < 4; i++) h[mt][nt][i] += hg[mt][nt][i];
            } else {                                // f is bf16: exact
                fp[mt][nt][0] = pack_bf16x2(hg[mt][nt][0], hg[mt][nt][1]);
                fp[mt][nt][1] = pack_bf16x2(hg[mt][nt][2], hg[mt][nt][3]);
            }
        }
    FB_PHASE(FB_PH_HF, 0);
    for (int it = 0; it < nb; it++) {
        int q = BWD ? nb - 1 - it : it, q0 = q * FB_R, buf = it & 1;
        int qn = BWD ? q - 1 : q + 1;           // the next block; its rhs is warp qn's: the critical path
        bool more = it + 1 < nb;
        float *pq = pan0 + buf * S * FB_R, *pn = pan0 + (buf ^ 1) * S * FB_R;
        // the panels: block p of the panel of block q' (L[rows of block p, columns of block q']) sits at 1024 p of
        // buffer (iteration of q') & 1 and is read by warp p only (its update). Warp p brings it in by cp.async
        // (fp32) two iterations ahead, right after its update of the block before in the same place; every thread
        // waits for its copies before barrier 2 of the next iteration; after that iteration's update the block is
        // split in place by warp p, or (forward, the next panel's diagonal block, whose warp qn is the critical
        // one) by warp q. So neither the copy's latency nor the split is on the chain.
        int q2 = BWD ? q - 2 : q + 2;                                     // the block two iterations ahead
        bool in2 = it + 2 < nb && (BWD ? w < q2 : w >= q2 && w < nb);    // warp w's block of its panel
        int split = !more || INV ? -1 : BWD ? (w < qn ? w : -1) : w == q ? qn : w > qn && w < nb ? w : -1;
        uint32_t *xaq = FX && (it & 1) ? xa2 : xa;          // this iteration's x_q fragments and fp32 tile
        float *xsq = FX && (it & 1) ? (float *)ra : xs;
        if (w == q) {
            // R. rhs_q^T (forward f + G h, backward h; h_q is complete) as A fragments into ra: the C tiles
            // 2kt, 2kt+1 of m-tile mt are the A fragment (mt, kt) (FX: kept in registers, ar)
            FbFragA ar[2];
#pragma unroll
            for (int kt = 0; kt < 2; kt++) {
                FbF2 g0, g1;                        // forward: gamma of rows 2t, 2t+1 of the C tiles 2kt, 2kt+1
                if (!BWD) { g0 = *(const FbF2 *)&gsh[q0 + 16 * kt + 2 * t]; g1 = *(const FbF2 *)&gsh[q0 + 16 * kt + 8 + 2 * t]; }
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    float r0[4], r1[4];             // rhs of the C tiles 2kt and 2kt+1
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        r0[i] = h[mt][2 * kt][i]; r1[i] = h[mt][2 * kt + 1][i];
                        if (!BWD) {
                            uint32_t f0 = fp[mt][2 * kt][i / 2], f1 = fp[mt][2 * kt + 1][i / 2];
                            r0[i] = fmaf(i % 2 ? g0.y : g0.x, r0[i], i % 2 ? bf16x2_hi(f0) : bf16x2_lo(f0));
                            r1[i] = fmaf(i % 2 ? g1.y : g1.x, r1[i], i % 2 ? bf16x2_hi(f1) : bf16x2_lo(f1));
                        }
                    }
                    FbFragA a;
                    fb_pack_a(&a, r0, r1);
                    if (FX) { ar[kt] = a; continue; }
                    *fb_frag_at(ra, 0, mt, kt, lane) = FbU4{a.hi[0], a.hi[1], a.hi[2], a.hi[3]};
                    *fb_frag_at(ra, 1, mt, kt, lane) = FbU4{a.lo[0], a.lo[1], a.lo[2], a.lo[3]};
                }
            }
            FB_PHASE_IT(it, FB_PH_RHS, q);
            if (FX) {
                // X, fused: x_q^T = rhs_q^T Minv_q^T, all 4 C tiles (nt) of m-tile 0 by this warp from ar, the
                // products of the 4 tiles interleaved (each tile's own order as below: the same bits); into xaq, xsq
                // (buffers by parity: the other warps may still read the previous iteration's)
                const float *Mq = Minv + q * FB_R * FB_R;
                float x[4][4];
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
#pragma unroll
                    for (int i = 0; i < 4; i++) x[nt][i] = 0.0f;
#pragma unroll
                for (int kt = 0; kt < 2; kt++) {
                    FbFragB mb[4];
#pragma unroll
                    for (int nt = 0; nt < 4; nt++) mb[nt] = fb_frag_b(Mq, 8 * nt, kt, lane);
#pragma unroll
                    for (int part = 0; part < 3; part++)
#pragma unroll
                        for (int nt = 0; nt < 4; nt++) {
                            if (BWD ? kt == 0 && nt >= 2 : kt == 1 && nt < 2) continue;
                            mma_bf16_16816(x[nt], part == 1 ? ar[kt].lo : ar[kt].hi, part == 2 ? mb[nt].lo : mb[nt].hi);
                        }
                }
#pragma unroll
                for (int nt = 0; nt < 4; nt++) {
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        if (q0 + fb_c_row(nt, i, lane) >= Sv) x[nt][i] = 0.0f;
                        xsq[fb_sw_c(fb_c_row(nt, i, lane), fb_c_col(0, i, lane))] = x[nt][i];
                    }
                    uint32_t hi[2], lo[2];
                    fb_split_pack(&hi[0], &lo[0], x[nt][0], x[nt][1]);
                    fb_split_pack(&hi[1], &lo[1], x[nt][2], x[nt][3]);
                    *(FbU2 *)((uint32_t *)fb_frag_at(xaq, 0, 0, nt / 2, lane) + 2 * (nt % 2)) = FbU2{hi[0], hi[1]};
                    *(FbU2 *)((uint32_t *)fb_frag_at(xaq, 1, 0, nt / 2, lane) + 2 * (nt % 2)) = FbU2{lo[0], lo[1]};
                }
                FB_PHASE_IT(it, FB_PH_BAR1, q);
                FB_PHASE_IT(it, FB_PH_X, q);
            }
        }
        if (!FX) __syncthreads();               // ra complete; every warp is past its work of it-1 (xa, xs free)
        if (!FX) FB_PHASE_IT(it, FB_PH_BAR1, 0);
        if (!FX && w < 4 * MT) {
            // X. x_q^T = rhs_q^T Minv_q^T, warp w the C tile (mt, nt) = (w / 4, w % 4): B[k][n] = Minv_q[n][k]
            // from shared, split (Minv_q is lower (forward) / upper (backward) triangular: the k-slice kt = 1
            // (forward) is 0 for nt < 2, kt = 0 (backward) for nt >= 2); x into xa (half of the A fragment
            // (mt, nt / 2)) and, fp32, into xs for the stores after the update
            const float *Mq = Minv + q * FB_R * FB_R;
            int mt = w / 4, nt = w % 4;
            float x[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int kt = 0; kt < 2; kt++) {
                if (BWD ? kt == 0 && nt >= 2 : kt == 1 && nt < 2) continue;
                fb_mma3(x, fb_frag_load(ra, mt, kt, lane), fb_frag_b(Mq, 8 * nt, kt, lane));
            }
#pragma unroll
            for (int i = 0; i < 4; i++) {
                if (q0 + fb_c_row(nt, i, lane) >= Sv) x[i] = 0.0f;
                xs[fb_sw_c(fb_c_row(nt, i, lane), fb_c_col(mt, i, lane))] = x[i];
            }
            uint32_t hi[2], lo[2];
            fb_split_pack(&hi[0], &lo[0], x[0], x[1]);
            fb_split_pack(&hi[1], &lo[1], x[2], x[3]);
            *(FbU2 *)((uint32_t *)fb_frag_at(xa, 0, mt, nt / 2, lane) + 2 * (nt % 2)) = FbU2{hi[0], hi[1]};
            *(FbU2 *)((uint32_t *)fb_frag_at(xa, 1, mt, nt / 2, lane) + 2 * (nt % 2)) = FbU2{lo[0], lo[1]};
        }
        if (!FX) FB_PHASE_IT(it, FB_PH_X, 0);
        cp_async_wait<0>();                     // this thread's copies of the next panel (issued an iteration ago)
        __syncthreads();                        // xa, xs, the next panel's fp32 blocks complete
        FB_PHASE_IT(it, FB_PH_BAR2, 0);
        // U. h_w^T += x_q^T L_wq^T for the blocks w after q (forward: w >= q; backward: w < q)
        if (BWD ? w < q : w >= q && w < nb) {
            const float *Lw = pq + w * FB_R * FB_R;
#pragma unroll
            for (int kt = 0; kt < 2; kt++) {
                FbFragA a[MT];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) a[mt] = fb_frag_load(xaq, mt, kt, lane);
#pragma unroll
                for (int nt = 0; nt < 4; nt++) {
                    FbFragB bb = fb_frag_b(Lw, 8 * nt, kt, lane);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) fb_mma3(h[mt][nt], a[mt], bb);
                }
            }
        }
        FB_PHASE_IT(it, FB_PH_UPD + w, w);
        if (in2) {                              // the block two iterations ahead into the place just read
            if (INV)
                for (int i = 4 * lane; i < FB_R * FB_R; i += 4 * WARP_SIZE) cp_async16(pq + w * FB_R * FB_R + i, ls_block(q2, w) + i, true);
            else
                fb_load_panel(pq + w * FB_R * FB_R, L, S, w * FB_R, w * FB_R + FB_R, q2 * FB_R, Sv, lane, WARP_SIZE);
            cp_async_commit();
        }
        if (!BWD && w == q) {                   // h_q = c_q, complete: to global memory from the C tiles (each
#pragma unroll                                  // store 4 rows x 32 bytes: whole sectors; staged for 16-byte
            for (int mt = 0; mt < MT; mt++)     // stores it spilled 20 bytes of registers)
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        int r = q0 + fb_c_row(nt, i, lane), col = n0 + fb_c_col(mt, i, lane);
                        if (r < Sv && col < D) c[base + (size_t)r * D + col] = h[mt][nt][i];
                    }
        }
        FB_PHASE_IT(it, FB_PH_CEND, q);
        if (split >= 0) fb_split_block(pn + split * FB_R * FB_R, lane);   // a block of the next panel
        // x_q out: by the warps without an update in this block (forward w < q and w >= nb, backward w >= q) when
        // there are 2 or more of them, else (then qn exists) by every warp but the critical one (warp qn, whose rhs
        // comes next: its update, then its rhs) and, forward, warp q (c_q's)
        int idle = NW - (BWD ? q : nb - q), idle_w = BWD ? w >= q : w < q || w >= nb;
        if (idle >= 2 ? idle_w : w != qn && (BWD || w != q)) {
            int rank = idle >= 2 ? (BWD ? w - q : w < q ? w : q + w - nb) : BWD ? w - (w > qn) : w - 2 * (w > q);
            int nst = idle >= 2 ? idle : BWD ? NW - 1 : NW - 2;
            fb_store_x<BWD, NC>(xsq, xf, x3, xb, base, t0, q0, n0, Sv, D, vec, rank * WARP_SIZE + lane, nst * WARP_SIZE);
        }
        FB_PHASE_IT(it, FB_PH_OUT + w, w);
    }
}

// The diagonal blocks' inverses of one superblock, once per sequence (the solve's D/32 CTAs of a sequence read them):
//   Minv[b][q] = (I - G_q L_qq)^{-1},  L_qq = L[b][32q:32q+32, 32q:32q+32] with the entries outside [0, Sv)^2 = 0,
// forward (REV = 0) L = Pd, G = diag(gamma[b, u0 + 32q + i]) (0 past Sv); backward (REV = 1) L = PcT, G = I.
// Minv (B, S/32, 32, 32): each block split into its B fragments (fb_split_block) as the solve keeps it in shared
// memory, so the solve copies it flat. fb_block_inverse and fb_split_block as the solve runs them with
// SESSA_FB_INV=0, on the same tri and g: the same bits.
// With Ls (SESSA_FB_INV=1-3) also the panels' blocks, split as the solve would split them (rows past
// Sv 0, as fb_load_panel fills them): Ls[b][q][p] (B, S/32, S/32, 32 x 32) = block (p, q) of L for the blocks the
// updates read (forward p >= q, backward p < q), so the solve copies them flat and splits nothing.
// grid (nb, Ls ? nb : 1, B), one warp each: CTA (q, p) (lane = column) the inverse of block q when p = q, the split
// of block (p, q) when Ls. Cost per inverse: 4 KiB in (L2: the rows/slab kernel just wrote L), 496 FMAs a lane, 8 +
// 8 LDS.128, 16 splits, 4 KiB out; B=8 S=256: 64 warps, 0.5 MB moved, latency-bound: predicted ~2-3 us, measured
// 4.6 us alone (ncu, with a row's sum one chain of r dependent FMAs; four chains now, predicted ~3 us); a split 4 KiB
// in and out (B=8: 288 forward, 224 backward, 2 MB). It lets the solve that follows start at once
// (grid_dep_launch_dependents; the solve waits for it only before it copies Minv), so with programmatic dependent
// launch (SESSA_FB_INV=2) it runs beside the solve's own prologue loads.
template <bool REV>
__global__ void __launch_bounds__(WARP_SIZE)
fb_inverse_kernel(float *Minv, float *Ls, const float *L, const float *gamma, int u0, int Sv, int S, int T) {
    __shared__ __align__(16) float tri[FB_R * FB_R], inv[FB_R * FB_R];
    int q = blockIdx.x, p = Ls ? blockIdx.y : q, b = blockIdx.z, lane = threadIdx.x, q0 = q * FB_R, p0 = p * FB_R;
    grid_dep_launch_dependents();
    bool split = Ls && (REV ? p < q : p >= q);   // a block the updates read (forward: the diagonal one too)
    if (p != q && !split) return;
    L += ((size_t)b * S + p0) * S + q0;
    float v[FB_R];                              // every load issued before any store: one round trip
#pragma unroll
    for (int r = 0; r < FB_R; r++) v[r] = p0 + r < Sv ? L[(size_t)r * S + lane] : 0.0f;
    const int nbs = S / FB_R;
    if (p == q) {
#pragma unroll
        for (int r = 0; r < FB_R; r++) tri[r * FB_R + lane] = q0 + lane < Sv ? v[r] : 0.0f;
        float g = REV ? 1.0f : q0 + lane < Sv ? gamma[(size_t)b * T + u0 + q0 + lane] : 0.0f;
        __syncwarp();
        fb_block_inverse<REV>(inv, tri, g, lane);
        __syncwarp();
        fb_split_block(inv, lane);
        __syncwarp();
        FbU4 *dst = (FbU4 *)(Minv + ((size_t)b * nbs + q) * FB_R * FB_R);
#pragma unroll
        for (int i = 0; i < FB_R * FB_R / 4 / WARP_SIZE; i++) dst[i * WARP_SIZE + lane] = ((const FbU4 *)inv)[i * WARP_SIZE + lane];
        __syncwarp();                           // inv read by every lane
    }
    if (split) {
#pragma unroll
        for (int r = 0; r < FB_R; r++) inv[fb_sw_b(r, lane)] = v[r];
        __syncwarp();
        fb_split_block(inv, lane);
        __syncwarp();
        FbU4 *dst = (FbU4 *)(Ls + (((size_t)b * nbs + q) * nbs + p) * FB_R * FB_R);
#pragma unroll
        for (int i = 0; i < FB_R * FB_R / 4 / WARP_SIZE; i++) dst[i * WARP_SIZE + lane] = ((const FbU4 *)inv)[i * WARP_SIZE + lane];
    }
}

// forward: for the rows r of U in blocks of 32, c_r = acc_r + sum_{j<r} Pd[r][j] s_j, s_r = f_r + g_r c_r.
// acc (B, S, D) = P[:, 0:u0] s[0:u0] (ignored when has_acc = 0); Pd (B, S, S) the fp32 diagonal block of alpha
// (entries past Sv finite: feedback_forward clears Pd when a superblock is partial, fb_begin). Writes s, c (fp32) and s3 (the bf16
// halves of s, read by the next superblocks' GEMMs). grid (ceil(D/(16 MT)), B), 32 NW threads, fb_solve_smem(S).
// INV, MT, NW, vec: fb_solve's (Minv from fb_inverse_kernel, h and f staged in shared memory; 16 MT columns a CTA;
// NW warps, S <= 32 NW; 16-byte output stores). 16 / NW CTAs an SM: 128 registers a thread at most.
template <bool INV, int MT, int NW, bool FXX = false>
__global__ void __launch_bounds__(NW * WARP_SIZE, 16 / NW)
fb_fwd_solve_kernel(float *s, float *c, floatX *s3, const float *acc, int has_acc, const float *Pd,
                    const floatX *f, const float *gamma, int vec, const float *Minv, const float *Ls, int u0, int Sv,
                    int S, int T, int D) {
    fb_solve<false, INV, MT, NW, FXX>(s, c, s3, NULL, acc, has_acc, Pd, Minv, Ls, f, NULL, gamma, vec, u0, Sv, S, T, D);
}

// backward, transposed: for the keys j of U in blocks of 32 from last to first,
//   u_j = gs_j + acc_j + sum_{t in U, t > j} Pc[t][j] u_t,   acc (B, S, D) = Pc[u1:T]^T u[u1:T] (when has_acc),
// with the fp32 diagonal block PcT[j][t] = Pc[t][j] (strictly upper; entries past Sv finite: feedback_backward
// clears PcT when a superblock is partial, fb_begin). The forward's schedule with L = PcT, G = I, the blocks from last to first, and
// h = gs + acc from the start. Writes u3 (u's bf16 halves, X3 layout) and df = bf16(u).
// grid (ceil(D/(16 MT)), B), 32 NW threads, fb_solve_smem(S). INV, MT, NW, vec as the forward's.
template <bool INV, int MT, int NW, bool FXX = false>
__global__ void __launch_bounds__(NW * WARP_SIZE, 16 / NW)
fb_bwd_solve_kernel(floatX *u3, floatX *df, const float *acc, int has_acc, const float *PcT,
                    const float *gs, FbGateBwd gb, int vec, const float *Minv, const float *Ls, int u0, int Sv, int S,
                    int T, int D) {
    fb_solve<true, INV, MT, NW, FXX>(NULL, NULL, u3, df, acc, has_acc, PcT, Minv, Ls, NULL, gs, NULL, vec, u0, Sv, S, T, D, gb);
}

// Where the diagonal blocks' inverses are made (SESSA_FB_INV in the environment, read at the first solve; dev/cuda's
// checks set fb_inverse_mode to compare the four, which give the same bits): 0 = in every solve CTA (D/32 times per
// sequence; h, f by 4-byte loads in the C layout); 1 = once per sequence by fb_inverse_kernel, then the solve (h, f
// staged in shared memory); 2 (default) = the same, the solve launched by programmatic dependent launch (sm_90+; 1
// on older GPUs): it starts while fb_inverse_kernel runs and waits for it only before copying Minv in; 3 = off the
// chain: fb_inverse_kernel runs on the side stream right after the kernel that makes the diagonal blocks (row pass,
// slab), into the superblock's buffer set, and the solve only copies them (feedback_forward / feedback_backward; a
// solve called alone needs fb_inverses first). With 1-3 fb_inverse_kernel also splits the panels' blocks (Ls, 4 B S^2
// bytes a buffer set; its CTAs beside the inverses' 32-row chains), so the solve splits nothing: neither the first
// panel in its prologue nor a block per warp and block after the updates (~115 instructions a lane; the H200 clocks
// of the split in the solve, B=1 T=8192: the warps after their update 1.3-2.4k cycles a block against the critical
// warp's update + rhs ~1.3-1.5k). The inverses depend on L and gamma only, not on the chain: 3 takes fb_inverse_kernel
// (~3-4.6 us, latency-bound: 32 dependent rows) off the chain, but measured slower where the side streams set the
// pace (H200, fbbench fwd + bwd with the solve's own splits, 3 / 2: B=8 T=1024 0.664 / 0.656 ms, B=2 T=4096 2.225 /
// 1.873, B=1 T=8192 4.713 / 3.659; d12 B=1 T=8192 step 62.3 / 60.2 ms): one more kernel per superblock on stream a.
static int fb_inverse_mode = -1;   // -1: not chosen yet
static int fb_env_choice(int *mode, const char *name, int def, int hi) {
    if (*mode < 0) {
        const char *e = getenv(name);
        if (e != NULL && (strlen(e) != 1 || e[0] < '0' || e[0] > '0' + hi)) fatal("feedback: %s=%s (need 0 .. %d)", name, e, hi);
        *mode = e == NULL ? def : e[0] - '0';
    }
    if (*mode > hi) fatal("feedback: %s %d (need 0 .. %d)", name, *mode, hi);
    return *mode;
}
// SESSA_FB_INV unset: 2, and 3 for a call of one superblock issued in parts (side_ok): its side stream has nothing
// else to do beside the caller's work (RoPE and the attention / Linear_out's backward), so the inverses leave the
// main stream. Measured (H200, the trainer, gpu11h, unset / SESSA_FB_INV=2 in turns): d4w256h4 B=8 T=256 1.770M and
// 1.796M / 1.758M and 1.744M tok/s (d12, 4 superblocks, the same path either way: 422.0k, 425.0k / 426.3k, 424.0k).
static int fb_inverse_auto = -1;   // -1: not known yet; 1: SESSA_FB_INV unset
static int fb_inverse_where(int side_ok) {
    if (fb_inverse_auto < 0) fb_inverse_auto = getenv("SESSA_FB_INV") == NULL;
    int mode = fb_env_choice(&fb_inverse_mode, "SESSA_FB_INV", 2, 3);
    if (mode == 2 && side_ok && fb_inverse_auto) mode = 3;
    return mode == 2 && !pdl_supported() ? 1 : mode;   // programmatic dependent launch needs sm_90
}
// the solves' 16-byte paths (D a multiple of 8, the inputs f or gs and the outputs 16-byte aligned): the inverses
// from fb_inverse_kernel and h, f staged (else SESSA_FB_INV=0's path), and fb_store_x's 16-byte stores
static int fb_fwd_vec(const float *s, const float *c, const floatX *s3, const floatX *f, int D) {
    return D % 8 == 0 && ptr_alignment(f) >= 16 && ptr_alignment(s) >= 16 && ptr_alignment(c) >= 16 && ptr_alignment(s3) >= 16;
}
static int fb_bwd_vec(const floatX *u3, const floatX *df, const float *gs, const FbGateBwd *gb, int D) {
    int in_ok = gs ? ptr_alignment(gs) >= 16
                   : ptr_alignment(gb->dgated) >= 16 && ptr_alignment(gb->gt) >= 16 && gb->ld % 8 == 0;
    return D % 8 == 0 && in_ok && ptr_alignment(u3) >= 16 && ptr_alignment(df) >= 16;
}
static int fb_solve_inv_mode(int vec, int side_ok = 0) { return vec ? fb_inverse_where(side_ok) : 0; }
// the diagonal blocks' inverses of superblock [u0, u0 + Sv) into Minv, (B, S/32, 32, 32), and with Ls the panels'
// blocks split, (B, S/32, S/32, 32, 32) (modes 1-3)
template <bool BWD>
static void fb_inverses(float *Minv, float *Ls, const float *L, const float *gamma, int u0, int Sv, int S, int B, int T,
                        cudaStream_t stream) {
    int nb = ceil_div(Sv, FB_R);
    fb_inverse_kernel<BWD><<<dim3(nb, Ls ? nb : 1, B), WARP_SIZE, 0, stream>>>(Minv, Ls, L, gamma, u0, Sv, S, T);
    cudaCheck(cudaGetLastError());
}

// Columns of a solve CTA (SESSA_FB_COLS in the environment, read at the first solve; dev/cuda's checks set
// fb_cols_mode to compare, same bits): 32 or 16; unset (or 0) automatic: 16 when the CTAs of 16 columns,
// B ceil(D/16), take at most half of the SMs' solve slots (16 / fb_solve_warps(S) CTAs an SM: 2 at S = 256, 1 at
// 512), else 32: B = 1 at D = 768 and S = 512, 48 CTAs (not 24); d4w256h4 B=8 S = 256, 128 (not 64).
// A CTA's time is its chain of 8 blocks (rhs, x, update: see "Count" above); at 16 columns the update and the rhs
// halve (24 mmas, 8 splits), x and the panels do not, and twice the CTAs each load the same panels, and take twice
// the SMs from the side streams. Measured (H200, the trainer, gpu11c, gpu11d; 16 / 32 columns): d4w256h4 B=8 T=256
// 1.688M / 1.647-1.656M tok/s (1.747M / 1.713-1.722M with its feedback calls in parts); d12 B=8 T=1024 (384 CTAs)
// 20.2 / 19.2-19.5 ms; B=2 T=4096 (S = 512: 96 CTAs, one an SM, 73% of the SMs) 35.0, 34.7 / 33.4, 33.4 ms.
static int fb_cols_mode = -1;   // -1: not chosen yet
static int fb_solve_cols(int B, int D, int S) {
    if (fb_cols_mode < 0) {
        const char *e = getenv("SESSA_FB_COLS");
        if (e != NULL && strcmp(e, "0") != 0 && strcmp(e, "16") != 0 && strcmp(e, "32") != 0)
            fatal("feedback: SESSA_FB_COLS=%s (need 16, 32, or 0 for automatic)", e);
        fb_cols_mode = e ? atoi(e) : 0;
    }
    if (fb_cols_mode != 0 && fb_cols_mode != 16 && fb_cols_mode != 32)
        fatal("feedback: SESSA_FB_COLS=%d (need 16, 32, or 0 for automatic)", fb_cols_mode);
    return fb_cols_mode ? fb_cols_mode : B * ceil_div(D, 16) <= fb_sm_count() * (16 / fb_solve_warps(S)) / 2 ? 16 : 32;
}

// the launch of a solve: dynamic shared memory past 48 KiB, carveout to the maximum (2 CTAs per SM; set once per
// kernel: two attribute calls per launch were host time on every call of the chain); with mode 1-2
// (fb_solve_inv_mode(vec): 0 unless vec) fb_inverse_kernel<BWD> first (Minv from scratch) and the kernel inv, with
// mode 2 launched by programmatic dependent launch; with mode 3 the kernel inv on the Minv made before
// (fb_inverses); with mode 0 the kernel own; own16 and inv16 the same at 16 columns a CTA (fb_solve_cols). vec also
// picks the solve's 16-byte output stores (the kernels' argument before Minv).
template <bool BWD, int NW, typename... KArgs, typename... Args>
static void fb_launch_solve(void (*own16)(KArgs...), void (*inv16)(KArgs...), void (*own)(KArgs...),
                            void (*inv)(KArgs...), int vec, float *Minv, float *Ls, const float *L,
                            const float *gamma, int u0, int Sv, int S, int B, int T, int D, int side_ok,
                            cudaStream_t stream, Args... args) {
    int mode = fb_solve_inv_mode(vec, side_ok), cols = fb_solve_cols(B, D, S);
    if (S > NW * FB_R) fatal("fb_launch_solve: a superblock of %d rows for a solve of %d warps", S, NW);
    void (*kernel)(KArgs...) = cols == 16 ? (mode > 0 ? inv16 : own16) : mode > 0 ? inv : own;
    if (mode == 1 || mode == 2) fb_inverses<BWD>(Minv, (float *)Ls, L, gamma, u0, Sv, S, B, T, stream);
    static void (*ready[8])(KArgs...);         // the kernels whose attributes are set (once: host time per call)
    int k = 0;
    while (k < 8 && ready[k] != NULL && ready[k] != kernel) k++;
    if (k == 8) fatal("fb_launch_solve: more than 8 solve kernels");
    if (ready[k] == NULL) {
        cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)fb_solve_smem(NW * FB_R)));
        cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
        ready[k] = kernel;
    }
    cudaLaunchAttribute pdl;
    pdl.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    pdl.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = dim3(ceil_div(D, cols), B); cfg.blockDim = dim3(NW * WARP_SIZE); cfg.dynamicSmemBytes = fb_solve_smem(S);
    cfg.stream = stream; cfg.attrs = &pdl; cfg.numAttrs = mode == 2;
    cudaCheck(cudaLaunchKernelEx(&cfg, kernel, args..., vec, mode > 0 ? (const float *)Minv : NULL,
                                 mode > 0 ? (const float *)Ls : NULL, u0, Sv, S, T, D));
}
// the two solves, NW warps a CTA (fb_solve_warps(S): fb_fwd_solve, fb_bwd_solve pick it); Minv: scratch for the
// inverses, (B, S/32, 32, 32) fp32; Ls: the split panels, (B, S, S) (both made by the call with SESSA_FB_INV=1-2,
// before it by fb_inverses with 3; not used with 0)
// Fused x (SESSA_FB_FUSEDX, default 1; 0: the schedule above; read at the first solve, dev/cuda's checks set
// fb_fused_x_on to compare, the same bits): at 16 columns and 16 warps (B = 1 at D = 768, S = 512: 48 CTAs) warp q
// makes x_q itself right after its rhs, from registers: its 4 C tiles' products interleaved (each tile's in X's
// order), no barrier 1, no ra round trip, xa and xs by the iteration's parity (one more 32x32 tile of shared
// memory, fb_solve_smem). Measured (H200, the 15th session; dev/cuda/feedback_phases.cu at B=1 T=8192, mean
// cycles per CTA 0 / 1): forward 45.7k / 41.2k (no acc), 47.1k / 42.7k (acc); backward 38.5k / 35.7k, 39.8k / 37.1k;
// the trainer's d12 B=1 T=8192 165.1k / 167.3k and, in a later call, 164.6k / 166.2k tok/s (medians of 2, gpu_session.sh
// ab). Not at 32 columns (B=8): x is 8 C tiles there
// (8 warps now), and one more tile of shared memory would leave two CTAs of 8 warps an SM no room at S = 256.
// Also measured then, not kept (same bits; feedback_phases and the trainer, as above): the updates' products
// interleaved over the n-tiles (no change in cycles: ptxas interleaves already), and the critical warp's update
// first, the other updating warps held at a named barrier until it had issued its products (forward 44.9k cycles
// against 42.7k with the fused x alone; d12 B=1 164.1k tok/s).
static int fb_fused_x_on = -1;   // -1: not chosen yet
static int fb_fused_x(void) { return fb_env_choice(&fb_fused_x_on, "SESSA_FB_FUSEDX", 1, 1); }
template <bool BWD, int MT, int NW> struct FbSolveKernels;   // the INV kernel, fused x or not (only where it applies)
template <int MT, int NW> struct FbSolveKernels<false, MT, NW> {
    static decltype(&fb_fwd_solve_kernel<true, MT, NW>) pick(int fx) {
        if constexpr (MT == 1 && NW == 16) return fx ? fb_fwd_solve_kernel<true, MT, NW, true> : fb_fwd_solve_kernel<true, MT, NW>;
        else return fb_fwd_solve_kernel<true, MT, NW>;
    }
};
template <int MT, int NW> struct FbSolveKernels<true, MT, NW> {
    static decltype(&fb_bwd_solve_kernel<true, MT, NW>) pick(int fx) {
        if constexpr (MT == 1 && NW == 16) return fx ? fb_bwd_solve_kernel<true, MT, NW, true> : fb_bwd_solve_kernel<true, MT, NW>;
        else return fb_bwd_solve_kernel<true, MT, NW>;
    }
};
template <int NW>
static void fb_fwd_solve_w(float *s, float *c, floatX *s3, const float *acc, int has_acc, const float *Pd,
                           const floatX *f, const float *gamma, float *Minv, float *Ls, int u0, int Sv, int S, int B,
                           int T, int D, cudaStream_t stream, int side_ok) {
    int fx = fb_fused_x();
    fb_launch_solve<false, NW>(fb_fwd_solve_kernel<false, 1, NW>, FbSolveKernels<false, 1, NW>::pick(fx),
                               fb_fwd_solve_kernel<false, 2, NW>, FbSolveKernels<false, 2, NW>::pick(fx),
                               fb_fwd_vec(s, c, s3, f, D), Minv, Ls, Pd, gamma, u0, Sv, S, B, T, D, side_ok, stream,
                               s, c, s3, acc, has_acc, Pd, f, gamma);
}
template <int NW>
static void fb_bwd_solve_w(floatX *u3, floatX *df, const float *acc, int has_acc, const float *PcT,
                           const float *gs, FbGateBwd gb, float *Minv, float *Ls, int u0, int Sv, int S, int B, int T,
                           int D, cudaStream_t stream, int side_ok) {
    int fx = fb_fused_x();
    fb_launch_solve<true, NW>(fb_bwd_solve_kernel<false, 1, NW>, FbSolveKernels<true, 1, NW>::pick(fx),
                              fb_bwd_solve_kernel<false, 2, NW>, FbSolveKernels<true, 2, NW>::pick(fx),
                              fb_bwd_vec(u3, df, gs, &gb, D), Minv, Ls, PcT, NULL, u0, Sv, S, B, T, D, side_ok, stream,
                              u3, df, acc, has_acc, PcT, gs, gb);
}
// side_ok: a call of one superblock in parts (fb_inverse_where)
static void fb_fwd_solve(float *s, float *c, floatX *s3, const float *acc, int has_acc, const float *Pd,
                         const floatX *f, const float *gamma, float *Minv, float *Ls, int u0, int Sv, int S, int B,
                         int T, int D, cudaStream_t stream, int side_ok = 0) {
    (fb_solve_warps(S) == 16 ? fb_fwd_solve_w<16> : fb_fwd_solve_w<8>)(s, c, s3, acc, has_acc, Pd, f, gamma, Minv, Ls,
                                                                       u0, Sv, S, B, T, D, stream, side_ok);
}
// gs = dL/ds, or NULL and gb the gate's dgated, gt (FbGateBwd: gs = dgated * gt formed in the solve)
static void fb_bwd_solve(floatX *u3, floatX *df, const float *acc, int has_acc, const float *PcT,
                         const float *gs, FbGateBwd gb, float *Minv, float *Ls, int u0, int Sv, int S, int B, int T,
                         int D, cudaStream_t stream, int side_ok = 0) {
    (fb_solve_warps(S) == 16 ? fb_bwd_solve_w<16> : fb_bwd_solve_w<8>)(u3, df, acc, has_acc, PcT, gs, gb, Minv, Ls, u0,
                                                                       Sv, S, B, T, D, stream, side_ok);
}

// ----------------------------------------------------------------------------
// backward kernels (the solves above are the forward's and the backward's)

// the elementwise slab kernels' threads: a thread takes 4 consecutive columns of a row of S (16-byte fp32 and
// 8-byte bf16 accesses), S / 4 threads a row, fb_slab_rows(S) rows per pass of 256 threads (4 at S = 256). The slab
// kernel runs one pass a CTA (one row a thread); fb_dz_kernel CTAs of fb_slab_cta_rows(S) = max(16, fb_slab_rows(S))
// rows but at most FB_SLAB_IT = 4 rows a thread (8 rows at S = 512), their loads issued before any use.
#define FB_SLAB_CTA_ROWS 16
#define FB_SLAB_IT 4                    // FB_SLAB_CTA_ROWS / fb_slab_rows(256)
__host__ __device__ constexpr int fb_slab_rows(int S) { return 256 / (S / 4); }
__host__ __device__ constexpr int fb_slab_cta_rows(int S) {   // (S = 512: 2 rows a pass, 4 a thread: 8 rows a CTA)
    return fb_slab_rows(S) >= FB_SLAB_CTA_ROWS ? fb_slab_rows(S)
         : fb_slab_rows(S) * FB_SLAB_IT < FB_SLAB_CTA_ROWS ? fb_slab_rows(S) * FB_SLAB_IT : FB_SLAB_CTA_ROWS;
}
static_assert(fb_slab_cta_rows(FB_SMAX) <= fb_slab_rows(FB_SMAX) * FB_SLAB_IT && fb_slab_cta_rows(256) == 16, "a dZ thread's rows");

// slab of key superblock [u0, u0+Sv): rows i = t - u0 < M = T - u0, columns jj < S (j = u0 + jj).
// Pc[i][jj] = gamma_t exp(Zs[i][jj] - lse_t) for jj < Sv and j < t, else 0, into Pc3 (B, 3T, S) in the Y3 layout
// (rows 3i, 3i+1, 3i+2 = Pc_hi, Pc_lo, Pc_hi: the chain GEMM's A^T). Zs: (B, T, S) (columns >= Sv not read
// as numbers: never written by the GEMM).
// The diagonal block (t in U) also goes out in fp32, transposed, for the in-superblock solve: PcT (B, S, S),
// PcT[jj][i] = Pc[i][jj] for i, jj < Sv, through a shared tile [R][S + 1] (the CTAs with rows i < Sv): column jj
// of the CTA's R rows is 4 R contiguous bytes of PcT (the former 4-byte stores straight from the row layout touched
// a 32-byte sector each: 0.5M sectors per call at B=8).
// A CTA takes R = fb_slab_rows(S) rows (4 at S = 256), one row a thread: the most CTAs, so every call fills the SMs
// (B=1 M=256: 64 CTAs).
// Cost: 10 bytes per element (Zs in, Pc3 out) and 4 more on the diagonal block: B=8 T=1024 S=256, 640 rows on
// average, 13 MB + 2.1 MB, ~3.5 us at ~4.3 TB/s (the former kernel: 14.1 us per call in the d12 profile).
// Why one row a thread (H200, fbbench "side kernels alone", per layer, B=8 T=1024 / B=1 T=8192): 16 rows a CTA
// (4 a thread, the loads first) whatever the grid 34.1 / 199.3 us; 4 a thread halved to 2 and 1 while the grid had
// fewer than 2 CTAs an SM 31.4 / 160.9; at most 2 a thread 28.9 / 134.9; one 27.1 / 134.8 (2.25 / 2.63 TB/s): more
// CTAs in flight beat more loads a thread at both shapes. Floor (~3.8 TB/s + ~1 us a call): 4 + 16 = ~20 us a
// layer at B=8 (61 MB), 32 + 93 = ~125 us at B=1 (354 MB).
// grid (ceil(M / R), B), 256 threads.
// Pd != NULL (one superblock, u0 = 0: the forward keeps the slab, FbKeep below): Pc[i][jj] = gamma_t Pd[i][jj] from
// the forward's fp32 alpha Pd (B, S, S) = exp(Z - lse_t) as fb_fwd_rows_kernel wrote it (Zs and lse not read): the
// same product as from Zs, so the same bits when the forward's logits are the slab GEMM's.
__global__ void fb_bwd_slab_kernel(floatX *Pc3, float *PcT, const float *Zs, const float *Pd, const float *lse,
                                   const float *gamma, int u0, int Sv, int S, int T) {
    __shared__ float tile[fb_slab_rows(FB_R) * (FB_R + 1)];   // >= R (S + 1) = 1024 + 1024 / S for every S >= 32
    int tpr = S / 4, R = fb_slab_rows(S), b = blockIdx.y;
    int r = threadIdx.x / tpr, jj = 4 * (threadIdx.x % tpr), i0 = blockIdx.x * R, i = i0 + r, t = u0 + i;
    if (r < R && i < T - u0) {
        float g = gamma[(size_t)b * T + t], p[4];
        if (Pd != NULL) {
            FbF4 a4 = *(const FbF4 *)&Pd[((size_t)b * S + i) * S + jj];
            float a[4] = {a4.x, a4.y, a4.z, a4.w};
#pragma unroll
            for (int k = 0; k < 4; k++) p[k] = jj + k < Sv && u0 + jj + k < t ? g * a[k] : 0.0f;
        } else {
            FbF4 z4 = *(const FbF4 *)&Zs[((size_t)b * T + i) * S + jj];
            float l = lse[(size_t)b * T + t], z[4] = {z4.x, z4.y, z4.z, z4.w};
#pragma unroll
            for (int k = 0; k < 4; k++) p[k] = jj + k < Sv && u0 + jj + k < t ? g * expf(z[k] - l) : 0.0f;
        }
        FbU2 hi, lo;                            // fb_split3's bits, 4 columns at a time
        fb_split_pack(&hi.x, &lo.x, p[0], p[1]);
        fb_split_pack(&hi.y, &lo.y, p[2], p[3]);
        floatX *y = Pc3 + ((size_t)b * 3 * T + 3 * i) * S + jj;
        *(FbU2 *)y = hi;
        *(FbU2 *)(y + S) = lo;
        *(FbU2 *)(y + 2 * S) = hi;
        if (i0 < Sv)
#pragma unroll
            for (int k = 0; k < 4; k++) tile[r * (S + 1) + jj + k] = p[k];
    }
    if (i0 >= Sv) return;                       // (the whole CTA)
    __syncthreads();
    int nr = Sv - i0 < R ? Sv - i0 : R;         // PcT[jj][i0 + r] = tile[r][jj], consecutive threads along r
    for (int e = threadIdx.x; e < Sv * R; e += blockDim.x) {
        int c = e / R, rr = e % R;
        if (rr < nr) PcT[((size_t)b * S + c) * S + i0 + rr] = tile[rr * (S + 1) + c];
    }
}

// for the rows t in [u0, u0+Sv) of U, one warp per row: dgamma_t = u_t . c_t with u = u_hi + u_lo from u3 (this is
// also the Delta_t of the softmax backward), and s_t split into sU3 (B, S, 3D), rows [s_hi | s_lo | s_hi] (the Y3
// layout: the u s^T GEMM's B). 18 bytes per element moved (u_hi, u_lo, c, s in: 12; 3 bf16 out: 6):
// B=8 S=256 D=768 is 28 MB, ~6.6 us at the H200's ~4.3 TB/s (9.0 us measured per call, d12 profile). vec (D a
// multiple of 4, c and s 16-byte aligned): a lane takes 4 consecutive columns per step (16-byte c, s loads, 8-byte
// bf16 loads and stores) and issues the loads of FB_DG_IT steps (D = 768: all 6) before using them; at B=1 (256
// rows, 2 warps per SM) the former loop's load -> use -> store per step (the stores may alias the loads: not
// reordered) made it latency-bound: 5.6 us per call for 3.5 MB. Else one column per step. Same sum order.
// grid (ceil(Sv/4), B), 128 threads (4 rows a CTA: 64 CTAs at B=1, on 64 SMs; one-warp CTAs on all SMs there
// measured the same, H200 fbbench: 91.3 against 91.4 us a layer at B=1 T=8192, 33.0 both at B=8 T=1024).
#define FB_DG_IT 6
__global__ void fb_bwd_rows_kernel(float *dgamma, floatX *sU3, const floatX *u3, const float *c, const float *s,
                                   FbGateBwd gb, int u0, int Sv, int S, int T, int D, int vec) {
    int w = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE, b = blockIdx.y;
    int r = blockIdx.x * (blockDim.x / WARP_SIZE) + w;
    if (r >= Sv) return;
    size_t t = (size_t)b * T + u0 + r, row = t * D, row3 = 3 * t * D, srow = ((size_t)b * S + r) * 3 * D;
    float acc = 0.0f;
    if (vec) {
        for (int i0 = 4 * lane; i0 < D; i0 += 4 * WARP_SIZE * FB_DG_IT) {
            FbF4 cv[FB_DG_IT], sv[FB_DG_IT];
            FbU2 uh[FB_DG_IT], ul[FB_DG_IT], dg[FB_DG_IT];
#pragma unroll
            for (int n = 0; n < FB_DG_IT; n++) {   // the loads first
                int i = i0 + 4 * WARP_SIZE * n;
                if (i < D) {
                    cv[n] = *(const FbF4 *)&c[row + i]; sv[n] = *(const FbF4 *)&s[row + i];
                    uh[n] = *(const FbU2 *)&u3[row3 + i]; ul[n] = *(const FbU2 *)&u3[row3 + 2 * D + i];
                    if (gb.dgt) dg[n] = *(const FbU2 *)&gb.dgated[row + i];
                }
            }
#pragma unroll
            for (int n = 0; n < FB_DG_IT; n++) {
                int i = i0 + 4 * WARP_SIZE * n;
                if (i >= D) continue;
                acc = fmaf(bf16x2_lo(uh[n].x) + bf16x2_lo(ul[n].x), cv[n].x, acc);
                acc = fmaf(bf16x2_hi(uh[n].x) + bf16x2_hi(ul[n].x), cv[n].y, acc);
                acc = fmaf(bf16x2_lo(uh[n].y) + bf16x2_lo(ul[n].y), cv[n].z, acc);
                acc = fmaf(bf16x2_hi(uh[n].y) + bf16x2_hi(ul[n].y), cv[n].w, acc);
                FbU2 hi, lo;
                fb_split_pack(&hi.x, &lo.x, sv[n].x, sv[n].y);
                fb_split_pack(&hi.y, &lo.y, sv[n].z, sv[n].w);
                *(FbU2 *)&sU3[srow + i] = hi;
                *(FbU2 *)&sU3[srow + D + i] = lo;
                *(FbU2 *)&sU3[srow + 2 * D + i] = hi;
                if (gb.dgt)                     // the gate's dgt = dgated * s (gate_backward's products)
                    *(FbU2 *)&gb.dgt[t * gb.ld + i] = FbU2{pack_bf16x2(bf16x2_lo(dg[n].x) * sv[n].x, bf16x2_hi(dg[n].x) * sv[n].y),
                                                           pack_bf16x2(bf16x2_lo(dg[n].y) * sv[n].z, bf16x2_hi(dg[n].y) * sv[n].w)};
            }
        }
    } else {
        for (int i = lane; i < D; i += WARP_SIZE) {
            acc = fmaf(fb_load_x3(u3, t, i, D), c[row + i], acc);
            fb_split3(&sU3[srow + i], D, s[row + i]);
            if (gb.dgt) gb.dgt[t * gb.ld + i] = __float2bfloat16(__bfloat162float(gb.dgated[row + i]) * s[row + i]);
        }
    }
    acc = warp_reduce_sum(acc);
    if (lane == 0) dgamma[t] = acc;
}

// dZ[i][jj] = Pc[i][jj] (US[i][jj] - dgamma_t), t = u0 + i, for jj < Sv (Pc is 0 where j >= t); bf16, written over
// Pc_hi's first copy in Pc3 (row 3i: dZ is the (T - u0, S) matrix of row stride 3S there; each element read then
// written by one thread). Columns jj >= Sv keep their Pc_hi (never read; US there is not a number). 10 bytes per
// element (Pc_hi, Pc_lo, US in, dZ out): B=8 T=1024 S=256, 13 MB, ~3 us (5.5 us per call measured, d12 profile,
// with a row a thread; 3.3 / 2.9 us a call at B=8 T=1024 / B=1 T=8192 now, 4.0 / 3.8 TB/s). Up to FB_SLAB_IT
// rows a thread, the loads first.
// grid (ceil((T - u0) / fb_slab_cta_rows(S)), B), 256 threads.
__global__ void fb_dz_kernel(floatX *dZ_Pc3, const float *US, const float *dgamma, int u0, int Sv, int S, int T) {
    int tpr = S / 4, rpc = fb_slab_rows(S), R = fb_slab_cta_rows(S), b = blockIdx.y;
    int rr = threadIdx.x / tpr, jj = 4 * (threadIdx.x % tpr), i0 = blockIdx.x * R, M = T - u0;
    if (rr >= rpc || jj >= Sv) return;
    FbU2 hi[FB_SLAB_IT], lo[FB_SLAB_IT];
    FbF4 us4[FB_SLAB_IT];
    float dg[FB_SLAB_IT];
#pragma unroll
    for (int n = 0; n < FB_SLAB_IT; n++) {     // the loads first
        int r = rr + n * rpc, i = i0 + r;
        if (r < R && i < M) {
            size_t o = ((size_t)b * T + i) * S + jj, o3 = ((size_t)b * 3 * T + 3 * i) * S + jj;
            hi[n] = *(const FbU2 *)&dZ_Pc3[o3];
            lo[n] = *(const FbU2 *)&dZ_Pc3[o3 + S];
            us4[n] = *(const FbF4 *)&US[o];
            dg[n] = dgamma[(size_t)b * T + u0 + i];
        }
    }
#pragma unroll
    for (int n = 0; n < FB_SLAB_IT; n++) {
        int r = rr + n * rpc, i = i0 + r;
        if (!(r < R && i < M)) continue;
        float us[4] = {us4[n].x, us4[n].y, us4[n].z, us4[n].w}, d[4];
        float h[4] = {bf16x2_lo(hi[n].x), bf16x2_hi(hi[n].x), bf16x2_lo(hi[n].y), bf16x2_hi(hi[n].y)};
        float lw[4] = {bf16x2_lo(lo[n].x), bf16x2_hi(lo[n].x), bf16x2_lo(lo[n].y), bf16x2_hi(lo[n].y)};
#pragma unroll
        for (int k = 0; k < 4; k++) d[k] = jj + k < Sv ? (h[k] + lw[k]) * (us[k] - dg[n]) : h[k];
        *(FbU2 *)&dZ_Pc3[((size_t)b * 3 * T + 3 * i) * S + jj] = FbU2{pack_bf16x2(d[0], d[1]), pack_bf16x2(d[2], d[3])};
    }
}

// dst[row * ld + col] = bf16(src[row * D + col]) for rows < BT: a CTA per row; vec (D and ld multiples of 4, src
// 16-byte and dst 8-byte aligned): 4 columns a thread per step. B=8 T=1024 D=768: 37.7 MB moved, ~10 us.
__global__ void fb_store_strided_kernel(floatX *dst, int ld, const float *src, int D, int vec) {
    const float *x = src + (size_t)blockIdx.x * D;
    floatX *y = dst + (size_t)blockIdx.x * ld;
    if (vec) {
        for (int i = 4 * threadIdx.x; i < D; i += 4 * blockDim.x) {
            FbF4 v = *(const FbF4 *)&x[i];
            *(FbU2 *)&y[i] = FbU2{pack_bf16x2(v.x, v.y), pack_bf16x2(v.z, v.w)};   // round to nearest even, as __float2bfloat16
        }
    } else {
        for (int i = threadIdx.x; i < D; i += blockDim.x) y[i] = __float2bfloat16(x[i]);
    }
}

// ----------------------------------------------------------------------------
// scratch: regions carved in order, each 256-byte aligned (cuBLASLt likes aligned operands)

static inline int fb_ldz(int T) { return fb_round_up(T, 64); }   // row stride of the forward's (S, T) blocks

typedef struct { char *p; size_t off; } FbCarve;
static void *fb_take(FbCarve *c, size_t bytes) {
    void *r = c->p ? c->p + c->off : NULL;
    c->off += (bytes + 255) / 256 * 256;
    return r;
}

// the superblock-local buffers come fb_nbuf() = 2 or 3 times (index k = q % nbuf for the q-th superblock in the
// order of the loop): the next superblocks' are written on side streams while U's are read (fb_streams,
// "Buffers" below); acc too (accs[k]: the lookahead writes the next superblock's far part while U's is read; acc
// points at U's); Minv[k] (the solves' inverses: SESSA_FB_INV=3 makes them on the side stream with Pd[k] / PcT[k])
#define FB_NBUF 3                  // the most buffer sets (SESSA_FB_BUFFERS=3)
static int fb_nbuf_on = 0;         // SESSA_FB_BUFFERS (2 or 3, default 2) when first used; dev/cuda's checks set it
static int fb_nbuf(void) {
    if (fb_nbuf_on == 0) {
        const char *e = getenv("SESSA_FB_BUFFERS");
        fb_nbuf_on = e ? atoi(e) : 2;
    }
    if (fb_nbuf_on < 2 || fb_nbuf_on > FB_NBUF) fatal("feedback: SESSA_FB_BUFFERS=%d (need 2 or 3)", fb_nbuf_on);
    return fb_nbuf_on;
}
// the buffer sets a call uses: no more than it has superblocks
static int fb_sets(int B, int T) {
    int n = ceil_div(T, fb_superblock(B, T));
    return fb_nbuf() < n ? fb_nbuf() : n;
}
typedef struct {
    floatX *s3, *P3[FB_NBUF];
    float *Z, *Pd[FB_NBUF], *accs[FB_NBUF], *acc, *Minv[FB_NBUF], *Ls[FB_NBUF];
} FbFwdScratch;
typedef struct {
    floatX *u3, *Pc3[FB_NBUF], *sU3;
    float *dq, *Zs[FB_NBUF], *PcT[FB_NBUF], *accs[FB_NBUF], *acc, *Minv[FB_NBUF], *Ls[FB_NBUF];
} FbBwdScratch;

static size_t fb_fwd_carve(FbFwdScratch *w, void *scratch, int B, int T, int D) {
    FbCarve c = {(char *)scratch, 0};
    int S = fb_superblock(B, T);
    size_t BTD = (size_t)B * T * D, BSZ = (size_t)B * S * fb_ldz(T);
    w->s3 = (floatX *)fb_take(&c, 3 * BTD * sizeof(floatX));        // X3 layout: (B, 3T, D)
    w->Z = (float *)fb_take(&c, BSZ * sizeof(float));
    for (int k = 0; k < fb_sets(B, T); k++) {
        w->P3[k] = (floatX *)fb_take(&c, 3 * BSZ * sizeof(floatX));  // Y3 layout: (B, S, 3 ldz)
        w->Pd[k] = (float *)fb_take(&c, (size_t)B * S * S * sizeof(float));
        w->accs[k] = (float *)fb_take(&c, (size_t)B * S * D * sizeof(float));
        w->Minv[k] = (float *)fb_take(&c, (size_t)B * S * FB_R * sizeof(float));   // the solve's diagonal inverses
        w->Ls[k] = (float *)fb_take(&c, (size_t)B * S * S * sizeof(float));       // and its panels split
    }
    w->acc = w->accs[0];
    return c.off;
}
static size_t fb_bwd_carve(FbBwdScratch *w, void *scratch, int B, int T, int D) {
    FbCarve c = {(char *)scratch, 0};
    int S = fb_superblock(B, T);
    size_t BTD = (size_t)B * T * D, BTS = (size_t)B * T * S, BSD = (size_t)B * S * D;
    w->u3 = (floatX *)fb_take(&c, 3 * BTD * sizeof(floatX));        // X3 layout: (B, 3T, D)
    w->dq = (float *)fb_take(&c, BTD * sizeof(float));
    for (int k = 0; k < fb_sets(B, T); k++) {
        w->Zs[k] = (float *)fb_take(&c, BTS * sizeof(float));          // the slab's logits, then u s^T
        w->Pc3[k] = (floatX *)fb_take(&c, 3 * BTS * sizeof(floatX));   // Y3 layout: (B, 3T, S); dZ over rows 3i
        w->PcT[k] = (float *)fb_take(&c, (size_t)B * S * S * sizeof(float));
        w->accs[k] = (float *)fb_take(&c, BSD * sizeof(float));
        w->Minv[k] = (float *)fb_take(&c, (size_t)B * S * FB_R * sizeof(float));   // the solve's diagonal inverses
        w->Ls[k] = (float *)fb_take(&c, (size_t)B * S * S * sizeof(float));       // and its panels split
    }
    w->sU3 = (floatX *)fb_take(&c, 3 * BSD * sizeof(floatX));       // Y3 layout: (B, S, 3D)
    w->acc = w->accs[0];
    return c.off;
}

// Overlap. Only the chain (acc GEMM + in-superblock solve, superblock after superblock) depends on the previous
// superblocks; the rest runs beside it on two side streams: forward, stream a makes superblock U+1's logits and P
// (Z GEMM, row pass) while the main stream runs U's chain; backward, stream a makes superblock U-1's slab (GEMM,
// slab kernel) and stream b finishes U (dgamma, u s^T, dZ, dkb, dqb) while the main stream runs U-1's chain. At
// B=1 the solve fills 24 of 132 SMs, so the side work is nearly free there. Events order every read after its
// write across streams (ready: a's buffer k is written; solved: U's solve is done; freed: b no longer reads buffer
// k); buffers k = q % nb (FbFwdScratch; "Buffers" below). fork/join make the side streams part of a CUDA graph capture.
// Each side stream has its own cuBLASLt workspace (3 x 32 MiB, once per process). The first H200 run of the overlap
// shared one: results right, but a backward at S=64, B=1 T=8192 took 2.2 s instead of ~14 ms, most likely GEMMs of
// two streams meeting in one workspace (the FB_S=64 line of the fbbench stage shows whether this was it).
// SESSA_FB_STREAMS=0: everything on the calling stream (the events then order nothing), for comparison.
// Predicted: at B=1 T=8192 the forward's Z + row pass (~25 of ~85 us per superblock) and the backward's slab and
// tail (~45 of ~100 us) hide behind the chain: 5.90 -> ~4.0 ms; at B=8 T=1024 the solves leave ~1/4 of the SMs free:
// 0.75 -> ~0.65 ms. Measured (H200, dev/cuda feedback_backward bench, with FB8's solve changes; fwd + bwd, overlap
// against SESSA_FB_STREAMS=0): B=1 T=8192 4.14 / 5.15 ms, B=2 T=4096 2.02 / 2.56, B=4 T=2048 1.16 / 1.32, B=8
// T=1024 0.680 / 0.774, B=16 T=512 0.506 / 0.532, B=32 T=256 0.398 / 0.386 (one superblock: since then on one
// stream); d12 B=8 T=1024 training step 22.2 / 23.0 ms.
//
// Lookahead (SESSA_FB_LOOKAHEAD=1; the default 0: one acc GEMM per superblock, as before). The chain's acc GEMM
// has K = 3 u0 (forward) or 3 (T - u1) (backward), up to 3T, for an output of only Sv x D per sequence: at B=1
// T=8192 ~14 us of nvjet split-K + reduce per superblock, on the critical path. Only its last S keys depend on the
// superblock solved just before; the rest (the "far" part) is known one superblock earlier:
//   forward   acc_U = P[U, 0:u0-S] s[0:u0-S]          (far: s of U-2 and before, P of U; K = 3 (u0 - S))
//                   + P[U, u0-S:u0] s[u0-S:u0]        (near, on the chain: K = 3S, beta = 1 onto the far part)
//   backward  acc_U = Pc[u1+S:T, U]^T u[u1+S:T]       (far: u of U+2 and after; K = 3 (T - u1 - S))
//                   + Pc[u1:u1+S, U]^T u[u1:u1+S]     (near: K = 3 min(S, T - u1))
// The far GEMM of superblock U+1 runs on a side stream (forward b, idle there; backward c, its own: a makes slabs
// and b finishes superblocks) beside U's chain, after U+1's P / slab (ready) and U-1's solve (solved: the last
// record of it when the far GEMM is issued, before U's solve); far_done[k] lets the chain's near GEMM add onto it.
// acc is double-buffered (accs[k]): the far GEMM of U+1 writes accs[k'] while U's chain reads accs[k]; accs[k'] was
// last read by U-1's solve, which the far GEMM waits for. Superblocks with no far part (the first two forward, the
// last two backward) do their whole acc GEMM on the chain as before (the same bits); the others sum acc in another
// order (far + near, each in cuBLASLt's fixed order: deterministic, different last bits than SESSA_FB_LOOKAHEAD=0).
// Cost: one more GEMM launch per superblock with a far part, and 4 B S D bytes of scratch (the second acc).
// Predicted (B=1 T=8192): the near GEMM (256 x 768 x 768, ~4 us) replaces the ~14 us one on the forward chain.
// Measured (H200, fbbench fwd + bwd, one run of 10 calls each, 2 buffer sets, lookahead on / off): B=8 T=1024
// 0.714 / 0.663 ms, B=2 T=4096 2.206 / 1.961, B=1 T=8192 4.675 / 4.076: slower, hence off by default. The far
// GEMMs beside the chain take SMs from it (a persistent nvjet grid on every SM), and the total of GEMM work grows.
//
// Buffers (SESSA_FB_BUFFERS=3; the default 2: as before). With nb buffer sets the side stream may run nb - 1
// superblocks ahead of the chain: the slab of the backward's superblock it waits for the tail of it - nb (freed),
// the forward's P of q for the chain of q - nb. With 2, every second chain waits for a path through the side
// streams: solve(it-1) -> tail(it-1) (stream b) -> slab(it+1) (stream a; + the far GEMM of it+1) -> chain(it+1),
// so per two superblocks 2P >= tail + slab + chain. At B=1 T=8192 (alone, d12 profile per call) tail ~38 us (rows
// 5.6, u s^T ~10, dZ 4.9, dkb ~10, dqb ~7), slab ~12, chain ~40 (acc 14, inverses 4.3, solve 21): P >= 45 us even
// without contention, 77 measured (2.47 ms / 32); with 3: 3P >= tail + slab + chain, and the chain (~30 us with the
// lookahead) would set the pace. Measured (as above, 3 / 2 sets, lookahead off): B=8 T=1024 0.663 / 0.663 ms, B=2
// T=4096 2.062 / 1.961, B=1 T=8192 4.441 / 4.076: no gain (the side streams further ahead take more SMs from the
// chain), so 2 by default. Cost of the third: 10 B T S + 4 B S^2 + 4 B S D (backward; 28 MiB at B=8 T=1024, 21 at
// B=1 T=8192; the forward's sets fit inside the backward's larger scratch). A call of n < nb superblocks carves
// n sets (fb_sets: B=32 T=256, one superblock, 201 -> 173 MiB).
typedef struct {
    cudaStream_t a, b, c;
    cudaEvent_t fork, join_a, join_b, join_c, solved, gate, dz_done, dq_done, ready[FB_NBUF], freed[FB_NBUF], far_done[FB_NBUF];
} FbStreams;
static FbStreams fb_streams(cudaStream_t stream) {
    static FbStreams st;
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("SESSA_FB_STREAMS");
        on = !(e && e[0] == '0');
        cudaEvent_t *ev[] = {&st.fork, &st.join_a, &st.join_b, &st.join_c, &st.solved, &st.gate, &st.dz_done, &st.dq_done};
        for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++) cudaCheck(cudaEventCreateWithFlags(ev[i], cudaEventDisableTiming));
        for (int k = 0; k < FB_NBUF; k++) {
            cudaCheck(cudaEventCreateWithFlags(&st.ready[k], cudaEventDisableTiming));
            cudaCheck(cudaEventCreateWithFlags(&st.freed[k], cudaEventDisableTiming));
            cudaCheck(cudaEventCreateWithFlags(&st.far_done[k], cudaEventDisableTiming));
        }
        if (on) {
            cudaStream_t *side[FB_SIDE_STREAMS] = {&st.a, &st.b, &st.c};
            for (int i = 0; i < FB_SIDE_STREAMS; i++) {
                cudaCheck(cudaStreamCreateWithFlags(side[i], cudaStreamNonBlocking));
                fb_side_stream[i] = *side[i];
                cudaMallocCheck(&fb_side_workspace[i], cublaslt_workspace_size);
            }
        }
    }
    FbStreams r = st;
    if (!on) r.a = r.b = r.c = stream;
    return r;
}
static int fb_lookahead_on = -1;   // SESSA_FB_LOOKAHEAD (default 0) when first used; dev/cuda's checks set it
static int fb_lookahead(void) {
    if (fb_lookahead_on < 0) {
        const char *e = getenv("SESSA_FB_LOOKAHEAD");
        fb_lookahead_on = e && e[0] == '1';
    }
    return fb_lookahead_on;
}
// Tail (SESSA_FB_DQ_SIDE, default 1; 0: on stream b as before). The backward's tail of a superblock on stream b is a
// chain of five launches (dgamma + sU3, u s^T, dZ, dkb, dqb), ~100 us at B=1 T=8192 S=512 in the graphed d12 step (the
// H200 timeline of the fifteenth session: 3.8 + 47.8 + 16.5 + 15.4 + 16.4 us), and with two buffer sets the slab
// of superblock it+2 waits for it (freed), so that per two superblocks 2P >= tail + slab + chain (~100 + 35 + 73 us:
// P ~104 measured). dkb and dqb both read only dZ (and qb, kb): with 1, dqb runs on stream c (idle without the
// lookahead; with it, after its far GEMMs there) beside dkb on stream b, its accumulation still in superblock order
// (one stream), and b waits for it before it records freed. The same GEMMs with the same plans: the same bits.
// Measured (H200, the trainer, gpu_session.sh ab in two calls of the 15th session, 0 / 1, medians of 2 runs): d12 B=1
// T=8192 163.0k / 166.4k and 163.8k / 165.9k tok/s (+2.1%, +1.3%); d12 B=8 T=1024 429.3k / 430.8k and 426.6k / 428.5k;
// d4w256h4 1.845M / 1.850M and 1.848M / 1.855M (+0.3-0.4%). With three buffer sets too: B=1 165.2k (the tail
// sets the pace there).
static int fb_dq_side_on = -1;     // SESSA_FB_DQ_SIDE (default 1) when first used
static int fb_dq_side(void) {
    if (fb_dq_side_on < 0) {
        const char *e = getenv("SESSA_FB_DQ_SIDE");
        fb_dq_side_on = !(e && e[0] == '0');
    }
    return fb_dq_side_on;
}
// the other SESSA_FB_LOOKAHEAD, SESSA_FB_BUFFERS and SESSA_FB_DQ_SIDE settings (a second call restores them): dev/cuda's checks run both
static void fb_schedule_toggle(void) {
    fb_lookahead_on = !fb_lookahead();
    fb_nbuf_on = 5 - fb_nbuf();
    fb_dq_side_on = !fb_dq_side();
}
// waiter waits for the work issued to signaler so far (through event e)
static void fb_after(cudaStream_t waiter, cudaEvent_t e, cudaStream_t signaler) {
    cudaCheck(cudaEventRecord(e, signaler));
    cudaCheck(cudaStreamWaitEvent(waiter, e, 0));
}
// the side streams start after the work issued to the main stream so far / the main stream waits for both
static void fb_fork(const FbStreams *st, cudaStream_t stream) {
    cudaCheck(cudaEventRecord(st->fork, stream));
    cudaCheck(cudaStreamWaitEvent(st->a, st->fork, 0));
    cudaCheck(cudaStreamWaitEvent(st->b, st->fork, 0));
    cudaCheck(cudaStreamWaitEvent(st->c, st->fork, 0));
}
static void fb_join(const FbStreams *st, cudaStream_t stream) {
    fb_after(stream, st->join_a, st->a);
    fb_after(stream, st->join_b, st->b);
    fb_after(stream, st->join_c, st->c);
}

// the elementwise side kernels for superblock [u0, u0 + Sv), buffer set k (feedback_forward, feedback_backward;
// dev/cuda/feedback_backward.cu's bench times them alone)
static void fb_launch_fwd_rows(const FbFwdScratch *w, int k, float *lse, int u0, int Sv, int S, int B, int T,
                               cudaStream_t stream) {
    int wpr = fb_row_warps(u0 + Sv);
    fb_fwd_rows_kernel<<<dim3(ceil_div(Sv * wpr, 8), B), 256, 0, stream>>>(w->P3[k], w->Pd[k], lse, w->Z, fb_ldz(T),
                                                                             u0, Sv, S, T, wpr);
    cudaCheck(cudaGetLastError());
}
static void fb_launch_slab_to(floatX *Pc3, float *PcT, const float *Zs, const float *Pd, const float *lse,
                              const float *gamma, int u0, int Sv, int S, int B, int T, cudaStream_t stream) {
    fb_bwd_slab_kernel<<<dim3(ceil_div(T - u0, fb_slab_rows(S)), B), 256, 0, stream>>>(Pc3, PcT, Zs, Pd, lse, gamma,
                                                                                      u0, Sv, S, T);
    cudaCheck(cudaGetLastError());
}
static void fb_launch_slab(const FbBwdScratch *w, int k, const float *lse, const float *gamma, int u0, int Sv, int S,
                           int B, int T, cudaStream_t stream) {
    fb_launch_slab_to(w->Pc3[k], w->PcT[k], w->Zs[k], NULL, lse, gamma, u0, Sv, S, B, T, stream);
}
static void fb_launch_bwd_rows(const FbBwdScratch *w, float *dgamma, const float *c, const float *s, int u0, int Sv,
                               int S, int B, int T, int D, cudaStream_t stream, FbGateBwd gb = FbGateBwd{}) {
    int vec = D % 4 == 0 && ptr_alignment(c) >= 16 && ptr_alignment(s) >= 16 &&   // the kernel's 16- and 8-byte accesses
              (!gb.dgt || (ptr_alignment(gb.dgated) >= 8 && ptr_alignment(gb.dgt) >= 8 && gb.ld % 4 == 0));
    fb_bwd_rows_kernel<<<dim3(ceil_div(Sv, 4), B), 128, 0, stream>>>(dgamma, w->sU3, w->u3, c, s, gb, u0, Sv, S, T, D, vec);
    cudaCheck(cudaGetLastError());
}
static void fb_launch_dz(const FbBwdScratch *w, int k, const float *dgamma, int u0, int Sv, int S, int B, int T,
                         cudaStream_t stream) {
    fb_dz_kernel<<<dim3(ceil_div(T - u0, fb_slab_cta_rows(S)), B), 256, 0, stream>>>(w->Pc3[k], w->Zs[k], dgamma, u0,
                                                                                    Sv, S, T);
    cudaCheck(cudaGetLastError());
}

// the scratch of a call of exactly B x T
static size_t fb_scratch_at(int B, int T, int D) {
    FbFwdScratch fw;
    FbBwdScratch bw;
    size_t a = fb_fwd_carve(&fw, NULL, B, T, D), b = fb_bwd_carve(&bw, NULL, B, T, D);
    return a > b ? a : b;
}
// the scratch of any call of at most B x T (the trainer sizes it once for its largest shape and may call with
// smaller ones): for a fixed S it grows with B and T, but a smaller batch may get the larger superblock (fb_superblock:
// 512 at B <= FB_S_LONG_B, 256 above), so also the largest call of that batch, min(B, FB_S_LONG_B) x T (it can need
// more than B x T: B=5 T=2048 D=768 at S = 256 150 MB, B=4 T=2048 at S = 512 186 MB)
static size_t feedback_scratch_bytes(int B, int T, int D) {
    size_t a = fb_scratch_at(B, T, D), b = fb_scratch_at(B < FB_S_LONG_B ? B : FB_S_LONG_B, T, D);
    return a > b ? a : b;
}

static void feedback_check_shape(int B, int T, int D, int ld) {
    if (B < 1 || T < 1 || D < 1 || ld < D) fatal("feedback: invalid shape B=%d T=%d D=%d ld=%d (need ld >= D >= 1)", B, T, D, ld);
}

// ----------------------------------------------------------------------------

enum { FB_BEGIN = 1, FB_CHAIN = 2, FB_END = 4, FB_ALL = 7 };   // a call's parts ("Parts", below)

// The start of either direction: when the last superblock is partial (T % S != 0), the nb diagonal-block buffers
// (Pd forward, PcT backward, B x S x S fp32) cleared, because the solve reads whole 16-byte chunks past Sv (times 0
// there) and they must be finite, not stale scratch (a full superblock's row pass or slab writes all S x S entries
// of its block, zeros included: nothing to clear then, 2 x nb memsets a layer fewer at T = 256, 1024, 8192);
// then the side streams forked off the calling stream (all three are the calling stream when there is one
// superblock and the call is whole: nothing to overlap; a call in parts keeps them with one superblock too, so that
// its side work runs beside the caller's work between the parts).
// (begin 0: the streams only, for a call whose FB_BEGIN part was issued before; parts: the call's, FB_ALL if whole)
static FbStreams fb_begin(float *const *diag, int nb, int B, int S, int n, int T, cudaStream_t stream, int begin,
                          int parts) {
    FbStreams st = fb_streams(stream);
    if (n == 1 && parts == FB_ALL) st.a = st.b = st.c = stream;
    if (!begin) return st;
    for (int k = 0; T % S != 0 && k < nb; k++) cudaCheck(cudaMemsetAsync(diag[k], 0, (size_t)B * S * S * sizeof(float), stream));
    fb_fork(&st, stream);
    return st;
}

// Parts. A call may be issued in parts (parts = FB_ALL by default, the whole call), each part a call with the same
// arguments: FB_BEGIN, the start (the buffers cleared, the side streams forked) and the first superblock's side
// work, which needs only qb, kb (and lse, gamma): the forward's logits and row pass, the backward's first slab;
// FB_CHAIN, the rest up to the last solve; FB_END, the side streams joined (and the backward's dqb written). The
// caller's work in between runs beside the side streams: the trainer issues FB_BEGIN before the layer's work that
// comes ahead of the solve (forward: RoPE and the attention; backward: Linear_out's backward) and the
// backward's FB_END only where it reads dgamma, dqb, dkb (after the attention's backward), so that the first side
// work and the last superblock's tail (dgamma, u s^T, dZ, dkb, dqb on stream b) do not hold the main stream.
// Complete after FB_END only: the forward's c and lse (the side stream's row passes write lse), the backward's
// dgamma, dqb, dkb. Measured: train_sessa.cu, feedback_split.

// The layer's gate on the forward's way out (optional last argument of feedback_forward): out (B,T,D) bf16 =
// s * gt, gt rows ld apart (gate.cuh), made superblock by superblock on side stream b right after each solve, beside
// the next superblock's chain, so that only the last superblock's rows are left after the last solve (a whole
// gate_forward pass after the call was ~14 us a layer at d12 B=8 T=1024 on the main stream). Same bits as
// gate_forward: the same kernel on the same rows. Complete after FB_END.
typedef struct { floatX *out; const floatX *gt; int ld; } FbGate;

// Keep (optional last argument of both calls; the same for the forward and the backward of one layer): with one
// superblock (T <= S) the backward's slab, Pc = gamma alpha as bf16 hi/lo parts (Pc3, Y3 layout) and the fp32
// transposed diagonal block (PcT), is the whole of W, and the forward has alpha already (its row pass's fp32 Pd). So
// the forward makes the slab from Pd (fb_bwd_slab_kernel's Pd path, on side stream a after the row pass, beside the
// rest of the forward) into the caller's buffer, and the backward reads it there instead of recomputing the logits
// (slab GEMM) and the slab kernel at its start, where the chain waited for them (d4w256h4: the backward's first side
// work ran beside only Linear_out's backward). The same products: the same bits when the forward's logits GEMM is
// the slab GEMM's (the same cuBLASLt plan: T a multiple of 64 with T = S, e.g. T = 256). Memory:
// feedback_keep_bytes(B, T, D) per layer, ~10 B T S bytes (0 when T > S: nothing is kept then; 5 MiB at B=8
// T=256), used only when the call's B x T fits it. SESSA_FB_KEEP=0: not used (to compare).
// Measured (H200, `AB="SESSA_FB_KEEP=0 - ..." scripts/gpu_session.sh ab`, three rounds, off / on): d4w256h4 B=8
// T=256 1.786M, 1.767M, 1.792M / 1.822M, 1.832M, 1.828M tok/s (+2.6%); the backward's inverses kept as well (made
// by the forward, the backward's start then empty) measured the same (1.816M, 1.845M, 1.819M): not kept.
typedef struct { void *mem; size_t bytes; } FbKeep;
typedef struct { floatX *Pc3; float *PcT; } FbKept;
static size_t fb_keep_carve(FbKept *k, void *mem, int B, int T, int S) {
    FbCarve c = {(char *)mem, 0};
    k->Pc3 = (floatX *)fb_take(&c, (size_t)3 * B * T * S * sizeof(floatX));   // as FbBwdScratch's
    k->PcT = (float *)fb_take(&c, (size_t)B * S * S * sizeof(float));
    return c.off;
}
static size_t feedback_keep_bytes(int B, int T, int D) {
    (void)D;
    FbKept k;
    int S = fb_superblock(B, T);
    return T <= S ? fb_keep_carve(&k, NULL, B, T, S) : 0;
}
// the kept slab of a call (k) when it has one superblock and keep holds it (else 0)
static int fb_keep_mode = -1;   // SESSA_FB_KEEP (default 1) when first used
static int fb_keep_use(const FbKeep *keep, int B, int T, int S, FbKept *k) {
    if (!fb_env_choice(&fb_keep_mode, "SESSA_FB_KEEP", 1, 1) || keep == NULL || keep->mem == NULL || T > S) return 0;
    return fb_keep_carve(k, keep->mem, B, T, S) <= keep->bytes;
}

static void feedback_forward(float *s, float *c, float *lse, const floatX *f, const floatX *qb, const floatX *kb,
                             int ld, const float *gamma, int B, int T, int D, float *scratch, cudaStream_t stream,
                             int parts = FB_ALL, const FbGate *gate = NULL, const FbKeep *keep = NULL) {
    feedback_check_shape(B, T, D, ld);
    FbFwdScratch w;
    fb_fwd_carve(&w, scratch, B, T, D);
    fb_side_sms_set(B, D);
    int ldz = fb_ldz(T);
    float scale = 1.0f / sqrtf((float)D);
    int S = fb_superblock(B, T), n = ceil_div(T, S);
    long long sq = (long long)T * ld, sZ = (long long)S * ldz, sTD = (long long)T * D, sSD = (long long)S * D;
    int nb = fb_sets(B, T), la = fb_lookahead();
    FbStreams st = fb_begin(w.Pd, nb, B, S, n, T, stream, parts & FB_BEGIN, parts);
    int side_ok = n == 1 && parts != FB_ALL;   // (fb_inverse_where)
    int side_inv = fb_solve_inv_mode(fb_fwd_vec(s, c, w.s3, f, D), side_ok) == 3;   // the inverses beside the chain
    FbKept kp;
    int kept = fb_keep_use(keep, B, T, S, &kp);
    // superblock q's logits and P (and the inverses) on stream a, into buffers q % nb (once U = q - nb no longer
    // reads them); with keep (one superblock) then the backward's slab from P, after the chain's ready
    auto logits = [&](int q) {
        int u0 = q * S, u1 = u0 + S < T ? u0 + S : T, Sv = u1 - u0, k = q % nb;
        if (q >= nb) cudaCheck(cudaStreamWaitEvent(st.a, st.freed[k], 0));
        // 1. Z (Sv, u1) = qb[U] kb[0:u1]^T / sqrt(D)
        fb_gemm(FbOut{w.Z, CUDA_R_32F, ldz, sZ}, FbIn{qb + (size_t)u0 * ld, ld, sq, false}, FbIn{kb, ld, sq, true},
                FbShape{Sv, u1, D, B}, scale, 0.0f, st.a);
        // 2. lse, P = alpha[U, 0:u0] as bf16 hi/lo parts (P3), the fp32 diagonal block
        fb_launch_fwd_rows(&w, k, lse, u0, Sv, S, B, T, st.a);
        if (side_inv) fb_inverses<false>(w.Minv[k], w.Ls[k], w.Pd[k], gamma, u0, Sv, S, B, T, st.a);
        cudaCheck(cudaEventRecord(st.ready[k], st.a));
        if (kept) {   // (PcT's entries past Sv are read as numbers by the backward's solve: zeros, as fb_begin's)
            if (T % S != 0) cudaCheck(cudaMemsetAsync(kp.PcT, 0, (size_t)B * S * S * sizeof(float), st.a));
            fb_launch_slab_to(kp.Pc3, kp.PcT, NULL, w.Pd[k], lse, gamma, 0, Sv, S, B, T, st.a);
        }
    };
    // 3. acc (Sv, D) = P[:, K0:K1] s[K0:K1] for keys [K0, K1) of superblock q: P3[:, 3K0:3K1] s3[3K0:3K1], one GEMM
    //    of K = 3 (K1 - K0), onto acc (beta = 1) or not
    auto acc_gemm = [&](int q, int K0, int K1, float beta, cudaStream_t on) {
        int u0 = q * S, Sv = (u0 + S < T ? u0 + S : T) - u0, k = q % nb;
        fb_gemm(FbOut{w.accs[k], CUDA_R_32F, D, sSD}, FbIn{w.P3[k] + (size_t)3 * K0, 3 * ldz, 3 * sZ, false},
                FbIn{w.s3 + (size_t)3 * K0 * D, D, 3 * sTD, false}, FbShape{Sv, D, 3 * (K1 - K0), B}, 1.0f, beta, on);
    };
    // the lookahead's far part of superblock q (q >= 2), keys [0, u0 - S), on stream b once P of q and the solve of
    // q - 2 are done (the last record of solved, issued before q - 1's solve)
    auto far = [&](int q) {
        cudaCheck(cudaStreamWaitEvent(st.b, st.ready[q % nb], 0));
        cudaCheck(cudaStreamWaitEvent(st.b, st.solved, 0));
        acc_gemm(q, 0, (q - 1) * S, 0.0f, st.b);
        cudaCheck(cudaEventRecord(st.far_done[q % nb], st.b));
    };
    if (parts & FB_BEGIN) logits(0);
    for (int q = 0; (parts & FB_CHAIN) && q < n; q++) {
        int u0 = q * S, u1 = u0 + S < T ? u0 + S : T, Sv = u1 - u0, k = q % nb;
        if (q + 1 < n) logits(q + 1);              // beside this superblock's chain
        if (la && q + 1 >= 2 && q + 1 < n) far(q + 1);
        cudaCheck(cudaStreamWaitEvent(stream, st.ready[k], 0));
        w.acc = w.accs[k];
        if (la && q >= 2) {                        // the near part onto the far one
            cudaCheck(cudaStreamWaitEvent(stream, st.far_done[k], 0));
            acc_gemm(q, u0 - S, u0, 1.0f, stream);
        } else if (u0 > 0) {
            acc_gemm(q, 0, u0, 0.0f, stream);
        }
        // 4. the in-superblock solve
        fb_fwd_solve(s, c, w.s3, w.acc, u0 > 0, w.Pd[k], f, gamma, w.Minv[k], w.Ls[k], u0, Sv, S, B, T, D, stream, side_ok);
        cudaCheck(cudaEventRecord(st.solved, stream));      // s[U] written, accs[k] read
        cudaCheck(cudaEventRecord(st.freed[k], stream));   // P3[k], Pd[k], Minv[k], Ls[k] read
        if (gate) {                                          // gated[U] = s[U] * gt[U] beside the next chain
            fb_after(st.b, st.gate, stream);
            gate_forward_rows(gate->out, s, gate->gt, gate->ld, B, T, u0, u1, D, st.b);
        }
    }
    if (parts & FB_END) fb_join(&st, stream);
}

static void feedback_backward(floatX *df, float *dgamma, floatX *dqb, floatX *dkb, int ld, const float *gs,
                              const float *s, const float *c, const float *lse, const floatX *qb, const floatX *kb,
                              const float *gamma, int B, int T, int D, float *scratch, cudaStream_t stream,
                              int parts = FB_ALL, const FbGateBwd *gate = NULL, const FbKeep *keep = NULL) {
    feedback_check_shape(B, T, D, ld);
    if ((gs == NULL) != (gate != NULL) || (gate && (!gate->dgated || !gate->gt || !gate->dgt || gate->ld < D)))
        fatal("feedback_backward: give gs, or (gs NULL) the gate's dgated, gt, dgt with rows ld >= D apart");
    FbGateBwd gb = gate ? *gate : FbGateBwd{};
    FbBwdScratch w;
    fb_bwd_carve(&w, scratch, B, T, D);
    fb_side_sms_set(B, D);
    float scale = 1.0f / sqrtf((float)D);
    int S = fb_superblock(B, T), n = ceil_div(T, S);
    long long sq = (long long)T * ld, sTS = (long long)T * S, sTD = (long long)T * D, sSD = (long long)S * D;
    // one superblock: every row of dqb gets its one contribution from step 7, written straight as bf16 (no fp32
    // accumulator to clear, convert and store: 2 launches fewer a call, e.g. d4w256h4 at T = 256)
    int dq_direct = n == 1;
    if ((parts & FB_BEGIN) && !dq_direct) cudaCheck(cudaMemsetAsync(w.dq, 0, (size_t)B * T * D * sizeof(float), stream));
    int nb = fb_sets(B, T), la = fb_lookahead();
    FbStreams st = fb_begin(w.PcT, nb, B, S, n, T, stream, parts & FB_BEGIN, parts);
    int dq7 = fb_dq_side() && st.c != st.b;   // dqb on stream c ("Tail"; after the lookahead's far GEMMs there)
    int side_ok = n == 1 && parts != FB_ALL;   // (fb_inverse_where)
    int side_inv = fb_solve_inv_mode(fb_bwd_vec(w.u3, df, gs, &gb, D), side_ok) == 3;   // the inverses beside the chain
    // with the forward's kept slab (one superblock) the slab's buffers are the kept ones (after fb_begin: its clearing
    // of PcT when T % S != 0 was the forward's)
    FbKept kp;
    int kept = fb_keep_use(keep, B, T, S, &kp);
    if (kept) { w.Pc3[0] = kp.Pc3; w.PcT[0] = kp.PcT; }
    // the it-th superblock from the end, q = n-1-it, uses buffers k = it % nb
    // 1. on stream a: its slab logits Zs (M, Sv) = qb[u0:T] kb[U]^T / sqrt(D); Pc = gamma alpha[u0:T, U] as bf16
    //    hi/lo parts (Pc3), PcT (and the inverses) (once stream b no longer reads these buffers for superblock it - nb)
    auto slab = [&](int it) {
        int u0 = (n - 1 - it) * S, u1 = u0 + S < T ? u0 + S : T, Sv = u1 - u0, M = T - u0, k = it % nb;
        if (it >= nb) cudaCheck(cudaStreamWaitEvent(st.a, st.freed[k], 0));
        if (!kept) {
            fb_gemm(FbOut{w.Zs[k], CUDA_R_32F, S, sTS}, FbIn{qb + (size_t)u0 * ld, ld, sq, false},
                    FbIn{kb + (size_t)u0 * ld, ld, sq, true}, FbShape{M, Sv, D, B}, scale, 0.0f, st.a);
            fb_launch_slab(&w, k, lse, gamma, u0, Sv, S, B, T, st.a);
        }
        if (side_inv) fb_inverses<true>(w.Minv[k], w.Ls[k], w.PcT[k], NULL, u0, Sv, S, B, T, st.a);
        cudaCheck(cudaEventRecord(st.ready[k], st.a));
    };
    // 2. acc (Sv, D) = Pc[t0:t1, U]^T u[t0:t1] for the it-th superblock from the end and rows t0 >= u1:
    //    Pc3[3(t0-u0):3(t1-u0)]^T u3[3t0:3t1], one GEMM of K = 3 (t1 - t0), onto acc (beta = 1) or not
    auto acc_gemm = [&](int it, int t0, int t1, float beta, cudaStream_t on) {
        int u0 = (n - 1 - it) * S, Sv = (u0 + S < T ? u0 + S : T) - u0, k = it % nb;
        fb_gemm(FbOut{w.accs[k], CUDA_R_32F, D, sSD}, FbIn{w.Pc3[k] + (size_t)3 * (t0 - u0) * S, S, 3 * sTS, true},
                FbIn{w.u3 + (size_t)3 * t0 * D, D, 3 * sTD, false}, FbShape{Sv, D, 3 * (t1 - t0), B}, 1.0f, beta, on);
    };
    // the lookahead's far part of the it-th superblock (it >= 2), rows [u1 + S, T), on stream c once its slab and
    // the solve of it - 2 are done (the last record of solved, issued before it - 1's solve)
    auto far = [&](int it) {
        int u1 = (n - it) * S;                     // (it >= 2: a full superblock)
        cudaCheck(cudaStreamWaitEvent(st.c, st.ready[it % nb], 0));
        cudaCheck(cudaStreamWaitEvent(st.c, st.solved, 0));
        acc_gemm(it, u1 + S, T, 0.0f, st.c);
        cudaCheck(cudaEventRecord(st.far_done[it % nb], st.c));
    };
    if (parts & FB_BEGIN) slab(0);
    for (int it = 0; (parts & FB_CHAIN) && it < n; it++) {
        int u0 = (n - 1 - it) * S, u1 = u0 + S < T ? u0 + S : T, Sv = u1 - u0, M = T - u0, k = it % nb;
        if (it + 1 < n) slab(it + 1);              // beside this superblock's chain
        if (la && it + 1 >= 2 && it + 1 < n) far(it + 1);
        cudaCheck(cudaStreamWaitEvent(stream, st.ready[k], 0));
        w.acc = w.accs[k];
        if (la && it >= 2) {                       // the near part onto the far one
            cudaCheck(cudaStreamWaitEvent(stream, st.far_done[k], 0));
            acc_gemm(it, u1, u1 + S, 1.0f, stream);
        } else if (u1 < T) {
            acc_gemm(it, u1, T, 0.0f, stream);
        }
        // 3. the transposed in-superblock solve: u[U], df[U]
        fb_bwd_solve(w.u3, df, w.acc, u1 < T, w.PcT[k], gs, gb, w.Minv[k], w.Ls[k], u0, Sv, S, B, T, D, stream, side_ok);
        fb_after(st.b, st.solved, stream);         // the rest of U on stream b, beside the next chain
        // 4. dgamma[U] = u . c; 5. US (M, Sv) = u[u0:T] s[U]^T into the slab's logits buffer (the (T, 3D) view of
        //    u3 times sU3^T: one GEMM of K = 3D); dZ over Pc_hi's first copy
        fb_launch_bwd_rows(&w, dgamma, c, s, u0, Sv, S, B, T, D, st.b, gb);
        fb_gemm(FbOut{w.Zs[k], CUDA_R_32F, S, sTS}, FbIn{w.u3 + (size_t)3 * u0 * D, 3 * D, 3 * sTD, false},
                FbIn{w.sU3, 3 * D, 3 * sSD, true}, FbShape{M, Sv, 3 * D, B}, 1.0f, 0.0f, st.b);
        fb_launch_dz(&w, k, dgamma, u0, Sv, S, B, T, st.b);
        cudaStream_t sq7 = dq7 ? st.c : st.b;      // ("Tail": dqb beside dkb)
        if (dq7) fb_after(st.c, st.dz_done, st.b);
        // 6. dkb[U] (Sv, D) = dZ^T qb[u0:T] / sqrt(D), complete: bf16 straight into dkb
        fb_gemm(FbOut{dkb + (size_t)u0 * ld, CUDA_R_16BF, ld, sq}, FbIn{w.Pc3[k], 3 * S, 3 * sTS, true},
                FbIn{qb + (size_t)u0 * ld, ld, sq, false}, FbShape{Sv, D, M, B}, scale, 0.0f, st.b);
        // 7. dqb[u0:T] (M, D) += dZ kb[U] / sqrt(D) (stream b, or c: the superblocks in order; one superblock: = , bf16)
        FbOut dq_out = dq_direct ? FbOut{dqb, CUDA_R_16BF, ld, sq} : FbOut{w.dq + (size_t)u0 * D, CUDA_R_32F, D, sTD};
        fb_gemm(dq_out, FbIn{w.Pc3[k], 3 * S, 3 * sTS, false}, FbIn{kb + (size_t)u0 * ld, ld, sq, false},
                FbShape{M, D, Sv, B}, scale, dq_direct ? 0.0f : 1.0f, sq7);
        if (dq7) fb_after(st.b, st.dq_done, st.c);
        cudaCheck(cudaEventRecord(st.freed[k], st.b));   // Zs[k], Pc3[k], PcT[k], Minv[k], Ls[k] read (the solve: before
                                                          // solved)
    }
    if (!(parts & FB_END)) return;
    fb_join(&st, stream);
    if (dq_direct) return;
    int store_vec = D % 4 == 0 && ld % 4 == 0 && ptr_alignment(dqb) >= 8;   // w.dq: scratch, 256-byte aligned
    fb_store_strided_kernel<<<B * T, 128, 0, stream>>>(dqb, ld, w.dq, D, store_vec);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_FEEDBACK_CUH
