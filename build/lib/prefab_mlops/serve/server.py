"""Run the app under uvicorn: one process, or several workers sharing the port.

Several workers use ``SO_REUSEPORT``: each worker process binds its own listening
socket to the same port and the kernel spreads new connections over them, so
both cores serve (a shared accept socket lets one busy worker take most
keep-alive connections). A worker listens only after its model is loaded.

Every accepted connection gets ``TCP_NODELAY``: with Nagle's algorithm on, a
response written in two pieces waits for the client's delayed ACK (~40-50 ms
per keep-alive request).

The supervisor (:func:`run`) starts the workers, restarts one that dies, and
stops them all on SIGINT/SIGTERM. With several workers, Prometheus metrics use
prometheus-client's multiprocess mode in a temporary directory.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any

from prefab_mlops.serve.errors import ServeError
from prefab_mlops.serve.metrics import MULTIPROC_ENV
from prefab_mlops.serve.settings import SETTINGS_ENV, ServeSettings

log = logging.getLogger("prefab_mlops.serve")

_RESTART_LIMIT = 5  # worker deaths within _RESTART_WINDOW_S before the server gives up
_RESTART_WINDOW_S = 60.0
_STOP_TIMEOUT_S = 15.0


def _nodelay_protocol() -> type:
    """uvicorn's httptools protocol with TCP_NODELAY on every connection."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class NoDelayHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:  # not TCP (a unix socket)
                    pass
            super().connection_made(transport)

    return NoDelayHttpToolsProtocol


def bind_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (IPv4 or IPv6)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"Cannot listen on {host}:{port}: {exc.strerror}.",
                         fix="Pick a free port with --port, or stop what uses this one.") from None
    sock.set_inheritable(True)
    return sock


def _setup_logging(level: str) -> None:
    logger = logging.getLogger("prefab_mlops.serve")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this worker if the supervisor dies (even SIGKILLed)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_worker(settings_json: str, index: int, supervised: bool = False) -> None:
    """One worker process: bind, build the app, serve until told to stop."""
    if supervised:
        _die_with_parent()
    import uvicorn

    from prefab_mlops.serve.app import create_app

    settings = ServeSettings.from_json(settings_json)
    _setup_logging(settings.log_level)
    sock = bind_socket(settings.host, settings.port, reuse_port=settings.workers > 1)
    app = create_app(settings, worker=f"w{index}")
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, loop="uvloop",
        http=_nodelay_protocol(), lifespan="on", access_log=False,
        log_level=settings.log_level.lower(), server_header=False, backlog=2048,
        timeout_keep_alive=30, timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])


def _port_free(host: str, port: int) -> None:
    """Fail early if anything (a stale server included) holds the port."""
    bind_socket(host, port, reuse_port=False).close()


def run(settings: ServeSettings) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code.

    Raises:
        ServeError: the port is taken, or workers keep dying.
    """
    _setup_logging(settings.log_level)
    if settings.storage is None and not os.path.isdir(settings.registry):
        log.warning("registry directory %s does not exist yet; the server stays not ready "
                    "until a model is promoted there", settings.registry)
    _port_free(settings.host, settings.port)
    if settings.workers == 1:
        run_worker(settings.to_json(), 0)
        return 0
    return _supervise(settings)


def _supervise(settings: ServeSettings) -> int:
    own_dir = None
    metrics_dir = os.environ.get(MULTIPROC_ENV)
    if metrics_dir:
        os.makedirs(metrics_dir, exist_ok=True)
        for name in os.listdir(metrics_dir):  # stale files would add old counts
            if name.endswith(".db"):
                os.unlink(os.path.join(metrics_dir, name))
    else:
        metrics_dir = own_dir = tempfile.mkdtemp(prefix="prefab-serve-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    os.environ[SETTINGS_ENV] = settings.to_json()
    # one scoring thread per worker: the workers are the parallelism
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    ctx = multiprocessing.get_context("spawn")
    procs: dict[int, Any] = {}
    deaths: list[float] = []
    stopping = False

    def start(index: int) -> None:
        p = ctx.Process(target=run_worker, args=(settings.to_json(), index, True),
                        name=f"prefab-serve-w{index}", daemon=False)
        p.start()
        procs[index] = p
        log.info("started worker w%s (pid %s)", index, p.pid)

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        log.info("serving %s '%s' on http://%s:%s with %s workers", settings.model,
                 settings.alias, settings.host, settings.port, settings.workers)
        for i in range(settings.workers):
            start(i)
        while not stopping:
            time.sleep(0.2)
            for i, p in list(procs.items()):
                if p.is_alive() or stopping:
                    continue
                _mark_dead(p.pid, metrics_dir)
                now = time.monotonic()
                deaths[:] = [t for t in deaths if now - t < _RESTART_WINDOW_S] + [now]
                if len(deaths) > _RESTART_LIMIT:
                    log.error("workers died %s times in %ss (last exit code %s); stopping",
                              len(deaths), int(_RESTART_WINDOW_S), p.exitcode)
                    stopping = True
                    code = 1
                    break
                log.warning("worker w%s (pid %s) exited with %s; restarting", i, p.pid,
                            p.exitcode)
                start(i)
    finally:
        for p in procs.values():
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for p in procs.values():
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(5)
        for s, handler in old.items():
            signal.signal(s, handler)
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
    return code


def _mark_dead(pid: int | None, path: str) -> None:
    if pid is None:
        return
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)
    except Exception:  # noqa: BLE001 - metrics cleanup must not stop a restart
        pass
