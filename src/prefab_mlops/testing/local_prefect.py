"""Start and stop a real Prefect server and process worker on loopback.

Used by the integration tests and the benchmarks (never by library code)::

    with PrefectServer(tmp / "home") as server:
        env = server.client_env(tmp / "client-home")
        with ProcessWorker("prefab-process", env, cwd=REPO):
            ...
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prefect() -> str:
    return str(BIN / "prefect") if (BIN / "prefect").exists() else (shutil.which("prefect")
                                                                     or "prefect")


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), DO_NOT_TRACK="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_TELEMETRY_ENABLED="false",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return env


def stop_group(proc: subprocess.Popen[bytes] | None,
               steps: tuple[tuple[int, float], ...] = ((signal.SIGINT, 20), (signal.SIGKILL, 10))
               ) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it spawned.

    Sends each signal of ``steps`` in turn to the whole process group, waiting up to
    the given seconds after each, until the process has exited.
    """
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in steps:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_final(client: Any, flow_run_id: Any, timeout: float = 300,
               poll: float = 0.5) -> Any:
    """Poll a flow run through a sync Prefect client until its state is final."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fr = client.read_flow_run(flow_run_id)
        if fr.state and fr.state.is_final():
            return fr
        time.sleep(poll)
    raise TimeoutError(f"flow run {flow_run_id} not finished after {timeout}s")


class PrefectServer:
    """``prefect server start`` on a free loopback port with its own PREFECT_HOME (SQLite).

    Its UI is at ``ui_url`` and talks to this server's API.
    """

    def __init__(self, home: Path, port: int | None = None, startup_timeout: float = 90) -> None:
        self.home = Path(home)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.ui_url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s = 0.0
        self.log = self.home / "server.log"

    def __enter__(self) -> PrefectServer:
        return self.start()

    def start(self) -> PrefectServer:
        """Start the server and wait until ``/api/health`` answers (``startup_s``)."""
        self.home.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        env = base_env(self.home)
        # the bundled UI calls 127.0.0.1:4200 unless told where its API is
        env["PREFECT_SERVER_UI_API_URL"] = self.url
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(
                [_prefect(), "server", "start", "--host", "127.0.0.1", "--port",
                 str(self.port)], env=env, stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        self.startup_s = time.perf_counter() - start
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"prefect server not healthy after {self.startup_timeout}s")

    def client_env(self, home: Path, **extra: str) -> dict[str, str]:
        """Environment for CLI/SDK clients and workers of this server (own PREFECT_HOME)."""
        Path(home).mkdir(parents=True, exist_ok=True)
        env = base_env(Path(home))
        env["PREFECT_API_URL"] = self.url
        env.update(extra)
        return env

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the server's whole process group (SIGINT, then SIGKILL)."""
        stop_group(self.proc)

    def _group_stats(self) -> Iterator[tuple[list[str], Path]]:
        """``/proc/<pid>/stat`` fields (after the name) of every process in its group."""
        if not self.proc or self.proc.poll() is not None:
            return
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == self.proc.pid:  # pgrp
                    yield fields, stat.parent
            except (OSError, IndexError, ValueError):
                continue

    def cpu_s(self) -> float | None:
        """User + system CPU seconds its process group has used (None if not running)."""
        if not self.proc or self.proc.poll() is not None:
            return None
        ticks = sum(int(f[11]) + int(f[12]) for f, _ in self._group_stats())  # utime, stime
        return round(ticks / os.sysconf("SC_CLK_TCK"), 2)

    def peak_rss_mb(self) -> float | None:
        """Sum of VmHWM (peak RSS) over its process group (None if not running)."""
        if not self.proc or self.proc.poll() is not None:
            return None
        total = 0
        for _, proc_dir in self._group_stats():
            try:
                for line in (proc_dir / "status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            except (OSError, IndexError, ValueError):
                continue
        return round(total / 1024, 1)


class ProcessWorker:
    """``prefect worker start --pool POOL`` with a short poll interval."""

    def __init__(self, pool: str, env: dict[str, str], cwd: Path, log: Path,
                 query_seconds: float = 1.0, worker_type: str | None = None) -> None:
        self.pool, self.env, self.cwd, self.log = pool, dict(env), cwd, log
        self.env["PREFECT_WORKER_QUERY_SECONDS"] = str(query_seconds)
        self.env["PREFECT_WORKER_PREFETCH_SECONDS"] = "5"
        self.worker_type = worker_type
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ProcessWorker:
        cmd = [_prefect(), "worker", "start", "--pool", self.pool]
        if self.worker_type:
            cmd += ["--type", self.worker_type]
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=self.cwd, stdout=fh,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        stop_group(self.proc, ((signal.SIGINT, 25), (signal.SIGKILL, 10)))


def prefect_cli(args: list[str], env: dict[str, str], cwd: Path,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the ``prefect`` CLI; raise with its output if it fails."""
    res = subprocess.run([_prefect(), *args], env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)} failed ({res.returncode}):\n"
                           f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res
