#!/usr/bin/env bash
# Sessa d12 on several nodes with OpenMPI's mpirun: one process per GPU, ranks from OMPI_COMM_WORLD_*
# (llmc/distributed.h). NCCL id: over MPI_Bcast when the trainer is built with MPI
# (make train_sessacu USE_MPI=1), else over tcp from rank 0 on the first host (MASTER_ADDR below).
#   usage: HOSTS=node1,node2 scripts/multinode_mpirun.sh [more trainer flags]
#   env:   HOSTS (comma-separated, required), GPUS_PER_NODE (default 8), DATA (default data/fineweb10B),
#          OUT (default log_d12_multinode), ZERO (default 1), B (default 16), SESSA_ID_METHOD (default auto),
#          MASTER_PORT (default 29500), MPIRUN_ARGS (extra mpirun flags, e.g. "--mca btl_tcp_if_include eth0")
# Run from the repository root on a filesystem that every host sees at the same path.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${HOSTS:?set HOSTS=node1,node2,... (the nodes to run on)}"
GPN=${GPUS_PER_NODE:-8}
DATA=${DATA:-data/fineweb10B}
OUT=${OUT:-log_d12_multinode}
RESUME=0; if ls "$OUT"/DONE_* > /dev/null 2>&1; then RESUME=1; fi   # -y 1 only when a checkpoint exists
IFS=, read -r -a NODES <<< "$HOSTS"
NP=$(( ${#NODES[@]} * GPN ))
export MASTER_ADDR=${MASTER_ADDR:-${NODES[0]}}
export MASTER_PORT=${MASTER_PORT:-29500}
HOSTSPEC=$(printf "%s:$GPN," "${NODES[@]}")
[ -x ./train_sessacu ] || { echo "error: ./train_sessacu not built (make train_sessacu)" >&2; exit 1; }
echo "sessa: $NP processes on ${#NODES[@]} nodes, rank 0 on $MASTER_ADDR"
# shellcheck disable=SC2086
exec mpirun -np "$NP" --host "${HOSTSPEC%,}" --map-by ppr:"$GPN":node --bind-to none \
    -x MASTER_ADDR -x MASTER_PORT -x PATH ${LD_LIBRARY_PATH:+-x LD_LIBRARY_PATH} ${SESSA_ID_METHOD:+-x SESSA_ID_METHOD} ${MPIRUN_ARGS:-} \
    ./train_sessacu \
    -i "$DATA/fineweb_train_*.bin" -j "$DATA/fineweb_val_*.bin" -k "$DATA/tokenizer.bin" \
    -o "$OUT" -e d12 -b "${B:-16}" -t 1024 -d 524288 -x 18865 -l 6e-4 -u 700 -q 0.0 \
    -c 0.1 -G 1.0 -v 250 -m 20 -s 5000 -g 128 -n 2000 -y "$RESUME" -z "${ZERO:-1}" "$@"
