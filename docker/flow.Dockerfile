# The flow-run image: prefab-mlops and its dependencies, what the `prefab-docker`
# work pool runs (prefect.docker.yaml builds it with prefect-docker's
# build_docker_image step). Build from the repository root:
#
#   docker build -f docker/flow.Dockerfile -t prefab-mlops-flow .
#   docker build -f docker/flow.Dockerfile --build-arg BASE_IMAGE=local/python:3.11-slim .
#
# * Base image: a build argument, the official python:3.11-slim by default. Where no
#   registry is reachable, scripts/local-engine.sh makes local/python:3.11-slim.
#   (An empty BASE_IMAGE, as prefect.docker.yaml passes when $PREFAB_BASE_IMAGE is
#   unset, also means python:3.11-slim.)
# * No package index needed: if docker/wheelhouse/ holds wheels (scripts/wheelhouse.sh
#   fills it with `pip download` on the host), pip installs from them with
#   --no-index; if it holds none, pip uses the index as usual.
# * Small: dependencies are installed in a build stage and only the venv is copied
#   into the final stage (no wheelhouse, no pip cache, no build tools in the image).
#   Bytecode is compiled only for the modules a flow run imports (warm-up imports
#   in the build): about 3 s less per container start than none, for a few
#   tens of MB, where `compileall` of everything would add about 400 MB.
#   On Linux, pyproject.toml depends on `xgboost-cpu` rather than `xgboost`: the same
#   library and import name, a 5.6 MB wheel, but without the `nvidia-nccl-cu12`
#   dependency that the `xgboost` wheel pulls in (about 470 MB installed, useless
#   without a GPU). Never install both. For a GPU image, replace xgboost-cpu by
#   xgboost in the dependencies and start from a CUDA base image.
# * Non-root: runs as uid/gid 10001 (`prefab`). HOME (/home/prefab) is writable by
#   any uid, so `docker run --user "$(id -u):$(id -g)"` works too, which is the easy
#   way to write into a bind-mounted project directory you own.
# * Layers: the dependency layer depends only on the dependency list and the wheelhouse;
#   editing the code rebuilds only the small last layers (seconds, not minutes).

ARG BASE_IMAGE=python:3.11-slim

# ------------------------------------------------------------ dependencies
# pyproject.toml's [project] dependencies as a requirements file. Copied into the
# next stage by content, so editing anything else in pyproject.toml (extras, tool
# settings) does not invalidate the big dependency layer.
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

# The role's extra on top of the shared runtime layer: [pipeline], the Prefect pipeline stack.
FROM deps AS role
COPY --from=requirements /requirements-pipeline.txt /src/requirements-pipeline.txt
RUN set -eu; \
    if ls /wheels/*.whl >/dev/null 2>&1; then idx="--no-index --find-links /wheels"; \
    else idx=""; fi; \
    /opt/prefab/venv/bin/pip install --no-compile $idx -r /src/requirements-pipeline.txt; \
    env -u PYTHONDONTWRITEBYTECODE /opt/prefab/venv/bin/python -c "\
import prefect.cli, prefect.engine, prefect.deployments.steps, prefect_aws, sklearn.metrics, \
hydra, omegaconf, pandera.pandas, matplotlib.pyplot, evidently, wandb" >/dev/null

# ------------------------------------------------------------- the project
# Built into a wheel from the build context (not taken from an index).
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
    HOME=/home/prefab \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
RUN groupadd --gid 10001 prefab \
 && useradd --uid 10001 --gid 10001 --home-dir /home/prefab --create-home \
        --shell /usr/sbin/nologin prefab \
 && chmod 1777 /home/prefab \
 && install -d -o 10001 -g 10001 /opt/prefab/app
# Two layers: the dependencies (about 1 GB, rebuilt only when the dependency list or the
# wheelhouse change) and the project (a few hundred kB, rebuilt on every code change).
COPY --from=role /opt/prefab/venv /opt/prefab/venv
COPY --from=project /dist/ /tmp/dist/
RUN /opt/prefab/venv/bin/pip install --no-deps --no-index --no-compile /tmp/dist/*.whl \
 && rm -rf /tmp/dist \
 && env -u PYTHONDONTWRITEBYTECODE HOME=/tmp/warm python -c \
        "import prefab_mlops.flows.training, prefab_mlops.flows.monitoring, prefab_mlops.flows.batch_inference" \
 && rm -rf /tmp/warm
# The project's default config, found as ./conf from the working directory. A
# mounted project takes over with PREFAB_CONFIG_DIR=/its/conf (prefect.docker.yaml
# sets it and makes the project directory the working directory).
COPY conf/ /opt/prefab/app/conf/
WORKDIR /opt/prefab/app
USER 10001:10001
# The docker worker replaces the command with `prefect flow-run execute`; run by hand,
# the image trains with the baked-in config:  docker run --rm prefab-mlops-flow
CMD ["python", "-m", "prefab_mlops.flows.training"]
