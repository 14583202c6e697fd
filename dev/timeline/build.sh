#!/usr/bin/env bash
# builds dev/timeline/cupti_trace.so (see cupti_trace.c) against the CUPTI found on this machine: the CUDA toolkit's
# extras/CUPTI, else the nvidia-cuda-cupti wheel of the Python environment (PyTorch's dependency).
# --find: only say where CUPTI is (exit 1 when there is none), build nothing
set -euo pipefail
cd "$(dirname "$0")"
inc=""; lib=""
for d in "${CUDA_HOME:-/usr/local/cuda}/extras/CUPTI" $(python3 -c 'import nvidia, os; [print(os.path.join(p, s)) for p in nvidia.__path__ for s in ("cu13", "cuda_cupti")]' 2>/dev/null); do
    if [ -f "$d/include/cupti_activity.h" ]; then
        inc="$d/include"
        for l in "$d/lib64" "$d/lib"; do [ -d "$l" ] && { lib=$l; break; }; done
        break
    fi
done
[ -n "$inc" ] || { echo "build.sh: no CUPTI (cupti_activity.h) found" >&2; exit 1; }
if [ "${1:-}" = --find ]; then echo "CUPTI in $inc"; exit 0; fi
cuda_inc="${CUDA_HOME:-/usr/local/cuda}/include"
rec=$(grep -o "} CUpti_ActivityKernel[0-9]*;" "$inc/cupti_activity.h" | sort -V | tail -1 | tr -d '}; ')
so=$(ls "$lib"/libcupti.so* | head -1)
gcc -O2 -shared -fPIC -I"$inc" -I"$cuda_inc" -DKERNEL_RECORD="$rec" cupti_trace.c -o cupti_trace.so "$so" -Wl,-rpath,"$lib"
echo "built dev/timeline/cupti_trace.so ($rec, $so)"
