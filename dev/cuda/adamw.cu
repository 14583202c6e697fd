/*
 AdamW (llmc/adamw.cuh) in PyTorch's form on fp32 master weights, also writing the bf16 working copy.
   version 1: one thread per parameter, one launch per tensor (adamw_update)
   version 2: one launch for the whole shard, the weight decay per segment (adamw_update_segments with
              SESSA_ADAMW_VEC=0); checked against the CPU reference and bitwise against version 1 run segment by
              segment; it reads the clip scale from device memory (where the trainer's norm kernel writes it)
   version 3: (the trainer's) version 2 with 4 parameters per thread, 16-byte loads and stores, where the arrays are
              aligned (else version 2); checked as version 2, aligned and not, with a partial last group
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

// version 2 or 3 on n elements (from element off of the allocations: 0 aligned, else not) cut into segments
// alternating decay 0.1 and 0 (lengths 1, 7, 300, ... cycling: segments start inside a group of 4)
static int check_segments(int version, size_t n, int step, size_t off) {
    printf("check version %d n=%zu step=%d (segments), from element %zu\n", version, n, step, off);
    adamw_vec = version == 3;
    static const size_t lens[] = { 1, 7, 300, 128, 5, 1000 };
    AdamWSegments seg; seg.n = 0; seg.begin[0] = 0;
    for (size_t pos = 0; pos < n; ) {
        size_t e = pos + lens[seg.n % 6] < n && seg.n < ADAMW_MAX_SEGMENTS - 1 ? pos + lens[seg.n % 6] : n;
        seg.wd[seg.n] = seg.n % 2 == 0 ? 0.1f : 0.0f;
        seg.n++; seg.begin[seg.n] = e; pos = e;
    }
    float *p = make_random_float(n, -1, 1), *g = make_random_float(n, -1, 1);
    float *m = make_random_float(n, -0.1f, 0.1f), *v = make_random_float(n, 0.0f, 0.01f);
    float *d_p = to_device_f32(p, n + off), *d_g = to_device_f32(g, n + off), *d_m = to_device_f32(m, n + off);
    float *d_v = to_device_f32(v, n + off);
    float *d_p1 = to_device_f32(p, n), *d_m1 = to_device_f32(m, n), *d_v1 = to_device_f32(v, n);
    floatX *d_p16, *d_p16_1;
    cudaMallocCheck(&d_p16, (n + off) * sizeof(floatX)); cudaMallocCheck(&d_p16_1, n * sizeof(floatX));
    float scale = 0.5f, *d_scale = to_device_f32(&scale, 1);   // the trainer's clip scale lives on the device
    // the shard from element off: its first n elements of the host arrays (uploaded at off)
    float *h_ = (float *)mallocCheck((n + off) * sizeof(float));
    float *hp[4] = { p, g, m, v }, *dp[4] = { d_p, d_g, d_m, d_v };
    for (int i = 0; i < 4; i++) {
        memcpy(h_ + off, hp[i], n * sizeof(float));
        cudaCheck(cudaMemcpy(dp[i], h_, (n + off) * sizeof(float), cudaMemcpyHostToDevice));
    }
    free(h_);
    d_p += off; d_g += off; d_m += off; d_v += off; d_p16 += off;
    adamw_update_segments(d_p, d_p16, d_g, d_m, d_v, &seg, 1e-2f, 0.9f, 0.95f, 1e-8f, d_scale, step, 0);
    for (int k = 0; k < seg.n; k++) {   // version 1, segment by segment
        size_t b = seg.begin[k], len = seg.begin[k + 1] - b;
        adamw_update(d_p1 + b, d_p16_1 + b, d_g + b, d_m1 + b, d_v1 + b, len, 1e-2f, 0.9f, 0.95f, 1e-8f, seg.wd[k], 0.5f, step, 0);
        adamw_cpu(p + b, m + b, v + b, g + b, len, 1e-2f, 0.9f, 0.95f, 1e-8f, seg.wd[k], 0.5f, step);
    }
    cudaCheck(cudaDeviceSynchronize());
    int ok = validate_result(d_p, p, "params", 1, n, n, 1e-7f, 1e-6f);   // tolerances as in check()
    ok &= validate_result(d_m, m, "m", 1, n, n, 1e-7f, 1e-6f);
    ok &= validate_result(d_v, v, "v", 1, n, n, 1e-9f, 1e-6f);
    ok &= validate_result(d_p16, p, "bf16 copy", 1, n, n, 1e-7f, 4e-3f);
    float *a = (float *)mallocCheck(n * sizeof(float)), *b = (float *)mallocCheck(n * sizeof(float));
    size_t diff = 0;
    float *pairs[3][2] = { { d_p, d_p1 }, { d_m, d_m1 }, { d_v, d_v1 } };
    for (int i = 0; i < 3; i++) {
        cudaCheck(cudaMemcpy(a, pairs[i][0], n * sizeof(float), cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(b, pairs[i][1], n * sizeof(float), cudaMemcpyDeviceToHost));
        diff += memcmp(a, b, n * sizeof(float)) != 0;
    }
    cudaCheck(cudaMemcpy(a, d_p16, n * sizeof(floatX), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(b, d_p16_1, n * sizeof(floatX), cudaMemcpyDeviceToHost));
    diff += memcmp(a, b, n * sizeof(floatX)) != 0;
    printf("  version %d vs version 1 per segment (%d segments): %s\n", version, seg.n,
           diff ? "DIFFERENT (FAIL)" : "bitwise equal ok");
    ok &= diff == 0;
    free(a); free(b); free(p); free(g); free(m); free(v);
    d_p -= off; d_g -= off; d_m -= off; d_v -= off; d_p16 -= off;
    float *fr[] = { d_p, d_g, d_m, d_v, d_p1, d_m1, d_v1, d_scale };
    for (int i = 0; i < 8; i++) cudaCheck(cudaFree(fr[i]));
    cudaCheck(cudaFree(d_p16)); cudaCheck(cudaFree(d_p16_1));
    return ok;
}

typedef struct { int version; size_t n; float *p, *g, *m, *v; floatX *p16; float *scale; AdamWSegments seg; } AdamBench;
static void run(AdamBench *a) {
    if (a->version == 1) adamw_update(a->p, a->p16, a->g, a->m, a->v, a->n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 10, 0);
    else adamw_update_segments(a->p, a->p16, a->g, a->m, a->v, &a->seg, 1e-4f, 0.9f, 0.95f, 1e-8f, a->scale, 10, 0);
}

// n parameters, one segment (versions 2, 3)
static void bench(int version, size_t n) {
    float *h = make_random_float(n, -1, 1), one = 1.0f;
    AdamBench a = { version, n, to_device_f32(h, n), to_device_f32(h, n), to_device_f32(h, n), to_device_f32(h, n), NULL,
                    to_device_f32(&one, 1) };
    a.seg.n = 1; a.seg.begin[0] = 0; a.seg.begin[1] = n; a.seg.wd[0] = 0.1f;
    adamw_vec = version == 3;
    cudaCheck(cudaMemset(a.v, 0, n * sizeof(float)));
    cudaMallocCheck(&a.p16, n * sizeof(floatX));
    float ms = benchmark_kernel(10, run, &a);
    printf("n=%zu  version %d  %8.3f ms  %7.1f GB/s\n", n, version, ms, 30.0 * n / (ms * 1e-3) / 1e9);
    free(h);
    cudaCheck(cudaFree(a.p)); cudaCheck(cudaFree(a.g)); cudaCheck(cudaFree(a.m)); cudaCheck(cudaFree(a.v)); cudaCheck(cudaFree(a.p16));
    cudaCheck(cudaFree(a.scale));
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 3);
    cudaCheck(cudaSetDevice(0));
    if (a.check) {
        int ok = check(1000, 1) & check(12345, 7);
        for (int v = 2; v <= 3; v++)   // one element, a partial last group, aligned or not
            ok &= check_segments(v, 1, 1, 0) & check_segments(v, 20000, 3, 0) & check_segments(v, 20003, 3, 0) &
                  check_segments(v, 20003, 2, 1);
        printf(ok ? "adamw: all checks passed\n" : "adamw: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    // d12's 124 M parameters (padded), d4w256h4's 15.3 M
    for (int v = 1; v <= 3; v++)
        if (a.version == 0 || a.version == v) { bench(v, (size_t)124 << 20); bench(v, (size_t)15300000); }
    return 0;
}
