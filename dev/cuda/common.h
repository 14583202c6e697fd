/*
 Helpers shared by the dev/cuda kernel files (llm.c's dev/cuda/common.h manner):
 random host data, host <-> device copies with bf16 conversion, result validation against a CPU
 reference, and a timing loop. Each dev/cuda/<kernel>.cu is run as
     ./<kernel> check [version]     compare every (or one) GPU version with the CPU reference, exit 1 on mismatch
     ./<kernel> bench [version]     time every (or one) GPU version
*/
#ifndef DEV_CUDA_COMMON_H
#define DEV_CUDA_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "../../llmc/cuda_common.h"

// ----------------------------------------------------------------------------
// random host data (fixed seed: every run checks the same numbers)

static unsigned long long dev_rng_state = 1337ull;
static inline float random_f32(void) { // uniform in [0, 1)
    dev_rng_state ^= dev_rng_state >> 12; dev_rng_state ^= dev_rng_state << 25; dev_rng_state ^= dev_rng_state >> 27;
    return (float)((dev_rng_state * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}
static float *make_random_float(size_t n, float lo, float hi) { // uniform in [lo, hi)
    float *x = (float *)mallocCheck(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * random_f32();
    return x;
}
// round a host array to bf16 in place, so the CPU reference sees exactly what the GPU reads
static void round_to_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = bf16_to_float(float_to_bf16(x[i]));
}

// ----------------------------------------------------------------------------
// host <-> device

static float *to_device_f32(const float *h, size_t n) {
    float *d; cudaMallocCheck(&d, n * sizeof(float));
    cudaCheck(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}
static floatX *to_device_bf16(const float *h, size_t n) {
    uint16_t *tmp = (uint16_t *)mallocCheck(n * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) tmp[i] = float_to_bf16(h[i]);
    floatX *d; cudaMallocCheck(&d, n * sizeof(floatX));
    cudaCheck(cudaMemcpy(d, tmp, n * sizeof(floatX), cudaMemcpyHostToDevice));
    free(tmp);
    return d;
}
static void from_device(float *h, const float *d, size_t n) {
    cudaCheck(cudaMemcpy(h, d, n * sizeof(float), cudaMemcpyDeviceToHost));
}
static void from_device(float *h, const floatX *d, size_t n) {
    uint16_t *tmp = (uint16_t *)mallocCheck(n * sizeof(uint16_t));
    cudaCheck(cudaMemcpy(tmp, d, n * sizeof(floatX), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) h[i] = bf16_to_float(tmp[i]);
    free(tmp);
}

static float max_abs(const float *x, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(x[i]));
    return m;
}

// ----------------------------------------------------------------------------
// validation: |gpu - ref| <= atol + rtol*|ref| elementwise; prints the worst error; returns 1 when it passes.
// (a strided device view is checked by copying the whole buffer and passing its row stride)

template <typename Td>
static int validate_result(const Td *device_result, const float *ref, const char *name, size_t rows, size_t cols,
                           size_t ld, float atol, float rtol) {
    size_t n = (rows - 1) * ld + cols;
    float *h = (float *)mallocCheck(n * sizeof(float));
    from_device(h, device_result, n);
    double max_abs = 0.0, max_rel = 0.0;
    size_t bad = 0;
    for (size_t r = 0; r < rows; r++) for (size_t c = 0; c < cols; c++) {
        float g = h[r * ld + c], e = ref[r * cols + c];
        double err = (g == e) ? 0.0 : fabs((double)g - (double)e);   // equal infinities (an empty row's lse) match
        if (!(err <= atol + rtol * fabs(e))) { // NaN fails too
            if (bad < 5) printf("  %s mismatch at [%zu,%zu]: gpu %.6g ref %.6g\n", name, r, c, g, e);
            bad++;
        }
        if (err > max_abs || err != err) max_abs = err;
        if (fabs(e) > 1e-3 && err / fabs(e) > max_rel) max_rel = err / fabs(e);
    }
    printf("  %-8s max abs err %.3e  max rel err (|ref|>1e-3) %.3e  tol atol %.1e rtol %.1e  %s\n",
           name, max_abs, max_rel, atol, rtol, bad ? "FAIL" : "ok");
    free(h);
    return bad == 0;
}

// ----------------------------------------------------------------------------
// timing: average milliseconds of `repeats` calls of f(args...) after one warm-up call

template <class Kernel, class... Args>
static float benchmark_kernel(int repeats, Kernel f, Args &&...args) {
    f(args...);
    cudaCheck(cudaDeviceSynchronize());
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));
    cudaCheck(cudaEventRecord(start, 0));
    for (int i = 0; i < repeats; i++) f(args...);
    cudaCheck(cudaEventRecord(stop, 0));
    cudaCheck(cudaEventSynchronize(stop));
    float ms = 0.0f;
    cudaCheck(cudaEventElapsedTime(&ms, start, stop));
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaEventDestroy(start));
    cudaCheck(cudaEventDestroy(stop));
    return ms / repeats;
}

// ----------------------------------------------------------------------------
// command line: ./<kernel> check|bench [version]

typedef struct { int check; int bench; int version; } DevArgs; // version 0 = all versions
static DevArgs parse_dev_args(int argc, char **argv, int num_versions) {
    DevArgs a = {0, 0, 0};
    if (argc < 2 || argc > 3) fatal("usage: %s check|bench [version 1..%d]", argv[0], num_versions);
    if (strcmp(argv[1], "check") == 0) a.check = 1;
    else if (strcmp(argv[1], "bench") == 0) a.bench = 1;
    else fatal("unknown mode '%s': expected check or bench", argv[1]);
    if (argc == 3) {
        a.version = atoi(argv[2]);
        if (a.version < 1 || a.version > num_versions) fatal("version %s out of range 1..%d", argv[2], num_versions);
    }
    return a;
}

#endif // DEV_CUDA_COMMON_H
