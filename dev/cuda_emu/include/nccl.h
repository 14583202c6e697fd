// stand-in for <nccl.h> under the CPU emulator (dev/cuda_emu/cuda_emu.h): one process only. The types exist so
// that llmc/zero.cuh compiles; a world of one never calls NCCL, and any call is an error naming the function.
#ifndef SESSA_NCCL_EMU_H
#define SESSA_NCCL_EMU_H
#include "../cuda_emu.h"

typedef enum { ncclSuccess = 0, ncclInvalidUsage = 5 } ncclResult_t;
typedef enum { ncclInt32 = 2, ncclInt64 = 4, ncclFloat = 7, ncclFloat64 = 8, ncclBfloat16 = 9 } ncclDataType_t;
typedef enum { ncclSum = 0, ncclMax = 3, ncclAvg = 4 } ncclRedOp_t;
typedef struct { char internal[128]; } ncclUniqueId;
typedef struct emu_nccl_comm *ncclComm_t;

static const char *ncclGetErrorString(ncclResult_t r) { return r == ncclSuccess ? "no error" : "not emulated (one process only)"; }
static ncclResult_t emu_nccl_call(const char *what) {
    fprintf(stderr, "cuda_emu: %s: NCCL is not emulated, the emulator runs one process\n", what);
    return ncclInvalidUsage;
}
static ncclResult_t ncclGetUniqueId(ncclUniqueId *) { return emu_nccl_call("ncclGetUniqueId"); }
static ncclResult_t ncclCommInitRank(ncclComm_t *, int, ncclUniqueId, int) { return emu_nccl_call("ncclCommInitRank"); }
static ncclResult_t ncclCommDestroy(ncclComm_t) { return emu_nccl_call("ncclCommDestroy"); }
static ncclResult_t ncclGroupStart(void) { return emu_nccl_call("ncclGroupStart"); }
static ncclResult_t ncclGroupEnd(void) { return emu_nccl_call("ncclGroupEnd"); }
static ncclResult_t ncclAllReduce(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t) { return emu_nccl_call("ncclAllReduce"); }
static ncclResult_t ncclReduce(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, int, ncclComm_t, cudaStream_t) { return emu_nccl_call("ncclReduce"); }
static ncclResult_t ncclReduceScatter(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t) { return emu_nccl_call("ncclReduceScatter"); }
static ncclResult_t ncclAllGather(const void *, void *, size_t, ncclDataType_t, ncclComm_t, cudaStream_t) { return emu_nccl_call("ncclAllGather"); }
static ncclResult_t ncclSend(const void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) { return emu_nccl_call("ncclSend"); }
static ncclResult_t ncclRecv(void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) { return emu_nccl_call("ncclRecv"); }
#endif
