#!/usr/bin/env bash
# A Docker-compatible container engine for machines without Docker: rootful Podman
# from Debian's packages, serving the Docker API on a unix socket, with locally made
# base images (no container registry is contacted, ever).
#
#   eval "$(sudo scripts/local-engine.sh up)"     # prints: export DOCKER_HOST=unix://...
#   scripts/local-engine.sh status
#   scripts/local-engine.sh env                    # the export line again (if up)
#   scripts/local-engine.sh down                   # stops what `up` started; keeps images
#   scripts/local-engine.sh purge                  # down + delete the state dir (images too)
#
# `up` is idempotent; each step is skipped when its result is already there:
#   1. apt-get install podman runc debootstrap (only the missing ones)
#   2. its own containers.conf / storage.conf under the state dir (nothing under /etc
#      is changed; other Podman users of the machine are not affected)
#   3. debootstrap a minbase bookworm rootfs from the Debian mirror in apt's sources
#      and import it as local/debian:bookworm
#   4. build local/python:3.11-slim from it (Debian's python3.11 in a venv on PATH,
#      `python` and `pip` like the official image)
#   5. start `podman system service` on $STATE/podman.sock in the background
#
# Only the export line goes to stdout; progress goes to stderr.
# Needs root and a Debian-like host. State dir: $PREFAB_ENGINE_DIR (default
# /var/tmp/prefab-engine). Why runc and the ulimits: crun refuses hybrid cgroups
# ("cgroups in hybrid mode not supported") and the default container rlimits cannot
# be raised in some sandboxes ("setrlimit RLIMIT_NOFILE: Operation not permitted").
set -euo pipefail

STATE=${PREFAB_ENGINE_DIR:-/var/tmp/prefab-engine}
SOCK=$STATE/podman.sock
PIDFILE=$STATE/service.pid
DEBIAN_IMAGE=local/debian:bookworm
PYTHON_IMAGE=${PREFAB_BASE_IMAGE:-local/python:3.11-slim}
SUITE=bookworm
export CONTAINERS_CONF=$STATE/containers.conf
export CONTAINERS_STORAGE_CONF=$STATE/storage.conf

log() { printf '[local-engine] %s\n' "$*" >&2; }
die() { printf '[local-engine] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

need_root() {
    [ "$(id -u)" = 0 ] || die "needs root (rootful Podman, apt-get, debootstrap); run it with sudo"
}

# ------------------------------------------------------------------ 1. packages
install_packages() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || [ -x /usr/sbin/runc ] || missing+=(runc)
    command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "no apt-get: install ${missing[*]} yourself (Debian-like hosts only)"
    log "installing ${missing[*]} with apt-get"
    local t0; t0=$(now)
    export DEBIAN_FRONTEND=noninteractive
    # Try with the current package lists first; refresh them only if that fails. Wait for
    # the dpkg lock: .ci/run installs Chromium at the same time.
    if ! apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >"$STATE/apt.log" 2>&1; then
        apt-get update -q -o DPkg::Lock::Timeout=300 >>"$STATE/apt.log" 2>&1 || true
        apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >>"$STATE/apt.log" 2>&1 \
            || { tail -20 "$STATE/apt.log" >&2; die "apt-get install ${missing[*]} failed (log: $STATE/apt.log)"; }
    fi
    log "packages installed in $(since "$t0") s"
}

# ------------------------------------------------------------------ 2. config
write_config() {
    mkdir -p "$STATE"/{storage,run,tmp,networks,volumes}
    # Rewritten on every `up` (cheap), so a changed STATE or script takes effect.
    cat >"$CONTAINERS_CONF" <<EOF
# Written by scripts/local-engine.sh; only its podman processes read it.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
volume_path = "$STATE/volumes"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$STATE/events.log"
tmp_dir = "$STATE/tmp"
static_dir = "$STATE/storage/libpod"
volume_path = "$STATE/volumes"

[network]
network_config_dir = "$STATE/networks"
EOF
    cat >"$CONTAINERS_STORAGE_CONF" <<EOF
# Written by scripts/local-engine.sh: an image store of its own.
[storage]
driver = "overlay"
graphroot = "$STATE/storage"
runroot = "$STATE/run"
EOF
}

podman_q() { podman "$@" 2>>"$STATE/podman.log"; }

image_exists() { podman_q image exists "$1"; }

# ------------------------------------------------------------------ 3. debian base
debian_mirror() {
    # The first Debian mirror named in apt's sources (deb822 or one-line format).
    local m=""
    if [ -n "${PREFAB_DEBIAN_MIRROR:-}" ]; then echo "$PREFAB_DEBIAN_MIRROR"; return; fi
    m=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 || true)
    if [ -z "$m" ]; then
        m=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/ && $i !~ /security/) { print $i; exit } }' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -1 || true)
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

make_debian_image() {
    if image_exists "$DEBIAN_IMAGE"; then log "$DEBIAN_IMAGE present"; return 0; fi
    local mirror rootfs t0
    mirror=$(debian_mirror)
    rootfs=$STATE/rootfs-$SUITE
    rm -rf "$rootfs"
    log "debootstrap --variant=minbase $SUITE from $mirror"
    t0=$(now)
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$STATE/debootstrap.log" 2>&1 \
        || { tail -20 "$STATE/debootstrap.log" >&2; die "debootstrap failed (log: $STATE/debootstrap.log)"; }
    # Slim it like the official images: no apt lists, caches, docs or man pages.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
           "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* \
           "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log
    tar -C "$rootfs" -c . | podman_q import --change 'CMD ["/bin/bash"]' - "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$rootfs"
    log "$DEBIAN_IMAGE imported in $(since "$t0") s"
}

# ------------------------------------------------------------------ 4. python base
make_python_image() {
    if image_exists "$PYTHON_IMAGE"; then log "$PYTHON_IMAGE present"; return 0; fi
    local t0 ctx
    t0=$(now)
    ctx=$STATE/python-base
    mkdir -p "$ctx"
    # Like python:3.11-slim: `python`/`pip` on PATH, no caches, UTF-8, unbuffered.
    # Debian's python3.11 lives in /usr/bin; a venv at /usr/local/python makes
    # `pip install` work without --break-system-packages.
    cat >"$ctx/Containerfile" <<'EOF'
FROM local/debian:bookworm
ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends python3.11 python3.11-venv ca-certificates \
 && python3.11 -m venv /usr/local/python \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* \
 && find /usr/lib/python3.11 -name '__pycache__' -prune -exec rm -rf {} + \
 && /usr/local/python/bin/python -m pip --version
ENV PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["python3"]
EOF
    log "building $PYTHON_IMAGE (Debian's python3.11)"
    podman_q build --network host --pull=never -t "$PYTHON_IMAGE" -f "$ctx/Containerfile" "$ctx" \
        >"$STATE/python-base.log" 2>&1 \
        || { tail -20 "$STATE/python-base.log" >&2; die "building $PYTHON_IMAGE failed (log: $STATE/python-base.log)"; }
    log "$PYTHON_IMAGE built in $(since "$t0") s"
}

# Images made by the podman CLI are named localhost/...; names that come through the
# Docker API are normalised to docker.io/.... Tag both so either spelling resolves.
alias_images() {
    local img
    for img in "$DEBIAN_IMAGE" "$PYTHON_IMAGE"; do
        case $img in */*/*) continue ;; esac
        image_exists "docker.io/$img" || podman_q tag "$img" "docker.io/$img"
    done
}

# ------------------------------------------------------------------ 5. service
ping_socket() {
    [ -S "$SOCK" ] || return 1
    if command -v curl >/dev/null; then
        curl -fsS --max-time 3 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1
    else
        python3 - "$SOCK" <<'EOF' >/dev/null 2>&1
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(sys.argv[1])
s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
sys.exit(0 if b" 200 " in s.recv(100) else 1)
EOF
    fi
}

service_pid() {
    local pid
    [ -f "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start_service() {
    if service_pid >/dev/null && ping_socket; then log "API socket up ($SOCK)"; return 0; fi
    [ -f "$PIDFILE" ] && { stop_service || true; }
    rm -f "$SOCK"
    log "starting podman system service on $SOCK"
    # In its own session, with no inherited descriptors but a log file: it outlives
    # this script and never holds the caller's pipes (or this script's lock) open.
    (
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null || true
        done
        exec setsid podman system service --time=0 "unix://$SOCK"
    ) >>"$STATE/service.log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    local i
    for i in $(seq 1 100); do
        ping_socket && { log "API socket up after $((i / 10)).$((i % 10)) s"; return 0; }
        kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
        sleep 0.1
    done
    tail -20 "$STATE/service.log" >&2
    die "podman system service did not come up (log: $STATE/service.log)"
}

stop_service() {
    local pid i
    if pid=$(service_pid); then
        # Containers of this engine first (only those in its own store).
        podman_q stop --all --time 5 >/dev/null || true
        log "stopping podman system service (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE" "$SOCK"
    remove_build_leftovers
}

# Builds through Podman 4.3's Docker API leave buildah "working containers" behind
# (mounted, with their scratch layers: GBs after a few multi-stage builds). Remove
# them while no service runs, so no build is in progress.
remove_build_leftovers() {
    local ids
    ids=$(podman_q ps --all --external --format '{{.ID}} {{.Status}}' \
          | awk '$2 == "Storage" { print $1 }' || true)
    [ -z "$ids" ] && return 0
    log "removing $(echo "$ids" | wc -w) leftover build containers"
    # shellcheck disable=SC2086
    podman_q rm --force $ids >/dev/null || true
}

print_env() { echo "export DOCKER_HOST=unix://$SOCK"; }

# ------------------------------------------------------------------ commands
cmd_up() {
    need_root
    mkdir -p "$STATE"
    local t0; t0=$(now)
    exec 9>"$STATE/.lock"
    flock -w 900 9 || die "another local-engine.sh held $STATE/.lock for 15 min"
    install_packages
    write_config
    make_debian_image
    make_python_image
    alias_images
    start_service
    log "engine ready in $(since "$t0") s; state in $STATE"
    print_env
}

cmd_down() {
    [ -d "$STATE" ] || { log "nothing to stop ($STATE does not exist)"; return 0; }
    command -v podman >/dev/null || { rm -f "$PIDFILE" "$SOCK"; return 0; }
    stop_service
    log "stopped (images kept in $STATE; \`$0 purge\` deletes them)"
}

cmd_purge() {
    need_root
    cmd_down
    if [ -d "$STATE/storage" ] && command -v podman >/dev/null; then
        podman_q system reset --force >/dev/null || true
    fi
    rm -rf "$STATE"
    log "deleted $STATE"
}

cmd_status() {
    echo "state dir:   $STATE"
    echo "podman:      $(command -v podman >/dev/null && podman --version || echo 'not installed')"
    local pid
    if pid=$(service_pid) && ping_socket; then
        echo "service:     running (pid $pid)"
        echo "DOCKER_HOST: unix://$SOCK"
    else
        echo "service:     not running"
    fi
    if command -v podman >/dev/null && [ -f "$CONTAINERS_STORAGE_CONF" ]; then
        echo "images:"
        podman_q images --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' || true
        echo "containers running: $(podman_q ps -q | wc -l)"
    fi
    service_pid >/dev/null && ping_socket
}

cmd_env() { service_pid >/dev/null && ping_socket || die "engine not up; run: $0 up"; print_env; }

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    purge) cmd_purge ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) echo "usage: $0 up|down|status|env|purge   (state dir: $STATE)" >&2; exit 2 ;;
esac
