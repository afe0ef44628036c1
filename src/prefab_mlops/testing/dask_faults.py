"""Kill a Dask worker while it runs a chosen task, for worker-loss tests (needs ``[dask]``).

A worker plugin marks each task a worker starts executing with a file named after the
worker's pid (the task's key inside), written by the worker itself; the killer reads
those files and sends SIGKILL to the first worker seen running a matching task. No
polling of the scheduler (its comms reset under load) and no guessing from CPU use (a
short task ends between two samples): the worker says what it runs, and dies running it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client
from distributed.diagnostics.plugin import WorkerPlugin


class ExecutingMarker(WorkerPlugin):
    """Write ``<directory>/<pid>`` holding a task's key when this worker starts it."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def transition(self, key: Any, start: str, finish: str, *args: Any,
                   **kwargs: Any) -> None:
        if finish == "executing":
            path = Path(self.directory) / str(os.getpid())
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(str(key))
            os.replace(tmp, path)


@dataclass
class WorkerKiller:
    """Where the markers go, and what the killer did."""

    directory: Path
    key_part: str
    killed: list[int] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def watch(self, timeout: float) -> None:
        """SIGKILL the first worker found executing a task whose key holds ``key_part``."""
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not self.stop.is_set():
                for marker in self.directory.glob("[0-9]*"):
                    with contextlib.suppress(FileNotFoundError):
                        if self.key_part in marker.read_text():
                            os.kill(int(marker.name), signal.SIGKILL)
                            self.killed.append(int(marker.name))
                            return
                time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)


@contextlib.contextmanager
def executing_markers(scheduler_address: str, directory: Path) -> Iterator[Path]:
    """While the block runs, each worker of the cluster at ``scheduler_address`` writes
    ``directory/<pid>`` with the key of the task it starts; the plugin is removed
    afterwards. Tells which cluster ran a task, and which worker."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"prefab-executing-marker-{uuid.uuid4().hex[:8]}"
    with Client(scheduler_address, timeout=30, set_as_default=False) as client:
        client.register_plugin(ExecutingMarker(str(directory)), name=name)
    try:
        yield directory
    finally:
        with contextlib.suppress(Exception), \
                Client(scheduler_address, timeout=30, set_as_default=False) as client:
            client.unregister_worker_plugin(name)


@contextlib.contextmanager
def kill_a_worker_running(scheduler_address: str, key_part: str, directory: Path,
                          timeout: float = 300) -> Iterator[WorkerKiller]:
    """While the block runs, kill the first worker of the cluster at ``scheduler_address``
    that starts a task whose Dask key contains ``key_part`` (a Prefect task's function
    name, e.g. ``run_trial``). The plugin is removed afterwards."""
    killer = WorkerKiller(directory, key_part)
    with executing_markers(scheduler_address, directory):
        thread = threading.Thread(target=killer.watch, args=(timeout,), daemon=True)
        thread.start()
        try:
            yield killer
        finally:
            killer.stop.set()
            thread.join(5)
