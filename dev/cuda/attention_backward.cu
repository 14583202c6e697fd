/*
 Causal GQA attention, backward with recomputation from lse (FlashAttention-2): dq, and dk, dv summed over the
 query heads of each kv head, deterministic (no atomics).
   version 1: llmc/attention.cuh attention_backward
 make -C dev/cuda && dev/cuda/bin/attention_backward check    (or bench)
*/
#define ATTENTION_FORWARD_NO_MAIN
#include "attention_forward.cu"

typedef struct { floatX *dout, *dq, *dk, *dv; float *scratch; } AttGrads;

static AttGrads att_grads_alloc(const AttProblem *p, const float *dout) {
    AttGrads g;
    size_t nq = (size_t)p->B * p->T * p->H * p->d, nk = (size_t)p->B * p->T * p->Hkv * p->d;
    g.dout = to_device_bf16(dout, nq);
    cudaMallocCheck(&g.dq, nq * sizeof(floatX));
    cudaMallocCheck(&g.dk, nk * sizeof(floatX));
    cudaMallocCheck(&g.dv, nk * sizeof(floatX));
    cudaMallocCheck(&g.scratch, attention_backward_scratch_bytes(p->B, p->T, p->H, p->Hkv, p->d));
    return g;
}
static void att_grads_free(AttGrads *g) {
    cudaCheck(cudaFree(g->dout)); cudaCheck(cudaFree(g->dq)); cudaCheck(cudaFree(g->dk)); cudaCheck(cudaFree(g->dv));
    cudaCheck(cudaFree(g->scratch));
}
static void run_att_backward(AttProblem *p, AttGrads *g) {
    attention_backward(g->dq, g->dk, g->dv, g->dout, p->d_out, p->d_lse, p->d_q, p->d_k, p->d_v, g->scratch,
                       p->B, p->T, p->H, p->Hkv, p->d, 0);
}

static int check(int B, int T, int H, int Hkv, int d) {
    printf("check B=%d T=%d H=%d Hkv=%d d=%d\n", B, T, H, Hkv, d);
    AttProblem p = make_att_problem(B, T, H, Hkv, d);
    size_t nq = (size_t)B * T * H * d, nk = (size_t)B * T * Hkv * d;
    float *dout = make_random_float(nq, -1.0f, 1.0f);
    round_to_bf16(dout, nq);
    float *out = (float *)mallocCheck(nq * sizeof(float)), *lse = (float *)mallocCheck((size_t)B * H * T * sizeof(float));
    float *dq = (float *)mallocCheck(nq * sizeof(float));
    float *dk = (float *)mallocCheck(nk * sizeof(float)), *dv = (float *)mallocCheck(nk * sizeof(float));
    attention_cpu(out, lse, dq, dk, dv, dout, p.q, p.k, p.v, B, T, H, Hkv, d);
    AttGrads g = att_grads_alloc(&p, dout);
    run_att_forward(&p);
    run_att_backward(&p, &g);
    cudaCheck(cudaDeviceSynchronize());
    // P and dS are rounded to bf16 before their products (FlashAttention-2's numerics, 2^-9 relative per term),
    // Delta comes from the bf16 out, and the results are stored in bf16: atol 1e-2 of the tensor's largest entry,
    // rtol 1e-2 (the CPU emulation of these kernels shows up to 4e-3 of the max). Wrong masks or head sums are
    // off by 1e-1 of the max or more.
    int ok = validate_result(g.dq, dq, "dq", (size_t)B * T * H, d, d, 1e-2f * max_abs(dq, nq), 1e-2f);
    ok &= validate_result(g.dk, dk, "dk", (size_t)B * T * Hkv, d, d, 1e-2f * max_abs(dk, nk), 1e-2f);
    ok &= validate_result(g.dv, dv, "dv", (size_t)B * T * Hkv, d, d, 1e-2f * max_abs(dv, nk), 1e-2f);
    // determinism: a second run gives the same bits
    uint16_t *a1 = (uint16_t *)mallocCheck(nk * sizeof(uint16_t)), *a2 = (uint16_t *)mallocCheck(nk * sizeof(uint16_t));
    cudaCheck(cudaMemcpy(a1, g.dk, nk * sizeof(floatX), cudaMemcpyDeviceToHost));
    run_att_backward(&p, &g);
    cudaCheck(cudaMemcpy(a2, g.dk, nk * sizeof(floatX), cudaMemcpyDeviceToHost));
    int same = memcmp(a1, a2, nk * sizeof(uint16_t)) == 0;
    printf("  %-8s second run bitwise identical: %s\n", "dk", same ? "ok" : "FAIL");
    ok &= same;
    free(a1); free(a2); free(dout); free(out); free(lse); free(dq); free(dk); free(dv);
    att_grads_free(&g);
    free_att_problem(&p);
    return ok;
}

static void bench(int B, int T, int H, int Hkv, int d) {
    AttProblem p = make_att_problem(B, T, H, Hkv, d);
    float *dout = make_random_float((size_t)B * T * H * d, -1.0f, 1.0f);
    AttGrads g = att_grads_alloc(&p, dout);
    run_att_forward(&p);
    float ms = benchmark_kernel(10, run_att_backward, &p, &g);
    // 2.5x the forward's matmul FLOPs (S, dP, dV, dK, dQ; S recomputed twice here: counted once, as FA2 does)
    printf("B=%d T=%d H=%d Hkv=%d d=%d  version 1  %8.3f ms  %6.1f TFLOP/s\n", B, T, H, Hkv, d, ms,
           2.5 * att_forward_flops(B, T, H, d) / (ms * 1e-3) / 1e12);
    free(dout);
    att_grads_free(&g);
    free_att_problem(&p);
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 1);
    cudaCheck(cudaSetDevice(0));
    if (a.check) {
        int ok = check(2, 200, 4, 2, 64) & check(1, 130, 4, 1, 128) & check(1, 67, 3, 3, 32) & check(1, 1, 2, 1, 32);
        printf(ok ? "attention_backward: all checks passed\n" : "attention_backward: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    bench(8, 1024, 12, 12, 64);
    bench(8, 1024, 12, 4, 64);
    bench(4, 2048, 8, 2, 128);
    return 0;
}
