/*
 The step's scalars on the device (llmc/global_norm.cuh), deterministic.
   version 1: squared L2 norm: a fixed grid of 512 blocks, grid-stride partial sums, one block sums the partials
   check also: the clip scale (grad_clip) against the host's clip_of_norm2 bitwise, for no clip, a clip above
   and a clip below the norm; the mean loss (loss_mean) against the same double sum in the same order bitwise
   and a plain double sum to 1e-6, set and then accumulated
 make -C dev/cuda && dev/cuda/bin/global_norm check    (or bench)
*/
#include "common.h"
#include "../../llmc/global_norm.cuh"

typedef struct { size_t n; float *x, *out, *scratch; } NormProblem;
static void run(NormProblem *p) { global_norm_squared(p->out, p->x, p->n, p->scratch, 0); }

static NormProblem make_problem(const float *h, size_t n) {
    NormProblem p = { n, to_device_f32(h, n), NULL, NULL };
    cudaMallocCheck(&p.out, sizeof(float));
    cudaMallocCheck(&p.scratch, global_norm_scratch_bytes());
    return p;
}
static void free_problem(NormProblem *p) { cudaCheck(cudaFree(p->x)); cudaCheck(cudaFree(p->out)); cudaCheck(cudaFree(p->scratch)); }

static int check(size_t n) {
    printf("check n=%zu\n", n);
    float *h = make_random_float(n, -1, 1);
    double ref = 0.0;
    for (size_t i = 0; i < n; i++) ref += (double)h[i] * h[i];
    float reff = (float)ref, first, second;
    NormProblem p = make_problem(h, n);
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
    free_problem(&p);
    return ok && same;
}

// grad_clip on norm2 with clip: norm and scale bitwise those of the host's clip_of_norm2
static int check_clip(float norm2, float clip) {
    StepStats h = { 0.0, norm2, 0.0f, 0.0f }, *d;
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

static void bench(size_t n) {
    float *h = make_random_float(n, -1, 1);
    NormProblem p = make_problem(h, n);
    float ms = benchmark_kernel(10, run, &p);
    printf("n=%zu  version 1  %8.3f ms  %7.1f GB/s\n", n, ms, 4.0 * n / (ms * 1e-3) / 1e9);
    free(h);
    free_problem(&p);
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 1);
    cudaCheck(cudaSetDevice(0));
    if (a.check) {
        int ok = check(1) & check(1000) & check(3000001);
        ok &= check_clip(4.0f, 0.0f) & check_clip(4.0f, 3.0f) & check_clip(2.0f, 1.0f) & check_clip(0.0f, 1.0f);
        ok &= check_loss(1) & check_loss(1000) & check_loss(131072);
        printf(ok ? "global_norm: all checks passed\n" : "global_norm: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    bench((size_t)124 << 20);
    return 0;
}
