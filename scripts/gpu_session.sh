#!/usr/bin/env bash
# One call on a GPU machine: build, check, benchmark, profile. Stages run in the order given; logs go
# under $OUT (default ./gpu_out), one file per stage, and a summary table is printed last.
#   scripts/gpu_session.sh build check test             (the hardware check: every dev/cuda kernel and
#                                                        test_sessacu on every CUDA reference dump, -E's accuracies)
#   scripts/gpu_session.sh build kbench                  make -C dev/cuda bench (KBENCH="gamma adamw": only those kernels' bench)
#   scripts/gpu_session.sh build optbench                the gradient norm's and AdamW's 4-byte and 16-byte loads
#                                                        (dev/cuda/global_norm.cu, dev/cuda/adamw.cu bench)
#   scripts/gpu_session.sh build clsbench                the fused classifier's versions at d12 and d4w256h4 sizes (N = 8192, 2048)
#   scripts/gpu_session.sh build colbench                column sums (dev/cuda/reduce.cu: previous kernel vs llmc, grids and
#                                                        rows in flight, at the d12 and d4w256h4 shapes), LayerNorm and gamma
#   scripts/gpu_session.sh build fbbench                 feedback solve: ours vs the dense form (and the lookahead, 3 buffer sets, side GEMMs on fewer SMs, one stream, superblock sizes,
#                                                        the inverses' places SESSA_FB_INV=0, 1, 2: llmc/feedback.cuh)
#   scripts/gpu_session.sh build twins                  the trainers as twins on the real GPU: same -x 0 val loss and
#                                                        20-step curve as the CPU trainer; run directory (resume, SIGINT)
#   scripts/gpu_session.sh build decode                  greedy tokens agree (C, CUDA, PyTorch); generation speed (bench_decode.sh)
#   scripts/gpu_session.sh build chainncu                ncu sections of the feedback chain's context GEMMs (cuBLASLt split-K and its reduce
#                                                        kernels) in a d12 B=1 T=8192 step (CHAIN_REGEX, CHAIN_SKIP, CHAIN_COUNT)
#   scripts/gpu_session.sh build fbncu                   ncu sections of the in-superblock solve kernels
#   scripts/gpu_session.sh build fbphases                where the solve kernels' cycles go, per phase (dev/cuda/feedback_phases.cu),
#                                                        the default and the inverses in every CTA (SESSA_FB_INV=0)
#   scripts/gpu_session.sh build train                   train_sessacu tok/s at d12 B=8 and B=16 T=1024 and d4w256h4 B=8 T=256
#   scripts/gpu_session.sh build split                   the feedback calls in parts: GPU check (same bits), the step whole / split
#   AB="SESSA_X=0 -" scripts/gpu_session.sh build ab    the trainer's d12 and d4w256h4 step with each environment setting
#                                                        (AB_B1=1: also d12 B=1 T=8192; AB_NO_D12=1: not d12), the
#                                                        medians and ratios to "-" into the summary (scripts/ab_summary.py)
#   REV_TAR=out_rev/rev.tar scripts/gpu_session.sh build revab   another revision's trainer (git archive) against this
#                                                        tree's, in turns (REV_B1=1: also d12 B=1 T=8192)
#   scripts/gpu_session.sh build gemmtune                cuBLASLt's first 8 algorithms timed for every GEMM of a step (gemm_choices)
#   scripts/gpu_session.sh build profile                 ncu: GPU time per kernel name of one d12 step (sorted;
#                                                        PROF_B=1 PROF_T=8192: at another batch and length)
#   scripts/gpu_session.sh build timeline                one steady step's real overlap (CUPTI kernel timeline, dev/timeline):
#                                                        the critical path per kernel, the SM use and where SMs idle
#                                                        (TL_B1=1: also B=1 T=8192)
#   scripts/gpu_session.sh build profsmall               the same for one steady d4w256h4 B=8 T=256 step (2 steps minus 1
#                                                        step: no init), with its kernel launches per step
#   scripts/gpu_session.sh build attn                    attention vs PyTorch SDPA (dev/cuda/bench_attention.py)
#   scripts/gpu_session.sh build attncu                  ncu sections of the attention backward's kernels at B=1 T=16384
#                                                        H=12 d=64, versions 13, 14 (ATTNCU_VERSIONS; ATTNCU_SHAPE="B T H
#                                                        Hkv d": another shape; pipes, stalls, L2: llmc/attention_sm90_bwd.cuh)
#   scripts/gpu_session.sh build fbprec                  feedback precision vs the official form (dev/cuda/feedback_precision.py)
#   scripts/gpu_session.sh build e2e                     scripts/bench_gpu.sh part 1 (ours vs PyTorch eager/compile vs GPT-2, d12 B=8 T=1024)
#   scripts/gpu_session.sh multi                         (2+ GPUs) scripts/multi_gpu_check.sh: test_zero on 2 ranks, 2 GPUs vs 1
#                                                        loss curves, ZeRO-1 vs 0, -cg 1 vs 0, resume at world 1, a SIGTERM
#                                                        stop + resume, d12 weak scaling (STEPS_ONLY="..." a subset)
#   scripts/gpu_session.sh build e2e2                    its part 2 for ours and PyTorch eager at B=1, T=4096..MAX_T (16384;
#                                                        MAX_T=131072: ~3-7 min, 2 steps per T >= 65536; eager up to 16384)
# CHECKS="feedback_forward attention_backward" limits `check` to those dev/cuda kernels (default: all of them).
# dev/refs (make refs) must be present for `test`: on a machine without internet, carry it.
# ATTN_TIMEOUT, E2E_TIMEOUT (seconds) bound those stages; E2E_STEPS (20) steps and E2E_B (8; a list such as "8 16"
# runs part 1 once per batch size, the later ones into e2e_B16 ...) the batch of the e2e runs;
# SYSTEMS, MAX_T pass through.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
SUMMARY="$OUT/summary.txt"; : > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }

# stage NAME CMD...: run CMD with its output in $OUT/NAME.log; PASS/FAIL line into the summary
stage() {
    local name=$1; shift
    local t0=$SECONDS
    if "$@" > "$OUT/$name.log" 2>&1; then note "[PASS] $name ($((SECONDS - t0)) s)"
    else note "[FAIL] $name ($((SECONDS - t0)) s): tail of $OUT/$name.log:"; tail -n 25 "$OUT/$name.log" | tee -a "$SUMMARY"; fi
}

# a shard of random GPT-2-vocabulary tokens (llm.c format, uint16) for the training runs
TMP=${TMPDIR:-/tmp}/sessa_gpu; mkdir -p "$TMP"   # shards and run folders: not under $OUT (it comes back)
shard() {
    [ -f "$TMP/tokens.bin" ] || $PY - "$TMP/tokens.bin" 4000000 50257 <<'PYEOF'
import sys, numpy as np
path, n, V = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
h = np.zeros(256, dtype="<i4"); h[:3] = [20240520, 1, n]
with open(path, "wb") as fp:
    fp.write(h.tobytes()); fp.write(np.random.default_rng(0).integers(0, V, n).astype("<u2").tobytes())
PYEOF
}

do_build() { nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv && nvcc --version | tail -1 &&
             make -j16 train_sessa train_sessacu test_sessacu && make -C dev/cuda -j16; }
# every dev/cuda kernel's check, all of them even after a failure. A failing new kernel with a safe way back is
# bypassed for the later stages, and the summary says so: the Hopper attention forward and backward (SESSA_ATT_SM90=0), the
# feedback solve (an earlier llmc/feedback.cuh kept in .fallback/, when the call carries it; rebuilt here).
do_check() {
    local bad=0
    for k in ${CHECKS:-$(sed -n 's/^KERNELS *+\?= *//p' dev/cuda/Makefile)}; do   # CHECKS="a b": only those
        echo "== $k check"
        if ! timeout ${CHECK_TIMEOUT:-300} ./dev/cuda/bin/$k check; then   # a hung kernel (e.g. a TMA/mbarrier wait) fails
            echo "FAILED: $k"; bad=1
            case $k in
                attention_forward|attention_backward) echo "SESSA_ATT_SM90=0" >> "$TMP/env" ;;
                feedback_*) [ -f .fallback/feedback.cuh ] && echo "FEEDBACK_FALLBACK=1" >> "$TMP/env" ;;
            esac
        fi
    done
    return $bad
}
# the bypasses do_check asked for
apply_fallbacks() {
    [ -f "$TMP/env" ] || return 0
    if grep -q SESSA_ATT_SM90=0 "$TMP/env"; then export SESSA_ATT_SM90=0; note "NOTE: Hopper attention forward or backward failed its check: SESSA_ATT_SM90=0 from here on"; fi
    if grep -q FEEDBACK_FALLBACK "$TMP/env"; then
        cp .fallback/feedback.cuh llmc/feedback.cuh && make -j16 train_sessacu test_sessacu > "$OUT/fallback_build.log" 2>&1
        note "NOTE: feedback kernels failed their check: train_sessacu rebuilt with .fallback/feedback.cuh"
    fi
    rm -f "$TMP/env"
}
do_test() {
    local n=0
    for dbg in dev/refs/cuda_*_debug.bin; do
        [ -f "$dbg" ] || { echo "no dev/refs/cuda_*_debug.bin (make refs, then carry dev/refs)"; return 1; }
        ./test_sessacu -m "${dbg%_debug.bin}_model.bin" -d "$dbg" || return 1
        n=$((n + 1))
    done
    echo "test_sessacu passed on $n dumps"
    # -E on the GPU: the constructed long-context accuracies (dev/test/test_long_context_eval.py; needs train_sessa built)
    CUDA_TRAINER=./train_sessacu $PY -m pytest -q dev/test/test_long_context_eval.py -k cuda || return 1
}
do_train() {
    shard
    local F="-V 50257 -i $TMP/tokens.bin -v 0 -s 0 -n 0"
    ./train_sessacu -e d12 -b 8 -t 1024 -x 12 $F -o $TMP/run1 && ./train_sessacu -e d12 -b 16 -t 1024 -x 12 $F -o $TMP/run0 &&
    ./train_sessacu -e d4w256h4 -b 8 -t 256 -x 40 $F -o $TMP/run2 &&
    echo "== the same without the CUDA graph (-cg 0)" && ./train_sessacu -e d4w256h4 -b 8 -t 256 -x 40 -cg 0 $F -o $TMP/run3 &&
    if cmp <(sed 's/ tok_s .*//' $TMP/run2/main.log) <(sed 's/ tok_s .*//' $TMP/run3/main.log); then
        echo "OK: -cg 1 and -cg 0 log the same 40 losses and norms"
    else echo "FAIL: -cg 1 and -cg 0 differ (main.log)"; return 1; fi
    # the weight gradients beside the backward (SESSA_WGRAD=2, the default, and 1) give the same bits as all on one stream (0)
    for w in 0 1; do
        echo "== the same with SESSA_WGRAD=$w" && SESSA_WGRAD=$w ./train_sessacu -e d4w256h4 -b 8 -t 256 -x 40 $F -o $TMP/run4_$w &&
        SESSA_WGRAD=$w ./train_sessacu -e d12 -b 8 -t 1024 -x 12 $F -o $TMP/run5_$w || return 1
        if cmp <(sed 's/ tok_s .*//' $TMP/run2/main.log) <(sed 's/ tok_s .*//' $TMP/run4_$w/main.log) &&
           cmp <(sed 's/ tok_s .*//' $TMP/run1/main.log) <(sed 's/ tok_s .*//' $TMP/run5_$w/main.log); then
            echo "OK: SESSA_WGRAD=$w logs the same losses and norms as the default (d4w256h4 40 steps, d12 12 steps)"
        else echo "FAIL: SESSA_WGRAD=$w differs from the default (main.log)"; return 1; fi
    done
}
# A/B of two revisions' trainers: REV_TAR (a `git archive REV` tar carried with the call, e.g. under out_rev/: an
# ignored path, so carry it) is unpacked and its train_sessacu built in $TMP/rev; then, per configuration, the other
# revision and this tree's run in turns, REV_ROUNDS (2) times each (ABAB: drift between runs shows), the last step's line
# of each; configurations d12 B=8 T=1024 (12 steps), d4w256h4 B=8 T=256 (40 steps) and with REV_B1=1 d12 B=1 T=8192
# (4 steps, the trainer's defaults)
rev_build() {   # (also callable ahead, in the background: `scripts/gpu_session.sh revbuild`, beside the build stage)
    [ -x "$TMP/rev/train_sessacu" ] && [ "$TMP/rev/train_sessacu" -nt "$REV_TAR" ] && return 0
    rm -rf "$TMP/rev" && mkdir -p "$TMP/rev" && tar -xf "$REV_TAR" -C "$TMP/rev" &&
        make -C "$TMP/rev" -j16 train_sessacu > "$OUT/revab_build.log" 2>&1
}
do_revab() {
    shard
    [ -f "${REV_TAR:-}" ] || { echo "REV_TAR=$REV_TAR: no such tar (git archive REV -o out_rev/rev.tar, carried)"; return 1; }
    rev_build || { echo "building the other revision failed: $OUT/revab_build.log"; return 1; }
    local F="-V 50257 -i $TMP/tokens.bin -v 0 -s 0 -n 0"
    for cfg in "d12 8 1024 12" "d4w256h4 8 256 40" ${REV_B1:+"d12 1 8192 4"}; do
        set -- $cfg
        for r in $(seq ${REV_ROUNDS:-2}); do
            for who in rev this; do
                local bin=./train_sessacu; [ $who = rev ] && bin=$TMP/rev/train_sessacu
                echo "$who $1 B=$2 T=$3: $($bin -e $1 -b $2 -t $3 -x $4 $F -o $TMP/revab_${who} | grep "^step $4/")" || return 1
            done
        done
    done
}
# A/B of the trainer's environment switches: for each entry of AB (e.g. AB="SESSA_FB_INV=0 SESSA_WGRAD=0+SESSA_PDL=0";
# "-" for none), d12 B=8 T=1024 (12 steps) and d4w256h4 B=8 T=256 (40 steps), with AB_B1=1 also d12 B=1 T=8192 (4 steps):
# the last step's line of each
do_ab() {
    shard
    local F="-V 50257 -i $TMP/tokens.bin -v 0 -s 0 -n 0"
    local ab=${AB:--}; for e in ${ab//,/ }; do   # entries apart by spaces or commas; '+' joins settings in one
        [ "$e" = "-" ] && set -- || set -- ${e//+/ }
        if [ -z "${AB_NO_D12:-}" ]; then   # AB_NO_D12=1: d4w256h4 (and AB_B1's) only
            echo "== ${e}: d12 B=8 T=1024"; env "$@" ./train_sessacu -e d12 -b 8 -t 1024 -x 12 $F -o $TMP/ab1 | grep -E "^step 12/|^SESSA_GEMM_PICK" || return 1
        fi
        echo "== ${e}: d4w256h4 B=8 T=256"; env "$@" ./train_sessacu -e d4w256h4 -b 8 -t 256 -x 40 $F -o $TMP/ab2 | grep -E "^step 40/|^SESSA_GEMM_PICK" || return 1
        if [ -n "${AB_B1:-}" ]; then
            echo "== ${e}: d12 B=1 T=8192"; env "$@" ./train_sessacu -e d12 -b 1 -t 8192 -x 4 $F -o $TMP/ab3 | grep -E "^step 4/|^SESSA_GEMM_PICK" || return 1
        fi
    done
}
# the feedback calls in parts (SESSA_FB_SPLIT): their check on the GPU (dev/test/test_fb_split.sh: split and whole give
# the same bits), then the trainer's step whole / split, twice in turn, at d12 B=1 T=8192, B=2 T=4096, B=8 T=1024
do_split() {
    shard
    TRAIN_SESSACU=./train_sessacu bash dev/test/test_fb_split.sh || return 1
    local F="-V 50257 -i $TMP/tokens.bin -v 0 -s 0 -n 0"
    for cfg in "1 8192 6" "2 4096 6" "8 1024 12"; do
        set -- $cfg
        for r in 1 2; do for p in 0 1; do
            echo "== d12 B=$1 T=$2 SESSA_FB_SPLIT=$p (round $r)"
            SESSA_FB_SPLIT=$p ./train_sessacu -e d12 -b $1 -t $2 -x $3 $F -o $TMP/split | grep "^step $3/" || return 1
        done; done
    done
}
# SESSA_GEMM_TUNE=1: every GEMM problem of one step (d12 B=8 and B=16 T=1024, d4w256h4 B=8 T=256), the heuristic's
# first 8 algorithms timed (GT_B1=1: also d12 B=1 T=8192); the "gemm-choice" lines are entries for llmc/gemm_choices.h
do_gemmtune() {
    shard
    local F="-V 50257 -i $TMP/tokens.bin -v 0 -s 0 -n 0 -x 1 -cg 0"
    SESSA_GEMM_TUNE=1 ./train_sessacu -e d12 -b 8 -t 1024 $F -o $TMP/tune1 | grep "^gemm-" &&
    SESSA_GEMM_TUNE=1 ./train_sessacu -e d12 -b 16 -t 1024 $F -o $TMP/tune2 | grep "^gemm-" &&
    SESSA_GEMM_TUNE=1 ./train_sessacu -e d4w256h4 -b 8 -t 256 $F -o $TMP/tune3 | grep "^gemm-" &&
    if [ -n "${GT_B1:-}" ]; then SESSA_GEMM_TUNE=1 ./train_sessacu -e d12 -b 1 -t 8192 $F -o $TMP/tune4 | grep "^gemm-"; fi
}
# the real overlap of one steady step (CUPTI kernel timeline: dev/timeline): d12 B=8 T=1024, d4w256h4 B=8 T=256, and
# with TL_B1=1 d12 B=1 T=8192; environment switches pass through (e.g. SESSA_WGRAD=0 scripts/gpu_session.sh ...).
# Ungraphed (-cg 0): a replayed CUDA graph runs its branches on streams of its own, so CUPTI's stream ids would not be
# the trainer's (the main stream's critical path needs them); d12 is GPU-bound either way, d4w256h4 is not (its
# launches then take part of the wall time). TL_CG=1: the graphed step instead (the replay's streams are the graph's,
# so the "main stream" rows mean little; the wall time, SM use and the kernels' own times are the real ones; the
# CSVs are named timeline_cg_...). TL_CFGS="MODEL B T STEPS;...": other configurations.
do_timeline() {
    shard
    bash dev/timeline/build.sh || return 1
    local F="-V 50257 -i $TMP/tokens.bin -v 0 -s 0 -n 0" cg=${TL_CG:-0} cfgs
    if [ -n "${TL_CFGS:-}" ]; then IFS=';' read -ra cfgs <<< "$TL_CFGS"
    else cfgs=("d12 8 1024 4" "d4w256h4 8 256 6" ${TL_B1:+"d12 1 8192 3"}); fi
    for cfg in "${cfgs[@]}"; do
        set -- $cfg
        echo "== $1 B=$2 T=$3 (step $4 of $4, -cg $cg)"
        CUDA_INJECTION64_PATH=$PWD/dev/timeline/cupti_trace.so SESSA_TIMELINE=$TMP/timeline.csv \
            ./train_sessacu -e $1 -b $2 -t $3 -x $4 -cg $cg $F -o $TMP/tl_$1_$2_$3 | grep "^step $4/" &&
        $PY dev/timeline/timeline.py $TMP/timeline.csv || return 1
        gzip -c $TMP/timeline.csv > "$OUT/timeline_$([ "$cg" = 0 ] || echo cg_)$1_B$2_T$3.csv.gz"   # the kernels, for a closer look
    done
}
# ncu_csv NAME DESC B T STEPS: GPU time of every kernel of train_sessacu's first STEPS steps, into $OUT/ncu_NAME.csv
ncu_csv() {
    shard
    ncu --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
        ./train_sessacu -e $2 -V 50257 -i "$TMP/tokens.bin" -b $3 -t $4 -x $5 -v 0 -s 0 -n 0 -o "$TMP/prof_$1" > "$OUT/ncu_$1.csv"
}
# kernel_table CSV [BASE_CSV]: GPU time per kernel name, sorted; with BASE_CSV (the same run one step shorter)
# the difference: one steady step without the initialization, and its number of kernel launches
kernel_table() {
    $PY - "$@" <<'PYEOF'
import csv, sys, collections
def load(path):
    rows = [r for r in csv.reader(open(path)) if len(r) > 10]
    hdr = rows[0]; rows = rows[1:]
    ik, iv = hdr.index("Kernel Name"), hdr.index("Metric Value")
    tot = collections.defaultdict(float); cnt = collections.Counter(); kept = []
    for r in rows:
        try: v = float(r[iv].replace(",", ""))
        except ValueError: continue
        tot[r[ik][:110]] += v; cnt[r[ik][:110]] += 1; kept.append(r)
    return hdr, kept, tot, cnt
hdr, rows, tot, cnt = load(sys.argv[1])
what = "one step incl. init"
if len(sys.argv) > 2:   # minus the shorter run: what one more step costs
    _, _, tot0, cnt0 = load(sys.argv[2])
    tot = {k: tot[k] - tot0.get(k, 0.0) for k in tot if cnt[k] - cnt0.get(k, 0) > 0}
    cnt = {k: cnt[k] - cnt0.get(k, 0) for k in tot}
    what = "one steady step: the run of N steps minus the run of N-1"
T = sum(tot.values())
print(f"{sum(cnt.values())} kernel launches, {T/1e6:.3f} ms of GPU time ({what})")
for k, v in sorted(tot.items(), key=lambda kv: -kv[1])[:45]:
    print(f"{100*v/T:6.2f}%  {v/1e3:9.1f} us  x{cnt[k]:<5d} {k}")
if len(sys.argv) > 2:
    print(f"\nlaunches per step by kind (of {sum(cnt.values())}):")
    kinds = collections.Counter()
    for k, c in cnt.items():
        kind = "cuBLAS(Lt) GEMM" if any(s in k for s in ("gemm", "cutlass", "nvjet", "xmma", "splitK")) else \
               "feedback" if k.startswith("fb_") else "attention" if "attention" in k else k.split("(")[0].split("<")[0]
        kinds[kind] += c
    for kind, c in kinds.most_common(): print(f"  {c:5d}  {kind}")
    sys.exit(0)
ik, iv, ig, ib = hdr.index("Kernel Name"), hdr.index("Metric Value"), hdr.index("Grid Size"), hdr.index("Block Size")
print("\nGEMM-like kernels in launch order (name, grid, block, us), first 60:")
n = 0
for r in rows:
    k = r[ik]
    if any(s in k for s in ("gemm", "cutlass", "nvjet", "xmma", "sm90", "splitK")):
        print(f"  {k[:90]:90s} {r[ig]:>16s} {r[ib]:>12s} {r[iv]:>10s}"); n += 1
        if n >= 60: break
PYEOF
}
# the multi-GPU check (builds what it needs; its own PASS/FAIL lines and logs under $OUT/multi)
do_multi() { OUT="$OUT/multi" bash scripts/multi_gpu_check.sh; }
do_profile() { ncu_csv d12 d12 ${PROF_B:-8} ${PROF_T:-1024} 1 && kernel_table "$OUT/ncu_d12.csv"; }
do_profsmall() { ncu_csv small1 d4w256h4 8 256 1 && ncu_csv small2 d4w256h4 8 256 2 &&
                 kernel_table "$OUT/ncu_small2.csv" "$OUT/ncu_small1.csv"; }

rm -f "$TMP/env"
for s in "$@"; do
    apply_fallbacks
    case $s in
        build)   stage build do_build ;;
        check)   stage check do_check ;;
        test)    stage test do_test ;;
        kbench)  if [ -n "${KBENCH:-}" ]; then stage kbench sh -c 'for k in $KBENCH; do echo "== $k bench"; ./dev/cuda/bin/$k bench || exit 1; done'
                 else stage kbench make -C dev/cuda bench; fi ;;
        optbench) stage optbench sh -c 'dev/cuda/bin/global_norm bench && dev/cuda/bin/adamw bench' ;;
        clsbench) stage clsbench dev/cuda/bin/fused_classifier bench ;;
        colbench) stage colbench sh -c 'dev/cuda/bin/reduce bench && dev/cuda/bin/layernorm bench && dev/cuda/bin/gamma bench' ;;
        fbbench) stage fbbench sh -c 'dev/cuda/bin/feedback_backward bench && for e in SESSA_FB_LOOKAHEAD=1 SESSA_FB_BUFFERS=3 \
                     SESSA_FB_SIDE_SMS=0 SESSA_FB_SIDE_SMS=66 "SESSA_FB_SIDE_SMS=66 SESSA_FB_LOOKAHEAD=1" \
                     "SESSA_FB_SIDE_SMS=66 SESSA_FB_LOOKAHEAD=1 SESSA_FB_BUFFERS=3"; do echo "== $e"; env $e dev/cuda/bin/feedback_backward bench 2 || exit 1; done &&
                     echo "== SESSA_FB_STREAMS=0 (one stream)" && SESSA_FB_STREAMS=0 dev/cuda/bin/feedback_backward bench 2 && for S in 64 128; do echo "== FB_S=$S"; FB_S=$S dev/cuda/bin/feedback_backward bench 2; done &&
                     for e in SESSA_FB_S=256 SESSA_FB_S=512 "SESSA_FB_S=512 SESSA_FB_COLS=16"; do echo "== $e (long sequences at small batch)"; env $e FB_BENCH_LONG=1 dev/cuda/bin/feedback_backward bench 2 || exit 1; done &&
                     for m in 0 1 2; do echo "== SESSA_FB_INV=$m"; SESSA_FB_INV=$m dev/cuda/bin/feedback_backward bench 2 || exit 1; done' ;;
        train)   stage train do_train ;;
        gemmtune) stage gemmtune do_gemmtune ;;
        ab)      stage ab do_ab; $PY scripts/ab_summary.py "$OUT/ab.log" | tee -a "$SUMMARY" ;;
        revab)   stage revab do_revab ;;
        revbuild) stage revbuild rev_build ;;
        split)   stage split do_split ;;
        profile) stage profile do_profile ;;
        multi)   stage multi do_multi ;;
        timeline) stage timeline do_timeline ;;
        profsmall) stage profsmall do_profsmall ;;
        attn)    stage attn timeout ${ATTN_TIMEOUT:-600} $PY dev/cuda/bench_attention.py --markdown ;;
        attncu)  stage attncu sh -c 'for v in ${ATTNCU_VERSIONS:-13 14}; do echo "== SESSA_ATT_BWD_VERSION=$v"; SESSA_ATT_BWD_VERSION=$v ncu --clock-control none \
                     --kernel-name regex:"attention_backward_d(kv|q)_sm90_ws" --launch-skip 8 --launch-count 2 --section SpeedOfLight \
                     --section ComputeWorkloadAnalysis --section WarpStateStats --section InstructionStats --section Occupancy \
                     --section MemoryWorkloadAnalysis \
                     dev/cuda/bin/attention_backward shape ${ATTNCU_SHAPE:-1 16384 12 12 64} nomma || exit 1; done' ;;
        chainncu) shard; stage chainncu ncu --clock-control none --kernel-name regex:"${CHAIN_REGEX:-splitK_NNN|splitKreduce}" \
                     --launch-skip ${CHAIN_SKIP:-8} --launch-count ${CHAIN_COUNT:-6} --section SpeedOfLight --section LaunchStats \
                     --section Occupancy --section MemoryWorkloadAnalysis ./train_sessacu -e d12 -b 1 -t 8192 -x 1 -cg 0 \
                     -V 50257 -i "$TMP/tokens.bin" -v 0 -s 0 -n 0 -o "$TMP/chainncu" ;;
        fbncu)   stage fbncu ncu --clock-control none --kernel-name regex:"fb_(fwd|bwd)_solve" --launch-skip 8 --launch-count 4 \
                     --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
                     --section MemoryWorkloadAnalysis dev/cuda/bin/feedback_backward bench 2 ;;
        decode)  stage decode timeout ${DECODE_TIMEOUT:-900} sh -c 'python3 dev/test/test_sample_agree.py --cuda ./train_sessacu &&
                     PROMPTS="${PROMPTS:-128 8192}" BATCHES="${BATCHES:-1}" G=32 GP=4 bash scripts/bench_decode.sh' ;;
        fbprec)  stage fbprec $PY dev/cuda/feedback_precision.py ;;
        fbphases) stage fbphases sh -c 'dev/cuda/bin/feedback_phases && echo "== SESSA_FB_INV=0" && SESSA_FB_INV=0 dev/cuda/bin/feedback_phases' ;;
        twins)   stage twins sh -c 'make train_sessa && TRAIN_SESSACU=./train_sessacu bash dev/test/test_twins.sh &&
                     TRAIN_SESSACU=./train_sessacu bash dev/test/test_run_dir_cuda_emu.sh' ;;
        e2e)     bs=${E2E_B:-8}
                 for b in $bs; do   # one part-1 run per batch size; the first keeps the folder name e2e
                     o=e2e; [ "$b" = "${bs%% *}" ] || o=e2e_B$b
                     stage $o timeout ${E2E_TIMEOUT:-1800} env OUT="$OUT/$o" PART=1 bash scripts/bench_gpu.sh d12 $b 1024 ${E2E_STEPS:-20}
                 done ;;
        e2e2)    stage e2e2 env OUT="$OUT/e2e2" PART=2 SYSTEMS="cu py_eager" MAX_T=${MAX_T:-16384} PY_MAX_T=16384 P2_STEPS=3 TIMEOUT=300 PY_TIMEOUT=120 \
                     bash scripts/bench_gpu.sh d12 ;;
        *) echo "unknown stage $s"; exit 2 ;;
    esac
done
# everything in one archive (a remote runner may bring back only a few files), the summary beside it
rm -f "$OUT"/ncu_*.csv
tar czf "$TMP/logs.tgz" -C "$OUT" . && find "$OUT" -mindepth 1 ! -path "$OUT/summary.txt" -delete && mv "$TMP/logs.tgz" "$OUT/"
echo "==== summary (all logs in $OUT/logs.tgz)"; cat "$SUMMARY"
