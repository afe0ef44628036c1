# The model server image: python -m prefab_serve on port 8000, as a non-root user.
#
# Build from the repository root (the context must hold pyproject.toml):
#   docker build -f docker/serve.Dockerfile -t prefab-serve .
#   docker build -f docker/serve.Dockerfile --build-arg BASE_IMAGE=local/python:3.11 .
# Run with the registry mounted read-only (or storage=s3, see below):
#   docker run -p 8000:8000 -v "$PWD/registry:/registry:ro" prefab-serve
#
# Every server flag is an environment variable (PREFAB_SERVE_<FLAG>), e.g.
#   -e PREFAB_SERVE_WORKERS=4 -e PREFAB_SERVE_MODEL=diamonds-regression
# and the request log (for drift monitoring) goes to a volume at /requests:
#   -e PREFAB_SERVE_REQUEST_LOG=/requests -v "$PWD/outputs/requests:/requests"
# For an S3 registry, pass Hydra overrides instead of a directory:
#   docker run -e PREFAB_S3_BUCKET=... prefab-serve python -m prefab_serve -- storage=s3
# Without network access to a package index at build time, point pip at a
# wheelhouse copied into the context: --build-arg PIP_INSTALL_ARGS="--no-index
# --find-links /app/wheels" (and COPY it in a derived image or adjust below).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG PIP_INSTALL_ARGS=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app
# Dependencies first, from pyproject.toml alone (placeholder packages), so this
# layer is rebuilt only when the dependencies change, not with every source edit.
COPY pyproject.toml README.md ./
RUN python -m venv /opt/venv \
    && mkdir prefab_core prefab_serve tasks \
    && touch prefab_core/__init__.py prefab_serve/__init__.py tasks/__init__.py \
    && pip install ${PIP_INSTALL_ARGS} . \
    && rm -rf prefab_core prefab_serve tasks build ./*.egg-info
# The sources. tasks/ is needed at run time: registered pipelines pickle a
# reference to tasks.featurize._to_str_object, so unpickling imports it.
COPY prefab_core ./prefab_core
COPY prefab_serve ./prefab_serve
COPY tasks ./tasks
COPY conf ./conf
RUN pip install ${PIP_INSTALL_ARGS} --no-deps . \
    && rm -rf build ./*.egg-info \
    && useradd --system --uid 10001 --create-home --home-dir /home/prefab \
       --shell /usr/sbin/nologin prefab \
    && mkdir -p /registry /requests \
    && chown prefab /requests

ENV PREFAB_CONFIG_DIR=/app/conf \
    PREFAB_SERVE_HOST=0.0.0.0 \
    PREFAB_SERVE_PORT=8000 \
    PREFAB_SERVE_WORKERS=2 \
    PREFAB_SERVE_REGISTRY=/registry \
    PREFAB_SERVE_MODEL=flights-binary \
    DO_NOT_TRACK=1

USER prefab
EXPOSE 8000
VOLUME ["/registry"]
# Healthy = a model is loaded and answering (/ready); use /health for a liveness probe.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('PREFAB_SERVE_PORT', '8000'), timeout=2)" || exit 1
STOPSIGNAL SIGTERM
CMD ["python", "-m", "prefab_serve"]
