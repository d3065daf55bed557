# Two commands do all set-up on a fresh machine with python3 (3.10+) and make:
#   make demo   build .venv, make synthetic images, build a reference list, match copies
#   make test   build .venv with the dev extras and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Pinned for every image workload: glibc's dynamic mmap threshold otherwise makes
# each multi-megabyte pixel buffer a fresh mapping, doubling decode time; the trim
# threshold keeps freed buffers from being handed back (and faulted in) every image.
export MALLOC_MMAP_THRESHOLD_ = 134217728
export MALLOC_TRIM_THRESHOLD_ = 268435456

.PHONY: demo test bench bench-quick clean

$(BIN)/.installed-core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(BIN)/.installed-dev: pyproject.toml $(BIN)/.installed-core
	$(BIN)/python -m pip install --quiet -e ".[dev,dask]"
	touch $@

$(BIN)/.installed-bench: pyproject.toml $(BIN)/.installed-dev
	$(BIN)/python -m pip install --quiet -e ".[dev,dask,bench]"
	touch $@

demo: $(BIN)/.installed-core
	$(BIN)/python -m hashmatch.testing.demo demo-out

# The kernels' naive-twin tests run a second time with the JIT off, so their bodies run
# as plain Python (coverage sees them, and a numba-only behaviour cannot hide a bug).
KERNEL_TESTS := tests/test_hasher_kernels.py tests/test_pdq_kernels.py tests/test_index_kernels.py tests/test_calibrate.py

test: $(BIN)/.installed-dev
	$(BIN)/python -m pytest -q -n 2
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m pytest -q -n 2 $(KERNEL_TESTS)

bench: $(BIN)/.installed-bench
	$(BIN)/python benchmarks/run_all.py

# The issue-14 targets in about 5 minutes: every ratio against its target, with the CPU
# and its vector features, for this CPU's build and an AVX2 (Haswell) build of the kernels.
bench-quick: $(BIN)/.installed-bench
	PYTHONPATH=src $(BIN)/python benchmarks/bench_quick.py

clean:
	rm -rf $(VENV) demo-out
