/*
 A kernel timeline of any CUDA program, concurrent streams included (Nsight Systems is not on the lent GPU machines;
 ncu serializes kernels, so its times say nothing about overlap). A CUPTI injection library: the CUDA driver loads
 it when CUDA_INJECTION64_PATH names it and calls InitializeInjection, which turns on CUPTI's concurrent-kernel
 activity records (start and end on the GPU's clock, stream, grid, block, registers per thread, shared memory per
 block (static + dynamic), name; kernels replayed from CUDA graphs included). At exit every record goes to the CSV
 file named by SESSA_TIMELINE (default timeline.csv):
   start_ns,end_ns,stream,grid,block,regs,smem,name
 dev/timeline/timeline.py turns it into a step's critical-path summary. Build: dev/timeline/build.sh (it finds
 CUPTI's header and library: the CUDA toolkit's extras/CUPTI, or the nvidia-cuda-cupti wheel PyTorch brings).
 Cost: CUPTI's per-kernel bookkeeping (~1 us of host time per launch; kernels in a graph launch themselves), so
 the timeline is of a slightly slower run: use it for where the time goes, the trainer's own timing for how much.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <cupti.h>

#ifndef KERNEL_RECORD
#define KERNEL_RECORD CUpti_ActivityKernel11   // the newest in CUPTI 13's header; build.sh passes the installed one
#endif

#define CHECK(call) do { CUptiResult r_ = (call); if (r_ != CUPTI_SUCCESS) { const char *s_; cuptiGetResultString(r_, &s_); \
    fprintf(stderr, "cupti_trace: %s failed: %s\n", #call, s_); } } while (0)

// the records, copied out of CUPTI's buffers as they complete (names are CUPTI's: valid until the process ends)
typedef struct { uint64_t start, end; uint32_t stream; int32_t grid, block, regs, smem; const char *name; } Rec;
static Rec *recs = NULL;
static size_t nrec = 0, caprec = 0;
static uint64_t dropped = 0;

#define BUF_SIZE (8u << 20)
static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    *buffer = (uint8_t *)aligned_alloc(8, BUF_SIZE);
    *size = BUF_SIZE;
    *max_records = 0;
}
static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid) {
    (void)ctx; (void)stream; (void)size;
    CUpti_Activity *rec = NULL;
    while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
        if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && rec->kind != CUPTI_ACTIVITY_KIND_KERNEL) continue;
        const KERNEL_RECORD *k = (const KERNEL_RECORD *)rec;
        if (nrec == caprec) {
            caprec = caprec ? 2 * caprec : 1 << 16;
            recs = (Rec *)realloc(recs, caprec * sizeof(Rec));
            if (recs == NULL) { fprintf(stderr, "cupti_trace: out of memory\n"); exit(1); }
        }
        recs[nrec++] = (Rec){ k->start, k->end, k->streamId, k->gridX * k->gridY * k->gridZ,
                              k->blockX * k->blockY * k->blockZ, (int32_t)k->registersPerThread,
                              (int32_t)(k->staticSharedMemory + k->dynamicSharedMemory), k->name };
    }
    size_t d = 0;
    cuptiActivityGetNumDroppedRecords(ctx, stream, &d);
    dropped += d;
    free(buffer);
}

static void write_timeline(void) {
    CHECK(cuptiActivityFlushAll(1));
    const char *path = getenv("SESSA_TIMELINE");
    if (path == NULL) path = "timeline.csv";
    FILE *f = fopen(path, "w");
    if (f == NULL) { fprintf(stderr, "cupti_trace: cannot write %s\n", path); return; }
    fprintf(f, "start_ns,end_ns,stream,grid,block,regs,smem,name\n");
    for (size_t i = 0; i < nrec; i++)
        fprintf(f, "%llu,%llu,%u,%d,%d,%d,%d,%s\n", (unsigned long long)recs[i].start, (unsigned long long)recs[i].end,
                recs[i].stream, recs[i].grid, recs[i].block, recs[i].regs, recs[i].smem, recs[i].name ? recs[i].name : "?");
    fclose(f);
    fprintf(stderr, "cupti_trace: %zu kernels into %s%s\n", nrec, path, dropped ? " (some records dropped)" : "");
}

int InitializeInjection(void) {
    CHECK(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed));
    CHECK(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL));
    atexit(write_timeline);
    return 1;
}
