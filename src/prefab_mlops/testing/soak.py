"""A serving soak: steady load from a separate process while the production alias moves.

Used by ``tests/serve/test_serve_soak.py`` (20 s) and ``bench/serving.py``
(``BENCH_MODE=soak``, minutes). The pieces:

* the load generator, ``python -m prefab_mlops.testing.soak`` (:func:`main`): a
  separate process that sends real ``POST /predict`` requests with httpx over
  loopback from ``--concurrency`` connections, each reopened every
  ``--reconnect-every`` requests so that the kernel spreads them over the workers.
  It stops after ``--seconds`` or ``--max-requests``, whichever comes first, and
  prints one JSON object (:class:`LoadReport` fields);
* :class:`AliasMover`: a thread that moves the alias back and forth (a promotion of
  the other version, then a rollback) every ``interval`` seconds and remembers every
  version that was production;
* :class:`RssSampler`: a thread that sums the resident memory (``VmRSS``) of the
  server's worker processes from ``/proc`` once a second, after a warm-up.

Nothing here imports the server: it is driven over HTTP and observed through ``/proc``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# ------------------------------------------------------------------ load generator


@dataclass
class LoadReport:
    """What the load generator saw.

    Attributes:
        requests: Requests sent (answered or not).
        failed: Requests that did not answer 200 with one prediction per row sent
            (other statuses, malformed answers, connection errors).
        statuses: Answers by HTTP status (``"error"``: no answer).
        versions: 200 answers by the model version they name.
        failures: The first few failures, described.
        first_answers: ``"<payload>:<version>"`` -> the first probabilities answered for
            that payload by that version (a caller checks them against the model).
        inconsistent: 200 answers whose probabilities differ from the first answer of
            the same payload and version.
        seconds: How long the load ran.
    """

    requests: int = 0
    failed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    first_answers: dict[str, Any] = field(default_factory=dict)
    inconsistent: int = 0
    seconds: float = 0.0

    def fail(self, what: str) -> None:
        self.failed += 1
        if len(self.failures) < 10:
            self.failures.append(what[:500])


async def _connection(url: str, payloads: list[bytes], rows: list[int], offset: int,
                      deadline: float, budget: list[int], reconnect_every: int,
                      report: LoadReport) -> None:
    import httpx

    i = offset
    headers = {"content-type": "application/json"}
    while time.monotonic() < deadline and budget[0] > 0:
        async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
            for _ in range(reconnect_every):
                if time.monotonic() >= deadline or budget[0] <= 0:
                    return
                budget[0] -= 1
                k = i % len(payloads)
                i += 1
                report.requests += 1
                try:
                    r = await client.post("/predict", content=payloads[k], headers=headers)
                except httpx.HTTPError as exc:
                    report.statuses["error"] = report.statuses.get("error", 0) + 1
                    report.fail(f"payload {k}: {type(exc).__name__}: {exc}")
                    break  # a fresh connection
                report.statuses[str(r.status_code)] = report.statuses.get(
                    str(r.status_code), 0) + 1
                if r.status_code != 200:
                    report.fail(f"payload {k}: {r.status_code} {r.text[:300]}")
                    continue
                try:
                    body = r.json()
                    version = int(body["version"])
                    ok = len(body["predictions"]) == rows[k]
                except (ValueError, KeyError, TypeError) as exc:
                    report.fail(f"payload {k}: malformed answer ({exc}): {r.text[:300]}")
                    continue
                if not ok:
                    report.fail(f"payload {k}: {len(body['predictions'])} predictions for "
                                f"{rows[k]} rows")
                    continue
                report.versions[str(version)] = report.versions.get(str(version), 0) + 1
                key = f"{k}:{version}"
                got = body.get("probabilities")
                first = report.first_answers.setdefault(key, got)
                if not _close(first, got):
                    report.inconsistent += 1


def _close(a: Any, b: Any, tol: float = 1e-7) -> bool:
    """Nested lists of numbers equal within ``tol`` (exactly equal otherwise)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | int) and isinstance(b, float | int):
        return abs(a - b) <= tol
    return a == b


async def _load(url: str, payloads: list[bytes], rows: list[int], seconds: float,
                max_requests: int, concurrency: int, reconnect_every: int) -> LoadReport:
    report = LoadReport()
    start = time.monotonic()
    budget = [max_requests]
    await asyncio.gather(*(
        _connection(url, payloads, rows, k * 7, start + seconds, budget, reconnect_every,
                    report) for k in range(concurrency)))
    report.seconds = round(time.monotonic() - start, 2)
    return report


def main(argv: list[str] | None = None) -> int:
    """The load generator's entry point (a process of its own); prints a JSON report."""
    p = argparse.ArgumentParser(prog="python -m prefab_mlops.testing.soak",
                                description="Send POST /predict requests for a bounded time.")
    p.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--payloads", required=True,
                   help="JSON file: a list of request bodies, each a list of records")
    p.add_argument("--seconds", type=float, required=True, help="how long to send (> 0)")
    p.add_argument("--max-requests", type=int, default=1_000_000,
                   help="stop after this many requests (default 1000000)")
    p.add_argument("--concurrency", type=int, default=4, help="connections at a time (1-256)")
    p.add_argument("--reconnect-every", type=int, default=100,
                   help="requests per connection before it is reopened (default 100)")
    args = p.parse_args(argv)
    if not (0 < args.seconds <= 86_400 and 1 <= args.concurrency <= 256
            and args.max_requests >= 1 and args.reconnect_every >= 1):
        p.error("--seconds must be in (0, 86400], --concurrency in 1-256, --max-requests "
                "and --reconnect-every at least 1")
    bodies = json.loads(Path(args.payloads).read_text())
    payloads = [json.dumps(b).encode() for b in bodies]
    rows = [len(b) for b in bodies]
    report = asyncio.run(_load(args.url, payloads, rows, args.seconds, args.max_requests,
                               args.concurrency, args.reconnect_every))
    print(json.dumps(asdict(report)))
    return 0


class LoadProcess:
    """The load generator as a subprocess (``python -m prefab_mlops.testing.soak``).

    Args:
        url: Server base URL.
        payloads: Request bodies, each a list of records.
        workdir: Where the payload file and the generator's stderr go.
        seconds, max_requests, concurrency, reconnect_every: See :func:`main`.
    """

    def __init__(self, url: str, payloads: list[list[dict[str, Any]]], workdir: Path,
                 seconds: float, max_requests: int, concurrency: int = 4,
                 reconnect_every: int = 100) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.payload_file = workdir / "soak-payloads.json"
        self.payload_file.write_text(json.dumps(payloads))
        self.stderr_file = workdir / "soak-load.err"
        self.seconds = seconds
        self.cmd = [sys.executable, "-m", "prefab_mlops.testing.soak", "--url", url,
                    "--payloads", str(self.payload_file), "--seconds", str(seconds),
                    "--max-requests", str(max_requests), "--concurrency", str(concurrency),
                    "--reconnect-every", str(reconnect_every)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LoadProcess:
        with open(self.stderr_file, "wb") as err:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=err,
                                         stdin=subprocess.DEVNULL)
        return self

    def wait(self, grace: float = 120.0) -> LoadReport:
        """Wait for the generator (its own deadline plus ``grace``) and read its report."""
        assert self.proc is not None
        try:
            out, _ = self.proc.communicate(timeout=self.seconds + grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        if self.proc.returncode != 0:
            raise RuntimeError(f"the load generator exited with {self.proc.returncode}:\n"
                               f"{self.stderr_file.read_text(errors='replace')[-3000:]}")
        return LoadReport(**json.loads(out.decode().strip().splitlines()[-1]))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# ------------------------------------------------------------------ alias moves


class AliasMover(threading.Thread):
    """Moves a registry alias between two versions every ``interval`` seconds.

    Each round promotes the version the alias does not point at (``set_alias``), and
    the next one moves it back with ``rollback``, as ``make rollback`` does.

    Args:
        registry: A :class:`~prefab_mlops.core.registry.ModelRegistry` (the served one).
        model: Registered model name.
        versions: The two versions to alternate; the alias must point at one of them.
        interval: Seconds between moves.
        alias: The alias (``production``).
    """

    def __init__(self, registry: Any, model: str, versions: tuple[int, int],
                 interval: float, alias: str = "production") -> None:
        super().__init__(name="alias-mover", daemon=True)
        self.registry = registry
        self.model = model
        self.versions = versions
        self.interval = interval
        self.alias = alias
        self.moves: list[dict[str, Any]] = []
        self.errors: list[str] = []
        state = registry.alias(model, alias)
        if state is None or state.version not in versions:
            raise ValueError(f"'{alias}' of '{model}' must point at one of {versions} "
                             f"before the soak; it is {state}")
        self.production = {state.version}  # every version that was production
        self._halt = threading.Event()

    def run(self) -> None:
        promote = True
        while not self._halt.wait(self.interval):
            try:
                current = self.registry.alias(self.model, self.alias).version
                if promote:
                    other = self.versions[1] if current == self.versions[0] else self.versions[0]
                    self.production.add(other)  # before the move: answers may follow at once
                    state = self.registry.set_alias(self.model, self.alias, other,
                                                    reason="serving soak: promote")
                    kind = "promote"
                else:
                    target = self.registry.alias(self.model, self.alias).history[-1]
                    self.production.add(target)
                    state = self.registry.rollback(self.model, self.alias,
                                                   reason="serving soak: rollback")
                    kind = "rollback"
                self.moves.append({"kind": kind, "version": state.version,
                                   "at": round(time.monotonic(), 3)})
            except Exception as exc:  # noqa: BLE001 - reported to the caller, not lost
                self.errors.append(f"{type(exc).__name__}: {exc}")
            promote = not promote

    def stop(self) -> None:
        self._halt.set()
        if self.ident is not None:  # started
            self.join(30)


# ------------------------------------------------------------------ memory


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's), from ``/proc``."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return sorted(set(out))


def worker_pids(supervisor: int) -> list[int]:
    """The server's worker processes: the supervisor's children that run a worker.

    multiprocessing's ``resource_tracker`` (also a child with the spawn start method)
    is not a worker.
    """
    pids = []
    for pid in children(supervisor):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except FileNotFoundError:
            continue
        if b"resource_tracker" not in cmdline:
            pids.append(pid)
    return pids


def rss_mb(pids: list[int]) -> float:
    """Sum of ``VmRSS`` of ``pids`` in MB (1,048,576 bytes)."""
    total_kb = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
                break
    return total_kb / 1024


class RssSampler(threading.Thread):
    """Samples the summed RSS of a server's workers every ``interval`` s after ``warmup`` s.

    Args:
        supervisor: PID of the server's supervisor process (``--workers`` > 1).
        warmup: Seconds to wait before the first sample.
        interval: Seconds between samples.
    """

    def __init__(self, supervisor: int, warmup: float, interval: float = 1.0) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.supervisor = supervisor
        self.warmup = warmup
        self.interval = interval
        self.samples: list[float] = []
        self.pids: set[tuple[int, ...]] = set()
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        if self._halt.wait(self.warmup):
            return
        while True:
            try:
                pids = tuple(worker_pids(self.supervisor))
                self.pids.add(pids)
                self.samples.append(round(rss_mb(list(pids)), 2))
            except (OSError, ValueError) as exc:  # a worker gone: reported, not hidden
                self.errors.append(f"{type(exc).__name__}: {exc}")
            if self._halt.wait(self.interval):
                return

    def stop(self) -> None:
        self._halt.set()
        if self.ident is not None:  # started
            self.join(30)

    def summary(self) -> dict[str, Any]:
        """``growth_mb``: median of the last 3 samples minus median of the first 3.

        Medians of three keep one sample taken while a model was being loaded (both
        versions briefly resident) from counting as growth; ``peak_mb`` shows it.
        ``trend_mb_per_min`` is the least-squares slope over every sample: with two
        versions of different sizes taking turns, RSS steps up and down by a few MB
        and the end points alone depend on which one is loaded.
        """
        s = self.samples
        if len(s) < 6:
            return {"samples": len(s), "growth_mb": None, "all_mb": s}
        start, end = statistics.median(s[:3]), statistics.median(s[-3:])
        slope = statistics.linear_regression(range(len(s)), s).slope / self.interval
        return {"samples": len(s), "start_mb": round(start, 1), "end_mb": round(end, 1),
                "min_mb": round(min(s), 1), "peak_mb": round(max(s), 1),
                "growth_mb": round(end - start, 1), "trend_mb_per_min": round(slope * 60, 2),
                "worker_pid_sets": len(self.pids), "all_mb": s}


if __name__ == "__main__":
    sys.exit(main())
