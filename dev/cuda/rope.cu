/*
 RoPE on interleaved pairs (llmc/rope.cuh), in place on q (N, nh, hd) and k (N, nhk, hd) in one launch,
 position t = n % T; the backward is the inverse rotation. Checked dense and as column slices of one stacked
 [q | k | v] matrix (the trainer's layout: rows (nh + 2 nhk) hd apart).
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

// stacked 0: q, k in two dense allocations; 1: q, k column slices of one (N, ld) matrix [q | k | v] with
// ld = (nh + 2 nhk) hd, the trainer's stacked projection (the v columns must come out untouched)
static int check(int B, int T, int nh, int nhk, int hd, int stacked) {
    int N = B * T, cq = nh * hd, ck = nhk * hd, ld = stacked ? cq + 2 * ck : 0;
    size_t nq = (size_t)N * cq, nk = (size_t)N * ck, n = nq + nk;
    printf("check B=%d T=%d nh=%d nhk=%d hd=%d%s\n", B, T, nh, nhk, hd, stacked ? " (stacked [q | k | v] rows)" : "");
    // x = [q | k] on the host (dense)
    float *x = make_random_float(n, -2, 2), *fwd = (float *)mallocCheck(n * sizeof(float)), *bwd = (float *)mallocCheck(n * sizeof(float));
    round_to_bf16(x, n);
    rope_cpu(fwd, x, N, T, nh, hd, 1);
    rope_cpu(bwd, x, N, T, nh, hd, -1);
    rope_cpu(fwd + nq, x + nq, N, T, nhk, hd, 1);
    rope_cpu(bwd + nq, x + nq, N, T, nhk, hd, -1);
    float2 *table = rope_table_create(T, hd);
    floatX *d_q, *d_k, *d_dq, *d_dk, *d_s = NULL, *d_ds = NULL;
    float *hs = NULL;
    if (stacked) {   // rows [q_n | k_n | v_n], v random
        hs = make_random_float((size_t)N * ld, -2, 2);
        round_to_bf16(hs, (size_t)N * ld);
        for (int r = 0; r < N; r++) {
            memcpy(hs + (size_t)r * ld, x + (size_t)r * cq, cq * sizeof(float));
            memcpy(hs + (size_t)r * ld + cq, x + nq + (size_t)r * ck, ck * sizeof(float));
        }
        d_s = to_device_bf16(hs, (size_t)N * ld); d_ds = to_device_bf16(hs, (size_t)N * ld);
        d_q = d_s; d_k = d_s + cq; d_dq = d_ds; d_dk = d_ds + cq;
    } else {
        d_q = to_device_bf16(x, nq); d_k = to_device_bf16(x + nq, nk);
        d_dq = to_device_bf16(x, nq); d_dk = to_device_bf16(x + nq, nk);
    }
    int ldq = stacked ? ld : cq, ldk = stacked ? ld : ck;
    rope_forward(d_q, ldq, nh, d_k, ldk, nhk, table, N, T, hd, 0);
    rope_backward(d_dq, ldq, nh, d_dk, ldk, nhk, table, N, T, hd, 0);
    cudaCheck(cudaDeviceSynchronize());
    // bf16 outputs of O(1) values: rtol 8e-3, atol 1e-2 (a rotated pair can cancel to ~0).
    // A wrong position, frequency, pairing, tensor or row stride moves values by O(1).
    int ok = validate_result(d_q, fwd, "forward q", N, cq, ldq, 1e-2f, 8e-3f);
    ok &= validate_result(d_k, fwd + nq, "forward k", N, ck, ldk, 1e-2f, 8e-3f);
    ok &= validate_result(d_dq, bwd, "backward q", N, cq, ldq, 1e-2f, 8e-3f);
    ok &= validate_result(d_dk, bwd + nq, "backward k", N, ck, ldk, 1e-2f, 8e-3f);
    if (stacked) {   // the v columns, exactly (bf16 values copied up and back)
        float *v = (float *)mallocCheck(nk * sizeof(float));
        for (int r = 0; r < N; r++) memcpy(v + (size_t)r * ck, hs + (size_t)r * ld + cq + ck, ck * sizeof(float));
        ok &= validate_result(d_s + cq + ck, v, "fwd v", N, ck, ld, 0.0f, 0.0f);
        ok &= validate_result(d_ds + cq + ck, v, "bwd v", N, ck, ld, 0.0f, 0.0f);
        free(v); free(hs);
        cudaCheck(cudaFree(d_s)); cudaCheck(cudaFree(d_ds));
    } else {
        cudaCheck(cudaFree(d_q)); cudaCheck(cudaFree(d_k)); cudaCheck(cudaFree(d_dq)); cudaCheck(cudaFree(d_dk));
    }
    free(x); free(fwd); free(bwd);
    cudaCheck(cudaFree(table));
    return ok;
}

typedef struct { floatX *q, *k; float2 *table; int N, T, nh, hd; } RopeBench;
static void run(RopeBench *p) {
    rope_forward(p->q, p->nh * p->hd, p->nh, p->k, p->nh * p->hd, p->nh, p->table, p->N, p->T, p->hd, 0);
}

// q and k of d12 (nh heads each): one launch for both
static void bench(int B, int T, int nh, int hd) {
    size_t n = (size_t)B * T * nh * hd;
    float *h = make_random_float(n, -1, 1);
    RopeBench p = { to_device_bf16(h, n), to_device_bf16(h, n), rope_table_create(T, hd), B * T, T, nh, hd };
    float ms = benchmark_kernel(20, run, &p);
    printf("B=%d T=%d nh=%d hd=%d  q and k, version 2 (hd %% 8 == 0)  %8.3f ms  %7.1f GB/s\n", B, T, nh, hd, ms,
           2 * 4.0 * n / (ms * 1e-3) / 1e9);
    free(h); cudaCheck(cudaFree(p.q)); cudaCheck(cudaFree(p.k)); cudaCheck(cudaFree(p.table));
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 1);
    cudaCheck(cudaSetDevice(0));
    if (a.check) {
        int ok = check(2, 37, 3, 1, 16, 0) & check(1, 300, 2, 2, 64, 0) & check(2, 5, 3, 1, 12, 0) & check(1, 9, 2, 1, 32, 0);
        ok &= check(2, 37, 3, 1, 16, 1) & check(1, 300, 2, 2, 64, 1) & check(2, 5, 3, 1, 12, 1);   // hd 12: unpacked
        printf(ok ? "rope: all checks passed\n" : "rope: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    bench(8, 1024, 12, 64);
    return 0;
}
