/*
 bench_gemm.c: GFLOP/s of train_sessa.c's gemm on the matmul shapes of one training step at the issue's
 config (d4w256h4, B=4, T=256: N = 1024 rows, D = 256, V = 256), one thread, to tell how close the
 micro-kernel is to the core's peak (Zen 4: one 16-wide FMA per cycle, 32 flop/cycle).
 Build: gcc -O3 -march=native -ffp-contract=fast -fopenmp -I. dev/bench/bench_gemm.c -lm -o dev/bench/bench_gemm
 Run:   OMP_NUM_THREADS=1 dev/bench/bench_gemm
*/
#define TESTING
#include "../../train_sessa.c"

static double seconds(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }

static void bench(const char *name, int M, int N, int K, int transA) {
    float *A = alloc_floats((size_t)M * K), *B = alloc_floats((size_t)K * N), *C = alloc_floats((size_t)M * N);
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)(i % 5) * 0.1f;
    long sam = transA ? 1 : K, sak = transA ? M : 1;      // A (M, K) row-major, or read from a (K, M) array
    int reps = 0;
    double t0 = seconds(), t;
    do { gemm(C, N, A, sam, sak, B, N, M, N, K, 0); reps++; } while ((t = seconds() - t0) < 0.5);
    printf("%-34s M %5d N %5d K %5d  %6.1f GFLOP/s\n", name, M, N, K, 2.0 * M * N * K * reps / t * 1e-9);
    free(A); free(B); free(C);
}

int main(void) {
    bench("forward  out = inp W^T (Linear_in)", 1024, 512, 256, 0);
    bench("backward dinp = dout W", 1024, 256, 512, 0);
    bench("backward dW = dout^T inp", 512, 256, 1024, 1);
    bench("attention logits q kT (QB x t)", 64, 256, 64, 0);
    bench("attention P V", 64, 64, 256, 0);
    bench("feedback logits qb kbT", 64, 256, 256, 0);
    return 0;
}
