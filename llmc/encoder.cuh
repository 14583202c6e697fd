/*
 Token embedding: x0[n] = wte[tokens[n]] (no positional table; positions enter through RoPE).
 Backward: dwte[v] += sum over the positions n with tokens[n] == v of dout[n], deterministic without
 atomics: the host sorts the positions by token (a counting sort, stable, so each token's positions are
 summed in increasing order), and one thread block column per distinct token sums its rows.
*/
#ifndef SESSA_ENCODER_CUH
#define SESSA_ENCODER_CUH

#include "cuda_common.h"

// out (N, C) = wte[tokens] (tokens already checked against the vocabulary by the data loader)
__global__ void encoder_forward_kernel(floatX *out, const int *tokens, const floatX *wte, int N, int C) {
    grid_dep_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * C) return;
    size_t n = i / C, c = i % C;
    out[i] = wte[(size_t)tokens[n] * C + c];
}

static void encoder_forward(floatX *out, const int *tokens, const floatX *wte, int N, int C, cudaStream_t stream) {
    launch_pdl(encoder_forward_kernel, ceil_div((long long)N * C, 256), 256, 0, stream, out, tokens, wte, N, C);
    cudaCheck(cudaGetLastError());
}

// the positions of a batch grouped by token: [tokens (nb) | starts (nb + 1) | positions (N)]
// The host plans are pinned, two of them used in turn, so that the upload is a true async copy (from pageable
// memory the driver may stage it and wait for the stream) and the host can plan the next batch while the GPU
// still runs the step before: before a plan buffer is rewritten, the host waits for its last upload (an event).
typedef struct {
    int V, N;           // vocabulary, max positions
    int nbuckets;       // distinct tokens of the current batch
    int *count;         // host (V + 1) counting-sort offsets
    int *plan[2];       // pinned host, 2 * nbuckets + 1 + N <= 3 * N + 1 ints each; plan[slot] is the current one
    cudaEvent_t uploaded[2];   // recorded after each plan's upload
    int slot;
    int *d_plan;        // device copy of the current plan
} EncoderBackward;

static void encoder_backward_init(EncoderBackward *e, int V, int N) {
    e->V = V; e->N = N; e->nbuckets = 0; e->slot = 0;
    e->count = (int *)mallocCheck((size_t)(V + 1) * sizeof(int));
    for (int i = 0; i < 2; i++) {
        cudaCheck(cudaMallocHost((void **)&e->plan[i], (size_t)(3 * N + 1) * sizeof(int)));
        cudaCheck(cudaEventCreateWithFlags(&e->uploaded[i], cudaEventDisableTiming));
    }
    cudaMallocCheck(&e->d_plan, (size_t)(3 * N + 1) * sizeof(int));
}
static void encoder_backward_free(EncoderBackward *e) {
    free(e->count);
    for (int i = 0; i < 2; i++) {
        cudaCheck(cudaFreeHost(e->plan[i]));
        cudaCheck(cudaEventDestroy(e->uploaded[i]));
    }
    cudaCheck(cudaFree(e->d_plan));
}

// sort the N host tokens into buckets and upload the plan (call before encoder_backward)
static void encoder_backward_plan(EncoderBackward *e, const int *tokens, int N, cudaStream_t stream) {
    if (N > e->N) fatal("encoder_backward_plan: %d positions, planned for %d", N, e->N);
    int V = e->V;
    e->slot ^= 1;
    cudaCheck(cudaEventSynchronize(e->uploaded[e->slot]));   // its last upload (two batches ago) is done
    memset(e->count, 0, (size_t)(V + 1) * sizeof(int));
    for (int n = 0; n < N; n++) e->count[tokens[n] + 1]++;
    int nb = 0;
    for (int v = 0; v < V; v++) nb += e->count[v + 1] > 0;
    int *plan = e->plan[e->slot], *btok = plan, *bstart = plan + nb, *pos = plan + 2 * nb + 1;
    int b = 0;
    for (int v = 0; v < V; v++) {         // bucket starts, in token order
        if (e->count[v + 1] > 0) { btok[b] = v; bstart[b] = e->count[v]; b++; }
        e->count[v + 1] += e->count[v];   // count[v] = first slot of token v
    }
    bstart[nb] = N;
    for (int n = 0; n < N; n++) pos[e->count[tokens[n]]++] = n;
    e->nbuckets = nb;
    cudaCheck(cudaMemcpyAsync(e->d_plan, plan, (size_t)(2 * nb + 1 + N) * sizeof(int), cudaMemcpyHostToDevice, stream));
    cudaCheck(cudaEventRecord(e->uploaded[e->slot], stream));
}

// dwte[tok, c] += sum of dout[pos, c] over the bucket's positions, in order
__global__ void encoder_backward_kernel(float *dwte, const floatX *dout, const int *plan, int nb, int C) {
    grid_dep_begin();
    int b = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int *starts = plan + nb, *pos = plan + 2 * nb + 1;
    float acc = 0.0f;
    for (int i = starts[b]; i < starts[b + 1]; i++) acc += __bfloat162float(dout[(size_t)pos[i] * C + c]);
    dwte[(size_t)plan[b] * C + c] += acc;
}

// dwte (Vp, C) += scatter of dout (N, C); encoder_backward_plan must have run for this batch
static void encoder_backward(float *dwte, const floatX *dout, const EncoderBackward *e, int C, cudaStream_t stream) {
    if (e->nbuckets == 0) return;
    dim3 grid(e->nbuckets, ceil_div(C, 256));
    launch_pdl(encoder_backward_kernel, grid, 256, 0, stream, dwte, dout, e->d_plan, e->nbuckets, C);
    cudaCheck(cudaGetLastError());
}

#endif // SESSA_ENCODER_CUH
