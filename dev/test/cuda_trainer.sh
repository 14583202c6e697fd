# Sourced by the tests that run the CUDA trainer (from the repo root): CUDA_TRAINER is $TRAIN_SESSACU, a real build
# on a GPU machine, or else the CPU emulator's train_sessacu (dev/cuda_emu), built here; a failed build exits.
if [ -n "${TRAIN_SESSACU:-}" ]; then CUDA_TRAINER=$(realpath "$TRAIN_SESSACU")
else
    make --no-print-directory -s -C dev/cuda_emu build/bin/train_sessacu || { echo "error: emulated build failed"; exit 1; }
    CUDA_TRAINER=$(realpath dev/cuda_emu/build/bin/train_sessacu)
fi
