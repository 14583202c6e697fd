/*
 The layer gate (llmc/gate.cuh): gated = s * gt (s fp32, gt a strided bf16 column slice), and its backward
 ds = dgated * gt (fp32), dgt = dgated * s (bf16, strided).
   version 1: one thread per element (64-bit index math)
   version 2: (llmc) one thread per 8 elements, 16-byte accesses, 32-bit index math, when the widths and row
              strides are multiples of 8; other shapes take version 1 (the checks with width 33 exercise it)
 make -C dev/cuda && dev/cuda/bin/gate check    (or bench)
*/
#include "common.h"
#include "../../llmc/gate.cuh"

static int check(int N, int D) {
    printf("check N=%d D=%d (gt row stride %d)\n", N, D, 2 * D);
    size_t nd = (size_t)N * D, ld = 2 * D;
    float *s = make_random_float(nd, -2, 2), *ag = make_random_float(N * ld, -2, 2), *dg = make_random_float(nd, -1, 1);
    round_to_bf16(ag, N * ld); round_to_bf16(dg, nd);
    float *gated = (float *)mallocCheck(nd * sizeof(float)), *ds = (float *)mallocCheck(nd * sizeof(float));
    float *dgt = (float *)mallocCheck(nd * sizeof(float));
    for (size_t n = 0; n < (size_t)N; n++) for (size_t c = 0; c < (size_t)D; c++) {
        float gt = ag[n * ld + D + c];
        gated[n * D + c] = s[n * D + c] * gt;
        ds[n * D + c] = dg[n * D + c] * gt;
        dgt[n * D + c] = dg[n * D + c] * s[n * D + c];
    }
    float *d_s = to_device_f32(s, nd), *d_ds;
    floatX *d_ag = to_device_bf16(ag, N * ld), *d_dg = to_device_bf16(dg, nd), *d_gated, *d_dag;
    cudaMallocCheck(&d_ds, nd * sizeof(float)); cudaMallocCheck(&d_gated, nd * sizeof(floatX));
    cudaMallocCheck(&d_dag, N * ld * sizeof(floatX));
    gate_forward(d_gated, d_s, d_ag + D, (int)ld, N, D, 0);
    gate_backward(d_ds, d_dag + D, d_dg, d_s, d_ag + D, (int)ld, N, D, 0);
    cudaCheck(cudaDeviceSynchronize());
    // one product each: fp32 ds is exact to 1 ulp (1e-6); bf16 outputs within 2^-9 relative (rtol 4e-3)
    int ok = validate_result(d_gated, gated, "gated", N, D, D, 1e-6f, 4e-3f);
    ok &= validate_result(d_ds, ds, "ds", N, D, D, 1e-6f, 1e-6f);
    ok &= validate_result(d_dag + D, dgt, "dgt", N, D, ld, 1e-6f, 4e-3f);   // the strided gate half of dag
    free(s); free(ag); free(dg); free(gated); free(ds); free(dgt);
    cudaCheck(cudaFree(d_s)); cudaCheck(cudaFree(d_ds)); cudaCheck(cudaFree(d_ag)); cudaCheck(cudaFree(d_dg));
    cudaCheck(cudaFree(d_gated)); cudaCheck(cudaFree(d_dag));
    return ok;
}

typedef struct { int N, D; float *s, *ds; floatX *ag, *dg, *gated, *dag; } GateBench;
static void run(GateBench *p) {
    gate_forward(p->gated, p->s, p->ag + p->D, 2 * p->D, p->N, p->D, 0);
    gate_backward(p->ds, p->dag + p->D, p->dg, p->s, p->ag + p->D, 2 * p->D, p->N, p->D, 0);
}

static void bench(int N, int D) {
    size_t nd = (size_t)N * D;
    float *h = make_random_float(2 * nd, -1, 1);
    GateBench p = { N, D, to_device_f32(h, nd), NULL, to_device_bf16(h, 2 * nd), to_device_bf16(h, nd), NULL, NULL };
    cudaMallocCheck(&p.ds, nd * sizeof(float)); cudaMallocCheck(&p.gated, nd * sizeof(floatX));
    cudaMallocCheck(&p.dag, 2 * nd * sizeof(floatX));
    float ms = benchmark_kernel(20, run, &p);
    printf("N=%d D=%d  version 2 forward+backward  %8.3f ms  %7.1f GB/s\n", N, D, ms, 24.0 * nd / (ms * 1e-3) / 1e9);
    free(h);
    cudaCheck(cudaFree(p.s)); cudaCheck(cudaFree(p.ds)); cudaCheck(cudaFree(p.ag)); cudaCheck(cudaFree(p.dg));
    cudaCheck(cudaFree(p.gated)); cudaCheck(cudaFree(p.dag));
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 1);
    cudaCheck(cudaSetDevice(0));
    if (a.check) {
        int ok = check(64, 96) & check(5, 33) & check(3, 776);
        printf(ok ? "gate: all checks passed\n" : "gate: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    bench(8 * 1024, 768);
    return 0;
}
