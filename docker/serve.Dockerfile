# The model server image: python -m prefab_mlops.serve on port 8000, as a non-root user.
# It holds prefab-mlops[serve] and nothing else: the model runtime (numpy, pandas,
# scikit-learn, xgboost-cpu, pyarrow, boto3) and FastAPI/uvicorn; no prefect, Hydra/
# OmegaConf, Evidently, W&B, pandera or matplotlib (tests/containers checks).
#
# Build from the repository root (the context must hold pyproject.toml):
#   docker build -f docker/serve.Dockerfile -t prefab-serve .
#   docker build -f docker/serve.Dockerfile --build-arg BASE_IMAGE=local/python:3.11-slim .
# Run with the registry mounted read-only:
#   docker run -p 8000:8000 -v "$PWD/registry:/registry:ro" prefab-serve
#
# Every server flag is an environment variable (PREFAB_SERVE_<FLAG>), e.g.
#   -e PREFAB_SERVE_WORKERS=4 -e PREFAB_SERVE_MODEL=diamonds-regression
# and the request log (for drift monitoring) goes to a volume at /requests:
#   -e PREFAB_SERVE_REQUEST_LOG=/requests -v "$PWD/outputs/requests:/requests"
# There is no Hydra in this image, so the server does not read the project's conf/:
# registry and model come from PREFAB_SERVE_REGISTRY / PREFAB_SERVE_MODEL (set below).
#
# * No package index needed: if docker/wheelhouse/ holds wheels (scripts/wheelhouse.sh
#   fills it with `pip download` on the host), pip installs from them with
#   --no-index; if it holds none, pip uses the index as usual.
# * Layers: the `requirements` and `deps` stages are the same instructions as in
#   docker/flow.Dockerfile, so an engine that has built one image reuses that
#   dependency layer for the other; each image adds its own extra on top. The venv
#   depends only on the dependency list and the wheelhouse: editing the code, the
#   README or pyproject.toml's other sections rebuilds only the small project layers.
# * Small: the final stage gets the venv without pip/setuptools, without the test
#   suites the wheels ship (pandas, scipy, numpy, scikit-learn, pyarrow: ~50 MB) and
#   without C/Cython headers and sources; bytecode only for the modules the server
#   imports (warm-up imports), as in the flow image.

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
# the server never imports tasks or flows (tests/test_architecture.py). Installed here
# under /staging (pip --root), so the final stage copies just its files and needs no pip.
FROM role AS project
COPY pyproject.toml README.md /src/
COPY src/ /src/src/
COPY tasks/ /src/tasks/
COPY flows/ /src/flows/
RUN set -eu; \
    if ls /wheels/*.whl >/dev/null 2>&1; then idx="--no-index --find-links /wheels"; \
    else idx=""; fi; \
    /opt/prefab/venv/bin/pip wheel --no-deps $idx --wheel-dir /dist /src; \
    /opt/prefab/venv/bin/pip install --no-deps --no-index --no-compile --root /staging \
        /dist/*.whl

# ------------------------------------------------------------ the slim venv
# What a server needs at run time: no installer (pip, setuptools), no test suites, no
# headers, Cython/C sources or type stubs (for compilers and type checkers only), and
# files that several wheels ship byte for byte (pyarrow's libarrow_python.so three
# times, numpy's and scipy's libgfortran) stored once, as hard links. Then the imports
# of a server and of a registered pipeline, to prove it still works.
FROM role AS runtime
RUN set -eu; \
    /opt/prefab/venv/bin/python -m pip uninstall --yes --quiet pip setuptools; \
    site=$(/opt/prefab/venv/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))"); \
    find "$site" -depth -type d \( -name tests -o -name test \) -exec rm -rf {} +; \
    find "$site" -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.h' \
        -o -name '*.hpp' -o -name '*.c' -o -name '*.cc' -o -name '*.cpp' -o -name '*.pyi' \) \
        -delete; \
    find "$site" -depth -type d -empty -delete; \
    /opt/prefab/venv/bin/python -c "\
import hashlib, os, sys; seen = {}; \
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs); \
files = [p for p in files if not os.path.islink(p) and os.path.getsize(p) >= 65536]; \
[(os.link(seen[k], p + '.tmp'), os.replace(p + '.tmp', p)) if k in seen \
 else seen.setdefault(k, p) for p in files for k in [(os.path.getsize(p), \
 os.stat(p).st_mode, hashlib.sha256(open(p, 'rb').read()).hexdigest())]]" "$site"; \
    /opt/prefab/venv/bin/python -c "\
import pandas, numpy, pyarrow.parquet, sklearn.pipeline, sklearn.compose, \
sklearn.preprocessing, xgboost, boto3, fastapi, uvicorn, prometheus_client, orjson"

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
# Two layers: the dependencies (rebuilt only when the dependency list or the wheelhouse
# change) and the project (a few hundred kB, rebuilt on every code change).
COPY --from=runtime /opt/prefab/venv /opt/prefab/venv
COPY --from=project /staging/ /
RUN env -u PYTHONDONTWRITEBYTECODE HOME=/tmp/warm python -c "import prefab_mlops.serve.app, prefab_mlops.serve.server" \
 && rm -rf /tmp/warm
WORKDIR /app

ENV PREFAB_SERVE_HOST=0.0.0.0 \
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
