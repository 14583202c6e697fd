/*
 Causal grouped-query attention backward on Hopper (sm_90a): warpgroup MMA (wgmma), the shared-memory layouts,
 descriptors, tile loads and wgmma issue helpers of the forward (llmc/attention_sm90.cuh, which includes this
 file). Same contract as attention_backward in llmc/attention.cuh (which selects it): dout (B,T,H,d), the
 forward's lse (B,H,T) and Delta_t = dO_t . O_t (B,H,T, computed by attention_backward first) -> dq (B,T,H,d),
 dk/dv (B,T,Hkv,d), overwritten; q, dq rows ldq and k, v, dk, dv rows ldkv elements apart (the stacked projection's
 column slices; dout dense); d = 64 or 128; scale 1/sqrt(d). Deterministic: no atomics, every sum in a fixed
 order (dq in its own kernel, dk/dv summing the H/Hkv query heads of a kv head in head order), so a second run
 gives the same bits.
 RoPE's backward (rope != NULL: llmc/rope.cuh's table, row t = position t of the sequence): every dq and dk element
 is written once from an fp32 accumulator by atth_store_rows (llmc/attention_sm90.cuh), where each thread holds
 columns 2tq + 8nd, +1 of its rows, i.e. whole interleaved pairs: it rotates them by -theta (x0 cos + x1 sin,
 x1 cos - x0 sin) after the scaling and rounds once to bf16 (rope_backward after the kernels rounds twice: not the
 same bits, within about one bf16 rounding of them: dev/cuda/attention_backward.cu's check). Every kernel below
 that stores dq or dk takes the table: the dQ kernels, the dK/dV kernels, and in versions 12-17 the diagonal
 block's store of dq in atth_dq_add (a column half of the head at d = 128: the table from pair 32 on). dv is never
 rotated. A row's table entries are loaded before its stores (HD/8 float2, L1/L2 hits: loaded one per pair after
 each store, the rotation cost +36 us a call at d12 B=8 T=1024 against +7.8 now, the separate pass +14.8:
 `attention_backward bench 15`, H200). ptxas -v (nvcc 13), version 3's kernels at d = 64 / 128: dQ 134 / 174, dK/dV
 198 / 245 (134 / 170, 194 / 255 without the rotation); the warp-specialized ones report their launch bound, 168;
 no spills in any of these kernels.

 Math (recomputation from lse, FlashAttention-2/3), P = exp(S/sqrt(d) - lse), dS = P (dP - Delta):
   dQ kernel, per block of 128 query rows (2 warpgroups x 64), over key tiles of 64 up to the diagonal:
     S = Q K_j^T, dP = dO V_j^T   wgmma m64n64k16, A = Q / dO and B = K_j / V_j, all K-major in shared memory
     P (masked where key > row), dS = P (dP - Delta) rounded to bf16
     dQ += dS K_j                 wgmma m64n{d}k16, A = dS from registers (the accumulator layout of dP is the
                                  A layout: llmc/mma.cuh), B = K_j MN-major (as V in the forward's P V)
     dq = dQ / sqrt(d)
   dK/dV kernel, per block of 128 keys (2 warpgroups x 64), over the H/Hkv query heads of the kv head in order
   and, per head, the query tiles of 64 at or after the block's first key:
     S^T = K Q_i^T, dP^T = V dO_i^T   wgmma m64n64k16, all K-major (K, V stay in shared memory for the block)
     P^T = exp(S^T/sqrt(d) - lse_i) (masked where query < key or query >= T), dS^T = P^T (dP^T - Delta_i)
     dV += P^T dO_i, dK += dS^T Q_i   wgmma m64n{d}k16, A = P^T / dS^T from registers (bf16), B = dO_i / Q_i
                                      MN-major
     dk = dK / sqrt(d), dv = dV
 A warpgroup skips a tile wholly on the masked side of the diagonal (its wgmma are per warpgroup; the block's
 barriers are still met by all threads).
 Shared memory (the forward's 1024-byte aligned, 128-byte-swizzled panels of 64 columns, atth_load_tile): dQ kernel
 Q, dO (128 x d) and two stages of K, V (64 x d): 64 / 128 KiB at d = 64 / 128; dK/dV kernel K, V (128 x d), two
 stages of Q, dO (64 x d) and of lse, Delta (64 floats): 65 / 129 KiB (+ 1 KiB for the alignment). One block
 (256 threads) per SM: the registers below.

 Cost. Per (b, h) the causal forward has F = 4 d T(T+1)/2 matmul FLOPs (S, P V). FlashAttention-2's backward
 does 5 products (2.5 F: S, dP, dV, dK, and dQ accumulated with atomics); this one recomputes S and dP in the dQ
 kernel instead (7 products, 3.5 F: dQ kernel 1.5 F, dK/dV kernel 2 F) to stay deterministic without atomics or
 semaphores. Diagonal tiles add about 64/T of work per product (half of a 64-wide tile per row block).
 Bytes: the dQ kernel reads K, V up to the diagonal once per 128-row query block, T^2 d/64 bytes per (b, h), for
 its 1.5 F = 3 d T^2 FLOPs (192 FLOP per byte, mostly L2 hits); the dK/dV kernel likewise Q, dO (256 FLOP per
 byte). Compute bound on an H200 at every benchmarked shape; HBM traffic ~ q, k, v, dout, lse, Delta in, dq, dk,
 dv out.
 Registers per thread (ptxas -v, sm_90a, nvcc 13; d = 64 / 128), no spills: dQ kernel 141 / 175, dK/dV kernel
 194 / 255 (it holds S^T, dP^T: 32 fp32 each, dK, dV: d/2 each, and the bf16 P^T, dS^T fragments: 16 each, 208
 live at d = 128: the reason for 64 keys per warpgroup and 64-query tiles).
 Pipeline: as the forward's version 3 (one cp.async group per tile, double buffered, wait + fence.proxy.async +
 __syncthreads at the top of each tile, every wgmma waited for before the tile ends). Within a tile: S and dP
 issued together, P computed while dP runs; in the dK/dV kernel dV += P^T dO also runs while dS^T is computed.
 Measured (H200, version 3, bench_attention.py): 141-283 TFLOP/s (FA2-counted), 1.1-1.6x the mma.sync backward,
 0.46-0.65x SDPA's. Version 4 (below the version 3 kernels): both kernels warp-specialized as the
 forward's version 5 (a TMA producer warpgroup, mbarrier rings 3 stages deep, the consumers free of load work and
 of the block-wide barrier per tile); predicted 1.2-1.4x version 3, measured (H200, bench_attention.py, FA2-counted)
 201-410 TFLOP/s, 1.3-1.6x version 3, 0.71-0.96x SDPA's (short of 0.8x at T >= 4096).

 Where version 4's time goes (the model behind versions 5-7; B*T = 16384, H200: 132 SMs, one block per SM, ~989
 TFLOP/s of dense bf16 wgmma = 4096 FLOP/clock/SM). Useful wgmma share = the 7 products' FLOPs (3.5 F) / time /
 989 TFLOP/s: d = 64 28% / 38% / 43% at T = 1024 / 4096 / 16384, d = 128 36% / 50% / 57%. Two losses:
 1. The wave's tail. A causal row's blocks are unequal (block i of a head does i + 1 tiles) and a (nb, heads, B)
    grid starts each head's blocks in turn, longest first, so the long blocks of the last heads start late. A
    list-scheduling model (CTAs to the first free SM in launch order, time ~ tiles: dev/cuda/attention_schedule.py)
    gives the SMs' busy share:
    dK/dV 0.92 / 0.92 / 0.99 (MHA) and 0.63-0.79 with GQA (Hkv = 2, 4: few, long blocks: 256 CTAs for 132 SMs at
    T = 4096 Hkv = 2), dQ 0.88-0.92 / 0.88-0.92 / 0.99. Version 5 takes the longest blocks of all heads first
    (atth_block_order; equal sections of heads whose streamed Q, dO or K, V fit 32 MiB of L2, as FlashAttention-3):
    0.97-1.00 everywhere in the model, i.e. 1.07-1.59x per kernel at T <= 4096, ~1.00 at T = 16384.
 2. The consumers in step. Per work item and warpgroup at d = 64: 4 products of 64 x 64 x 64 (512 clocks of
    the SM's tensor cores), 4096 exponentials (256 clocks of the SFU's 16/clock) and ~6 more FP32 operations per
    score (dS, masks, bf16 packing: ~200 issue clocks); both warpgroups wait on the same stage, issue together,
    wait together and then both do their arithmetic while the tensor cores idle: per item pair ~1024 + ~900
    clocks against the measured ~2380 (43% at T = 16384). Version 6 puts the two consumers in ping-pong (named
    barriers, as the forward's version 5: one's S^T, dP^T are issued once the other's S^T is done), so one's
    arithmetic runs under the other's products; at d = 128 the products are twice as long and the arithmetic
    the same, hence the better share there and the smaller expected gain.
 3. Shared-memory bandwidth (128 bytes/clock/SM): an m64n64k16 wgmma with both operands in shared memory reads
    4 KiB in its 32 clocks, exactly that bandwidth; S^T, dP^T (S, dP) are such products, with TMA's writes on
    top: ~0.75 (dK/dV) to ~0.95 (dQ) of the bandwidth at full tensor rate. Version 7 keeps each warpgroup's
    constant operand of them (Q, dO rows; K, V rows at d = 64) in registers as wgmma's A (d/2 registers per
    thread, loaded once by ldmatrix): they read 2 KiB per k-step, ~0.5-0.6 of the bandwidth. The dK/dV kernel's
    fragments at d = 128 (64 registers) do not fit next to dK, dV.
 What stays: 7 products instead of FlashAttention's 5 (S and dP recomputed in the dQ kernel, the price of no
 atomics): at equal product speed 0.71x of a 5-product backward, so 0.8x of SDPA needs our products ~1.13x as
 fast as its.
 Predicted (ms, ratio to attn.log's SDPA; version 5 from the scheduling model; 6 assumes ping-pong hides a sixth
 of version 5's time at d = 64, a tenth at d = 128; 7 another 5% at d = 64, 2% at d = 128: the dQ kernel only):
   B  T      H  Hkv d    v4          v5          v6          v7
   16 1024  12  12  64  0.320 0.88  0.298 0.94  0.248 1.13  0.236 1.19
   16 1024  12   4  64  0.319 0.96  0.275 1.11  0.229 1.33  0.218 1.40
   16 1024   8   8 128  0.336 0.89  0.302 0.99  0.274 1.09  0.268 1.12
   16 1024   8   2 128  0.356 0.90  0.263 1.22  0.239 1.34  0.234 1.37
    4 4096  12  12  64  0.956 0.78  0.877 0.85  0.731 1.02  0.696 1.07
    4 4096  12   4  64  1.012 0.73  0.848 0.88  0.707 1.05  0.673 1.10
    4 4096   8   8 128  0.966 0.86  0.857 0.97  0.779 1.07  0.763 1.09
    4 4096   8   2 128  1.115 0.71  0.804 0.99  0.731 1.09  0.716 1.11
    1 16384 12  12  64  3.385 0.71  3.368 0.72  2.807 0.86  2.673 0.90
    1 16384 12   4  64  3.302 0.72  3.282 0.72  2.735 0.87  2.604 0.91
    1 16384  8   8 128  3.415 0.78  3.396 0.79  3.087 0.87  3.025 0.88
    1 16384  8   2 128  3.349 0.81  3.342 0.81  3.038 0.89  2.977 0.91
 Measured (H200, bench_attention.py, second run; ms and ratio to SDPA), version 7 is the trainer's:
   shape (B T H Hkv d)     v4            v5            v6            v7
   16 1024 12 12 64    0.331 0.84x   0.320 0.87x   0.328 0.85x   0.318 0.87x
   16 1024 12  4 64    0.327 0.93x   0.290 1.05x   0.295 1.03x   0.284 1.07x
   16 1024  8  8 128   0.344 0.86x   0.328 0.90x   0.334 0.88x   0.329 0.89x
   16 1024  8  2 128   0.362 0.88x   0.283 1.13x   0.287 1.11x   0.282 1.13x
    4 4096 12 12 64    0.972 0.73x   0.903 0.79x   0.913 0.78x   0.869 0.82x
    4 4096 12  4 64    1.029 0.72x   0.877 0.84x   0.879 0.84x   0.834 0.89x
    4 4096  8  8 128   0.982 0.78x   0.928 0.82x   0.935 0.82x   0.922 0.83x
    4 4096  8  2 128   1.139 0.69x   0.885 0.89x   0.882 0.89x   0.873 0.90x
    1 16384 12 12 64   3.345 0.69x   3.295 0.70x   3.339 0.69x   3.102 0.75x
    1 16384 12  4 64   3.297 0.72x   3.251 0.73x   3.306 0.72x   3.070 0.78x
    1 16384  8  8 128  3.378 0.78x   3.428 0.77x   3.410 0.77x   3.244 0.81x
    1 16384  8  2 128  3.364 0.79x   3.407 0.78x   3.377 0.79x   3.252 0.82x
 So: the order (v5) as the model said at T <= 4096 (1.03-1.29x; the model 1.07-1.59x) and nothing at 16384; the
 ping-pong (v6) nothing (the consumers were not in step, or not for long: loss 2 above is not where the time
 goes); the register A operands (v7) 1.03-1.07x, most at d = 64 (loss 3 is real). Left at 0.75-0.78x: T = 16384
 at d = 64, where 0.8x needs another 4-7%; the 7-product structure is the largest remaining cost.
 Versions 8-10: the consumers software-pipelined. The count at B=1 T=16384 H=12 d=64 (the last shape short of
 0.8x): per kernel 16512 tile (item) steps per head, 198144 in all, 1501 per SM; with v7's 3.10-3.15 ms split as
 the ncu profile at B=1 T=8192 (gpu5pre: dK/dV 58%, dQ 42%) and ~1.75 GHz, a dQ step (both warpgroups) takes
 ~1520 clocks for 768 of tensor work (3 products x 2 x 128) and a dK/dV step ~2100 for 1024 (4 x 2 x 128): 50%
 and 49%. What else a step holds: 2 x 4096 exponentials = 512 clocks of each SM sub-partition's MUFU (16/clock
 per SM), ~150-250 issue clocks of dS, masks and packing per warp, barrier and wait latencies. Not the operands:
 shared-memory bandwidth 0.5-0.6 (version 7), HBM/L2 far below (192-256 FLOP per byte). 1520 ~ 768 + 512 + ~240
 and 2100 ~ 1024 + 512 + ~560: the model that fits is the exponentials (and dS) not overlapping the tensor work,
 which is what the in-order chain of versions 4-7 gives a warpgroup: S, dP issued; wait for S; exponentials
 (only dP in flight); dS; the last product (dQ; dK), waited for before the next tile's S is issued. The other
 warpgroup could fill the gaps, but ping-pong (version 6) did not make it (see above). Version 8 fills them
 within the warpgroup, as FlashAttention-3's forward: a tile's last product (dQ += dS K; dK += dS^T Q) is issued
 in the next tile, right after that one's S, dP (atth_dq_pipelined, atth_dkv_pipelined), so the exponentials run
 under dP and the previous last product (256 clocks of tensor work per warpgroup against 256 of MUFU); every
 product is still waited for within its iteration (ptxas serializes all the wgmma of a kernel, C7517/C7520,
 when a product's registers stay in flight across the loop's back edge: the first build of these versions did),
 and no ping-pong (the two warpgroups meet only at the barriers of the stage ring). No more registers than
 version 7 at d = 64. The same products in the same order into the same accumulators: the same bits as version 7,
 which the kernel check asserts (dev/cuda/attention_backward.cu: a product whose operand changed in flight would
 break it; it passed on the H200). Version 9 has the pipelined dQ kernel only, 10 the pipelined dK/dV kernel only.
 Predicted (the model: each step tensor-bound with ~20% overhead, taken down to dQ 1.20x, dK/dV 1.15x at T =
 16384): v8 2.69 ms (0.88x SDPA), v9 2.93 (0.81), v10 2.91 (0.81). Measured (H200, bench_attention.py, ms and
 ratio to SDPA, the sixth session's mid-session run; the d = 128 rows' v8 was then the dQ kernel pipelined with dO from shared
 memory (with its fragments too ptxas spills) and the dK/dV kernel of 7 (the pipelined one needs more registers:
 ptxas serializes its wgmma, C7512); now 8-10 run version 7's kernels at d = 128):
   shape (B T H Hkv d)     v7            v8            v9            v10
   16 1024 12 12 64    0.319 0.88x   0.322 0.87x   0.317 0.89x   0.327 0.86x
   16 1024 12  4 64    0.286 1.07x   0.293 1.04x   0.282 1.08x   0.296 1.03x
   16 1024  8  8 128   0.329 0.90x   0.329 0.90x   (= 8)         (7)
   16 1024  8  2 128   0.283 1.14x   0.279 1.15x   (= 8)         (7)
    4 4096 12 12 64    0.867 0.82x   0.900 0.79x   0.852 0.84x   0.919 0.78x
    4 4096 12  4 64    0.834 0.88x   0.871 0.85x   0.817 0.90x   0.892 0.83x
    4 4096  8  8 128   0.859 0.93x   0.900 0.89x   (= 8)         (7)
    4 4096  8  2 128   0.814 1.00x   0.847 0.96x   (= 8)         (7)
    1 16384 12 12 64   3.125 0.76x   3.303 0.71x   3.073 0.77x   3.361 0.70x
    1 16384 12  4 64   3.088 0.76x   3.265 0.72x   3.058 0.77x   3.329 0.71x
    1 16384  8  8 128  3.251 0.80x   3.255 0.80x   (= 8)         (7)
    1 16384  8  2 128  3.212 0.81x   3.223 0.80x   (= 8)         (7)
 So the model is wrong: the pipelined dQ kernel gains 0.6-2.0% of the whole backward at d = 64 (~4% of its own
 time), the pipelined dK/dV kernel loses 4-7% (~10% of its own), d = 128's dQ kernel with dO from shared memory
 loses up to 5% at T = 4096. The exponentials not overlapping the tensor work is not where a step's other half
 goes (as ping-pong's null result said before). Kept: the pipelined dQ kernel at d = 64, version 9, the trainer's
 (the same bits as 7; at d = 128 versions 8-11 run version 7's kernels). Still 0.77x at T = 16384 d = 64.
 Version 11 (not measured yet): 9 with the pipelined dQ consumers also in ping-pong (version 7's turns), in case
 the turns that 8 dropped matter (a guess: the pipelined dK/dV kernel without them lost ~10%, and ping-pong alone
 gained nothing in version 6); predicted within +-2% of 9. What to
 measure next, before another model: the stall reasons and pipe use of both kernels there
 (scripts/gpu_session.sh attncu: ncu WarpStateStats, ComputeWorkloadAnalysis, InstructionStats for 7 and 8).
 Versions 12, 13 (d = 64; at d = 128 they run 9's kernels): FlashAttention-3's deterministic backward, dQ in the
 dK/dV kernel, 5 products instead of 7. The ncu profile of version 9 at B=1 T=16384 H=12 d=64 (the seventh session's gpu_session.sh attncu:
 dK/dV kernel 1.80 ms, dQ kernel 1.28 ms, each ~460-480 TFLOP/s of its own FLOPs, tensor pipe ~50%) says the
 missing time is the two recomputed products (S, dP of the dQ kernel), not the kernels' efficiency. The dK/dV
 kernel of version 7 (no turns) also computes, per item (query tile i of 64, the block's 128 keys),
   dQ_i = dS K = (dS^T)^T K      both warpgroups store their dS^T (the bf16 A fragments of dK += dS^T Q, 64 keys
                                 x 64 queries each) into a dS^T buffer (2, double-buffered), a named barrier, then
                                 the warpgroup of the item's parity reads dS back as A fragments (ldmatrix .trans)
                                 and issues m64n64k16 x 8 with B = K (the block's K tile, MN-major: as V in P V)
 and adds it into an fp32 accumulator (B, H, Tp, d) (tiles of 64 rows in the consumers' register order:
 atth_dq_add) in key-block order: a counter per (b, h, query tile) in global memory (memset to 0 before the
 launch) says how many key blocks have added; the block kb waits until it is kb, adds, counts. The first block
 (kb = 0) stores, the last (the diagonal block, kb = qt / 2) reads the sum, adds its own and writes dq in bf16: no
 dQ kernel and no conversion kernel. Every fp32 sum has a fixed order, so the bits are the same run to run (and
 between 12 and 13: each add is one fp32 rounding, at L2 or in a register). Deadlock: a block waits only on
 blocks of smaller kb of the same (b, kv head), which atth_block_order launches before it (rank by rank within a
 section), and the GPU starts CTAs in launch order, so the waited-for ones run or have finished; the emulator runs
 blocks in that order and stops on a wait the blocks before did not satisfy. Items go tile-major, the last query
 tile first, the group's heads in turn (item_at): the blocks of a head then visit the same query tile at the same
 item index, so a block waits only for the previous block's add of that tile (with the first tile first it would
 wait 2 items per block of the chain).
 Version 12: the dQ warpgroup itself waits for the counter (thread 0, an acquire load; the others at a named
 barrier), adds at L2 (red.global.add.v2.f32) and counts (a fence, then a relaxed add): CUTLASS's semaphore.
 Version 13: for every tile but the diagonal block's, the warpgroup only stages its dQ tile in shared memory (2
 buffers, one per warpgroup) and goes on; the producer's warps 1 and 2 are the writers (atth_dq_writer, one per
 buffer; warp 3 alone loads lse, Delta, 2 rows a thread): a writer waits for
 the counter, adds the tile at L2 (red.global.add.v4.f32), counts, hands the buffer back. So the consumers never
 wait on another block except at their last (diagonal) tiles. Version 14: 13 with the writer's adds as one TMA
 bulk reduction per tile (cp.reduce.async.bulk .add.f32 from the staging buffer: FlashAttention-3's way), in case
 the L2 takes a tile's reductions faster that way than as 1024 red.v4 of 16 bytes.
 Count at B=1 T=16384 H=12 d=64 (F = 4 d T(T+1)/2 H = 4.12e11): 16512 items per head (key block kb: 256 - 2 kb
 query tiles), 198144 in all, each 2 x 4 products of 64 x 64 x 64 and dQ 64 x 64 x 128 = 5.24 MFLOP: 1.04e12 =
 2.5 F (version 9: 3.5 F = 1.44e12; SDPA's 2.375 ms = 434 TFLOP/s of 2.5 F). Floor: 1.05 ms at the 989 TFLOP/s
 dense peak; at the ~50% tensor-pipe share of version 7's dK/dV kernel (its items: 1.80 ms for 4 products) 5/4 x
 1.80 = 2.25 ms. Bytes: 16 KiB of fp32 adds per item at L2 (3.25 GB, ~1.5 TB/s of reductions over ~2.2 ms; the
 diagonal block's read of the sum 50 MB), the accumulator 50 MB (an L2 section holds Q, dO and the accumulator of
 its heads: 8 MiB per head at T = 16384, 32 MiB per section), dq 25 MB written once; Q, dO, K, V as version 7.
 At d12 (B=8 T=1024 H=12 d=64): 72 items per (b, h), 6912 in all (3.2e10 FLOP), 113 MB of adds.
 Predicted: version 13 ~5/4 of version 9's dK/dV kernel (the writers keeping up: per tile an acquire load, 32
 ld.shared + red.v4 per lane and a fence, ~1.5k clocks against ~2 x 2.4k per writer) plus ~1-2% (the chain of blocks
 at the start, the memset): T = 16384 ~2.3 ms (1.03x SDPA; version 9 3.05 ms, 0.78x), GQA (Hkv = 4) the same;
 d12 ~105-115 us per call against 9's 146 (dK/dV 87 + dQ 59: ncu, the seventh session's profile), ~0.4-0.5 ms of the 20.1 ms
 step. Version 12: 13 plus the dQ warpgroup's wait on the L2 round trips (the acquire load, the fence after the
 adds: ~1k clocks every other item, partly under the other warpgroup's work): ~2.5-2.7 ms (0.88-0.95x). The risk:
 the rate of fp32 reductions at L2 (3.25 GB), unmeasured here (version 14 within a few % of 13 unless that rate
 is what limits 13); scripts/gpu_session.sh attncu profiles 13 and 14.
 Measured (H200, bench_attention.py, the seventh session's second mid-session run; ms and ratio to SDPA; all four bitwise repeatable,
 12 = 13 = 14 bitwise, checked there):
   shape (B T H Hkv d)     v9            v12           v13           v14
   16 1024 12 12 64    0.316 0.89x   0.415 0.68x   0.365 0.77x   0.361 0.78x
   16 1024 12  4 64    0.281 1.08x   0.401 0.76x   0.344 0.88x   0.334 0.91x
    4 4096 12 12 64    0.853 0.84x   1.174 0.61x   0.952 0.75x   0.874 0.82x
    4 4096 12  4 64    0.823 0.89x   1.162 0.63x   0.905 0.81x   0.860 0.86x
    1 16384 12 12 64   3.149 0.77x   4.191 0.58x   3.310 0.73x   2.919 0.83x
    1 16384 12  4 64   3.102 0.77x   4.272 0.56x   3.224 0.74x   3.026 0.79x
    8 1024 12 12 64    0.164 0.95x   0.215 0.72x   0.188 0.82x   0.184 0.84x
 So the prediction was wrong for 12 and 13: their time follows the bytes reduced (0.6-0.8 TB/s of fp32 adds for 12
 at every shape, whatever the chains of blocks), i.e. the L2 round trips of the adds (the acquire, 1024 red.v4 or
 2048 red.v2 per tile, the fence that waits for them) bound them, not the products; 13 with one writer warp took
 4.08 ms at T = 16384 (round 1), with two 3.31. One TMA bulk reduction per tile (14) is the fastest: 0.83x SDPA at
 T = 16384 (issue 10's 0.80x; 7% faster than 9), still 0.67 ms above 5/4 of the dK/dV kernel, and slower than 9 at
 T <= 4096, where a block has few items and the writers' latency per tile is not hidden. Version 15 (the trainer's)
 takes 14 from T = 8192 (ATTH_BWD_T14; 8192 itself unmeasured) and 9 below. Next: more tiles in flight per writer
 (version 16 below), and 128 query rows per item (half the reduced bytes per FLOP; the consumers' registers are the
 limit).
 Versions 12-14 at d = 128 (the eighth session; before, 9's kernels ran there): the same kernel without RS (K, V
 from shared memory, as version 7's dK/dV kernel at d = 128) and dQ_i split by columns between the two consumer
 warpgroups: both store their dS^T halves, meet at the buffer's named barrier, and warpgroup w computes
   dQ_i[:, 64w .. 64w + 63] = dS_i K[:, 64w .. 64w + 63]   m64n64k16 x 8 (the block's 128 keys), A = dS (ldmatrix
                                                           .trans of both halves), B = K's column panel w, MN-major
 into 32 fp32 registers, free then (S^T, dP^T are dead once dS^T is stored: declared per item so that nothing of them
 lives across). So an item's dQ is 2 tiles of 64 x 64 (the accumulator's tile layout above; one counter each), and
 the writer c (warp 1 + c) adds column half c of every item. Registers (ptxas -v, nvcc 13, setmaxnreg 240): no spills
 once atth_dq_add sums in place (a separate sum array spilled ~100 bytes). Shared memory (227 KiB): K, V 64 KiB, dS^T
 2 x 16 KiB, staging 2 x 16 KiB per buffer set, Q, dO 32 KiB and lse, Delta 0.5 KiB per stage: 226.6 KiB with 3
 stages and one staging buffer per warpgroup (13, 14), 226.0 with 2 stages and two (16).
 Version 16 (both widths; measured slower than 14 everywhere, below): 14 with 2 staging buffers per consumer
 warpgroup and the writer keeping one bulk reduction in flight: per tile it waits for the tile staged and its counter, issues the reduction, then waits for the previous
 tile's (bulk_wait<1>), counts that one and hands its buffer back, so a tile's L2 round trip runs under the wait for
 the next one (14 waits for each reduction before it looks at the next tile). The same adds in the same order: the
 same bits as 12 (checked). The counts still follow the key blocks: block kb's count of a tile now also waits for
 its writer to reach the next tile, i.e. for block kb - 1's count of that one: the chain runs towards block 0, which
 waits for nothing, so it ends; the last tile is counted after a bulk_wait<0>.
 Count at d = 128 (H = 8; an item: 5 products of 2 x 64 x 128 x 128 = 10.5 MFLOP, 32 KiB of fp32 dQ; the items of
 the diagonal block, 2 per head and key block, are summed by the consumers, the others staged and reduced):
   B  T      items    FLOP     reduced   (F = 4 d T(T+1)/2 H, 2.5 F = SDPA's count; 7 products (version 9) = 3.5 F)
   1  16384  132096   1.39e12  4.26 GB   (2.5 F = 1.37e12; 9: 1.92e12; floor at 989 TFLOP/s 1.40 ms)
   4  4096    33792   3.54e11  1.04 GB
  16  1024     9216   9.67e10  0.235 GB
 (GQA changes neither: every query head visits its items; Hkv only changes which K, V a block holds.)
 Predicted at B=1 T=16384 (v9 there 3.16-3.33 ms, 3.25 taken; SDPA 2.57-2.64, 2.60 taken): the dK/dV kernel ~4/7
 of 9's time (1.86 ms) for 4 products, 5/4 of it for 5 (2.32 ms), plus what the reductions cost: at d = 64 version
 14 took 0.67 ms more than 5/4 of the dK/dV kernel for 3.2 GB (0.21 ms per GB), i.e. 0.89 ms for 4.26 GB here:
 14 ~3.2 ms (0.81x SDPA), 16 with half of that hidden ~2.8 ms (0.93x). At T <= 4096 a block has few items and the
 chains' start-up shows (14 was 2-14% slower than 9 at d = 64): 9 expected faster there.
 Measured (H200, bench_attention.py, the eighth session's mid-session run; ms and ratio to SDPA; 12, 13, 14, 16 =
 the same bits at both widths, checked there):
   shape (B T H Hkv d)     v9            v14           v16
   16 1024  8  8 128   0.329 0.90x   0.355 0.84x   0.374 0.79x
   16 1024  8  2 128   0.283 1.14x   0.380 0.85x   0.392 0.82x
    4 4096  8  8 128   0.855 0.92x   0.887 0.89x   1.017 0.77x
    4 4096  8  2 128   0.810 1.00x   1.136 0.72x   1.188 0.68x
    1 16384 8  8 128   3.352 0.78x   3.163 0.83x   3.682 0.71x
    1 16384 8  2 128   3.318 0.80x   3.222 0.82x   3.421 0.78x
   (d = 64, the same run: 16 is 7-18% slower than 14 at every shape: 3.426 against 2.899 ms at T = 16384 H = 12)
 So 14 is as predicted at T = 16384 (3.16-3.22 ms, 3-6% faster than 9) and slower than 9 below (4-40% at 4096,
 most with GQA: Hkv = 2 has 4x fewer, 4x longer blocks and chains); 16 is slower everywhere, the prediction wrong:
 a tile counted one tile later delays every block behind it in the chain of key blocks by that much (block kb's
 adds of a tile wait for block kb - 1's count), and that costs more than the round trips it overlaps. The count's
 latency, not the writer's throughput, is what the chain feels. Version 15 takes 14 at d = 128 from
 ATTH_BWD_T128 = 16384 on (the length where it was measured to win; 8192 not measured), 9 below.
 Version 17 (not measured yet): 14 with 16's 2 staging buffers per warpgroup but each tile counted as soon as it is
 added (no reduction in flight), so that the consumer can stage a tile while the writer still adds the previous one;
 at d = 128 that costs a stage of Q, dO (2 instead of 3: 227 KiB), at d = 64 nothing. It separates what 16 changed:
 if the consumers wait for the writers in 14, 17 is faster than 14; if not, about the same (d = 64) or slower by
 the lost stage (d = 128). Predicted: within +-3% of 14.
 The dK/dV and dQ kernels stay deterministic in every version: the products and the order of every sum are the
 same; only when a block starts and which warpgroup issues first change.
 The CPU emulator runs all these kernels through the wgmma, TMA, mbarrier and named-barrier twins
 (dev/cuda/attention_backward.cu versions 3-16, the problems cut into several L2 sections there), wgmma
 asynchronously (an accumulator read before its wait, an operand changed under a product in flight: errors); the
 hardware's reading of the descriptors and tensor maps and the races its schedule does not produce are checked
 only on a GPU.
*/
#ifndef SESSA_ATTENTION_SM90_BWD_CUH
#define SESSA_ATTENTION_SM90_BWD_CUH

template <int HD> struct AttHBwdCfg {
    static_assert(HD == 64 || HD == 128, "the Hopper attention backward takes d = 64 or 128");
    static constexpr int DQ_BQ = 64 * ATTH_WG, DQ_BK = 64;   // dQ kernel: query rows per block, key tile
    static constexpr int KV_BK = 64 * ATTH_WG, KV_BQ = 64;   // dK/dV kernel: keys per block, query tile
    static constexpr size_t DQ_SMEM = 1024 + 2 * (size_t)DQ_BQ * HD * 2 + 4 * (size_t)DQ_BK * HD * 2;   // Q, dO, 2x K, 2x V
    static constexpr size_t KV_SMEM = 1024 + 2 * (size_t)KV_BK * HD * 2 + 4 * (size_t)KV_BQ * HD * 2   // K, V, 2x Q, 2x dO
                                      + 4 * (size_t)KV_BQ * sizeof(float);                            // 2x lse, 2x Delta
};

#ifdef SESSA_SM90A
// rows row0 .. row0 + 63 of a tile of R rows in shared memory (HD/64 swizzled panels, atth_load_tile's layout) ->
// this warpgroup's A fragments of them, one per k-step of 16 columns (ldmatrix: lane l gives row 16 warp + l % 16,
// 16-byte chunk 2 (kk % 4) + l / 16 of panel kk / 4; the mma.sync A layout, which wgmma's register A takes per warp)
template <int HD, int R>
__device__ __forceinline__ void atth_load_afrag(uint32_t (&a)[HD / 16][4], const unsigned char *tile, int row0) {
    const int lane = threadIdx.x % 32, r = row0 + 16 * (threadIdx.x % 128 / 32) + lane % 16;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        const int c = 2 * (kk % 4) + lane / 16;
        ldmatrix_x4(a[kk], tile + (kk / 4) * (R * 128) + r * 128 + ((c ^ (r % 8)) << 4));
    }
}
// atth_issue_qk with A from registers (backward version 7: the warpgroup's Q, dO rows in the dQ kernel, K, V rows in
// the dK/dV kernel at d = 64, constant over its loop, so that only B is read from shared memory): S = A K^T
// (64 x BK), Kt a K-major tile of BK rows
template <int HD, int BQ, int BK>
__device__ __forceinline__ void atth_issue_qk(float (&s)[BK / 2], const uint32_t (&a)[HD / 16][4], const unsigned char *Kt) {
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++)
        wgmma_rs_kmajor<BK>(s, a[kk], wgmma_desc(Kt + (kk / 4) * (BK * 128) + (kk % 4) * 32, 16, 1024), kk > 0);
    wgmma_commit();
}
// this thread's rows r0, r0 + 8 of (b, h): lse in log2 units and Delta (0 past T)
__device__ __forceinline__ void atth_row_stats(float (&lse2)[2], float (&dlt)[2], const float *lse, const float *delta,
                                               int b, int h, int H, int T, int r0) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int t = r0 + 8 * r;
        lse2[r] = t < T ? lse[((size_t)b * H + h) * T + t] * 1.4426950408889634f : 0.0f;
        dlt[r] = t < T ? delta[((size_t)b * H + h) * T + t] : 0.0f;
    }
}
// the dQ kernel's scores of key tile j0 for one warpgroup (first row wg0; this thread's rows r0, r0 + 8, lse2 in
// log2 units) -> P in place, 0 where the key is past the row (causal mask, only where the tile reaches past wg0)
template <int BK>
__device__ __forceinline__ void atth_dq_p(float (&s)[BK / 2], int j0, int wg0, int r0, float sl2, const float (&lse2)[2]) {
    const int tq = threadIdx.x % 4;
    const bool edge = j0 + BK - 1 > wg0;               // a key past some row of this warpgroup: causal mask
#pragma unroll
    for (int i = 0; i < BK / 2; i++) {                 // register i: row r0 + 8((i>>1)&1), key j0 + 8(i/4) + 2tq + (i&1)
        int r = (i >> 1) & 1, c = j0 + 8 * (i / 4) + 2 * tq + (i & 1);
        s[i] = (edge && c > r0 + 8 * r) ? 0.0f : ex2_approx(fmaf(s[i], sl2, -lse2[r]));
    }
}
// dS = P (dP - Delta) of the dQ kernel (dp in place, dlt: this thread's rows' Delta), rounded to bf16 as the A
// fragments da of dQ += dS K_j
template <int BK>
__device__ __forceinline__ void atth_dq_ds(uint32_t (&da)[BK / 16][4], float (&dp)[BK / 2], const float (&s)[BK / 2],
                                           const float (&dlt)[2]) {
#pragma unroll
    for (int i = 0; i < BK / 2; i++) dp[i] = s[i] * (dp[i] - dlt[(i >> 1) & 1]);
    atth_pack_p<BK>(da, dp);
}
// one key tile of the dQ kernel for one warpgroup (64 query rows from Qw, dOw; rows r0, r0 + 8 of this thread,
// lse2 in log2 units, dlt = Delta): S = Q K_j^T, dP = dO V_j^T, P (causal mask where the tile reaches past the
// warpgroup's first row wg0), dS = P (dP - Delta), dQ (acc) += dS K_j; every product waited for on return.
// Ping-pong (backward versions 6, 7; turn > 0): S and dP are issued in this warpgroup's turn (named barrier `turn`,
// atth_pingpong_turns), and the turn passes on (to barrier next, when > 0) once S is done.
// Qw, dOw: shared memory (const unsigned char *) or A fragments (atth_load_afrag).
template <int HD, int BQ, int BK, class AOp>
__device__ __forceinline__ void atth_dq_tile(float (&acc)[HD / 2], float (&s)[BK / 2], float (&dp)[BK / 2],
                                             uint32_t (&da)[BK / 16][4], const AOp &Qw,
                                             const AOp &dOw, const unsigned char *Kt, const unsigned char *Vt,
                                             int j0, int wg0, int r0, float sl2, const float (&lse2)[2],
                                             const float (&dlt)[2], int turn = 0, int next = 0) {
    if (turn) bar_sync(turn, 256);
    wgmma_fence_operand(s);
    wgmma_fence_operand(dp);
    wgmma_fence();
    atth_issue_qk<HD, BQ, BK>(s, Qw, Kt);              // S = Q K_j^T
    atth_issue_qk<HD, BQ, BK>(dp, dOw, Vt);            // dP = dO V_j^T
    wgmma_wait<1>();                                   // S done (dP may still run)
    wgmma_fence_operand(s);
    if (next) bar_arrive(next, 256);                   // the other warpgroup's turn (after the wait: see the forward)
    atth_dq_p<BK>(s, j0, wg0, r0, sl2, lse2);
    wgmma_wait<0>();
    wgmma_fence_operand(dp);
    atth_dq_ds<BK>(da, dp, s, dlt);
    wgmma_fence_operand(acc);
    wgmma_fence();
    atth_issue_pv<HD, BK>(acc, da, Kt);                // dQ += dS K_j
    wgmma_wait<0>();
    wgmma_fence_operand(acc);
    atth_fence_p<BK / 16>(da);
}
// Ping-pong of the 2 consumer warpgroups of the backward's warp-specialized kernels (versions 6, 7), as the forward's:
// named barrier 1 + c is consumer c's turn to issue its first products (S, dP; S^T, dP^T), handed to the other one
// once its S is done, so that one's exponentials and dS run under the other's products (without it the two issue
// and compute in step and the tensor cores wait during both's arithmetic). Consumer 1 hands consumer 0 the first
// turn and keeps its last one; every tile or item takes a turn, skipped ones too (atth_pingpong_pass), so both
// take n turns and the barriers balance. pingpong = false: no turns (0: atth_dq_tile and atth_dkv_item skip them).
__device__ __forceinline__ void atth_pingpong_turns(int &turn, int &next, bool pingpong, int cw, bool last) {
    turn = pingpong ? 1 + cw : 0;
    next = pingpong && (cw == 0 || !last) ? 2 - cw : 0;
}
__device__ __forceinline__ void atth_pingpong_pass(int turn, int next) {   // a skipped tile's turn
    if (turn) bar_sync(turn, 256);
    if (next) bar_arrive(next, 256);
}
#endif // SESSA_SM90A

// grid (ceil(T/128), H, B), the longest (last) query blocks first; ATTH_THREADS threads, AttHBwdCfg<HD>::DQ_SMEM bytes
template <int HD>
__global__ void __launch_bounds__(ATTH_THREADS, 1)
attention_backward_dq_sm90_kernel(floatX *dq, const floatX *dout, const float *lse, const float *delta,
                                  const floatX *q, const floatX *k, const floatX *v, int T, int H, int Hkv, int ldq, int ldkv,
                                  const float2 *rope) {
#ifdef SESSA_SM90A
    using C = AttHBwdCfg<HD>;
    constexpr int BQ = C::DQ_BQ, BK = C::DQ_BK, NS = BK / 2, NO = HD / 2;   // S/dP and dQ registers per thread
    constexpr int Q_BYTES = BQ * HD * 2, KV_BYTES = BK * HD * 2;
    extern __shared__ __align__(1024) unsigned char atth_smem[];
    unsigned char *Qs = atth_smem_base(atth_smem), *dOs = Qs + Q_BYTES, *Ks = dOs + Q_BYTES, *Vs = Ks + 2 * KV_BYTES;
    const int tid = threadIdx.x, wg = tid / 128, lane = tid % 32, g = lane / 4;
    const int i0 = (gridDim.x - 1 - blockIdx.x) * BQ, h = blockIdx.y, b = blockIdx.z, hk = h / (H / Hkv);
    const int wg0 = i0 + 64 * wg, r0 = wg0 + 16 * ((tid % 128) / 32) + g;   // warpgroup's first row; rows r0, r0+8
    const floatX *kb = k + (size_t)b * T * ldkv + hk * HD, *vb = v + (size_t)b * T * ldkv + hk * HD;
    const float scale = rsqrtf((float)HD), sl2 = scale * 1.4426950408889634f;   // scores -> log2 units
    const int n_tiles = (min(i0 + BQ, T) - 1) / BK + 1;                          // key tiles up to the last row
    const unsigned char *Qw = Qs + wg * 64 * 128, *dOw = dOs + wg * 64 * 128;   // this warpgroup's 64 rows

    atth_load_tile<HD, BQ>(Qs, q + (size_t)b * T * ldq + h * HD, ldq, i0, T);
    atth_load_tile<HD, BQ>(dOs, dout + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
    atth_load_tile<HD, BK>(Ks, kb, ldkv, 0, T);
    atth_load_tile<HD, BK>(Vs, vb, ldkv, 0, T);
    cp_async_commit();
    float lse2[2], dlt[2];
    atth_row_stats(lse2, dlt, lse, delta, b, h, H, T, r0);

    float s[NS], dp[NS], acc[NO];
    uint32_t da[BK / 16][4];
#pragma unroll
    for (int i = 0; i < NS; i++) { s[i] = 0.0f; dp[i] = 0.0f; }
#pragma unroll
    for (int i = 0; i < NO; i++) acc[i] = 0.0f;
    for (int j = 0; j < n_tiles; j++) {
        const int st = j & 1, j0 = j * BK;
        const unsigned char *Kt = Ks + st * KV_BYTES, *Vt = Vs + st * KV_BYTES;
        cp_async_wait<0>();                            // this thread's copies of K_j, V_j landed
        fence_proxy_async();                           // ... and are visible to wgmma
        __syncthreads();                               // everyone's; tile j-1's wgmma are done, its stage is free
        if (j + 1 < n_tiles) {
            atth_load_tile<HD, BK>(Ks + (st ^ 1) * KV_BYTES, kb, ldkv, j0 + BK, T);
            atth_load_tile<HD, BK>(Vs + (st ^ 1) * KV_BYTES, vb, ldkv, j0 + BK, T);
            cp_async_commit();
        }
        if (j0 > wg0 + 63) continue;                   // every key of the tile follows every row of this warpgroup
        atth_dq_tile<HD, BQ, BK>(acc, s, dp, da, Qw, dOw, Kt, Vt, j0, wg0, r0, sl2, lse2, dlt);
    }
    atth_store_rows<HD>(dq + (size_t)b * T * ldq + h * HD, ldq, r0, T, acc, scale, scale, rope);
#endif // SESSA_SM90A
}

// The dQ kernel warp-specialized (versions 4-10; 9 the trainer's): the forward's version 5 producer (llmc/attention_sm90.cuh:
// TMA, a ring of STAGES = 3 stages of K_j, V_j (64 keys each) guarded by full/empty mbarriers; Q and dO loaded once),
// 2 consumer warpgroups of 64 query rows running atth_dq_tile per tile as above, releasing the tile's stages after
// it (no ping-pong: 3 products per exponential, the tensor cores' share is larger than in the forward). What it
// removes: the cp.async address work of the consumers and the block-wide barrier per tile; loads now run up to 3
// tiles ahead. Registers (ptxas -v): 168 at launch (384 threads), 24 / 240 after setmaxnreg, no spills.
// Shared memory: Q, dO (128 x d), 3 stages of K, V (64 x d), 13 mbarriers: 81 / 161 KiB at d = 64 / 128.
template <int HD> struct AttWBwdCfg {
    static constexpr int NWG = 2, THREADS = 128 * (NWG + 1), BQ = 64 * NWG, BK = 64, STAGES = 3;
    static constexpr int PRODUCER_REGS = 24, CONSUMER_REGS = 240;
    static constexpr int Q_BYTES = BQ * HD * 2, KV_BYTES = BK * HD * 2, BARS = 1 + 4 * STAGES;
    static constexpr size_t DQ_SMEM = 1024 + 2 * Q_BYTES + 2 * STAGES * KV_BYTES + 8 * BARS;
    static constexpr int KV_BK = 64 * NWG, KV_BQ = 64;   // the dK/dV kernel: keys per block, query tile
    static constexpr size_t KV_SMEM = 1024 + 2 * (size_t)KV_BK * HD * 2 + STAGES * (2 * (size_t)KV_BQ * HD * 2 + 2 * KV_BQ * 4)
                                      + 8 * (1 + 2 * STAGES);
    // versions 12-14, 16 (dQ in the dK/dV kernel; DQ = 1, 2, 3): + 2 dS^T buffers (128 keys x 64 queries, bf16) and
    // with the writers (DQ >= 2) NSB staging buffers of 64 x 64 fp32 per consumer warpgroup; as many stages of Q, dO
    // as then fit the H100/H200's 227 KiB: 3, or 2 at d = 128 with NSB = 2 (d = 128: 194.6 KiB (12), 226.6 (13, 14),
    // 226.0 (16); d = 64: 114.6, 146.6, 178.6)
    __host__ __device__ static constexpr size_t kvq_extra(int dq, int nsb) {
        return 2 * (size_t)KV_BK * KV_BQ * 2 + (dq >= 2 ? (size_t)NWG * nsb * 64 * 64 * 4 : 0);
    }
    __host__ __device__ static constexpr size_t kv_smem(int stages) {
        return 1024 + 2 * (size_t)KV_BK * HD * 2 + stages * (2 * (size_t)KV_BQ * HD * 2 + 2 * KV_BQ * 4) + 8 * (1 + 2 * stages);
    }
    __host__ __device__ static constexpr int kvq_stages(int dq, int nsb) { return kv_smem(STAGES) + kvq_extra(dq, nsb) <= 227 * 1024 ? STAGES : 2; }
    __host__ __device__ static constexpr size_t kvq_smem(int dq, int nsb) { return kv_smem(kvq_stages(dq, nsb)) + kvq_extra(dq, nsb); }
};
// version 15 takes 14 from this sequence length on (d = 64), 9 below it: H200 (the seventh session's second mid-session run) 14 is 7% faster than
// 9 at T = 16384 and 2% slower at 4096 (and 12% at 1024); 8192 between them is not measured
static const int ATTH_BWD_T14 = 8192;
// ... and at d = 128 from ATTH_BWD_T128 on: H200 (the eighth session's mid-session run) 14 is 3-6% faster than 9 at
// T = 16384 and 4-40% slower at 4096; 8192 between them is not measured
static const int ATTH_BWD_T128 = 16384;
// the kernels version 15 runs at head width d and length T (14 or 9)
static int atth_bwd_version15(int d, int T) {
    return T >= (d == 64 ? ATTH_BWD_T14 : ATTH_BWD_T128) ? 14 : 9;
}
// versions 12-16: the fp32 dQ accumulator (B, H, Tp, d) and its counters (B, H, Tp / 64, d / 64: one per 64 x 64
// tile), Tp = T rounded up to 64, in the backward's scratch after Delta (attention_backward_scratch_bytes in
// llmc/attention.cuh); none at the widths the Hopper kernels do not take
static size_t atth_dq_work_bytes(int B, int T, int H, int d) {
    if (d != 64 && d != 128) return 0;
    const size_t nqt = (size_t)(T + 63) / 64;
    return (size_t)B * H * nqt * 64 * d * sizeof(float) + (size_t)B * H * nqt * (d / 64) * sizeof(unsigned);
}
#ifdef SESSA_SM90A
// compile-time flags for the pipelined consumers' generic lambdas (first tile or item: if constexpr)
struct atth_true { static constexpr bool value = true; };
struct atth_false { static constexpr bool value = false; };
// A consumer of the dQ kernel software-pipelined (versions 8, 9 at d = 64; measured 4% faster than version 7's
// kernel at T = 16384, see the top): the warpgroup's own tiles j < n_w (the tiles up
// to its last row), each issuing S_j, dP_j and then the previous tile's last product dQ += dS_j-1 K_j-1, so that
// while the warpgroup computes P_j the tensor cores run dP_j and dQ_j-1 (256 clocks at d = 64 against 256 of
// exponentials per warp) instead of dP_j alone (versions 4-7 issue dQ_j at the end of tile j and wait for it).
// Groups, oldest first: S_j, dP_j, dQ_j-1; wgmma_wait<2> = S_j done (tile 0: <1>), then <0> = all done: da
// (dQ_j-1's A) and K_j-1's stage are free, and dS_j is packed into da for the next tile. Nothing is in flight
// across the loop's back edge (as FlashAttention-3's forward: ptxas serializes every wgmma of a kernel where a
// product's registers stay in flight into the next iteration or a conditional path) and tile 0 is peeled off the
// loop (no wgmma under a condition). No more registers than version 7. A stage is released (k_empty, v_empty)
// only after its full barrier was waited for, in tile order: tiles j >= n_w (keys past every row of the
// warpgroup) right after their wait. PP (version 11): the two consumers also in ping-pong, as version 7's
// (atth_pingpong_turns: a tile's products issued in this warpgroup's turn, handed on once its S is done; the
// tiles past its rows pass their turn), else none (versions 8, 9).
template <int HD, int BQ, int BK, int NST, bool PP, class AOp>
__device__ __forceinline__ void atth_dq_pipelined(float (&acc)[HD / 2], const AOp &Qw, const AOp &dOw,
                                                  const unsigned char *Ks, const unsigned char *Vs, uint64_t *k_full,
                                                  int n_tiles, int wg0, int r0, float sl2, const float (&lse2)[2],
                                                  const float (&dlt)[2], int cw) {
    constexpr int KV_BYTES = BK * HD * 2;
    uint64_t *v_full = k_full + NST, *k_empty = v_full + NST, *v_empty = k_empty + NST;
    const int n_w = min(n_tiles, wg0 / BK + 1);        // tiles with a key at or before some row of the warpgroup
    float s[BK / 2], dp[BK / 2];
    uint32_t da[BK / 16][4];
#pragma unroll
    for (int i = 0; i < BK / 2; i++) { s[i] = 0.0f; dp[i] = 0.0f; }
    auto wait_full = [&](int j) {
        mbar_wait(k_full + j % NST, (j / NST) & 1);
        mbar_wait(v_full + j % NST, (j / NST) & 1);
    };
    auto release = [&](int j) {
        mbar_arrive(k_empty + j % NST);
        mbar_arrive(v_empty + j % NST);
    };
    // tile j: S_j, dP_j (and dQ_j-1 unless j is the first) issued, P_j, then dS_j into da
    auto tile = [&](int j, auto first) {
        constexpr bool FIRST = decltype(first)::value;
        int turn, next;
        atth_pingpong_turns(turn, next, PP, cw, j + 1 == n_tiles);
        wait_full(j);
        if constexpr (PP) bar_sync(turn, 256);
        wgmma_fence_operand(s);
        wgmma_fence_operand(dp);
        wgmma_fence_operand(acc);
        wgmma_fence();
        atth_issue_qk<HD, BQ, BK>(s, Qw, Ks + (j % NST) * KV_BYTES);         // S_j = Q K_j^T
        atth_issue_qk<HD, BQ, BK>(dp, dOw, Vs + (j % NST) * KV_BYTES);       // dP_j = dO V_j^T
        if constexpr (!FIRST) atth_issue_pv<HD, BK>(acc, da, Ks + ((j - 1) % NST) * KV_BYTES);   // dQ += dS_j-1 K_j-1
        if constexpr (FIRST) wgmma_wait<1>(); else wgmma_wait<2>();        // S_j done
        wgmma_fence_operand(s);
        if (PP && next) bar_arrive(next, 256);                              // the other one's turn (after the wait)
        atth_dq_p<BK>(s, j * BK, wg0, r0, sl2, lse2);                       // under dP_j and dQ_j-1
        wgmma_wait<0>();
        wgmma_fence_operand(dp);
        wgmma_fence_operand(acc);
        atth_fence_p<BK / 16>(da);
        if constexpr (!FIRST) release(j - 1);                               // K_j-1 (dQ_j-1's B), V_j-1
        atth_dq_ds<BK>(da, dp, s, dlt);
    };
    tile(0, atth_true{});
    for (int j = 1; j < n_w; j++) tile(j, atth_false{});
    wgmma_fence_operand(acc);
    wgmma_fence();
    atth_issue_pv<HD, BK>(acc, da, Ks + ((n_w - 1) % NST) * KV_BYTES);      // the last dQ += dS K
    wgmma_wait<0>();
    wgmma_fence_operand(acc);
    atth_fence_p<BK / 16>(da);
    release(n_w - 1);
    for (int j = n_w; j < n_tiles; j++) {              // keys past every row here: only the hand-back (and turn)
        int turn, next;
        atth_pingpong_turns(turn, next, PP, cw, j + 1 == n_tiles);
        wait_full(j);
        atth_pingpong_pass(turn, next);
        release(j);
    }
}
#endif // SESSA_SM90A
// grid ceil(T/128) B H (1-d), query blocks in atth_block_order with sections of sec heads (rank 0 = the last block,
// the longest); AttWBwdCfg<HD>::THREADS threads, ::DQ_SMEM bytes.
// tq, tdo: tensor maps of q, dout with boxes of 128 rows; tk, tv: of k, v with boxes of 64 rows (atth_tensor_map);
// PINGPONG (versions 6, 7): the consumers take turns (atth_pingpong_turns); RS (versions 7-10): S and dP with Q,
// dO from registers (atth_load_afrag; d/2 more registers per thread: 32 / 64, no spills at either width); PIPE
// (versions 8, 9, 11 at d = 64): each consumer software-pipelined (atth_dq_pipelined), with PINGPONG (11) in turns
template <int HD, bool PINGPONG, bool RS, bool PIPE>
__global__ void __launch_bounds__(AttWBwdCfg<HD>::THREADS, 1)
attention_backward_dq_sm90_ws_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tdo,
                                     const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv,
                                     floatX *dq, const float *lse, const float *delta, int T, int H, int Hkv, int ldq,
                                     int sec, const float2 *rope) {
#ifdef SESSA_SM90A
    using C = AttWBwdCfg<HD>;
    constexpr int BQ = C::BQ, BK = C::BK, NST = C::STAGES, NS = BK / 2, NO = HD / 2;
    extern __shared__ __align__(1024) unsigned char atth_smem[];
    unsigned char *Qs = atth_smem_base(atth_smem), *dOs = Qs + C::Q_BYTES, *Ks = dOs + C::Q_BYTES;
    unsigned char *Vs = Ks + NST * C::KV_BYTES;
    uint64_t *qdo_full = (uint64_t *)(Vs + NST * C::KV_BYTES), *k_full = qdo_full + 1, *v_full = k_full + NST;
    uint64_t *k_empty = v_full + NST, *v_empty = k_empty + NST;
    const int tid = threadIdx.x, wg = tid / 128, nb = (T + BQ - 1) / BQ;
    int rank, bh;
    atth_block_order(rank, bh, blockIdx.x, nb, gridDim.x / nb, sec);
    const int i0 = (nb - 1 - rank) * BQ, h = bh % H, b = bh / H, hk = h / (H / Hkv);
    const int n_tiles = (min(i0 + BQ, T) - 1) / BK + 1;                          // key tiles up to the last row
    attw_init_barriers<NST>(qdo_full, 128 * C::NWG);
    if (wg == 0) {                                     // the producer
        setmaxnreg_dec<C::PRODUCER_REGS>();
        if (tid != 0) return;
        mbar_arrive_expect_tx(qdo_full, 2 * C::Q_BYTES);
        attw_load_rows<HD, BQ>(Qs, &tq, qdo_full, h, i0, b);
        attw_load_rows<HD, BQ>(dOs, &tdo, qdo_full, h, i0, b);
        attw_produce_kv<HD, BK, NST>(Ks, Vs, k_full, &tk, &tv, hk, b, n_tiles);
        return;
    }

    setmaxnreg_inc<C::CONSUMER_REGS>();                // a consumer: 64 query rows
    const int cw = wg - 1, g = tid % 32 / 4;
    const int wg0 = i0 + 64 * cw, r0 = wg0 + 16 * ((tid % 128) / 32) + g;   // warpgroup's first row; rows r0, r0+8
    const float scale = rsqrtf((float)HD), sl2 = scale * 1.4426950408889634f;
    const unsigned char *Qw = Qs + cw * 64 * 128, *dOw = dOs + cw * 64 * 128;
    float lse2[2], dlt[2];
    atth_row_stats(lse2, dlt, lse, delta, b, h, H, T, r0);
    float acc[NO];
#pragma unroll
    for (int i = 0; i < NO; i++) acc[i] = 0.0f;
    mbar_wait(qdo_full, 0);
    uint32_t qa[HD / 16][4], doa[HD / 16][4];          // RS: this warpgroup's Q, dO rows as A fragments
    if (RS) {
        atth_load_afrag<HD, BQ>(qa, Qs, 64 * cw);
        atth_load_afrag<HD, BQ>(doa, dOs, 64 * cw);
    }
    if (PINGPONG && cw == 1) bar_arrive(1, 256);       // consumer 0 has the first turn
    auto consume = [&](const auto &qop, const auto &doop) {   // the warpgroup's tiles with Q, dO as qop, doop
        if constexpr (PIPE) {
            atth_dq_pipelined<HD, BQ, BK, NST, PINGPONG>(acc, qop, doop, Ks, Vs, k_full, n_tiles, wg0, r0, sl2, lse2,
                                                         dlt, cw);
        } else {
            float s[NS], dp[NS];
            uint32_t da[BK / 16][4];
#pragma unroll
            for (int i = 0; i < NS; i++) { s[i] = 0.0f; dp[i] = 0.0f; }
            for (int j = 0; j < n_tiles; j++) {
                const int st = j % NST, j0 = j * BK;
                int turn, next;
                atth_pingpong_turns(turn, next, PINGPONG, cw, j + 1 == n_tiles);
                mbar_wait(k_full + st, (j / NST) & 1);
                mbar_wait(v_full + st, (j / NST) & 1);
                if (j0 > wg0 + 63) atth_pingpong_pass(turn, next);   // every key of the tile follows every row here
                else atth_dq_tile<HD, BQ, BK>(acc, s, dp, da, qop, doop, Ks + st * C::KV_BYTES, Vs + st * C::KV_BYTES,
                                              j0, wg0, r0, sl2, lse2, dlt, turn, next);
                mbar_arrive(k_empty + st);             // this warpgroup is done with the tile's stages
                mbar_arrive(v_empty + st);
            }
        }
    };
    if constexpr (RS) consume(qa, doa);
    else consume(Qw, dOw);
    atth_store_rows<HD>(dq + (size_t)b * T * ldq + h * HD, ldq, r0, T, acc, scale, scale, rope);
#endif // SESSA_SM90A
}

#ifdef SESSA_SM90A
// the dK/dV kernel's scores S^T of query tile i0 for one warpgroup (first key wk0; this thread's keys rk0, rk0 + 8;
// Lt: the tile's lse in log2 units) -> P^T in place, 0 where the query precedes the key or is past T (only where
// the tile reaches there), and rounded to bf16 as the A fragments pa of dV += P^T dO_i
template <int BQ>
__device__ __forceinline__ void atth_dkv_p(uint32_t (&pa)[BQ / 16][4], float (&s)[BQ / 2], const float *Lt, int i0,
                                           int wk0, int rk0, int T, float sl2) {
    const int tq = threadIdx.x % 4;
    const bool edge = i0 < wk0 + 63 || i0 + BQ > T;   // a query before some key, or past the end: mask
#pragma unroll
    for (int i = 0; i < BQ / 2; i++) {                 // register i: key rk0 + 8((i>>1)&1), query i0 + c
        int c = 8 * (i / 4) + 2 * tq + (i & 1), t = i0 + c, key = rk0 + 8 * ((i >> 1) & 1);
        s[i] = (edge && (t < key || t >= T)) ? 0.0f : ex2_approx(fmaf(s[i], sl2, -Lt[c]));
    }
    atth_pack_p<BQ>(pa, s);
}
// dS^T = P^T (dP^T - Delta) (dp in place; Dt: the tile's Delta), rounded to bf16 as the A fragments da of
// dK += dS^T Q_i
template <int BQ>
__device__ __forceinline__ void atth_dkv_ds(uint32_t (&da)[BQ / 16][4], float (&dp)[BQ / 2], const float (&s)[BQ / 2],
                                            const float *Dt) {
    const int tq = threadIdx.x % 4;
#pragma unroll
    for (int i = 0; i < BQ / 2; i++) dp[i] = s[i] * (dp[i] - Dt[8 * (i / 4) + 2 * tq + (i & 1)]);
    atth_pack_p<BQ>(da, dp);
}
// one work item of the dK/dV kernel for one warpgroup (64 keys from Kw, Vw; keys rk0, rk0 + 8 of this thread) and
// the query tile i0 (BQ rows of Qt, dOt; lse in log2 units Lt, Delta Dt): S^T = K Q_i^T, dP^T = V dO_i^T,
// P^T (masked where query < key or query >= T), dV += P^T dO_i (running while dS^T is computed),
// dS^T = P^T (dP^T - Delta), dK += dS^T Q_i; every product waited for on return. Ping-pong as atth_dq_tile.
// Kw, Vw: shared memory or A fragments, as Qw, dOw of atth_dq_tile.
template <int HD, int BKV, int BQ, class AOp>
__device__ __forceinline__ void atth_dkv_item(float (&dka)[HD / 2], float (&dva)[HD / 2], float (&s)[BQ / 2],
                                              float (&dp)[BQ / 2], uint32_t (&pa)[BQ / 16][4], uint32_t (&da)[BQ / 16][4],
                                              const AOp &Kw, const AOp &Vw, const unsigned char *Qt,
                                              const unsigned char *dOt, const float *Lt, const float *Dt, int i0,
                                              int wk0, int rk0, int T, float sl2, int turn = 0, int next = 0) {
    if (turn) bar_sync(turn, 256);
    wgmma_fence_operand(s);
    wgmma_fence_operand(dp);
    wgmma_fence();
    atth_issue_qk<HD, BKV, BQ>(s, Kw, Qt);             // S^T = K Q_i^T
    atth_issue_qk<HD, BKV, BQ>(dp, Vw, dOt);           // dP^T = V dO_i^T
    wgmma_wait<1>();
    wgmma_fence_operand(s);
    if (next) bar_arrive(next, 256);
    atth_dkv_p<BQ>(pa, s, Lt, i0, wk0, rk0, T, sl2);
    wgmma_fence_operand(dva);
    wgmma_fence();
    atth_issue_pv<HD, BQ>(dva, pa, dOt);               // dV += P^T dO_i, running while dS^T is computed
    wgmma_wait<1>();                                   // dP^T done (groups complete in order)
    wgmma_fence_operand(dp);
    atth_dkv_ds<BQ>(da, dp, s, Dt);
    wgmma_fence_operand(dka);
    wgmma_fence();
    atth_issue_pv<HD, BQ>(dka, da, Qt);                // dK += dS^T Q_i
    wgmma_wait<0>();
    wgmma_fence_operand(dva);
    wgmma_fence_operand(dka);
    atth_fence_p<BQ / 16>(pa);
    atth_fence_p<BQ / 16>(da);
}
#endif // SESSA_SM90A

// grid (ceil(T/128), Hkv, B) (the first key blocks, the longest, first); ATTH_THREADS threads, KV_SMEM bytes.
// Work items: for each query head h of the kv head's group in order, the query tiles i0 = j0, j0 + 64, .. < T;
// item it -> stage it&1 of Q, dO (cp.async, one group per item, one item ahead) and of lse (log2 units), Delta
// (fetched into registers one item ahead by the first 64 threads, stored to shared memory when the item is issued).
template <int HD>
__global__ void __launch_bounds__(ATTH_THREADS, 1)
attention_backward_dkv_sm90_kernel(floatX *dk, floatX *dv, const floatX *dout, const float *lse, const float *delta,
                                   const floatX *q, const floatX *k, const floatX *v, int T, int H, int Hkv, int ldq, int ldkv,
                                   const float2 *rope) {
#ifdef SESSA_SM90A
    using C = AttHBwdCfg<HD>;
    constexpr int BKV = C::KV_BK, BQ = C::KV_BQ, NS = BQ / 2, NO = HD / 2;
    constexpr int KV_BYTES = BKV * HD * 2, Q_BYTES = BQ * HD * 2;
    extern __shared__ __align__(1024) unsigned char atth_smem[];
    unsigned char *Ks = atth_smem_base(atth_smem), *Vs = Ks + KV_BYTES, *Qs = Vs + KV_BYTES, *dOs = Qs + 2 * Q_BYTES;
    float *Ls = (float *)(dOs + 2 * Q_BYTES), *Ds = Ls + 2 * BQ;
    const int tid = threadIdx.x, wg = tid / 128, lane = tid % 32, g = lane / 4;
    const int j0 = blockIdx.x * BKV, hk = blockIdx.y, b = blockIdx.z, grp = H / Hkv;
    const int wk0 = j0 + 64 * wg, rk0 = wk0 + 16 * ((tid % 128) / 32) + g;   // warpgroup's first key; keys rk0, rk0+8
    const float scale = rsqrtf((float)HD), sl2 = scale * 1.4426950408889634f;
    const int n_q = (T - j0 + BQ - 1) / BQ, n_it = grp * n_q;                // query tiles per head, work items
    const unsigned char *Kw = Ks + wg * 64 * 128, *Vw = Vs + wg * 64 * 128;  // this warpgroup's 64 keys

    float l_next = 0.0f, d_next = 0.0f;                // lse (log2 units) and Delta of row tid (< BQ), one item ahead
    auto fetch = [&](int it) {
        int h = hk * grp + it / n_q, t = j0 + (it % n_q) * BQ + tid;
        l_next = t < T ? lse[((size_t)b * H + h) * T + t] * 1.4426950408889634f : 0.0f;
        d_next = t < T ? delta[((size_t)b * H + h) * T + t] : 0.0f;
    };
    auto issue = [&](int it) {
        int h = hk * grp + it / n_q, i0 = j0 + (it % n_q) * BQ, st = it & 1;
        atth_load_tile<HD, BQ>(Qs + st * Q_BYTES, q + (size_t)b * T * ldq + h * HD, ldq, i0, T);
        atth_load_tile<HD, BQ>(dOs + st * Q_BYTES, dout + ((size_t)b * T * H + h) * HD, H * HD, i0, T);
        cp_async_commit();
        if (tid < BQ) {
            Ls[st * BQ + tid] = l_next;
            Ds[st * BQ + tid] = d_next;
            if (it + 1 < n_it) fetch(it + 1);
        }
    };
    if (tid < BQ) fetch(0);
    atth_load_tile<HD, BKV>(Ks, k + (size_t)b * T * ldkv + hk * HD, ldkv, j0, T);
    atth_load_tile<HD, BKV>(Vs, v + (size_t)b * T * ldkv + hk * HD, ldkv, j0, T);
    issue(0);                                          // one group: K, V and item 0

    float s[NS], dp[NS], dka[NO], dva[NO];
    uint32_t pa[BQ / 16][4], da[BQ / 16][4];
#pragma unroll
    for (int i = 0; i < NS; i++) { s[i] = 0.0f; dp[i] = 0.0f; }
#pragma unroll
    for (int i = 0; i < NO; i++) { dka[i] = 0.0f; dva[i] = 0.0f; }
    for (int it = 0; it < n_it; it++) {
        const int i0 = j0 + (it % n_q) * BQ, st = it & 1;
        const unsigned char *Qt = Qs + st * Q_BYTES, *dOt = dOs + st * Q_BYTES;
        const float *Lt = Ls + st * BQ, *Dt = Ds + st * BQ;
        cp_async_wait<0>();                            // this thread's copies of item it landed
        fence_proxy_async();
        __syncthreads();                               // item it visible to all; stage it+1 free (item it-1 done)
        if (it + 1 < n_it) issue(it + 1);
        if (i0 + BQ - 1 < wk0) continue;               // every query of the tile precedes every key of this warpgroup
        atth_dkv_item<HD, BKV, BQ>(dka, dva, s, dp, pa, da, Kw, Vw, Qt, dOt, Lt, Dt, i0, wk0, rk0, T, sl2);
    }
    size_t base = (size_t)b * T * ldkv + hk * HD;
    atth_store_rows<HD>(dv + base, ldkv, rk0, T, dva, 1.0f, 1.0f);
    atth_store_rows<HD>(dk + base, ldkv, rk0, T, dka, scale, scale, rope);
#endif // SESSA_SM90A
}

#ifdef SESSA_SM90A
// A consumer of the dK/dV kernel software-pipelined (versions 8, 10 at d = 64; measured ~10% SLOWER than version
// 7's kernel, kept for the comparison), as atth_dq_pipelined: each item of the
// warpgroup's own (queries at or after some of its keys) issues S^T, dP^T and then the previous item's dK += dS^T
// Q, so that its exponentials run under its dP^T and the previous dK (256 clocks at d = 64 against 256 per warp);
// dV += P^T dO, issued once P^T is packed, runs under dS^T. Groups, oldest first: S^T, dP^T, dK_prev, then dV;
// wgmma_wait<2> = S^T done (the first item: <1>); <1> after dV's issue = dP^T and dK_prev done (da and the
// previous item's stage free); <0> at the item's end. Nothing in flight across the loop's back edge, the first
// item peeled off; no more registers than version 7; items without such a query handed back in order after their
// full-barrier wait.
template <int HD, int BKV, int BQ, int NST, class AOp>
__device__ __forceinline__ void atth_dkv_pipelined(float (&dka)[HD / 2], float (&dva)[HD / 2], const AOp &Kw,
                                                   const AOp &Vw, const unsigned char *Qs, const unsigned char *dOs,
                                                   const float *Ls, const float *Ds, uint64_t *it_full,
                                                   uint64_t *it_empty, int n_it, int n_q, int j0, int wk0, int rk0,
                                                   int T, float sl2) {
    constexpr int Q_BYTES = BQ * HD * 2;
    float s[BQ / 2], dp[BQ / 2];
    uint32_t pa[BQ / 16][4], da[BQ / 16][4];
#pragma unroll
    for (int i = 0; i < BQ / 2; i++) { s[i] = 0.0f; dp[i] = 0.0f; }
    auto i0_of = [&](int it) { return j0 + (it % n_q) * BQ; };
    auto wait_full = [&](int it) { mbar_wait(it_full + it % NST, (it / NST) & 1); };
    auto release = [&](int it) { mbar_arrive(it_empty + it % NST); };
    auto next_item = [&](int it) {                     // the first item >= it with work here; the ones before handed back
        for (; it < n_it && i0_of(it) + BQ - 1 < wk0; it++) {
            wait_full(it);
            release(it);
        }
        return it;
    };
    // item cur: S^T, dP^T (and dK_prev unless it is the first) issued, P^T, dV, then dS^T into da
    auto item = [&](int cur, int prev, auto first) {
        constexpr bool FIRST = decltype(first)::value;
        const int st = cur % NST;
        const unsigned char *Qt = Qs + st * Q_BYTES, *dOt = dOs + st * Q_BYTES;
        wait_full(cur);
        wgmma_fence_operand(s);
        wgmma_fence_operand(dp);
        wgmma_fence_operand(dka);
        wgmma_fence();
        atth_issue_qk<HD, BKV, BQ>(s, Kw, Qt);         // S^T = K Q_i^T
        atth_issue_qk<HD, BKV, BQ>(dp, Vw, dOt);       // dP^T = V dO_i^T
        if constexpr (!FIRST) atth_issue_pv<HD, BQ>(dka, da, Qs + (prev % NST) * Q_BYTES);   // dK += dS^T_prev Q_prev
        if constexpr (FIRST) wgmma_wait<1>(); else wgmma_wait<2>();   // S^T done
        wgmma_fence_operand(s);
        atth_dkv_p<BQ>(pa, s, Ls + st * BQ, i0_of(cur), wk0, rk0, T, sl2);   // under dP^T and dK_prev
        wgmma_fence_operand(dva);
        wgmma_fence();
        atth_issue_pv<HD, BQ>(dva, pa, dOt);           // dV += P^T dO_i
        wgmma_wait<1>();                               // dP^T, dK_prev done
        wgmma_fence_operand(dp);
        wgmma_fence_operand(dka);
        atth_fence_p<BQ / 16>(da);
        if constexpr (!FIRST) release(prev);           // Q_prev (dK_prev's B), dO_prev, lse, Delta
        atth_dkv_ds<BQ>(da, dp, s, Ds + st * BQ);      // under dV
        wgmma_wait<0>();
        wgmma_fence_operand(dva);
        atth_fence_p<BQ / 16>(pa);
    };
    int prev = next_item(0);
    if (prev >= n_it) return;                          // (no query at or after a key of this warpgroup)
    item(prev, -1, atth_true{});
    for (int cur = next_item(prev + 1); cur < n_it; prev = cur, cur = next_item(cur + 1)) item(cur, prev, atth_false{});
    wgmma_fence_operand(dka);
    wgmma_fence();
    atth_issue_pv<HD, BQ>(dka, da, Qs + (prev % NST) * Q_BYTES);   // the last dK += dS^T Q
    wgmma_wait<0>();
    wgmma_fence_operand(dka);
    atth_fence_p<BQ / 16>(da);
    release(prev);
}
#endif // SESSA_SM90A

#if defined(SESSA_SM90A) && !defined(SESSA_CUDA_EMU_H)
// The counters that order version 12's adds into dQ (CUTLASS's generic barrier: a thread spins on an acquire load,
// the others wait at a barrier behind it; after a barrier over the adding threads one thread fences and counts).
// dev/cuda_emu/cuda_emu.h has twins (there a wait that is not already satisfied is an error: blocks run in order).
__device__ __forceinline__ void sem_wait_eq(const unsigned *c, unsigned v) {
    unsigned x;
    do {
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(x) : "l"(c) : "memory");
    } while (x != v);
}
__device__ __forceinline__ void sem_release_inc(unsigned *c) {
    asm volatile("fence.acq_rel.gpu;\nred.relaxed.gpu.global.add.u32 [%0], 1;\n" :: "l"(c) : "memory");
}
// p[0] += a, p[1] += b at L2, no value returned (p 8-byte aligned; one fp32 rounding each, as a + b); x4: 16 bytes
__device__ __forceinline__ void red_add_f32x2(float *p, float a, float b) {
    asm volatile("red.global.add.v2.f32 [%0], {%1, %2};\n" :: "l"(p), "f"(a), "f"(b) : "memory");
}
__device__ __forceinline__ void red_add_f32x4(float *p, float4 v) {
    asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" :: "l"(p), "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w)
                 : "memory");
}
// bytes (a multiple of 16) of shared memory src -> global dst by the TMA unit, added there in fp32 (add) or copied
// (cp.reduce.async.bulk / cp.async.bulk, one bulk group per commit); bulk_wait<n>: all but the n newest groups
// complete (written);
// fence_proxy_async_global: orders this thread's global accesses of the generic proxy with those of the bulk copies
__device__ __forceinline__ void bulk_s2g(float *dst, const float *src, int bytes, bool add) {
    if (add)
        asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n"
                     :: "l"(dst), "r"(smem_u32(src)), "r"(bytes) : "memory");
    else
        asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n"
                     :: "l"(dst), "r"(smem_u32(src)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bulk_commit(void) { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void bulk_wait(void) {
    asm volatile("cp.async.bulk.wait_group %0;\n" :: "n"(N) : "memory");
}
__device__ __forceinline__ void fence_proxy_async_global(void) { asm volatile("fence.proxy.async.global;\n" ::: "memory"); }
#endif
#ifdef SESSA_SM90A
// Version 12's dQ in the dK/dV kernel. Per item (query tile of 64, 128 keys) each consumer warpgroup stores its
// dS^T (64 keys x 64 queries, bf16: the A fragments of dK += dS^T Q) into the item's dS^T buffer (128 keys x 64
// queries, 128-byte rows, 16-byte chunk c of row r at chunk c ^ (r % 8): conflict-free for these 4-byte stores and
// for ldmatrix's 16-byte rows); then one warpgroup (item parity; the other only signals its half stored and goes
// on) reads dS (queries x 128 keys) back as A fragments (ldmatrix .trans) for dQ_i = dS K (m64n{d}k16, B = K
// MN-major, the block's 128 keys: 8 k-steps) and adds it into the fp32 accumulator of (b, h) in key-block order
// (atth_dq_add).
// this thread's dS^T fragments da (keys kr0, kr0 + 8 of the buffer; kr0 = 64 cw + 16 warp + g) -> the buffer
template <int BQ>
__device__ __forceinline__ void atth_store_dst(unsigned char *buf, const uint32_t (&da)[BQ / 16][4], int kr0) {
    static_assert(BQ == 64, "the dS^T buffer has 128-byte rows: 64 queries");
    const int tq = threadIdx.x % 4;
#pragma unroll
    for (int kk = 0; kk < BQ / 16; kk++)
#pragma unroll
        for (int j = 0; j < 4; j++) {                  // da[kk][j]: key kr0 + 8 (j & 1), queries 16kk + 8 (j >> 1) + 2tq, +1
            const int r = kr0 + 8 * (j & 1), c = 16 * kk + 8 * (j >> 1) + 2 * tq;
            *(uint32_t *)(buf + r * 128 + (((c / 8) ^ (r % 8)) << 4) + (c % 8) * 2) = da[kk][j];
        }
}
// dS (this warp's 16 queries x the buffer's NK keys) as A fragments, one per 16 keys: ldmatrix .trans of the dS^T
// buffer, lane l giving row (key) 16kk + 8 (i / 2) + l % 8 of matrix i = l / 8, queries 16 warp + 8 (i % 2) ..+7
template <int NK>
__device__ __forceinline__ void atth_load_ds(uint32_t (&a)[NK / 16][4], const unsigned char *buf) {
    const int lane = threadIdx.x % 32, i = lane / 8, m0 = 16 * (threadIdx.x % 128 / 32) + 8 * (i % 2);
#pragma unroll
    for (int kk = 0; kk < NK / 16; kk++) {
        const int r = 16 * kk + 8 * (i / 2) + lane % 8;
        ldmatrix_x4_trans(a[kk], buf + r * 128 + (((m0 / 8) ^ (r % 8)) << 4));
    }
}
// A dQ tile in the fp32 accumulator (64 rows x 64 columns, 16 KiB; at d = 128 a query tile's dQ is 2 such tiles, its
// column halves, each with its own counter) is kept in the consumers' register order, not row by
// row: register pair p (acc[2p], acc[2p + 1]: row 16 warp + g + 8 (p & 1), columns 8 (p / 2) + 2tq, +1) of thread wt
// (0..127 of the warpgroup) at floats 2 (128 p + wt), +1. So a warp's adds, loads and stores of one pair cover 256
// contiguous bytes, and the staging buffer of version 13 (the same layout in shared memory) is conflict-free.
// The item's dQ tile (this warpgroup's accumulator acc, 64 x 64) of key block kb into tile (query tile qt of (b, h)
// in the accumulator, or its column half) in the order of the key blocks: thread 0 of the warpgroup waits until the
// tile's counter cnt says kb blocks have added (the others at named barrier bar), then every thread adds its part:
// the first block (kb = 0) stores, the last one (the diagonal block, kb = qt / 2) reads the sum, adds its own and
// writes dq (bf16, times scale, rows < T: row0 the tile's first row, dq_bh = dq of (b, h) at the tile's first column,
// rows ldq apart), every other one adds at L2 (red.global.add.v2.f32); after a second barrier thread 0 counts the
// block (not the last: nobody waits for it). The last one sums into acc in place (a separate sum made ptxas spill
// at d = 128, next to dK, dV's 128 registers).
__device__ __forceinline__ void atth_dq_add(float *tile, unsigned *cnt, float (&acc)[32], int kb, int qt, int bar,
                                            floatX *dq_bh, int ldq, int row0, int T, float scale, const float2 *rope,
                                            int rope_ld) {
    const int wt = threadIdx.x % 128, r = 16 * (wt / 32) + wt % 32 / 4;
    const bool first = kb == 0, last = kb == qt / 2;
    if (first && last) {                               // the only block adding there (query tiles 0 and 1)
        atth_store_rows<64>(dq_bh, ldq, row0 + r, T, acc, scale, scale, rope, rope_ld);
        return;
    }
    if (wt == 0) sem_wait_eq(cnt, kb);
    bar_sync(bar, 128);                                // blocks < kb have added (acquired by thread 0)
#pragma unroll
    for (int p = 0; p < 16; p++) {
        float *q = tile + 2 * (128 * p + wt);
        if (first) *(float2 *)q = make_float2(acc[2 * p], acc[2 * p + 1]);
        else if (last) {
            const float2 o = __ldcg((const float2 *)q);
            acc[2 * p] = o.x + acc[2 * p];
            acc[2 * p + 1] = o.y + acc[2 * p + 1];
        } else red_add_f32x2(q, acc[2 * p], acc[2 * p + 1]);
    }
    if (last) {
        atth_store_rows<64>(dq_bh, ldq, row0 + r, T, acc, scale, scale, rope, rope_ld);
        return;
    }
    bar_sync(bar, 128);                                // every thread's adds issued (ordered before the count)
    if (wt == 0) sem_release_inc(cnt);
}
// Version 13: a consumer hands a tile that is not the diagonal block's (kb < qt / 2) to its writer warp through its
// NSB staging buffers (64 x 64 floats each in the layout above; tile n of the warpgroup's sequence in buffer n % NSB)
// and goes on: named barriers 12 + NSB cw + n % NSB (buffer free: the writer's arrival after the tile NSB before,
// not waited for on a buffer's first use) and 6 + NSB cw + n % NSB (staged); (4 + cw, 128 threads: atth_dq_add's,
// which this warpgroup still runs for the diagonal block's tiles; 10, 11: the dS^T buffers).
template <int NSB>
__device__ __forceinline__ void atth_dq_stage(float *bufs, const float (&acc)[32], int cw, int n) {
    const int wt = threadIdx.x % 128, sb = NSB * cw + n % NSB;
    float *buf = bufs + sb * 64 * 64;
    if (n >= NSB) bar_sync(12 + sb, 160);
#pragma unroll
    for (int p = 0; p < 16; p++) *(float2 *)(buf + 2 * (128 * p + wt)) = make_float2(acc[2 * p], acc[2 * p + 1]);
    fence_proxy_async();                               // (version 14's writer reads the buffer by TMA)
    bar_arrive(6 + sb, 160);
}
// Version 13's writer warps (warps 1, 2 of the producer warpgroup; warp 3 loads lse, Delta alone): writer c takes
// the tiles consumer warpgroup c stages, those of the items it = it0, it0 + step, .. < n_st (d = 64: it0 = c, step
// 2, the items whose dQ the warpgroup makes; d = 128: it0 = 0, step 1, every item's column half c), tile n of them
// from buffer n % NSB, each after its counter says kb blocks have added (lane 0 waits), stored (kb = 0) or added at
// L2 (red.global.add.v4.f32) by the 32 lanes, the buffer handed back (unless no later tile comes through it), then
// counted by lane 0; tile_of(it) = (the tile in the accumulator, its counter). Two writers: at d = 64 each has 2
// items' time (~2 x 2.4k clocks) for a tile's ~1.5k (an acquire load, 32 ld.shared + red.v4 per lane, the fence
// before the count), one would have 1; at d = 128 each has one item's time (~2 x 2.4k: twice d = 64's products).
// BULK (version 14): lane 0 alone moves the tile, by one TMA bulk copy or reduction (cp.reduce.async.bulk .add.f32,
// FlashAttention-3's way), with proxy fences on both sides of it. LAG (version 16, NSB = 2): the reduction of tile
// n is still in flight while the writer waits for tile n + 1 (staged, its counter) and issues it: tile n is counted
// and its buffer handed back only then (bulk_wait<1>), so a tile's L2 round trip overlaps the next one's wait.
// NSB = 2 without LAG (version 17): each tile counted as soon as it is added, the second buffer only slack for the
// consumer (it stages the next tile while the writer still adds one).
template <bool BULK, bool LAG, int NSB, class TileOf>
__device__ __forceinline__ void atth_dq_writer(const float *bufs, int it0, int step, int n_st, int kb, int c,
                                               const TileOf &tile_of) {
    static_assert(NSB == 1 || NSB == 2, "1 or 2 staging buffers per consumer warpgroup");
    static_assert(!LAG || (BULK && NSB == 2), "one reduction in flight: bulk reductions and 2 staging buffers");
    constexpr int TILE = 64 * 64;                      // floats
    const int lane = threadIdx.x % 32, n_w = it0 < n_st ? (n_st - it0 + step - 1) / step : 0;
    auto retire = [&](int m) {                         // tile m is added: its buffer back, the tile counted
        float *tile;
        unsigned *cnt;
        tile_of(it0 + m * step, tile, cnt);
        if (m + NSB < n_w) bar_arrive(12 + NSB * c + m % NSB, 160);
        if (lane == 0) sem_release_inc(cnt);
    };
    for (int n = 0; n < n_w; n++) {
        const float *buf = bufs + (NSB * c + n % NSB) * TILE;
        float *tile;
        unsigned *cnt;
        tile_of(it0 + n * step, tile, cnt);
        bar_sync(6 + NSB * c + n % NSB, 160);          // the consumer's tile n is in its buffer
        if (lane == 0) sem_wait_eq(cnt, kb);
        if (BULK && lane == 0) {
            fence_proxy_async_global();                // the bulk operation after the acquire
            bulk_s2g(tile, buf, TILE * sizeof(float), kb != 0);
            bulk_commit();
            bulk_wait<LAG ? 1 : 0>();                  // tile n - LAG written (and its buffer read)
            fence_proxy_async_global();                // ... and before the count
        }
        __syncwarp();
        const float4 *src = (const float4 *)buf;
#pragma unroll 2
        for (int k = lane; k < (BULK ? 0 : TILE / 4); k += 32) {   // (2 at a time: 24 registers)
            const float4 v = src[k];
            if (kb == 0) *(float4 *)(tile + 4 * k) = v;
            else red_add_f32x4(tile + 4 * k, v);
        }
        __syncwarp();                                  // every lane's adds issued (ordered before the count)
        if (!LAG) retire(n);
        else if (n > 0) retire(n - 1);
    }
    if (LAG && n_w > 0) {                              // the last tile
        if (lane == 0) {
            bulk_wait<0>();
            fence_proxy_async_global();
        }
        __syncwarp();
        retire(n_w - 1);
    }
}
#endif // SESSA_SM90A

// The dK/dV kernel warp-specialized (backward version 4): K, V (128 keys) loaded once by TMA, then per work item
// (query head of the group, query tile of 64, in the order above) Q_i, dO_i by TMA and lse, Delta (64 rows each,
// read by 64 producer threads and stored to shared memory) into a ring of STAGES = 3 stages, one full mbarrier per
// stage (the TMA thread's expect_tx + the 64 row threads' arrivals) and one empty (the 256 consumer threads);
// 2 consumer warpgroups of 64 keys run atth_dkv_item per item. Shared memory: K, V, 3 x (Q_i, dO_i, lse, Delta),
// 7 mbarriers: 83 / 163 KiB at d = 64 / 128. Registers (ptxas -v): 168 at launch (384 threads), 24 / 240 after
// setmaxnreg, no spills (version 3's dK/dV kernel needs 255 at d = 128).
// grid ceil(T/128) B Hkv (1-d), key blocks in atth_block_order with sections of sec kv heads (rank 0 = the first
// key block, the longest); AttWBwdCfg<HD>::THREADS threads, ::KV_SMEM bytes; tq, tdo: maps of q, dout with boxes of
// 64 rows, tk, tv: maps of k, v with boxes of 128 rows; PINGPONG (versions 6, 7): the consumers take turns
// (atth_pingpong_turns); RS (versions 7-10 at d = 64): S^T and dP^T with K, V from registers (atth_load_afrag);
// PIPE (versions 8, 10 at d = 64): each consumer software-pipelined (atth_dkv_pipelined), no ping-pong;
// DQ (versions 12 (1), 13 (2), 14 and 17 (3), 16 (4), with RS at d = 64 only, without PINGPONG and PIPE; 0: none): dQ here
// too (atth_dq_add; dqa, dq_cnt: the fp32 accumulator (B, H, Tp, d) in tiles of 64 rows x 64 columns and the counters
// (B, H, Tp / 64, d / 64, zero at launch), Tp = T rounded up to 64; dq rows ldq apart; at d = 128 each consumer
// warpgroup makes a column half), the items in item_at's order, 2 buffers of dS^T more, and with DQ >= 2 the 2 writer
// warps (atth_dq_writer; DQ = 4: LAG) and their NSB staging buffers per warpgroup (NSB = 2: versions 16, 17); the Q, dO stages that fit
// (AttWBwdCfg::kvq_stages); no spills (ptxas -v, nvcc 13; the writer's loop 2 float4 at a time in the producer's 24
// registers)
template <int HD, bool PINGPONG, bool RS, bool PIPE, int DQ = 0, int NSB = 1>
__global__ void __launch_bounds__(AttWBwdCfg<HD>::THREADS, 1)
attention_backward_dkv_sm90_ws_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tdo,
                                      const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv,
                                      floatX *dk, floatX *dv, const float *lse, const float *delta, int T, int H, int Hkv,
                                      int ldkv, int sec, floatX *dq, int ldq, float *dqa, unsigned *dq_cnt,
                                      const float2 *rope) {
#ifdef SESSA_SM90A
    using C = AttWBwdCfg<HD>;
    constexpr int BKV = C::KV_BK, BQ = C::KV_BQ, NST = DQ ? C::kvq_stages(DQ, NSB) : C::STAGES, NS = BQ / 2, NO = HD / 2;
    constexpr int KV_BYTES = BKV * HD * 2, Q_BYTES = BQ * HD * 2, DS_BYTES = BKV * BQ * 2, DQT = 64 * 64;   // DQT floats
    constexpr int NH = HD / 64;                        // DQ: dQ tiles (column halves at d = 128) per query tile
    static_assert(!DQ || (RS == (HD == 64) && !PINGPONG && !PIPE),
                  "versions 12-14, 16, 17: the dK/dV consumers of version 7 without turns (K, V from registers at d = 64)");
    extern __shared__ __align__(1024) unsigned char atth_smem[];
    unsigned char *Ks = atth_smem_base(atth_smem), *Vs = Ks + KV_BYTES, *dSs = Vs + KV_BYTES;   // dSs: DQ only
    float *dQs = (float *)(dSs + (DQ ? 2 * DS_BYTES : 0));                                     // DQ >= 2 only
    unsigned char *Qs = (unsigned char *)(dQs + (DQ >= 2 ? 2 * NSB * DQT : 0)), *dOs = Qs + NST * Q_BYTES;
    float *Ls = (float *)(dOs + NST * Q_BYTES), *Ds = Ls + NST * BQ;
    uint64_t *kv_full = (uint64_t *)(Ds + NST * BQ), *it_full = kv_full + 1, *it_empty = it_full + NST;
    const int tid = threadIdx.x, wg = tid / 128, nb = (T + BKV - 1) / BKV;
    int rank, bh;
    atth_block_order(rank, bh, blockIdx.x, nb, gridDim.x / nb, sec);
    const int j0 = rank * BKV, hk = bh % Hkv, b = bh / Hkv, grp = H / Hkv;
    const int n_q = (T - j0 + BQ - 1) / BQ, n_it = grp * n_q;                // query tiles per head, work items
    const int nqt = (T + BQ - 1) / BQ, n_st = DQ >= 2 ? max(n_q - 2, 0) * grp : 0;   // query tiles; staged (DQ >= 2)
    constexpr int NR = DQ >= 2 ? 32 : BQ;             // producer threads loading lse, Delta (DQ >= 2: warp 3, 2 rows each)
    auto item_at = [&](int it, int &h, int &i0) {     // work item it -> query head h, first query i0
        if (DQ) {                                      // the last query tile first, the group's heads in turn
            h = hk * grp + it % grp;
            i0 = j0 + (n_q - 1 - it / grp) * BQ;
        } else {                                       // head by head, the first query tile first
            h = hk * grp + it / n_q;
            i0 = j0 + (it % n_q) * BQ;
        }
    };
    auto tile_of = [&](int it, int half, float *&tile, unsigned *&cnt) {   // DQ: item it's dQ tile (column half) in
        int h, i0;                                                            // dqa, its counter
        item_at(it, h, i0);
        const size_t t = (((size_t)b * H + h) * nqt + i0 / BQ) * NH + half;
        tile = dqa + t * DQT;
        cnt = dq_cnt + t;
    };
    if (tid == 0) {
        mbar_init(kv_full, 1);
        for (int st = 0; st < NST; st++) {
            mbar_init(it_full + st, 1 + NR);           // the TMA thread + the lse/Delta row threads
            mbar_init(it_empty + st, 128 * C::NWG);
        }
        mbar_fence_init();
    }
    __syncthreads();
    if (wg == 0) {                                     // the producer: thread 0 the tiles, the last NR threads lse, Delta
        setmaxnreg_dec<C::PRODUCER_REGS>();
        const int r = tid - (128 - NR);                // this thread's first row of lse, Delta (when >= 0)
        if (tid == 0) {
            mbar_arrive_expect_tx(kv_full, 2 * KV_BYTES);
            attw_load_rows<HD, BKV>(Ks, &tk, kv_full, hk, j0, b);
            attw_load_rows<HD, BKV>(Vs, &tv, kv_full, hk, j0, b);
        }
        if (DQ >= 2 && (tid / 32 == 1 || tid / 32 == 2)) {   // warps 1, 2: version 13's writers (of consumer c)
            const int c = tid / 32 - 1;                // d = 64: the even, odd items; 128: the left, right column halves
            atth_dq_writer<DQ >= 3, DQ == 4, NSB>(dQs, HD == 64 ? c : 0, HD == 64 ? 2 : 1, n_st, rank, c,
                                         [&](int it, float *&tile, unsigned *&cnt) { tile_of(it, NH == 2 ? c : 0, tile, cnt); });
            return;
        }
        if (tid != 0 && r < 0) return;
        for (int it = 0; it < n_it; it++) {
            const int st = it % NST;
            int h, i0;
            item_at(it, h, i0);
            if (it >= NST) mbar_wait(it_empty + st, ((it / NST) & 1) ^ 1);   // item it - NST is done with the stage
            if (tid == 0) {
                mbar_arrive_expect_tx(it_full + st, 2 * Q_BYTES);
                attw_load_rows<HD, BQ>(Qs + st * Q_BYTES, &tq, it_full + st, h, i0, b);
                attw_load_rows<HD, BQ>(dOs + st * Q_BYTES, &tdo, it_full + st, h, i0, b);
            } else {
#pragma unroll 1
                for (int rr = r; rr < BQ; rr += NR) {
                    const int t = i0 + rr;
                    Ls[st * BQ + rr] = t < T ? lse[((size_t)b * H + h) * T + t] * 1.4426950408889634f : 0.0f;
                    Ds[st * BQ + rr] = t < T ? delta[((size_t)b * H + h) * T + t] : 0.0f;
                }
                mbar_arrive(it_full + st);             // (release: the stores are visible to the waiting consumers)
            }
        }
        return;
    }

    setmaxnreg_inc<C::CONSUMER_REGS>();                // a consumer: 64 keys
    const int cw = wg - 1, g = tid % 32 / 4;
    const int wk0 = j0 + 64 * cw, rk0 = wk0 + 16 * ((tid % 128) / 32) + g;   // warpgroup's first key; keys rk0, rk0+8
    const float scale = rsqrtf((float)HD), sl2 = scale * 1.4426950408889634f;
    const unsigned char *Kw = Ks + cw * 64 * 128, *Vw = Vs + cw * 64 * 128;  // this warpgroup's 64 keys
    float dka[NO], dva[NO];
#pragma unroll
    for (int i = 0; i < NO; i++) { dka[i] = 0.0f; dva[i] = 0.0f; }
    mbar_wait(kv_full, 0);
    uint32_t ka[HD / 16][4], va[HD / 16][4];           // RS: this warpgroup's K, V rows as A fragments
    if (RS) {
        atth_load_afrag<HD, BKV>(ka, Ks, 64 * cw);
        atth_load_afrag<HD, BKV>(va, Vs, 64 * cw);
    }
    static_assert(!(PIPE && PINGPONG), "the pipelined dK/dV consumers do not take turns");
    auto consume = [&](const auto &kop, const auto &vop) {   // the warpgroup's items with K, V as kop, vop
        if constexpr (DQ) {
            const int kr0 = 64 * cw + 16 * ((tid % 128) / 32) + g;   // this thread's first key row in dS^T
            for (int it = 0; it < n_it; it++) {
                // (declared here: nothing of them is live across items, so that at d = 128 dQ's 64 registers
                // below reuse S^T's and dP^T's next to dK, dV; their initial values are never read: wgmma's
                // first k-step overwrites them)
                float s[NS], dp[NS], dqr[32];
                uint32_t pa[BQ / 16][4], da[BQ / 16][4], dsa[BKV / 16][4];
                const int st = it % NST;
                int h, i0;
                item_at(it, h, i0);
                unsigned char *dSt = dSs + (it & 1) * DS_BYTES;
                mbar_wait(it_full + st, (it / NST) & 1);
                if (i0 + BQ - 1 < wk0) {               // every query of the tile precedes every key here: dS^T = 0
#pragma unroll
                    for (int kk = 0; kk < BQ / 16; kk++) da[kk][0] = da[kk][1] = da[kk][2] = da[kk][3] = 0u;
                } else atth_dkv_item<HD, BKV, BQ>(dka, dva, s, dp, pa, da, kop, vop, Qs + st * Q_BYTES, dOs + st * Q_BYTES,
                                                  Ls + st * BQ, Ds + st * BQ, i0, wk0, rk0, T, sl2);
                mbar_arrive(it_empty + st);
                atth_store_dst<BQ>(dSt, da, kr0);
                // named barrier 10 + (it & 1): the other warpgroup's half of dS^T stored; one per buffer, so that
                // an arrival is never counted in the next item's phase, and a warpgroup's arrival in item it + 1
                // follows its reads of buffer it & 1 (free in item it + 2). d = 64: the warpgroup of the item's
                // parity makes dQ_i (the other arrives and goes on); d = 128: both, column half cw each
                if (NH == 1 && (it & 1) != cw) {
                    bar_arrive(10 + (it & 1), 256);
                    continue;
                }
                bar_sync(10 + (it & 1), 256);
                const int half = NH == 2 ? cw : 0;
                atth_load_ds<BKV>(dsa, dSt);
#pragma unroll
                for (int i = 0; i < 32; i++) dqr[i] = 0.0f;
                wgmma_fence_operand(dqr);
                wgmma_fence();
                atth_issue_pv<64, BKV>(dqr, dsa, Ks + half * BKV * 128);   // dQ_i[:, 64 half ..] = dS K[:, 64 half ..]
                wgmma_wait<0>();
                wgmma_fence_operand(dqr);
                atth_fence_p<BKV / 16>(dsa);
                float *tile;
                unsigned *cnt;
                tile_of(it, half, tile, cnt);
                if (DQ >= 2 && it < n_st) atth_dq_stage<NSB>(dQs, dqr, cw, NH == 2 ? it : it / 2);   // to the writer
                else atth_dq_add(tile, cnt, dqr, rank, i0 / BQ, 4 + cw, dq + (size_t)b * T * ldq + h * HD + 64 * half,
                                 ldq, i0, T, scale, rope ? rope + 32 * half : nullptr, HD / 2);
            }
        } else if constexpr (PIPE) {
            atth_dkv_pipelined<HD, BKV, BQ, NST>(dka, dva, kop, vop, Qs, dOs, Ls, Ds, it_full, it_empty, n_it, n_q, j0,
                                                 wk0, rk0, T, sl2);
        } else {
            float s[NS], dp[NS];
            uint32_t pa[BQ / 16][4], da[BQ / 16][4];
#pragma unroll
            for (int i = 0; i < NS; i++) { s[i] = 0.0f; dp[i] = 0.0f; }
            if (PINGPONG && cw == 1) bar_arrive(1, 256);   // consumer 0 has the first turn
            for (int it = 0; it < n_it; it++) {
                const int st = it % NST, i0 = j0 + (it % n_q) * BQ;
                int turn, next;
                atth_pingpong_turns(turn, next, PINGPONG, cw, it + 1 == n_it);
                mbar_wait(it_full + st, (it / NST) & 1);
                if (i0 + BQ - 1 < wk0) atth_pingpong_pass(turn, next);   // every query of the tile precedes every key here
                else atth_dkv_item<HD, BKV, BQ>(dka, dva, s, dp, pa, da, kop, vop, Qs + st * Q_BYTES, dOs + st * Q_BYTES,
                                                Ls + st * BQ, Ds + st * BQ, i0, wk0, rk0, T, sl2, turn, next);
                mbar_arrive(it_empty + st);
            }
        }
    };
    if constexpr (RS) consume(ka, va);
    else consume(Kw, Vw);
    const size_t base = (size_t)b * T * ldkv + hk * HD;
    atth_store_rows<HD>(dv + base, ldkv, rk0, T, dva, 1.0f, 1.0f);
    atth_store_rows<HD>(dk + base, ldkv, rk0, T, dka, scale, scale, rope);
#endif // SESSA_SM90A
}

// version 3: both kernels with cp.async loads by all threads; 4: both warp-specialized (a TMA producer warpgroup);
// 5: version 4 with the longest blocks of all heads of an L2 section first (atth_block_order); 6: version 5 with
// the consumer warpgroups in ping-pong (atth_pingpong_turns); 7: version 6 with the warpgroup's constant operand
// of S, dP in registers, and at d = 64 that of S^T, dP^T too; 8: version 7 with both kernels' consumers
// software-pipelined instead of in ping-pong (atth_dq_pipelined, atth_dkv_pipelined), at d = 64 (at 128: 7); 9: the
// dQ kernel of 8 with the dK/dV kernel of 7; 10: the dQ kernel of 7 with the dK/dV kernel of 8; 11: 9 with the
// pipelined dQ kernel's consumers also in ping-pong; 12: dQ in the dK/dV kernel of 7 (without the turns), added in
// key-block order at L2 (red.add), no dQ kernel (at d = 128 dQ split by columns between the consumers); 13: 12 with
// the adds other than the diagonal block's made by 2 writer warps from shared memory; 14: 13 with the writers' adds
// by TMA bulk reductions; 16: 14 with 2 staging buffers per warpgroup and one reduction in flight per writer
// (measured slower than 14 everywhere, kept for the comparison); 17: 14 with 2 staging buffers per warpgroup (each
// tile counted at once); 15 (the trainer's): atth_bwd_version15 (14 at d = 64 from T = 8192 on and at d = 128 from
// T = 16384 on, else 9); work: atth_dq_work_bytes (12-17)
// the dQ kernel's side stream (attention_backward_sm90_hd: beside the dK/dV kernel when both fit on the SMs,
// atth_sm_count), made at the first use, at the calling stream's priority; atth_side_fork: it waits for the work
// issued to stream so far and is returned; atth_side_join: stream waits for the work issued to it since
static cudaStream_t atth_side_stream;
static cudaEvent_t atth_side_ev[2];
static cudaStream_t atth_side_fork(cudaStream_t stream) {
    static bool made = false;
    if (!made) {
        made = true;
        int prio;
        cudaCheck(cudaStreamGetPriority(stream, &prio));
        cudaCheck(cudaStreamCreateWithPriority(&atth_side_stream, cudaStreamNonBlocking, prio));
        for (int i = 0; i < 2; i++) cudaCheck(cudaEventCreateWithFlags(&atth_side_ev[i], cudaEventDisableTiming));
    }
    cudaCheck(cudaEventRecord(atth_side_ev[0], stream));
    cudaCheck(cudaStreamWaitEvent(atth_side_stream, atth_side_ev[0], 0));
    return atth_side_stream;
}
static void atth_side_join(cudaStream_t stream) {
    cudaCheck(cudaEventRecord(atth_side_ev[1], atth_side_stream));
    cudaCheck(cudaStreamWaitEvent(stream, atth_side_ev[1], 0));
}

template <int HD>
static void attention_backward_sm90_hd(floatX *dq, floatX *dk, floatX *dv, const floatX *dout, const float *lse,
                                       const float *delta, const floatX *q, const floatX *k, const floatX *v, float *work,
                                       int B, int T, int H, int Hkv, int ldq, int ldkv, int version, cudaStream_t stream,
                                       const float2 *rope) {
    using C = AttHBwdCfg<HD>;
    if (version == 15) version = atth_bwd_version15(HD, T);
    if (version == 3) {
        cudaCheck(cudaFuncSetAttribute(attention_backward_dkv_sm90_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::KV_SMEM));
        attention_backward_dkv_sm90_kernel<HD><<<dim3(ceil_div(T, C::KV_BK), Hkv, B), ATTH_THREADS, C::KV_SMEM, stream>>>(
            dk, dv, dout, lse, delta, q, k, v, T, H, Hkv, ldq, ldkv, rope);
        cudaCheck(cudaGetLastError());
        cudaCheck(cudaFuncSetAttribute(attention_backward_dq_sm90_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::DQ_SMEM));
        attention_backward_dq_sm90_kernel<HD><<<dim3(ceil_div(T, C::DQ_BQ), H, B), ATTH_THREADS, C::DQ_SMEM, stream>>>(
            dq, dout, lse, delta, q, k, v, T, H, Hkv, ldq, ldkv, rope);
    } else if (version >= 12) {   // dQ in the dK/dV kernel
        using W = AttWBwdCfg<HD>;
        const int nqt = ceil_div(T, W::KV_BQ);
        float *dqa = work;
        unsigned *cnt = (unsigned *)(dqa + (size_t)B * H * nqt * W::KV_BQ * HD);
        cudaCheck(cudaMemsetAsync(cnt, 0, (size_t)B * H * nqt * (HD / 64) * sizeof(unsigned), stream));
        // sections: Q, dO (bf16) and the dQ accumulator (fp32) of a kv head's grp heads
        const int sec = atth_section((size_t)(H / Hkv) * T * HD * 8, 1, B * Hkv);
        const int dqv = version == 12 ? 1 : version == 13 ? 2 : version == 16 ? 4 : 3, nsb = version >= 16 ? 2 : 1;
        auto dkv = version == 12 ? attention_backward_dkv_sm90_ws_kernel<HD, false, HD == 64, false, 1>
                 : version == 13 ? attention_backward_dkv_sm90_ws_kernel<HD, false, HD == 64, false, 2>
                 : version == 14 ? attention_backward_dkv_sm90_ws_kernel<HD, false, HD == 64, false, 3>
                 : version == 16 ? attention_backward_dkv_sm90_ws_kernel<HD, false, HD == 64, false, 4, 2>
                                 : attention_backward_dkv_sm90_ws_kernel<HD, false, HD == 64, false, 3, 2>;
        const size_t smem = W::kvq_smem(dqv, nsb);
        CUtensorMap tq64 = atth_tensor_map(q, B, T, H, HD, ldq, W::KV_BQ), tdo64 = atth_tensor_map(dout, B, T, H, HD, H * HD, W::KV_BQ);
        CUtensorMap tk128 = atth_tensor_map(k, B, T, Hkv, HD, ldkv, W::KV_BK), tv128 = atth_tensor_map(v, B, T, Hkv, HD, ldkv, W::KV_BK);
        cudaCheck(cudaFuncSetAttribute(dkv, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        dkv<<<ceil_div(T, W::KV_BK) * B * Hkv, W::THREADS, smem, stream>>>(
            tq64, tdo64, tk128, tv128, dk, dv, lse, delta, T, H, Hkv, ldkv, sec, dq, ldq, dqa, cnt, rope);
    } else {   // q, k, v through tensor maps with their row strides; dout dense (B, T, H, d)
        using W = AttWBwdCfg<HD>;
        const int grp = H / Hkv;   // sections (version 5): Q, dO of a kv head's grp heads; K, V of a kv head
        const int sec_kv = version >= 5 ? atth_section((size_t)grp * T * HD * 4, 1, B * Hkv) : 1;
        const int sec_q = version >= 5 ? atth_section((size_t)T * HD * 4, grp, B * H) : 1;
        // version 7's A fragments: the dQ kernel's Q, dO at both widths, the dK/dV kernel's K, V at d = 64 (at 128
        // they would not fit next to dK, dV)
        // versions 8-10's pipelined consumers at d = 64 only (at 128: version 7's kernels, see the top)
        const bool dq_pipe = HD == 64 && (version == 8 || version == 9 || version == 11);
        const bool dkv_pipe = HD == 64 && (version == 8 || version == 10);
        auto dkv = dkv_pipe ? attention_backward_dkv_sm90_ws_kernel<HD, false, HD == 64, HD == 64>
                 : version >= 7 ? attention_backward_dkv_sm90_ws_kernel<HD, true, HD == 64, false>
                 : version == 6 ? attention_backward_dkv_sm90_ws_kernel<HD, true, false, false>
                                : attention_backward_dkv_sm90_ws_kernel<HD, false, false, false>;
        auto dqk = dq_pipe && version == 11 ? attention_backward_dq_sm90_ws_kernel<HD, true, true, HD == 64>
                 : dq_pipe ? attention_backward_dq_sm90_ws_kernel<HD, HD != 64, true, HD == 64>
                 : version >= 7 ? attention_backward_dq_sm90_ws_kernel<HD, true, true, false>
                 : version == 6 ? attention_backward_dq_sm90_ws_kernel<HD, true, false, false>
                                : attention_backward_dq_sm90_ws_kernel<HD, false, false, false>;
        CUtensorMap tq64 = atth_tensor_map(q, B, T, H, HD, ldq, W::KV_BQ), tdo64 = atth_tensor_map(dout, B, T, H, HD, H * HD, W::KV_BQ);
        CUtensorMap tk128 = atth_tensor_map(k, B, T, Hkv, HD, ldkv, W::KV_BK), tv128 = atth_tensor_map(v, B, T, Hkv, HD, ldkv, W::KV_BK);
        // the two kernels are independent (Delta given): when their grids fit on the SMs together (one CTA an SM
        // each: small problems, e.g. d4w256h4 B=8 T=256, 64 + 64 CTAs) the dQ kernel runs beside the dK/dV kernel
        // on a stream of its own instead of after it
        const int n_kv = ceil_div(T, W::KV_BK) * B * Hkv, n_q = ceil_div(T, W::BQ) * B * H;
        cudaStream_t qs = n_kv + n_q <= atth_sm_count() ? atth_side_fork(stream) : stream;
        cudaCheck(cudaFuncSetAttribute(dkv, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)W::KV_SMEM));
        dkv<<<n_kv, W::THREADS, W::KV_SMEM, stream>>>(
            tq64, tdo64, tk128, tv128, dk, dv, lse, delta, T, H, Hkv, ldkv, sec_kv, nullptr, 0, nullptr, nullptr, rope);
        cudaCheck(cudaGetLastError());
        CUtensorMap tq = atth_tensor_map(q, B, T, H, HD, ldq, W::BQ), tdo = atth_tensor_map(dout, B, T, H, HD, H * HD, W::BQ);
        CUtensorMap tk = atth_tensor_map(k, B, T, Hkv, HD, ldkv, W::BK), tv = atth_tensor_map(v, B, T, Hkv, HD, ldkv, W::BK);
        cudaCheck(cudaFuncSetAttribute(dqk, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)W::DQ_SMEM));
        dqk<<<n_q, W::THREADS, W::DQ_SMEM, qs>>>(tq, tdo, tk, tv, dq, lse, delta, T, H, Hkv, ldq, sec_q, rope);
        cudaCheck(cudaGetLastError());
        if (qs != stream) atth_side_join(stream);
    }
    cudaCheck(cudaGetLastError());
}

// the two Hopper backward kernels, Delta (B,H,T) given (attention_backward_sm90 in llmc/attention.cuh computes it
// first; attention_backward picks that when the Hopper path is trusted and d is 64 or 128)
static void attention_backward_sm90_kernels(floatX *dq, floatX *dk, floatX *dv, const floatX *dout, const float *lse,
                                            const float *delta, const floatX *q, const floatX *k, const floatX *v,
                                            float *work, int B, int T, int H, int Hkv, int d, int ldq, int ldkv,
                                            int version, cudaStream_t stream, const float2 *rope = nullptr) {
    if (d != 64 && d != 128) fatal("attention backward (Hopper): head width d=%d is not supported (64 or 128)", d);
    if (version < 3 || version > 17) fatal("attention backward (Hopper): version %d does not exist (3 to 17)", version);
    if (!attention_sm90_usable())
        fatal("attention backward (Hopper): needs a compute capability 9.0 GPU, a binary built with "
              "-gencode arch=compute_90a,code=sm_90a, and SESSA_ATT_SM90 not 0");
    if (d == 64) attention_backward_sm90_hd<64>(dq, dk, dv, dout, lse, delta, q, k, v, work, B, T, H, Hkv, ldq, ldkv, version, stream, rope);
    if (d == 128) attention_backward_sm90_hd<128>(dq, dk, dv, dout, lse, delta, q, k, v, work, B, T, H, Hkv, ldq, ldkv, version, stream, rope);
}

#endif // SESSA_ATTENTION_SM90_BWD_CUH
