"""Benchmark of the registry's crash safety and concurrency (``make bench-reliability``).

Prints ONE JSON object on stdout; progress goes to stderr. See ``bench/README.md``
("Reliability benchmark") for what each figure means.

Phases, for each store (a local directory, then S3 on a moto server on loopback):

1. kills: ``BENCH_KILL_TRIALS`` times, a writer process
   (``python -m prefab_mlops.testing.registry_crash``: lineage lookup, register a
   training-like version, promote it with a compare-and-set, roll back every third
   round) is SIGKILLed at a random time, uniform in [0, ``BENCH_KILL_WINDOW_S``)
   after it is ready. After each kill, ``inspect_after_kill``: ``registry check``
   (grace 0) may find orphans and nothing else, production must load (sha256
   checked), no earlier manifest may have changed, ``events()`` must show every
   version and every alias move; then ``--repair`` must leave no problem and change
   no manifest. The registry carries over from trial to trial (a fresh one every
   ``BENCH_RESET_EVERY`` trials, so that the checks stay fast).
2. concurrency: ``BENCH_CONCURRENT_ROUNDS`` times, eight training-like registrations
   (lookup, register, promote with a compare-and-set) in eight processes released
   at the same moment, into a fresh registry: distinct versions, none lost, no
   problem found afterwards.

Environment:
    BENCH_KILL_TRIALS=N        kill trials per store (default 200)
    BENCH_KILL_WINDOW_S=S      kill delay range after the writer is ready (default 2.0)
    BENCH_RESET_EVERY=N        fresh registry every N trials (default 10)
    BENCH_CONCURRENT_ROUNDS=N  rounds of 8 concurrent registrations per store (default 3)
    BENCH_STORES=local,s3      which stores (default both)
    BENCH_SEED=N               seed of the kill delays (default 42)
    BENCH_KEEP=1               keep the temporary directory (registries, moto log)
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/reliability.py` puts bench/ first, not the repo
    sys.path.insert(0, str(REPO))

from bench._common import kill, log, package_version  # noqa: E402

WRITERS = 8


def _int_env(name: str, default: int, minimum: int) -> int:
    value = int(os.environ.get(name, str(default)))
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def start_moto(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto's standalone S3 server on a free loopback port (as tests/conftest.py)."""
    import socket

    from prefab_mlops.testing.local_prefect import free_port

    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
        "moto_server")
    if exe is None:
        raise RuntimeError("moto_server is not installed; run `make setup` (a dev dependency)")
    port = free_port()
    with open(tmp / "moto.log", "wb") as fh:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=fh,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    else:
        raise TimeoutError("moto_server did not listen within 60 s")
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    return proc, f"http://127.0.0.1:{port}"


def new_spec(kind: str, tmp: Path, endpoint: str) -> Any:
    """A fresh, empty registry on ``kind``."""
    from prefab_mlops.testing.registry_crash import StoreSpec

    name = uuid.uuid4().hex[:12]
    if kind == "local":
        return StoreSpec("local", root=str(tmp / f"registry-{name}"))
    import boto3

    bucket = f"bench-{name}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket)
    return StoreSpec("s3", bucket=bucket, prefix="prefab/registry", endpoint=endpoint)


def kill_trials(kind: str, tmp: Path, endpoint: str, trials: int, window: float,
                reset_every: int, rng: random.Random) -> dict[str, Any]:
    from prefab_mlops.core.registry import ModelRegistry
    from prefab_mlops.testing.registry_crash import (
        inspect_after_kill,
        kill_at_random,
        manifests,
        spawn_writer,
    )

    inconsistent = unrecorded = 0
    leftovers: Counter[str] = Counter()
    repairs: Counter[str] = Counter()
    examples: list[str] = []
    trial_s = []
    spec = registry = None
    for trial in range(trials):
        if trial % reset_every == 0:
            spec = new_spec(kind, tmp, endpoint)
            registry = ModelRegistry(spec.open())
        assert spec is not None and registry is not None
        t0 = time.perf_counter()
        before = manifests(registry.store)
        writer = spawn_writer(spec, seed=trial)
        try:
            kill_at_random(writer, rng, window)
        finally:
            kill(writer)  # type: ignore[arg-type]
        outcome = inspect_after_kill(registry, before)
        trial_s.append(time.perf_counter() - t0)
        inconsistent += bool(outcome.inconsistent)
        unrecorded += bool(outcome.unrecorded)
        for line in outcome.inconsistent + outcome.unrecorded:
            if len(examples) < 10:
                examples.append(f"{kind} trial {trial}: {line}")
        leftovers.update(p.kind.value for p in outcome.leftovers)
        repairs.update(_repair_kind(r) for r in outcome.repairs)
        if (trial + 1) % 25 == 0:
            log(f"{kind}: {trial + 1}/{trials} kills, {inconsistent} inconsistent, "
                f"{unrecorded} unrecorded", "reliability")
    return {"kill_trials": trials, "inconsistent_after_kill": inconsistent,
            "unrecorded_after_kill": unrecorded, "leftovers_found": dict(leftovers),
            "repairs": dict(repairs), "examples": examples,
            "trial_s_median": round(sorted(trial_s)[len(trial_s) // 2], 2) if trial_s else None}


def _repair_kind(repair: Any) -> str:
    """What a repair fixed (a problem kind), or which derived record it wrote ahead."""
    if repair.kind is not None:
        return str(repair.kind.value)
    if "/events/" in repair.key:
        return "alias move event written"
    return "lineage index caught up"


def concurrency(kind: str, tmp: Path, endpoint: str, rounds: int) -> dict[str, Any]:
    from prefab_mlops.testing.registry_crash import register_concurrently

    registered = lost = duplicates = problems = 0
    seconds = []
    examples: list[str] = []
    for _ in range(rounds):
        outcome = register_concurrently(new_spec(kind, tmp, endpoint), processes=WRITERS)
        registered += outcome.registered
        lost += len(outcome.lost) + (WRITERS - outcome.registered)
        duplicates += len(outcome.versions) - len(set(outcome.versions))
        problems += len(outcome.problems)
        seconds.append(outcome.seconds)
        examples += (outcome.lost + outcome.problems)[: 10 - len(examples)]
    return {"concurrent_registrations": rounds * WRITERS, "registered": registered,
            "lost": lost, "duplicate_versions": duplicates, "problems_after": problems,
            "round_s": seconds, "examples": examples}


def main() -> int:
    try:
        trials = _int_env("BENCH_KILL_TRIALS", 200, 1)
        window = float(os.environ.get("BENCH_KILL_WINDOW_S", "2.0"))
        reset_every = _int_env("BENCH_RESET_EVERY", 10, 1)
        rounds = _int_env("BENCH_CONCURRENT_ROUNDS", 3, 0)
        seed = _int_env("BENCH_SEED", 42, 0)
        stores = [s for s in os.environ.get("BENCH_STORES", "local,s3").split(",") if s]
        if not stores or set(stores) - {"local", "s3"} or window <= 0:
            raise ValueError("BENCH_STORES takes local and/or s3; BENCH_KILL_WINDOW_S > 0")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    keep = os.environ.get("BENCH_KEEP") == "1"
    tmp = Path(tempfile.mkdtemp(prefix="prefab-bench-rel-"))
    moto = None
    t_all = time.perf_counter()
    per_store: dict[str, Any] = {}
    try:
        endpoint = ""
        if "s3" in stores:
            moto, endpoint = start_moto(tmp)
        rng = random.Random(seed)
        for kind in stores:
            log(f"{kind}: {trials} kills at random times in [0, {window}) s", "reliability")
            t0 = time.perf_counter()
            kills = kill_trials(kind, tmp, endpoint, trials, window, reset_every, rng)
            kills["seconds"] = round(time.perf_counter() - t0, 1)
            log(f"{kind}: {rounds} rounds of {WRITERS} concurrent registrations", "reliability")
            per_store[kind] = {"kills": kills,
                               "concurrency": concurrency(kind, tmp, endpoint, rounds)}
    finally:
        kill(moto)
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)

    def total(section: str, key: str) -> int:
        return sum(int(s[section][key]) for s in per_store.values())

    result: dict[str, Any] = {
        "kill_trials": total("kills", "kill_trials"),
        "inconsistent_after_kill": total("kills", "inconsistent_after_kill"),
        "unrecorded_after_kill": total("kills", "unrecorded_after_kill"),
        "concurrent_registrations": total("concurrency", "concurrent_registrations"),
        "lost": total("concurrency", "lost"),
        "duplicate_versions": total("concurrency", "duplicate_versions"),
        "stores": per_store,
        "kill_window_s": window,
        "total_s": round(time.perf_counter() - t_all, 1),
        "env": {"python": platform.python_version(), "cpus": os.cpu_count(),
                "load_avg_1m": round(os.getloadavg()[0], 2),
                **{d: package_version(d) for d in ("boto3", "moto")}},
    }
    result["checks_ok"] = not (result["inconsistent_after_kill"] or result[
        "unrecorded_after_kill"] or result["lost"] or result["duplicate_versions"])
    if keep:
        result["artifacts_dir"] = str(tmp)
    print(json.dumps(result, indent=2, default=str))
    return 0 if result["checks_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
