/*
 Sessa language model training on CUDA GPUs (llm.c's train_gpt2.cu shape), DESIGN.md sections 1-5.
 - bf16 weights and activations, fp32 accumulation everywhere, fp32 master weights + AdamW moments,
   fp32 gradients, all in flat buffers of one GPU layout (checkpoint order, but each layer's W_q, W_k, W_v, W_fb
   stacked into one matrix for one GEMM (and their biases); each tensor and stacked block 256-byte aligned, zero gaps)
 - per-layer activations are O(B*T*D): attention and the feedback solve never form a T x T matrix
 - deterministic: no order-varying atomics (matmuls by cuBLASLt, fixed-order reductions elsewhere)
 - data parallel over GPUs with NCCL (llmc/zero.cuh), ZeRO stage 0 or 1 (-z); world size 1 is the plain path;
   the gradients of each layer are reduced while the backward of the layers below it runs
 - a checkpoint + resume state (-n, -y 1) written on W GPUs resumes on any number of GPUs
 - -r 1 recomputes LayerNorm and GELU outputs in the backward instead of keeping them per layer
 Same flags, files and step schedule as train_sessa.c (llmc/args.h, llmc/schedule.h; dev/test/test_twins.sh checks
 that both give the same losses), plus -r, -z, -pi, -cg, -sb, -sm; -E (both trainers' -E: the same accuracies,
 dev/test/test_long_context_eval.py; on several GPUs the ranks score their val rows and sum the tallies).
 - -cg 1 (default): each micro-step's forward + loss + backward is one replayed CUDA graph (on several GPUs with the
   layers' gradient reductions inside the last micro-step's graph)
 - a training step has no host sync (on any number of GPUs): the mean loss, the gradient norm and the clip scale stay
   on the device (llmc/global_norm.cuh's StepStats; AdamW reads the scale there; on several GPUs also their sums over
   the ranks and the ranks' stop signals), batches go up from pinned memory, and the host prints a step's line after
   it has issued the next step (StepLog): it runs a step ahead, reading and planning the next batch while the GPU
   computes
 Sampling (DESIGN.md section 5: -st -sk -sp -sf -g, and -sb -sm here) decodes recurrently (llmc/decode.cuh): the
 prompt is prefilled by the parallel forward, whose k, v, kb, s rows become the caches; then each new token is one
 row per sequence through every layer against those caches, O(T) per token. -sm 0 keeps the old form (the parallel
 forward over the whole growing prefix, O(T^2) per token) for comparison. -x 0 -s 1 -e CKPT samples from a checkpoint.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
// defines: fatal, mallocCheck, fopenCheck, now_seconds, bf16 conversions
#include "llmc/utils.h"
// defines: SessaConfig, the parameter table (P_*), sessa_param_decays, init, checkpoints, Rng
#include "llmc/sessa.h"
// defines: TrainArgs, train_args_parse (the flags of DESIGN.md section 5), -h
#include "llmc/args.h"
// defines: train_state_read/write, the run directory (lock, args.txt, main.log, run_log_val/run_log_train)
#include "llmc/train_state.h"
// defines: lr_at_step, step_validates, step_samples, step_checkpoints
#include "llmc/schedule.h"
// defines: sample_logits_topk, argmax_logits, sampler_seed
#include "llmc/sampler.h"
#include "llmc/flops.h"
#include "llmc/dataloader.h"
#include "llmc/tokenizer.h"
// defines: EvalTasks (-E)
#include "llmc/eval_tasks.h"
#include "llmc/cuda_common.h"
#include "llmc/matmul.cuh"
#include "llmc/layernorm.cuh"
#include "llmc/gelu.cuh"
#include "llmc/rope.cuh"
#include "llmc/gate.cuh"
#include "llmc/gamma.cuh"
#include "llmc/encoder.cuh"
#include "llmc/fused_classifier.cuh"
#include "llmc/adamw.cuh"
#include "llmc/global_norm.cuh"
#include "llmc/attention.cuh"
#include "llmc/feedback.cuh"
#include "llmc/zero.cuh"
#include "llmc/decode.cuh"

static cudaStream_t main_stream;

// ----------------------------------------------------------------------------
// a bump allocator: run a layout once with base NULL to size it, then again on the real allocation

typedef struct { char *base; size_t off; } Arena;
static void *arena_take(Arena *a, size_t bytes) {
    void *p = a->base != NULL ? a->base + a->off : NULL;
    a->off += (bytes + 255) / 256 * 256;   // 256-byte aligned, as cuBLASLt and the feedback scratch like
    return p;
}

// ----------------------------------------------------------------------------
// activations of one layer (N = B*T rows)

typedef struct {
    floatX *x, *y;               // (N, D) layer input and output: the residual stream
    float *ln_mean, *ln_rstd;    // (N)
    floatX *xn;                  // (N, D) LayerNorm(x)          (shared by all layers with -r 1)
    floatX *ag;                  // (N, 2D) Linear_in(xn) = [a | gt]
    floatX *abar;                // (N, D) GELU(a)               (shared by all layers with -r 1)
    floatX *proj;                // (N, np) [q | k | v | qb | kb] = abar [W_q; W_k; W_v; W_fb]^T + biases (one GEMM)
    floatX *q, *k, *v, *qbkb;    // its column slices (rows np apart): H*hd, Hkv*hd, Hkv*hd, 2D columns; q and k
                                 // after RoPE; [qb | kb] = Linear_fb(abar) (the f0 baseline has no qbkb)
    floatX *att;                 // (N, D) attention output (heads concatenated)
    float *att_lse;              // (B, H, T)
    floatX *f;                   // (N, D) att Wo^T, or att itself when H == 1
    float *gamma;                // (N) gamma_max tanh(r)
    float *s, *c, *fb_lse;       // (N, D) feedback output, (N, D) feedback context, (N) its log-sum-exp
    FbKeep fb_keep;              // one superblock (T <= S): the backward's slab, made by the forward (llmc/feedback.cuh)
    floatX *gated;               // (N, D) s * gt
} LayerActs;

// gradients flowing backward through one layer, reused by every layer. With the weight-gradient stream
// (SESSA_WGRAD, "Weight gradients beside the backward" below) there are two sets, bw[l % 2] for layer l, which
// differ only in the buffers that stream reads (dxn, dag, df, dproj and its slices, dr); otherwise bw[1] = bw[0].
typedef struct {
    floatX *dres;                // (N, D) dL/dx of the residual stream
    floatX *dxn;                 // (N, D) dL/dxn, also dL/dabar and the head's dL/d(lnf out)
    floatX *dag;                 // (N, 2D) [da | dgt]
    floatX *dgated, *df, *datt;  // (N, D)
    floatX *dproj;               // (N, np) [dq | dk | dv | dqb | dkb]: one GEMM each for dabar and the weights
    floatX *dq, *dk, *dv, *dqbkb;   // its column slices, as in LayerActs
    float *gs;                   // (N, D) dL/ds (fp32; f0 only: with the feedback the solve forms it, FbGateBwd)
    float *dgamma, *dr;          // (N)
    float2 *colsum;              // column_sums scratch (main_stream)
    float2 *colsum_wg;           // column_sums scratch of the weight-gradient stream (= colsum without it)
    float *fb_scratch, *att_scratch;
    float *norm_scratch;         // global norm partials
} BackwardBufs;

// a captured micro-step and what it was captured for
typedef struct { cudaGraphExec_t exec; int B, T; float dloss; } MicroGraph;   // exec NULL until captured

// one run of the GPU parameter layout: n elements of tensor kind `kind` (all of it, or one layer's slice of a
// stacked projection), at `gpu` in the GPU layout and at `ckpt` in checkpoint order
typedef struct { size_t gpu, ckpt, n; int kind; } ParamRun;

typedef struct {
    SessaConfig config;
    int hd, Dq, Dkv;                            // head width, H*hd, Hkv*hd
    int np;                                     // Dq + 2 Dkv + 2D (f0: Dq + 2 Dkv): the stacked projection's rows
    // The GPU layout (model_param_layout): the tensors in checkpoint order, except that the projections of abar
    // are stacked per layer: layer l's W_q, W_k, W_v, W_fb are the rows of one (np, D) matrix (where W_q's
    // tensor would start) and b_q, b_k, b_v, b_fb one (np) vector (where b_q's would), so one GEMM makes
    // [q | k | v | qb | kb]. Every tensor and every stacked layer block starts at a multiple of GPU_ALIGN
    // elements (256 bytes of bf16), so that cuBLASLt gets aligned operands and biases whatever L is (in
    // checkpoint order gamma_b's L elements would shift all later tensors). The gaps are zero and have zero
    // gradients; checkpoints are converted on the host (ckpt_to_gpu_layout, gpu_to_ckpt_layout), so their
    // format does not change.
    size_t num_parameters;                      // real parameters (checkpoint order, DESIGN.md section 4)
    size_t gpu_parameters;                      // length of the GPU layout, gaps included
    size_t padded_parameters;                   // gpu_parameters rounded up for the ZeRO shards
    size_t sizes[NUM_PARAMETER_TENSORS], ckpt_offsets[NUM_PARAMETER_TENSORS];
    size_t offsets[NUM_PARAMETER_TENSORS];      // GPU layout: where tensor t (its layer 0 slice) starts
    size_t layer_stride[NUM_PARAMETER_TENSORS]; // GPU layout: from layer l's slice of t to layer l+1's
    ParamRun *runs; int num_runs;               // the whole GPU layout, in address order
    float *master;                              // (padded) fp32 master weights, GPU layout
    floatX *params;                             // (padded) bf16 working copy
    float *grads;                               // (padded) fp32 gradients
    float *m, *v;                               // (shard) AdamW moments of this rank's shard
    ShardInfo shard;                            // the part of the flat vector this rank's optimizer owns
    // activations, allocated for B x T (a forward may use smaller B, T)
    int B, T, recompute;
    void *act_memory;
    LayerActs *layers;                          // (L)
    floatX *res;                                // (L+1, N, D) residual stream x_0 .. x_L
    floatX *lnf;                                // (N, D)
    float *lnf_mean, *lnf_rstd;                 // (N)
    floatX *logits;                             // (N, Vp), V columns used; overwritten by dlogits
    float *losses;                              // (N)
    int *tokens, *targets;                      // (N) device
    float2 *rope;                               // (T, hd/2) cos, sin
    BackwardBufs bw[2];                         // layer l uses bw[l % 2] (the same buffers without wgrad)
    EncoderBackward enc;
    // weight gradients beside the backward (model_backward_device): 0 off (all on main_stream), 1 on their own
    // stream, 2 that stream at a lower priority than main_stream's (SESSA_WGRAD; default 2)
    int wgrad;
    cudaStream_t wgrad_stream;                  // main_stream when wgrad is 0
    cudaEvent_t wg_fork, wg_out, wg_layer[2], wg_all;
    int wg_layer_pending[2];                    // wg_layer[p] recorded in this backward, not yet waited for
    // the backward adds its weight gradients into m->grads (1, the default) or writes them (0: the first micro-step
    // of an optimizer step, so that the step needs no zeroing of the gradients; model_train_micro_step)
    int grad_acc;
    // CUDA graphs of one training micro-step's forward + loss + backward (model_train_micro_step): [acc + 2 red] for
    // a micro-step that writes (acc 0) or adds (1) the gradients, and reduces them over the GPUs inside (red 1) or not
    int use_graph;                              // 1: capture once, replay every micro-step (-cg)
    MicroGraph graphs[4];
    // a step without host syncs (model_train_micro_step .. model_update): its scalars stay on the device
    StepStats *stats;                           // (2) [the training step's | model_losses_mean's]
    int *h_batch[2];                            // pinned (2 B T): [inputs | targets] of a micro-step, used in turn
    cudaEvent_t batch_uploaded[2];              // recorded after each h_batch's upload
    int batch_slot;
} Model;

// pointer to layer l of parameter tensor t in a flat buffer (GPU layout)
template <typename Tp>
static Tp *layer_ptr(Tp *base, const Model *m, int t, int l) {
    return base + m->offsets[t] + (size_t)l * m->layer_stride[t];
}

// ----------------------------------------------------------------------------
// setup

#define GPU_ALIGN 128
static size_t gpu_align(size_t n) { return (n + GPU_ALIGN - 1) / GPU_ALIGN * GPU_ALIGN; }

// the tensors stacked per layer into the projection of abar: [0] the weights, [1] the biases, in row order
static const int proj_kinds[2][4] = { { P_Q_W, P_K_W, P_V_W, P_FB_W }, { P_Q_B, P_K_B, P_V_B, P_FB_B } };

static void param_run_add(Model *m, size_t gpu, size_t ckpt, size_t n, int kind) {
    if (n > 0) m->runs[m->num_runs++] = (ParamRun){ gpu, ckpt, n, kind };
}

// checkpoint offsets, the GPU layout (offsets, layer_stride, runs; see Model) and the parameter counts
static void model_param_layout(Model *m) {
    int L = m->config.n_layer;
    size_t ck = 0, off = 0;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) { m->ckpt_offsets[t] = ck; ck += m->sizes[t]; }
    m->runs = (ParamRun *)mallocCheck((NUM_PARAMETER_TENSORS + 8 * (size_t)L) * sizeof(ParamRun));
    m->num_runs = 0;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) {
        int group = t == P_Q_W ? 0 : t == P_Q_B ? 1 : -1;
        bool stacked = false;
        for (int i = 0; i < 8; i++) stacked |= proj_kinds[i / 4][i % 4] == t;
        if (!stacked) {   // the whole tensor, its layers contiguous
            m->offsets[t] = off;
            m->layer_stride[t] = m->sizes[t] / L;
            param_run_add(m, off, m->ckpt_offsets[t], m->sizes[t], t);
            off += gpu_align(m->sizes[t]);
        } else if (group >= 0) {   // L blocks of np rows (of D weights, or of one bias), each block aligned
            const int *g = proj_kinds[group];
            size_t row0[4], block = 0;
            for (int i = 0; i < 4; i++) { row0[i] = block; block += m->sizes[g[i]] / L; }
            if (block != (size_t)m->np * (group == 0 ? m->config.d_model : 1))
                fatal("model layout: the stacked projection has %zu elements per layer, expected np = %d rows", block, m->np);
            block = gpu_align(block);
            for (int i = 0; i < 4; i++) { m->offsets[g[i]] = off + row0[i]; m->layer_stride[g[i]] = block; }
            for (int l = 0; l < L; l++)
                for (int i = 0; i < 4; i++) {
                    size_t n = m->sizes[g[i]] / L;
                    param_run_add(m, off + l * block + row0[i], m->ckpt_offsets[g[i]] + l * n, n, g[i]);
                }
            off += L * block;
        }   // the other stacked kinds were placed with W_q, b_q
    }
    m->num_parameters = ck;
    m->gpu_parameters = off;
}

// checkpoint order (num_parameters) -> GPU layout (gpu_parameters, gaps zero)
static void ckpt_to_gpu_layout(const Model *m, float *dst, const float *src) {
    memset(dst, 0, m->gpu_parameters * sizeof(float));
    for (int i = 0; i < m->num_runs; i++)
        memcpy(dst + m->runs[i].gpu, src + m->runs[i].ckpt, m->runs[i].n * sizeof(float));
}
// GPU layout -> checkpoint order
static void gpu_to_ckpt_layout(const Model *m, float *dst, const float *src) {
    for (int i = 0; i < m->num_runs; i++)
        memcpy(dst + m->runs[i].ckpt, src + m->runs[i].gpu, m->runs[i].n * sizeof(float));
}

static void model_build(Model *m, const SessaConfig *c, const float *h_params, const MultiGpuConfig *mg) {
    memset(m, 0, sizeof(*m));
    m->config = *c;
    m->hd = c->d_model / c->n_head;
    m->Dq = c->n_head * m->hd;
    m->Dkv = c->n_kv_head * m->hd;
    m->np = m->Dq + 2 * m->Dkv + (c->no_feedback ? 0 : 2 * c->d_model);
    sessa_param_sizes(c, m->sizes);
    model_param_layout(m);
    size_t gpu_off = m->gpu_parameters;
    m->padded_parameters = multi_gpu_padded_size(gpu_off, mg);
    m->shard = multi_gpu_get_shard_offset(gpu_off, mg, 1);
    size_t P = m->padded_parameters;
    cudaMallocCheck(&m->master, P * sizeof(float));
    cudaMallocCheck(&m->params, P * sizeof(floatX));
    cudaMallocCheck(&m->grads, P * sizeof(float));
    cudaMallocCheck(&m->m, m->shard.size * sizeof(float));
    cudaMallocCheck(&m->v, m->shard.size * sizeof(float));
    float *h = (float *)mallocCheck(gpu_off * sizeof(float));
    ckpt_to_gpu_layout(m, h, h_params);
    cudaCheck(cudaMemset(m->master, 0, P * sizeof(float)));
    cudaCheck(cudaMemcpy(m->master, h, gpu_off * sizeof(float), cudaMemcpyHostToDevice));
    free(h);
    float_to_bf16(m->params, m->master, P, main_stream);
    cudaCheck(cudaMemset(m->grads, 0, P * sizeof(float)));   // the layout's gaps stay zero: no backward writes them
    m->grad_acc = 1;
    cudaCheck(cudaMemset(m->m, 0, m->shard.size * sizeof(float)));
    cudaCheck(cudaMemset(m->v, 0, m->shard.size * sizeof(float)));
}

// Weight gradients beside the backward. A layer's backward is a chain on main_stream (dL/dinput of one op is the
// next op's input), much of it latency-bound (the feedback's superblock chain, small elementwise kernels), while
// its weight-gradient GEMMs dW += dout^T inp and the parameter sums (biases, LayerNorm, gamma) feed nothing later in
// the step. By default (SESSA_WGRAD=2; 1 the same without priorities; 0 all on main_stream) they run on their own
// stream, wgrad_stream, beside the chain, at a lower priority than main_stream's (created so in main_stream_create;
// graphs instantiated with node priorities), so that the chain's kernels get the SMs first when both have work:
//   - wgrad_fork before each: what main_stream has queued so far (dout, inp) happens first;
//   - they read dout from bw[l % 2] (dxn, dag, df, dproj, dr: layer l-1 writes the other set, so the stream may lag
//     by up to a layer) and inp from the layer's activations (xn, abar by layer parity with -r 1);
//   - main_stream waits for them (wgrad_wait) only where it would overwrite what they read: for Linear_out's, whose
//     dout is dres, before the layer's LayerNorm adds into dres (wg_out); for layer l's others before layer l-2
//     starts (wg_layer[l % 2]); for all of them before the backward ends (wgrad_join: the embedding's gradient, the
//     optimizer and the next forward come after).
// The GEMMs, their inputs and the order of the additions into each gradient are the same, so the gradients are the
// same bits as with SESSA_WGRAD=0 (everything on main_stream). Memory: the second set, dxn + dag + df + dproj
// (N (4D + np) bf16: 112 MiB at d12 B=8 T=1024) and dr, a column-sums scratch (+ xn, abar with -r 1). With several
// GPUs the per-layer gradient reduction waits for the layer's weight gradients first (model_backward_device). The
// priorities also put the feedback's side streams (llmc/feedback.cuh) below its chain on main_stream.
// Measured (H200, `AB="SESSA_WGRAD=0 - SESSA_WGRAD=2" scripts/gpu_session.sh build ab`, one call; the same losses and
// norms in all three, checked by the train stage): d12 B=8 T=1024 21.2 / 21.0 / 20.8 ms per step (0 / 1 / 2),
// d4w256h4 B=8 T=256 1.366M / 1.452M / 1.486M tok/s. The head's weight gradient (0.8 ms at d12) goes first on the
// stream; in 4 pieces of rows, one after each top layer (so that it would not hold up the Linear_out gradients the
// LayerNorms wait for) it measured slower: 21.5 ms (the pieces ran alone while main_stream waited, ~1.0 ms in the
// timeline: the GPU is ~93% busy in a d12 step, so overlap has little idle time to fill).
static int wgrad_mode(void) {
    const char *e = getenv("SESSA_WGRAD");
    int mode = e != NULL ? atoi(e) : 2;
    if (mode < 0 || mode > 2) fatal("SESSA_WGRAD=%s: expected 0 (off), 1 (own stream) or 2 (own stream, lower priority)", e);
    return mode;
}
// main_stream, at the highest priority with SESSA_WGRAD=2 (so that the weight-gradient stream's is lower)
static void main_stream_create(void) {
    int least, greatest;
    cudaCheck(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    cudaCheck(cudaStreamCreateWithPriority(&main_stream, cudaStreamDefault, wgrad_mode() == 2 ? greatest : least));
}
static void wgrad_init(Model *m) {
    m->wgrad = wgrad_mode();
    m->wgrad_stream = main_stream;
    if (!m->wgrad) return;
    int least, greatest;
    cudaCheck(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    cudaCheck(cudaStreamCreateWithPriority(&m->wgrad_stream, cudaStreamNonBlocking, least));
    matmul_stream_add(m->wgrad_stream);   // its own cuBLASLt workspace
    cudaEvent_t *ev[] = { &m->wg_fork, &m->wg_out, &m->wg_layer[0], &m->wg_layer[1], &m->wg_all };
    for (int i = 0; i < 5; i++) cudaCheck(cudaEventCreateWithFlags(ev[i], cudaEventDisableTiming));
}
static void wgrad_free(Model *m) {
    if (!m->wgrad) return;
    cudaEvent_t ev[] = { m->wg_fork, m->wg_out, m->wg_layer[0], m->wg_layer[1], m->wg_all };
    for (int i = 0; i < 5; i++) cudaCheck(cudaEventDestroy(ev[i]));
    matmul_stream_remove(m->wgrad_stream);
    cudaCheck(cudaStreamDestroy(m->wgrad_stream));
}
// the work queued on main_stream so far comes before what is queued next on wgrad_stream
static void wgrad_fork(Model *m) {
    if (!m->wgrad) return;
    cudaCheck(cudaEventRecord(m->wg_fork, main_stream));
    cudaCheck(cudaStreamWaitEvent(m->wgrad_stream, m->wg_fork, 0));
}
// ev marks the work queued on wgrad_stream so far
static void wgrad_mark(Model *m, cudaEvent_t ev) {
    if (m->wgrad) cudaCheck(cudaEventRecord(ev, m->wgrad_stream));
}
// what main_stream queues next waits for the work marked by ev
static void wgrad_wait(Model *m, cudaEvent_t ev) {
    if (m->wgrad) cudaCheck(cudaStreamWaitEvent(main_stream, ev, 0));
}
// main_stream waits for everything queued on wgrad_stream
static void wgrad_join(Model *m) {
    wgrad_mark(m, m->wg_all);
    wgrad_wait(m, m->wg_all);
}

// The feedback calls in parts (llmc/feedback.cuh, "Parts": FB_BEGIN / FB_CHAIN / FB_END): each direction's first
// side work (forward: superblock 0's logits and row pass; backward: its first slab) issued before the layer's work
// that comes ahead of the solve (RoPE and the attention; Linear_out's backward), and the backward's
// last tail (dgamma, dkb, dqb of the first superblock) joined only before the stacked projection's backward, which
// reads them, so that both run beside the layer's other kernels instead of with the main stream waiting for them.
// The same kernels with the same arguments on the same streams: the same bits (dev/test/test_fb_split.sh).
// With one superblock (T <= S) a call in parts keeps its side streams (fb_begin), so that the superblock's logits /
// slab and its backward tail run beside RoPE and the attention / Linear_out's and the attention's backward.
// SESSA_FB_SPLIT=0: the calls whole, as before.
// Measured (H200, d12, the ninth session's first A/B call, two rounds each, SESSA_FB_SPLIT = 0 / 1, the same losses
// and norms): B=8 T=1024 19.9 / 19.8 and 20.2 / 19.5 ms a step, B=2 T=4096 34.0 / 32.9 and 33.5 / 32.8, B=1 T=8192
// 51.2 / 50.1 and 51.3 / 50.8; d4w256h4 B=8 T=256 (one superblock, split then with all its work on the main stream)
// 1.576M / 1.552M and 1.567M / 1.548M tok/s, whole there until the eleventh session, whose A/B call (gpu11c) measured
// the parts with their side streams kept at one superblock: d4w256h4 1.713M and 1.722M tok/s against 1.647M and
// 1.656M whole (the d12 shapes have 4 or more superblocks: split either way).
static int feedback_split(const Model *m) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("SESSA_FB_SPLIT");
        on = e == NULL ? 1 : atoi(e);
        if (on != 0 && on != 1) fatal("SESSA_FB_SPLIT=%s: need 0 or 1", e);
    }
    return on && !m->config.no_feedback;
}

// carve every activation and backward buffer for B x T out of the arena
static void model_layout(Model *m, Arena *a) {
    const SessaConfig *c = &m->config;
    size_t B = m->B, T = m->T, N = B * T, D = c->d_model, L = c->n_layer, Vp = c->padded_vocab_size;
    size_t fb = c->no_feedback ? 0 : 1;   // the f0 baseline has no feedback buffers (s = f is still kept)
    m->res = (floatX *)arena_take(a, (L + 1) * N * D * sizeof(floatX));
    for (size_t l = 0; l < L; l++) {
        LayerActs *la = &m->layers[l];
        la->x = m->res + l * N * D;
        la->y = m->res + (l + 1) * N * D;
        la->ln_mean = (float *)arena_take(a, N * sizeof(float));
        la->ln_rstd = (float *)arena_take(a, N * sizeof(float));
        // -r 1: one xn and abar for all layers (two, by layer parity, when the weight-gradient stream may still
        // be reading the previous layer's)
        size_t shared = m->wgrad ? 2 : 1;
        bool own = !m->recompute || l < shared;
        la->xn = own ? (floatX *)arena_take(a, N * D * sizeof(floatX)) : m->layers[l % shared].xn;
        la->abar = own ? (floatX *)arena_take(a, N * D * sizeof(floatX)) : m->layers[l % shared].abar;
        la->ag = (floatX *)arena_take(a, N * 2 * D * sizeof(floatX));
        la->proj = (floatX *)arena_take(a, N * m->np * sizeof(floatX));
        la->q = la->proj; la->k = la->q + m->Dq; la->v = la->k + m->Dkv; la->qbkb = fb ? la->v + m->Dkv : NULL;
        la->att = (floatX *)arena_take(a, N * D * sizeof(floatX));
        la->att_lse = (float *)arena_take(a, B * c->n_head * T * sizeof(float));
        la->f = c->n_head > 1 ? (floatX *)arena_take(a, N * D * sizeof(floatX)) : la->att;
        la->gamma = (float *)arena_take(a, fb * N * sizeof(float));
        la->s = (float *)arena_take(a, N * D * sizeof(float));
        la->c = (float *)arena_take(a, fb * N * D * sizeof(float));
        la->fb_lse = (float *)arena_take(a, fb * N * sizeof(float));
        la->fb_keep.bytes = fb * feedback_keep_bytes((int)B, (int)T, (int)D);
        la->fb_keep.mem = la->fb_keep.bytes ? arena_take(a, la->fb_keep.bytes) : NULL;
        la->gated = (floatX *)arena_take(a, N * D * sizeof(floatX));
    }
    m->lnf = (floatX *)arena_take(a, N * D * sizeof(floatX));
    m->lnf_mean = (float *)arena_take(a, N * sizeof(float));
    m->lnf_rstd = (float *)arena_take(a, N * sizeof(float));
    m->logits = (floatX *)arena_take(a, N * Vp * sizeof(floatX));
    m->losses = (float *)arena_take(a, N * sizeof(float));
    m->tokens = (int *)arena_take(a, N * sizeof(int));
    m->targets = (int *)arena_take(a, N * sizeof(int));
    BackwardBufs *g = &m->bw[0];
    g->dres = (floatX *)arena_take(a, N * D * sizeof(floatX));
    g->dxn = (floatX *)arena_take(a, N * D * sizeof(floatX));
    g->dag = (floatX *)arena_take(a, N * 2 * D * sizeof(floatX));
    g->dgated = (floatX *)arena_take(a, N * D * sizeof(floatX));
    g->df = (floatX *)arena_take(a, N * D * sizeof(floatX));
    g->datt = (floatX *)arena_take(a, N * D * sizeof(floatX));
    g->dproj = (floatX *)arena_take(a, N * m->np * sizeof(floatX));
    g->dq = g->dproj; g->dk = g->dq + m->Dq; g->dv = g->dk + m->Dkv; g->dqbkb = fb ? g->dv + m->Dkv : NULL;
    g->gs = (float *)arena_take(a, (1 - fb) * N * D * sizeof(float));   // f0 only: the feedback forms gs in its solve
    g->dgamma = (float *)arena_take(a, fb * N * sizeof(float));
    g->dr = (float *)arena_take(a, fb * N * sizeof(float));
    g->colsum = (float2 *)arena_take(a, column_sums_scratch_bytes((int)N, m->np));   // np >= 2D: the widest bias
    g->colsum_wg = g->colsum;
    g->fb_scratch = (float *)arena_take(a, fb * feedback_scratch_bytes((int)B, (int)T, (int)D));
    g->att_scratch = (float *)arena_take(a, attention_backward_scratch_bytes((int)B, (int)T, c->n_head, c->n_kv_head, m->hd));
    g->norm_scratch = (float *)arena_take(a, global_norm_scratch_bytes());
    // the second set: what the weight-gradient stream reads gets its own copy (m->bw[1]), the rest is shared
    BackwardBufs *g1 = &m->bw[1];
    *g1 = *g;
    if (m->wgrad) {
        g->colsum_wg = g1->colsum_wg = (float2 *)arena_take(a, column_sums_scratch_bytes((int)N, m->np));
        g1->dxn = (floatX *)arena_take(a, N * D * sizeof(floatX));
        g1->dr = (float *)arena_take(a, fb * N * sizeof(float));
        g1->dag = (floatX *)arena_take(a, N * 2 * D * sizeof(floatX));
        g1->df = (floatX *)arena_take(a, N * D * sizeof(floatX));
        g1->dproj = (floatX *)arena_take(a, N * m->np * sizeof(floatX));
        g1->dq = g1->dproj; g1->dk = g1->dq + m->Dq; g1->dv = g1->dk + m->Dkv; g1->dqbkb = fb ? g1->dv + m->Dkv : NULL;
    }
    m->stats = (StepStats *)arena_take(a, 2 * sizeof(StepStats));
}

static void model_alloc_activations(Model *m, int B, int T, int recompute) {
    attention_check_shape(B, T, m->config.n_head, m->config.n_kv_head, m->hd);   // fail now, not mid-forward
    attention_setup();   // picks the forward kernel (a probe and a self-test on the GPU): before any graph capture
    m->B = B; m->T = T; m->recompute = recompute;
    wgrad_init(m);
    m->layers = (LayerActs *)callocCheck(m->config.n_layer, sizeof(LayerActs));
    Arena sizing = { NULL, 0 };
    model_layout(m, &sizing);
    cudaMallocCheck(&m->act_memory, sizing.off);
    Arena real = { (char *)m->act_memory, 0 };
    model_layout(m, &real);
    m->rope = rope_table_create(T, m->hd);
    encoder_backward_init(&m->enc, m->config.vocab_size, B * T);
    for (int i = 0; i < 2; i++) {
        cudaCheck(cudaMallocHost((void **)&m->h_batch[i], 2 * (size_t)B * T * sizeof(int)));
        cudaCheck(cudaEventCreateWithFlags(&m->batch_uploaded[i], cudaEventDisableTiming));
    }
    m->batch_slot = 0;
    printf("activations and scratch: %.2f GiB for B=%d T=%d (recompute %d)\n",
           (double)sizing.off / (1 << 30), B, T, recompute);
}

static void model_free(Model *m) {
    for (int i = 0; i < 4; i++)
        if (m->graphs[i].exec != NULL) cudaCheck(cudaGraphExecDestroy(m->graphs[i].exec));
    cudaCheck(cudaFree(m->master)); cudaCheck(cudaFree(m->params)); cudaCheck(cudaFree(m->grads));
    cudaCheck(cudaFree(m->m)); cudaCheck(cudaFree(m->v));
    cudaCheck(cudaFree(m->act_memory)); cudaCheck(cudaFree(m->rope));
    encoder_backward_free(&m->enc);
    for (int i = 0; i < 2; i++) {
        cudaCheck(cudaFreeHost(m->h_batch[i]));
        cudaCheck(cudaEventDestroy(m->batch_uploaded[i]));
    }
    free(m->layers); free(m->runs);
    wgrad_free(m);
}

// ----------------------------------------------------------------------------
// forward

static void layer_forward(Model *m, int l, int B, int T) {
    const SessaConfig *c = &m->config;
    const LayerActs *a = &m->layers[l];
    int N = B * T, D = c->d_model, H = c->n_head, Hkv = c->n_kv_head, hd = m->hd;
    cudaStream_t st = main_stream;
    #define PW(t) layer_ptr(m->params, m, t, l)
    // xn = LayerNorm(x); [a | gt] = Linear_in(xn); abar = GELU(a) and, with the feedback, in the same pass its gain
    // gamma = gamma_max tanh(gamma_b + abar.w_gamma) (llmc/gamma.cuh gelu_gamma_forward)
    layernorm_forward(a->xn, a->ln_mean, a->ln_rstd, a->x, PW(P_LN_W), PW(P_LN_B), N, D, c->ln_eps, st);
    matmul_forward(a->ag, 2 * D, a->xn, PW(P_IN_W), PW(P_IN_B), NULL, N, D, 2 * D, st);
    if (c->no_feedback) gelu_forward(a->abar, a->ag, 2 * D, N, D, st);
    else gelu_gamma_forward(a->abar, a->gamma, a->ag, 2 * D, PW(P_GAMMA_W), PW(P_GAMMA_B), N, D, c->gamma_max, st);
    // [q | k | v | qb | kb] = abar [W_q; W_k; W_v; W_fb]^T + biases: one GEMM (the weights stacked per layer)
    int np = m->np;
    matmul_forward(a->proj, np, a->abar, PW(P_Q_W), PW(P_Q_B), NULL, N, D, np, st);
    int split = feedback_split(m);
    // with split, the feedback solve's first side work (it needs qb, kb and gamma) beside RoPE and the attention
    if (split) feedback_forward(a->s, a->c, a->fb_lse, a->f, a->qbkb, a->qbkb + D, np, a->gamma, B, T, D,
                                m->bw[0].fb_scratch, st, FB_BEGIN, NULL, &a->fb_keep);
    if (c->use_rope) {
        rope_forward(a->q, np, H, a->k, np, Hkv, m->rope, N, T, hd, st);
    }
    // forward branch: f = softmax(q k^T / sqrt(hd) + causal) v, then Linear_o when H > 1
    attention_forward(a->att, a->att_lse, a->q, a->k, a->v, B, T, H, Hkv, hd, st, np, np);
    if (H > 1) matmul_forward(a->f, D, a->att, PW(P_O_W), NULL, NULL, N, D, D, st);
    // gated = s * gt
    if (!c->no_feedback) {
        // feedback branch: solve s = f + gamma alpha s, and the gate superblock by superblock beside the solve
        FbGate gate = {a->gated, a->ag + D, 2 * D};
        feedback_forward(a->s, a->c, a->fb_lse, a->f, a->qbkb, a->qbkb + D, np, a->gamma, B, T, D,
                         m->bw[0].fb_scratch, st, split ? FB_CHAIN | FB_END : FB_ALL, &gate, &a->fb_keep);
    } else {
        bf16_to_float(a->s, a->f, (size_t)N * D, st);   // the feedback-off baseline f0: s = f
        gate_forward(a->gated, a->s, a->ag + D, 2 * D, N, D, st);
    }
    // y = x + Linear_out(gated)
    matmul_forward(a->y, D, a->gated, PW(P_OUT_W), PW(P_OUT_B), a->x, N, D, D, st);
    #undef PW
}

// logits for the B x T tokens already in m->tokens (device work only: no host sync, no copies)
static void model_forward_device(Model *m, int B, int T) {
    const SessaConfig *c = &m->config;
    int N = B * T, D = c->d_model;
    encoder_forward(m->res, m->tokens, m->params + m->offsets[P_WTE], N, D, main_stream);
    for (int l = 0; l < c->n_layer; l++) layer_forward(m, l, B, T);
    layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, m->layers[c->n_layer - 1].y,
                      m->params + m->offsets[P_LNF_W], m->params + m->offsets[P_LNF_B], N, D, c->ln_eps, main_stream);
    // tied head over all Vp rows of wte (llm.c's way): with V = 50257 the GEMM's dimension would not be a
    // multiple of 8 and cuBLASLt falls back to align1 sm75/sm80 kernels. Columns V..Vp-1 of the logits are
    // never read as classes; the classifier zeroes them in dlogits, so padded rows get zero gradients.
    matmul_forward(m->logits, c->padded_vocab_size, m->lnf, m->params + m->offsets[P_WTE], NULL, NULL,
                   N, D, c->padded_vocab_size, main_stream);
}

static void check_forward_shape(const Model *m, int B, int T) {
    if (B > m->B || T > m->T) fatal("forward of B=%d T=%d, but activations were made for B=%d T=%d", B, T, m->B, m->T);
}

// logits for B x T host tokens (B, T at most the allocated sizes)
static void model_forward(Model *m, const int *h_tokens, int B, int T) {
    check_forward_shape(m, B, T);
    cudaCheck(cudaMemcpyAsync(m->tokens, h_tokens, B * T * sizeof(int), cudaMemcpyHostToDevice, main_stream));
    model_forward_device(m, B, T);
}

// losses of the N rows (device) against m->targets; with dloss != 0 the logits become dlogits
static void model_loss_device(Model *m, int N, float dloss) {
    fused_classifier(m->logits, m->losses, m->targets, N, m->config.vocab_size, m->config.padded_vocab_size,
                     dloss, main_stream);
}

// mean of the N device losses (waits for the stream): the same kernel as a training micro-step's, so the
// same bits
static float model_losses_mean(Model *m, int N) {
    double mean;
    loss_mean(m->stats + 1, m->losses, N, 0, main_stream);
    cudaCheck(cudaMemcpyAsync(&mean, &m->stats[1].loss_sum, sizeof(double), cudaMemcpyDeviceToHost, main_stream));
    cudaCheck(cudaStreamSynchronize(main_stream));
    return (float)mean;
}

// mean cross-entropy of the last forward against host targets; with dloss != 0 the logits become
// dloss * dL/dlogits for the backward (dloss = 1 / (B*T*grad_accum_steps) for a mean loss)
static float model_loss(Model *m, const int *h_targets, int B, int T, float dloss) {
    int N = B * T;
    cudaCheck(cudaMemcpyAsync(m->targets, h_targets, N * sizeof(int), cudaMemcpyHostToDevice, main_stream));
    model_loss_device(m, N, dloss);
    return model_losses_mean(m, N);
}

// ----------------------------------------------------------------------------
// backward: on entry bw.dres = dL/dy of layer l, on exit dL/dx; gradients accumulate (+=) into m->grads

static void layer_backward(Model *m, int l, int B, int T) {
    const SessaConfig *c = &m->config;
    const LayerActs *a = &m->layers[l];
    const BackwardBufs *g = &m->bw[l % 2];
    int N = B * T, D = c->d_model, H = c->n_head, Hkv = c->n_kv_head, hd = m->hd;
    cudaStream_t st = main_stream, wst = m->wgrad_stream;   // the chain; the weight gradients (wgrad_fork first)
    if (m->wg_layer_pending[l % 2]) {   // layer l+2's weight gradients still read this layer's buffer set
        wgrad_wait(m, m->wg_layer[l % 2]);
        m->wg_layer_pending[l % 2] = 0;
    }
    #define PW(t) layer_ptr(m->params, m, t, l)
    #define GW(t) layer_ptr(m->grads, m, t, l)
    if (m->recompute) {   // xn and abar are shared by all layers: rebuild this layer's
        layernorm_forward(a->xn, NULL, NULL, a->x, PW(P_LN_W), PW(P_LN_B), N, D, c->ln_eps, st);
        gelu_forward(a->abar, a->ag, 2 * D, N, D, st);
    }
    int np = m->np, split = feedback_split(m);
    // with the feedback the gate's backward is folded into the solve (gs = dgated * gt formed where the solve reads
    // it, dgt = dgated * s written by its row pass: llmc/feedback.cuh FbGateBwd)
    FbGateBwd gate = {g->dgated, a->ag + D, g->dag + D, 2 * D};
    // with split, the feedback solve's first side work (its first slab: forward values only) beside Linear_out's
    // backward
    if (split) feedback_backward(g->df, g->dgamma, g->dqbkb, g->dqbkb + D, np, NULL, a->s, a->c, a->fb_lse, a->qbkb,
                                 a->qbkb + D, a->gamma, B, T, D, g->fb_scratch, st, FB_BEGIN, &gate, &a->fb_keep);
    // y = x + Linear_out(gated): dx = dy (dres stays), dgated, dout_w, dout_b
    wgrad_fork(m);
    matmul_backward_weight(GW(P_OUT_W), GW(P_OUT_B), g->dres, D, a->gated, N, D, D, g->colsum_wg, wst, m->grad_acc);
    wgrad_mark(m, m->wg_out);
    matmul_backward_input(g->dgated, g->dres, D, PW(P_OUT_W), N, D, D, false, st);
    floatX *dabar = g->dxn;   // g->dxn holds dabar until GELU's backward
    if (!c->no_feedback) {
        // gated = s * gt, and the feedback solve: u = dL/df, dgamma, and dqb, dkb into their columns of dproj, dgt into
        // the gate half of dag (with split, the last superblock's dgamma, dgt, dqb, dkb beside Linear_o's and the
        // attention's backward: FB_END below)
        feedback_backward(g->df, g->dgamma, g->dqbkb, g->dqbkb + D, np, NULL, a->s, a->c, a->fb_lse,
                          a->qbkb, a->qbkb + D, a->gamma, B, T, D, g->fb_scratch, st, split ? FB_CHAIN : FB_ALL, &gate,
                          &a->fb_keep);
    } else {
        // gated = s * gt; the feedback-off baseline f0 (s = f): dL/df = dL/ds
        gate_backward(g->gs, g->dag + D, g->dgated, a->s, a->ag + D, 2 * D, N, D, st);
        float_to_bf16(g->df, g->gs, (size_t)N * D, st);
    }
    // f = att Wo^T (H > 1)
    const floatX *datt = g->df;
    if (H > 1) {
        wgrad_fork(m);
        matmul_backward_weight(GW(P_O_W), NULL, g->df, D, a->att, N, D, D, g->colsum_wg, wst, m->grad_acc);
        matmul_backward_input(g->datt, g->df, D, PW(P_O_W), N, D, D, false, st);
        datt = g->datt;
    }
    // causal attention (dq, dk, dv into their columns of dproj) with RoPE's backward on dq, dk (fused into the
    // Hopper kernels' stores; rope_backward after the mma.sync kernels: llmc/attention.cuh). SESSA_ROPE_FUSED=0:
    // rope_backward as a pass of its own after it, as before (to compare; on Hopper other last bits: two roundings)
    static int rope_fused = -1;
    if (rope_fused < 0) {
        const char *e = getenv("SESSA_ROPE_FUSED");
        rope_fused = !(e && strcmp(e, "0") == 0);
    }
    attention_backward(g->dq, g->dk, g->dv, datt, a->att, a->att_lse, a->q, a->k, a->v, g->att_scratch,
                       B, T, H, Hkv, hd, st, np, np, c->use_rope && rope_fused ? m->rope : NULL);
    if (c->use_rope && !rope_fused) rope_backward(g->dq, np, H, g->dk, np, Hkv, m->rope, N, T, hd, st);
    if (split) feedback_backward(g->df, g->dgamma, g->dqbkb, g->dqbkb + D, np, NULL, a->s, a->c, a->fb_lse, a->qbkb,
                                 a->qbkb + D, a->gamma, B, T, D, g->fb_scratch, st, FB_END, &gate, &a->fb_keep);
    // [q | k | v | qb | kb] = abar [W_q; W_k; W_v; W_fb]^T + biases: dabar (its first contribution) and the
    // stacked weights' and biases' gradients, one GEMM each
    wgrad_fork(m);
    matmul_backward_weight(GW(P_Q_W), GW(P_Q_B), g->dproj, np, a->abar, N, D, np, g->colsum_wg, wst, m->grad_acc);
    matmul_backward_input(dabar, g->dproj, np, PW(P_Q_W), N, D, np, false, st);
    // abar = GELU(a): da into the first half of dag (its second half holds dgt); with the feedback, in the same pass
    // gamma = gamma_max tanh(gamma_b + abar.w_gamma) first: dabar += dr w_gamma (dr for the parameters' sums)
    if (c->no_feedback) {
        gelu_backward(g->dag, 2 * D, dabar, a->ag, 2 * D, N, D, st);
    } else {
        gamma_gelu_backward(g->dag, 2 * D, g->dr, dabar, g->dgamma, a->gamma, PW(P_GAMMA_W), a->ag, 2 * D, N, D,
                            c->gamma_max, st);
        wgrad_fork(m);
        gamma_backward_params(GW(P_GAMMA_W), GW(P_GAMMA_B), g->dr, a->abar, N, D, g->colsum_wg, wst, m->grad_acc);
    }
    // [a | gt] = Linear_in(xn)
    floatX *dxn = g->dxn;   // dabar is consumed: the buffer now holds dxn
    wgrad_fork(m);
    matmul_backward_weight(GW(P_IN_W), GW(P_IN_B), g->dag, 2 * D, a->xn, N, D, 2 * D, g->colsum_wg, wst, m->grad_acc);
    matmul_backward_input(dxn, g->dag, 2 * D, PW(P_IN_W), N, D, 2 * D, false, st);
    // xn = LayerNorm(x): the weight's and bias's sums beside the chain (they read dxn), then dx += ... into dres,
    // once Linear_out's weight gradient has read it
    wgrad_fork(m);
    layernorm_backward_params(GW(P_LN_W), GW(P_LN_B), dxn, a->x, a->ln_mean, a->ln_rstd, N, D, g->colsum_wg, wst,
                              m->grad_acc);
    wgrad_mark(m, m->wg_layer[l % 2]);
    m->wg_layer_pending[l % 2] = 1;
    wgrad_wait(m, m->wg_out);
    layernorm_backward_input(g->dres, dxn, a->x, a->ln_mean, a->ln_rstd, PW(P_LN_W), N, D, st);
    #undef PW
    #undef GW
}

// Gradient reduction overlapped with the backward (llm.c's shape). The tensors of `kinds` are final in
// m->grads once the work queued so far on main_stream is done: layer l's slice of each (l >= 0: n separate
// ranges, found by layer_ptr; the stacked projection's four are adjacent), or the whole tensors (l < 0).
// They are all-reduced (ZeRO 0) or reduced onto their owners (ZeRO 1) on the NCCL stream while the
// backward goes on (llmc/zero.cuh). Every rank issues the same ranges in the same order, every step.
// The gaps between tensors of the GPU layout hold zero gradients on every rank and are left out.
// mg NULL: nothing to reduce (not the last micro-step).
static const int layer_tensor_kinds[] = { P_LN_W, P_LN_B, P_IN_W, P_IN_B, P_Q_W, P_Q_B, P_K_W, P_K_B, P_V_W, P_V_B,
                                          P_FB_W, P_FB_B, P_O_W, P_GAMMA_W, P_GAMMA_B, P_OUT_W, P_OUT_B };
#define NUM_LAYER_KINDS ((int)(sizeof(layer_tensor_kinds) / sizeof(layer_tensor_kinds[0])))
static_assert(NUM_LAYER_KINDS + 3 == NUM_PARAMETER_TENSORS, "every tensor kind but wte, lnf_w, lnf_b is per layer");
static void reduce_gradients(Model *m, const int *kinds, int n, int l, MultiGpuConfig *mg) {
    if (mg == NULL) return;
    size_t begins[NUM_PARAMETER_TENSORS], counts[NUM_PARAMETER_TENSORS];
    for (int i = 0; i < n; i++) {
        int t = kinds[i];
        begins[i] = l < 0 ? m->offsets[t] : (size_t)(layer_ptr(m->grads, m, t, l) - m->grads);
        counts[i] = l < 0 ? m->sizes[t] : m->sizes[t] / m->config.n_layer;   // o_w: 0 when H == 1, skipped
    }
    multi_gpu_reduce_gradient_ranges(m->grads, m->gpu_parameters, begins, counts, n, mg, main_stream);
}

// after model_loss(..., dloss != 0) on the same batch: grads += dL/dparams.
// reduce: the communicator on the last micro-step of an optimizer step (NULL on the others, and in the
// tests): each gradient is then reduced over the GPUs as soon as it is final, i.e. lnf after its LayerNorm,
// layer l during the backward of layers l-1 .. 0, wte (head + embedding) at the end. The caller waits for
// them with multi_gpu_wait_gradients before reading the gradients. The result is the one of a single
// reduction after the backward: the same NCCL sum of the same W values per element (NCCL may add them in
// another order for another message size, so for W > 2 the last bit can differ from a whole-buffer
// reduction); run to run it is deterministic: fixed ranges in a fixed order, and NCCL picks its algorithm by
// size, without atomics. World size 1: multi_gpu_reduce_gradient_ranges returns at once, no sync.
// everything but the embedding's gradient: device work only (no host sync, no copies)
static void model_backward_device(Model *m, int B, int T, MultiGpuConfig *reduce) {
    const SessaConfig *c = &m->config;
    const BackwardBufs *g = &m->bw[0];
    int N = B * T, D = c->d_model, Vp = c->padded_vocab_size;
    const floatX *wte = m->params + m->offsets[P_WTE];
    m->wg_layer_pending[0] = m->wg_layer_pending[1] = 0;
    // logits = lnf wte^T over all Vp rows (m->logits now holds dlogits, zero in the padded columns)
    wgrad_fork(m);
    matmul_backward_weight(m->grads + m->offsets[P_WTE], NULL, m->logits, Vp, m->lnf, N, D, Vp, g->colsum_wg, m->wgrad_stream,
                           m->grad_acc);   // wte's first term (the embedding's is added at the end)
    matmul_backward_input(g->dxn, m->logits, Vp, wte, N, D, Vp, false, main_stream);
    // lnf = LayerNorm_f(x_L)
    layernorm_backward(g->dres, m->grads + m->offsets[P_LNF_W], m->grads + m->offsets[P_LNF_B], g->dxn,
                       m->layers[c->n_layer - 1].y, m->lnf_mean, m->lnf_rstd,
                       m->params + m->offsets[P_LNF_W], N, D, g->colsum, main_stream, m->grad_acc, 0);   // dres =
    const int lnf_kinds[] = { P_LNF_W, P_LNF_B };
    reduce_gradients(m, lnf_kinds, 2, -1, reduce);
    for (int l = c->n_layer - 1; l >= 0; l--) {
        layer_backward(m, l, B, T);
        // the layer's weight gradients (on wgrad_stream up to wg_layer[l % 2]) are final before the NCCL stream
        // reduces them; main_stream goes on with layer l - 1 without waiting for them
        if (m->wgrad && reduce != NULL && reduce->num_processes > 1)
            cudaCheck(cudaStreamWaitEvent(reduce->nccl_stream, m->wg_layer[l % 2], 0));
        reduce_gradients(m, layer_tensor_kinds, NUM_LAYER_KINDS, l, reduce);
    }
    wgrad_join(m);
    // main_stream waits for the layers' reductions here (a captured graph must end on main_stream with every stream
    // it forked joined); they end soon after the backward, and the embedding's gradient (wte) is reduced after it
    if (reduce != NULL) multi_gpu_wait_gradients(reduce, main_stream);
}

// x0 = wte[tokens]: the host sorts this batch's tokens (the plan changes every batch, so this part stays
// out of the CUDA graph), then wte's gradient is final and reduced
static void model_backward_embedding(Model *m, const int *h_tokens, int B, int T, MultiGpuConfig *reduce) {
    int N = B * T, D = m->config.d_model;
    const BackwardBufs *g = &m->bw[0];
    const int wte_kind[] = { P_WTE };
    encoder_backward_plan(&m->enc, h_tokens, N, main_stream);
    encoder_backward(m->grads + m->offsets[P_WTE], g->dres, &m->enc, D, main_stream);
    reduce_gradients(m, wte_kind, 1, -1, reduce);
}

[[maybe_unused]] static void model_backward(Model *m, const int *h_tokens, int B, int T, MultiGpuConfig *reduce = NULL) {
    model_backward_device(m, B, T, reduce);
    model_backward_embedding(m, h_tokens, B, T, reduce);
}

// One training micro-step: tokens and targets up, forward, loss with dlogits = dloss * dL/dlogits, backward
// (grads += with accumulate, else grads = : the first micro-step of a step writes every gradient, so nothing zeroes
// them before; the layout's gaps are never written and stay zero); the batch's mean loss goes into
// m->stats->loss_sum (added with accumulate, else replacing it).
// Nothing here waits for the GPU: the batch is copied into a pinned buffer (two used in turn: the host waits
// only for the upload of two micro-steps ago) and uploaded asynchronously, so the host can read and plan the
// next batch while the GPU runs this one. With m->use_graph the device part (forward, classifier,
// backward up to the embedding) is captured into a CUDA graph on first use (one each for accumulate 0 and 1; again if
// B, T or dloss change) and replayed: one launch instead of hundreds, the same kernels with the same arguments in the same
// order, so the results are bitwise those of the ungraphed path (test_sessacu checks it). On several GPUs the
// last micro-step's graph holds the layers' gradient reductions too (NCCL kernels captured on the NCCL stream,
// which rejoins main_stream at the backward's end: model_backward_device); where stream capture is not supported
// the step runs ungraphed and says so once.
static void model_train_micro_step(Model *m, const int *h_inputs, const int *h_targets, int B, int T, float dloss,
                                   int accumulate, MultiGpuConfig *reduce) {
    check_forward_shape(m, B, T);
    int N = B * T;
    int slot = m->batch_slot ^= 1, *hb = m->h_batch[slot];
    cudaCheck(cudaEventSynchronize(m->batch_uploaded[slot]));
    memcpy(hb, h_inputs, N * sizeof(int));
    memcpy(hb + N, h_targets, N * sizeof(int));
    cudaCheck(cudaMemcpyAsync(m->tokens, hb, N * sizeof(int), cudaMemcpyHostToDevice, main_stream));
    cudaCheck(cudaMemcpyAsync(m->targets, hb + N, N * sizeof(int), cudaMemcpyHostToDevice, main_stream));
    cudaCheck(cudaEventRecord(m->batch_uploaded[slot], main_stream));
    m->grad_acc = accumulate != 0;
    MicroGraph *gr = &m->graphs[m->grad_acc + 2 * (reduce != NULL && reduce->num_processes > 1)];
    if (m->use_graph && gr->exec != NULL && (gr->B != B || gr->T != T || gr->dloss != dloss)) {
        cudaCheck(cudaGraphExecDestroy(gr->exec));
        gr->exec = NULL;
    }
    if (m->use_graph && gr->exec == NULL) {
        cudaError_t err = cudaStreamBeginCapture(main_stream, cudaStreamCaptureModeRelaxed);
        if (err == cudaSuccess) {
            model_forward_device(m, B, T);
            model_loss_device(m, N, dloss);
            model_backward_device(m, B, T, reduce);
            cudaGraph_t graph;
            cudaCheck(cudaStreamEndCapture(main_stream, &graph));
            // with SESSA_WGRAD=2 the kernels keep their streams' priorities (the chain's above the weight gradients')
            cudaCheck(cudaGraphInstantiate(&gr->exec, graph, m->wgrad == 2 ? cudaGraphInstantiateFlagUseNodePriority : 0));
            cudaCheck(cudaGraphDestroy(graph));
            gr->B = B; gr->T = T; gr->dloss = dloss;
        } else {
            (void)cudaGetLastError();
            printf("CUDA graphs unavailable (stream capture: %s): micro-steps run ungraphed\n", cudaGetErrorString(err));
            m->use_graph = 0;
        }
    }
    if (m->use_graph) {
        cudaCheck(cudaGraphLaunch(gr->exec, main_stream));
    } else {
        model_forward_device(m, B, T);
        model_loss_device(m, N, dloss);
        model_backward_device(m, B, T, reduce);
    }
    m->grad_acc = 1;
    model_backward_embedding(m, h_inputs, B, T, reduce);   // adds wte's second term
    loss_mean(m->stats, m->losses, N, accumulate, main_stream);
}

// ----------------------------------------------------------------------------
// optimizer

// the global gradient norm (all ranks) and its clip scale (clip <= 0: 1) into m->stats, on the device;
// gradients already reduced. ZeRO 1 on several GPUs sums the shards' norm^2 over the ranks on the device.
static void model_grad_norm(Model *m, float clip, MultiGpuConfig *mg) {
    StepStats *s = m->stats;
    global_norm_squared(&s->norm2, m->grads + m->shard.offset, m->shard.valid, m->bw[0].norm_scratch, main_stream);
    if (mg->zero_stage == 1) multi_gpu_sum_device(&s->norm2, 1, mg, main_stream, 1);
    grad_clip(s, clip, main_stream);
}

// extend the segment list of the shard starting at s0 up to element end (absolute) with decay wd
static void segments_add(AdamWSegments *seg, size_t *pos, size_t s0, size_t s1, size_t end, float wd) {
    if (end > s1) end = s1;
    if (end <= *pos) return;
    if (seg->n > 0 && seg->wd[seg->n - 1] == wd) {
        seg->begin[seg->n] = end - s0;   // same decay: the last segment grows
    } else {
        if (seg->n == ADAMW_MAX_SEGMENTS) fatal("model_update: more than %d AdamW segments", ADAMW_MAX_SEGMENTS);
        seg->wd[seg->n] = wd;
        seg->n++;
        seg->begin[seg->n] = end - s0;
    }
    *pos = end;
}

// AdamW on this rank's shard in one launch: the shard is cut into segments of equal weight decay (llmc/sessa.h's
// sessa_param_decays, or every tensor with decay_all, by the GPU layout's runs: a zero gap takes the decay of the
// run after it, and stays zero: zero weight, gradient and moments), then all ranks get
// the weights. step t >= 1; the gradient clip scale is read on the device from m->stats (model_grad_norm
// runs first); the same arguments in the same order as train_sessa.c's model_update.
static void model_update(Model *m, float lr, float beta1, float beta2, float eps, float wd, int step, int decay_all,
                         MultiGpuConfig *mg) {
    size_t s0 = m->shard.offset, s1 = m->shard.offset + m->shard.valid, pos = s0;
    AdamWSegments seg;
    seg.n = 0; seg.begin[0] = 0;
    for (int i = 0; i < m->num_runs; i++) {   // each run with the zero gap before it (zeros stay zero either way)
        const ParamRun *r = &m->runs[i];
        segments_add(&seg, &pos, s0, s1, r->gpu + r->n, decay_all || sessa_param_decays(r->kind) ? wd : 0.0f);
    }
    segments_add(&seg, &pos, s0, s1, s1, 0.0f);
    if (seg.n > 0)
        adamw_update_segments(m->master + s0, m->params + s0, m->grads + s0, m->m, m->v, &seg, lr, beta1, beta2, eps,
                              &m->stats->scale, step, main_stream);
    multi_gpu_gather_params(m->params, m->gpu_parameters, mg, main_stream);
}

// ----------------------------------------------------------------------------
// checkpoints (rank 0 writes; every rank takes part in gathering the shards)

static void save_checkpoint(Model *m, const char *dir, int step, DataLoader *loader, const Rng *rng,
                            const MultiGpuConfig *mg, FILE *logf, int keep) {
    size_t n = m->num_parameters, ng = m->gpu_parameters;
    int rank0 = mg->process_rank == 0;
    float *hg[3] = { NULL, NULL, NULL }, *h[3] = { NULL, NULL, NULL };  // master, m, v: GPU layout, checkpoint order
    const float *parts[3] = { m->master + m->shard.offset, m->m, m->v };
    cudaCheck(cudaStreamSynchronize(main_stream));
    for (int i = 0; i < 3; i++) {
        if (rank0) { hg[i] = (float *)mallocCheck(ng * sizeof(float)); h[i] = (float *)mallocCheck(n * sizeof(float)); }
        multi_gpu_gather_to_host(parts[i], ng, hg[i], mg);
        if (rank0) gpu_to_ckpt_layout(m, h[i], hg[i]);
    }
    if (rank0) {
        char model_path[4096], state_path[4096], done_path[4096];
        train_state_paths(model_path, state_path, done_path, sizeof(model_path), dir, step);
        DataLoaderState ls;
        dataloader_get_state(loader, &ls);
        sessa_checkpoint_write(model_path, &m->config, h[0], 1);
        train_state_write(state_path, step, n, h[1], h[2], &ls, sizeof(ls), rng->s, run_dir_log_bytes(logf));
        train_state_mark_done(done_path);
        printf("saved checkpoint %s\n", model_path);
        train_state_prune(dir, keep);
    }
    for (int i = 0; i < 3; i++) { free(hg[i]); free(h[i]); }
    multi_gpu_barrier(mg);
}

// ----------------------------------------------------------------------------
// recurrent decoding (DESIGN.md section 1; kernels in llmc/decode.cuh): per layer caches of k (after RoPE), v,
// kb (bf16) and s (fp32, as the trainer keeps it) for B sequences of Tc rows; the current token is one row per
// sequence through the same Linears (cuBLASLt with N = B), LayerNorm, GELU, gamma and gate kernels as training.

typedef struct {
    int B, Tc;                       // sequences, cache rows per sequence
    floatX **kc, **vc, **kbc;        // (L) caches (B, Tc, Hkv*hd), (B, Tc, Hkv*hd), (B, Tc, D)
    float **sc;                      // (L) cache (B, Tc, D)
    size_t cache_bytes;              // of all the caches together
    // the current token of each sequence: one row per sequence
    floatX *x, *y;                   // (B, D) residual stream in, out of a layer (swapped after each layer)
    floatX *xn, *abar, *att, *f, *gated, *lnf;   // (B, D); f == att when H == 1
    floatX *ag;                      // (B, 2D)
    int np;                          // H*hd + 2 Hkv*hd + 2D: the columns of the fused projection (m->np)
    floatX *proj;                    // (B, np) = [q | k | v | qb | kb] = abar [W_q; W_k; W_v; W_fb]^T + biases
    floatX *logits;                  // (B, Vp)
    float *gamma, *s;                // (B), (B, D)
    float *scratch;                  // decode_scratch_bytes
    int *step_in, *h_step_in;        // (1 + B) device, host: [position t | the B current tokens]
    int use_graph;                   // 1: one step's launches are captured once as a CUDA graph and replayed
    cudaGraphExec_t graph;           // NULL until captured
    float2 *rope;                    // (Tc, hd/2)
    void *memory;
} Decoder;

static void decoder_layout(Decoder *d, const Model *m, Arena *a) {
    const SessaConfig *c = &m->config;
    size_t B = d->B, Tc = d->Tc, D = c->d_model, L = c->n_layer;
    size_t Dfb = c->no_feedback ? 0 : D;   // the f0 baseline keeps no kb and s caches
    size_t before = a->off;
    for (size_t l = 0; l < L; l++) {
        d->kc[l] = (floatX *)arena_take(a, B * Tc * m->Dkv * sizeof(floatX));
        d->vc[l] = (floatX *)arena_take(a, B * Tc * m->Dkv * sizeof(floatX));
        d->kbc[l] = (floatX *)arena_take(a, B * Tc * Dfb * sizeof(floatX));
        d->sc[l] = (float *)arena_take(a, B * Tc * Dfb * sizeof(float));
    }
    d->cache_bytes = a->off - before;
    d->x = (floatX *)arena_take(a, B * D * sizeof(floatX));
    d->y = (floatX *)arena_take(a, B * D * sizeof(floatX));
    d->xn = (floatX *)arena_take(a, B * D * sizeof(floatX));
    d->abar = (floatX *)arena_take(a, B * D * sizeof(floatX));
    d->att = (floatX *)arena_take(a, B * D * sizeof(floatX));
    d->f = c->n_head > 1 ? (floatX *)arena_take(a, B * D * sizeof(floatX)) : d->att;
    d->gated = (floatX *)arena_take(a, B * D * sizeof(floatX));
    d->lnf = (floatX *)arena_take(a, B * D * sizeof(floatX));
    d->ag = (floatX *)arena_take(a, B * 2 * D * sizeof(floatX));
    d->proj = (floatX *)arena_take(a, B * d->np * sizeof(floatX));
    d->logits = (floatX *)arena_take(a, B * c->padded_vocab_size * sizeof(floatX));
    d->gamma = (float *)arena_take(a, B * sizeof(float));
    d->s = (float *)arena_take(a, B * D * sizeof(float));
    d->scratch = (float *)arena_take(a, decode_scratch_bytes(d->B, c->n_head, m->hd, c->d_model));
    d->step_in = (int *)arena_take(a, (B + 1) * sizeof(int));
}

// caches for B sequences of up to Tc positions
static void decoder_init(Decoder *d, const Model *m, int B, int Tc) {
    const SessaConfig *c = &m->config;
    if (B < 1 || Tc < 1) fatal("decoder: %d sequences of %d positions", B, Tc);
    memset(d, 0, sizeof(*d));
    d->B = B; d->Tc = Tc;
    int L = c->n_layer;
    d->np = m->np;   // f0: no [qb | kb]
    d->kc = (floatX **)callocCheck(L, sizeof(floatX *)); d->vc = (floatX **)callocCheck(L, sizeof(floatX *));
    d->kbc = (floatX **)callocCheck(L, sizeof(floatX *)); d->sc = (float **)callocCheck(L, sizeof(float *));
    Arena sizing = { NULL, 0 };
    decoder_layout(d, m, &sizing);
    cudaMallocCheck(&d->memory, sizing.off);
    Arena real = { (char *)d->memory, 0 };
    decoder_layout(d, m, &real);
    d->rope = rope_table_create(Tc, m->hd);
    d->h_step_in = (int *)mallocCheck((B + 1) * sizeof(int));
    d->use_graph = m->use_graph;
    (void)decode_num_splits(1, 1);   // reads the SM count now, not inside a graph capture
}

static void decoder_free(Decoder *d) {
    if (d->graph != NULL) cudaCheck(cudaGraphExecDestroy(d->graph));
    cudaCheck(cudaFree(d->memory)); cudaCheck(cudaFree(d->rope)); free(d->h_step_in);
    free(d->kc); free(d->vc); free(d->kbc); free(d->sc);
}

// Prefill: the parallel forward over the prompts (B, P) (at most m->B sequences at a time, P <= m->T) writes rows
// 0..P-1 of every cache; d->logits (B, Vp) get the logits of position P-1 (the first new token's distribution).
// same_prompt: all B prompts are equal, so one forward fills sequence 0 and its rows are copied to the others.
static void decoder_prefill(Model *m, Decoder *d, const int *prompts, int P, int same_prompt) {
    const SessaConfig *c = &m->config;
    int D = c->d_model, Vp = c->padded_vocab_size, Dkv = m->Dkv;
    size_t np = m->np;
    if (P < 1 || P > d->Tc) fatal("prefill of %d prompt tokens into caches of %d rows", P, d->Tc);
    if (P > m->T) fatal("the prompt has %d tokens, but the parallel forward that prefills it was made for T = %d (-t)", P, m->T);
    size_t Tc = d->Tc;
    int n_fwd = same_prompt ? 1 : d->B;
    for (int b0 = 0; b0 < n_fwd; b0 += m->B) {
        int nb = n_fwd - b0 < m->B ? n_fwd - b0 : m->B;
        model_forward(m, prompts + (size_t)b0 * P, nb, P);
        for (int i = 0; i < nb; i++) {
            size_t b = b0 + i, row = (size_t)i * P;
            for (int l = 0; l < c->n_layer; l++) {
                const LayerActs *la = &m->layers[l];
                // k, v, kb: column slices of the layer's projection (rows np apart)
                cudaCheck(cudaMemcpy2DAsync(d->kc[l] + b * Tc * Dkv, Dkv * sizeof(floatX), la->k + row * np,
                                            np * sizeof(floatX), Dkv * sizeof(floatX), P, cudaMemcpyDeviceToDevice,
                                            main_stream));
                cudaCheck(cudaMemcpy2DAsync(d->vc[l] + b * Tc * Dkv, Dkv * sizeof(floatX), la->v + row * np,
                                            np * sizeof(floatX), Dkv * sizeof(floatX), P, cudaMemcpyDeviceToDevice,
                                            main_stream));
                if (c->no_feedback) continue;   // f0: no kb and s caches
                cudaCheck(cudaMemcpy2DAsync(d->kbc[l] + b * Tc * D, D * sizeof(floatX), la->qbkb + row * np + D,
                                            np * sizeof(floatX), D * sizeof(floatX), P, cudaMemcpyDeviceToDevice,
                                            main_stream));
                cudaCheck(cudaMemcpyAsync(d->sc[l] + b * Tc * D, la->s + row * D, (size_t)P * D * sizeof(float),
                                          cudaMemcpyDeviceToDevice, main_stream));
            }
            cudaCheck(cudaMemcpyAsync(d->logits + b * Vp, m->logits + (row + P - 1) * Vp, Vp * sizeof(floatX),
                                      cudaMemcpyDeviceToDevice, main_stream));
        }
    }
    for (size_t b = n_fwd; b < (size_t)d->B; b++) {   // same prompt: sequence 0's rows and logits
        for (int l = 0; l < c->n_layer; l++) {
            cudaCheck(cudaMemcpyAsync(d->kc[l] + b * Tc * Dkv, d->kc[l], (size_t)P * Dkv * sizeof(floatX),
                                      cudaMemcpyDeviceToDevice, main_stream));
            cudaCheck(cudaMemcpyAsync(d->vc[l] + b * Tc * Dkv, d->vc[l], (size_t)P * Dkv * sizeof(floatX),
                                      cudaMemcpyDeviceToDevice, main_stream));
            if (c->no_feedback) continue;
            cudaCheck(cudaMemcpyAsync(d->kbc[l] + b * Tc * D, d->kbc[l], (size_t)P * D * sizeof(floatX),
                                      cudaMemcpyDeviceToDevice, main_stream));
            cudaCheck(cudaMemcpyAsync(d->sc[l] + b * Tc * D, d->sc[l], (size_t)P * D * sizeof(float),
                                      cudaMemcpyDeviceToDevice, main_stream));
        }
        cudaCheck(cudaMemcpyAsync(d->logits + b * Vp, d->logits, Vp * sizeof(floatX), cudaMemcpyDeviceToDevice,
                                  main_stream));
    }
}

// layer l for the current token at position t = d->step_in[0] of every sequence: x in, y out; caches get row t
static void layer_decode(Model *m, Decoder *d, int l, const floatX *x, floatX *y) {
    const SessaConfig *c = &m->config;
    int B = d->B, D = c->d_model, H = c->n_head, Hkv = c->n_kv_head, hd = m->hd;
    cudaStream_t st = main_stream;
    #define PW(tt) layer_ptr(m->params, m, tt, l)
    // xn = LayerNorm(x); [a | gt] = Linear_in(xn); abar = GELU(a) (and gamma_t from it, as in training)
    const int *pos = d->step_in;
    layernorm_forward(d->xn, NULL, NULL, x, PW(P_LN_W), PW(P_LN_B), B, D, c->ln_eps, st);
    matmul_forward(d->ag, 2 * D, d->xn, PW(P_IN_W), PW(P_IN_B), NULL, B, D, 2 * D, st);
    if (c->no_feedback) gelu_forward(d->abar, d->ag, 2 * D, B, D, st);
    else gelu_gamma_forward(d->abar, d->gamma, d->ag, 2 * D, PW(P_GAMMA_W), PW(P_GAMMA_B), B, D, c->gamma_max, st);
    // [q | k | v | qb | kb] of the new token in one GEMM (the model's stacked weights); RoPE at position t; k, v, kb
    // into row t of the caches
    matmul_forward(d->proj, d->np, d->abar, PW(P_Q_W), PW(P_Q_B), NULL, B, D, d->np, st);
    floatX *q = d->proj, *k = q + m->Dq, *v = k + m->Dkv, *qb = v + m->Dkv, *kb = qb + D;
    decode_append(q, k, v, kb, d->np, d->kc[l], d->vc[l], d->kbc[l], d->rope, c->use_rope, pos, d->Tc, B, m->Dq, m->Dkv,
                  c->no_feedback ? 0 : D, hd, st);   // f0: no kb row
    // forward branch: attention of q_t over rows 0..t, then Linear_o when H > 1
    decode_attention(d->att, q, d->np, d->kc[l], d->vc[l], d->scratch, pos, d->Tc, B, H, Hkv, hd, st);
    if (H > 1) matmul_forward(d->f, D, d->att, PW(P_O_W), NULL, NULL, B, D, D, st);
    // feedback: s_t = f_t + gamma_t sum_{j<t} alpha_tj s_j (into row t of the s cache)
    if (!c->no_feedback) {
        decode_feedback(d->s, d->sc[l], d->f, d->gamma, qb, d->np, d->kbc[l], d->scratch, pos, d->Tc, B, D, st);
    } else {
        bf16_to_float(d->s, d->f, (size_t)B * D, st);   // the feedback-off baseline f0: s = f
    }
    // y = x + Linear_out(s * gt)
    gate_forward(d->gated, d->s, d->ag + D, 2 * D, B, D, st);
    matmul_forward(y, D, d->gated, PW(P_OUT_W), PW(P_OUT_B), x, B, D, D, st);
    #undef PW
}

// the launches of one step, for the position and tokens in d->step_in: the same for every t (a CUDA graph)
static void decoder_step_device(Model *m, Decoder *d) {
    const SessaConfig *c = &m->config;
    int B = d->B, D = c->d_model;
    floatX *x = d->x, *y = d->y;
    encoder_forward(x, d->step_in + 1, m->params + m->offsets[P_WTE], B, D, main_stream);
    for (int l = 0; l < c->n_layer; l++) {
        layer_decode(m, d, l, x, y);
        floatX *tmp = x; x = y; y = tmp;   // this layer's output is the next one's input
    }
    layernorm_forward(d->lnf, NULL, NULL, x, m->params + m->offsets[P_LNF_W], m->params + m->offsets[P_LNF_B], B, D,
                      c->ln_eps, main_stream);
    matmul_forward(d->logits, c->padded_vocab_size, d->lnf, m->params + m->offsets[P_WTE], NULL, NULL, B, D,
                   c->padded_vocab_size, main_stream);
}

// one step: the host tokens (B) at position t of every sequence -> d->logits (B, Vp); device work, no sync.
// With d->use_graph the launches are captured on the first step and replayed after (the position and tokens
// travel through d->step_in, copied before the replay): bitwise the results of the ungraphed launches.
static void decoder_step(Model *m, Decoder *d, const int *h_tokens, int t) {
    if (t < 0 || t >= d->Tc) fatal("decoder_step: position %d outside the caches of %d rows", t, d->Tc);
    d->h_step_in[0] = t;
    memcpy(d->h_step_in + 1, h_tokens, d->B * sizeof(int));
    cudaCheck(cudaMemcpyAsync(d->step_in, d->h_step_in, (d->B + 1) * sizeof(int), cudaMemcpyHostToDevice, main_stream));
    if (d->use_graph && d->graph == NULL) {
        cudaError_t err = cudaStreamBeginCapture(main_stream, cudaStreamCaptureModeRelaxed);
        if (err == cudaSuccess) {
            decoder_step_device(m, d);
            cudaGraph_t graph;
            cudaCheck(cudaStreamEndCapture(main_stream, &graph));
            cudaCheck(cudaGraphInstantiate(&d->graph, graph, 0));
            cudaCheck(cudaGraphDestroy(graph));
        } else {
            (void)cudaGetLastError();
            printf("CUDA graphs unavailable (stream capture: %s): decoding runs ungraphed\n", cudaGetErrorString(err));
            d->use_graph = 0;
        }
    }
    if (d->use_graph) cudaCheck(cudaGraphLaunch(d->graph, main_stream));
    else decoder_step_device(m, d);
}

// d->logits (B, Vp) -> host fp32 (B, V); waits for the stream. tmp: (B, V) bf16 host scratch
static void decoder_logits_to_host(const Model *m, const Decoder *d, float *out, floatX *tmp) {
    int V = m->config.vocab_size, Vp = m->config.padded_vocab_size;
    cudaCheck(cudaMemcpy2DAsync(tmp, V * sizeof(floatX), d->logits, Vp * sizeof(floatX), V * sizeof(floatX), d->B,
                                cudaMemcpyDeviceToHost, main_stream));
    cudaCheck(cudaStreamSynchronize(main_stream));
    for (size_t i = 0; i < (size_t)d->B * V; i++) out[i] = __bfloat162float(tmp[i]);
}

// ----------------------------------------------------------------------------
// mean loss over the first `steps` val batches (the loader rewound), averaged over the GPUs
static float evaluate(Model *m, DataLoader *loader, int steps, int B, int T, MultiGpuConfig *mg) {
    dataloader_reset(loader);
    double sum = 0.0;
    for (int i = 0; i < steps; i++) {
        dataloader_next_batch(loader);
        model_forward(m, loader->inputs, B, T);
        sum += model_loss(m, loader->targets, B, T, 0.0f);
    }
    return multi_gpu_cpu_float_sum((float)(sum / steps), mg) / mg->num_processes;
}

// accuracy at the scored positions of the eval file (-E), per nominal distance, over its sequences = the first
// rows of the (unshuffled) val loader; printed and logged as "step N eval_acc d=D ACC correct/count", as
// train_sessa.c's: the prediction at each position is the argmax of its logits (logits_argmax: the first index of
// the largest bf16 logit), scored on the host (llmc/eval_tasks.h). On several GPUs each rank scores its rows of the
// val loader (eval_tasks_row0) and the tallies are summed over the ranks before rank 0 reports them.
static void evaluate_tasks(Model *m, DataLoader *loader, EvalTasks *e, int step, FILE *log, const MultiGpuConfig *mg) {
    int B = (int)loader->B, T = (int)loader->T, N = B * T;
    int *d_argmax, *h_argmax = (int *)mallocCheck((size_t)N * sizeof(int));
    cudaMallocCheck(&d_argmax, (size_t)N * sizeof(int));
    dataloader_reset(loader);
    eval_tasks_zero(e);
    for (int k = 0; k < eval_tasks_steps(e, loader); k++) {
        dataloader_next_batch(loader);
        model_forward(m, loader->inputs, B, T);
        logits_argmax(d_argmax, m->logits, N, m->config.vocab_size, m->config.padded_vocab_size, main_stream);
        cudaCheck(cudaMemcpyAsync(h_argmax, d_argmax, (size_t)N * sizeof(int), cudaMemcpyDeviceToHost, main_stream));
        cudaCheck(cudaStreamSynchronize(main_stream));
        eval_tasks_score(e, eval_tasks_row0(loader, k), B, h_argmax, loader->targets);
    }
    multi_gpu_cpu_int64_sum(e->correct, e->num_distances, mg);
    multi_gpu_cpu_int64_sum(e->count, e->num_distances, mg);
    eval_tasks_report(e, step, log);
    cudaCheck(cudaFree(d_argmax));
    free(h_argmax);
}

// sampling (rank 0 prints): B sequences continue the same prompt (P ids) by n new tokens each.
// recurrent 1: prefill + one decoder step per token (caches of P + n rows); 0: the parallel forward over the
// whole growing prefix per token (P + n <= m->T and B <= m->B). tok NULL (no tokenizer, or one of another
// vocabulary): token ids are printed. Prints the prefill time and the time per new token (of all B sequences).

typedef struct { float temperature; int top_k; int batch; int recurrent; } SampleOpts;

static void print_token(const Tokenizer *tok, int id) {
    if (tok != NULL) safe_printf(tokenizer_decode((Tokenizer *)tok, id));
    else printf("%d ", id);
}

static void sample_and_print(Model *m, const Tokenizer *tok, const int *prompt, int P, int n, const SampleOpts *o,
                             Rng *rng) {
    int V = m->config.vocab_size, Vp = m->config.padded_vocab_size, B = o->batch, S = P + n;
    if (!o->recurrent && (S > m->T || B > m->B))
        fatal("-sm 0 (parallel-prefix sampling) runs the forward over prompt + -g = %d tokens of %d sequences, but the "
              "activations were made for -t %d, -b %d", S, B, m->T, m->B);
    int *seqs = (int *)mallocCheck((size_t)B * S * sizeof(int));
    int *next = (int *)mallocCheck(B * sizeof(int));
    float *logits = (float *)mallocCheck((size_t)B * V * sizeof(float));
    floatX *tmp = (floatX *)mallocCheck((size_t)B * V * sizeof(floatX));
    for (int b = 0; b < B; b++) memcpy(seqs + (size_t)b * S, prompt, P * sizeof(int));
    Decoder d;
    double t0 = now_seconds();
    if (o->recurrent) {
        decoder_init(&d, m, B, S);
        decoder_prefill(m, &d, seqs, P, 1);
        decoder_logits_to_host(m, &d, logits, tmp);
    }
    double t1 = now_seconds();
    printf("generating (%s, %d sequence%s, prompt of %d tokens%s):\n---\n", o->recurrent ? "recurrent" : "parallel prefix",
           B, B > 1 ? "s" : "", P, o->recurrent ? "" : ", no prefill");
    for (int i = 0; i < n; i++) {
        int t = P + i;   // the position of the token being chosen
        if (!o->recurrent) {   // logits of row t-1 of each sequence, from the forward over the prefix 0..t-1
            int *pre = (int *)mallocCheck((size_t)B * t * sizeof(int));
            for (int b = 0; b < B; b++) memcpy(pre + (size_t)b * t, seqs + (size_t)b * S, t * sizeof(int));
            model_forward(m, pre, B, t);
            free(pre);
            cudaCheck(cudaMemcpy2DAsync(tmp, V * sizeof(floatX), m->logits + (size_t)(t - 1) * Vp, (size_t)t * Vp * sizeof(floatX),
                                        V * sizeof(floatX), B, cudaMemcpyDeviceToHost, main_stream));
            cudaCheck(cudaStreamSynchronize(main_stream));
            for (size_t j = 0; j < (size_t)B * V; j++) logits[j] = __bfloat162float(tmp[j]);
        }
        for (int b = 0; b < B; b++) {
            next[b] = sample_logits_topk(logits + (size_t)b * V, V, o->temperature, o->top_k, rng_f32(rng));
            seqs[(size_t)b * S + t] = next[b];
        }
        if (B == 1) { print_token(tok, next[0]); fflush(stdout); }
        if (o->recurrent && i + 1 < n) {
            decoder_step(m, &d, next, t);
            decoder_logits_to_host(m, &d, logits, tmp);
        }
    }
    double t2 = now_seconds();
    if (B > 1) {
        for (int b = 0; b < B; b++) {
            printf("%s[sequence %d]\n", b > 0 ? "\n" : "", b);
            for (int i = 0; i < n; i++) print_token(tok, seqs[(size_t)b * S + P + i]);
        }
    }
    printf("\n---\n");
    printf("sampled %d x %d tokens after a prompt of %d: prefill %.1f ms, %.3f ms per new token of all %d sequences, "
           "%.0f tok/s%s\n", B, n, P, (t1 - t0) * 1e3, (t2 - t1) * 1e3 / n, B, (double)B * n / (t2 - t1),
           o->recurrent ? "" : " (parallel prefix)");
    if (o->recurrent) {
        printf("decode caches: %.3f GiB (%.1f KiB per sequence and position)\n", (double)d.cache_bytes / (1 << 30),
               (double)d.cache_bytes / ((double)B * S * 1024));
        decoder_free(&d);
    }
    free(seqs); free(next); free(logits); free(tmp);
}

// ----------------------------------------------------------------------------
// MFU

// dense bf16 peak of the GPU in FLOP/s, or 0 when unknown
static double gpu_peak_flops(const char *name, float override_tflops) {
    if (override_tflops > 0) return override_tflops * 1e12;
    if (strstr(name, "H100") || strstr(name, "H200") || strstr(name, "GH200")) return 989e12;
    if (strstr(name, "A100")) return 312e12;
    return 0.0;
}

#ifndef TESTING
// ----------------------------------------------------------------------------
// main training loop

typedef struct {
    int recompute; int zero_stage; float peak_tflops; int cuda_graph; int sample_batch; int sample_mode;
    const char *eval_file;   // -E (as train_sessa.c's)
} CudaArgs;

// the flags of this trainer beyond llmc/args.h
static const char cuda_usage[] =
    "CUDA trainer only:\n"
    "  -r 0/1   recompute LayerNorm and GELU in the backward (default 0)\n"
    "  -z 0/1   ZeRO stage with several GPUs (default 0)\n"
    "  -pi TF   peak bf16 TFLOPS for the MFU (default: from the GPU name)\n"
    "  -cg 0/1  replay each micro-step's forward + backward, and each sampling step, as one\n"
    "           CUDA graph (default 1; bitwise the same results as -cg 0)\n"
    "  -sb N    sequences sampled at once from the prompt (default 1)\n"
    "  -sm 0/1  sampler: 1 recurrent decoding with caches (default), 0 the parallel forward\n"
    "           over the whole prefix per token (prompt + -g <= -t, -sb <= -b; for comparison)\n"
    "  -E FILE  long-context eval file (data/long_context.py) of the -j shards: accuracy per\n"
    "           distance at each validation and the end (as train_sessa's -E; on several GPUs\n"
    "           B * GPUs must divide its number of sequences)\n";
// The training steps are pipelined: the host issues step s (its data read and uploaded, every launch) without
// waiting for the GPU, then prints step s-1's line, whose scalars (StepStats) were copied into pinned memory
// behind an event. So the host runs one step ahead and its work overlaps the GPU's. Before anything that
// prints or reads between steps (validation, sampling, a checkpoint, a stop, the end) the line still pending
// is printed, so the output is that of a run without the pipeline. Time per step, by events on the stream
// (GPU idle time waiting for the host counts too): for a step issued while the step before was in flight,
// from that step's end to its own end; else from its beginning (an event recorded when the host began it,
// on an idle GPU) to its end.
#define STEP_SLOTS 3   // steps s-1 and s in flight, and the end event of s-2 (step s-1's time) kept
typedef struct {
    StepStats *h[STEP_SLOTS]; // pinned: the scalars of the steps in flight, slot step % STEP_SLOTS
    cudaEvent_t begin[STEP_SLOTS];  // recorded when the host begins the step (timing events)
    cudaEvent_t done[STEP_SLOTS];   // recorded after the step's copy
    float lr[STEP_SLOTS];
    int chained[STEP_SLOTS];        // the step was issued while the step before was in flight
    int oldest, newest;       // the (1-based) steps in flight, 0 when none
    // for the line: the step count, tokens, FLOPs and peak of a step, micro-steps, world, main.log
    int max_steps, total_batch, grad_accum;
    double flops_per_step, peak;
    MultiGpuConfig *mg;
    FILE *logf;
    int stop_seen;            // several GPUs: a printed step's summed stop signals were > 0 (the same on every rank)
} StepLog;

static void step_log_init(StepLog *L) {
    for (int i = 0; i < STEP_SLOTS; i++) {
        cudaCheck(cudaMallocHost((void **)&L->h[i], sizeof(StepStats)));
        cudaCheck(cudaEventCreate(&L->begin[i]));
        cudaCheck(cudaEventCreate(&L->done[i]));
    }
    L->oldest = L->newest = 0;
    L->stop_seen = 0;
}

static void step_log_free(StepLog *L) {
    for (int i = 0; i < STEP_SLOTS; i++) {
        cudaCheck(cudaFreeHost(L->h[i]));
        cudaCheck(cudaEventDestroy(L->begin[i]));
        cudaCheck(cudaEventDestroy(L->done[i]));
    }
}

// wait for the oldest step in flight and print its line (every rank: the loss is averaged over them)
static void step_log_print_oldest(StepLog *L) {
    int step = L->oldest, slot = step % STEP_SLOTS;
    cudaCheck(cudaEventSynchronize(L->done[slot]));
    float ms;
    cudaCheck(cudaEventElapsedTime(&ms, L->chained[slot] ? L->done[(step - 1) % STEP_SLOTS] : L->begin[slot], L->done[slot]));
    double dt = ms * 1e-3;
    L->oldest = step < L->newest ? step + 1 : 0;
    if (L->oldest == 0) L->newest = 0;
    const StepStats *st = L->h[slot];
    MultiGpuConfig *mg = L->mg;
    float train_loss = (float)(st->loss_sum / L->grad_accum / mg->num_processes);   // (summed over the ranks)
    if (mg->num_processes > 1 && st->stop > 0) L->stop_seen = 1;
    float lr = L->lr[slot], norm = st->norm;
    double tok_s = L->total_batch / dt;
    if (!isfinite(train_loss)) fatal("step %d: the loss is %f: training diverged", step, train_loss);
    if (L->peak > 0) {
        printf("step %d/%d | loss %.6f | lr %.2e | norm %.4f | %.1f ms | %.1f%% MFU | %.0f tok/s\n", step,
               L->max_steps, train_loss, lr, norm, dt * 1e3, 100.0 * L->flops_per_step / dt / (L->peak * mg->num_processes),
               tok_s);
    } else {
        printf("step %d/%d | loss %.6f | lr %.2e | norm %.4f | %.1f ms | %.0f tok/s\n", step, L->max_steps,
               train_loss, lr, norm, dt * 1e3, tok_s);
    }
    run_log_train(L->logf, step, train_loss, lr, norm, tok_s);
}

static void step_log_flush(StepLog *L) {
    while (L->oldest != 0) step_log_print_oldest(L);
}

// the host begins step (1-based)
static void step_log_begin(StepLog *L, int step) {
    cudaCheck(cudaEventRecord(L->begin[step % STEP_SLOTS], main_stream));
}

// step is issued up to its update: copy its scalars behind an event, then print the step before
static void step_log_push(StepLog *L, int step, float lr, const StepStats *d_stats) {
    int slot = step % STEP_SLOTS;
    L->lr[slot] = lr;
    L->chained[slot] = L->oldest != 0;
    cudaCheck(cudaMemcpyAsync(L->h[slot], d_stats, sizeof(StepStats), cudaMemcpyDeviceToHost, main_stream));
    cudaCheck(cudaEventRecord(L->done[slot], main_stream));
    if (L->oldest == 0) L->oldest = step;
    L->newest = step;
    while (L->oldest != 0 && L->oldest < step) step_log_print_oldest(L);
}

static int cuda_extra_flags(void *ctx, const char *flag, const char *value) {
    CudaArgs *ca = (CudaArgs *)ctx;
    if (strcmp(flag, "-r") == 0) { ca->recompute = (int)args_int_(flag, value, 0, 1); return 1; }
    if (strcmp(flag, "-z") == 0) { ca->zero_stage = (int)args_int_(flag, value, 0, 1); return 1; }
    if (strcmp(flag, "-pi") == 0) { ca->peak_tflops = args_float_(flag, value, 0.0f, 1e6f); return 1; }
    if (strcmp(flag, "-cg") == 0) { ca->cuda_graph = (int)args_int_(flag, value, 0, 1); return 1; }
    if (strcmp(flag, "-sb") == 0) { ca->sample_batch = (int)args_int_(flag, value, 1, 65535); return 1; }
    if (strcmp(flag, "-sm") == 0) { ca->sample_mode = (int)args_int_(flag, value, 0, 1); return 1; }
    if (strcmp(flag, "-E") == 0) { ca->eval_file = value; return 1; }
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);   // whole lines, at once, also into a file or a pipe
    TrainArgs args;
    CudaArgs ca = { 0, 0, 0.0f, 1, 1, 1, NULL };
    train_args_parse(&args, argc, argv, cuda_usage, cuda_extra_flags, &ca);
    MultiGpuConfig mg = multi_gpu_config_init(ca.zero_stage, NULL);
    int rank0 = mg.process_rank == 0;
    if (!rank0) freopen("/dev/null", "w", stdout);
    main_stream_create();
    matmul_init();
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, mg.local_device_idx));
    double peak = gpu_peak_flops(prop.name, ca.peak_tflops);
    printf("device %s (%d processes, ZeRO stage %d), peak %.0f TFLOPS%s\n", prop.name, mg.num_processes,
           mg.zero_stage, peak / 1e12, peak > 0 ? "" : " (unknown: no MFU; set -pi)");

    Tokenizer tokenizer;
    tokenizer_init(&tokenizer, args.tokenizer);

    // the run directory (rank 0 creates it, locks it, cleans a failed save out of it, keeps the run's flags
    // in it) and, with -y 1, the latest complete checkpoint in it, which replaces -e; with none there the run
    // starts from scratch, as train_sessa.c does. Every rank reads the checkpoint and the resume state itself
    // (-o is on a file system all ranks see), whatever world size wrote them, and all ranks must find the same step.
    int start_step = 0;
    char resume_model[4096] = "", resume_state[4096] = "", resume_done[4096];
    if (args.out_dir != NULL) {
        if (rank0 && mkdir(args.out_dir, 0755) != 0 && errno != EEXIST)
            fatal("cannot create output dir '%s': %s", args.out_dir, strerror(errno));
        if (rank0) {
            run_dir_lock(args.out_dir);
            run_dir_clean(args.out_dir);
            if (!args.resume && train_state_latest(args.out_dir) >= 0)
                printf("warning: '%s' holds checkpoints of an earlier run (up to step %d); this new run replaces main.log "
                       "and args.txt, and -y 1 would resume the newest checkpoint there, of either run\n", args.out_dir,
                       train_state_latest(args.out_dir));
            train_args_save(&args, args.out_dir);
        }
        multi_gpu_barrier(&mg);   // the directory exists (and is clean) before the other ranks look into it
        if (args.resume) {
            int latest = multi_gpu_agree_int(train_state_latest(args.out_dir), "the latest checkpoint in -o", &mg);
            if (latest < 0) {
                printf("-y 1: no checkpoint in '%s' to resume from: starting from scratch\n", args.out_dir);
            } else {
                train_state_paths(resume_model, resume_state, resume_done, sizeof(resume_model), args.out_dir, latest);
                args.init = resume_model;
                start_step = latest;
            }
        }
    }

    train_install_signal_handlers();

    // model: from a checkpoint file, or a descriptor with DESIGN.md init
    SessaConfig config;
    float *h_params;
    if (access(args.init, F_OK) == 0) {
        h_params = sessa_checkpoint_read(args.init, &config);
        printf("loaded checkpoint %s\n", args.init);
    } else {
        int V = train_args_vocab(&args, tokenizer.init_ok, (int)tokenizer.vocab_size);
        char err[512];
        if (sessa_config_from_descriptor(&config, args.init, V, args.T, err, sizeof(err)) != 0)
            fatal("-e '%s' is neither an existing checkpoint file nor a model descriptor: %s", args.init, err);
        h_params = (float *)mallocCheck(sessa_num_parameters(&config) * sizeof(float));
        sessa_init_parameters(h_params, &config, args.seed);
    }
    sessa_config_print(&config);
    if (tokenizer.init_ok && (int)tokenizer.vocab_size != config.vocab_size)
        printf("warning: tokenizer has %u tokens, the model %d: samples print token ids\n",
               tokenizer.vocab_size, config.vocab_size);
    const Tokenizer *sample_tok = tokenizer.init_ok && (int)tokenizer.vocab_size == config.vocab_size ? &tokenizer : NULL;
    int eot = sample_tok != NULL && tokenizer.eot_token >= 0 && tokenizer.eot_token < config.vocab_size ? tokenizer.eot_token : 0;
    int prompt_len = 0;
    int *prompt = train_args_prompt(&args, eot, config.vocab_size, &prompt_len);
    SampleOpts sample_opts = { args.temperature, args.top_k, ca.sample_batch, ca.sample_mode };
    if (args.sample_every > 0 && ca.sample_mode == 1 && prompt_len > args.T)
        fatal("the prompt has %d tokens, more than -t %d: the parallel forward that prefills it needs -t >= %d",
              prompt_len, args.T, prompt_len);

    Model model;
    model_build(&model, &config, h_params, &mg);
    free(h_params);
    model_alloc_activations(&model, args.B, args.T, ca.recompute);
    model.use_graph = ca.cuda_graph;
    printf("parameters: %zu\n", model.num_parameters);

    // data
    int B = args.B, T = args.T;
    // -d counts the tokens of all GPUs together; without -d, one micro-batch per GPU
    args.total_batch = (int)train_args_total_batch(&args, mg.num_processes);
    int grad_accum = args.total_batch / (B * T * mg.num_processes);
    if (grad_accum < 1 || grad_accum * B * T * mg.num_processes != args.total_batch)
        fatal("-d %d tokens per step is not a multiple of B*T*GPUs = %d", args.total_batch, B * T * mg.num_processes);
    DataLoader train_loader, val_loader;
    // -x 0 (no training, e.g. sampling from a checkpoint) reads no training data
    int use_train_data = args.max_steps != 0 || resume_state[0];
    if (use_train_data)
        dataloader_init(&train_loader, args.train_glob, B, T, mg.process_rank, mg.num_processes, args.shuffle, args.seed,
                        config.vocab_size);
    int use_val = args.val_every > 0 || ca.eval_file;
    if (use_val)
        dataloader_init(&val_loader, args.val_glob, B, T, mg.process_rank, mg.num_processes, 0, args.seed,
                        config.vocab_size);
    EvalTasks eval_tasks;
    if (ca.eval_file) {
        eval_tasks_load(&eval_tasks, ca.eval_file, config.vocab_size);
        eval_tasks_check_loader(&eval_tasks, &val_loader);
        printf("eval tasks: %s, %d sequences of T=%d, %d scored positions, %d distances (%s)\n",
               eval_task_name(eval_tasks.task), eval_tasks.num_sequences, eval_tasks.T, eval_tasks.num_scored,
               eval_tasks.num_distances, ca.eval_file);
    }
    // -x 0: no training (with -s > 0: one sample, e.g. from a checkpoint given by -e)
    int max_steps = args.max_steps >= 0 ? args.max_steps : (int)(train_loader.steps_per_epoch / grad_accum);
    if (args.max_steps < 0 && max_steps < 1) fatal("the training data holds less than one step of %d tokens", args.total_batch);
    printf("B %d | T %d | grad accumulation %d | %d tokens per step | %d steps\n", B, T, grad_accum,
           args.total_batch, max_steps);

    Rng rng;
    rng_seed(&rng, sampler_seed(args.seed));
    long long log_bytes = -1;
    if (resume_state[0]) {   // full moments in the file: each rank keeps its ZeRO shard of them
        size_t n = model.num_parameters, ng = model.gpu_parameters;
        float *hm = (float *)mallocCheck(n * sizeof(float)), *hv = (float *)mallocCheck(n * sizeof(float));
        float *hg = (float *)mallocCheck(ng * sizeof(float));
        DataLoaderState ls;
        int step = train_state_read(resume_state, n, hm, hv, &ls, sizeof(ls), rng.s, &log_bytes);
        if (step != start_step) fatal("resume state '%s' is for step %d, expected %d", resume_state, step, start_step);
        ckpt_to_gpu_layout(&model, hg, hm);
        multi_gpu_copy_shard_from_host(model.m, hg, ng, &mg);
        ckpt_to_gpu_layout(&model, hg, hv);
        multi_gpu_copy_shard_from_host(model.v, hg, ng, &mg);
        dataloader_set_state(&train_loader, &ls);   // converts the data position to this world size
        free(hm); free(hv); free(hg);
        printf("resumed from step %d (saved by %d processes, resumed on %d)\n", start_step, ls.world_size,
               mg.num_processes);
    }

    FILE *logf = NULL;
    if (args.out_dir != NULL && rank0) {
        logf = run_dir_open_log(args.out_dir, resume_state[0] != 0, log_bytes);
    }

    float dloss = 1.0f / (B * T * grad_accum);
    StepLog slog;
    step_log_init(&slog);
    slog.max_steps = max_steps; slog.total_batch = args.total_batch; slog.grad_accum = grad_accum;
    slog.flops_per_step = sessa_flops_per_token(&config, T) * args.total_batch; slog.peak = peak;
    slog.mg = &mg; slog.logf = logf;
    // at step s: validation, sample, checkpoint (these belong to step s: a run resumed from the checkpoint of
    // step s does not repeat them), then the optimizer step s -> s + 1 (the same schedule as train_sessa.c);
    // the line of step s is printed before any of these (step_log_flush), else after step s + 1 is issued
    StepRange range = { start_step, max_steps };
    for (int step = start_step; step <= max_steps; step++) {
        int last = step == max_steps;
        if (step_validates(range, step, args.val_every)) {
            step_log_flush(&slog);
            run_log_val(logf, step, evaluate(&model, &val_loader, args.val_steps, B, T, &mg));
        }
        if (ca.eval_file && !step_resumed_here(range, step) && (step_validates(range, step, args.val_every) || last)) {
            step_log_flush(&slog);
            evaluate_tasks(&model, &val_loader, &eval_tasks, step, logf, &mg);
        }
        // -x 0 samples at step 0: a way to sample from a checkpoint (-e FILE -x 0 -s 1)
        if (step_samples(range, step, args.sample_every)) {
            step_log_flush(&slog);
            if (rank0) sample_and_print(&model, sample_tok, prompt, prompt_len, args.gen_tokens, &sample_opts, &rng);
        }
        // Ctrl-C / SIGTERM during the step before: save it, then exit 128 + signal. On several GPUs all ranks must
        // agree without a host sync: each step carries the rank's signal, summed over the ranks with the loss, and
        // the ranks stop once a printed step's sum is > 0 (lines are printed at the same steps on every rank: a
        // few steps after the signal)
        int stop = mg.num_processes > 1 ? slog.stop_seen : (int)train_stop_signal;
        if (stop || last) step_log_flush(&slog);
        if (args.out_dir != NULL && step_checkpoints(range, step, args.ckpt_every, stop)) {
            step_log_flush(&slog);
            save_checkpoint(&model, args.out_dir, step, &train_loader, &rng, &mg, logf, args.keep_last);
        }
        if (stop && !last) {
            int sig = train_stop_signal ? (int)train_stop_signal : SIGINT;
            printf("stopped by signal %d at step %d%s\n", sig, step,
                   args.out_dir ? (step > start_step ? ": resume with -y 1" : " (nothing new to save)") : " (no -o: nothing saved)");
            if (logf) fcloseCheck(logf, "main.log");
            model_free(&model);   // first: its CUDA graphs hold NCCL kernels (the communicator's end hung behind them:
            multi_gpu_config_free(&mg);   // H200 x2, -cg 1, killed by timeout 10 s after the stop's checkpoint)
            return 128 + sig;
        }
        if (last) break;

        // one optimizer step: grad_accum micro-batches, gradients reduced over GPUs, clipped (as PyTorch), AdamW;
        // no host sync: the loss, norm and clip scale stay on the device (model.stats)
        step_log_begin(&slog, step + 1);
        if (mg.num_processes > 1) {   // this rank's stop signal, summed over the ranks with the loss below
            double stop_here = train_stop_signal != 0;
            cudaCheck(cudaMemcpyAsync(&model.stats->stop, &stop_here, sizeof(double), cudaMemcpyHostToDevice, main_stream));
        }
        for (int micro = 0; micro < grad_accum; micro++) {   // the first writes the gradients, the others add
            dataloader_next_batch(&train_loader);
            // the last micro-step reduces the accumulated gradients over the GPUs during its backward
            model_train_micro_step(&model, train_loader.inputs, train_loader.targets, B, T, dloss, micro > 0,
                                   micro == grad_accum - 1 ? &mg : NULL);
        }
        multi_gpu_sum_device(&model.stats->loss_sum, 2, &mg, main_stream, 0);   // loss_sum, stop (StepStats)
        multi_gpu_wait_gradients(&mg, main_stream);
        model_grad_norm(&model, args.grad_clip, &mg);
        float lr = lr_at_step(args.lr, step, args.warmup, max_steps, args.final_lr_frac);
        model_update(&model, lr, 0.9f, 0.95f, 1e-8f, args.weight_decay, step + 1, 0, &mg);
        step_log_push(&slog, step + 1, lr, model.stats);
    }
    step_log_free(&slog);   // the loop leaves at its last step, every line printed
    if (train_stop_signal) printf("signal %d at the last step: the run is complete\n", (int)train_stop_signal);

    free(prompt);
    if (logf) fcloseCheck(logf, "main.log");
    if (use_train_data) dataloader_free(&train_loader);
    if (use_val) dataloader_free(&val_loader);
    if (ca.eval_file) eval_tasks_free(&eval_tasks);
    tokenizer_free(&tokenizer);
    model_free(&model);
    matmul_free();
    cudaCheck(cudaStreamDestroy(main_stream));
    multi_gpu_config_free(&mg);
    return 0;
}
#endif // TESTING
