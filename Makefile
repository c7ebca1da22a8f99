# Every target sets itself up: a virtualenv in .venv with the pinned requirements.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?= efficientdet-d0
PYTEST_ARGS ?=
# Worker processes of the TensorFlow suite (pytest-xdist): much of a test's time is
# single-threaded (imports, model building, graph tracing), so 2 workers overlap on 2 cores.
PYTEST_WORKERS ?= 2
PYTEST_JAX_ARGS ?=

.PHONY: setup setup-test demo summary test test-fast test-jax clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt requirements-horovod.txt
	$(PY) -m pip install -r requirements-test.txt
	scripts/install_horovod.sh $(PY)
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test

## The main job: train + evaluate EfficientDet-D0 on the built-in sample dataset.
demo: setup
	rm -rf runs/demo
	$(PY) main.py --mode train_and_eval --model_dir runs/demo --sample_data_dir runs/sample_data --alsologtostderr

## Print a model's layers and parameter counts (MODEL=efficientnetv2-s ...).
summary: setup
	$(PY) main.py --mode summary --model_name $(MODEL)

## The whole test suite: the TensorFlow suite (in PYTEST_WORKERS processes, pytest-xdist),
## then the JAX one (the Keras backend is fixed at import, so each backend gets its own
## pytest process).
test: setup-test
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) $(PYTEST_ARGS)
	KERAS_BACKEND=jax $(PY) -m pytest -q tests_jax $(PYTEST_JAX_ARGS)

## Only the JAX process (tests_jax/).
test-jax: setup-test
	KERAS_BACKEND=jax $(PY) -m pytest -q tests_jax $(PYTEST_JAX_ARGS)

## Everything except tests marked slow.
test-fast: setup-test
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

## Benchmark suite: input pipelines, train steps, inference (writes runs/bench/results.{json,md}).
.PHONY: bench bench-quick
bench: setup
	$(PY) -m benchmarks.run --output_dir runs/bench

## The same with small sizes (under 2 minutes on a quiet 2-core CPU; cases set up side by side).
bench-quick: setup
	$(PY) -m benchmarks.run --quick --output_dir runs/bench-quick

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info runs/demo
