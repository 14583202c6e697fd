# sessa.c — build, test and train.
#   make train_sessa test_sessa        CPU trainer and its test (gcc/clang + OpenMP, no BLAS)
#   make train_sessacu test_sessacu    CUDA trainer and its test (needs nvcc; builds without a GPU)
#   make test                          the whole suite (installs Python deps, writes reference dumps, runs all)
#   make train                         prepares the embedded corpus and trains a small model on the CPU

CC ?= gcc
CFLAGS ?= -O3 -march=native -ffp-contract=fast -Wall -Wextra -Wno-unused-function
OMPFLAGS ?= -fopenmp
LDLIBS = -lm
PYTHON ?= python3

NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
# default GPU arch: the local GPU's if one answers, else Hopper (sm_90)
GPU_ARCH ?= $(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.' | sed 's/^/sm_/' | grep -E '^sm_[0-9]+$$' || echo sm_90)
NVCCFLAGS ?= -O3 -arch=$(GPU_ARCH) -std=c++17 --expt-relaxed-constexpr
NVLIBS = -lcublas -lcublasLt -lnccl   # -lnccl: llmc/zero.cuh (data parallelism in train_sessa.cu)

HEADERS = $(wildcard llmc/*.h)
CUHEADERS = $(wildcard llmc/*.cuh) $(HEADERS)
REFS = dev/refs

.PHONY: all cpu cuda test test-python test-c test-cuda-build refs deps train clean

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
.deps_installed: requirements.txt
	$(PYTHON) -m pip install -q -r requirements.txt
	touch $@

# reference dumps from the PyTorch reference (float64 math, float32 files)
refs: deps
	$(PYTHON) train_sessa.py --write_refs $(REFS)

test: deps refs test-c test-python
	@echo "all tests passed"

# --- helper PY: pytest of the PyTorch reference train_sessa.py (< 60 s on 2 cores)
test-python: deps
	$(PYTHON) -m pytest -q dev/test/test_reference.py

clean:
	rm -f train_sessa test_sessa train_sessacu test_sessacu .deps_installed
	rm -rf $(REFS) dev/test/bin

# ---------------------------------------------------------------------------- data (helper DATA)
# make test-data: C loader/tokenizer tests + pytest of data/;  make data-default: data/default/ (Austen, bytes)
# make fuzz FUZZ_SECONDS=60: libFuzzer on the shard, tokenizer and checkpoint parsers (clang)
DATA_TESTS = dev/test/bin/test_dataloader dev/test/bin/test_tokenizer
$(DATA_TESTS): dev/test/bin/test_%: dev/test/test_%.c dev/test/data_testing.h $(HEADERS)
	@mkdir -p dev/test/bin
	$(CC) $(CFLAGS) -I. $< -o $@

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

# ---------------------------------------------------------------------------- CPU tests (helper CPU)
# make test-cpu: test_sessa on every reference dump (+ the bf16 checkpoint reader), again built with QB=5
# (many query blocks in the blocked attention/feedback on the short dumps), then the trainer's behaviour
# tests (bad inputs, interrupted checkpoint write, exact resume, a broken feedback gradient is caught).
# make bench-cpu: scripts/bench_cpu.sh, C vs PyTorch tok/s on 2 threads (needs data/default).
test_sessa_qb5: test_sessa.c train_sessa.c $(HEADERS)
	$(CC) $(CFLAGS) $(OMPFLAGS) -DQB=5 $< $(LDLIBS) -o $@

test-cpu: train_sessa test_sessa test_sessa_qb5 refs
	@for d in $(REFS)/*_debug.bin; do m=$${d%_debug.bin}; \
	  for t in test_sessa test_sessa_qb5; do \
	    ./$$t -m $${m}_model.bin -d $$d -c $${m}_model_bf16.bin > $$m.$$t.log 2>&1 || { cat $$m.$$t.log; exit 1; }; \
	    echo "$$t $$(basename $$m): $$(tail -1 $$m.$$t.log)"; \
	  done; done
	dev/test/test_cpu_errors.sh $(REFS)

bench-cpu: train_sessa
	scripts/bench_cpu.sh
.PHONY: test-cpu bench-cpu
