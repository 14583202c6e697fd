/*
 The CPU trainer's numerics that are written for speed (train_sessa.c includes this; DESIGN.md says what they
 compute, this file only how fast): a register-tiled GEMM, exp and the normal CDF as branch-free polynomials that
 vectorise, and the small loops of the causal parts. Beside each fast routine is its plain reference (`*_ref`),
 the definition in one line or loop; dev/test/test_cpu_kernels.c holds every fast one to its reference with the
 tolerances stated here. fp32 throughout; OpenMP pragmas (ignored without -fopenmp).
   gemm            C (M,N) (+)= A (M,K) B (K,N), A possibly transposed           gemm_ref: the triple loop
   exp_fast        exp(x), x clamped to [-87, 88], ~2 ulp                        expf
   normal_cdf      Phi(x) = erfc(-x/sqrt2)/2, max abs error 2e-7                 normal_cdf_ref: libm's erfcf
   transpose_rows  out = x^T in blocks of 16 rows                                transpose_rows_ref: two loops
   dot, axpy, max_of: single loops, their own reference
*/
#ifndef SESSA_CPU_KERNELS_H
#define SESSA_CPU_KERNELS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

// ----------------------------------------------------------------------------
// matmul: C (M,N) (+)= A (M,K) B (K,N). A(m,k) = A[m*sam + k*sak], so A can be read transposed;
// B and C are row-major with leading dimensions ldb, ldc. Register tiles of MR x NR accumulators,
// vectorised along N; tiles are independent, so the result does not depend on the thread count.

#define MR 8
#define NR 32

static inline void gemm_tile(float *C, int ldc, const float *A, long sam, long sak, const float *B, int ldb,
                             int K, int accumulate) {
    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = accumulate ? C[(size_t)i * ldc + j] : 0.0f;
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        for (int i = 0; i < MR; i++) {
            float a = A[i * sam + k * sak];
            #pragma omp simd
            for (int j = 0; j < NR; j++) acc[i][j] += a * b[j];
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) C[(size_t)i * ldc + j] = acc[i][j];
}

// the same for a partial tile at the edges (mr <= MR, nr <= NR)
static inline void gemm_tile_edge(float *C, int ldc, const float *A, long sam, long sak, const float *B, int ldb,
                                  int K, int accumulate, int mr, int nr) {
    float acc[MR][NR];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) acc[i][j] = accumulate ? C[(size_t)i * ldc + j] : 0.0f;
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        for (int i = 0; i < mr; i++) {
            float a = A[i * sam + k * sak];
            for (int j = 0; j < nr; j++) acc[i][j] += a * b[j];
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) C[(size_t)i * ldc + j] = acc[i][j];
}

static void gemm(float *C, int ldc, const float *A, long sam, long sak, const float *B, int ldb,
                 int M, int N, int K, int accumulate) {
    int mt = (M + MR - 1) / MR, nt = (N + NR - 1) / NR;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int im = 0; im < mt; im++) {
        for (int in = 0; in < nt; in++) {
            int m0 = im * MR, n0 = in * NR;
            int mr = M - m0 < MR ? M - m0 : MR, nr = N - n0 < NR ? N - n0 : NR;
            float *c = C + (size_t)m0 * ldc + n0;
            const float *a = A + m0 * sam, *b = B + n0;
            if (mr == MR && nr == NR) gemm_tile(c, ldc, a, sam, sak, b, ldb, K, accumulate);
            else gemm_tile_edge(c, ldc, a, sam, sak, b, ldb, K, accumulate, mr, nr);
        }
    }
}

// reference: the definition, one dot product per output element (accumulated in fp32, k in order)
static void gemm_ref(float *C, int ldc, const float *A, long sam, long sak, const float *B, int ldb,
                     int M, int N, int K, int accumulate) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float acc = accumulate ? C[(size_t)i * ldc + j] : 0.0f;
            for (int k = 0; k < K; k++) acc += A[i * sam + k * sak] * B[(size_t)k * ldb + j];
            C[(size_t)i * ldc + j] = acc;
        }
}

// ----------------------------------------------------------------------------
// exp(x) for the softmaxes and GELU (arguments <= 0 up to rounding), in a form the compiler vectorises:
// x = n ln2 + r, |r| <= ln2/2 (ln2 in two parts), exp(r) by Cephes' degree-6 polynomial (about 2 ulp),
// times 2^n built in the exponent bits. x is clamped to [-87, 88]: exp(-87) = 1.6e-38 stands for 0.
// n = nearbyintf (round to nearest), not floorf(y + 0.5): gcc 12 vectorises no loop with floorf in it
// (it keeps floor scalar under the default -ftrapping-math), which left every softmax loop scalar.
static inline float exp_fast(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    float n = nearbyintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

// reference: libm
static inline float exp_ref(float x) { return expf(x); }

// ----------------------------------------------------------------------------
// Phi, the standard normal CDF, for the exact erf GELU (gelu(x) = x Phi(x), train_sessa.c).
// Phi(x) = erfc(-x / sqrt2) / 2 with erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2), z >= 0 (Numerical Recipes'
// erfcc, a Chebyshev fit of relative error < 1.2e-7) and erfc(-z) = 2 - erfc(z). Unlike libm's erff it has no
// branch or call, so the GELU loops vectorise (erff was 3% of a step); max abs error of Phi in fp32 2e-7.
static inline float normal_cdf(float x) {
    float z = fabsf(x) * (float)M_SQRT1_2, t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    float half_erfc = 0.5f * t * exp_fast(-z * z - 1.26551223f + t * p);       // erfc(|x| / sqrt2) / 2
    return x < 0.0f ? half_erfc : 1.0f - half_erfc;
}

// reference: libm's erfc
static inline float normal_cdf_ref(float x) { return 0.5f * erfcf(-x * (float)M_SQRT1_2); }

// ----------------------------------------------------------------------------
// small helpers for the causal parts

static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    #pragma omp simd reduction(+:s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
static inline void axpy(float *y, float a, const float *x, int n) {
    #pragma omp simd
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}
static inline float max_of(const float *x, int n) {
    float m = -INFINITY;
    #pragma omp simd reduction(max:m)
    for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}
// out (cols, rows) with row stride ldo = transpose of the first `cols` columns of rows [0, rows) of x (stride ldx)
// In blocks of 16 rows: the 16 source rows stay in L1 while each output row gets 16 contiguous floats
// (one vector store); element by element, every store went to another output row (1.5% of a step).
static inline void transpose_rows(float *out, int ldo, const float *x, int ldx, int rows, int cols) {
    for (int j0 = 0; j0 < rows; j0 += 16) {
        int nj = rows - j0 < 16 ? rows - j0 : 16;
        for (int i = 0; i < cols; i++) {
            float *o = out + (size_t)i * ldo + j0;
            const float *xi = x + (size_t)j0 * ldx + i;
            for (int j = 0; j < nj; j++) o[j] = xi[(size_t)j * ldx];
        }
    }
}

// reference: element by element
static inline void transpose_rows_ref(float *out, int ldo, const float *x, int ldx, int rows, int cols) {
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < rows; j++) out[(size_t)i * ldo + j] = x[(size_t)j * ldx + i];
}

#endif // SESSA_CPU_KERNELS_H
