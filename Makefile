# sessa.c — build, test and train.
#   make train_sessa test_sessa        CPU trainer and its test (gcc/clang + OpenMP, no BLAS)
#   make train_sessacu test_sessacu    CUDA trainer and its test (needs nvcc; builds without a GPU)
#   make test                          the whole suite (installs Python deps, writes reference dumps, runs all)
#   make train                         prepares the embedded corpus and trains a small model on the CPU

CC ?= gcc
CFLAGS ?= -O3 -march=native -ffp-contract=fast -fno-math-errno -Wall -Wextra -Wno-unused-function
OMPFLAGS ?= -fopenmp
LDLIBS = -lm
PYTHON ?= python3

NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
# default GPU arch: the local GPU's if one answers, else Hopper (sm_90)
GPU_ARCH ?= $(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.' | sed 's/^/sm_/' | grep -E '^sm_[0-9]+$$' || echo sm_90)
# sm_90 (H100/H200) builds sm_90a code (wgmma: the Hopper attention of llmc/attention_sm90.cuh); the -gencode form,
# because nvcc 13.0's -arch=sm_90a shorthand may also run a plain sm_90 pass that rejects wgmma
ARCHFLAGS ?= $(if $(filter sm_90,$(GPU_ARCH)),-gencode arch=compute_90a$(COMMA)code=sm_90a,-arch=$(GPU_ARCH))
COMMA := ,
NVCCFLAGS ?= -O3 $(ARCHFLAGS) -std=c++17 --expt-relaxed-constexpr
NVLIBS = -lcublas -lcublasLt -lnccl   # -lnccl: llmc/zero.cuh (data parallelism in train_sessa.cu)

HEADERS = $(wildcard llmc/*.h)
CUHEADERS = $(wildcard llmc/*.cuh) $(HEADERS)
REFS = dev/refs

.PHONY: all cpu cuda test test-python refs deps train clean

all: cpu $(if $(NVCC),cuda)
cpu: train_sessa test_sessa
cuda: train_sessacu test_sessacu

# ---------------------------------------------------------------------------- CPU
train_sessa: train_sessa.c $(HEADERS)
	$(CC) $(CFLAGS) $(OMPFLAGS) $< $(LDLIBS) -o $@

test_sessa: test_sessa.c train_sessa.c $(HEADERS)
	$(CC) $(CFLAGS) $(OMPFLAGS) $< $(LDLIBS) -o $@

# ---------------------------------------------------------------------------- CUDA
train_sessacu: train_sessa.cu $(CUHEADERS)
	$(NVCC) $(NVCCFLAGS) $< $(NVLIBS) -o $@

test_sessacu: test_sessa.cu train_sessa.cu $(CUHEADERS)
	$(NVCC) $(NVCCFLAGS) $< $(NVLIBS) -o $@

# ---------------------------------------------------------------------------- tests
# Python packages (torch, numpy, tokenizers, tqdm, matplotlib, pytest); a no-op when present
deps: .deps_installed
# OpenMPI (for the MPI build of the NCCL layer and its mpirun test) from Debian's packages when we are root
.deps_installed: requirements.txt
	@command -v mpicc >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && apt-get install -y -qq libopenmpi-dev openmpi-bin) || echo "note: OpenMPI install failed"; \
	  else echo "note: no mpicc; the MPI tests will be skipped (apt-get install libopenmpi-dev openmpi-bin)"; fi; }
	$(PYTHON) -m pip install -q -r requirements.txt
	touch $@

# reference dumps from the PyTorch reference (float64 math, float32 files)
refs: deps
	$(PYTHON) train_sessa.py --write_refs $(REFS)

# the whole suite: one line per step, "N passed, M failed, K skipped" at the end (dev/test/run_all.sh)
test: deps
	bash dev/test/run_all.sh

# C unit tests in dev/test/ (each prints "N passed, M failed"; exit code tells)
# test_cpu_kernels: llmc/cpu_kernels.h with OpenMP on, as train_sessa builds it
dev/test/bin/test_cpu_kernels: dev/test/test_cpu_kernels.c $(HEADERS)
	@mkdir -p dev/test/bin
	$(CC) $(CFLAGS) $(OMPFLAGS) -I. $< $(LDLIBS) -o $@

dev/test/bin/test_%: dev/test/test_%.c dev/test/data_testing.h $(HEADERS)
	@mkdir -p dev/test/bin
	$(CC) $(CFLAGS) -I. $< $(LDLIBS) -o $@

# the launcher/NCCL-id tests built with MPI and run under mpirun (OpenMPI: libopenmpi-dev openmpi-bin)
MPIRUN_FLAGS = --oversubscribe $(if $(filter 0,$(shell id -u)),--allow-run-as-root)
test-distributed-mpi:
	@mkdir -p dev/test/bin
	mpicc -DUSE_MPI -O2 -I. dev/test/test_distributed.c -lm -o dev/test/bin/test_distributed_mpi
	dev/test/bin/test_distributed_mpi
	mpirun -np 3 $(MPIRUN_FLAGS) dev/test/bin/test_distributed_mpi mpi

# compile check of llmc/zero.cuh (NCCL data parallelism), without and with MPI
test-zero-build:
	@mkdir -p dev/test/bin
	$(NVCC) $(NVCCFLAGS) -I. dev/test/test_zero.cu -lnccl -o dev/test/bin/test_zero
	if command -v mpicc >/dev/null; then \
	  $(NVCC) $(NVCCFLAGS) -I. -DUSE_MPI $$(mpicc --showme:compile) dev/test/test_zero.cu -lnccl \
	    $$(mpicc --showme:link) -o dev/test/bin/test_zero_mpi; fi

print-nvcc:
	@echo $(NVCC)

.PHONY: test-distributed-mpi test-zero-build print-nvcc

# the embedded default: Jane Austen's novels (Debian's r-cran-janeaustenr), byte-level, a d4w256h4 model
# trained on the CPU for a few minutes; validation every 50 steps, a sample every 100, log in log_train/main.log
TRAIN_FLAGS ?= -e d4w256h4 -b 8 -t 256 -x 400 -u 40 -l 2e-3 -q 0.1 -v 50 -s 100 -g 256 -o log_train
train: train_sessa data-default
	./train_sessa $(TRAIN_FLAGS)

clean:
	rm -f train_sessa test_sessa train_sessacu test_sessacu .deps_installed
	rm -rf dev/cuda/bin dev/fuzz/bin
	rm -rf $(REFS) dev/test/bin

# ---------------------------------------------------------------------------- data
# make test-data: C loader/tokenizer tests + pytest of data/;  make data-default: data/default/ (Austen, bytes)
# make fuzz FUZZ_SECONDS=60: libFuzzer on the shard, tokenizer and checkpoint parsers (clang)
DATA_TESTS = dev/test/bin/test_dataloader dev/test/bin/test_tokenizer
test-data: $(DATA_TESTS) deps
	dev/test/bin/test_dataloader
	dev/test/bin/test_tokenizer
	$(PYTHON) -m pytest -q dev/test/test_data.py

data-default:
	bash data/prepare_default.sh

FUZZ_SECONDS ?= 60
fuzz:
	$(MAKE) -C dev/fuzz fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)
.PHONY: test-data data-default fuzz

# ---------------------------------------------------------------------------- CPU tests
# test_sessa built with QB=5: many query blocks in the blocked attention/feedback on the short dumps
# make bench-cpu: scripts/bench_cpu.sh, C vs PyTorch tok/s on 2 threads (needs data/default).
dev/test/bin/test_sessa_qb5: test_sessa.c train_sessa.c $(HEADERS)
	@mkdir -p dev/test/bin
	$(CC) $(CFLAGS) $(OMPFLAGS) -DQB=5 $< $(LDLIBS) -o $@

bench-cpu: train_sessa
	scripts/bench_cpu.sh
.PHONY: bench-cpu

# ---------------------------------------------------------------------------- CUDA emulator
# make test-cuda-emu: the real llmc/*.cuh kernels run on the CPU (dev/cuda_emu, g++ only, no GPU or nvcc),
# each dev/cuda/<kernel>.cu check against its CPU reference, plus the emulator's own self-test
test-cuda-emu:
	$(MAKE) -C dev/cuda_emu test
.PHONY: test-cuda-emu
