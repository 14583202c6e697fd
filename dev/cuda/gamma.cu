/*
 The feedback gain (llmc/gamma.cuh): gamma_t = gamma_max tanh(gamma_b + abar_t . w_gamma), and its backward
 dr_t = dgamma_t gamma_max (1 - tanh^2), dabar += dr w, dw += sum_t dr_t abar_t, db += sum_t dr_t.
   version 1: one warp per token; parameter sums by the deterministic column sums
   version 2: (llmc) the backward's dabar += dr w with 16-byte packs of 8 bf16 when D % 8 == 0; other
              widths take version 1's kernel (still in llmc/gamma.cuh), which the D = 100 check exercises
   version 3: (the trainer's) GELU fused in: abar = GELU(a) and gamma in one pass (gelu_gamma_forward), gamma's and
              GELU's backward in one (gamma_gelu_backward; packed widths, else the two kernels): checked bitwise
              against gelu.cuh's kernels followed by version 2's (the same arithmetic in the same order), with a's
              rows 2D apart as in the trainer; the bench times both ways
   version 4: (the trainer's) version 3 with the forward's loads and stores in 16-byte packs too, where D % 8 == 0 and
              the rows are aligned (the dot product's order follows the packs, in gamma_forward as well: checked
              bitwise as version 3)
 make -C dev/cuda && dev/cuda/bin/gamma check    (or bench)
*/
#include "common.h"
#include "../../llmc/gamma.cuh"

static void gamma_cpu(float *gamma, float *dabar, float *dw, float *db, const float *abar, const float *w, float b,
                      const float *dgamma, int N, int D, float gmax) {
    double *gw = (double *)callocCheck(D, sizeof(double)), gb = 0.0;
    for (int n = 0; n < N; n++) {
        double r = b;
        for (int c = 0; c < D; c++) r += (double)abar[(size_t)n * D + c] * w[c];
        double th = tanh(r), dr = dgamma[n] * gmax * (1.0 - th * th);
        gamma[n] = (float)(gmax * th);
        for (int c = 0; c < D; c++) {
            dabar[(size_t)n * D + c] += (float)(dr * w[c]);
            gw[c] += dr * abar[(size_t)n * D + c];
        }
        gb += dr;
    }
    for (int c = 0; c < D; c++) dw[c] += (float)gw[c];
    db[0] += (float)gb;
    free(gw);
}

static int check(int N, int D) {
    printf("check N=%d D=%d\n", N, D);
    const float gmax = 0.999f;
    size_t nd = (size_t)N * D;
    float *abar = make_random_float(nd, -1, 1), *w = make_random_float(D, -0.2f, 0.2f), *b = make_random_float(1, 0.5f, 1.5f);
    float *dgamma = make_random_float(N, -1, 1), *dabar = make_random_float(nd, -1, 1);
    float *dw = make_random_float(D, -1, 1), *db = make_random_float(1, -1, 1);
    round_to_bf16(abar, nd); round_to_bf16(w, D); round_to_bf16(b, 1); round_to_bf16(dabar, nd);
    floatX *d_abar = to_device_bf16(abar, nd), *d_w = to_device_bf16(w, D), *d_b = to_device_bf16(b, 1);
    floatX *d_dabar = to_device_bf16(dabar, nd);
    float *d_dgamma = to_device_f32(dgamma, N), *d_dw = to_device_f32(dw, D), *d_db = to_device_f32(db, 1);
    float *d_gamma, *d_dr;
    float2 *d_scratch;
    cudaMallocCheck(&d_gamma, N * sizeof(float)); cudaMallocCheck(&d_dr, N * sizeof(float));
    cudaMallocCheck(&d_scratch, column_sums_scratch_bytes(N, D));
    float *gamma = (float *)mallocCheck(N * sizeof(float));
    gamma_cpu(gamma, dabar, dw, db, abar, w, b[0], dgamma, N, D, gmax);
    gamma_forward(d_gamma, d_abar, d_w, d_b, N, D, gmax, 0);
    gamma_backward(d_dabar, d_dw, d_db, d_dr, d_dgamma, d_gamma, d_abar, d_w, N, D, gmax, d_scratch, 0);
    cudaCheck(cudaDeviceSynchronize());
    // gamma: fp32 dot of D bf16-exact products, 1e-5. dabar bf16: rtol 8e-3, atol 1e-2 (O(1) values).
    // dw, db: fp32 sums over N tokens of O(1) terms: 1e-4 relative, 1e-3 absolute.
    int ok = validate_result(d_gamma, gamma, "gamma", 1, N, N, 1e-5f, 1e-5f);
    ok &= validate_result(d_dabar, dabar, "dabar", N, D, D, 1e-2f, 8e-3f);
    ok &= validate_result(d_dw, dw, "dw_gamma", 1, D, D, 1e-3f, 1e-4f);
    ok &= validate_result(d_db, db, "dgamma_b", 1, 1, 1, 1e-3f, 1e-4f);
    free(abar); free(w); free(b); free(dgamma); free(dabar); free(dw); free(db); free(gamma);
    cudaCheck(cudaFree(d_abar)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_b)); cudaCheck(cudaFree(d_dabar));
    cudaCheck(cudaFree(d_dgamma)); cudaCheck(cudaFree(d_dw)); cudaCheck(cudaFree(d_db)); cudaCheck(cudaFree(d_gamma));
    cudaCheck(cudaFree(d_dr)); cudaCheck(cudaFree(d_scratch));
    return ok;
}

// version 3 against gelu_forward + gamma_forward, gamma_backward_input + gelu_backward: the same bits
static int check_fused(int N, int D) {
    printf("check fused with GELU N=%d D=%d (a, da rows 2D apart)\n", N, D);
    const float gmax = 0.999f;
    size_t nd = (size_t)N * D, n2 = 2 * nd;
    float *a = make_random_float(n2, -3, 3), *w = make_random_float(D, -0.2f, 0.2f), *b = make_random_float(1, 0.5f, 1.5f);
    float *dgamma = make_random_float(N, -1, 1), *dabar = make_random_float(nd, -1, 1);
    floatX *d_a = to_device_bf16(a, n2), *d_w = to_device_bf16(w, D), *d_b = to_device_bf16(b, 1);
    floatX *d_dabar1 = to_device_bf16(dabar, nd), *d_dabar2 = to_device_bf16(dabar, nd);
    floatX *d_da1 = to_device_bf16(a, n2), *d_da2 = to_device_bf16(a, n2), *d_abar1, *d_abar2;   // da: other halves kept
    float *d_dgamma = to_device_f32(dgamma, N), *d_g1, *d_g2, *d_dr1, *d_dr2;
    cudaMallocCheck(&d_abar1, nd * sizeof(floatX)); cudaMallocCheck(&d_abar2, nd * sizeof(floatX));
    float **f[] = { &d_g1, &d_g2, &d_dr1, &d_dr2 };
    for (int i = 0; i < 4; i++) cudaMallocCheck(f[i], N * sizeof(float));
    gelu_forward(d_abar1, d_a, 2 * D, N, D, 0);
    gamma_forward(d_g1, d_abar1, d_w, d_b, N, D, gmax, 0);
    gamma_backward_input(d_dabar1, d_dr1, d_dgamma, d_g1, d_w, N, D, gmax, 0);
    gelu_backward(d_da1, 2 * D, d_dabar1, d_a, 2 * D, N, D, 0);
    gelu_gamma_forward(d_abar2, d_g2, d_a, 2 * D, d_w, d_b, N, D, gmax, 0);
    gamma_gelu_backward(d_da2, 2 * D, d_dr2, d_dabar2, d_dgamma, d_g2, d_w, d_a, 2 * D, N, D, gmax, 0);
    cudaCheck(cudaDeviceSynchronize());
    struct { const char *name; const void *x, *y; size_t bytes; } cmp[] = {
        { "abar", d_abar1, d_abar2, nd * sizeof(floatX) }, { "gamma", d_g1, d_g2, N * sizeof(float) },
        { "dr", d_dr1, d_dr2, N * sizeof(float) }, { "da (and dgt's half untouched)", d_da1, d_da2, n2 * sizeof(floatX) } };
    int ok = 1;
    char *h1 = (char *)mallocCheck(n2 * sizeof(floatX)), *h2 = (char *)mallocCheck(n2 * sizeof(floatX));
    for (int i = 0; i < 4; i++) {
        cudaCheck(cudaMemcpy(h1, cmp[i].x, cmp[i].bytes, cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(h2, cmp[i].y, cmp[i].bytes, cudaMemcpyDeviceToHost));
        int same = memcmp(h1, h2, cmp[i].bytes) == 0;
        printf("  %-30s fused vs the two kernels: %s\n", cmp[i].name, same ? "bitwise equal ok" : "DIFFERENT (FAIL)");
        ok &= same;
    }
    free(h1); free(h2); free(a); free(w); free(b); free(dgamma); free(dabar);
    floatX *fb[] = { d_a, d_w, d_b, d_dabar1, d_dabar2, d_da1, d_da2, d_abar1, d_abar2 };
    for (int i = 0; i < 9; i++) cudaCheck(cudaFree(fb[i]));
    float *ff[] = { d_dgamma, d_g1, d_g2, d_dr1, d_dr2 };
    for (int i = 0; i < 5; i++) cudaCheck(cudaFree(ff[i]));
    return ok;
}

typedef struct { int N, D; floatX *abar, *w, *b, *dabar; float *gamma, *dgamma, *dr, *dw, *db; float2 *scratch;
                 floatX *a, *da; } GammaBench;   // a, da: (N, 2D) for the GELU passes
static void run(GammaBench *p) {
    gamma_forward(p->gamma, p->abar, p->w, p->b, p->N, p->D, 0.999f, 0);
    gamma_backward(p->dabar, p->dw, p->db, p->dr, p->dgamma, p->gamma, p->abar, p->w, p->N, p->D, 0.999f, p->scratch, 0);
}
// the trainer's GELU and gamma passes of a layer (forward, backward's input part): the four kernels, or the fused two
static void run_gelu_unfused(GammaBench *p) {
    int N = p->N, D = p->D;
    gelu_forward(p->abar, p->a, 2 * D, N, D, 0);
    gamma_forward(p->gamma, p->abar, p->w, p->b, N, D, 0.999f, 0);
    gamma_backward_input(p->dabar, p->dr, p->dgamma, p->gamma, p->w, N, D, 0.999f, 0);
    gelu_backward(p->da, 2 * D, p->dabar, p->a, 2 * D, N, D, 0);
}
static void run_gelu_fused(GammaBench *p) {
    int N = p->N, D = p->D;
    gelu_gamma_forward(p->abar, p->gamma, p->a, 2 * D, p->w, p->b, N, D, 0.999f, 0);
    gamma_gelu_backward(p->da, 2 * D, p->dr, p->dabar, p->dgamma, p->gamma, p->w, p->a, 2 * D, N, D, 0.999f, 0);
}

// the forward's fused pass alone: version 3's kernel (2-byte loads) and version 4's (16-byte packs)
static void run_fwd_v3(GammaBench *p) {
    launch_pdl(gamma_rows_kernel<true, false>, ceil_div(p->N, GAMMA_WARPS), GAMMA_WARPS * WARP_SIZE, 0, (cudaStream_t)0,
               p->abar, p->gamma, (const floatX *)p->a, 2 * p->D, (const floatX *)p->w, (const floatX *)p->b, p->N, p->D, 0.999f);
}
static void run_fwd_v4(GammaBench *p) {
    launch_pdl(gamma_rows_kernel<true, true>, ceil_div(p->N, GAMMA_WARPS), GAMMA_WARPS * WARP_SIZE, 0, (cudaStream_t)0,
               p->abar, p->gamma, (const floatX *)p->a, 2 * p->D, (const floatX *)p->w, (const floatX *)p->b, p->N, p->D, 0.999f);
}

static void bench(int N, int D) {
    size_t nd = (size_t)N * D;
    float *h = make_random_float(nd, -0.1f, 0.1f);
    GammaBench p = { N, D, to_device_bf16(h, nd), to_device_bf16(h, D), to_device_bf16(h, 1), to_device_bf16(h, nd) };
    p.a = to_device_bf16(h, nd); p.da = to_device_bf16(h, nd);   // both passes over N/2 rows: a, da (N/2, 2D)
    p.dgamma = to_device_f32(h, N); p.dw = to_device_f32(h, D); p.db = to_device_f32(h, 1);
    cudaMallocCheck(&p.gamma, N * sizeof(float)); cudaMallocCheck(&p.dr, N * sizeof(float));
    cudaMallocCheck(&p.scratch, column_sums_scratch_bytes(N, D));
    float ms = benchmark_kernel(20, run, &p);
    printf("N=%d D=%d  forward+backward (version 2 where D %% 8 == 0)  %8.3f ms  %7.1f GB/s\n", N, D, ms, 8.0 * nd / (ms * 1e-3) / 1e9);
    // GELU with gamma on N/2 rows of a (N/2, 2D): forward + the backward's input part, four kernels vs version 3's two
    p.N = N / 2;
    float ms4 = benchmark_kernel(20, run_gelu_unfused, &p), ms2 = benchmark_kernel(20, run_gelu_fused, &p);
    printf("N=%d D=%d  GELU + gamma fwd and bwd input: 4 kernels %8.4f ms, version 3 (2 kernels) %8.4f ms\n", N / 2, D, ms4, ms2);
    float m3 = benchmark_kernel(20, run_fwd_v3, &p), m4 = benchmark_kernel(20, run_fwd_v4, &p);
    printf("N=%d D=%d  GELU + gamma forward: version 3 %8.4f ms, version 4 (16-byte packs) %8.4f ms (%.2fx; floor at 4.3 TB/s "
           "%.4f ms)\n", N / 2, D, m3, m4, m3 / m4, 4.0 * (N / 2) * D / 4.3e12 * 1e3);
    free(h);
    cudaCheck(cudaFree(p.a)); cudaCheck(cudaFree(p.da));
    cudaCheck(cudaFree(p.abar)); cudaCheck(cudaFree(p.w)); cudaCheck(cudaFree(p.b)); cudaCheck(cudaFree(p.dabar));
    cudaCheck(cudaFree(p.dgamma)); cudaCheck(cudaFree(p.dw)); cudaCheck(cudaFree(p.db)); cudaCheck(cudaFree(p.gamma));
    cudaCheck(cudaFree(p.dr)); cudaCheck(cudaFree(p.scratch));
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 1);
    cudaCheck(cudaSetDevice(0));
    if (a.check) {
        int ok = check(300, 64) & check(13, 100) & check(9, 776);   // packed, fallback, packed with uneven lanes
        ok &= check_fused(300, 64) & check_fused(13, 100) & check_fused(37, 776);
        printf(ok ? "gamma: all checks passed\n" : "gamma: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    bench(16 * 1024, 768);   // the GELU passes on 8192 rows: d12 at B=8 T=1024
    bench(4 * 1024, 256);    // 2048: d4w256h4 at B=8 T=256
    return 0;
}
