# prefab-mlops — the two commands of the quick start are `make train` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=
PYTEST_ARGS ?=

# No telemetry from an offline machine; W&B stays offline unless you opt in.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_TELEMETRY_ENABLED := false

.PHONY: setup train test test-fast bench-training lint rollback registry clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## setup: create .venv (if missing) and install the project with its dev extras
setup: $(STAMP)

## train: run the training flow on the bundled flights data (ARGS="model=random_forest ...")
train: $(STAMP)
	$(BIN)/python -m flows.training $(ARGS)

## test: the whole test suite, slow end-to-end tests included
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## test-fast: only the fast logic tests
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## bench-training: training pipeline benchmark (JSON); BENCH_SCALE=10 for 3.4M rows
bench-training: $(STAMP)
	$(BIN)/python bench/training.py

## registry: list registered versions and aliases (MODEL=flights-binary)
registry: $(STAMP)
	$(BIN)/prefab registry list $(MODEL)

## rollback: move `production` back to the previous production version (MODEL=flights-binary)
rollback: $(STAMP)
	$(BIN)/prefab rollback $(MODEL)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf outputs .cache wandb .pytest_cache
