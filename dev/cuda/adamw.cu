/*
 AdamW (llmc/adamw.cuh) in PyTorch's form on fp32 master weights, also writing the bf16 working copy.
   version 1: one thread per parameter
 make -C dev/cuda && dev/cuda/bin/adamw check    (or bench)
*/
#include "common.h"
#include "../../llmc/adamw.cuh"

// one step (double): p *= 1 - lr wd; m, v; p -= lr mhat / (sqrt(vhat) + eps)
static void adamw_cpu(float *p, float *m, float *v, const float *g, size_t n, float lr, float b1, float b2, float eps,
                      float wd, float scale, int step) {
    double bc1 = 1.0 - pow(b1, step), bc2 = 1.0 - pow(b2, step);
    for (size_t i = 0; i < n; i++) {
        double gi = (double)g[i] * scale;
        double mi = b1 * (double)m[i] + (1.0 - b1) * gi, vi = b2 * (double)v[i] + (1.0 - b2) * gi * gi;
        double pi = p[i] * (1.0 - (double)lr * wd);
        p[i] = (float)(pi - lr * (mi / bc1) / (sqrt(vi / bc2) + eps));
        m[i] = (float)mi; v[i] = (float)vi;
    }
}

static int check(size_t n, int step) {
    printf("check n=%zu step=%d\n", n, step);
    float *p = make_random_float(n, -1, 1), *g = make_random_float(n, -1, 1);
    float *m = make_random_float(n, -0.1f, 0.1f), *v = make_random_float(n, 0.0f, 0.01f);
    float *d_p = to_device_f32(p, n), *d_g = to_device_f32(g, n), *d_m = to_device_f32(m, n), *d_v = to_device_f32(v, n);
    floatX *d_p16;
    cudaMallocCheck(&d_p16, n * sizeof(floatX));
    adamw_cpu(p, m, v, g, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, step);
    adamw_update(d_p, d_p16, d_g, d_m, d_v, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, step, 0);
    cudaCheck(cudaDeviceSynchronize());
    // fp32 arithmetic of a handful of operations against double: 1e-6 relative, 1e-7 absolute;
    // the bf16 copy is the master value rounded to 8 bits (rtol 4e-3)
    int ok = validate_result(d_p, p, "params", 1, n, n, 1e-7f, 1e-6f);
    ok &= validate_result(d_m, m, "m", 1, n, n, 1e-7f, 1e-6f);
    ok &= validate_result(d_v, v, "v", 1, n, n, 1e-9f, 1e-6f);
    ok &= validate_result(d_p16, p, "bf16 copy", 1, n, n, 1e-7f, 4e-3f);
    free(p); free(g); free(m); free(v);
    cudaCheck(cudaFree(d_p)); cudaCheck(cudaFree(d_g)); cudaCheck(cudaFree(d_m)); cudaCheck(cudaFree(d_v)); cudaCheck(cudaFree(d_p16));
    return ok;
}

typedef struct { size_t n; float *p, *g, *m, *v; floatX *p16; } AdamBench;
static void run(AdamBench *a) { adamw_update(a->p, a->p16, a->g, a->m, a->v, a->n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 10, 0); }

static void bench(size_t n) {
    float *h = make_random_float(n, -1, 1);
    AdamBench a = { n, to_device_f32(h, n), to_device_f32(h, n), to_device_f32(h, n), to_device_f32(h, n), NULL };
    cudaCheck(cudaMemset(a.v, 0, n * sizeof(float)));
    cudaMallocCheck(&a.p16, n * sizeof(floatX));
    float ms = benchmark_kernel(10, run, &a);
    printf("n=%zu  version 1  %8.3f ms  %7.1f GB/s\n", n, ms, 30.0 * n / (ms * 1e-3) / 1e9);
    free(h);
    cudaCheck(cudaFree(a.p)); cudaCheck(cudaFree(a.g)); cudaCheck(cudaFree(a.m)); cudaCheck(cudaFree(a.v)); cudaCheck(cudaFree(a.p16));
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 1);
    cudaCheck(cudaSetDevice(0));
    if (a.check) {
        int ok = check(1000, 1) & check(12345, 7);
        printf(ok ? "adamw: all checks passed\n" : "adamw: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    bench((size_t)124 << 20);
    return 0;
}
