// stand-in for the cuBLAS header: see dev/cuda_emu/cublas_emu.h
#include "../cublas_emu.h"
