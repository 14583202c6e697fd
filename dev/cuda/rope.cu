/*
 RoPE on interleaved pairs (llmc/rope.cuh), in place on (N, nh, hd), position t = n % T; the backward is
 the inverse rotation.
   version 1: one thread per pair, cos/sin from a table made on the host in double
   version 2: (llmc) 4 pairs per thread with 16-byte loads and stores when hd % 8 == 0; other head widths
              take version 1's kernel (still in llmc/rope.cuh): the hd = 12 check exercises it
 make -C dev/cuda && dev/cuda/bin/rope check    (or bench)
*/
#include "common.h"
#include "../../llmc/rope.cuh"

// x (N, nh, hd) rotated by sign * theta, theta = t 10000^(-2i/hd) (double)
static void rope_cpu(float *out, const float *x, int N, int T, int nh, int hd, int sign) {
    for (int n = 0; n < N; n++) for (int h = 0; h < nh; h++) for (int i = 0; i < hd / 2; i++) {
        size_t o = ((size_t)n * nh + h) * hd + 2 * i;
        double th = sign * (double)(n % T) * pow(10000.0, -2.0 * i / hd), c = cos(th), s = sin(th);
        out[o] = (float)(x[o] * c - x[o + 1] * s);
        out[o + 1] = (float)(x[o] * s + x[o + 1] * c);
    }
}

static int check(int B, int T, int nh, int hd) {
    int N = B * T;
    size_t n = (size_t)N * nh * hd;
    printf("check B=%d T=%d nh=%d hd=%d\n", B, T, nh, hd);
    float *x = make_random_float(n, -2, 2), *fwd = (float *)mallocCheck(n * sizeof(float)), *bwd = (float *)mallocCheck(n * sizeof(float));
    round_to_bf16(x, n);
    rope_cpu(fwd, x, N, T, nh, hd, 1);
    rope_cpu(bwd, x, N, T, nh, hd, -1);
    float2 *table = rope_table_create(T, hd);
    floatX *d_x = to_device_bf16(x, n), *d_y = to_device_bf16(x, n);
    rope_forward(d_x, table, N, T, nh, hd, 0);
    rope_backward(d_y, table, N, T, nh, hd, 0);
    cudaCheck(cudaDeviceSynchronize());
    // bf16 outputs of O(1) values: rtol 8e-3, atol 1e-2 (a rotated pair can cancel to ~0).
    // A wrong position, frequency or pairing moves values by O(1).
    int ok = validate_result(d_x, fwd, "forward", N * nh, hd, hd, 1e-2f, 8e-3f);
    ok &= validate_result(d_y, bwd, "backward", N * nh, hd, hd, 1e-2f, 8e-3f);
    free(x); free(fwd); free(bwd);
    cudaCheck(cudaFree(table)); cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_y));
    return ok;
}

typedef struct { floatX *x; float2 *table; int N, T, nh, hd; } RopeBench;
static void run(RopeBench *p) { rope_forward(p->x, p->table, p->N, p->T, p->nh, p->hd, 0); }

static void bench(int B, int T, int nh, int hd) {
    size_t n = (size_t)B * T * nh * hd;
    float *h = make_random_float(n, -1, 1);
    RopeBench p = { to_device_bf16(h, n), rope_table_create(T, hd), B * T, T, nh, hd };
    float ms = benchmark_kernel(20, run, &p);
    printf("B=%d T=%d nh=%d hd=%d  version 2 (hd %% 8 == 0)  %8.3f ms  %7.1f GB/s\n", B, T, nh, hd, ms, 4.0 * n / (ms * 1e-3) / 1e9);
    free(h); cudaCheck(cudaFree(p.x)); cudaCheck(cudaFree(p.table));
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 1);
    cudaCheck(cudaSetDevice(0));
    if (a.check) {
        int ok = check(2, 37, 3, 16) & check(1, 300, 2, 64) & check(2, 5, 3, 12) & check(1, 9, 2, 32);
        printf(ok ? "rope: all checks passed\n" : "rope: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    bench(8, 1024, 12, 64);
    return 0;
}
