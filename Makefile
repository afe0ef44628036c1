# prefab-mlops — the two commands of the quick start are `make train` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=
PYTEST_ARGS ?=
INSTALL_ARGS ?=

# No telemetry from an offline machine; W&B stays offline unless you opt in.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_TELEMETRY_ENABLED := false
# The first temporary Prefect server of a fresh venv compiles its bytecode and migrates
# its database, which can take longer than Prefect's 20 s default.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

PREFECT_PORT ?= 4200
SERVER_API   := http://127.0.0.1:$(PREFECT_PORT)/api
POOL         ?= prefab-process

.PHONY: setup train test test-fast bench-training bench-monitoring bench-leakage bench-fuzz bench-scale \
        bench-reliability lint rollback registry registry-check clean \
        server pool deploy worker monitor predict drift-demo

# uv makes the venv (0.5 s; `python -m venv` takes 5-7 s seeding pip) and installs in
# seconds from its cache. Without uv on PATH the venv comes from $(PYTHON) -m venv and
# uv is bootstrapped into it with pip; plain pip is the fallback where neither works.
$(STAMP): pyproject.toml
	@uv=$$(command -v uv); \
	if [ -n "$$uv" ]; then \
	  test -x $(BIN)/python || $$uv venv --quiet --seed --allow-existing --python $(PYTHON) $(VENV) || exit 1; \
	else \
	  test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || exit 1; \
	  uv=$$($(BIN)/python -m pip install --quiet uv >/dev/null 2>&1 && echo $(BIN)/uv); \
	fi; \
	if [ -n "$$uv" ]; then \
	  $$uv pip install --quiet --python $(BIN)/python $(INSTALL_ARGS) -e '.[dev]'; \
	else \
	  $(BIN)/python -m pip install --quiet $(INSTALL_ARGS) -e '.[dev]'; \
	fi
	@touch $(STAMP)

## setup: create .venv (if missing) and install the project with its dev extras
setup: $(STAMP)

## train: run the training flow on the bundled flights data (ARGS="model=random_forest ...")
train: $(STAMP)
	$(BIN)/prefab train $(ARGS)

## test: the whole test suite, slow end-to-end tests included
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## test-fast: only the fast logic tests
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## bench-training: training pipeline benchmark (JSON); BENCH_SCALE=10 for 3.4M rows
bench-training: $(STAMP)
	@$(BIN)/python bench/training.py

## bench-monitoring: drift check vs Evidently's full report + drift-event loop (JSON); BENCH_DRIFT_ROWS=N
bench-monitoring: $(STAMP)
	@$(BIN)/python bench/monitoring.py

## bench-fuzz: fuzz ingest, validate and /predict with many generated inputs (JSON); see bench/fuzz.py
bench-fuzz: $(STAMP)
	@$(BIN)/python bench/fuzz.py
## bench-leakage: cost of the leakage alarm on the flights table (JSON); BENCH_WIDTHS=10,100,400
bench-leakage: $(STAMP)
	@$(BIN)/python bench/leakage.py

## bench-reliability: kills, concurrency, promotions, S3 outages, fuzzing, soak, reproduce (JSON); BENCH_QUICK=1
bench-reliability: $(STAMP)
	@$(BIN)/python bench/reliability.py

## bench-scale: candidate search on a 2-process Dask LocalCluster vs one at a time, and the Dask data engine on flights x BENCH_SCALE (JSON); BENCH_SECTIONS=search,big
bench-scale: $(STAMP)
	@$(BIN)/python bench/scale.py

## registry-check: verify every registered version (MODEL=...); ARGS=--repair removes leftovers of killed writers
registry-check: $(STAMP)
	$(BIN)/prefab registry check $(MODEL) $(ARGS)

## registry: list registered versions and aliases (MODEL=flights-binary)
registry: $(STAMP)
	$(BIN)/prefab registry list $(MODEL)

## rollback: move `production` back to the previous production version (MODEL=flights-binary)
rollback: $(STAMP)
	$(BIN)/prefab rollback $(MODEL)

## monitor: drift check of a batch against production (ARGS="--batch FILE ...")
monitor: $(STAMP)
	$(BIN)/prefab monitor $(ARGS)

## predict: score a batch with the production model (ARGS="--batch FILE")
predict: $(STAMP)
	$(BIN)/prefab score $(ARGS)

## serve: the model REST server for the production model (SERVE_PORT=8000, MODEL=..., ARGS="--workers 2")
SERVE_PORT ?= 8000
.PHONY: serve bench-serving
serve: $(STAMP)
	$(BIN)/python -m prefab_mlops.serve --port $(SERVE_PORT) $(if $(MODEL),--model $(MODEL)) $(ARGS)

## bench-serving: model server benchmark against a real 2-worker server (JSON); see bench/serving.py
bench-serving: $(STAMP)
	@$(BIN)/python bench/serving.py

## server: a Prefect server with its UI on http://127.0.0.1:$(PREFECT_PORT)
# The UI calls the API at PREFECT_SERVER_UI_API_URL, which is port 4200 unless set.
server: $(STAMP)
	PREFECT_SERVER_UI_API_URL=$(SERVER_API) \
	  $(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

## pool: create the process work pool the deployments use
pool: $(STAMP)
	PREFECT_API_URL=$(SERVER_API) $(BIN)/prefect work-pool create $(POOL) --type process --overwrite

## deploy: create/update every deployment in prefect.yaml and the crash-detection automation (idempotent)
deploy: $(STAMP)
	PREFECT_API_URL=$(SERVER_API) $(BIN)/prefect --no-prompt deploy --all
	PREFECT_API_URL=$(SERVER_API) $(BIN)/python -m prefab_mlops.orchestration.crash_detection

## worker: a process worker for the pool (polls every 2 s)
worker: $(STAMP)
	PREFECT_API_URL=$(SERVER_API) PREFECT_WORKER_QUERY_SECONDS=2 \
	  $(BIN)/prefect worker start --pool $(POOL)

## drift-demo: run the monitor deployment on a drifted batch of real flights
drift-demo: $(STAMP)
	$(BIN)/python -m prefab_mlops.testing.flights_batches drifted outputs/batches/drifted.csv --rows 30000
	PREFECT_API_URL=$(SERVER_API) $(BIN)/prefect deployment run monitoring/monitor \
	  --param batch_uri=$(CURDIR)/outputs/batches/drifted.csv

# ------------------------------------------------------------- containers
# The engine for the targets below: $DOCKER_HOST if set, else the local engine's
# socket if scripts/local-engine.sh is up (then its local base image), else Docker's.
LOCAL_ENGINE_HOST = $(shell bash scripts/local-engine.sh env 2>/dev/null | sed -n 's/^export DOCKER_HOST=//p')
ENGINE_HOST       = $(or $(DOCKER_HOST),$(LOCAL_ENGINE_HOST))
ENGINE_BASE_IMAGE = $(or $(PREFAB_BASE_IMAGE),$(if $(and $(LOCAL_ENGINE_HOST),$(filter $(ENGINE_HOST),$(LOCAL_ENGINE_HOST))),local/python:3.11-slim))
DOCKER_POOL      ?= prefab-docker
.PHONY: engine-up engine-down engine-status images docker-deploy docker-worker

## engine-up: a Docker-API engine (rootful Podman) where there is no Docker; needs root
engine-up:
	@bash scripts/local-engine.sh up
	@echo 'In your shell:  eval "$$(scripts/local-engine.sh env)"   (make targets find it by themselves)'

## engine-down: stop the local engine (keeps its images; scripts/local-engine.sh purge deletes them)
engine-down:
	bash scripts/local-engine.sh down

engine-status:
	@bash scripts/local-engine.sh status

## images: build the flow-run and serving images (prefab-mlops-flow:dev, prefab-serve:dev)
images: $(STAMP)
	DOCKER_HOST=$(ENGINE_HOST) BASE_IMAGE=$(ENGINE_BASE_IMAGE) PYTHON=$(BIN)/python \
	  bash scripts/build-images.sh

## docker-deploy: the prefab-docker work pool + the deployments of prefect.docker.yaml (builds the image)
docker-deploy: $(STAMP)
	PREFECT_API_URL=$(SERVER_API) $(BIN)/prefect work-pool create $(DOCKER_POOL) --type docker --overwrite
	PYTHON=$(BIN)/python bash scripts/wheelhouse.sh
	DOCKER_HOST=$(ENGINE_HOST) PREFAB_BASE_IMAGE=$(ENGINE_BASE_IMAGE) PREFECT_API_URL=$(SERVER_API) \
	  $(BIN)/prefect --no-prompt deploy --all --prefect-file prefect.docker.yaml

## docker-worker: a docker worker for prefab-docker (polls every 2 s)
docker-worker: $(STAMP)
	DOCKER_HOST=$(ENGINE_HOST) PREFECT_API_URL=$(SERVER_API) PREFECT_WORKER_QUERY_SECONDS=2 \
	  $(BIN)/prefect worker start --pool $(DOCKER_POOL) --type docker

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf outputs .cache wandb .pytest_cache
