/*
 Today's (session 6, main c3c4ee9) row pass and slab kernels of llmc/feedback.cuh, kept verbatim under _v1 names
 for dev/cuda/feedback_backward.cu: its check compares the tree's kernels with these bit for bit, and its bench
 times both ("side kernels alone": fb_fwd_rows_v1, fb_bwd_slab_v1 beside the tree's). Included after feedback.cuh.
 v1 row pass: wpr warps a row (fb_row_warps), 8 / wpr rows a CTA of 256 threads, a lane's keys tid + k 32 wpr in
 registers (FB_ROW_KEYS), the group sums over the row's warps in a fixed order (fb_group_reduce_v1).
 v1 slab: 16 rows a CTA of 256 threads (4 a thread at S = 256), whatever the grid.
 v1 fb_bwd_rows launch: the tree's kernel, 4 rows (warps) a CTA whatever the grid.
*/
#ifndef SESSA_FEEDBACK_SIDE_V1_H
#define SESSA_FEEDBACK_SIDE_V1_H


// v reduced (max or sum) over the wpr warps of this warp's row group, the same value on all of them, in a fixed
// order (deterministic; wpr = 1: the warp's own value). red: 8 floats of shared memory; every thread calls it.
template <bool MAX>
__device__ __forceinline__ float fb_group_reduce_v1(float v, float *red, int wpr) {
    int w = threadIdx.x / WARP_SIZE, g0 = w / wpr * wpr;
    v = MAX ? warp_reduce_max(v) : warp_reduce_sum(v);
    __syncthreads();                            // red's previous values read by everyone
    if (threadIdx.x % WARP_SIZE == 0) red[w] = v;
    __syncthreads();
    float x = red[g0];
    for (int k = 1; k < wpr; k++) x = MAX ? fmaxf(x, red[g0 + k]) : x + red[g0 + k];
    return x;
}

// keys of a row a lane of the row pass holds in registers: fb_row_warps gives a lane at most 32 keys of the rows
// up to 8192 keys, so Z is read once; longer rows go in chunks of FB_ROW_KEYS keys a lane (those chunks read up to
// 3 times, from L2). (A -DFB_ROW_KEYS=4 build runs the chunked path on the emulator's short rows.)
#ifndef FB_ROW_KEYS
#define FB_ROW_KEYS 32
#endif
// zr[k] = z[j0 + k nth] for the keys below n, -inf past n (not loaded): FB_ROW_KEYS independent loads in flight
__device__ __forceinline__ void fb_row_load_v1(float (&zr)[FB_ROW_KEYS], const float *z, int j0, int nth, int n) {
#pragma unroll
    for (int k = 0; k < FB_ROW_KEYS; k++) zr[k] = j0 + k * nth < n ? z[j0 + k * nth] : -INFINITY;
}

// row pass of superblock [u0, u0+Sv): row r (t = u0 + r) by wpr warps (fb_row_warps(u1)), 8 / wpr rows per CTA.
// Z (B, S, ldz) fp32 logits for keys j < u1. lse_t = log sum_{j<t} exp Z[r,j]; P[r,j] = exp(Z[r,j] - lse_t) for
// j < t else 0: the keys j < u0 into P3 (B, S, 3 ldz) in the Y3 layout (columns 3j, 3j+1, 3j+2 = P_hi, P_lo, P_hi;
// the chain GEMM's A), the diagonal block j in U in fp32 into Pd (B, S, S): Pd[r][jj] = P[r, u0+jj]. Lane tid of
// a row's nth = 32 wpr threads takes the keys j = tid + k nth, k < FB_ROW_KEYS (registers zr[k]): one read of the
// row, then three passes over the registers (max, sum in the order of k, write). P3 row offsets: ldz and u0 are
// multiples of 32 (fb_ldz, S), so a warp's 32 keys start at a 4-byte boundary of P3.
// Cost (B=8 T=1024, superblock 4 of 4: 2048 rows of 1024 keys): Z 8.4 MB in (from L2: the GEMM just wrote it), P3
// 9.4 MB and Pd 2.1 MB out, ~4.5 us at ~4.3 TB/s; a layer's 4 calls 48 MB, ~11 us (+ ~4 x 2 us launch and ramp).
// The former kernel read Z from global memory in each of the three passes, one 4-byte load in flight per lane
// (a dependent loop): 11.7 us per call, latency-bound. Same sums in the same order: the same bits.
// grid (ceil(Sv wpr / 8), B), 256 threads.
__global__ void fb_fwd_rows_v1_kernel(floatX *P3, float *Pd, float *lse, const float *Z, int ldz,
                                   int u0, int Sv, int S, int T, int wpr) {
    __shared__ float red[8];
    int w = threadIdx.x / WARP_SIZE, b = blockIdx.y;
    int r = blockIdx.x * (8 / wpr) + w / wpr, nth = wpr * WARP_SIZE, tid = threadIdx.x % nth;
    bool on = r < Sv;                           // (no early return: the group reductions have barriers)
    int t = u0 + r, u1 = u0 + Sv, tt = on ? t : 0, span = FB_ROW_KEYS * nth;
    size_t row = ((size_t)b * S + r) * ldz;
    const float *z = Z + row;
    float zr[FB_ROW_KEYS];
    int held = 0;                               // zr holds the keys [held, held + span) of the row
    fb_row_load_v1(zr, z, tid, nth, tt);
    float mx = -INFINITY, sum = 0.0f;
    for (int c0 = 0; c0 < tt; c0 += span) {
        if (c0 != held) { held = c0; fb_row_load_v1(zr, z, c0 + tid, nth, tt); }
#pragma unroll
        for (int k = 0; k < FB_ROW_KEYS; k++) mx = fmaxf(mx, zr[k]);   // (-inf past t)
    }
    mx = fb_group_reduce_v1<true>(mx, red, wpr);
    for (int c0 = 0; c0 < tt; c0 += span) {
        if (c0 != held) { held = c0; fb_row_load_v1(zr, z, c0 + tid, nth, tt); }
#pragma unroll
        for (int k = 0; k < FB_ROW_KEYS; k++)
            if (c0 + tid + k * nth < tt) sum += expf(zr[k] - mx);
    }
    sum = fb_group_reduce_v1<false>(sum, red, wpr);
    if (!on) return;                            // (whole warps: the shuffles below see all 32 lanes)
    float l = t == 0 ? -INFINITY : mx + logf(sum);
    int lane = tid % WARP_SIZE;
    for (int c0 = 0; c0 < u1; c0 += span) {
        if (c0 != held) { held = c0; fb_row_load_v1(zr, z, c0 + tid, nth, tt); }
        // two of the warp's blocks of 32 keys at a time, A = j0 + lane (zr[k]) and B = j0 + nth + lane (zr[k + 1])
        // (u0 is a multiple of 32: a block's 32 keys all go to P3, or all to Pd). P3: the 96 bf16 of a block in the
        // Y3 layout (key e: hi, lo, hi) are 48 words; lane m < 16 writes block A's words 3m..3m+2, i.e. keys 2m and
        // 2m+1 (hi0 | lo0, hi0 | hi1, lo1 | hi1), lane 16 + m block B's, from hl = hi | lo << 16 (fb_split3's
        // bits) of the two keys' lanes: 4 shuffles and 3 coalesced 4-byte stores a lane per 64 keys
#pragma unroll
        for (int k = 0; k < FB_ROW_KEYS; k += 2) {
            int j0 = c0 + tid - lane + k * nth, j = j0 + lane;
            if (j0 >= u1) break;
            bool b_on = j0 + nth < u1;
            float pa = j < t ? expf(zr[k] - l) : 0.0f, pb = b_on && j + nth < t ? expf(zr[k + 1] - l) : 0.0f;
            if (j0 < u0) {                      // (then j0 + nth < u0 or not, the same for the whole warp)
                float ha = bf16x2_lo(pack_bf16x2(pa, 0.0f)), hb = bf16x2_lo(pack_bf16x2(pb, 0.0f));
                uint32_t hla = pack_bf16x2(ha, pa - ha), hlb = pack_bf16x2(hb, pb - hb);
                int m = lane % 16;
                uint32_t a0 = __shfl_sync(0xffffffffu, hla, 2 * m), a1 = __shfl_sync(0xffffffffu, hla, 2 * m + 1);
                uint32_t b0 = __shfl_sync(0xffffffffu, hlb, 2 * m), b1 = __shfl_sync(0xffffffffu, hlb, 2 * m + 1);
                bool mine_b = lane >= 16;
                uint32_t x0 = mine_b ? b0 : a0, x1 = mine_b ? b1 : a1;
                if (!mine_b || j0 + nth < u0) {
                    uint32_t *dst = (uint32_t *)&P3[3 * (row + j0 + (mine_b ? nth : 0))] + 3 * m;
                    dst[0] = x0;
                    dst[1] = (x0 & 0xffffu) | x1 << 16;
                    dst[2] = x1 >> 16 | x1 << 16;
                }
            } else if (j < u1) {
                Pd[((size_t)b * S + r) * S + (j - u0)] = pa;
            }
            if (b_on && j0 + nth >= u0 && j + nth < u1) Pd[((size_t)b * S + r) * S + (j + nth - u0)] = pb;
        }
    }
    if (tid == 0) lse[(size_t)b * T + t] = l;
}

// the elementwise slab kernels' threads: a thread takes 4 consecutive columns of a row of S (16-byte fp32 and
// 8-byte bf16 accesses), S / 4 threads a row, fb_slab_rows_v1(S) rows per pass of 256 threads (4 at S = 256), and a
// CTA fb_slab_cta_rows_v1(S) = max(16, fb_slab_rows_v1(S)) rows: up to FB_SLAB_IT_V1 = 4 rows a thread, their loads issued
// before any use (4 x 16 bytes in flight a thread: the former one row a thread had one, and CTAs of 4 rows)
#define FB_SLAB_CTA_ROWS_V1 16
#define FB_SLAB_IT_V1 4                    // FB_SLAB_CTA_ROWS_V1 / fb_slab_rows_v1(FB_SMAX)
__host__ __device__ constexpr int fb_slab_rows_v1(int S) { return 256 / (S / 4); }
__host__ __device__ constexpr int fb_slab_cta_rows_v1(int S) { return fb_slab_rows_v1(S) > FB_SLAB_CTA_ROWS_V1 ? fb_slab_rows_v1(S) : FB_SLAB_CTA_ROWS_V1; }
static_assert(FB_SLAB_CTA_ROWS_V1 / fb_slab_rows_v1(FB_SMAX) <= FB_SLAB_IT_V1, "a slab thread's rows");

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
    __shared__ float tile[FB_SLAB_CTA_ROWS_V1 * (FB_SMAX + 1)];   // >= fb_slab_cta_rows_v1(S) (S + 1) for every S
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

// the v1 launches (fb_launch_fwd_rows, fb_launch_slab as they were)
static void fb_launch_fwd_rows_v1(const FbFwdScratch *w, int k, float *lse, int u0, int Sv, int S, int B, int T,
                                  cudaStream_t stream) {
    int wpr = fb_row_warps(u0 + Sv);
    fb_fwd_rows_v1_kernel<<<dim3(ceil_div(Sv * wpr, 8), B), 256, 0, stream>>>(w->P3[k], w->Pd[k], lse, w->Z,
                                                                                fb_ldz(T), u0, Sv, S, T, wpr);
    cudaCheck(cudaGetLastError());
}
static void fb_launch_slab_v1(const FbBwdScratch *w, int k, const float *lse, const float *gamma, int u0, int Sv,
                              int S, int B, int T, cudaStream_t stream) {
    fb_bwd_slab_v1_kernel<<<dim3(ceil_div(T - u0, fb_slab_cta_rows_v1(S)), B), 256, 0, stream>>>(
        w->Pc3[k], w->PcT[k], w->Zs[k], lse, gamma, u0, Sv, S, T);
    cudaCheck(cudaGetLastError());
}
static void fb_launch_bwd_rows_v1(const FbBwdScratch *w, float *dgamma, const float *c, const float *s, int u0,
                                  int Sv, int S, int B, int T, int D, cudaStream_t stream) {   // 4 rows a CTA always
    int vec = D % 4 == 0 && ptr_alignment(c) >= 16 && ptr_alignment(s) >= 16;
    fb_bwd_rows_kernel<<<dim3(ceil_div(Sv, 4), B), 128, 0, stream>>>(dgamma, w->sU3, w->u3, c, s, u0, Sv, S, T, D, vec);
    cudaCheck(cudaGetLastError());
}

#endif
