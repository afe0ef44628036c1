#!/usr/bin/env bash
# Build the flow-run image (docker/flow.Dockerfile) and, if present, the serving image
# (docker/serve.Dockerfile), with no registry and no package index inside the builds.
#
#   scripts/build-images.sh              # tags prefab-mlops-flow:dev, prefab-serve:dev
#   TAG=1.2 scripts/build-images.sh
#
# Engine: $DOCKER_HOST, else the local engine's socket if scripts/local-engine.sh is
# up, else Docker's default. Base image: $BASE_IMAGE, else local/python:3.11-slim if
# the engine has it (the local engine makes it), else python:3.11-slim.
# Python packages: docker/wheelhouse/ (scripts/wheelhouse.sh, cached), which both
# Dockerfiles copy; they share their dependency stages, so the second build reuses the
# first one's dependency layer. Needs the docker CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${TAG:-dev}
if [ -z "${DOCKER_HOST:-}" ]; then
    if line=$(bash scripts/local-engine.sh env 2>/dev/null); then eval "$line"; fi
fi
export DOCKER_HOST=${DOCKER_HOST:-}
[ -n "$DOCKER_HOST" ] || unset DOCKER_HOST
command -v docker >/dev/null || { echo "build-images: needs the docker CLI" >&2; exit 1; }
docker version >/dev/null 2>&1 || {
    echo "build-images: no engine answers (DOCKER_HOST=${DOCKER_HOST:-unset}); try: make engine-up" >&2
    exit 1
}
if [ -z "${BASE_IMAGE:-}" ]; then
    if docker image inspect local/python:3.11-slim >/dev/null 2>&1; then
        BASE_IMAGE=local/python:3.11-slim
    else
        BASE_IMAGE=python:3.11-slim
    fi
fi

bash scripts/wheelhouse.sh

size() { docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.0f MB", $1 / 1e6 }'; }

t0=$(date +%s)
docker build --pull=false -f docker/flow.Dockerfile --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -t "prefab-mlops-flow:$TAG" .
echo "prefab-mlops-flow:$TAG  $(size "prefab-mlops-flow:$TAG")  built in $(( $(date +%s) - t0 )) s" >&2

if [ -f docker/serve.Dockerfile ]; then
    t0=$(date +%s)
    docker build --pull=false -f docker/serve.Dockerfile --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        -t "prefab-serve:$TAG" .
    echo "prefab-serve:$TAG  $(size "prefab-serve:$TAG")  built in $(( $(date +%s) - t0 )) s" >&2
fi
