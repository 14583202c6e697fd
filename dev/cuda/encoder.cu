/*
 Token embedding (llmc/encoder.cuh): forward x0[n] = wte[tokens[n]]; backward dwte[v] += sum of dout over
 the positions holding token v.
   version 1: gather; backward by buckets of positions sorted by token on the host (no atomics: each
              token's rows are summed in increasing position order by one thread per column)
 make -C dev/cuda && dev/cuda/bin/encoder check    (or bench)
*/
#include "common.h"
#include "../../llmc/encoder.cuh"

// dwte (V, C) += scatter of dout, each token's positions summed in increasing order in fp32 (as the GPU)
static void encoder_backward_cpu(float *dwte, const float *dout, const int *tokens, int N, int V, int C) {
    float *acc = (float *)callocCheck((size_t)V * C, sizeof(float));
    for (int n = 0; n < N; n++) for (int c = 0; c < C; c++) acc[(size_t)tokens[n] * C + c] += dout[(size_t)n * C + c];
    for (size_t i = 0; i < (size_t)V * C; i++) dwte[i] += acc[i];
    free(acc);
}

static int check(int N, int V, int C) {
    printf("check N=%d V=%d C=%d\n", N, V, C);
    int Vp = (V + 127) / 128 * 128;
    float *wte = make_random_float((size_t)Vp * C, -1, 1), *dout = make_random_float((size_t)N * C, -1, 1);
    float *dwte = make_random_float((size_t)Vp * C, -1, 1);
    round_to_bf16(wte, (size_t)Vp * C); round_to_bf16(dout, (size_t)N * C);
    int *tokens = (int *)mallocCheck(N * sizeof(int));
    for (int n = 0; n < N; n++) tokens[n] = (int)(random_f32() * V);   // N >> V: many repeats
    float *x0 = (float *)mallocCheck((size_t)N * C * sizeof(float));
    for (int n = 0; n < N; n++) memcpy(x0 + (size_t)n * C, wte + (size_t)tokens[n] * C, C * sizeof(float));
    floatX *d_wte = to_device_bf16(wte, (size_t)Vp * C), *d_dout = to_device_bf16(dout, (size_t)N * C), *d_x0;
    float *d_dwte = to_device_f32(dwte, (size_t)Vp * C);
    encoder_backward_cpu(dwte, dout, tokens, N, V, C);
    int *d_tokens;
    cudaMallocCheck(&d_tokens, N * sizeof(int));
    cudaMallocCheck(&d_x0, (size_t)N * C * sizeof(floatX));
    cudaCheck(cudaMemcpy(d_tokens, tokens, N * sizeof(int), cudaMemcpyHostToDevice));
    EncoderBackward e;
    encoder_backward_init(&e, V, N);
    encoder_forward(d_x0, d_tokens, d_wte, N, C, 0);
    encoder_backward_plan(&e, tokens, N, 0);
    encoder_backward(d_dwte, d_dout, &e, C, 0);
    cudaCheck(cudaDeviceSynchronize());
    // forward is a copy: exact. backward: the same fp32 additions in the same order as the CPU: exact too
    // (a tolerance of 0; any lost or doubled position, or a different order, shows).
    int ok = validate_result(d_x0, x0, "x0", N, C, C, 0.0f, 0.0f);
    ok &= validate_result(d_dwte, dwte, "dwte", Vp, C, C, 0.0f, 0.0f);
    encoder_backward_free(&e);
    free(wte); free(dout); free(dwte); free(tokens); free(x0);
    cudaCheck(cudaFree(d_wte)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_dwte)); cudaCheck(cudaFree(d_tokens));
    cudaCheck(cudaFree(d_x0));
    return ok;
}

typedef struct { int N, C; EncoderBackward *e; float *dwte; floatX *dout; const int *h_tokens; } EncBench;
static void run_bwd(EncBench *p) {
    encoder_backward_plan(p->e, p->h_tokens, p->N, 0);
    encoder_backward(p->dwte, p->dout, p->e, p->C, 0);
}

static void bench(int N, int V, int C) {
    int Vp = (V + 127) / 128 * 128;
    int *tokens = (int *)mallocCheck(N * sizeof(int));
    for (int n = 0; n < N; n++) tokens[n] = (int)(random_f32() * random_f32() * V);  // skewed, like text
    float *h = make_random_float((size_t)N * C, -1, 1);
    EncoderBackward e;
    encoder_backward_init(&e, V, N);
    EncBench p = { N, C, &e, NULL, to_device_bf16(h, (size_t)N * C), tokens };
    cudaMallocCheck(&p.dwte, (size_t)Vp * C * sizeof(float));
    cudaCheck(cudaMemset(p.dwte, 0, (size_t)Vp * C * sizeof(float)));
    float ms = benchmark_kernel(10, run_bwd, &p);
    printf("N=%d V=%d C=%d  version 1 backward (host plan included)  %8.3f ms\n", N, V, C, ms);
    encoder_backward_free(&e);
    free(tokens); free(h); cudaCheck(cudaFree(p.dwte)); cudaCheck(cudaFree(p.dout));
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 1);
    cudaCheck(cudaSetDevice(0));
    if (a.check) {
        int ok = check(512, 61, 64) & check(100, 1000, 300);
        printf(ok ? "encoder: all checks passed\n" : "encoder: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    bench(8 * 1024, 50257, 768);
    return 0;
}
