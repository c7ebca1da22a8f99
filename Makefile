# Every target sets itself up: a virtualenv in .venv with the pinned requirements.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?= efficientdet-d0
PYTEST_ARGS ?=

.PHONY: setup setup-test demo test test-fast clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PY) -m pip install -r requirements-test.txt
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test

## The main job (for now: build the model and print its summary).
demo: setup
	$(PY) main.py --mode summary --model_name $(MODEL)

## The whole test suite.
test: setup-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

## Everything except tests marked slow.
test-fast: setup-test
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
