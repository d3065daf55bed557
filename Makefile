# Two commands do all set-up on a fresh machine with python3 (3.10+) and make:
#   make demo   build .venv, make synthetic images, build a reference list, match copies,
#               then serve the list over HTTP, match, retract and match again
#   make test   build .venv with the dev extras and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Pinned for every image workload: glibc's dynamic mmap threshold otherwise makes
# each multi-megabyte pixel buffer a fresh mapping, doubling decode time; the trim
# threshold keeps freed buffers from being handed back (and faulted in) every image.
export MALLOC_MMAP_THRESHOLD_ = 134217728
export MALLOC_TRIM_THRESHOLD_ = 268435456

.PHONY: demo test bench bench-quick fuzz clean

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

$(BIN)/.installed-serve: pyproject.toml $(BIN)/.installed-core
	$(BIN)/python -m pip install --quiet -e ".[serve]" "httpx>=0.27"  # httpx: the demo's client
	touch $@

demo: $(BIN)/.installed-core $(BIN)/.installed-serve
	$(BIN)/python -m hashmatch.testing.demo demo-out
	$(BIN)/python -m hashmatch.testing.demo_service demo-out

# The kernels' naive-twin tests run a second time with the JIT off, so their bodies run
# as plain Python (coverage sees them, and a numba-only behaviour cannot hide a bug).
KERNEL_TESTS := tests/test_hasher_kernels.py tests/test_pdq_kernels.py tests/test_index_kernels.py tests/test_index64_kernels.py tests/test_sliced_kernels.py tests/test_index_wide.py tests/test_calibrate.py

test: $(BIN)/.installed-dev
	$(BIN)/python -m pytest -q -n 2
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m pytest -q -n 2 $(KERNEL_TESTS)

# Longer fuzzing than make test runs (about 15 minutes on 2 cores): the hypothesis
# properties with 5,000 examples each, the hostile-input suite with an in-limit bomb of
# 81 Mpx, then atheris (coverage-guided) over image loading, hash lists and index files.
FUZZ_EXAMPLES ?= 5000
FUZZ_RUNS ?= 300000
$(BIN)/.installed-fuzz: pyproject.toml $(BIN)/.installed-dev
	$(BIN)/python -m pip install --quiet -e ".[dev,dask,fuzz]"
	touch $@

fuzz: $(BIN)/.installed-fuzz
	HASHMATCH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -n 2 tests/test_fuzz.py
	HASHMATCH_HOSTILE_BOMB_SIDE=9000 $(BIN)/python tests/test_hostile_inputs.py
	$(BIN)/python tests/test_store_damage.py
	$(BIN)/python tests/fuzz_atheris.py -atheris_runs=$(FUZZ_RUNS)
	$(BIN)/python tests/fuzz_jpeg_dc.py 1 $(FUZZ_RUNS)

bench: $(BIN)/.installed-bench
	$(BIN)/python benchmarks/run_all.py

# The issue-14 targets in about 5 minutes: every ratio against its target, with the CPU
# and its vector features, for this CPU's build and an AVX2 (Haswell) build of the kernels.
bench-quick: $(BIN)/.installed-bench
	PYTHONPATH=src $(BIN)/python benchmarks/bench_quick.py

clean:
	rm -rf $(VENV) demo-out
