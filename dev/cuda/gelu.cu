/*
 Exact (erf) GELU forward and backward on a column slice of a wider matrix (llmc/gelu.cuh).
   version 1: one thread per element (64-bit index math)
   version 2: (llmc) one thread per 8 elements, 16-byte accesses, 32-bit index math, when the widths and row
              strides are multiples of 8; other shapes take version 1 (the checks with width 33 exercise it)
 make -C dev/cuda && dev/cuda/bin/gelu check    (or bench)
*/
#include "common.h"
#include "../../llmc/gelu.cuh"

// out (N, C) = gelu(inp[:, :C]); dinp[:, :C] = dout * gelu'(inp[:, :C]); inp, dinp with row stride ld (double)
static void gelu_cpu(float *out, float *dinp, const float *inp, const float *dout, int N, int C, int ld) {
    for (int n = 0; n < N; n++) for (int c = 0; c < C; c++) {
        double x = inp[(size_t)n * ld + c], cdf = 0.5 * (1.0 + erf(x / sqrt(2.0)));
        out[(size_t)n * C + c] = (float)(x * cdf);
        dinp[(size_t)n * C + c] = (float)(dout[(size_t)n * C + c] * (cdf + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI)));
    }
}

typedef struct { int N, C, ld; float *inp, *dout; floatX *d_inp, *d_dout, *d_out, *d_dinp; } GeluProblem;

static GeluProblem make_problem(int N, int C) {
    GeluProblem p = { N, C, 2 * C };
    size_t n = (size_t)N * 2 * C;
    p.inp = make_random_float(n, -5.0f, 5.0f);   // both tails and the curved middle
    p.dout = make_random_float((size_t)N * C, -1.0f, 1.0f);
    round_to_bf16(p.inp, n); round_to_bf16(p.dout, (size_t)N * C);
    p.d_inp = to_device_bf16(p.inp, n);
    p.d_dout = to_device_bf16(p.dout, (size_t)N * C);
    cudaMallocCheck(&p.d_out, (size_t)N * C * sizeof(floatX));
    cudaMallocCheck(&p.d_dinp, n * sizeof(floatX));
    return p;
}
static void free_problem(GeluProblem *p) {
    free(p->inp); free(p->dout);
    cudaCheck(cudaFree(p->d_inp)); cudaCheck(cudaFree(p->d_dout)); cudaCheck(cudaFree(p->d_out)); cudaCheck(cudaFree(p->d_dinp));
}
static void run_forward(GeluProblem *p) { gelu_forward(p->d_out, p->d_inp, p->ld, p->N, p->C, 0); }
static void run_backward(GeluProblem *p) { gelu_backward(p->d_dinp, p->ld, p->d_dout, p->d_inp, p->ld, p->N, p->C, 0); }

static int check(int N, int C) {
    printf("check N=%d C=%d (row stride %d)\n", N, C, 2 * C);
    GeluProblem p = make_problem(N, C);
    float *out = (float *)mallocCheck((size_t)N * C * sizeof(float)), *dinp = (float *)mallocCheck((size_t)N * C * sizeof(float));
    gelu_cpu(out, dinp, p.inp, p.dout, N, C, p.ld);
    run_forward(&p);
    run_backward(&p);
    cudaCheck(cudaDeviceSynchronize());
    // bf16 results: rtol 8e-3 (4 x 2^-9); atol 1e-4 for the tiny left tail. The tanh form of GELU differs
    // from erf by up to ~5e-4 absolute near |x| ~ 2, an erf/tanh mix-up fails the atol on values ~1
    int ok = validate_result(p.d_out, out, "out", N, C, C, 1e-4f, 8e-3f);
    ok &= validate_result(p.d_dinp, dinp, "dinp", N, C, p.ld, 1e-4f, 8e-3f);
    free(out); free(dinp);
    free_problem(&p);
    return ok;
}

static void bench(int N, int C) {
    GeluProblem p = make_problem(N, C);
    float ms_f = benchmark_kernel(20, run_forward, &p), ms_b = benchmark_kernel(20, run_backward, &p);
    printf("N=%d C=%d  version 2  forward %8.3f ms %7.1f GB/s   backward %8.3f ms %7.1f GB/s\n", N, C,
           ms_f, 4.0 * N * C / (ms_f * 1e-3) / 1e9, ms_b, 6.0 * N * C / (ms_b * 1e-3) / 1e9);
    free_problem(&p);
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 1);
    cudaCheck(cudaSetDevice(0));
    if (a.check) {
        int ok = check(64, 96) & check(7, 33) & check(3, 776);
        printf(ok ? "gelu: all checks passed\n" : "gelu: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    bench(8 * 1024, 768);
    bench(8 * 1024, 2048);
    return 0;
}
