# Two commands do all the set-up on a fresh clone:
#   make demo   -- create .venv, install, train the digits MLP, write its hls4ml
#                  project and verify Keras = emulator = C simulation, bit for bit
#   make test   -- create .venv, install with test extras (and yosys/iverilog
#                  with apt when missing), run the tests
# (tests run on the TensorFlow backend, then the core, layer and budget tests on JAX and PyTorch)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: demo test test-tf test-jax test-torch lint install install-test tools bench clean

# PyTorch for the torch backend's tests: 2.13.0 is the CPU build this project's CI
# machines keep on disk (elsewhere pip takes PyPI's build); `make test TORCH=` skips them
TORCH ?= torch==2.13.0

# PYTHONWARNINGS=ignore: setuptools warns on every editable install that a folder
# named like the package could shadow it (hgq_fpga/ is that package).
$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e .
	touch $@

# qkeras-v3 (for hgq_fpga.from_qkeras) declares full tensorflow and
# tensorflow-model-optimization, which would install a second TensorFlow beside
# tensorflow-cpu; its imports need only networkx and six (in the test extra).
$(VENV)/.test: $(VENV)/.base
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps qkeras-v3==1.2.1
	$(if $(TORCH),$(PY) -m pip install --quiet $(TORCH))
	touch $@

install: $(VENV)/.base
install-test: $(VENV)/.test

demo: $(VENV)/.base
	mkdir -p out
	$(PY) examples/digits_mlp.py --lut-budget 20000 --output out/digits_mlp.keras --json out/digits_mlp.json \
		--project out/digits_mlp_hls4ml --report out/digits_mlp_report --overwrite

test: tools test-tf test-jax $(if $(TORCH),test-torch)

# yosys and Icarus Verilog (Debian packages): the open-source ground truth of
# the resource estimator, used by tests/resources; Chromium renders the HTML
# report headless in tests/test_report.py. Installed with apt when missing and
# allowed (root, or password-less sudo); otherwise a clear message.
TOOLS := yosys iverilog chromium
tools:
	@missing=""; for t in $(TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make tools: missing:$$missing, and apt needs root:"; \
	     echo "  sudo apt-get install$$missing   (or conda install -c conda-forge yosys iverilog)"; exit 1; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq$$missing >/dev/null

# da4ml's solver (distributed_arithmetic) is numba code that compiles for about 160 s in a
# fresh environment; the tests' kernels are tiny and run interpreted in under a second, with
# the same algorithm. Benchmarks leave numba on.
# the TensorFlow run on JOBS worker processes, a test file per worker at a time (its module
# fixtures built once): 24 min against 33 on CI's 2 cores. JOBS=0 runs in this process.
JOBS ?= 2
test-tf: export NUMBA_DISABLE_JIT = 1
# TensorFlow's op pools on one thread in each worker (by default a thread a core each, and the two
# workers' pools on each other's cores): tests/constraints 211 -> 188 s, tests/layers, tests/quantizers and
# tests/test_calibration.py 135 -> 127 s, the whole TensorFlow run 16:53 -> 16:13 (2 cores, one run each)
test-tf: export TF_NUM_INTRAOP_THREADS = 1
test-tf: export TF_NUM_INTEROP_THREADS = 1
# JAX keeps the programs XLA compiles on disk (beside the venv) and takes them from there when the
# same one is compiled again, in any test process: the budget tests train the same small models
# many times, and compiling them was most of their time on JAX (the 60 tests: 197 s -> 108 s from an
# empty cache, 2 workers). The TensorFlow run's two-device test starts JAX too.
JAX_CACHE := $(abspath $(VENV))/jax-cache
test-tf test-jax: export JAX_COMPILATION_CACHE_DIR = $(JAX_CACHE)
test-tf test-jax: export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS = 0
test-tf test-jax: export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES = 0
test-tf: $(VENV)/.test
	KERAS_BACKEND=tensorflow $(PY) -m pytest $(if $(filter 0,$(JOBS)),,-n $(JOBS) --dist loadfile)

# budgeted training on JAX and PyTorch: every test of the budget and the sensitivities, as on
# TensorFlow; the two-device test (tests/constraints/test_multidevice.py) starts both
# TensorFlow and JAX itself in the TensorFlow run
BUDGET_TESTS := tests/constraints/test_budget.py tests/constraints/test_sensitivity.py tests/constraints/test_spread.py \
                tests/constraints/test_anneal.py tests/constraints/test_interrupted.py \
                tests/constraints/test_executions.py
# (numba off here too: with it on, the first RTL budget test on JAX compiled da4ml's solver for 80 s)
test-jax test-torch: export NUMBA_DISABLE_JIT = 1
# on JOBS workers as well, the budget tests one test at a time (most are in one file): JAX's
# 402 s -> 300 s on this 2-core machine
XDIST = $(if $(filter 0,$(JOBS)),,-n $(JOBS) --dist $(1))
test-jax: $(VENV)/.test
	KERAS_BACKEND=jax $(PY) -m pytest $(call XDIST,loadfile) -m "not slow" tests/fixed tests/quantizers tests/layers tests/test_calibration.py
	KERAS_BACKEND=jax $(PY) -m pytest $(call XDIST,load) $(BUDGET_TESTS)

# PyTorch's operations on one thread in each worker (its default, a thread a core, put the two
# workers' threads on each other's cores: the 60 budget tests 186 s -> 129 s on CI's 2 cores)
test-torch: export OMP_NUM_THREADS = 1
test-torch: $(VENV)/.test
	KERAS_BACKEND=torch $(PY) -m pytest $(call XDIST,loadfile) -m "not slow" tests/fixed tests/quantizers tests/layers tests/test_calibration.py
	KERAS_BACKEND=torch $(PY) -m pytest $(call XDIST,load) $(BUDGET_TESTS)

# ruff with pyproject.toml's rules (tests/test_lint.py runs the same in make test); FIX=1 sorts the imports
lint: $(VENV)/.test
	$(PY) -m ruff check $(if $(FIX),--fix) .

bench: $(VENV)/.test
	$(PY) benchmarks/train_overhead.py

clean:
	rm -rf $(VENV) out build dist *.egg-info
