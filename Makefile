# eo_baseline developer and user entry points.
#   make demo   - the main job: simulate a run, ingest it into a SQLite butler repo, run the pipelines
#   make test   - the whole test suite
#   make bench  - benchmarks, written to bench/results.json (SCALE_FROM=file.json reuses the
#                 figures of an earlier full-focal-plane scale run instead of re-running it)
# Each target builds the environment (.venv, from a Python 3.12 interpreter) when needed.

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.eo_baseline_setup
PYTHON312 = $(shell scripts/find-python312)
JOBS ?= 2
DEMO_DIR ?= demo_output
REGISTRY ?= sqlite

.PHONY: setup demo test bench lint clean-demo

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON312) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[test]'
	$(BIN)/eo-baseline install-hooks
	@scripts/install-system-packages
	@touch $@

demo: setup
	$(BIN)/eo-baseline demo --out $(DEMO_DIR) -j $(JOBS) --registry $(REGISTRY)

test: setup
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile --durations=15 tests

bench: setup
	$(BIN)/python -m lsst.eo.baseline.bench --out bench/results.json $(if $(SCALE_FROM),--scale-from $(SCALE_FROM))

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean-demo:
	rm -rf $(DEMO_DIR)
