# The model server image: python -m prefab_serve on port 8000, as a non-root user.
#
# Build from the repository root (the context must hold pyproject.toml):
#   docker build -f docker/serve.Dockerfile -t prefab-serve .
#   docker build -f docker/serve.Dockerfile --build-arg BASE_IMAGE=local/python:3.11-slim .
# Run with the registry mounted read-only (or storage=s3, see below):
#   docker run -p 8000:8000 -v "$PWD/registry:/registry:ro" prefab-serve
#
# Every server flag is an environment variable (PREFAB_SERVE_<FLAG>), e.g.
#   -e PREFAB_SERVE_WORKERS=4 -e PREFAB_SERVE_MODEL=diamonds-regression
# and the request log (for drift monitoring) goes to a volume at /requests:
#   -e PREFAB_SERVE_REQUEST_LOG=/requests -v "$PWD/outputs/requests:/requests"
# For an S3 registry, pass Hydra overrides instead of a directory:
#   docker run -e PREFAB_S3_BUCKET=... prefab-serve python -m prefab_serve -- storage=s3
#
# * No package index needed: if docker/wheelhouse/ holds wheels (scripts/wheelhouse.sh
#   fills it with `pip download` on the host), pip installs from them with
#   --no-index; if it holds none, pip uses the index as usual.
# * Layers: the `requirements` and `deps` stages are the same instructions as in
#   docker/flow.Dockerfile, so an engine that has built one image reuses that big
#   dependency layer (about 1 GB) for the other. It depends only on the dependency list
#   and the wheelhouse: editing the code, the README or pyproject.toml's other
#   sections rebuilds only the small project layers (seconds, not minutes).

ARG BASE_IMAGE=python:3.11-slim

# ------------------------------------------------------------ dependencies
# Keep these two stages identical to docker/flow.Dockerfile's (shared build cache).
FROM ${BASE_IMAGE:-python:3.11-slim} AS requirements
COPY pyproject.toml /src/pyproject.toml
RUN python -c "import tomllib; d = tomllib.load(open('/src/pyproject.toml', 'rb')); \
print('\n'.join(d['project']['dependencies']))" >/requirements.txt

FROM ${BASE_IMAGE:-python:3.11-slim} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/prefab/venv
COPY docker/wheelhouse/ /wheels/
COPY --from=requirements /requirements.txt /src/requirements.txt
# Then a warm-up import that leaves bytecode for the modules a flow run loads (and
# only those).
RUN set -eu; \
    if ls /wheels/*.whl >/dev/null 2>&1; then idx="--no-index --find-links /wheels"; \
    else idx=""; fi; \
    /opt/prefab/venv/bin/pip install --no-compile $idx -r /src/requirements.txt; \
    env -u PYTHONDONTWRITEBYTECODE /opt/prefab/venv/bin/python -c "\
import prefect.cli, prefect.engine, prefect.deployments.steps, prefect_aws, pandas, numpy, \
pyarrow.parquet, sklearn.pipeline, sklearn.compose, sklearn.preprocessing, sklearn.metrics, \
xgboost, hydra, omegaconf, pandera.pandas, matplotlib.pyplot, evidently, wandb" >/dev/null

# ------------------------------------------------------------- the project
# The server, the shared package, and tasks/: registered pipelines pickle a
# reference to tasks.featurize._to_str_object, so unpickling imports it.
FROM deps AS project
COPY pyproject.toml README.md /src/
COPY prefab_core/ /src/prefab_core/
COPY prefab_serve/ /src/prefab_serve/
COPY tasks/ /src/tasks/
RUN set -eu; \
    if ls /wheels/*.whl >/dev/null 2>&1; then idx="--no-index --find-links /wheels"; \
    else idx=""; fi; \
    /opt/prefab/venv/bin/pip wheel --no-deps $idx --wheel-dir /dist /src

# ------------------------------------------------------------------ final stage
FROM ${BASE_IMAGE:-python:3.11-slim}
ENV PATH=/opt/prefab/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/prefab/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DO_NOT_TRACK=1
RUN useradd --system --uid 10001 --create-home --home-dir /home/prefab \
        --shell /usr/sbin/nologin prefab \
 && mkdir -p /registry /requests \
 && chown prefab /requests
COPY --from=deps /opt/prefab/venv /opt/prefab/venv
COPY --from=project /dist/ /tmp/dist/
RUN pip install --no-deps --no-index --no-compile /tmp/dist/*.whl \
 && rm -rf /tmp/dist \
 && env -u PYTHONDONTWRITEBYTECODE HOME=/tmp/warm python -c "import prefab_serve.app, prefab_serve.server" \
 && rm -rf /tmp/warm
COPY conf/ /app/conf/
WORKDIR /app

ENV PREFAB_CONFIG_DIR=/app/conf \
    PREFAB_SERVE_HOST=0.0.0.0 \
    PREFAB_SERVE_PORT=8000 \
    PREFAB_SERVE_WORKERS=2 \
    PREFAB_SERVE_REGISTRY=/registry \
    PREFAB_SERVE_MODEL=flights-binary

USER prefab
EXPOSE 8000
VOLUME ["/registry"]
# Healthy = a model is loaded and answering (/ready); use /health for a liveness probe.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('PREFAB_SERVE_PORT', '8000'), timeout=2)" || exit 1
STOPSIGNAL SIGTERM
CMD ["python", "-m", "prefab_serve"]
