"""Kill registry writers and check what they leave: the crash harness of the registry.

Used by ``tests/core/test_registry_crash.py`` (a handful of trials) and
``bench/reliability.py`` (hundreds). The pieces:

* the writer, ``python -m prefab_mlops.testing.registry_crash`` (:func:`main`): a
  separate process that does what training and promotion do, in a loop: look the
  lineage up (which catches the lineage index up), register a version with a model
  file and the files a training run adds, promote it with a compare-and-set, and
  every third round roll production back. It prints ``ready`` once it is set up.
* where it dies: at a random time (the parent sends SIGKILL, see
  :func:`kill_at_random`), or at a named step (:data:`STEPS`): with
  ``PREFAB_CRASH_AT=<step>`` in its environment, its store (:class:`CrashingStore`)
  SIGKILLs the writer before, during or after one write of the registry;
* :func:`inspect_after_kill`: what the parent checks after each kill, with
  ``registry check`` and ``--repair`` (grace 0: no writer is running then);
* :func:`register_concurrently`: eight training-like registrations in eight
  processes at once.

Everything goes through the real stores: a local directory, or S3 (a moto server).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import multiprocessing
import os
import queue
import random
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefab_mlops.core.errors import AliasMovedError, RegistryError
from prefab_mlops.core.manifest import DataRecord, GateRecord, ModelVersion
from prefab_mlops.core.registry import PRODUCTION_ALIAS, ModelRegistry
from prefab_mlops.core.registry_check import (
    Problem,
    ProblemKind,
    Repair,
    check_registry,
    repair_registry,
)
from prefab_mlops.core.storage import (
    LocalObjectStore,
    ObjectStore,
    S3Config,
    S3ObjectStore,
    StoredObject,
)

MODEL = "crash-model"
#: The environment variable naming the step (a key of :data:`STEPS`) a writer dies at.
ENV_DIE_AT = "PREFAB_CRASH_AT"
# What a kill may leave behind: repair removes it, and nothing else may be wrong.
LEFTOVERS = frozenset({ProblemKind.ORPHAN_BLOBS, ProblemKind.PARTIAL_WRITE})


# ------------------------------------------------------------------ stores
@dataclass(frozen=True)
class StoreSpec:
    """Where a harness registry lives, passed to child processes as arguments."""

    kind: str  # "local" | "s3"
    root: str = ""  # local directory
    bucket: str = ""
    prefix: str = ""
    endpoint: str = ""

    def open(self) -> ObjectStore:
        if self.kind == "s3":
            return S3ObjectStore(self.bucket, self.prefix, S3Config(endpoint_url=self.endpoint))
        return LocalObjectStore(self.root)

    def argv(self) -> list[str]:
        return ["--store", self.kind, "--root", self.root, "--bucket", self.bucket,
                "--prefix", self.prefix, "--endpoint", self.endpoint]


def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", choices=["local", "s3"], default="local")
    p.add_argument("--root", default="")
    p.add_argument("--bucket", default="")
    p.add_argument("--prefix", default="")
    p.add_argument("--endpoint", default="")


def _spec(ns: argparse.Namespace) -> StoreSpec:
    return StoreSpec(ns.store, ns.root, ns.bucket, ns.prefix, ns.endpoint)


@dataclass(frozen=True)
class CrashPoint:
    """Die at the ``nth`` ``op`` on a key matching ``pattern`` while the writer is in
    ``phase``: ``before`` it, ``during`` it (a local write leaves its partial file;
    on S3 this is ``before``: a PutObject lands whole or not at all) or ``after`` it."""

    phase: str  # register | lineage | promote | rollback
    when: str  # before | during | after
    op: str  # put | put_if_absent | update
    pattern: str
    nth: int = 1


#: Every write of the registry's write paths a writer can be made to die at.
STEPS: dict[str, CrashPoint] = {
    "blob-partial": CrashPoint("register", "during", "put", "*/blobs/*/model.pkl"),
    "blob-written": CrashPoint("register", "after", "put", "*/blobs/*/model.pkl"),
    "files-written": CrashPoint("register", "after", "put", "*/blobs/*/reference.parquet"),
    "manifest-before": CrashPoint("register", "before", "put_if_absent", "*/versions/*"),
    "manifest-written": CrashPoint("register", "after", "put_if_absent", "*/versions/*"),
    "lineage-written": CrashPoint("register", "after", "put_if_absent", "*/lineage/*"),
    "checkpoint-partial": CrashPoint("lineage", "during", "put", "*/lineage/_checkpoint.json"),
    "lookup-indexed": CrashPoint("lineage", "after", "put_if_absent", "*/lineage/*"),
    "promote-before": CrashPoint("promote", "before", "update", "*/aliases/*"),
    "promote-committed": CrashPoint("promote", "after", "update", "*/aliases/*"),
    "promote-event-partial": CrashPoint("promote", "during", "put", "*/events/*"),
    "promote-event-written": CrashPoint("promote", "after", "put", "*/events/*"),
    "rollback-committed": CrashPoint("rollback", "after", "update", "*/aliases/*"),
    "rollback-event-partial": CrashPoint("rollback", "during", "put", "*/events/*"),
}


class CrashingStore:
    """An object store that SIGKILLs its own process at one :class:`CrashPoint`.

    Every call goes to the real store; the writer sets :attr:`phase` to say what
    it is doing.
    """

    def __init__(self, inner: ObjectStore, point: CrashPoint | None) -> None:
        self.inner = inner
        self.point = point
        self.phase = ""
        self._matches = 0

    def _hit(self, op: str, key: str) -> bool:
        p = self.point
        if p is None or p.op != op or p.phase != self.phase:
            return False
        if not fnmatch.fnmatchcase(key, p.pattern):
            return False
        self._matches += 1
        return self._matches == p.nth

    @staticmethod
    def _die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # SIGKILL is not delivered synchronously everywhere

    def _write(self, op: str, key: str, data: bytes | None, write: Callable[[], Any]) -> Any:
        hit = self._hit(op, key)
        if hit and self.point is not None and self.point.when != "after":
            if self.point.when == "during" and data is not None and isinstance(
                    self.inner, LocalObjectStore):
                # exactly what a kill inside LocalObjectStore.put leaves: its hidden,
                # half-written temporary file next to the key
                self.inner._tmp(Path(self.inner.uri(key)), data[: len(data) // 2])
            self._die()
        result = write()
        if hit:
            self._die()
        return result

    def put(self, key: str, data: bytes) -> None:
        self._write("put", key, data, lambda: self.inner.put(key, data))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return bool(self._write("put_if_absent", key, data,
                                lambda: self.inner.put_if_absent(key, data)))

    def update(self, key: str, change: Callable[[bytes | None], bytes]) -> bytes:
        return bytes(self._write("update", key, None, lambda: self.inner.update(key, change)))

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str) -> list[str]:
        return self.inner.list(prefix)

    def entries(self, prefix: str) -> list[StoredObject]:
        return self.inner.entries(prefix)

    def partial_writes(self, prefix: str) -> list[StoredObject]:
        return self.inner.partial_writes(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def uri(self, key: str) -> str:
        return self.inner.uri(key)


# ------------------------------------------------------------------ writer
def training_like(model: str, fingerprint: str, rng: random.Random
                  ) -> tuple[ModelVersion, bytes, dict[str, bytes]]:
    """A manifest, a model file and the files a training run registers with it
    (two plots, a drift reference sample, the trained rows' hashes), of typical sizes."""
    mv = ModelVersion(model_name=model, version=0, created_at="", fingerprint=fingerprint,
                      model_key="", model_sha256="", problem_type="binary",
                      metrics={"roc_auc": round(rng.uniform(0.6, 0.9), 4)},
                      gate=GateRecord(passed=True), params={"n_estimators": 100},
                      data=DataRecord(rows=20_000))
    files = {"plots/roc.png": rng.randbytes(30_000), "plots/pr.png": rng.randbytes(30_000),
             "reference.parquet": rng.randbytes(400_000),
             "train_rows.npy": rng.randbytes(128_000)}
    return mv, rng.randbytes(250_000), files


def promote(registry: ModelRegistry, model: str, version: int, reason: str) -> bool:
    """Point production at ``version`` with a compare-and-set against what it saw,
    as the promote task does; False if another writer kept moving it."""
    for _ in range(10):
        current = registry.alias(model, PRODUCTION_ALIAS)
        try:
            registry.set_alias(model, PRODUCTION_ALIAS, version, event="promote",
                               reason=reason, expected=current.version if current else None)
            return True
        except AliasMovedError:
            continue
    return False


def run_writer(registry: ModelRegistry, store: CrashingStore, model: str, iterations: int,
               seed: int) -> int:
    """The writer's loop; returns the rounds done (if nothing killed it)."""
    rng = random.Random(seed)
    for i in range(iterations):
        # every other round retrains a lineage it just registered: the lookup finds it
        fingerprint = f"lineage-{seed}-{i // 2}"
        store.phase = "lineage"
        found = registry.find_by_fingerprint(model, fingerprint)
        if found is None:
            store.phase = "register"
            found = registry.register(*training_like(model, fingerprint, rng))
        store.phase = "promote"
        promote(registry, model, found.version, reason=f"round {i}")
        if i % 3 == 2:
            store.phase = "rollback"
            try:
                registry.rollback(model, reason=f"round {i}")
            except RegistryError:  # nothing to roll back to
                pass
    return iterations


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m prefab_mlops.testing.registry_crash",
                                description="A registry writer to be killed (see module doc).")
    _add_store_args(p)
    p.add_argument("--model", default=MODEL)
    p.add_argument("--iterations", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    step = os.environ.get(ENV_DIE_AT) or None
    if step is not None and step not in STEPS:
        print(f"error: {ENV_DIE_AT}={step} is not a step; steps: {', '.join(STEPS)}",
              file=sys.stderr)
        return 2
    store = CrashingStore(_spec(args).open(), STEPS[step] if step else None)
    registry = ModelRegistry(store)
    print("ready", flush=True)
    done = run_writer(registry, store, args.model, args.iterations, args.seed)
    print(json.dumps({"iterations": done}), flush=True)
    return 0


# ------------------------------------------------------------------ parent side
def spawn_writer(spec: StoreSpec, *, die_at: str | None = None, iterations: int = 1_000_000,
                 seed: int = 0, model: str = MODEL) -> subprocess.Popen[str]:
    """Start a writer process (``die_at``: a step of :data:`STEPS`)."""
    env = {k: v for k, v in os.environ.items() if k != ENV_DIE_AT}
    if die_at:
        env[ENV_DIE_AT] = die_at
    return subprocess.Popen(
        [sys.executable, "-m", "prefab_mlops.testing.registry_crash", *spec.argv(),
         "--model", model, "--iterations", str(iterations), "--seed", str(seed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_ready(proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    """Wait for the writer's ``ready`` line.

    Raises:
        RuntimeError: it exited or said something else first.
        TimeoutError: nothing within ``timeout`` seconds.
    """
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"the writer was not ready after {timeout} s")
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.wait(10)
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"the writer exited ({proc.returncode}) before it was ready: "
                           f"{line!r} {err[-2000:]}")


def kill_at_random(proc: subprocess.Popen[str], rng: random.Random, window: float) -> float:
    """SIGKILL a ready writer after a random delay in [0, ``window``); returns the delay."""
    wait_ready(proc)
    delay = rng.uniform(0, window)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    return delay


def die_at_step(proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    """Wait for a writer started with ``die_at`` to kill itself there.

    Raises:
        RuntimeError: it exited some other way (the step was never reached).
    """
    _, err = proc.communicate(timeout=timeout)
    if proc.returncode != -signal.SIGKILL:
        raise RuntimeError(f"the writer exited with {proc.returncode}, not by SIGKILL at its "
                           f"step: {err[-2000:]}")


def manifests(store: ObjectStore, model: str = MODEL) -> dict[str, bytes]:
    """Every manifest's key and bytes."""
    return {k: store.get(k) for k in store.list(f"{model}/versions/")}


@dataclass
class KillOutcome:
    """What a kill left, as :func:`inspect_after_kill` found it.

    Attributes:
        inconsistent: What is wrong: a problem ``registry check`` finds besides
            leftovers, production not loadable, an earlier manifest changed, or a
            problem left after ``--repair``.
        unrecorded: Registry changes the audit log (``events()``) does not show.
        leftovers: Orphaned blob folders and partial writes the kill left.
        repairs: What ``--repair`` did (removals, and derived records written).
    """

    inconsistent: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)
    leftovers: list[Problem] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)


def unrecorded_changes(registry: ModelRegistry, model: str = MODEL) -> list[str]:
    """Versions and alias moves the audit log does not show.

    Every version needs a ``register`` event; every alias its moves' events, the
    last one naming the version it points at now.
    """
    events = registry.events(model)
    registered = {e.get("version") for e in events if e.get("event") == "register"}
    out = [f"v{mv.version} has no register event" for mv in registry.versions(model)
           if mv.version not in registered]
    for name, state in registry.aliases(model).items():
        moves = [e for e in events if e.get("alias") == name and "seq" in e]
        seqs = sorted(e["seq"] for e in moves)
        if seqs != list(range(1, state.seq + 1)):
            out.append(f"'{name}' made {state.seq} moves; the log has moves {seqs}")
        elif not moves or moves[-1].get("version") != state.version:
            out.append(f"'{name}' is at v{state.version}; its last logged move says "
                       f"{moves[-1].get('version') if moves else 'nothing'}")
    return out


def inspect_after_kill(registry: ModelRegistry, before: dict[str, bytes],
                       model: str = MODEL) -> KillOutcome:
    """Check a registry after its writer was killed, then repair it and check again.

    Args:
        registry: The registry the writer wrote to.
        before: :func:`manifests` taken before the writer started: none may change.
    """
    out = KillOutcome()
    now = manifests(registry.store, model)
    out.inconsistent += [f"{k} changed or vanished" for k, data in before.items()
                         if now.get(k) != data]
    state = registry.alias(model, PRODUCTION_ALIAS)
    if state is not None:
        try:
            registry.model_bytes(registry.get_version(model, state.version))
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            out.inconsistent.append(f"production v{state.version} does not load: {exc}")
    out.unrecorded = unrecorded_changes(registry, model)
    # the check: what the repair's own scan finds before it changes anything
    report = repair_registry(registry, model, grace_s=0)
    for p in report.found:
        if p.kind in LEFTOVERS:
            out.leftovers.append(p)
        else:
            out.inconsistent.append(p.line())
    out.repairs = report.repairs
    out.inconsistent += [f"after --repair: {p.line()}" for p in report.remaining]
    if manifests(registry.store, model) != now:
        out.inconsistent.append("--repair changed a manifest")
    return out


# ------------------------------------------------------------------ concurrency
@dataclass
class ConcurrencyOutcome:
    """What :func:`register_concurrently` saw.

    Attributes:
        registered: Registrations that returned a version.
        versions: Those versions, by process.
        lost: Registrations whose version is missing or holds another lineage, plus
            processes that failed.
        problems: What ``registry check`` finds afterwards.
        seconds: Wall time from the common start to the last registration.
    """

    registered: int = 0
    versions: list[int] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _concurrent_worker(spec: StoreSpec, model: str, index: int, start: Any, results: Any
                       ) -> None:
    registry = ModelRegistry(spec.open())
    rng = random.Random(index)
    fingerprint = f"concurrent-{index}-{uuid.uuid4().hex[:8]}"
    payload = training_like(model, fingerprint, rng)
    start.wait()
    t0 = time.time()
    if registry.find_by_fingerprint(model, fingerprint) is not None:
        raise RuntimeError(f"lineage {fingerprint} found before it was registered")
    mv = registry.register(*payload)
    promote(registry, model, mv.version, reason=f"process {index}")
    results.put((index, fingerprint, mv.version, t0, time.time()))


def register_concurrently(spec: StoreSpec, processes: int = 8, model: str = MODEL,
                          timeout: float = 300.0) -> ConcurrencyOutcome:
    """``processes`` training-like registrations (lookup, register, promote), each in
    its own process, released at the same moment."""
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_concurrent_worker, args=(spec, model, i, start, results))
             for i in range(processes)]
    for proc in procs:
        proc.start()
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < processes and time.monotonic() < deadline:
        try:
            got.append(results.get(timeout=1))
        except queue.Empty:
            if not any(proc.is_alive() for proc in procs) and results.empty():
                break
    for proc in procs:
        proc.join(10)
    out = ConcurrencyOutcome(registered=len(got))
    registry = ModelRegistry(spec.open())
    for proc in procs:
        if proc.exitcode != 0:
            out.lost.append(f"a registering process exited with {proc.exitcode}")
            proc.kill()
    for index, fingerprint, version, _, _ in sorted(got):
        out.versions.append(version)
        try:
            held = registry.get_version(model, version).fingerprint
        except RegistryError:
            held = "nothing"
        if held != fingerprint:
            out.lost.append(f"process {index} registered {fingerprint} as v{version}, "
                            f"which holds {held}")
    if got:
        out.seconds = round(max(g[4] for g in got) - min(g[3] for g in got), 3)
    out.problems = [p.line() for p in check_registry(registry, model, grace_s=0)]
    return out


if __name__ == "__main__":
    sys.exit(main())
