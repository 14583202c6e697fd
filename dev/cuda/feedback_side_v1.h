/*
 Session 6's (main c3c4ee9) slab kernel of llmc/feedback.cuh, kept verbatim under a _v1 name for
 dev/cuda/feedback_backward.cu: its check compares the tree's slab with it bit for bit, and its bench times both
 ("side kernels alone": fb_bwd_slab_v1 beside fb_bwd_slab). Included after feedback.cuh.
 v1 slab: 16 rows a CTA of 256 threads (4 a thread at S = 256), whatever the grid. It knew superblocks of at most
 FB_SMAX_V1 = 256 rows (the FB_SMAX of its time); the bench and check run it only there.
*/
#ifndef SESSA_FEEDBACK_SIDE_V1_H
#define SESSA_FEEDBACK_SIDE_V1_H


// the elementwise slab kernels' threads: a thread takes 4 consecutive columns of a row of S (16-byte fp32 and
// 8-byte bf16 accesses), S / 4 threads a row, fb_slab_rows_v1(S) rows per pass of 256 threads (4 at S = 256), and a
// CTA fb_slab_cta_rows_v1(S) = max(16, fb_slab_rows_v1(S)) rows: up to FB_SLAB_IT_V1 = 4 rows a thread, their loads issued
// before any use (4 x 16 bytes in flight a thread: the former one row a thread had one, and CTAs of 4 rows)
#define FB_SMAX_V1 256
#define FB_SLAB_CTA_ROWS_V1 16
#define FB_SLAB_IT_V1 4                    // FB_SLAB_CTA_ROWS_V1 / fb_slab_rows_v1(FB_SMAX_V1)
__host__ __device__ constexpr int fb_slab_rows_v1(int S) { return 256 / (S / 4); }
__host__ __device__ constexpr int fb_slab_cta_rows_v1(int S) { return fb_slab_rows_v1(S) > FB_SLAB_CTA_ROWS_V1 ? fb_slab_rows_v1(S) : FB_SLAB_CTA_ROWS_V1; }
static_assert(FB_SLAB_CTA_ROWS_V1 / fb_slab_rows_v1(FB_SMAX_V1) <= FB_SLAB_IT_V1, "a slab thread's rows");

// slab of key superblock [u0, u0+Sv): rows i = t - u0 < M = T - u0, columns jj < S (j = u0 + jj).
// Pc[i][jj] = gamma_t exp(Zs[i][jj] - lse_t) for jj < Sv and j < t, else 0, into Pc3 (B, 3T, S) in the Y3 layout
// (rows 3i, 3i+1, 3i+2 = Pc_hi, Pc_lo, Pc_hi: the chain GEMM's A^T). Zs: (B, T, S) (columns >= Sv not read
// as numbers: never written by the GEMM).
// The diagonal block (t in U) also goes out in fp32, transposed, for the in-superblock solve: PcT (B, S, S),
// PcT[jj][i] = Pc[i][jj] for i, jj < Sv, through a shared tile [rows][S + 1] (the CTAs with rows i < Sv): column jj
// of the CTA's 16 rows is 64 contiguous bytes of PcT (the former 4-byte stores straight from the row layout touched
// a 32-byte sector each: 0.5M sectors per call at B=8).
// Cost: 10 bytes per element (Zs in, Pc3 out) and 4 more on the diagonal block: B=8 T=1024 S=256, 640 rows on
// average, 13 MB + 2.1 MB, ~3.5 us at ~4.3 TB/s (the former kernel: 14.1 us per call in the d12 profile).
// grid (ceil(M / fb_slab_cta_rows_v1(S)), B), 256 threads.
__global__ void fb_bwd_slab_v1_kernel(floatX *Pc3, float *PcT, const float *Zs, const float *lse,
                                   const float *gamma, int u0, int Sv, int S, int T) {
    __shared__ float tile[FB_SLAB_CTA_ROWS_V1 * (FB_SMAX_V1 + 1)];   // >= fb_slab_cta_rows_v1(S) (S + 1) for every S
    int tpr = S / 4, rpc = fb_slab_rows_v1(S), R = fb_slab_cta_rows_v1(S), b = blockIdx.y;
    int rr = threadIdx.x / tpr, jj = 4 * (threadIdx.x % tpr), i0 = blockIdx.x * R, M = T - u0;
    FbF4 z4[FB_SLAB_IT_V1];
    float g[FB_SLAB_IT_V1], l[FB_SLAB_IT_V1];
#pragma unroll
    for (int n = 0; n < FB_SLAB_IT_V1; n++) {     // the loads first
        int r = rr + n * rpc, i = i0 + r;
        if (rr < rpc && r < R && i < M) {
            z4[n] = *(const FbF4 *)&Zs[((size_t)b * T + i) * S + jj];
            g[n] = gamma[(size_t)b * T + u0 + i];
            l[n] = lse[(size_t)b * T + u0 + i];
        }
    }
#pragma unroll
    for (int n = 0; n < FB_SLAB_IT_V1; n++) {
        int r = rr + n * rpc, i = i0 + r, t = u0 + i;
        if (!(rr < rpc && r < R && i < M)) continue;
        float z[4] = {z4[n].x, z4[n].y, z4[n].z, z4[n].w}, p[4];
#pragma unroll
        for (int k = 0; k < 4; k++) p[k] = jj + k < Sv && u0 + jj + k < t ? g[n] * expf(z[k] - l[n]) : 0.0f;
        FbU2 hi, lo;                            // fb_split3's bits, 4 columns at a time
        fb_split_pack(&hi.x, &lo.x, p[0], p[1]);
        fb_split_pack(&hi.y, &lo.y, p[2], p[3]);
        floatX *y = Pc3 + ((size_t)b * 3 * T + 3 * i) * S + jj;
        *(FbU2 *)y = hi;
        *(FbU2 *)(y + S) = lo;
        *(FbU2 *)(y + 2 * S) = hi;
        if (i0 < Sv)
#pragma unroll
            for (int k = 0; k < 4; k++) tile[r * (S + 1) + jj + k] = p[k];
    }
    if (i0 >= Sv) return;                       // (the whole CTA)
    __syncthreads();
    int nr = Sv - i0 < R ? Sv - i0 : R;         // PcT[jj][i0 + r] = tile[r][jj], consecutive threads along r
    for (int e = threadIdx.x; e < Sv * R; e += blockDim.x) {
        int c = e / R, r = e % R;
        if (r < nr) PcT[((size_t)b * S + c) * S + i0 + r] = tile[r * (S + 1) + c];
    }
}

// the v1 launch (fb_launch_slab as it was)
static void fb_launch_slab_v1(const FbBwdScratch *w, int k, const float *lse, const float *gamma, int u0, int Sv,
                              int S, int B, int T, cudaStream_t stream) {
    if (S > FB_SMAX_V1) fatal("fb_launch_slab_v1: S = %d (it knew superblocks of at most %d rows)", S, FB_SMAX_V1);
    fb_bwd_slab_v1_kernel<<<dim3(ceil_div(T - u0, fb_slab_cta_rows_v1(S)), B), 256, 0, stream>>>(
        w->Pc3[k], w->PcT[k], w->Zs[k], lse, gamma, u0, Sv, S, T);
    cudaCheck(cudaGetLastError());
}

#endif
