# The model server image: python -m prefab_mlops.serve on port 8000, as a non-root user.
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
#   docker run -e PREFAB_S3_BUCKET=... prefab-serve python -m prefab_mlops.serve -- storage=s3
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
open('/requirements.txt', 'w').write('\n'.join(d['project']['dependencies'])); \
[open(f'/requirements-{k}.txt', 'w').write('\n'.join(r for r in v if 'prefab-mlops' not in r)) \
 for k, v in d['project']['optional-dependencies'].items()]"

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
import pandas, numpy, pyarrow.parquet, sklearn.pipeline, sklearn.compose, \
sklearn.preprocessing, xgboost, boto3" >/dev/null

# The role's extra on top of the shared runtime layer: [serve], the model server alone (no prefect, hydra, evidently, wandb).
FROM deps AS role
COPY --from=requirements /requirements-serve.txt /src/requirements-serve.txt
RUN set -eu; \
    if ls /wheels/*.whl >/dev/null 2>&1; then idx="--no-index --find-links /wheels"; \
    else idx=""; fi; \
    /opt/prefab/venv/bin/pip install --no-compile $idx -r /src/requirements-serve.txt; \
    env -u PYTHONDONTWRITEBYTECODE /opt/prefab/venv/bin/python -c "\
import fastapi, uvicorn, prometheus_client, orjson" >/dev/null

# ------------------------------------------------------------- the project
# The one prefab-mlops wheel, built from the context (src/ plus tasks/ and flows/, which
# the distribution maps into the namespace). Installed with [serve]'s dependencies only,
# the server never imports tasks or flows (tests/test_architecture.py).
FROM role AS project
COPY pyproject.toml README.md /src/
COPY src/ /src/src/
COPY tasks/ /src/tasks/
COPY flows/ /src/flows/
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
COPY --from=role /opt/prefab/venv /opt/prefab/venv
COPY --from=project /dist/ /tmp/dist/
RUN pip install --no-deps --no-index --no-compile /tmp/dist/*.whl \
 && rm -rf /tmp/dist \
 && env -u PYTHONDONTWRITEBYTECODE HOME=/tmp/warm python -c "import prefab_mlops.serve.app, prefab_mlops.serve.server" \
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
CMD ["python", "-m", "prefab_mlops.serve"]
