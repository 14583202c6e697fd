/*
 Self-test of the emulator (cuda_emu.h, cublas_emu.h): the properties the kernel checks rely on.
 Each case prints PASS/FAIL; exit 1 if any fails. Built from build/selftest.cu (transform.py).
   barrier       a shared-memory exchange is exact with __syncthreads and reads garbage (NaN) without it
   shuffle       warp_reduce_sum of llmc/cuda_common.h: every lane gets its own warp's sum
   nan fill      cudaMalloc'd memory that no kernel writes reads as NaN
   launch error  1025 threads per block: the kernel does not run, cudaGetLastError says so
   deadlock      half a warp at __syncthreads, the other half at a shuffle: a fatal error
   exited lane   a shuffle that reads a lane which has returned: a fatal error
   wmma          bf16 16x16x16 mma_sync equals the product (small integers: exact); a misaligned load is fatal
   mma           llmc/mma.cuh under emulation: cp.async (zero fill, nothing lands before the wait), ldmatrix
                 (.trans) registers as the PTX ISA lays them out, mma.sync m16n8k16 exact on small integers both
                 ways (B through ldmatrix.trans and B^T through ldmatrix); ldmatrix off shared memory is fatal
   cublasLt      a bias + residual matmul with transposes equals a plain loop (small integers: exact)
   tma           llmc/mma.cuh's warp-specialization wrappers: a TMA box lands in the 128-byte swizzle (chunk c of
                 row r at c ^ (r % 8)) with zeros past the tensor, only after the mbarrier wait (NaN before it); a
                 fresh mbarrier's parity-1 wait passes at once; bar_sync waits for the other warp's bar_arrive;
                 a wait that nobody completes is a fatal deadlock
   wgmma         a warpgroup's m64n64k16 (A from registers, B from shared memory, all ones: 16 everywhere) lands
                 in the accumulator only at its wgmma_wait (NaN before it); a register A operand or the shared
                 memory it reads changed before that wait, and a wgmma never waited for, are fatal
*/
#include <sys/wait.h>
#include <unistd.h>
#include <mma.h>
#include <cublasLt.h>
#include "llmc/cuda_common.h"
#include "llmc/mma.cuh"

static int fails = 0;
static void report(const char *name, int ok, const char *detail) {
    printf("%s %-14s %s\n", ok ? "PASS" : "FAIL", name, detail);
    fails += !ok;
}

// runs f in a child process; passes when the child exits non-zero with a cuda_emu message on stderr
template <class F> static void expect_fatal(const char *name, F f) {
    int fd[2];
    if (pipe(fd) != 0) fatal("pipe failed");
    fflush(stdout);   // the child must not print the parent's buffered lines again
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        f();
        cudaCheck(cudaGetLastError());
        _exit(0);
    }
    close(fd[1]);
    char msg[512] = {0};
    size_t got = 0;
    for (ssize_t r; got < sizeof msg - 1 && (r = read(fd[0], msg + got, sizeof msg - 1 - got)) > 0;) got += r;
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    int ok = got > 0 && strstr(msg, "cuda_emu") != NULL && WIFEXITED(status) && WEXITSTATUS(status) != 0;
    char *nl = strchr(msg, '\n');
    if (nl) *nl = 0;
    report(name, ok, ok ? msg : "no fatal error from the emulator");
}

// out[t] = value written by thread t+1 (mod n), through dynamic shared memory
__global__ void exchange_kernel(float *out, int with_barrier) {
    extern __shared__ float buf[];
    int t = threadIdx.x, n = blockDim.x;
    buf[t] = (float)t;
    if (with_barrier) __syncthreads();
    out[t] = buf[(t + 1) % n];
}

__global__ void warp_sum_kernel(float *out, const float *in) {
    out[threadIdx.x] = warp_reduce_sum(in[threadIdx.x]);
}

__global__ void write_but_last_kernel(float *out, int n) {
    int i = threadIdx.x;
    if (i < n - 1) out[i] = 1.0f;
}

__global__ void half_warp_diverges_kernel(float *out) {
    if (threadIdx.x < 16) __syncthreads();
    else out[threadIdx.x] = warp_reduce_sum(1.0f);
}

__global__ void shuffle_from_exited_kernel(float *out) {
    if (threadIdx.x >= 16) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 16);
}

// C (16x16, row-major) = A (16x16 row-major) B (16x16 row-major), one warp
__global__ void wmma_kernel(float *c, const floatX *a, const floatX *b) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, floatX, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, floatX, wmma::row_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
    wmma::fill_fragment(fc, 0.0f);
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, b, 16);
    wmma::mma_sync(fc, fa, fb, fc);
    wmma::store_matrix_sync(c, fc, 16, wmma::mem_row_major);
}

// One warp. Global A (16x16), B (16x16, k x n), Bt (= B^T, n x k), all row-major bf16, go to shared memory by
// cp.async (plus one chunk with valid = false); regs gets every lane's ldmatrix registers (A, B by .trans,
// Bt), c gets A B computed twice (B by ldmatrix.trans, and from Bt by ldmatrix), before[lane] the first bf16
// of this lane's chunk read before the wait, zero[lane] = 1 when the invalid chunk came out as zeros.
__global__ void mma_kernel(float *c, uint32_t *regs, float *before, int *zero, const floatX *a, const floatX *b,
                           const floatX *bt) {
    extern __shared__ __align__(128) unsigned char mma_smem[];
    floatX *As = (floatX *)mma_smem, *Bs = As + 256, *Bts = Bs + 256, *Zs = Bts + 256;
    int lane = threadIdx.x, g = lane / 4, t = lane % 4;
    int r = lane / 2, col = (lane % 2) * 8;                  // this lane's 16-byte chunk of each matrix
    cp_async16(As + r * 16 + col, a + r * 16 + col, true);
    cp_async16(Bs + r * 16 + col, b + r * 16 + col, true);
    cp_async16(Bts + r * 16 + col, bt + r * 16 + col, true);
    cp_async16(Zs + lane * 8, a, false);
    cp_async_commit();
    before[lane] = __bfloat162float(As[r * 16 + col]);    // in flight: the old contents (NaN)
    cp_async_wait<0>();
    __syncthreads();
    int z = 1;
    for (int i = 0; i < 8; i++) z &= __bfloat162float(Zs[lane * 8 + i]) == 0.0f;
    zero[lane] = z;
    uint32_t fa[4], fb[4], fbt[4];
    ldmatrix_x4(fa, As + (lane % 16) * 16 + (lane / 16) * 8);
    ldmatrix_x4_trans(fb, Bs + (lane % 8 + ((lane / 8) % 2) * 8) * 16 + (lane / 16) * 8);
    ldmatrix_x4(fbt, Bts + (lane % 8 + (lane / 16) * 8) * 16 + ((lane / 8) % 2) * 8);
    for (int i = 0; i < 4; i++) { regs[lane * 12 + i] = fa[i]; regs[lane * 12 + 4 + i] = fb[i]; regs[lane * 12 + 8 + i] = fbt[i]; }
    float acc[4][4] = {};
    mma_bf16_16816(acc[0], fa, fb);          // n-block 0, B from ldmatrix.trans
    mma_bf16_16816(acc[1], fa, fb + 2);      // n-block 1
    mma_bf16_16816(acc[2], fa, fbt);         // the same from B^T by ldmatrix
    mma_bf16_16816(acc[3], fa, fbt + 2);
    for (int f = 0; f < 4; f++) for (int i = 0; i < 4; i++)
        c[(f / 2) * 256 + (g + 8 * (i >> 1)) * 16 + (f % 2) * 8 + 2 * t + (i & 1)] = acc[f][i];
}
__global__ void ldmatrix_global_kernel(uint32_t *regs, const floatX *a) {
    uint32_t r[4];
    ldmatrix_x4(r, a + (threadIdx.x % 16) * 16);   // global memory: not allowed
    regs[threadIdx.x] = r[0];
}

// TMA + mbarrier + named barrier: thread 0 loads the 8 x 64 box at rows row0.. of the (1, T, 1, 64) map into shared
// memory; out[0..511] the shared bytes as bf16 after the wait, before[0] what thread 32 read before it; flag[t] what
// warp 0 read of warp 1's write after bar_sync (warp 1: bar_arrive after writing)
__global__ void tma_kernel(const __grid_constant__ CUtensorMap map, floatX *out, float *before, float *flag, int row0) {
    extern __shared__ __align__(1024) unsigned char tma_smem[];
    unsigned char *box = tma_smem;
    float *xchg = (float *)(tma_smem + 1024);
    uint64_t *bar = (uint64_t *)(tma_smem + 1024 + 64 * sizeof(float)), *fresh = bar + 1;
    const int t = threadIdx.x;
    if (t == 0) { mbar_init(bar, 1); mbar_init(fresh, 1); mbar_fence_init(); }
    __syncthreads();
    if (t == 0) {
        mbar_wait(fresh, 1);                           // the phase before the first: passes at once
        mbar_arrive_expect_tx(bar, 8 * 128);
        tma_load_4d(box, &map, bar, 0, 0, row0, 0);
    }
    if (t == 32) before[0] = __bfloat162float(((floatX *)box)[0]);   // issued, not yet waited for by anyone
    __syncthreads();
    mbar_wait(bar, 0);
    for (int i = t; i < 512; i += 64) out[i] = ((floatX *)box)[i];
    if (t >= 32) { xchg[t - 32] = (float)t; bar_arrive(1, 64); }
    else { bar_sync(1, 64); flag[t] = xchg[t]; }
}
__global__ void mbar_deadlock_kernel(void) {
    extern __shared__ __align__(1024) unsigned char tma_smem[];
    uint64_t *bar = (uint64_t *)tma_smem;
    if (threadIdx.x == 0) mbar_init(bar, 2);
    __syncthreads();
    if (threadIdx.x == 0) mbar_arrive(bar);            // one of the two arrivals: the phase never completes
    mbar_wait(bar, 0);
}

// one m64n64k16 wgmma of ones by a warpgroup (128 threads; 8 KiB of dynamic shared memory); out[2t] what thread t
// read of the accumulator before the wait, out[2t + 1] after it; mode 1: the A register changed before the wait,
// 2: the shared memory, 3: no wait
__global__ void wgmma_async_kernel(float *out, int mode) {
    extern __shared__ __align__(1024) unsigned char wg_smem[];
    floatX *b = (floatX *)wg_smem;
    for (int i = threadIdx.x; i < 64 * 64; i += 128) b[i] = __float2bfloat16(1.0f);
    __syncthreads();
    uint32_t a[4];
    for (int r = 0; r < 4; r++) a[r] = pack_bf16x2(1.0f, 1.0f);
    float d[32];
    for (int i = 0; i < 32; i++) d[i] = 0.0f;
    wgmma_fence();
    wgmma_rs_kmajor<64>(d, a, wgmma_desc(wg_smem, 16, 1024), 0);
    wgmma_commit();
    out[2 * threadIdx.x] = d[0];
    if (mode == 1) a[0] = 0u;
    if (mode == 2) for (int i = 0; i < 64 * 64; i++) b[i] = __float2bfloat16(2.0f);
    if (mode == 3) return;
    wgmma_wait<0>();
    out[2 * threadIdx.x + 1] = d[0];
}

// the ordered adds of llmc/attention_sm90_bwd.cuh versions 12-14: block k waits until the counter is k (reverse:
// 2 - k, which the blocks before never make it), adds k + 1 to acc[0..1] and 10 (k + 1) to acc[2..5] at L2, copies
// (k = 0) or adds 100 (k + 1) to acc[8..11] by a bulk operation from shared memory (and 100 (k + 1) to acc[12..15]
// in a second bulk group, still pending after bulk_wait<1>: acc[12] then unchanged), counts itself
__global__ void ordered_add_kernel(float *acc, unsigned *cnt, int reverse) {
    __shared__ __align__(16) float s[4];
    const int k = reverse ? 2 - (int)blockIdx.x : (int)blockIdx.x;
    float4 v;
    v.x = v.y = v.z = v.w = 10.0f * (k + 1);
    for (int i = 0; i < 4; i++) s[i] = 100.0f * (k + 1);
    sem_wait_eq(cnt, k);
    red_add_f32x2(acc, k + 1.0f, k + 1.0f);
    red_add_f32x4(acc + 2, v);
    bulk_s2g(acc + 8, s, 16, k > 0);
    bulk_commit();
    const float before = acc[12];
    bulk_s2g(acc + 12, s, 16, k > 0);
    bulk_commit();
    bulk_wait<1>();                                    // the first group written, the second pending
    if (acc[8] != 100.0f * (k + 1) * (k + 2) / 2 || !(acc[12] == before || (isnan(before) && isnan(acc[12]))))
        acc[6] = -1.0f;                                // (checked: 0 expected)
    bulk_wait<0>();
    sem_release_inc(cnt);
}

static floatX *bf16_buffer(const float *h, int n) {
    floatX *d; cudaMallocCheck(&d, n * sizeof(floatX));
    for (int i = 0; i < n; i++) d[i] = __float2bfloat16(h[i]);   // device memory is host memory here
    return d;
}

int main(void) {
    const int n = 200;   // not a multiple of the warp
    float *out; cudaMallocCheck(&out, 256 * sizeof(float));
    char detail[256];

    // barrier
    exchange_kernel<<<1, n, n * sizeof(float)>>>(out, 1);
    int exact = 1;
    for (int t = 0; t < n; t++) exact &= out[t] == (float)((t + 1) % n);
    exchange_kernel<<<1, n, n * sizeof(float)>>>(out, 0);
    int nan_seen = isnan(out[0]);
    snprintf(detail, sizeof detail, "with barrier exact %d, without barrier out[0] = %g (NaN expected)", exact, out[0]);
    report("barrier", exact && nan_seen, detail);

    // shuffle
    float *in; cudaMallocCheck(&in, 224 * sizeof(float));
    for (int t = 0; t < n; t++) in[t] = (float)t;
    warp_sum_kernel<<<1, 224>>>(out, in);   // 7 full warps over the first 224 entries of in (n = 200 filled)
    cudaCheck(cudaGetLastError());
    int ok = 1;
    for (int t = 0; t < n; t++) {
        int w0 = t / 32 * 32;
        float want = 0.0f;
        for (int i = w0; i < w0 + 32; i++) want += i < n ? (float)i : NAN;
        ok &= (w0 + 32 <= n) ? out[t] == want : isnan(out[t]);
    }
    report("shuffle", ok, "warp sums exact, the warp that reads unwritten input gets NaN");

    // nan fill
    float *fresh; cudaMallocCheck(&fresh, 64 * sizeof(float));
    write_but_last_kernel<<<1, 64>>>(fresh, 64);
    report("nan fill", fresh[62] == 1.0f && isnan(fresh[63]), "the element no thread wrote is NaN");

    // launch error
    fresh[0] = 5.0f;
    write_but_last_kernel<<<1, 1025>>>(fresh, 64);
    cudaError_t err = cudaGetLastError();
    snprintf(detail, sizeof detail, "cudaGetLastError: %s", cudaGetErrorString(err));
    report("launch error", err == cudaErrorInvalidConfiguration && fresh[0] == 5.0f && cudaGetLastError() == cudaSuccess, detail);

    expect_fatal("deadlock", [&]() { half_warp_diverges_kernel<<<1, 64>>>(out); });
    expect_fatal("exited lane", [&]() { shuffle_from_exited_kernel<<<1, 32>>>(out); });

    // wmma
    float ha[256], hb[256], want[256];
    for (int i = 0; i < 256; i++) { ha[i] = (float)(i % 7 - 3); hb[i] = (float)(i % 5 - 2); }
    for (int i = 0; i < 16; i++) for (int j = 0; j < 16; j++) {
        want[i * 16 + j] = 0.0f;
        for (int k = 0; k < 16; k++) want[i * 16 + j] += ha[i * 16 + k] * hb[k * 16 + j];
    }
    floatX *da = bf16_buffer(ha, 256), *db = bf16_buffer(hb, 256);
    float *dc; cudaMallocCheck(&dc, 256 * sizeof(float));
    wmma_kernel<<<1, 32>>>(dc, da, db);
    report("wmma", memcmp(dc, want, sizeof want) == 0, "16x16x16 bf16 product exact");
    expect_fatal("wmma misalign", [&]() { wmma_kernel<<<1, 32>>>(dc, da + 1, db); });

    // mma.cuh: cp.async, ldmatrix, mma.sync with the PTX ISA fragment layouts
    {
        float hA[256], hB[256], hBt[256], want2[256];
        for (int i = 0; i < 16; i++) for (int j = 0; j < 16; j++) {
            hA[i * 16 + j] = (float)((i * 7 + j * 3) % 11 - 5);
            hB[i * 16 + j] = (float)((i * 5 + j) % 9 - 4);
        }
        for (int i = 0; i < 16; i++) for (int j = 0; j < 16; j++) hBt[j * 16 + i] = hB[i * 16 + j];
        for (int i = 0; i < 16; i++) for (int j = 0; j < 16; j++) {
            want2[i * 16 + j] = 0.0f;
            for (int k = 0; k < 16; k++) want2[i * 16 + j] += hA[i * 16 + k] * hB[k * 16 + j];
        }
        floatX *A = bf16_buffer(hA, 256), *B = bf16_buffer(hB, 256), *Bt = bf16_buffer(hBt, 256);
        float *c2, *before; uint32_t *regs; int *zero;
        cudaMallocCheck(&c2, 512 * sizeof(float)); cudaMallocCheck(&before, 32 * sizeof(float));
        cudaMallocCheck(&regs, 32 * 12 * sizeof(uint32_t)); cudaMallocCheck(&zero, 32 * sizeof(int));
        mma_kernel<<<1, 32, 4 * 256 * sizeof(floatX)>>>(c2, regs, before, zero, A, B, Bt);
        cudaCheck(cudaGetLastError());
        // registers as the PTX ISA lays them out (lane = 4g + t; low half = lower column / k):
        //   A: a0 (g, 2t), a1 (g+8, 2t), a2 (g, 2t+8), a3 (g+8, 2t+8);  B (k x n): b0 (k=2t, n=g), b1 (k=2t+8, n=g)
        auto pk = [](float lo, float hi) { return (uint32_t)float_to_bf16(lo) | (uint32_t)float_to_bf16(hi) << 16; };
        int layout = 1;
        for (int lane = 0; lane < 32; lane++) {
            int g = lane / 4, t = lane % 4;
            for (int i = 0; i < 4; i++) {
                int ar = g + 8 * (i & 1), ac = 2 * t + 8 * (i >> 1);
                layout &= regs[lane * 12 + i] == pk(hA[ar * 16 + ac], hA[ar * 16 + ac + 1]);
                int nb = i / 2, k = 2 * t + 8 * (i % 2), n = nb * 8 + g;   // fb[2nb + j]: n-block nb, k half j
                uint32_t wb = pk(hB[k * 16 + n], hB[(k + 1) * 16 + n]);
                layout &= regs[lane * 12 + 4 + i] == wb && regs[lane * 12 + 8 + i] == wb;
            }
        }
        int exact2 = memcmp(c2, want2, sizeof want2) == 0 && memcmp(c2 + 256, want2, sizeof want2) == 0;
        int inflight = 1, zeros = 1;
        for (int lane = 0; lane < 32; lane++) { inflight &= isnan(before[lane]); zeros &= zero[lane]; }
        snprintf(detail, sizeof detail, "register layouts %s, A B exact both ways %s, in flight reads NaN %s, zero fill %s",
                 layout ? "ok" : "WRONG", exact2 ? "ok" : "WRONG", inflight ? "ok" : "WRONG", zeros ? "ok" : "WRONG");
        report("mma", layout && exact2 && inflight && zeros, detail);
        expect_fatal("ldmatrix global", [&]() { ldmatrix_global_kernel<<<1, 32>>>(regs, A); });
    }

    // cublasLt: column-major D (m x n) = A^T (A stored k x m) B (n x k stored, transposed) + bias + C
    {
        const int m = 5, nn = 3, k = 4;
        float hA[k * m], hB[nn * k], hbias[m], hC[m * nn];
        for (int i = 0; i < k * m; i++) hA[i] = (float)(i % 5 - 2);
        for (int i = 0; i < nn * k; i++) hB[i] = (float)(i % 3 - 1);
        for (int i = 0; i < m; i++) hbias[i] = (float)i;
        for (int i = 0; i < m * nn; i++) hC[i] = (float)(i % 4);
        floatX *A = bf16_buffer(hA, k * m), *B = bf16_buffer(hB, nn * k), *bias = bf16_buffer(hbias, m);
        floatX *C = bf16_buffer(hC, m * nn), *D; cudaMallocCheck(&D, m * nn * sizeof(floatX));
        cublasLtHandle_t h; cublasLtCreate(&h);
        cublasLtMatmulDesc_t desc; cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
        cublasOperation_t t = CUBLAS_OP_T;
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t bt = CUDA_R_16BF;
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t);
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &t, sizeof t);
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt);
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
        cublasLtMatrixLayout_t la, lb, lc;
        cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, k, m, k);
        cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, nn, k, nn);
        cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, m, nn, m);
        float one = 1.0f;
        cublasStatus_t st = cublasLtMatmul(h, desc, &one, A, la, B, lb, &one, C, lc, D, lc, NULL, NULL, 0, 0);
        int exact_mm = st == CUBLAS_STATUS_SUCCESS;
        for (int i = 0; i < m; i++) for (int j = 0; j < nn; j++) {
            float acc = hbias[i] + hC[j * m + i];
            for (int p = 0; p < k; p++) acc += hA[i * k + p] * hB[p * nn + j];
            exact_mm &= __bfloat162float(D[j * m + i]) == acc;
        }
        cublasLtMatrixLayout_t bad; cublasLtMatrixLayoutCreate(&bad, CUDA_R_16BF, m + 1, nn, m + 1);
        int rejects = cublasLtMatmul(h, desc, &one, A, la, B, lb, &one, C, bad, D, bad, NULL, NULL, 0, 0) == CUBLAS_STATUS_INVALID_VALUE;
        report("cublasLt", exact_mm && rejects, "transposed bf16 product + bias + C exact; mismatched shapes rejected");
        // BGRADB (matmul_backward_weight's): fp32 D = op(A) op(B) (B transposed), dbias[j] = sum_p op(B)[p, j]
        cublasLtEpilogue_t gepi = CUBLASLT_EPILOGUE_BGRADB;
        cudaDataType_t gt = CUDA_R_32F;
        cublasOperation_t nop = CUBLAS_OP_N;
        float *D32, *dbias; cudaMallocCheck(&D32, m * nn * sizeof(float)); cudaMallocCheck(&dbias, nn * sizeof(float));
        cublasLtMatmulDesc_t gdesc; cublasLtMatmulDescCreate(&gdesc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
        cublasLtMatmulDescSetAttribute(gdesc, CUBLASLT_MATMUL_DESC_TRANSA, &nop, sizeof nop);
        cublasLtMatmulDescSetAttribute(gdesc, CUBLASLT_MATMUL_DESC_TRANSB, &t, sizeof t);
        cublasLtMatmulDescSetAttribute(gdesc, CUBLASLT_MATMUL_DESC_EPILOGUE, &gepi, sizeof gepi);
        cublasLtMatmulDescSetAttribute(gdesc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &gt, sizeof gt);
        cublasLtMatmulDescSetAttribute(gdesc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &dbias, sizeof dbias);
        cublasLtMatrixLayout_t ga, gc;   // A stored m x k (ld m): hA read as column-major m x k
        cublasLtMatrixLayoutCreate(&ga, CUDA_R_16BF, m, k, m);
        cublasLtMatrixLayoutCreate(&gc, CUDA_R_32F, m, nn, m);
        float zero = 0.0f;
        st = cublasLtMatmul(h, gdesc, &one, A, ga, B, lb, &zero, D32, gc, D32, gc, NULL, NULL, 0, 0);
        int exact_bg = st == CUBLAS_STATUS_SUCCESS;
        for (int j = 0; j < nn; j++) {
            float bacc = 0.0f;
            for (int p = 0; p < k; p++) bacc += hB[p * nn + j];
            exact_bg &= dbias[j] == bacc;
            for (int i = 0; i < m; i++) {
                float acc = 0.0f;
                for (int p = 0; p < k; p++) acc += hA[p * m + i] * hB[p * nn + j];
                exact_bg &= D32[j * m + i] == acc;
            }
        }
        report("cublasLt BGRADB", exact_bg, "fp32 product with B transposed exact; bias gradient = column sums of op(B)");
    }

    // TMA, mbarriers, named barriers (llmc/mma.cuh's sm_90a wrappers)
    {
        const int T = 6, row0 = 2;                     // rows 2..9 of a 6-row tensor: rows 6..9 are zeros
        float hx[T * 64];
        for (int i = 0; i < T * 64; i++) hx[i] = (float)((i / 64) * 16 + i % 16);   // small integers: exact in bf16
        floatX *x = bf16_buffer(hx, T * 64), *out;
        float *before, *flag;
        cudaMallocCheck(&out, 512 * sizeof(floatX)); cudaMallocCheck(&before, sizeof(float)); cudaMallocCheck(&flag, 32 * sizeof(float));
        typedef CUresult (*encode_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                      const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                      CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
        void *fn = NULL;
        cudaDriverEntryPointQueryResult found;
        cudaCheck(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found));
        CUtensorMap map;
        cuuint64_t dims[4] = {64, 1, T, 1}, strides[3] = {128, 128, T * 128};
        cuuint32_t boxd[4] = {64, 1, 8, 1}, es[4] = {1, 1, 1, 1};
        CUresult r = ((encode_fn)fn)(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, x, dims, strides, boxd, es,
                                     CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                     CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
        tma_kernel<<<1, 64, 2048>>>(map, out, before, flag, row0);
        cudaCheck(cudaGetLastError());
        int swz = found == cudaDriverEntryPointSuccess && r == CUDA_SUCCESS, named = 1;
        for (int rr = 0; rr < 8; rr++) for (int c = 0; c < 64; c++) {
            int t = row0 + rr, at = rr * 64 + (((c / 8) ^ (rr % 8)) * 8) + c % 8;   // bf16 index in the box
            swz &= __bfloat162float(out[at]) == (t < T ? hx[t * 64 + c] : 0.0f);
        }
        for (int i = 0; i < 32; i++) named &= flag[i] == (float)(32 + i);
        snprintf(detail, sizeof detail, "swizzled box with zero rows past T %s, NaN before the wait %s, bar_sync after bar_arrive %s",
                 swz ? "ok" : "WRONG", isnan(before[0]) ? "ok" : "WRONG", named ? "ok" : "WRONG");
        report("tma", swz && isnan(before[0]) && named, detail);
        expect_fatal("mbarrier hang", [&]() { mbar_deadlock_kernel<<<1, 32, 1024>>>(); });
    }

    // wgmma, asynchronous
    {
        float *w; cudaMallocCheck(&w, 256 * sizeof(float));
        wgmma_async_kernel<<<1, 128, 8192>>>(w, 0);
        cudaCheck(cudaGetLastError());
        int nan_before = 1, after = 1;
        for (int t = 0; t < 128; t++) { nan_before &= isnan(w[2 * t]); after &= w[2 * t + 1] == 16.0f; }
        snprintf(detail, sizeof detail, "NaN before the wait %s, 16 after it %s", nan_before ? "ok" : "WRONG", after ? "ok" : "WRONG");
        report("wgmma", nan_before && after, detail);
        expect_fatal("wgmma A reg", [&]() { wgmma_async_kernel<<<1, 128, 8192>>>(w, 1); });
        expect_fatal("wgmma smem", [&]() { wgmma_async_kernel<<<1, 128, 8192>>>(w, 2); });
        expect_fatal("wgmma no wait", [&]() { wgmma_async_kernel<<<1, 128, 8192>>>(w, 3); });
    }

    // counters and L2 adds (sem_wait_eq, sem_release_inc, red_add_f32x2/x4)
    {
        float *acc; unsigned *cnt;
        cudaMallocCheck(&acc, 16 * sizeof(float));
        cudaMallocCheck(&cnt, sizeof(unsigned));
        cudaCheck(cudaMemset(acc, 0, 8 * sizeof(float)));   // (acc[8..15] NaN: the first block copies)
        cudaCheck(cudaMemset(cnt, 0, sizeof(unsigned)));
        ordered_add_kernel<<<3, 1>>>(acc, cnt, 0);
        cudaCheck(cudaGetLastError());
        int sums = acc[0] == 6.0f && acc[1] == 6.0f && acc[2] == 60.0f && acc[5] == 60.0f && acc[6] == 0.0f &&
                   acc[8] == 600.0f && acc[11] == 600.0f && acc[12] == 600.0f && acc[15] == 600.0f;
        snprintf(detail, sizeof detail, "adds %s, count %u (3)", sums ? "ok" : "WRONG", *cnt);
        report("ordered adds", sums && *cnt == 3, detail);
        cudaCheck(cudaMemset(cnt, 0, sizeof(unsigned)));
        expect_fatal("counter wait never met", [&]() { ordered_add_kernel<<<3, 1>>>(acc, cnt, 1); });
    }

    printf("cuda_emu selftest: %s\n", fails ? "FAILED" : "all passed");
    return fails ? 1 : 0;
}
