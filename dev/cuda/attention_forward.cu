/*
 Causal GQA attention, forward: out = softmax(q k^T / sqrt(d) + causal) v, per query head h reading kv head h/(H/Hkv).
   version 1: llmc/attention.cuh attention_forward (FlashAttention-2 tiling, online softmax, lse kept)
 make -C dev/cuda && dev/cuda/bin/attention_forward check    (or bench)
 attention_backward.cu includes this file (with ATTENTION_FORWARD_NO_MAIN) for the CPU reference and the setup.
*/
#include "common.h"
#include "../../llmc/attention.cuh"

// CPU reference, double accumulation: out (B,T,H,d), lse (B,H,T); with dout given, also dq (B,T,H,d) and
// dk, dv (B,T,Hkv,d) summed over each kv head's query heads (dq == NULL: forward only)
static void attention_cpu(float *out, float *lse, float *dq, float *dk, float *dv, const float *dout,
                          const float *q, const float *k, const float *v, int B, int T, int H, int Hkv, int d) {
    int g = H / Hkv;
    double scale = 1.0 / sqrt((double)d);
    double *P = (double *)mallocCheck((size_t)T * sizeof(double));
    double *dqa = (double *)mallocCheck((size_t)d * sizeof(double));
    double *dka = dq ? (double *)callocCheck((size_t)B * T * Hkv * d, sizeof(double)) : NULL;
    double *dva = dq ? (double *)callocCheck((size_t)B * T * Hkv * d, sizeof(double)) : NULL;
    for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int t = 0; t < T; t++) {
        size_t qo = (((size_t)b * T + t) * H + h) * d;
        const float *qt = q + qo;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j <= t; j++) {
            const float *kj = k + (((size_t)b * T + j) * Hkv + h / g) * d;
            double z = 0.0;
            for (int i = 0; i < d; i++) z += (double)qt[i] * kj[i];
            P[j] = z * scale;
            mx = fmax(mx, P[j]);
        }
        for (int j = 0; j <= t; j++) sum += (P[j] = exp(P[j] - mx));
        lse[((size_t)b * H + h) * T + t] = (float)(mx + log(sum));
        double delta = 0.0;
        for (int i = 0; i < d; i++) {
            double o = 0.0;
            for (int j = 0; j <= t; j++) o += P[j] / sum * v[(((size_t)b * T + j) * Hkv + h / g) * d + i];
            out[qo + i] = (float)o;
            if (dq) delta += o * dout[qo + i];
        }
        if (!dq) continue;
        for (int i = 0; i < d; i++) dqa[i] = 0.0;
        for (int j = 0; j <= t; j++) {
            size_t ko = (((size_t)b * T + j) * Hkv + h / g) * d;
            double p = P[j] / sum, dp = 0.0;
            for (int i = 0; i < d; i++) dp += (double)dout[qo + i] * v[ko + i];
            double ds = p * (dp - delta);
            for (int i = 0; i < d; i++) {
                dqa[i] += ds * k[ko + i] * scale;
                dka[ko + i] += ds * qt[i] * scale;
                dva[ko + i] += p * dout[qo + i];
            }
        }
        for (int i = 0; i < d; i++) dq[qo + i] = (float)dqa[i];
    }
    if (dq) for (size_t e = 0; e < (size_t)B * T * Hkv * d; e++) { dk[e] = (float)dka[e]; dv[e] = (float)dva[e]; }
    free(P); free(dqa); free(dka); free(dva);
}

typedef struct {
    int B, T, H, Hkv, d;
    float *q, *k, *v;          // host, bf16-exact values
    floatX *d_q, *d_k, *d_v, *d_out;
    float *d_lse;
} AttProblem;

static AttProblem make_att_problem(int B, int T, int H, int Hkv, int d) {
    AttProblem p = {B, T, H, Hkv, d};
    size_t nq = (size_t)B * T * H * d, nk = (size_t)B * T * Hkv * d;
    p.q = make_random_float(nq, -2.0f, 2.0f);   // logits of a few units: peaked and flat rows both occur
    p.k = make_random_float(nk, -2.0f, 2.0f);
    p.v = make_random_float(nk, -1.0f, 1.0f);
    round_to_bf16(p.q, nq); round_to_bf16(p.k, nk); round_to_bf16(p.v, nk);
    p.d_q = to_device_bf16(p.q, nq); p.d_k = to_device_bf16(p.k, nk); p.d_v = to_device_bf16(p.v, nk);
    cudaMallocCheck(&p.d_out, nq * sizeof(floatX));
    cudaMallocCheck(&p.d_lse, (size_t)B * H * T * sizeof(float));
    return p;
}
static void free_att_problem(AttProblem *p) {
    free(p->q); free(p->k); free(p->v);
    cudaCheck(cudaFree(p->d_q)); cudaCheck(cudaFree(p->d_k)); cudaCheck(cudaFree(p->d_v));
    cudaCheck(cudaFree(p->d_out)); cudaCheck(cudaFree(p->d_lse));
}
static void run_att_forward(AttProblem *p) {
    attention_forward(p->d_out, p->d_lse, p->d_q, p->d_k, p->d_v, p->B, p->T, p->H, p->Hkv, p->d, 0);
}
static double att_forward_flops(int B, int T, int H, int d) { return 4.0 * B * H * d * (double)T * (T + 1) / 2; }

#ifndef ATTENTION_FORWARD_NO_MAIN
static int check(int B, int T, int H, int Hkv, int d) {
    printf("check B=%d T=%d H=%d Hkv=%d d=%d\n", B, T, H, Hkv, d);
    AttProblem p = make_att_problem(B, T, H, Hkv, d);
    size_t nq = (size_t)B * T * H * d;
    float *out_ref = (float *)mallocCheck(nq * sizeof(float)), *lse_ref = (float *)mallocCheck((size_t)B * H * T * sizeof(float));
    attention_cpu(out_ref, lse_ref, NULL, NULL, NULL, NULL, p.q, p.k, p.v, B, T, H, Hkv, d);
    run_att_forward(&p);
    cudaCheck(cudaDeviceSynchronize());
    // P is rounded to bf16 before P V, as in FlashAttention-2 (2^-9 relative per weight: up to 2^-9 max|v|, about
    // 2e-3 max|out|, when the errors line up), and out is stored in bf16 (2^-9 relative): atol 5e-3 of max|out|,
    // rtol 1e-2 (the CPU emulation of this kernel shows up to 3e-3). lse is fp32 of magnitude log(T) + max logit:
    // 1e-4. A wrong mask or head mapping is off by 1e-1 or more.
    int ok = validate_result(p.d_out, out_ref, "out", (size_t)B * T * H, d, d, 5e-3f * max_abs(out_ref, nq), 1e-2f);
    ok &= validate_result(p.d_lse, lse_ref, "lse", (size_t)B * H, T, T, 1e-4f, 1e-4f);
    free(out_ref); free(lse_ref);
    free_att_problem(&p);
    return ok;
}

static void bench(int B, int T, int H, int Hkv, int d) {
    AttProblem p = make_att_problem(B, T, H, Hkv, d);
    float ms = benchmark_kernel(10, run_att_forward, &p);
    printf("B=%d T=%d H=%d Hkv=%d d=%d  version 1  %8.3f ms  %6.1f TFLOP/s\n", B, T, H, Hkv, d, ms,
           att_forward_flops(B, T, H, d) / (ms * 1e-3) / 1e12);
    free_att_problem(&p);
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 1);
    cudaCheck(cudaSetDevice(0));
    if (a.check) {
        // GQA groups of 2 and 4, MHA; T not a multiple of 64; every supported head width
        int ok = check(2, 200, 4, 2, 64) & check(1, 130, 4, 1, 128) & check(1, 67, 3, 3, 32) & check(1, 1, 2, 1, 32);
        printf(ok ? "attention_forward: all checks passed\n" : "attention_forward: CHECK FAILED\n");
        return ok ? 0 : 1;
    }
    bench(8, 1024, 12, 12, 64);
    bench(8, 1024, 12, 4, 64);
    bench(4, 2048, 8, 2, 128);
    return 0;
}
#endif
