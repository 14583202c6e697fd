// stand-in for the CUDA toolkit header: see dev/cuda_emu/cuda_emu.h
#include "../cuda_emu.h"
