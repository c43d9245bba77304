# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: help demo ui services test test-quick test-gpu lint format bench bench-quick gpu-wheels gpu-check readme-images clean

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 24

$(BIN)/freeze-sweep: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

demo: $(BIN)/freeze-sweep  ## the default sweep on the offline demo: none, backbone, all_but_head
	$(BIN)/freeze-sweep -m

services: $(BIN)/freeze-sweep  ## as root: local SLURM cluster and PostgreSQL-backed MLflow server on 127.0.0.1 (idempotent)
	VENV=$(abspath $(VENV)) .ci/services.sh

ui: $(BIN)/freeze-sweep  ## the MLflow UI on outputs/mlflow.db, opened on the latest sweep's runs
	$(BIN)/freeze-sweep-ui

test: $(BIN)/freeze-sweep  ## the whole suite, as CI runs it
	$(BIN)/ruff check sweep tests bench scripts hydra_plugins
	$(BIN)/ruff format --check sweep tests bench scripts hydra_plugins
	$(BIN)/python -m pytest

test-quick: $(BIN)/freeze-sweep  ## skips the slow multirun tests
	$(BIN)/python -m pytest -m "not slow"

test-gpu: $(BIN)/freeze-sweep  ## the real-GPU tests (needs CUDA)
	$(BIN)/python -m pytest -m gpu

lint: $(BIN)/freeze-sweep  ## ruff check
	$(BIN)/ruff check sweep tests bench scripts hydra_plugins

format: $(BIN)/freeze-sweep  ## ruff format, then the fixes ruff can make
	$(BIN)/ruff format sweep tests bench scripts hydra_plugins
	$(BIN)/ruff check --fix sweep tests bench scripts hydra_plugins

bench: $(BIN)/freeze-sweep  ## every benchmark at full size (an idle machine); records in bench/results/
	$(BIN)/python -m bench

bench-quick: $(BIN)/freeze-sweep  ## every benchmark at its smoke size, as CI runs it
	$(BIN)/python -m bench --quick

SHARED ?= ../shared
gpu-wheels: $(BIN)/freeze-sweep  ## .gpu/: the wheels an offline GPU machine lacks (needs a registry) and the polars stand-in
	PY=$(BIN)/python $(SHARED)/gpu/wheels.sh .gpu/whl
	rm -rf .gpu/stand-in
	cp -r --no-preserve=mode $(SHARED)/gpu/stand-in .gpu/stand-in

gpu-check:  ## on the GPU machine, after gpu-wheels: the GPU check in 8 minutes; results in $$OUT (bench/gpu_check.sh)
	bench/gpu_check.sh

readme-images: $(BIN)/freeze-sweep  ## README pictures from a demo run (needs chromium)
	$(BIN)/python scripts/readme_images.py

clean:  ## remove outputs/ (runs, store, caches)
	rm -rf outputs .pytest_cache
