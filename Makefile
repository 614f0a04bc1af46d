# Two commands do all the set-up on a fresh clone:
#   make demo   -- create .venv, install, train the digits MLP, write its hls4ml
#                  project and verify Keras = emulator = C simulation, bit for bit
#   make test   -- create .venv, install with test extras, run the tests
# (tests run on the TensorFlow backend, then the core and layer tests on JAX)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: demo test test-tf test-jax install install-test bench clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.base
install-test: $(VENV)/.test

demo: $(VENV)/.base
	mkdir -p out
	$(PY) examples/digits_mlp.py --output out/digits_mlp.keras --json out/digits_mlp.json \
		--project out/digits_mlp_hls4ml --overwrite

test: test-tf test-jax

test-tf: $(VENV)/.test
	KERAS_BACKEND=tensorflow $(PY) -m pytest

test-jax: $(VENV)/.test
	KERAS_BACKEND=jax $(PY) -m pytest -m "not slow" tests/fixed tests/quantizers tests/layers tests/test_calibration.py

bench: $(VENV)/.test
	$(PY) benchmarks/train_overhead.py

clean:
	rm -rf $(VENV) out build dist *.egg-info
