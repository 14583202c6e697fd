/*
 Fused classifier (llmc/fused_classifier.cuh): per row of bf16 logits (V real of a row stride Vp),
 loss = logsumexp - logit[target], and in place dlogits = (softmax - onehot) * dloss; and logits_argmax (the
 predictions of -E's long-context evaluation), checked exactly against the CPU's first-index-of-the-max.
   version 1: one block of 1024 threads per row, 2-byte loads, an online (max, sum) merge per element
              (2 expf per element), padded columns left as they are (the head then only ran over V columns)
   version 2: 8 bf16 per 16-byte load, the (max, sum) merged once per pack of 8 (9 expf per 8
              elements), padded columns of dlogits zeroed so the head's GEMMs can run over all Vp columns;
              every thread then merged the block's 32 warp pairs in a row (62 expf per thread)
   version 3: (llmc) version 2 with the block's pairs merged by warp 0's shuffle tree, exp2f of pre-scaled
              logits (one MUFU.EX2 per exponential), loops unrolled by 2 (two 16-byte loads in flight)
   version 4: (llmc, the trainer's where V <= 53248) the row copied once into shared memory (cp.async), then max,
              sum and gradient passes from there: DRAM sees one read and one write (version 3: a second read)
 make -C dev/cuda && dev/cuda/bin/fused_classifier check    (or bench)
*/
#include "common.h"
#include "../../llmc/fused_classifier.cuh"

// (max, sum of exp(x - max)) merge in base e, for versions 1 and 2 (llmc's is in base 2)
__device__ inline float2 softmax_merge_e(float2 a, float2 b) {
    float m = fmaxf(a.x, b.x);
    return make_float2(m, a.y * expf(a.x - m) + b.y * expf(b.x - m));
}

// version 1
__global__ void fused_classifier_kernel1(floatX *logits, float *losses, const int *targets, int V, int ld, float dloss) {
    __shared__ float2 shared[CLASSIFIER_THREADS / WARP_SIZE];
    int n = blockIdx.x, lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    floatX *x = logits + (size_t)n * ld;
    float2 ms = make_float2(-FLT_MAX, 0.0f);
    for (int i = threadIdx.x; i < V; i += blockDim.x) ms = softmax_merge_e(ms, make_float2(__bfloat162float(x[i]), 1.0f));
    for (int o = 16; o > 0; o >>= 1)
        ms = softmax_merge_e(ms, make_float2(__shfl_xor_sync(0xffffffffu, ms.x, o), __shfl_xor_sync(0xffffffffu, ms.y, o)));
    if (lane == 0) shared[warp] = ms;
    __syncthreads();
    ms = shared[0];
    for (int w = 1; w < (int)blockDim.x / WARP_SIZE; w++) ms = softmax_merge_e(ms, shared[w]);
    int target = targets[n];
    float xt = __bfloat162float(x[target]);
    __syncthreads();
    if (threadIdx.x == 0) losses[n] = logf(ms.y) + ms.x - xt;
    if (dloss == 0.0f) return;
    float inv_sum = 1.0f / ms.y;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float p = expf(__bfloat162float(x[i]) - ms.x) * inv_sum;
        x[i] = __float2bfloat16((p - (i == target ? 1.0f : 0.0f)) * dloss);
    }
}

// version 2
__global__ void __launch_bounds__(CLASSIFIER_THREADS)
fused_classifier_kernel2(floatX *logits, float *losses, const int *targets, int V, int ld, float dloss) {
    __shared__ float2 shared[CLASSIFIER_THREADS / WARP_SIZE];
    int n = blockIdx.x, lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    floatX *x = logits + (size_t)n * ld;
    // (max, sum) over this thread's packs; -FLT_MAX, not -inf: merging two empty pairs stays finite
    float2 ms = make_float2(-FLT_MAX, 0.0f);
    int npacks = (V + PACK - 1) / PACK;   // packs holding real columns (the last may be partly padding)
    for (int p = threadIdx.x; p < npacks; p += blockDim.x) {
        float v[PACK];
        load8(v, x + p * PACK);
        float pm = -FLT_MAX;
        #pragma unroll
        for (int i = 0; i < PACK; i++) if (p * PACK + i < V) pm = fmaxf(pm, v[i]);
        float m = fmaxf(ms.x, pm), s = ms.y * expf(ms.x - m);
        #pragma unroll
        for (int i = 0; i < PACK; i++) if (p * PACK + i < V) s += expf(v[i] - m);
        ms = make_float2(m, s);
    }
    for (int o = 16; o > 0; o >>= 1)
        ms = softmax_merge_e(ms, make_float2(__shfl_xor_sync(0xffffffffu, ms.x, o), __shfl_xor_sync(0xffffffffu, ms.y, o)));
    if (lane == 0) shared[warp] = ms;
    __syncthreads();
    ms = shared[0];
    for (int w = 1; w < (int)blockDim.x / WARP_SIZE; w++) ms = softmax_merge_e(ms, shared[w]);
    int target = targets[n];
    float xt = __bfloat162float(x[target]);
    __syncthreads(); // everyone has read x[target] before it is overwritten
    if (threadIdx.x == 0) losses[n] = logf(ms.y) + ms.x - xt;
    if (dloss == 0.0f) return;
    float inv_sum = 1.0f / ms.y;
    for (int p = threadIdx.x; p < ld / PACK; p += blockDim.x) {
        float v[PACK];
        load8(v, x + p * PACK);
        #pragma unroll
        for (int i = 0; i < PACK; i++) {
            int c = p * PACK + i;
            v[i] = c < V ? (expf(v[i] - ms.x) * inv_sum - (c == target ? 1.0f : 0.0f)) * dloss : 0.0f;
        }
        store8(x + p * PACK, v);
    }
}

static void classifier_version(int version, floatX *x, float *l, const int *t, int N, int V, int ld, float dloss) {
    if (version == 1) {
        fused_classifier_kernel1<<<N, CLASSIFIER_THREADS>>>(x, l, t, V, ld, dloss);
        cudaCheck(cudaGetLastError());
    } else if (version == 2) {
        fused_classifier_kernel2<<<N, CLASSIFIER_THREADS>>>(x, l, t, V, ld, dloss);
        cudaCheck(cudaGetLastError());
    } else fused_classifier_run(version, x, l, t, N, V, ld, dloss, 0);
}

// losses (N), grad (N, ld): (softmax - onehot) * dloss in the first V columns; the padded ones are 0
// (pad_zero) or left as in x
static void classifier_cpu(float *losses, float *grad, const float *x, const int *targets, int N, int V, int ld,
                           float dloss, int pad_zero) {
    for (int n = 0; n < N; n++) {
        const float *r = x + (size_t)n * ld;
        double m = -INFINITY, s = 0.0;
        for (int i = 0; i < V; i++) m = fmax(m, r[i]);
        for (int i = 0; i < V; i++) s += exp(r[i] - m);
        losses[n] = (float)(log(s) + m - r[targets[n]]);
        for (int i = 0; i < ld; i++)
            grad[(size_t)n * ld + i] = i < V ? (float)((exp(r[i] - m) / s - (i == targets[n])) * dloss) : pad_zero ? 0.0f : r[i];
    }
}

static int check(int version, int N, int V) {
    int ld = (V + 127) / 128 * 128;
    printf("check version %d N=%d V=%d (row stride %d)\n", version, N, V, ld);
    float *x = make_random_float((size_t)N * ld, -4.0f, 4.0f);
    // padding 1000: a kernel that reads it into the max or the sum gets every loss and probability wrong
    for (size_t n = 0; n < (size_t)N; n++) for (int i = V; i < ld; i++) x[n * ld + i] = 1000.0f;
    round_to_bf16(x, (size_t)N * ld);
    int *targets = (int *)mallocCheck(N * sizeof(int));
    for (int n = 0; n < N; n++) targets[n] = (int)(random_f32() * V);
    targets[0] = V - 1;   // the last real column (in version 2's partly padded last pack when V % 8 != 0)
    if (N > 1) targets[1] = 0;
    float dloss = 1.0f / N;
    float *losses = (float *)mallocCheck(N * sizeof(float)), *grad = (float *)mallocCheck((size_t)N * ld * sizeof(float));
    classifier_cpu(losses, grad, x, targets, N, V, ld, dloss, version >= 2);
    floatX *d_x = to_device_bf16(x, (size_t)N * ld);
    int *d_targets; float *d_losses, *d_losses0;
    cudaMallocCheck(&d_targets, N * sizeof(int)); cudaMallocCheck(&d_losses, N * sizeof(float));
    cudaMallocCheck(&d_losses0, N * sizeof(float));
    cudaCheck(cudaMemcpy(d_targets, targets, N * sizeof(int), cudaMemcpyHostToDevice));
    // loss only (dloss 0) first: it must give the same losses and leave the logits alone
    classifier_version(version, d_x, d_losses0, d_targets, N, V, ld, 0.0f);
    classifier_version(version, d_x, d_losses, d_targets, N, V, ld, dloss);
    cudaCheck(cudaDeviceSynchronize());
    // losses fp32 from bf16-exact logits: 1e-5 + 1e-5 |loss| (~1e-4 at log V ~ 10; the error is ~1e-6: fp32 sums
    // of V exponentials of 2 ulp; a row with 3 of each thread's 13 packs from another row was off by 7e-4).
    // dlogits bf16: rtol 8e-3 (bf16's rounding, 2^-9, and the fp32 math's), atol 1e-3 * dloss / V (a thousandth
    // of a mean probability: the probabilities ~1/V are tiny and their rounding is relative, so rtol must hold for
    // nearly all of them; an atol of 1e-3 * dloss was above every probability at V = 50257 and let a wrong row
    // pass). Padding: exact.
    int ok = validate_result(d_losses0, losses, "losses (loss only)", 1, N, N, 1e-5f, 1e-5f);
    ok &= validate_result(d_losses, losses, "losses", 1, N, N, 1e-5f, 1e-5f);
    ok &= validate_result(d_x, grad, "dlogits", N, ld, ld, 1e-3f * dloss / V, 8e-3f);
    free(x); free(targets); free(losses); free(grad);
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_targets)); cudaCheck(cudaFree(d_losses)); cudaCheck(cudaFree(d_losses0));
    return ok;
}

// logits_argmax (-E's predictions): the first index of each row's largest bf16 value, exactly as the CPU's; rows with
// the maximum planted twice (the first must win, also when the two sit in one thread's run or in two warps), a row of
// -inf (index 0), padding of 1000 past V (never read)
static int check_argmax(int N, int V) {
    int ld = (V + 127) / 128 * 128;
    printf("check logits_argmax N=%d V=%d (row stride %d)\n", N, V, ld);
    float *x = make_random_float((size_t)N * ld, -4.0f, 4.0f);
    for (size_t n = 0; n < (size_t)N; n++) for (int i = V; i < ld; i++) x[n * ld + i] = 1000.0f;
    for (int n = 0; n < N; n++) {   // plant ties: the value 8 at two places (a tie across threads, warps or a run)
        float *r = x + (size_t)n * ld;
        int a = (int)(random_f32() * V), b = (n % 3 == 0) ? (a + ARGMAX_THREADS) % V : (int)(random_f32() * V);
        if (n % 2 == 0) { r[a] = 8.0f; r[b] = 8.0f; }
    }
    if (N > 1) for (int i = 0; i < V; i++) x[(size_t)1 * ld + i] = -INFINITY;
    round_to_bf16(x, (size_t)N * ld);
    int *want = (int *)mallocCheck(N * sizeof(int)), *got = (int *)mallocCheck(N * sizeof(int));
    for (int n = 0; n < N; n++) {
        const float *r = x + (size_t)n * ld;
        float m = r[0];
        for (int i = 1; i < V; i++) m = r[i] > m ? r[i] : m;
        int k = 0;
        while (k < V - 1 && r[k] != m) k++;
        want[n] = k;
    }
    floatX *d_x = to_device_bf16(x, (size_t)N * ld);
    int *d_out;
    cudaMallocCheck(&d_out, N * sizeof(int));
    logits_argmax(d_out, d_x, N, V, ld, 0);
    cudaCheck(cudaMemcpy(got, d_out, N * sizeof(int), cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int n = 0; n < N; n++)
        if (got[n] != want[n]) { if (bad < 5) printf("  row %d: argmax %d, want %d\n", n, got[n], want[n]); bad++; }
    printf("  %d of %d rows exact%s\n", N - bad, N, bad ? "  FAIL" : "  ok");
    free(x); free(want); free(got);
    cudaCheck(cudaFree(d_x)); cudaCheck(cudaFree(d_out));
    return bad == 0;
}

typedef struct { int version, N, V, ld; floatX *x; int *t; float *l; float dloss; } ClsBench;
static void run(ClsBench *p) { classifier_version(p->version, p->x, p->l, p->t, p->N, p->V, p->ld, p->dloss); }

// loss only (reads N x V bf16) and loss + gradient (reads twice, writes once); the gradient run overwrites
// the logits with values ~1e-9, which keeps every later repeat's work the same
static void bench(int version, int N, int V) {
    ClsBench p = { version, N, V, (V + 127) / 128 * 128 };
    float *x = make_random_float((size_t)N * p.ld, -4, 4);
    p.x = to_device_bf16(x, (size_t)N * p.ld);
    cudaMallocCheck(&p.t, N * sizeof(int)); cudaCheck(cudaMemset(p.t, 0, N * sizeof(int)));
    cudaMallocCheck(&p.l, N * sizeof(float));
    p.dloss = 0.0f;
    float ms = benchmark_kernel(10, run, &p);
    printf("N=%d V=%d  version %d loss only    %8.3f ms  %7.1f GB/s\n", N, V, version, ms, 2.0 * N * p.ld / (ms * 1e-3) / 1e9);
    p.dloss = 1.0f / N;
    ms = benchmark_kernel(10, run, &p);
    printf("N=%d V=%d  version %d loss + grad  %8.3f ms  %7.1f GB/s (as if 3 N Vp bf16 moved)\n", N, V, version, ms,
           6.0 * N * p.ld / (ms * 1e-3) / 1e9);
    free(x); cudaCheck(cudaFree(p.x)); cudaCheck(cudaFree(p.t)); cudaCheck(cudaFree(p.l));
}

int main(int argc, char **argv) {
    DevArgs a = parse_dev_args(argc, argv, 4);
    cudaCheck(cudaSetDevice(0));
    int ok = 1;
    for (int v = 1; v <= 4; v++) {
        if (a.version != 0 && a.version != v) continue;
        // V below one block's threads, V not a multiple of 8 nor of 128, V a multiple of 8, GPT-2's V; version 4
        // also at its largest V (every thread 13 packs, the last group full), 7 columns less, and more rows than
        // an H200 holds blocks at once (264: blocks start on an SM as others end, reusing its shared memory)
        if (a.check) {
            ok &= check(v, 8, 61) & check(v, 16, 1000) & check(v, 3, 1024 + 8) & check(v, 4, 50257);
            if (v == 4) ok &= check(v, 2, CLS_SMEM_MAX_V) & check(v, 2, CLS_SMEM_MAX_V - 7) & check(v, 600, 1000);
        } else {   // d12 B=8 T=1024 and d4w256h4 B=8 T=256
            bench(v, 8 * 1024, 50257);
            bench(v, 2 * 1024, 50257);
        }
    }
    // above version 4's largest V the trainer takes version 3 (the default otherwise 4, SESSA_CLS_VERSION=3: 3)
    if (a.check && (a.version == 0 || a.version == 4)) {
        int v_big = fused_classifier_version(CLS_SMEM_MAX_V + 1), v_gpt2 = fused_classifier_version(50257);
        printf("fused_classifier: the trainer's version at V = %d: %d, at V = 50257: %d\n", CLS_SMEM_MAX_V + 1, v_big, v_gpt2);
        ok &= v_big == 3;
    }
    if (a.check) ok &= check_argmax(8, 61) & check_argmax(16, 1000) & check_argmax(6, 50257);
    if (a.check) printf(ok ? "fused_classifier: all checks passed\n" : "fused_classifier: CHECK FAILED\n");
    return ok ? 0 : 1;
}
