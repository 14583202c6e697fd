/*
 The cuBLASLt algorithm table of llmc/matmul.cuh (gemm_choice): for a (GPU, problem signature), which of the
 heuristic's results to run instead of its first. Measured, never timed at run time, so results stay bitwise
 reproducible; a problem not listed, or another GPU, keeps the heuristic's first. To remake it on a GPU:
 `scripts/gpu_session.sh gemmtune` (SESSA_GEMM_TUNE=1 prints one "gemm-choice" line per problem that another
 result beats by more than 3%); entries are kept where the gain is >= 5% and >= 0.5 us.
*/
#ifndef SESSA_GEMM_CHOICES_H
#define SESSA_GEMM_CHOICES_H

// (GPU, signature) -> heuristic result index; measured with SESSA_GEMM_TUNE=1 (`scripts/gpu_session.sh gemmtune`:
// d12 B=8 and B=16 T=1024, d4w256h4 B=8 T=256, and below d12 B=1 T=8192; the candidates timed in interleaved rounds, best round each) on an
// H200, CUDA 13.0. Kept: the entries that beat the heuristic's first by >= 5% and >= 0.5 us (the head's forward
// -10%, Linear_in -8%, the stacked projection -7%; the rest are the feedback's batched GEMMs and the small model's).
// A problem not listed, or another GPU, keeps the heuristic's first.
typedef struct { const char *gpu, *sig; int index; } GemmChoice;
static const GemmChoice gemm_choices[] = {
    { "NVIDIA H200", "m1536 n8192 k768 b1 ld768,768,1536 s0,0,0 t10 c14 e1 beta0 al256,256,256,256", 7 },   // 31.0 us, the first 33.7
    { "NVIDIA H200", "m3840 n8192 k768 b1 ld768,768,3840 s0,0,0 t10 c14 e1 beta0 al256,256,256,256", 5 },   // 73.6 us, the first 78.8
    { "NVIDIA H200", "m256 n768 k768 b8 ld3840,3840,1024 s3932160,3932160,262144 t01 c0 e0 beta0 al256,256,256,256", 4 },   // 8.9 us, the first 9.5
    { "NVIDIA H200", "m256 n768 k768 b8 ld3072,768,768 s786432,2359296,196608 t00 c0 e0 beta0 al256,256,256,256", 3 },   // 8.7 us, the first 9.3
    { "NVIDIA H200", "m768 n8192 k768 b1 ld768,768,768 s0,0,0 t10 c14 e1 beta1 al256,256,256,256", 3 },   // 18.1 us, the first 19.5
    { "NVIDIA H200", "m50304 n8192 k768 b1 ld768,768,50304 s0,0,0 t10 c14 e0 beta0 al256,256,256,256", 5 },   // 785.1 us, the first 874.5
    { "NVIDIA H200", "m512 n256 k2304 b8 ld2304,2304,256 s2359296,589824,262144 t01 c0 e0 beta0 al256,256,256,256", 1 },   // 12.1 us, the first 13.7
    { "NVIDIA H200", "m256 n768 k512 b8 ld768,3840,3840 s786432,3932160,3932160 t10 c14 e0 beta0 al256,256,256,256", 1 },   // 7.4 us, the first 8.3
    { "NVIDIA H200", "m1536 n16384 k768 b1 ld768,768,1536 s0,0,0 t10 c14 e1 beta0 al256,256,256,256", 6 },   // 55.5 us, the first 60.6
    { "NVIDIA H200", "m768 n16384 k768 b1 ld768,768,768 s0,0,0 t10 c14 e0 beta0 al256,256,256,256", 7 },   // 32.7 us, the first 36.0
    { "NVIDIA H200", "m256 n256 k768 b16 ld3840,3840,1024 s3932160,3932160,262144 t01 c0 e0 beta0 al256,256,256,256", 1 },   // 8.1 us, the first 8.6
    { "NVIDIA H200", "m256 n768 k768 b16 ld3840,3840,1024 s3932160,3932160,262144 t01 c0 e0 beta0 al256,256,256,256", 2 },   // 12.5 us, the first 13.3
    { "NVIDIA H200", "m768 n16384 k768 b1 ld768,768,768 s0,0,0 t10 c14 e1 beta1 al256,256,256,256", 7 },   // 32.8 us, the first 36.5
    { "NVIDIA H200", "m50304 n16384 k768 b1 ld768,768,50304 s0,0,0 t10 c14 e0 beta0 al256,256,256,256", 6 },   // 1672.2 us, the first 2035.6
    { "NVIDIA H200", "m768 n16384 k768 b1 ld768,768,768 s0,0,0 t00 c14 e0 beta0 al256,256,256,256", 7 },   // 38.2 us, the first 42.4
    { "NVIDIA H200", "m768 n768 k16384 b1 ld768,768,768 s0,0,0 t01 c0 e0 beta1 al256,256,256,256", 1 },   // 45.3 us, the first 48.2
    { "NVIDIA H200", "m768 n768 k16384 b1 ld768,768,768 s0,0,0 t01 c0 e0 beta0 al256,256,256,256", 1 },   // the same weight gradient written (beta 0, the first micro-step): cuBLASLt's heuristic does not see beta, so the same ranking
    { "NVIDIA H200", "m256 n768 k256 b16 ld768,3840,3840 s786432,3932160,3932160 t10 c14 e0 beta0 al256,256,256,256", 1 },   // 8.0 us, the first 8.5
    { "NVIDIA H200", "m256 n768 k256 b16 ld768,3840,768 s786432,3932160,786432 t00 c0 e0 beta1 al256,256,256,256", 2 },   // 9.6 us, the first 10.3
    { "NVIDIA H200", "m768 n256 k768 b16 ld3840,3840,256 s3932160,3932160,262144 t01 c0 e0 beta0 al256,256,256,256", 1 },   // 12.7 us, the first 13.4
    { "NVIDIA H200", "m256 n768 k768 b16 ld256,768,768 s786432,2359296,196608 t10 c0 e0 beta0 al256,256,256,256", 2 },   // 12.6 us, the first 13.3
    { "NVIDIA H200", "m1280 n2048 k256 b1 ld256,256,1280 s0,0,0 t10 c14 e1 beta0 al256,256,256,256", 4 },   // 7.9 us, the first 8.6
    { "NVIDIA H200", "m256 n2048 k256 b1 ld256,256,256 s0,0,0 t10 c14 e0 beta0 al256,256,256,256", 5 },   // 7.4 us, the first 8.3
    // d4w256h4's head dX (dlogits wte, K = 50304), chosen inside the step where it runs beside the head's weight
    // gradient (SESSA_GEMM_PICK, the thirteenth session, 3 rounds in one call, d4w256h4 B=8 T=256 tok/s): result 1
    // 1.837M, 1.847M, 1.820M against the first's 1.825M, 1.800M, 1.813M (alone, gemmtune saw no 5% gain); with
    // attention forward version 10 (llmc/attention_sm90.cuh) ~+1% pooled over two calls, inside a call's spread
    { "NVIDIA H200", "m256 n2048 k50304 b1 ld256,50304,256 s0,0,0 t00 c14 e0 beta0 al256,256,256,256", 1 },
    { "NVIDIA H200", "m256 n256 k256 b8 ld1280,1280,256 s327680,327680,65536 t01 c0 e0 beta0 al256,256,256,256", 3 },   // 7.4 us, the first 7.9
    { "NVIDIA H200", "m50304 n2048 k256 b1 ld256,256,50304 s0,0,0 t10 c14 e0 beta0 al256,256,256,256", 4 },   // 85.9 us, the first 96.5
    { "NVIDIA H200", "m256 n2048 k256 b1 ld256,256,256 s0,0,0 t00 c14 e0 beta0 al256,256,256,256", 3 },   // 7.4 us, the first 8.2
    { "NVIDIA H200", "m256 n256 k768 b8 ld768,768,256 s196608,196608,65536 t01 c0 e0 beta0 al256,256,256,256", 6 },   // 7.6 us, the first 8.5
    { "NVIDIA H200", "m256 n2048 k512 b1 ld256,512,256 s0,0,0 t00 c14 e0 beta0 al256,256,256,256", 1 },   // 7.1 us, the first 7.7
    { "NVIDIA H200", "m256 n512 k2048 b1 ld256,512,256 s0,0,0 t01 c0 e0 beta1 al256,256,256,256", 1 },   // 7.8 us, the first 8.3
    { "NVIDIA H200", "m256 n512 k2048 b1 ld256,512,256 s0,0,0 t01 c0 e0 beta0 al256,256,256,256", 1 },   // the same weight gradient written (beta 0, the first micro-step): cuBLASLt's heuristic does not see beta, so the same ranking
    // d12 B=1 T=8192 with 512-row feedback superblocks (the eighth session's gemmtune, GT_B1=1, SESSA_FB_S=512;
    // 27 of its 45 lines kept: ~39 us a layer, ~0.5 ms a step)
    { "NVIDIA H200", "m512 n512 k768 b1 ld3840,3840,8192 s31457280,31457280,4194304 t01 c0 e0 beta0 al256,256,256,256", 2 },   // 9.5 us, the first 10.4
    { "NVIDIA H200", "m512 n1024 k768 b1 ld3840,3840,8192 s31457280,31457280,4194304 t01 c0 e0 beta0 al256,256,256,256", 5 },   // 9.2 us, the first 10.0
    { "NVIDIA H200", "m512 n2560 k768 b1 ld3840,3840,8192 s31457280,31457280,4194304 t01 c0 e0 beta0 al256,256,256,256", 2 },   // 10.0 us, the first 10.8
    { "NVIDIA H200", "m512 n768 k7680 b1 ld24576,768,768 s12582912,18874368,393216 t00 c0 e0 beta0 al256,256,256,256", 5 },   // 15.7 us, the first 16.8
    { "NVIDIA H200", "m512 n4096 k768 b1 ld3840,3840,8192 s31457280,31457280,4194304 t01 c0 e0 beta0 al256,256,256,256", 2 },   // 12.8 us, the first 14.1
    { "NVIDIA H200", "m512 n768 k9216 b1 ld24576,768,768 s12582912,18874368,393216 t00 c0 e0 beta0 al256,256,256,256", 2 },   // 17.7 us, the first 18.7
    { "NVIDIA H200", "m512 n5120 k768 b1 ld3840,3840,8192 s31457280,31457280,4194304 t01 c0 e0 beta0 al256,256,256,256", 1 },   // 15.5 us, the first 16.4
    { "NVIDIA H200", "m512 n7680 k768 b1 ld3840,3840,8192 s31457280,31457280,4194304 t01 c0 e0 beta0 al256,256,256,256", 2 },   // 21.5 us, the first 23.8
    { "NVIDIA H200", "m512 n8192 k768 b1 ld3840,3840,8192 s31457280,31457280,4194304 t01 c0 e0 beta0 al256,256,256,256", 4 },   // 21.4 us, the first 23.6
    { "NVIDIA H200", "m768 n8192 k768 b1 ld768,768,768 s0,0,0 t00 c14 e0 beta0 al256,256,256,256", 3 },   // 19.7 us, the first 20.8
    { "NVIDIA H200", "m512 n512 k768 b1 ld3840,3840,512 s31457280,31457280,4194304 t01 c0 e0 beta0 al256,256,256,256", 4 },   // 7.5 us, the first 8.1
    { "NVIDIA H200", "m512 n768 k1024 b1 ld1536,3840,3840 s12582912,31457280,31457280 t10 c14 e0 beta0 al256,256,256,256", 2 },   // 7.2 us, the first 8.1
    { "NVIDIA H200", "m1024 n768 k512 b1 ld1536,3840,768 s12582912,31457280,6291456 t00 c0 e0 beta1 al256,256,256,256", 5 },   // 8.1 us, the first 8.7
    { "NVIDIA H200", "m1536 n768 k512 b1 ld1536,3840,768 s12582912,31457280,6291456 t00 c0 e0 beta1 al256,256,256,256", 5 },   // 8.4 us, the first 8.9
    { "NVIDIA H200", "m2560 n768 k512 b1 ld1536,3840,768 s12582912,31457280,6291456 t00 c0 e0 beta1 al256,256,256,256", 3 },   // 11.2 us, the first 12.6
    { "NVIDIA H200", "m3584 n512 k768 b1 ld3840,3840,512 s31457280,31457280,4194304 t01 c0 e0 beta0 al256,256,256,256", 3 },   // 12.7 us, the first 13.9
    { "NVIDIA H200", "m512 n768 k7680 b1 ld512,768,768 s12582912,18874368,393216 t10 c0 e0 beta0 al256,256,256,256", 4 },   // 16.1 us, the first 17.0
    { "NVIDIA H200", "m3072 n768 k512 b1 ld1536,3840,768 s12582912,31457280,6291456 t00 c0 e0 beta1 al256,256,256,256", 4 },   // 12.4 us, the first 13.2
    { "NVIDIA H200", "m4096 n512 k768 b1 ld3840,3840,512 s31457280,31457280,4194304 t01 c0 e0 beta0 al256,256,256,256", 2 },   // 12.9 us, the first 13.9
    { "NVIDIA H200", "m512 n768 k9216 b1 ld512,768,768 s12582912,18874368,393216 t10 c0 e0 beta0 al256,256,256,256", 4 },   // 17.5 us, the first 19.0
    { "NVIDIA H200", "m4608 n512 k768 b1 ld3840,3840,512 s31457280,31457280,4194304 t01 c0 e0 beta0 al256,256,256,256", 1 },   // 14.8 us, the first 16.6
    { "NVIDIA H200", "m4096 n768 k512 b1 ld1536,3840,768 s12582912,31457280,6291456 t00 c0 e0 beta1 al256,256,256,256", 3 },   // 15.2 us, the first 16.1
    { "NVIDIA H200", "m6144 n512 k768 b1 ld3840,3840,512 s31457280,31457280,4194304 t01 c0 e0 beta0 al256,256,256,256", 2 },   // 17.3 us, the first 18.9
    { "NVIDIA H200", "m5632 n768 k512 b1 ld1536,3840,768 s12582912,31457280,6291456 t00 c0 e0 beta1 al256,256,256,256", 2 },   // 19.6 us, the first 21.4
    { "NVIDIA H200", "m8192 n512 k768 b1 ld3840,3840,512 s31457280,31457280,4194304 t01 c0 e0 beta0 al256,256,256,256", 2 },   // 21.1 us, the first 23.5
    { "NVIDIA H200", "m7680 n768 k512 b1 ld1536,3840,768 s12582912,31457280,6291456 t00 c0 e0 beta1 al256,256,256,256", 6 },   // 23.6 us, the first 28.4
    { "NVIDIA H200", "m8192 n768 k512 b1 ld1536,3840,768 s12582912,31457280,6291456 t00 c0 e0 beta1 al256,256,256,256", 5 },   // 24.5 us, the first 28.7
    { NULL, NULL, 0 }   // end
};

#endif // SESSA_GEMM_CHOICES_H
