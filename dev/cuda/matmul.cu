/*
 Linear layers through cuBLASLt (llmc/matmul.cuh), row-major: out (N, OC) = inp (N, C) W^T + b.
   version 1: cuBLASLt, bias epilogue (or a bias kernel when the bias is not 16-byte aligned), fused residual;
              backward: input gradient by cuBLASLt (bf16 out, optional accumulate), weight gradient by cuBLASLt
              (fp32, accumulated), then the bias gradient by the deterministic column sums (the default) or,
              with SESSA_BGRADB=1, by cuBLASLt's CUBLASLT_EPILOGUE_BGRADB into a scratch, then db += scratch;
              check runs both paths
 make -C dev/cuda && dev/cuda/bin/matmul check    (or bench)
*/
#include "common.h"
#include "../../llmc/matmul.cuh"

// CPU reference (double): out = inp w^T + bias + residual (out with row stride ldo, residual dense)
static void matmul_forward_cpu(float *out, int ldo, const float *inp, const float *w, const float *bias,
                               const float *residual, int N, int C, int OC) {
    for (int n = 0; n < N; n++) for (int o = 0; o < OC; o++) {
        double acc = bias ? bias[o] : 0.0;
        for (int c = 0; c < C; c++) acc += (double)inp[(size_t)n * C + c] * w[(size_t)o * C + c];
        if (residual) acc += residual[(size_t)n * OC + o];
        out[(size_t)n * ldo + o] = (float)acc;
    }
}
// dinp (N, C) += dout (N, OC; row stride ldd) w; dw (OC, C) += dout^T inp; db (OC) += column sums of dout
static void matmul_backward_cpu(float *dinp, float *dw, float *db, const float *dout, int ldd, const float *inp,
                                const float *w, int N, int C, int OC) {
    for (int n = 0; n < N; n++) for (int c = 0; c < C; c++) {
        double acc = 0.0;
        for (int o = 0; o < OC; o++) acc += (double)dout[(size_t)n * ldd + o] * w[(size_t)o * C + c];
        dinp[(size_t)n * C + c] += (float)acc;
    }
    for (int o = 0; o < OC; o++) {
        double bacc = 0.0;
        for (int c = 0; c < C; c++) {
            double acc = 0.0;
            for (int n = 0; n < N; n++) acc += (double)dout[(size_t)n * ldd + o] * inp[(size_t)n * C + c];
            dw[(size_t)o * C + c] += (float)acc;
        }
        for (int n = 0; n < N; n++) bacc += dout[(size_t)n * ldd + o];
        db[o] += (float)bacc;
    }
}

static float *bf16_random(size_t n, float lo, float hi) { float *x = make_random_float(n, lo, hi); round_to_bf16(x, n); return x; }

// one problem: ldo >= OC is the output row stride (the tied head writes V of Vp columns);
// bias_offset shifts the bias pointer by that many bf16 elements (1 makes it 2-byte aligned: the fallback path)
static int check(int N, int C, int OC, int ldo, int bias_offset) {
    printf("check N=%d C=%d OC=%d ldo=%d bias offset %d\n", N, C, OC, ldo, bias_offset);
    float *inp = bf16_random((size_t)N * C, -1, 1), *w = bf16_random((size_t)OC * C, -1, 1);
    float *bias = bf16_random(OC + 1, -1, 1), *res = bf16_random((size_t)N * OC, -1, 1);
    float *dout = bf16_random((size_t)N * ldo, -1, 1);
    float *dinp = bf16_random((size_t)N * C, -1, 1), *dw = make_random_float((size_t)OC * C, -1, 1);
    float *db = make_random_float(OC, -1, 1);
    floatX *d_inp = to_device_bf16(inp, (size_t)N * C), *d_w = to_device_bf16(w, (size_t)OC * C);
    floatX *d_bias = to_device_bf16(bias, OC + 1), *d_res = to_device_bf16(res, (size_t)N * OC);
    floatX *d_dout = to_device_bf16(dout, (size_t)N * ldo), *d_dinp = to_device_bf16(dinp, (size_t)N * C);
    float *d_dw = to_device_f32(dw, (size_t)OC * C), *d_db = to_device_f32(db, OC);
    floatX *d_out, *d_out2;
    float2 *d_scratch;
    cudaMallocCheck(&d_out, (size_t)N * ldo * sizeof(floatX));
    cudaMallocCheck(&d_out2, (size_t)N * OC * sizeof(floatX));
    cudaMallocCheck(&d_scratch, column_sums_scratch_bytes(N, OC));
    float *out = (float *)mallocCheck((size_t)N * ldo * sizeof(float)), *out2 = (float *)mallocCheck((size_t)N * OC * sizeof(float));
    // forward with bias into a strided output; forward with bias and residual
    matmul_forward_cpu(out, OC, inp, w, bias + bias_offset, NULL, N, C, OC);   // dense: validate_result reads ref[r*OC+c]
    matmul_forward_cpu(out2, OC, inp, w, bias + bias_offset, res, N, C, OC);
    matmul_backward_cpu(dinp, dw, db, dout, ldo, inp, w, N, C, OC);
    matmul_forward(d_out, ldo, d_inp, d_w, d_bias + bias_offset, NULL, N, C, OC, 0);
    matmul_forward(d_out2, OC, d_inp, d_w, d_bias + bias_offset, d_res, N, C, OC, 0);
    matmul_backward_input(d_dinp, d_dout, ldo, d_w, N, C, OC, true, 0);
    // the weight and bias gradients twice from the same start: bitwise equal (run-to-run determinism)
    float *d_dw2, *d_db2;
    cudaMallocCheck(&d_dw2, (size_t)OC * C * sizeof(float)); cudaMallocCheck(&d_db2, OC * sizeof(float));
    cudaCheck(cudaMemcpy(d_dw2, d_dw, (size_t)OC * C * sizeof(float), cudaMemcpyDeviceToDevice));
    cudaCheck(cudaMemcpy(d_db2, d_db, OC * sizeof(float), cudaMemcpyDeviceToDevice));
    matmul_backward_weight(d_dw, d_db, d_dout, ldo, d_inp, N, C, OC, d_scratch, 0);
    matmul_backward_weight(d_dw2, d_db2, d_dout, ldo, d_inp, N, C, OC, d_scratch, 0);
    cudaCheck(cudaDeviceSynchronize());
    float *g1 = (float *)mallocCheck(((size_t)OC * C + OC) * sizeof(float)), *g2 = (float *)mallocCheck(((size_t)OC * C + OC) * sizeof(float));
    cudaCheck(cudaMemcpy(g1, d_dw, (size_t)OC * C * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(g1 + (size_t)OC * C, d_db, OC * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(g2, d_dw2, (size_t)OC * C * sizeof(float), cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(g2 + (size_t)OC * C, d_db2, OC * sizeof(float), cudaMemcpyDeviceToHost));
    int same = memcmp(g1, g2, ((size_t)OC * C + OC) * sizeof(float)) == 0;
    printf("  dweight, dbias twice: %s\n", same ? "bitwise equal  ok" : "DIFFER (not deterministic)");
    free(g1); free(g2); cudaCheck(cudaFree(d_dw2)); cudaCheck(cudaFree(d_db2));
    // outputs are sums of C (or N) products of bf16-exact values, accumulated in fp32: the fp32 sum is
    // within ~1e-5 relative of the sum of |terms| (~sqrt(C)); bf16 outputs add 2^-9 relative rounding:
    // rtol 8e-3 and atol 2e-2 (a few ulps of bf16 at magnitude ~sqrt(C) after cancellation).
    // fp32 outputs (dw, db): rtol 1e-4, atol 1e-3.
    int ok = same & validate_result(d_out, out, "out", N, OC, ldo, 2e-2f, 8e-3f);
    ok &= validate_result(d_out2, out2, "out+res", N, OC, OC, 2e-2f, 8e-3f);
    ok &= validate_result(d_dinp, dinp, "dinp", N, C, C, 2e-2f, 8e-3f);
    ok &= validate_result(d_dw, dw, "dweight", OC, C, C, 1e-3f, 1e-4f);
    ok &= validate_result(d_db, db, "dbias", 1, OC, OC, 1e-3f, 1e-4f);
    free(inp); free(w); free(bias); free(res); free(dout); free(dinp); free(dw); free(db); free(out); free(out2);
    cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_bias)); cudaCheck(cudaFree(d_res));
    cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_dinp)); cudaCheck(cudaFree(d_dw)); cudaCheck(cudaFree(d_db));
    cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_out2)); cudaCheck(cudaFree(d_scratch));
    return ok;
}

typedef struct { int N, C, OC; floatX *inp, *w, *b, *out, *dout, *dinp; float *dw, *db; float2 *scratch; } MmBench;
static void run_fwd(MmBench *p) { matmul_forward(p->out, p->OC, p->inp, p->w, p->b, NULL, p->N, p->C, p->OC, 0); }
static void run_bwd(MmBench *p) {
    matmul_backward_input(p->dinp, p->dout, p->OC, p->w, p->N, p->C, p->OC, false, 0);
    matmul_backward_weight(p->dw, p->db, p->dout, p->OC, p->inp, p->N, p->C, p->OC, p->scratch, 0);
}

// the weight gradient alone, and with its bias gradient both ways: fused (BGRADB + add, SESSA_BGRADB=1) and
// the default (a plain GEMM, then the column sums of dout: 2 more launches and a re-read of dout)
static void run_dw(MmBench *p) { matmul_backward_weight(p->dw, NULL, p->dout, p->OC, p->inp, p->N, p->C, p->OC, p->scratch, 0); }
static void run_dw_db(MmBench *p) { matmul_backward_weight(p->dw, p->db, p->dout, p->OC, p->inp, p->N, p->C, p->OC, p->scratch, 0); }

static void bench(int N, int C, int OC) {
    MmBench p = { N, C, OC };
    float *h = make_random_float((size_t)N * (C > OC ? C : OC) + (size_t)OC * C, -1, 1);
    p.inp = to_device_bf16(h, (size_t)N * C); p.w = to_device_bf16(h, (size_t)OC * C); p.b = to_device_bf16(h, OC);
    p.dout = to_device_bf16(h, (size_t)N * OC);
    cudaMallocCheck(&p.out, (size_t)N * OC * sizeof(floatX)); cudaMallocCheck(&p.dinp, (size_t)N * C * sizeof(floatX));
    cudaMallocCheck(&p.dw, (size_t)OC * C * sizeof(float)); cudaMallocCheck(&p.db, OC * sizeof(float));
    cudaCheck(cudaMemset(p.dw, 0, (size_t)OC * C * sizeof(float))); cudaCheck(cudaMemset(p.db, 0, OC * sizeof(float)));
    cudaMallocCheck(&p.scratch, column_sums_scratch_bytes(N, OC));
    float ms_f = benchmark_kernel(10, run_fwd, &p), ms_b = benchmark_kernel(10, run_bwd, &p);
    double fl = 2.0 * N * C * OC;
    printf("N=%d C=%d OC=%d  version 1  forward %8.3f ms %6.1f TFLOP/s   backward %8.3f ms %6.1f TFLOP/s\n", N, C, OC,
           ms_f, fl / (ms_f * 1e-3) / 1e12, ms_b, 2 * fl / (ms_b * 1e-3) / 1e12);
    float ms_w = benchmark_kernel(10, run_dw, &p);
    matmul_use_bgradb = 1; float ms_wb = benchmark_kernel(10, run_dw_db, &p);
    matmul_use_bgradb = 0; float ms_wc = benchmark_kernel(10, run_dw_db, &p);
    printf("N=%d C=%d OC=%d  weight gradient %8.4f ms (%6.1f TFLOP/s); + bias gradient: fused (BGRADB + add) %8.4f ms, "
           "GEMM + column sums %8.4f ms\n", N, C, OC, ms_w, fl / (ms_w * 1e-3) / 1e12, ms_wb, ms_wc);
    free(h);
    cudaCheck(cudaFree(p.inp)); cudaCheck(cudaFree(p.w)); cudaCheck(cudaFree(p.b)); cudaCheck(cudaFree(p.dout));
    cudaCheck(cudaFree(p.out)); cudaCheck(cudaFree(p.dinp)); cudaCheck(cudaFree(p.dw)); cudaCheck(cudaFree(p.db));
    cudaCheck(cudaFree(p.scratch));
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 1);
    cudaCheck(cudaSetDevice(0));
    matmul_init();
    if (a.check) {
        // aligned bias + dense output; the tied head's shape (OC = V odd, ldo = Vp); a misaligned bias
        int ok = 1;
        for (matmul_use_bgradb = 0; matmul_use_bgradb <= 1; matmul_use_bgradb++) {
            printf("bias gradient by %s\n", matmul_use_bgradb ? "the BGRADB epilogue" : "column sums");
            ok &= check(96, 64, 128, 128, 0) & check(50, 64, 61, 128, 0) & check(33, 48, 96, 96, 1);
        }
        printf(ok ? "matmul: all checks passed\n" : "matmul: CHECK FAILED\n");
        matmul_free();
        return ok ? 0 : 1;
    }
    bench(8 * 1024, 768, 768);       // d12 B=8 T=1024: Linear_q/k/v/o/out
    bench(8 * 1024, 768, 2 * 768);   // Linear_in, Linear_fb
    bench(8 * 1024, 768, 50304);
    matmul_free();
    return 0;
}
