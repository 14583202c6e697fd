#!/bin/bash
# Runs each emulated dev/cuda check binary, prints its output (per tensor: max abs/rel error and tolerance)
# and PASS/FAIL per kernel, and ends with "N passed, M failed"; the exit code is 1 when any failed.
# usage: run.sh BINDIR KERNEL...
# Each binary runs its dev/cuda `check` mode: the shapes, CPU references and tolerances of dev/cuda.
# A binary that crashes, exits non-zero or runs past EMU_TIMEOUT seconds (default 300) fails.
bindir=$1; shift
timeout_s=${EMU_TIMEOUT:-300}
passed=0; failed=0; failures=""
for k in "$@"; do
    start=$(date +%s.%N)
    out=$(timeout "$timeout_s" "$bindir/$k" check 2>&1); rc=$?
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    echo "$out" | sed 's/^/    /'
    if [ $rc -eq 0 ]; then
        printf 'PASS %-20s (%.1f s)\n' "$k" "$secs"; passed=$((passed + 1))
    else
        [ $rc -eq 124 ] && why="timed out after ${timeout_s} s" || why="exit code $rc"
        printf 'FAIL %-20s (%s, %.1f s)\n' "$k" "$why" "$secs"; failed=$((failed + 1)); failures="$failures $k"
    fi
done
echo "cuda_emu: $passed passed, $failed failed${failures:+ (failed:$failures)}"
[ $failed -eq 0 ]
