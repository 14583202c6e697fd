/*
 Multi-GPU test of llmc/zero.cuh: gradient all-reduce (ZeRO 0), reduce-scatter by ranges and as a
 whole (ZeRO 1), the trainer's layer-by-layer reduction overlapped with a compute stream, parameter
 all-gather, checkpoint gather/scatter, float sum, int agreement, barrier.
 Build (also the compile check of zero.cuh, with and without MPI):
   nvcc -O2 -arch=sm_90 -std=c++17 dev/test/test_zero.cu -lnccl -o test_zero
   nvcc -O2 -arch=sm_90 -std=c++17 -DUSE_MPI -I/usr/lib/x86_64-linux-gnu/openmpi/include dev/test/test_zero.cu \
        -lnccl -L/usr/lib/x86_64-linux-gnu/openmpi/lib -lmpi -o test_zero_mpi
 Run: ./test_zero [id_method]   alone (world size 1), or one process per GPU under any launcher, e.g.
   for r in 0 1; do RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 ./test_zero tcp & done; wait
   mpirun -np 2 ./test_zero_mpi mpi
 Prints "N passed, M failed" on every rank; exit status 0 only when all pass.
 Copies (all-gather, checkpoint gather/scatter) and the float sum of small integers must be exact.
 Averages are compared with a relative tolerance (of max(1, |mean|)): fp32 1e-6 (a few roundings of
 2^-24); bf16 0.02 (NCCL's average scales each value by 1/W and adds up to W <= 8 terms in a ring or
 tree, about 4 roundings of the bf16 unit roundoff 2^-8 = 0.0039, i.e. <= 0.016).
*/
#include "../../llmc/zero.cuh"

static int passed = 0, failed = 0;
static void check(int ok, const char *what, int rank) {
    if (ok) passed++; else { failed++; printf("rank %d FAIL: %s\n", rank, what); }
}

// value of element i on rank r before the reduction: small integers
__host__ __device__ static float grad_value(size_t i, int r) { return (float)((i * 7 + (size_t)r * 3) % 64); }

template <typename T>
static void to_device(T *d, const float *h, size_t n) {
    T *tmp = (T *)mallocCheck(n * sizeof(T));
    for (size_t i = 0; i < n; i++) tmp[i] = (T)h[i];
    cudaCheck(cudaMemcpy(d, tmp, n * sizeof(T), cudaMemcpyHostToDevice));
    free(tmp);
}
template <typename T>
static void to_host(float *h, const T *d, size_t n) {
    T *tmp = (T *)mallocCheck(n * sizeof(T));
    cudaCheck(cudaMemcpy(tmp, d, n * sizeof(T), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) h[i] = (float)tmp[i];
    free(tmp);
}

// gradients: ranks fill their own values, reduce (by layer-like ranges, or whole), compare with the mean
template <typename T>
static void test_reduce(MultiGpuConfig *mg, size_t n, int by_ranges, const char *name, float tol) {
    int W = mg->num_processes, R = mg->process_rank;
    size_t P = multi_gpu_padded_size(n, mg);
    float *h = (float *)callocCheck(P, sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = grad_value(i, R);
    T *d;
    cudaMallocCheck(&d, P * sizeof(T));
    to_device(d, h, P);
    if (by_ranges) {   // 3 "tensor kinds" x 2 "layers", kind-major like the checkpoint: reduce layer 1 then 0
        size_t k = n / 3, begins[3], counts[3];
        for (int layer = 1; layer >= 0; layer--) {
            for (int j = 0; j < 3; j++) {
                begins[j] = j * k + (layer ? k / 2 : 0);
                counts[j] = layer ? (j == 2 ? P : (j + 1) * k) - begins[j] : k / 2;
            }
            multi_gpu_reduce_gradient_ranges(d, n, begins, counts, 3, mg, 0);
        }
    } else {
        size_t begin = 0;   // the whole buffer as one range, as after the whole backward
        multi_gpu_reduce_gradient_ranges(d, n, &begin, &P, 1, mg, 0);
    }
    multi_gpu_wait_gradients(mg, 0);
    to_host(h, d, P);
    ShardInfo mine = multi_gpu_get_shard_offset(n, mg, 1);
    int ok = 1;
    for (size_t i = mine.offset; i < mine.offset + mine.valid; i++) {
        float mean = 0.0f;
        for (int r = 0; r < W; r++) mean += grad_value(i, r);
        mean /= W;
        ok &= fabsf(h[i] - mean) <= tol * fmaxf(1.0f, fabsf(mean));
    }
    for (size_t i = n; i < P; i++) ok &= h[i] == 0.0f;   // padding stays zero
    char what[128];
    snprintf(what, sizeof(what), "%s stage %d n=%zu %s", name, mg->zero_stage, n, by_ranges ? "ranges" : "whole");
    check(ok, what, R);
    cudaCheck(cudaFree(d));
    free(h);
}

// The trainer's overlap (train_sessa.cu, model_backward): the gradients of a kind-major layout (a tensor not
// tied to layers, then K kinds of L layers each, every tensor starting at a multiple of 128 elements, zero
// gaps) become final layer by layer, L-1 .. 0, on a compute stream, and each layer's K ranges go to the
// reduction as soon as they are queued. A slow kernel runs before each layer's values are written, so the
// NCCL stream reads stale zeros unless it waits for the compute stream as it must.
__global__ void spin_kernel(long long cycles) {
    long long t0 = clock64();
    while (clock64() - t0 < cycles) {}
}
template <typename T>
__global__ void fill_kernel(T *d, size_t begin, size_t count, int rank) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) d[begin + i] = (T)grad_value(begin + i, rank);
}
template <typename T>
static void test_overlap(MultiGpuConfig *mg, const char *name, float tol) {
    const int K = 3, L = 4;
    const size_t head = 300, per_layer = 37, align = 128;
    size_t kind_off[K], off = (head + align - 1) / align * align;
    for (int k = 0; k < K; k++) { kind_off[k] = off; off += (L * per_layer + align - 1) / align * align; }
    size_t n = off, P = multi_gpu_padded_size(n, mg);
    T *d;
    cudaMallocCheck(&d, P * sizeof(T));
    cudaCheck(cudaMemset(d, 0, P * sizeof(T)));
    cudaCheck(cudaDeviceSynchronize());   // the non-blocking stream below does not wait for the memset
    cudaStream_t st;
    cudaCheck(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    size_t begins[K], counts[K];
    for (int l = L - 1; l >= 0; l--) {
        spin_kernel<<<1, 1, 0, st>>>(10000000LL);   // a few ms of "backward"
        for (int k = 0; k < K; k++) {
            begins[k] = kind_off[k] + (size_t)l * per_layer;
            counts[k] = per_layer;
            fill_kernel<<<ceil_div((long long)per_layer, 256), 256, 0, st>>>(d, begins[k], per_layer, mg->process_rank);
        }
        multi_gpu_reduce_gradient_ranges(d, n, begins, counts, K, mg, st);
    }
    spin_kernel<<<1, 1, 0, st>>>(10000000LL);
    fill_kernel<<<ceil_div((long long)head, 256), 256, 0, st>>>(d, 0, head, mg->process_rank);
    size_t b0 = 0;
    multi_gpu_reduce_gradient_ranges(d, n, &b0, &head, 1, mg, st);
    multi_gpu_wait_gradients(mg, st);
    cudaCheck(cudaStreamSynchronize(st));
    float *h = (float *)mallocCheck(P * sizeof(float));
    to_host(h, d, P);
    ShardInfo mine = multi_gpu_get_shard_offset(n, mg, 1);
    int ok = 1;
    for (size_t i = mine.offset; i < mine.offset + mine.size; i++) {
        int real = i < head;
        for (int k = 0; k < K; k++) real |= i >= kind_off[k] && i < kind_off[k] + L * per_layer;
        float mean = 0.0f;
        for (int r = 0; real && r < mg->num_processes; r++) mean += grad_value(i, r) / mg->num_processes;
        ok &= fabsf(h[i] - mean) <= tol * fmaxf(1.0f, fabsf(mean));   // gaps and padding: 0
    }
    char what[128];
    snprintf(what, sizeof(what), "%s stage %d overlapped layer ranges", name, mg->zero_stage);
    check(ok, what, mg->process_rank);
    cudaCheck(cudaStreamDestroy(st));
    cudaCheck(cudaFree(d));
    free(h);
}

// stage 1: each rank writes its shard of the parameters, all-gather, everyone has the full vector
template <typename T>
static void test_gather_params(MultiGpuConfig *mg, size_t n) {
    size_t P = multi_gpu_padded_size(n, mg);
    ShardInfo mine = multi_gpu_get_shard_offset(n, mg, 1);
    float *h = (float *)callocCheck(P, sizeof(float));
    for (size_t i = mine.offset; i < mine.offset + mine.valid; i++) h[i] = grad_value(i, 0);
    T *d;
    cudaMallocCheck(&d, P * sizeof(T));
    to_device(d, h, P);
    multi_gpu_gather_params(d, n, mg, 0);
    to_host(h, d, P);
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= h[i] == grad_value(i, 0);
    check(ok, "gather params", mg->process_rank);
    cudaCheck(cudaFree(d));
    free(h);
}

// checkpoint: full array -> every rank's part -> gathered on rank 0 == full array
static void test_checkpoint(MultiGpuConfig *mg, size_t n) {
    float *full = (float *)mallocCheck(n * sizeof(float)), *back = (float *)callocCheck(n, sizeof(float));
    for (size_t i = 0; i < n; i++) full[i] = 0.5f * (float)i - 3.0f;
    ShardInfo mine = multi_gpu_get_shard_offset(n, mg, 1);
    float *d;
    cudaMallocCheck(&d, mine.size * sizeof(float));
    multi_gpu_copy_shard_from_host(d, full, n, mg);
    multi_gpu_gather_to_host(d, n, mg->process_rank == 0 ? back : (float *)NULL, mg);
    if (mg->process_rank == 0) check(memcmp(full, back, n * sizeof(float)) == 0, "checkpoint gather", 0);
    cudaCheck(cudaFree(d));
    free(full); free(back);
}

int main(int argc, char **argv) {
    MultiGpuConfig mg = multi_gpu_config_init(0, argc > 1 ? argv[1] : "auto");
    int W = mg.num_processes, R = mg.process_rank;
    float sum = multi_gpu_cpu_float_sum((float)(R + 1), &mg);
    check(sum == (float)(W * (W + 1) / 2), "float sum", R);
    check(multi_gpu_agree_int(7, "a shared int", &mg) == 7, "agree int", R);
    multi_gpu_barrier(&mg);
    size_t sizes[3] = { 1000, 997, 5 };   // divisible by 8, not divisible, fewer elements than ranks
    for (int stage = 0; stage <= 1; stage++) {
        mg.zero_stage = stage;   // the same communicator serves both stages
        for (int s = 0; s < 3; s++) {
            for (int by_ranges = 0; by_ranges <= 1; by_ranges++) {
                test_reduce<float>(&mg, sizes[s], by_ranges, "fp32", 1e-6f);
                test_reduce<floatX>(&mg, sizes[s], by_ranges, "bf16", 0.02f);
            }
            test_gather_params<floatX>(&mg, sizes[s]);
            test_checkpoint(&mg, sizes[s]);
        }
        test_overlap<float>(&mg, "fp32", 1e-6f);
        test_overlap<floatX>(&mg, "bf16", 0.02f);
    }
    printf("rank %d of %d: %d passed, %d failed\n", R, W, passed, failed);
    multi_gpu_config_free(&mg);
    return failed == 0 ? 0 : 1;
}
