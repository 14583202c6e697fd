/*
 Causal GQA attention, backward with recomputation from lse (FlashAttention-2): dq, and dk, dv summed over the
 query heads of each kv head, deterministic (no atomics: a second run is checked to give the same bits).
   version 1: the first GPU version (wmma, fp32 staging, no pipelining), kept here as written
   version 2: llmc/attention.cuh attention_backward_mma (mma.sync + ldmatrix + cp.async; dK/dV kernel per key
              tile, dQ kernel per query tile), what the trainer uses off Hopper
   version 3: llmc/attention_sm90_bwd.cuh (wgmma, sm_90a, d = 64 and 128; dK/dV kernel per 128 keys, dQ kernel per
              128 query rows, S and dP recomputed there: no atomics), loads by cp.async from all threads
   version 4: version 3 with both kernels warp-specialized (a TMA producer warpgroup, 3-stage mbarrier rings of
              K, V tiles (dQ) and of Q, dO, lse, Delta (dK/dV): llmc/attention_sm90_bwd.cuh)
   version 5: version 4 with the CTAs of both kernels in longest-first order across the heads of an L2 section
              (atth_block_order: the longest blocks of all heads first, the short ones make the tail)
   version 6: version 5 with the 2 consumer warpgroups of each kernel in ping-pong (named barriers, as the
              forward's version 5: one's exponentials and dS run under the other's products)
   version 7: version 6 with each warpgroup's constant operand of its first two products (Q, dO in the dQ kernel;
              K, V in the dK/dV kernel, at d = 64 only) held in registers as wgmma's A (read from shared memory
              once): those products read only B from shared memory, half the bytes
   version 8: version 7 with the consumers of both kernels software-pipelined instead of in ping-pong at d = 64
              (at 128: version 7): a tile's (item's) last product (dQ += dS K_j; dK += dS^T Q_i) is issued in
              the next one, after its S, dP, so that a warpgroup's exponentials run under its own products; the
              same bits as version 7 (checked)
   version 9: the dQ kernel of version 8 with the dK/dV kernel of version 7: what the trainer used on an
              H100/H200 (H200: 1-2% faster than 7 at d = 64; the pipelined dK/dV kernel is slower)
   version 10: the dQ kernel of version 7 with the dK/dV kernel of version 8
   version 11: version 9 with the pipelined dQ kernel's consumers also in ping-pong (version 7's turns)
   version 12: dQ in the dK/dV kernel (FlashAttention-3's deterministic backward): the kernel of version 7 without
              the turns also computes dQ_i = dS K for every query tile it visits (5 products instead of 7) and adds
              it into an fp32 accumulator at L2 (red.add), in key-block order (a counter per query tile), the last
              (diagonal) block writing dq; no dQ kernel. At d = 128 both consumer warpgroups make dQ_i, a column
              half each (64 x 64 tiles, a counter each). H200 (the seventh session, d = 64): 1.3-1.4x slower than 9
   version 13: version 12 with the adds other than the diagonal block's made by 2 writer warps (the producer's
              warps 1, 2) from shared memory, so that the consumers do not wait on the counters (the same sums in
              the same order: the same bits as 12, checked); H200: 1.05-1.22x slower than 9
   version 14: version 13 with the writers' adds by TMA bulk reductions (cp.reduce.async.bulk .add.f32, one per
              tile, as FlashAttention-3), the same bits as 12 (checked); H200: 7% faster than 9 at T = 16384
              (0.83x SDPA), 2% slower at 4096, 12-14% at 1024
   version 15: 14 at d = 64 from T = 8192 on (ATTH_BWD_T14) and at d = 128 from T = 16384 on (ATTH_BWD_T128), else
              9: what the trainer uses (atth_bwd_version15); H200 (the eighth session) at d = 128 T = 16384: 14
              3-6% faster than 9 (0.82-0.83x SDPA), 4-40% slower at T = 4096
   version 16: version 14 with 2 staging buffers per consumer warpgroup (at d = 128 then 2 stages of Q, dO instead
              of 3: 227 KiB) and the writer keeping one bulk reduction in flight while it waits for the next tile;
              H200: 7-18% slower than 14 at every shape (a tile counted later delays the chain of key blocks)
   version 17: version 14 with 16's 2 staging buffers per consumer warpgroup, each tile counted at once (at d = 128
              2 stages of Q, dO): whether the consumers of 14 wait for the writers
   versions 3-17 are checked against the CPU reference and against version 2 (8-11 and 15 bitwise against 7, 13,
   14, 16 and 17 against 12), and for determinism (a second run: the same bits); versions 2-17 also with RoPE's
   backward (attention_backward's rope table: fused into the Hopper kernels' dq, dk stores, rope_backward after
   version 2's kernels) against the CPU, against the unfused path within about one bf16 rounding, and for
   determinism (check_rope)
 make -C dev/cuda bin/attention_backward && dev/cuda/bin/attention_backward check|bench [version]
   (bench also times each version 2-17 without RoPE's backward, with it in the stores and with rope_backward after)
 dev/cuda/bin/attention_backward shape B T H Hkv d   times the trainer's forward (attention_forward: the Hopper
   kernel on sm_90, else version 2), the version 2 forward, the trainer's backward (attention_backward: version 15
   on sm_90, else 2) and the version 2 backward at one shape and prints one machine-readable line
   (dev/cuda/bench_attention.py joins it with PyTorch SDPA's timings)
*/
#define ATTENTION_FORWARD_NO_MAIN
#include "attention_forward.cu"

// ----------------------------------------------------------------------------
// version 1 (was llmc/attention.cuh)

// ----------------------------------------------------------------------------
// backward

// Delta[b,h,t] = dout_t . out_t (fp32, from the bf16 tensors), one warp per (b,t,h) row
__global__ void attention1_delta_kernel(float *delta, const floatX *dout, const floatX *out, int B, int T, int H, int d) {
    size_t row = (size_t)blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE;
    int lane = threadIdx.x % WARP_SIZE;
    if (row >= (size_t)B * T * H) return;
    float acc = 0.0f;
    for (int c = lane; c < d; c += WARP_SIZE)
        acc = fmaf(__bfloat162float(dout[row * d + c]), __bfloat162float(out[row * d + c]), acc);
    acc = warp_reduce_sum(acc);
    int h = row % H, t = (row / H) % T, b = row / ((size_t)H * T);
    if (lane == 0) delta[((size_t)b * H + h) * T + t] = acc;
}

// this warp's fragments -> rows [row0, row0+64) of dst (row r at dst[r*stride]), times scale, as bf16
template <int HD>
__device__ void att1_write_out(floatX *dst, int stride, int row0, int T, const Att1Acc *acc, float *Os, float scale) {
    __syncthreads();                                     // Os free
    att1_store_out<HD>(Os, acc);
    __syncthreads();
    for (int e = threadIdx.x; e < ATT1_BT * HD; e += ATT1_THREADS) {
        int r = e / HD, c = e % HD;
        if (row0 + r < T) dst[(size_t)(row0 + r) * stride + c] = __float2bfloat16(Os[r * (HD + 4) + c] * scale);
    }
}

// dq for one query tile: grid (ceil(T/64), H, B)
template <int HD>
__global__ void __launch_bounds__(ATT1_THREADS)
attention1_backward_dq_kernel(floatX *dq, const floatX *dout, const float *lse, const float *delta,
                             const floatX *q, const floatX *k, const floatX *v, int T, int H, int Hkv) {
    constexpr int LD = Att1Tile<HD>::LD;
    extern __shared__ __align__(128) unsigned char att1_smem[];
    float *Zs = (float *)att1_smem, *Os = Zs + ATT1_BT * ATT1_ZLD;                  // fp32 (64, ATT1_ZLD), (64, HD+4)
    floatX *dSb = (floatX *)(Os + ATT1_BT * (HD + 4));                            // bf16 (64, ATT1_WLD)
    floatX *Qs = dSb + ATT1_BT * ATT1_WLD, *dOs = Qs + ATT1_BT * LD;                // bf16 (64, LD) each
    floatX *Ks = dOs + ATT1_BT * LD, *Vs = Ks + ATT1_BT * LD;
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    int i0 = blockIdx.x * ATT1_BT, h = blockIdx.y, b = blockIdx.z, hk = h / (H / Hkv);
    const float scale = rsqrtf((float)HD);
    att1_load_tile<HD>(Qs, q + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
    att1_load_tile<HD>(dOs, dout + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
    float lse_r[4], delta_r[4];
    for (int i = 0; i < 4; i++) {
        int t = i0 + ty + 16 * i;
        lse_r[i] = t < T ? lse[((size_t)b * H + h) * T + t] : 0.0f;
        delta_r[i] = t < T ? delta[((size_t)b * H + h) * T + t] : 0.0f;
    }
    Att1Acc acc[HD / 32];
    for (int f = 0; f < HD / 32; f++) nvcuda::wmma::fill_fragment(acc[f], 0.0f);
    for (int j0 = 0; j0 <= i0; j0 += ATT1_BT) {
        __syncthreads();
        att1_load_tile<HD>(Ks, k + ((size_t)b * T * Hkv + hk) * HD, Hkv * HD, j0, T);
        att1_load_tile<HD>(Vs, v + ((size_t)b * T * Hkv + hk) * HD, Hkv * HD, j0, T);
        __syncthreads();
        float sc[4][4], dp[4][4];
        att1_dot_tile<HD>(sc, Qs, Ks, Zs);
        att1_dot_tile<HD>(dp, dOs, Vs, Zs);
        for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) {
            int t = i0 + ty + 16 * i, jj = j0 + tx + 16 * j;
            float p = (jj <= t && t < T) ? expf(sc[i][j] * scale - lse_r[i]) : 0.0f;
            dSb[(ty + 16 * i) * ATT1_WLD + tx + 16 * j] = __float2bfloat16(p * (dp[i][j] - delta_r[i]));
        }
        __syncthreads();
        att1_mma_tile<HD, false>(acc, dSb, Ks);            // dq += dS K
    }
    att1_write_out<HD>(dq + ((size_t)b * T * H + h) * HD, H * HD, i0, T, acc, Os, scale);
}

// dk, dv for one key tile of one kv head, summed over its g query heads: grid (ceil(T/64), Hkv, B)
template <int HD>
__global__ void __launch_bounds__(ATT1_THREADS)
attention1_backward_dkv_kernel(floatX *dk, floatX *dv, const floatX *dout, const float *lse, const float *delta,
                              const floatX *q, const floatX *k, const floatX *v, int T, int H, int Hkv) {
    constexpr int LD = Att1Tile<HD>::LD;
    extern __shared__ __align__(128) unsigned char att1_smem[];
    float *Zs = (float *)att1_smem, *Os = Zs + ATT1_BT * ATT1_ZLD;                  // fp32 (64, ATT1_ZLD), (64, HD+4)
    floatX *Pb = (floatX *)(Os + ATT1_BT * (HD + 4)), *dSb = Pb + ATT1_BT * ATT1_WLD; // bf16 (64, ATT1_WLD) each
    floatX *Ks = dSb + ATT1_BT * ATT1_WLD, *Vs = Ks + ATT1_BT * LD;                 // bf16 (64, LD) each
    floatX *Qs = Vs + ATT1_BT * LD, *dOs = Qs + ATT1_BT * LD;
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    int j0 = blockIdx.x * ATT1_BT, hk = blockIdx.y, b = blockIdx.z, g = H / Hkv;
    const float scale = rsqrtf((float)HD);
    att1_load_tile<HD>(Ks, k + ((size_t)b * T * Hkv + hk) * HD, Hkv * HD, j0, T);
    att1_load_tile<HD>(Vs, v + ((size_t)b * T * Hkv + hk) * HD, Hkv * HD, j0, T);
    Att1Acc dk_acc[HD / 32], dv_acc[HD / 32];
    for (int f = 0; f < HD / 32; f++) { nvcuda::wmma::fill_fragment(dk_acc[f], 0.0f); nvcuda::wmma::fill_fragment(dv_acc[f], 0.0f); }
    for (int h = hk * g; h < (hk + 1) * g; h++) {
        const float *lse_h = lse + ((size_t)b * H + h) * T, *delta_h = delta + ((size_t)b * H + h) * T;
        for (int i0 = j0; i0 < T; i0 += ATT1_BT) {        // query tiles holding some t >= j
            __syncthreads();
            att1_load_tile<HD>(Qs, q + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
            att1_load_tile<HD>(dOs, dout + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
            __syncthreads();
            float sc[4][4], dp[4][4];                    // rows: queries ty+16i, columns: keys tx+16j
            att1_dot_tile<HD>(sc, Qs, Ks, Zs);
            att1_dot_tile<HD>(dp, dOs, Vs, Zs);
            for (int i = 0; i < 4; i++) {
                int t = i0 + ty + 16 * i;
                float lse_t = t < T ? lse_h[t] : 0.0f, delta_t = t < T ? delta_h[t] : 0.0f;
                for (int j = 0; j < 4; j++) {
                    int jj = j0 + tx + 16 * j;
                    float p = (jj <= t && t < T) ? expf(sc[i][j] * scale - lse_t) : 0.0f;
                    Pb[(ty + 16 * i) * ATT1_WLD + tx + 16 * j] = __float2bfloat16(p);
                    dSb[(ty + 16 * i) * ATT1_WLD + tx + 16 * j] = __float2bfloat16(p * (dp[i][j] - delta_t));
                }
            }
            __syncthreads();
            att1_mma_tile<HD, true>(dv_acc, Pb, dOs);     // dv += P^T dO
            att1_mma_tile<HD, true>(dk_acc, dSb, Qs);     // dk += dS^T Q
        }
    }
    size_t base = ((size_t)b * T * Hkv + hk) * HD;
    att1_write_out<HD>(dv + base, Hkv * HD, j0, T, dv_acc, Os, 1.0f);
    att1_write_out<HD>(dk + base, Hkv * HD, j0, T, dk_acc, Os, scale);
}

// launchers

static size_t attention1_backward_scratch_bytes(int B, int T, int H, int Hkv, int d) {
    (void)Hkv; (void)d;
    return (size_t)B * H * T * sizeof(float);   // Delta
}

template <int HD>
static void attention1_backward_hd(floatX *dq, floatX *dk, floatX *dv, const floatX *dout, const float *lse,
                                  const float *delta, const floatX *q, const floatX *k, const floatX *v,
                                  int B, int T, int H, int Hkv, cudaStream_t stream) {
    size_t smem_q = attention1_dq_smem(HD), smem_kv = attention1_dkv_smem(HD);
    cudaCheck(cudaFuncSetAttribute(attention1_backward_dq_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_q));
    cudaCheck(cudaFuncSetAttribute(attention1_backward_dkv_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_kv));
    attention1_backward_dq_kernel<HD><<<dim3(ceil_div(T, ATT1_BT), H, B), ATT1_THREADS, smem_q, stream>>>(
        dq, dout, lse, delta, q, k, v, T, H, Hkv);
    cudaCheck(cudaGetLastError());
    attention1_backward_dkv_kernel<HD><<<dim3(ceil_div(T, ATT1_BT), Hkv, B), ATT1_THREADS, smem_kv, stream>>>(
        dk, dv, dout, lse, delta, q, k, v, T, H, Hkv);
    cudaCheck(cudaGetLastError());
}

static void attention1_backward(floatX *dq, floatX *dk, floatX *dv, const floatX *dout, const floatX *out,
                               const float *lse, const floatX *q, const floatX *k, const floatX *v, float *scratch,
                               int B, int T, int H, int Hkv, int d, cudaStream_t stream) {
    attention1_check_shape(B, T, H, Hkv, d);
    float *delta = scratch;   // (B, H, T)
    attention1_delta_kernel<<<ceil_div((long long)B * T * H, 8), 8 * WARP_SIZE, 0, stream>>>(delta, dout, out, B, T, H, d);
    cudaCheck(cudaGetLastError());
    if (d == 32) attention1_backward_hd<32>(dq, dk, dv, dout, lse, delta, q, k, v, B, T, H, Hkv, stream);
    if (d == 64) attention1_backward_hd<64>(dq, dk, dv, dout, lse, delta, q, k, v, B, T, H, Hkv, stream);
    if (d == 128) attention1_backward_hd<128>(dq, dk, dv, dout, lse, delta, q, k, v, B, T, H, Hkv, stream);
}


// ----------------------------------------------------------------------------
// test setup

// dq, dk, dv in the problem's layout (one allocation dgrad: dense, or stacked like q, k, v: the trainer's layout)
typedef struct { floatX *dout, *dgrad, *dq, *dk, *dv; float *scratch; } AttGrads;

static AttGrads att_grads_alloc(const AttProblem *p, const float *dout) {
    AttGrads g;
    g.dout = to_device_bf16(dout, (size_t)p->B * p->T * p->H * p->d);
    g.dgrad = att_to_device(&p->L, p->B, p->T, p->H, p->Hkv, p->d, NULL);   // NaN until written
    g.dq = g.dgrad + p->L.off[0]; g.dk = g.dgrad + p->L.off[1]; g.dv = g.dgrad + p->L.off[2];
    cudaMallocCheck(&g.scratch, attention_backward_scratch_bytes(p->B, p->T, p->H, p->Hkv, p->d));
    return g;
}
static void att_grads_free(AttGrads *g) {
    cudaCheck(cudaFree(g->dout)); cudaCheck(cudaFree(g->dgrad)); cudaCheck(cudaFree(g->scratch));
}
// version 0: attention_backward, the trainer's choice (15 where usable, else 2); version 1 takes dense tensors only
// and no RoPE table; rope (NULL: none): RoPE's backward on dq, dk (attention_backward's rope)
static void run_att_backward_rope(AttProblem *p, AttGrads *g, int version, const float2 *rope) {
    const int ldq = p->L.ldq, ldkv = p->L.ldkv;
#define ATT_BWD_ARGS g->dq, g->dk, g->dv, g->dout, p->d_out, p->d_lse, p->d_q, p->d_k, p->d_v, g->scratch, p->B, p->T, p->H, p->Hkv, p->d, 0
    if (version == 1) {
        if (ldq != p->H * p->d || ldkv != p->Hkv * p->d || rope) fatal("attention_backward version 1: dense tensors only, no RoPE");
        attention1_backward(ATT_BWD_ARGS);
    } else if (version == 2) attention_backward_mma(ATT_BWD_ARGS, ldq, ldkv, rope);
    else if (version >= 3) attention_backward_sm90(ATT_BWD_ARGS, version, ldq, ldkv, rope);
    else attention_backward(ATT_BWD_ARGS, ldq, ldkv, rope);
#undef ATT_BWD_ARGS
}
static void run_att_backward(AttProblem *p, AttGrads *g, int version) { run_att_backward_rope(p, g, version, NULL); }
// 1 when the trainer's attention_backward takes the Hopper path for head width d
static int att_backward_is_sm90(int d) {
#ifndef SESSA_CUDA_EMU_H
    return (d == 64 || d == 128) && attention_sm90_bwd_trusted();
#else
    (void)d;
    return 0;
#endif
}
// tensor i (0: dq, 1: dk, 2: dv) of the device allocation dgrad (layout L) -> a new dense host float array
static float *att_host_tensor(const AttLayout *L, const floatX *dgrad, int i, int B, int T, int H, int Hkv, int d) {
    float *all = (float *)mallocCheck(L->n * sizeof(float));
    from_device(all, dgrad, L->n);
    int w = att_width(i, H, Hkv, d), ld = att_ld(L, i);
    float *h = (float *)mallocCheck((size_t)B * T * w * sizeof(float));
    for (size_t r = 0; r < (size_t)B * T; r++) memcpy(h + r * w, all + L->off[i] + r * ld, w * sizeof(float));
    free(all);
    return h;
}

// dq, dk, dv of version (in g, from its run just before) against a second run's (the same bits: deterministic) and,
// for versions 8+ but 12, against their twin's, run into scratch (the same bits): the pipelined consumers issue
// version 7's products in another order of time, not of summation, unless an operand was changed under a product in
// flight (a register or a stage handed back early); versions 13, 14, 16, 17 add what 12 adds, in the same order, each
// add one fp32 rounding (15: 14's or 9's kernels by d and T); rope: both runs with the table (NULL: without)
static int att_repeat_and_twin(AttProblem *p, AttGrads *g, AttGrads *scratch, int version, int d, int T,
                               const float2 *rope) {
    size_t n = p->L.n;
    uint16_t *first = (uint16_t *)mallocCheck(n * sizeof(uint16_t)), *again = (uint16_t *)mallocCheck(n * sizeof(uint16_t));
    cudaCheck(cudaMemcpy(first, g->dgrad, n * sizeof(floatX), cudaMemcpyDeviceToHost));
    run_att_backward_rope(p, g, version, rope);
    cudaCheck(cudaMemcpy(again, g->dgrad, n * sizeof(floatX), cudaMemcpyDeviceToHost));
    int same = memcmp(first, again, n * sizeof(uint16_t)) == 0, ok = same;
    printf("  dq, dk, dv second run bitwise identical: %s\n", same ? "ok" : "FAIL");
    if (version >= 8 && version != 12) {
        const int v = version == 15 ? atth_bwd_version15(d, T) : version;
        const int twin = v == 13 || v == 14 || v == 16 || v == 17 ? 12 : 7;
        run_att_backward_rope(p, scratch, twin, rope);
        cudaCheck(cudaMemcpy(again, scratch->dgrad, n * sizeof(floatX), cudaMemcpyDeviceToHost));
        int same7 = memcmp(first, again, n * sizeof(uint16_t)) == 0;
        printf("  dq, dk, dv bitwise identical to version %d's%s: %s\n", twin, rope ? " with the table" : "", same7 ? "ok" : "FAIL");
        ok &= same7;
    }
    free(first); free(again);
    return ok;
}

// a random dout (bf16 values) and the CPU reference's out, lse, dq, dk, dv for problem p (att_ref_free frees them)
typedef struct { float *dout, *out, *lse, *dq, *dk, *dv; size_t nq, nk; } AttRef;
static AttRef att_ref_make(const AttProblem *p, int B, int T, int H, int Hkv, int d) {
    AttRef r;
    r.nq = (size_t)B * T * H * d; r.nk = (size_t)B * T * Hkv * d;
    r.dout = make_random_float(r.nq, -1.0f, 1.0f);
    round_to_bf16(r.dout, r.nq);
    r.out = (float *)mallocCheck(r.nq * sizeof(float)); r.lse = (float *)mallocCheck((size_t)B * H * T * sizeof(float));
    r.dq = (float *)mallocCheck(r.nq * sizeof(float));
    r.dk = (float *)mallocCheck(r.nk * sizeof(float)); r.dv = (float *)mallocCheck(r.nk * sizeof(float));
    attention_cpu(r.out, r.lse, r.dq, r.dk, r.dv, r.dout, p->q, p->k, p->v, B, T, H, Hkv, d);
    return r;
}
static void att_ref_free(AttRef *r) { free(r->dout); free(r->out); free(r->lse); free(r->dq); free(r->dk); free(r->dv); }

// got[i] (device dq, dk, dv: the first n of them, rows as the problem's layout) against the CPU reference, with
// check's tolerance (below); 1 if all pass
static int att_validate(const AttProblem *p, const floatX *const *got, int n, const AttRef *r, int B, int T, int H,
                        int Hkv, int d) {
    const float *refs[3] = {r->dq, r->dk, r->dv};
    const size_t ns[3] = {r->nq, r->nk, r->nk};
    const char *names[3] = {"dq", "dk", "dv"};
    int ok = 1;
    for (int i = 0; i < n; i++)
        ok &= validate_result(got[i], refs[i], names[i], (size_t)B * T, att_width(i, H, Hkv, d), att_ld(&p->L, i),
                              1e-2f * max_abs(refs[i], ns[i]) + 1e-6f, 1e-2f);
    return ok;
}

// stacked: q, k, v and dq, dk, dv column slices of wider matrices (att_layout), as the trainer passes them
static int check(int version, int B, int T, int H, int Hkv, int d, int stacked) {
    if (version >= 3 && d != 64 && d != 128) return 1;   // not a width of the Hopper kernels
    if (version == 1 && stacked) return 1;                // version 1 takes dense tensors only
    printf("check version %d B=%d T=%d H=%d Hkv=%d d=%d%s\n", version, B, T, H, Hkv, d, stacked ? " stacked q|k|v" : "");
    AttProblem p = make_att_problem(B, T, H, Hkv, d, stacked);
    att_check_sections(version >= 5);
    AttRef ref = att_ref_make(&p, B, T, H, Hkv, d);
    size_t nq = ref.nq, nk = ref.nk;
    float *dout = ref.dout, *dq = ref.dq, *dk = ref.dk, *dv = ref.dv;
    AttGrads g = att_grads_alloc(&p, dout);
    run_att_forward(&p, version == 1 ? 1 : 2);   // out, lse of the mma.sync forward for versions 2, 3
    run_att_backward(&p, &g, version);
    cudaCheck(cudaDeviceSynchronize());
    // P and dS are rounded to bf16 before their products (FlashAttention-2's numerics, 2^-9 relative per term),
    // Delta comes from the bf16 out, and the results are stored in bf16: atol 1e-2 of the tensor's largest entry,
    // rtol 1e-2 (the CPU emulation of these kernels shows up to 4e-3 of the max). Wrong masks or head sums are
    // off by 1e-1 of the max or more. Plus 1e-6 absolute: where the exact gradient is 0 (T = 1: dS = P (dP - Delta)
    // with dP = Delta in exact arithmetic) the kernels return fp32 rounding noise of O(1) dot products, ~1e-8.
    floatX *outs[3] = {g.dq, g.dk, g.dv};
    size_t ns[3] = {nq, nk, nk};
    const char *names[3] = {"dq", "dk", "dv"};
    const float *refs[3] = {dq, dk, dv};
    int ok = att_validate(&p, outs, 3, &ref, B, T, H, Hkv, d);
    ok &= att_pad_intact(&p.L, g.dgrad, B, T, H, Hkv, d);   // nothing written between or after dq, dk, dv
    if (version >= 3) {
        // against version 2 (mma.sync) from the same forward and dout: the same math with other tiles and summation
        // orders, each within the tolerance above of the exact gradient, so within about twice it of each other
        AttGrads g2 = att_grads_alloc(&p, dout);
        run_att_backward(&p, &g2, 2);
        cudaCheck(cudaDeviceSynchronize());
        printf("  version %d against version 2:\n", version);
        for (int i = 0; i < 3; i++) {
            float *v2 = att_host_tensor(&p.L, g2.dgrad, i, B, T, H, Hkv, d);
            ok &= validate_result(outs[i], v2, names[i], (size_t)B * T, att_width(i, H, Hkv, d), att_ld(&p.L, i),
                                  2e-2f * max_abs(refs[i], ns[i]) + 2e-6f, 2e-2f);
            free(v2);
        }
        att_grads_free(&g2);
    }
    // determinism: a second run gives the same bits (dq, dk and dv, and the untouched pad); the twin's bits
    AttGrads g7 = att_grads_alloc(&p, dout);
    ok &= att_repeat_and_twin(&p, &g, &g7, version, d, T, NULL);
    att_grads_free(&g7);
    att_ref_free(&ref);
    att_grads_free(&g);
    free_att_problem(&p);
    return ok;
}

// RoPE's backward inside the backward (attention_backward's rope: the Hopper versions rotate dq, dk in fp32 in their
// stores, version 2 runs rope_backward after its kernels). The problem's q, k stand for rope_forward's outputs; the
// table is made for Tt = T + 64 rows (the trainer's is made for its allocated T, at least the call's).
//  1. against the CPU: attention_cpu's dq, dk (the gradients of the rotated q, k), then the inverse rotation in double
//     with the table's own fp32 cos, sin; the tolerance of check() (a rotation keeps each pair's norm, so errors of
//     that size stay that size); dv as in check()
//  2. against the unfused path, the same version without the table and then rope_backward (rope.cuh) on dq, dk: the
//     kernels' accumulators and scales are the same fp32 numbers x (same products, same sums), so the two differ only
//     in rounding. Unfused: y = bf16(x) = x + e, |e_i| <= u |x_i| (u = 2^-8: bf16 keeps 8 significant bits), then
//     bf16(R y) = bf16(R x + R e) with |(R e)_i| <= |e| <= u |x| (|.|: the pair's norm; R a rotation); fused:
//     bf16(R x). Two numbers a, b rounded to bf16 differ by at most |a - b| + u |a| + u |b|, so per element
//       |fused_i - unfused_i| <= u |x| + u |a| + u |b| + (the fp32 rotations: ~4 2^-24 |x|),
//     and from the stored values |x| <= |fused pair| / (1 - u), |a| <= |fused_i| / (1 - u), |b| <= |unfused_i| /
//     (1 - u). Bound used: 1.02 u (|fused pair| + |fused_i| + |unfused_i|) + 1e-30 (0.02 > u / (1 - u) plus the
//     fp32 terms; 1e-30 only for exact zeros). About one extra bf16 rounding: a fusion that rotates the wrong pair,
//     by the wrong angle or with the wrong sign is off by far more wherever |x| is not tiny (and fails 1. too).
//     dv bitwise the same as without the table (RoPE leaves it alone); nothing written outside dq, dk, dv.
//  3. determinism: a second run, the same bits; versions 8+ but 12: the same bits as their twin (7 or 12) with the
//     table (the same accumulators, the same rotation code).
static int check_rope(int version, int B, int T, int H, int Hkv, int d, int stacked) {
    if (version >= 3 && d != 64 && d != 128) return 1;
    printf("check RoPE backward in version %d B=%d T=%d H=%d Hkv=%d d=%d%s\n", version, B, T, H, Hkv, d,
           stacked ? " stacked q|k|v" : "");
    AttProblem p = make_att_problem(B, T, H, Hkv, d, stacked);
    att_check_sections(version >= 5);
    const int half = d / 2, Tt = T + 64;
    AttRef ref = att_ref_make(&p, B, T, H, Hkv, d);
    size_t nq = ref.nq, nk = ref.nk;
    float *dout = ref.dout, *dq = ref.dq, *dk = ref.dk, *dv = ref.dv;
    // the table as rope_table_create makes it (fp32 cos, sin of a double angle), the reference rotated by -theta
    float2 *d_rope = rope_table_create(Tt, d);
    float2 *h_rope = (float2 *)mallocCheck((size_t)Tt * half * sizeof(float2));
    cudaCheck(cudaMemcpy(h_rope, d_rope, (size_t)Tt * half * sizeof(float2), cudaMemcpyDeviceToHost));
    float *refs_rot[2] = {dq, dk};
    for (int i = 0; i < 2; i++) {
        const int nh = i == 0 ? H : Hkv;
        for (size_t n = 0; n < (size_t)B * T; n++) for (int hh = 0; hh < nh; hh++) for (int pp = 0; pp < half; pp++) {
            float *x = refs_rot[i] + (n * nh + hh) * d + 2 * pp;
            const float2 cs = h_rope[(n % T) * half + pp];
            const double x0 = x[0], x1 = x[1];
            x[0] = (float)(x0 * cs.x + x1 * cs.y);
            x[1] = (float)(x1 * cs.x - x0 * cs.y);
        }
    }
    AttGrads g = att_grads_alloc(&p, dout), gu = att_grads_alloc(&p, dout);
    run_att_forward(&p, 2);
    run_att_backward_rope(&p, &g, version, d_rope);
    run_att_backward(&p, &gu, version);
    rope_backward(gu.dq, p.L.ldq, H, gu.dk, p.L.ldkv, Hkv, d_rope, B * T, T, d, 0);
    cudaCheck(cudaDeviceSynchronize());
    floatX *outs[3] = {g.dq, g.dk, g.dv};
    size_t ns[3] = {nq, nk, nk};
    const char *names[3] = {"dq", "dk", "dv"};
    const float *refs[3] = {dq, dk, dv};
    printf("  fused against the CPU (attention, then the inverse rotation):\n");
    int ok = att_validate(&p, outs, 3, &ref, B, T, H, Hkv, d);
    printf("  unfused (version %d, then rope_backward) against the CPU:\n", version);
    const floatX *unfused[2] = {gu.dq, gu.dk};
    ok &= att_validate(&p, unfused, 2, &ref, B, T, H, Hkv, d);
    ok &= att_pad_intact(&p.L, g.dgrad, B, T, H, Hkv, d);
    // fused against unfused, pair by pair (2. above)
    for (int i = 0; i < 3; i++) {
        float *f = att_host_tensor(&p.L, g.dgrad, i, B, T, H, Hkv, d), *u = att_host_tensor(&p.L, gu.dgrad, i, B, T, H, Hkv, d);
        if (i == 2) {
            int same = memcmp(f, u, ns[i] * sizeof(float)) == 0;
            printf("  dv bitwise the same as without the table: %s\n", same ? "ok" : "FAIL");
            ok &= same;
        } else {
            const float ulp = 1.0f / 256.0f;
            double worst = 0.0, max_diff = 0.0;
            size_t differ = 0, bad = 0;
            for (size_t e = 0; e < ns[i]; e += 2) {
                const float norm = sqrtf(f[e] * f[e] + f[e + 1] * f[e + 1]);
                for (int j = 0; j < 2; j++) {
                    const float diff = fabsf(f[e + j] - u[e + j]);
                    const float bound = 1.02f * ulp * (norm + fabsf(f[e + j]) + fabsf(u[e + j])) + 1e-30f;
                    differ += f[e + j] != u[e + j];
                    bad += !(diff <= bound);       // NaN fails
                    max_diff = fmax(max_diff, diff);
                    worst = fmax(worst, diff / bound);
                }
            }
            printf("  %-8s fused vs unfused: %zu of %zu entries differ, max |diff| %.3e, max |diff|/bound %.3f "
                   "(bound 1.02 2^-8 (|pair| + |fused| + |unfused|))  %s\n", names[i], differ, ns[i], max_diff, worst,
                   bad ? "FAIL" : "ok");
            ok &= bad == 0;
        }
        free(f); free(u);
    }
    // 3. determinism, and the twin's bits
    ok &= att_repeat_and_twin(&p, &g, &gu, version, d, T, d_rope);
    free(h_rope);
    cudaCheck(cudaFree(d_rope));
    att_ref_free(&ref);
    att_grads_free(&g); att_grads_free(&gu);
    free_att_problem(&p);
    return ok;
}

// 2.5x the forward's matmul FLOPs (S, dP, dV, dK, dQ; S and dP recomputed in the dQ pass: counted once, as FA2 does)
static double att_backward_flops(int B, int T, int H, int d) { return 2.5 * att_forward_flops(B, T, H, d); }

// the backward without the table, then rope_backward on dq, dk: RoPE's backward as a pass of its own (the unfused path)
static void run_att_backward_unfused(AttProblem *p, AttGrads *g, int version, const float2 *rope) {
    run_att_backward(p, g, version);
    rope_backward(g->dq, p->L.ldq, p->H, g->dk, p->L.ldkv, p->Hkv, rope, p->B * p->T, p->T, p->d, 0);
}
static float median_ms(int n, float *x);
static void bench(int version, int B, int T, int H, int Hkv, int d) {
    AttProblem p = make_att_problem(B, T, H, Hkv, d, 0);
    float *dout = make_random_float((size_t)B * T * H * d, -1.0f, 1.0f);
    AttGrads g = att_grads_alloc(&p, dout);
    run_att_forward(&p, version == 1 ? 1 : 2);
    float ms = benchmark_kernel(10, run_att_backward, &p, &g, version);
    printf("B=%d T=%d H=%d Hkv=%d d=%d  version %d  %8.3f ms  %6.1f TFLOP/s\n", B, T, H, Hkv, d, version, ms,
           att_backward_flops(B, T, H, d) / (ms * 1e-3) / 1e12);
    if (version >= 2 && (version == 2 || d == 64 || d == 128)) {
        // RoPE's backward: none / in the stores (the table given) / rope_backward after, interleaved, median of 7
        // timings of 20 calls each
        float2 *rope = rope_table_create(T, d);
        float t0[7], t1[7], t2[7];
        for (int r = 0; r < 7; r++) {
            t0[r] = benchmark_kernel(20, run_att_backward_rope, &p, &g, version, (const float2 *)NULL);
            t1[r] = benchmark_kernel(20, run_att_backward_rope, &p, &g, version, (const float2 *)rope);
            t2[r] = benchmark_kernel(20, run_att_backward_unfused, &p, &g, version, (const float2 *)rope);
        }
        const float m0 = median_ms(7, t0), m1 = median_ms(7, t1), m2 = median_ms(7, t2);
        printf("B=%d T=%d H=%d Hkv=%d d=%d  version %d  RoPE backward: none %.4f ms, in the stores %.4f ms (%+.1f us), "
               "rope_backward after %.4f ms (%+.1f us)\n", B, T, H, Hkv, d, version, m0, m1, 1e3f * (m1 - m0), m2,
               1e3f * (m2 - m0));
        cudaCheck(cudaFree(rope));
    }
    free(dout);
    att_grads_free(&g);
    free_att_problem(&p);
}

// `shape B T H Hkv d [nomma]`: the trainer's forward (attention_forward: the Hopper kernel where usable, else version
// 2) and backward (attention_backward: version 15 where usable, else 2; SESSA_ATT_FWD_VERSION, SESSA_ATT_BWD_VERSION
// pick others), median of 7 timings of 20 calls each, and the mma.sync forward and backward (version 2) for
// comparison (not with nomma: their columns are then 0), one line:
//   ours B T H Hkv d fwd_ms fwd_tflops bwd_ms bwd_tflops fwd_kernel(wgmma-v<version>|mma) mma_fwd_ms mma_fwd_tflops
//        bwd_kernel(wgmma-v<version>|mma) mma_bwd_ms mma_bwd_tflops
static float median_ms(int n, float *x) {
    for (int i = 1; i < n; i++) for (int j = i; j > 0 && x[j] < x[j - 1]; j--) { float t = x[j]; x[j] = x[j - 1]; x[j - 1] = t; }
    return x[n / 2];
}
static int shape_mode(int argc, char **argv) {
    if (argc != 7 && !(argc == 8 && strcmp(argv[7], "nomma") == 0)) fatal("usage: %s shape B T H Hkv d [nomma]", argv[0]);
    int B = atoi(argv[2]), T = atoi(argv[3]), H = atoi(argv[4]), Hkv = atoi(argv[5]), d = atoi(argv[6]), mma = argc == 7;
    attention_check_shape(B, T, H, Hkv, d);
    cudaCheck(cudaSetDevice(0));
    AttProblem p = make_att_problem(B, T, H, Hkv, d, 0);
    float *dout = make_random_float((size_t)B * T * H * d, -1.0f, 1.0f);
    AttGrads g = att_grads_alloc(&p, dout);
    float tf[7], tb[7], tm[7] = {0}, tbm[7] = {0};
    for (int r = 0; r < 7; r++) {
        tf[r] = benchmark_kernel(20, run_att_forward, &p, 0);
        tb[r] = benchmark_kernel(20, run_att_backward, &p, &g, 0);
        if (!mma) continue;
        tm[r] = benchmark_kernel(20, run_att_forward, &p, 2);
        tbm[r] = benchmark_kernel(20, run_att_backward, &p, &g, 2);
    }
    float fms = median_ms(7, tf), bms = median_ms(7, tb), mms = median_ms(7, tm), bmms = median_ms(7, tbm);
    double ff = att_forward_flops(B, T, H, d), fb = att_backward_flops(B, T, H, d);
    char fk[16] = "mma", bk[16] = "mma";   // the Hopper kernels with their version (dev/cuda/attention_*.cu)
    if (att_forward_is_sm90(d)) snprintf(fk, sizeof fk, "wgmma-v%d", attention_sm90_fwd_version);
    if (att_backward_is_sm90(d)) snprintf(bk, sizeof bk, "wgmma-v%d", attention_sm90_bwd_version);
    printf("ours %d %d %d %d %d %.4f %.1f %.4f %.1f %s %.4f %.1f %s %.4f %.1f\n", B, T, H, Hkv, d, fms, ff / (fms * 1e-3) / 1e12,
           bms, fb / (bms * 1e-3) / 1e12, fk, mms, ff / (mms * 1e-3) / 1e12, bk, bmms, fb / (bmms * 1e-3) / 1e12);
    free(dout);
    att_grads_free(&g);
    free_att_problem(&p);
    return 0;
}

// the trainer's self-test (llmc/attention.cuh attention_sm90_decide: the Hopper kernels against mma.sync on q, k, v
// and dq, dk, dv with row strides, as the trainer passes them): none of its comparisons may fail where the Hopper
// kernels are usable (a failure there would silently put the trainer on a slower fallback)
static int check_selftest(void) {
    printf("check the trainer's self-test of the Hopper kernels (attention_sm90_decide)\n");
    attention_sm90_decide();
    int ok = attention_sm90_selftest_failures == 0;
    printf("  usable %d, forward %s (version %d), backward %s (version %d), failed comparisons %d: %s\n",
           attention_sm90_usable(), attention_sm90_state ? "Hopper" : "mma.sync", attention_sm90_fwd_version,
           attention_sm90_bwd_state ? "Hopper" : "mma.sync", attention_sm90_bwd_version, attention_sm90_selftest_failures,
           ok ? "ok" : "FAIL");
    return ok;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "shape") == 0) return shape_mode(argc, argv);
    DevArgs a = parse_dev_args(argc, argv, ATT_VERSIONS);
    cudaCheck(cudaSetDevice(0));
    int ok = 1;
    for (int version = 1; version <= ATT_VERSIONS; version++) {
        if (a.version && version != a.version) continue;
        if (!att_version_runs_here(version, a.version, &ok)) continue;
#ifdef SESSA_CUDA_EMU_H
        if ((version == 9 || version == 10) && a.version == 0) {   // (the emulator's time: check 9 or 10 runs them)
            printf("version %d: its kernels are versions 7's and 8's, checked there\n", version);
            continue;
        }
        if ((version == 12 || version == 13 || version == 16) && a.version == 0) {   // (check 12, 13 or 16 runs it)
            printf("version %d: the kernel of 14 and 17 (checked there, bitwise against 12) with other writers\n", version);
            continue;
        }
        if (version == 15 && a.version == 0) {   // (check 15 runs it)
            printf("version 15: its kernels are versions 9's and 14's, checked there\n");
            continue;
        }
#endif
        if (a.check) {
            ok &= att_common_checks(check, version);
            // versions 3-11 also: T = 1 and T < 64 at their widths, GQA group of 4 at d = 128, and a longer sequence
            // (9 key blocks of 128, 17 query tiles of 64 per head; 3 blocks in the CPU emulator, where it is slow)
#ifndef SESSA_CUDA_EMU_H
            const int T_long = 1100;
#else
            const int T_long = 300;
#endif
            if (version >= 3) ok &= check(version, 1, 1, 2, 1, 64, 0) & check(version, 2, 37, 2, 2, 128, 0) &
                                    check(version, 1, 200, 4, 1, 128, 0) & check(version, 1, T_long, 2, 1, 64, 1) &
                                    check(version, 3, 150, 2, 1, 64, 1);   // (sections 2 + 1 in the dQ kernel)
            // versions 12-16: 4 key blocks, so query tiles 6 and 7 get 2 adds between the first and the last, from
            // 4 query heads of a kv head in turn, with a partial last tile (at d = 128 the common checks' T = 333:
            // 3 key blocks, tiles 4 and 5 with one add between)
            if (version >= 12) ok &= check(version, 1, 500, 4, 1, 64, 1);
            // RoPE's backward in the stores (check_rope): versions 2-17 (not 1: no table), d = 64 GQA and d = 128
            // MHA, stacked (the trainer's layout) and dense, T not a multiple of 64 with several key blocks (333: 3
            // blocks of 128, query tiles 4, 5 with a middle add in 12-17; the emulator 201: 2 blocks, faster)
#ifndef SESSA_CUDA_EMU_H
            const int T_rope = 333;
#else
            const int T_rope = 201;
#endif
            if (version >= 2) ok &= check_rope(version, 2, T_rope, 4, 2, 64, 1) & check_rope(version, 1, T_rope, 2, 2, 128, 1) &
                                    check_rope(version, 1, 77, 4, 1, 128, 0);
        } else {
            bench(version, 8, 1024, 12, 12, 64);
            bench(version, 8, 1024, 12, 4, 64);
            bench(version, 4, 2048, 8, 2, 128);
        }
    }
    if (a.check && (a.version == 0 || a.version >= 3)) ok &= check_selftest();
    if (a.check) printf(ok ? "attention_backward: all checks passed\n" : "attention_backward: CHECK FAILED\n");
    return ok ? 0 : 1;
}
