/*
 Data parallelism over several GPUs with NCCL: one process per GPU, each on its own slice of every
 batch (llmc/dataloader.h splits by rank), gradients averaged across processes.

   ZeRO stage 0: every rank keeps the full optimizer state; the gradients are all-reduced (averaged)
                 and every rank runs the same AdamW step on the full parameter vector.
   ZeRO stage 1: the flat parameter vector (train_sessa.cu's GPU layout: the checkpoint order of DESIGN.md §4,
                 each tensor 256-byte aligned, zero gaps between) is cut into W equal contiguous
                 shards (multi_gpu_get_shard_offset, padding at the end, see llmc/distributed.h).
                 Gradients are reduce-scattered (each rank gets the average of its shard), each rank
                 keeps the AdamW moments of its shard only and updates its shard of the parameters,
                 then the parameters are all-gathered so that every rank has the full model again.
 World size 1 is the plain path: no communicator, every call below returns at once (or is a copy).

 How the trainer uses it (llm.c's shape):
   MultiGpuConfig mg = multi_gpu_config_init(zero_stage, id_method);   // picks and sets the GPU
   size_t P = multi_gpu_padded_size(num_parameters, &mg);             // allocate params, grads with P
   ShardInfo sh = multi_gpu_get_shard_offset(num_parameters, &mg, 1); // optimizer owns [sh.offset, +sh.size)
   per step:
     forward/backward (grad accumulation) ...; in the last micro-step, once the gradients of a range of
     the flat buffer are final (e.g. all tensors of layer l, right after its backward):
       multi_gpu_reduce_gradient_ranges(grads, n_params, begins, counts, n, &mg, stream);  // async, NCCL stream
     (after the whole backward: one range, begins = {0}, counts = {P})
     multi_gpu_wait_gradients(&mg, stream);                 // compute stream waits for NCCL
     the step's loss (and stop signals): multi_gpu_sum_device(&loss, 2, &mg, stream, 0) before that wait (no host sync)
     norm^2 of the gradient: stage 0 local; stage 1 the shards' norm^2 summed by multi_gpu_sum_device (join)
     AdamW on [sh.offset, sh.offset + sh.size) (the padding has grad 0 and stays 0)
     multi_gpu_gather_params(params, P, &mg, stream);       // stage 1: all-gather the updated shards
     loss: the summed loss / mg.num_processes, read on the host with the step's other scalars
   multi_gpu_config_free(&mg);

 Checkpoints do not depend on the world size: they hold the full parameters and moments in DESIGN.md
 order. Save (stage 1): multi_gpu_gather_to_host collects every rank's shard of m and v (and of fp32
 master weights, if any) into one host array on rank 0, which writes it. Load: every rank reads the
 full arrays from the file and multi_gpu_copy_shard_from_host takes its own shard (padding zeroed),
 so a run saved on 8 GPUs resumes on 1, 3 or 16. Both sides use the same ShardInfo.
*/
#ifndef SESSA_ZERO_CUH
#define SESSA_ZERO_CUH

#include <nccl.h>
#include "cuda_common.h"
#include "distributed.h"

static_assert(sizeof(ncclUniqueId) == DIST_ID_BYTES, "the id exchange moves DIST_ID_BYTES bytes");

#define ncclCheck(err) nccl_check_((err), __FILE__, __LINE__)
static inline void nccl_check_(ncclResult_t err, const char *file, int line) {
    if (err != ncclSuccess) fatal_at(file, line, "NCCL: %s", ncclGetErrorString(err));
}

template <typename T> ncclDataType_t nccl_type();
template <> inline ncclDataType_t nccl_type<float>() { return ncclFloat; }
template <> inline ncclDataType_t nccl_type<__nv_bfloat16>() { return ncclBfloat16; }
template <> inline ncclDataType_t nccl_type<double>() { return ncclFloat64; }

typedef struct {
    int process_rank;          // 0 .. num_processes-1
    int num_processes;         // world size
    int local_device_idx;      // the GPU of this process: the local rank, or 0 when it sees one GPU
    int zero_stage;            // 0 or 1
    DistEnv env;               // launcher, ports, timeout (llmc/distributed.h)
    ncclComm_t nccl_comm;      // NULL when num_processes == 1
    cudaStream_t nccl_stream;  // gradient reductions run here, overlapping the backward
    cudaEvent_t compute_done;  // compute stream -> NCCL stream: the gradients are ready
    cudaEvent_t nccl_done;     // NCCL stream -> compute stream: the reductions are over
    float *d_scalar;           // one device float for multi_gpu_cpu_float_sum
    int *d_ints;               // two device ints for multi_gpu_agree_int
} MultiGpuConfig;

// id_method: "auto", "mpi", "tcp", "fs:DIR", or NULL: $SESSA_ID_METHOD, else "auto" (llmc/distributed.h)
static MultiGpuConfig multi_gpu_config_init(int zero_stage, const char *id_method) {
    if (zero_stage != 0 && zero_stage != 1) fatal("ZeRO stage %d is not supported: use 0 or 1", zero_stage);
    MultiGpuConfig c;
    memset(&c, 0, sizeof(c));
    c.env = dist_env_parse();
    DistIdMethod method = dist_id_method(id_method, &c.env);
    c.process_rank = c.env.rank;
    c.num_processes = c.env.world_size;
    c.zero_stage = zero_stage;
    // the GPU: the local rank's, or the only visible one when the launcher gave each process its own
    // GPU (CUDA_VISIBLE_DEVICES per task, e.g. srun --gpus-per-task=1)
    int n_dev = 0;
    cudaCheck(cudaGetDeviceCount(&n_dev));
    c.local_device_idx = n_dev == 1 ? 0 : c.env.local_rank;
    if (c.local_device_idx >= n_dev)
        fatal("rank %d has local rank %d but this node has %d visible GPUs (more processes per node than GPUs?)",
              c.process_rank, c.env.local_rank, n_dev);
    cudaCheck(cudaSetDevice(c.local_device_idx));
    if (c.num_processes == 1) return c;

    ncclUniqueId id;
    if (c.process_rank == 0) ncclCheck(ncclGetUniqueId(&id));
    dist_share_id((unsigned char *)&id, &method, &c.env);
    ncclCheck(ncclCommInitRank(&c.nccl_comm, c.num_processes, id, c.process_rank));
    if (method.kind == DIST_ID_FS && c.process_rank == 0) dist_id_fs_remove(method.dir, &c.env);
    cudaCheck(cudaStreamCreateWithFlags(&c.nccl_stream, cudaStreamNonBlocking));
    cudaCheck(cudaEventCreateWithFlags(&c.compute_done, cudaEventDisableTiming));
    cudaCheck(cudaEventCreateWithFlags(&c.nccl_done, cudaEventDisableTiming));
    cudaMallocCheck(&c.d_scalar, sizeof(float));
    cudaMallocCheck(&c.d_ints, 2 * sizeof(int));
    if (c.process_rank == 0)
        printf("multi-GPU: %d processes (launcher %s), id exchange %s, ZeRO stage %d\n", c.num_processes,
               c.env.launcher, method.kind == DIST_ID_MPI ? "mpi" : method.kind == DIST_ID_TCP ? "tcp" : "fs",
               c.zero_stage);
    return c;
}

static void multi_gpu_config_free(MultiGpuConfig *c) {
    if (c->num_processes > 1) {
        ncclCheck(ncclCommDestroy(c->nccl_comm));
        cudaCheck(cudaStreamDestroy(c->nccl_stream));
        cudaCheck(cudaEventDestroy(c->compute_done));
        cudaCheck(cudaEventDestroy(c->nccl_done));
        cudaCheck(cudaFree(c->d_scalar));
        cudaCheck(cudaFree(c->d_ints));
    }
    dist_finalize();
    memset(c, 0, sizeof(*c));
}

// sum of one float over all ranks (loss averaging, gradient norm of ZeRO shards); blocks
static float multi_gpu_cpu_float_sum(float value, const MultiGpuConfig *c) {
    if (c->num_processes == 1) return value;
    // all three on the NCCL stream: a plain cudaMemcpy runs on the legacy stream, which the
    // non-blocking NCCL stream does not wait for
    cudaCheck(cudaMemcpyAsync(c->d_scalar, &value, sizeof(float), cudaMemcpyHostToDevice, c->nccl_stream));
    ncclCheck(ncclAllReduce(c->d_scalar, c->d_scalar, 1, ncclFloat, ncclSum, c->nccl_comm, c->nccl_stream));
    cudaCheck(cudaMemcpyAsync(&value, c->d_scalar, sizeof(float), cudaMemcpyDeviceToHost, c->nccl_stream));
    cudaCheck(cudaStreamSynchronize(c->nccl_stream));
    return value;
}

// n int64 counts (host memory) summed over all ranks, in place: -E's per-distance tallies; blocks
static void multi_gpu_cpu_int64_sum(long long *v, int n, const MultiGpuConfig *c) {
    if (c->num_processes == 1 || n <= 0) return;
    long long *d;
    cudaCheck(cudaMalloc((void **)&d, (size_t)n * sizeof(long long)));
    cudaCheck(cudaMemcpyAsync(d, v, (size_t)n * sizeof(long long), cudaMemcpyHostToDevice, c->nccl_stream));
    ncclCheck(ncclAllReduce(d, d, (size_t)n, ncclInt64, ncclSum, c->nccl_comm, c->nccl_stream));
    cudaCheck(cudaMemcpyAsync(v, d, (size_t)n * sizeof(long long), cudaMemcpyDeviceToHost, c->nccl_stream));
    cudaCheck(cudaStreamSynchronize(c->nccl_stream));
    cudaCheck(cudaFree(d));
}

// an int that every rank must hold the same (the step to resume from, ...): returns it, or stops every
// rank with an error naming `what` when they differ; blocks
static int multi_gpu_agree_int(int value, const char *what, const MultiGpuConfig *c) {
    if (c->num_processes == 1) return value;
    int h[2] = { value, -value };   // one all-reduce (max) gives the maximum and minus the minimum
    cudaCheck(cudaMemcpyAsync(c->d_ints, h, sizeof(h), cudaMemcpyHostToDevice, c->nccl_stream));
    ncclCheck(ncclAllReduce(c->d_ints, c->d_ints, 2, ncclInt32, ncclMax, c->nccl_comm, c->nccl_stream));
    cudaCheck(cudaMemcpyAsync(h, c->d_ints, sizeof(h), cudaMemcpyDeviceToHost, c->nccl_stream));
    cudaCheck(cudaStreamSynchronize(c->nccl_stream));
    if (h[0] != -h[1])
        fatal("the %d ranks disagree on %s: values from %d to %d, this rank (%d) has %d", c->num_processes, what,
              -h[1], h[0], c->process_rank, value);
    return value;
}

// every rank waits here until all ranks arrive (host and device work before it done)
static void multi_gpu_barrier(const MultiGpuConfig *c) {
    if (c->num_processes == 1) return;
    cudaCheck(cudaDeviceSynchronize());
    multi_gpu_cpu_float_sum(0.0f, c);
}

// ----------------------------------------------------------------------------
// partition

// allocation length of buffers that take part in reduce-scatter / all-gather (params, grads)
static size_t multi_gpu_padded_size(size_t elements, const MultiGpuConfig *c) {
    return dist_padded_size(elements, c->num_processes);
}

// the part of a flat vector of `elements` this rank owns: its shard when the ZeRO stage shards at
// `shard_at_stage` (optimizer state: 1), else everything
static ShardInfo multi_gpu_get_shard_offset(size_t elements, const MultiGpuConfig *c, int shard_at_stage) {
    if (c->zero_stage >= shard_at_stage) return dist_shard(elements, c->process_rank, c->num_processes);
    ShardInfo all = { 0, elements, elements };
    return all;
}

// ----------------------------------------------------------------------------
// gradient reduction, asynchronous on the NCCL stream

// work queued on the NCCL stream after this waits for the work queued on `stream` so far (the other direction:
// multi_gpu_wait_gradients)
static void multi_gpu_nccl_after(MultiGpuConfig *c, cudaStream_t stream) {
    cudaCheck(cudaEventRecord(c->compute_done, stream));
    cudaCheck(cudaStreamWaitEvent(c->nccl_stream, c->compute_done, 0));
}

// The ranges [begins[i], begins[i]+counts[i]) of the flat gradient buffer `grads` (num_parameters
// real elements, allocated with multi_gpu_padded_size) hold final gradients once the work queued so far
// on `stream` is done. Stage 0: all-reduce them (average). Stage 1: average each range onto the rank
// that owns it, cut at shard boundaries; a range that is the whole padded buffer is one in-place
// reduce-scatter. After stage 1 only the owner's part of `grads` holds averaged gradients.
// Returns at once; call multi_gpu_wait_gradients before the optimizer reads the gradients.
template <typename T>
static void multi_gpu_reduce_gradient_ranges(T *grads, size_t num_parameters, const size_t *begins,
                                             const size_t *counts, int n, MultiGpuConfig *c, cudaStream_t stream) {
    if (c->num_processes == 1) return;
    size_t padded = multi_gpu_padded_size(num_parameters, c);
    ShardInfo mine = dist_shard(num_parameters, c->process_rank, c->num_processes);
    multi_gpu_nccl_after(c, stream);
    ncclCheck(ncclGroupStart());
    for (int i = 0; i < n; i++) {
        size_t b = begins[i], end = begins[i] + counts[i];
        if (b == end) continue;
        if (end > padded) fatal("gradient range [%zu, %zu) is outside the buffer of %zu", b, end, padded);
        if (c->zero_stage == 0) {
            ncclCheck(ncclAllReduce(grads + b, grads + b, end - b, nccl_type<T>(), ncclAvg, c->nccl_comm, c->nccl_stream));
        } else if (b == 0 && end == padded) {
            ncclCheck(ncclReduceScatter(grads, grads + mine.offset, mine.size, nccl_type<T>(), ncclAvg,
                                        c->nccl_comm, c->nccl_stream));
        } else {
            while (b < end) {   // one reduce per owning rank
                int owner;
                size_t stop = dist_owner_piece(b, end, mine.size, &owner);
                ncclCheck(ncclReduce(grads + b, grads + b, stop - b, nccl_type<T>(), ncclAvg, owner,
                                     c->nccl_comm, c->nccl_stream));
                b = stop;
            }
        }
    }
    ncclCheck(ncclGroupEnd());
}

// work queued on `stream` after this waits for every reduction queued so far
static void multi_gpu_wait_gradients(MultiGpuConfig *c, cudaStream_t stream) {
    if (c->num_processes == 1) return;
    cudaCheck(cudaEventRecord(c->nccl_done, c->nccl_stream));
    cudaCheck(cudaStreamWaitEvent(stream, c->nccl_done, 0));
}

// n values in device memory summed over all ranks, in place, without the host waiting: on the NCCL stream after
// `stream`'s work so far (and after the reductions already there); with join, `stream`'s later work waits for the
// sum (else a later multi_gpu_wait_gradients does). The step's loss and stop signals, ZeRO-1's norm^2.
template <typename T>
static void multi_gpu_sum_device(T *d, size_t n, MultiGpuConfig *c, cudaStream_t stream, int join) {
    if (c->num_processes == 1) return;
    multi_gpu_nccl_after(c, stream);
    ncclCheck(ncclAllReduce(d, d, n, nccl_type<T>(), ncclSum, c->nccl_comm, c->nccl_stream));
    if (join) multi_gpu_wait_gradients(c, stream);
}

// stage 1, after each rank updated its shard of `params` (padded buffer): every rank gets all shards
template <typename T>
static void multi_gpu_gather_params(T *params, size_t num_parameters, MultiGpuConfig *c, cudaStream_t stream) {
    if (c->num_processes == 1 || c->zero_stage == 0) return;
    ShardInfo mine = dist_shard(num_parameters, c->process_rank, c->num_processes);
    ncclCheck(ncclAllGather(params + mine.offset, params, mine.size, nccl_type<T>(), c->nccl_comm, stream));
}

// ----------------------------------------------------------------------------
// checkpoints: full arrays in DESIGN.md order, whatever the world size

// `d_part` is this rank's part of a flat optimizer-state array of `elements` (its shard in stage 1,
// the whole array in stage 0), complete (synchronize the stream that wrote it first). Rank 0 receives
// every part into h_full[elements] (the padding is dropped); the other ranks pass h_full = NULL.
// Blocking; every rank must call it.
template <typename T>
static void multi_gpu_gather_to_host(const T *d_part, size_t elements, T *h_full, const MultiGpuConfig *c) {
    ShardInfo mine = multi_gpu_get_shard_offset(elements, c, 1);
    if (c->process_rank == 0)
        cudaCheck(cudaMemcpy(h_full + mine.offset, d_part, mine.valid * sizeof(T), cudaMemcpyDeviceToHost));
    if (c->num_processes == 1 || c->zero_stage == 0) return;
    T *d_tmp = NULL;
    if (c->process_rank == 0) cudaMallocCheck(&d_tmp, mine.size * sizeof(T));
    for (int r = 1; r < c->num_processes; r++) {   // one shard at a time: rank 0 needs one shard of scratch
        ShardInfo s = dist_shard(elements, r, c->num_processes);
        if (s.valid == 0) continue;
        if (c->process_rank == r) ncclCheck(ncclSend(d_part, s.valid, nccl_type<T>(), 0, c->nccl_comm, c->nccl_stream));
        if (c->process_rank == 0) ncclCheck(ncclRecv(d_tmp, s.valid, nccl_type<T>(), r, c->nccl_comm, c->nccl_stream));
        cudaCheck(cudaStreamSynchronize(c->nccl_stream));
        if (c->process_rank == 0)
            cudaCheck(cudaMemcpy(h_full + s.offset, d_tmp, s.valid * sizeof(T), cudaMemcpyDeviceToHost));
    }
    if (d_tmp != NULL) cudaCheck(cudaFree(d_tmp));
}

// resume: every rank read the full array h_full[elements] from the checkpoint and keeps its part
// (its shard in stage 1, padding zeroed; everything in stage 0)
template <typename T>
static void multi_gpu_copy_shard_from_host(T *d_part, const T *h_full, size_t elements, const MultiGpuConfig *c) {
    ShardInfo mine = multi_gpu_get_shard_offset(elements, c, 1);
    cudaCheck(cudaMemcpy(d_part, h_full + mine.offset, mine.valid * sizeof(T), cudaMemcpyHostToDevice));
    cudaCheck(cudaMemset(d_part + mine.valid, 0, (mine.size - mine.valid) * sizeof(T)));
    cudaCheck(cudaDeviceSynchronize());   // done before any stream (blocking or not) reads d_part
}

#endif // SESSA_ZERO_CUH
