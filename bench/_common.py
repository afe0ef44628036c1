"""What the benchmarks share: progress lines, machine load, quiet waits, child processes.

The machine may be shared. A run that starts while something else saturates its
cores measures the contention, so every benchmark waits for a quiet machine first
and reports how much CPU other processes took meanwhile.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def log(msg: str, name: str = "bench") -> None:
    print(f"[{name} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def tail(path: Path, n: int = 40) -> str:
    """The last ``n`` lines of a log file ("" if unreadable)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (all cores), from /proc/stat."""
    try:
        f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f[:8])
    except (OSError, ValueError):
        return 0.0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's waited-for children."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def busy_cores(window: float = 1.0, exclude: Callable[[], float] | None = None) -> float:
    """Cores' worth of CPU the machine used during ``window`` seconds.

    ``exclude`` returns CPU seconds of something of ours (e.g. a server's process
    group) that is not counted as load.
    """
    b0, x0 = machine_busy_s(), exclude() if exclude else 0.0
    time.sleep(window)
    used = machine_busy_s() - b0 - ((exclude() if exclude else 0.0) - x0)
    return round(used / window, 2)


def wait_quiet(max_wait: float, busy_max: float = 0.35, window: float = 1.0,
               exclude: Callable[[], float] | None = None) -> tuple[float, float]:
    """Wait (at most ``max_wait`` s) until other processes use < ``busy_max`` cores.

    Measures at least once. Returns the seconds waited and the last load seen (cores).
    """
    t0 = time.perf_counter()
    load = busy_cores(window, exclude)
    while load >= busy_max and time.perf_counter() - t0 < max_wait:
        load = busy_cores(window, exclude)
    return round(time.perf_counter() - t0, 1), load


def kill(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate a child that is still running, then kill it if it does not exit."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def timestamp(x: Any) -> float:
    """POSIX seconds of a datetime, or of its ISO string (as the Prefect API gives)."""
    return x.timestamp() if isinstance(x, dt.datetime) else dt.datetime.fromisoformat(
        str(x)).timestamp()


def package_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None
