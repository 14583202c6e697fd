#!/usr/bin/env bash
# Runs NPROC copies of a command on this node, one per GPU, torchrun-style: each gets RANK, WORLD_SIZE,
# LOCAL_RANK, MASTER_ADDR=127.0.0.1 and MASTER_PORT, and llmc/distributed.h reads them; the NCCL id
# travels over tcp (rank 0 listens on MASTER_PORT+1). NPROC=1 runs the command as it is (the plain path).
#   usage: scripts/launch_local.sh NPROC COMMAND [ARGS...]
#   env:   MASTER_PORT (default: a random port in 20000..39999)
#          RANK_LOG_DIR: where ranks 1.. write rank_R.log (default: a new /tmp/sessa_ranks.* directory)
# Rank 0 prints to this terminal. When one rank fails, the others are stopped, and the exit status is
# the first failure's (so a crash on any GPU fails the whole run, never hangs it).
set -uo pipefail
if [ $# -lt 2 ]; then sed -n '2,9p' "$0" >&2; exit 2; fi
NPROC=$1; shift
[[ "$NPROC" =~ ^[1-9][0-9]*$ ]] || { echo "error: NPROC '$NPROC' is not a positive integer" >&2; exit 2; }
if [ "$NPROC" -eq 1 ]; then exec "$@"; fi

PORT=${MASTER_PORT:-$((20000 + RANDOM % 20000))}
LOGS=${RANK_LOG_DIR:-$(mktemp -d /tmp/sessa_ranks.XXXXXX)}
mkdir -p "$LOGS"
echo "launch_local: $NPROC ranks, MASTER_PORT $PORT, ranks 1..$((NPROC - 1)) log to $LOGS/rank_R.log" >&2
pids=()
for ((r = 0; r < NPROC; r++)); do
    if [ "$r" -eq 0 ]; then
        RANK=$r WORLD_SIZE=$NPROC LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT "$@" &
    else
        RANK=$r WORLD_SIZE=$NPROC LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT "$@" > "$LOGS/rank_$r.log" 2>&1 &
    fi
    pids+=($!)
done
stop_all() { kill "${pids[@]}" 2> /dev/null; }
# Ctrl-C / SIGTERM: forwarded once as SIGTERM, then the ranks are waited for: each finishes its step, they
# save a checkpoint together and exit 130/143 (a trainer takes a repeat within 1 s, e.g. the terminal's own
# SIGINT plus this one, as one request). A second signal here kills the ranks at once.
stopping=0; trapped=0
on_signal() {
    trapped=1
    if [ $stopping -eq 0 ]; then
        stopping=1
        echo "launch_local: stopping: the ranks save a checkpoint after this step (signal again to kill them)" >&2
        stop_all
    else kill -KILL "${pids[@]}" 2> /dev/null; fi
}
trap on_signal INT TERM

status=0; left=$NPROC
while [ $left -gt 0 ]; do
    trapped=0
    wait -n   # the next of our children to finish, or a signal
    rc=$?
    if [ $trapped -eq 1 ] && [ $rc -gt 128 ]; then continue; fi   # interrupted by on_signal: wait again
    [ $rc -eq 127 ] && break                                       # no child left
    left=$((left - 1))
    if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
        status=$rc
        if [ $stopping -eq 0 ]; then
            echo "launch_local: a rank exited with status $rc: stopping the others (logs in $LOGS)" >&2
            stop_all
        fi
    fi
done
[ $stopping -eq 1 ] && [ "$status" -eq 0 ] && status=130
exit "$status"
