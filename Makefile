# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-quick lint format bench clean

$(BIN)/freeze-sweep: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

demo: $(BIN)/freeze-sweep  ## the default sweep on the offline demo: none, backbone, all_but_head
	$(BIN)/freeze-sweep -m

test: $(BIN)/freeze-sweep  ## the whole suite, as CI runs it
	$(BIN)/ruff check sweep tests bench
	$(BIN)/ruff format --check sweep tests bench
	$(BIN)/python -m pytest

test-quick: $(BIN)/freeze-sweep  ## skips the slow multirun tests
	$(BIN)/python -m pytest -m "not slow"

lint:
	$(BIN)/ruff check sweep tests bench

format:
	$(BIN)/ruff format sweep tests bench
	$(BIN)/ruff check --fix sweep tests bench

clean:
	rm -rf outputs .pytest_cache
