/*
 The step's scalars on the device (llmc/global_norm.cuh), deterministic.
   version 1: squared L2 norm: a fixed grid of 512 blocks, grid-stride partial sums (4-byte loads), one block sums
              the partials
   version 2: (llmc) the same grid with 16-byte loads, 4 in flight per thread (the unaligned head and tail apart)
   check also: the clip scale (grad_clip) against the host's clip_of_norm2 bitwise, for no clip, a clip above
   and a clip below the norm; the mean loss (loss_mean) against the same double sum in the same order bitwise
   and a plain double sum to 1e-6, set and then accumulated
 make -C dev/cuda && dev/cuda/bin/global_norm check    (or bench)
*/
#include "common.h"
#include "../../llmc/global_norm.cuh"

// version 1
__global__ void norm_squared_partial_kernel1(float *partial, const float *x, size_t n) {
    float acc = 0.0f;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        acc += x[i] * x[i];
    acc = block_reduce_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

typedef struct { size_t n; float *x, *out, *scratch; int version; } NormProblem;
static void run(NormProblem *p) {
    if (p->version == 1) {
        norm_squared_partial_kernel1<<<NORM_BLOCKS, NORM_THREADS>>>(p->scratch, p->x, p->n);
        cudaCheck(cudaGetLastError());
        sum_partials_kernel<<<1, NORM_THREADS>>>(p->out, p->scratch, NORM_BLOCKS);
        cudaCheck(cudaGetLastError());
    } else global_norm_squared(p->out, p->x, p->n, p->scratch, 0);
}

static NormProblem make_problem(const float *h, size_t n, int version) {
    NormProblem p = { n, to_device_f32(h, n), NULL, NULL, version };
    cudaMallocCheck(&p.out, sizeof(float));
    cudaMallocCheck(&p.scratch, global_norm_scratch_bytes());
    return p;
}
static void free_problem(NormProblem *p) { cudaCheck(cudaFree(p->x)); cudaCheck(cudaFree(p->out)); cudaCheck(cudaFree(p->scratch)); }

// the norm of x[off .. n) (off 0..3: a 16-byte aligned start or not)
static int check(int version, size_t n, size_t off) {
    printf("check version %d n=%zu from element %zu\n", version, n - off, off);
    float *h = make_random_float(n, -1, 1);
    double ref = 0.0;
    for (size_t i = off; i < n; i++) ref += (double)h[i] * h[i];
    float reff = (float)ref, first, second;
    NormProblem p = make_problem(h, n, version);
    p.x += off; p.n -= off;
    run(&p);
    cudaCheck(cudaMemcpy(&first, p.out, sizeof(float), cudaMemcpyDeviceToHost));
    run(&p);
    cudaCheck(cudaMemcpy(&second, p.out, sizeof(float), cudaMemcpyDeviceToHost));
    // fp32 partial sums of positive terms over a tree of depth ~log2(n): 1e-5 relative.
    // Determinism: the second run must give the same bits.
    int ok = validate_result(p.out, &reff, "norm^2", 1, 1, 1, 0.0f, 1e-5f);
    int same = memcmp(&first, &second, sizeof(float)) == 0;
    printf("  repeat   %s\n", same ? "bitwise identical ok" : "DIFFERS: FAIL");
    free(h);
    p.x -= off;
    free_problem(&p);
    return ok && same;
}

// grad_clip on norm2 with clip: norm and scale bitwise those of the host's clip_of_norm2
static int check_clip(float norm2, float clip) {
    StepStats h = {}, *d;
    h.norm2 = norm2;
    cudaMallocCheck(&d, sizeof(StepStats));
    cudaCheck(cudaMemcpy(d, &h, sizeof(h), cudaMemcpyHostToDevice));
    grad_clip(d, clip, 0);
    cudaCheck(cudaMemcpy(&h, d, sizeof(h), cudaMemcpyDeviceToHost));
    float norm, scale;
    clip_of_norm2(norm2, clip, &norm, &scale);
    // the expected scale written out: 1 without clipping, else clip / (norm + 1e-6)
    float expect = clip > 0.0f && norm > clip ? clip / (norm + 1e-6f) : 1.0f;
    int ok = memcmp(&h.norm, &norm, 4) == 0 && memcmp(&h.scale, &scale, 4) == 0 && scale == expect;
    printf("  clip %-6g norm^2 %-8g: norm %.7g scale %.7g (expected %.7g) %s\n", clip, norm2, h.norm, h.scale, expect,
           ok ? "bitwise ok" : "FAIL");
    cudaCheck(cudaFree(d));
    return ok;
}

// loss_mean over n losses, set then accumulated: against the kernel's order computed here (bitwise) and a plain sum
static int check_loss(int n) {
    float *h = make_random_float(n, 0.0f, 12.0f), *d = to_device_f32(h, n);
    StepStats *ds, st;
    cudaMallocCheck(&ds, sizeof(StepStats));
    double part[LOSS_THREADS], same = 0.0, plain = 0.0;
    for (int t = 0; t < LOSS_THREADS; t++) { part[t] = 0.0; for (int i = t; i < n; i += LOSS_THREADS) part[t] += h[i]; }
    for (int t = 0; t < LOSS_THREADS; t++) same += part[t];
    for (int i = 0; i < n; i++) plain += h[i];
    double mean = (double)(float)(same / n);
    loss_mean(ds, d, n, 0, 0);
    cudaCheck(cudaMemcpy(&st, ds, sizeof(st), cudaMemcpyDeviceToHost));
    int ok = st.loss_sum == mean && fabs(st.loss_sum - plain / n) <= 1e-6 * fabs(plain / n);
    loss_mean(ds, d, n, 1, 0);   // a second micro-step of the same batch adds the same mean
    cudaCheck(cudaMemcpy(&st, ds, sizeof(st), cudaMemcpyDeviceToHost));
    ok &= st.loss_sum == mean + mean;
    printf("  loss mean n=%d: %.9f (plain double sum %.9f), accumulated twice %.9f %s\n", n, mean, plain / n,
           st.loss_sum, ok ? "ok" : "FAIL");
    free(h);
    cudaCheck(cudaFree(d)); cudaCheck(cudaFree(ds));
    return ok;
}

static void bench(int version, size_t n) {
    float *h = make_random_float(n, -1, 1);
    NormProblem p = make_problem(h, n, version);
    float ms = benchmark_kernel(10, run, &p);
    printf("n=%zu  version %d  %8.3f ms  %7.1f GB/s\n", n, version, ms, 4.0 * n / (ms * 1e-3) / 1e9);
    free(h);
    free_problem(&p);
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 2);
    cudaCheck(cudaSetDevice(0));
    if (a.check) {
        int ok = 1;
        for (int v = 1; v <= 2; v++) {
            if (a.version != 0 && a.version != v) continue;
            // fewer elements than threads, fewer than the unaligned head, aligned or not, a long odd vector
            ok &= check(v, 1, 0) & check(v, 3, 1) & check(v, 1000, 0) & check(v, 1003, 3) & check(v, 3000001, 0) &
                  check(v, 3000001, 2);
        }
        ok &= check_clip(4.0f, 0.0f) & check_clip(4.0f, 3.0f) & check_clip(2.0f, 1.0f) & check_clip(0.0f, 1.0f);
        ok &= check_loss(1) & check_loss(1000) & check_loss(131072);
        printf(ok ? "global_norm: all checks passed\n" : "global_norm: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    // d12's 124 M parameters, d4w256h4's 15.3 M (V = 50257)
    for (int v = 1; v <= 2; v++)
        if (a.version == 0 || a.version == v) { bench(v, (size_t)124 << 20); bench(v, (size_t)15300000); }
    return 0;
}
