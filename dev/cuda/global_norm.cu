/*
 Squared L2 norm of the gradient vector (llmc/global_norm.cuh), deterministic.
   version 1: a fixed grid of 512 blocks, grid-stride partial sums, one block sums the partials
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
        printf(ok ? "global_norm: all checks passed\n" : "global_norm: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    bench((size_t)124 << 20);
    return 0;
}
