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

3. promotions: ``BENCH_PROMOTION_ROUNDS`` times per store, ``BENCH_PROMOTION_RUNS``
   stand-in training runs (:mod:`prefab_mlops.testing.promotions`, as
   ``tests/tasks/test_promote.py``) all decided against the same champion, then
   promoted through the real ``promote`` task in a shuffled order (even rounds) or all
   at once (odd rounds): ``promotion_regressions`` counts promotions over a better
   model or over another model than the one compared with, and rounds that did not end
   on the best model.

Then, once, with Prefect's test harness (a temporary API server) for the flows:

4. transient faults: ``BENCH_FAULT_ROUNDS`` times, a training run (data on S3) and a
   batch scoring run through a proxy (:mod:`prefab_mlops.testing.faults`) that takes
   the S3 endpoint down for ``BENCH_FAULT_DOWN_S`` seconds while ingest reads, while
   register writes and while scoring writes (as
   ``tests/integration/test_transient_faults.py``): ``transient_faults`` outages
   fired, ``survived`` those whose run then completed with the registry consistent.
5. fuzzing: ``bench/fuzz.py``'s phases with ``BENCH_FUZZ_FILES``/``FRAMES``/``REQUESTS``
   (defaults 100/100/300 here): ``fuzz_cases``, ``server_5xx``.
6. soak: ``bench/serving.py``'s soak for ``BENCH_SOAK_S`` seconds (default 120 here;
   its other BENCH_SOAK_* variables apply): ``soak_requests``, ``soak_failed``,
   ``soak_rss_growth_mb``.
7. reproduce: a seeded XGBoost and a seeded random forest trained, registered and
   reproduced from their records (:mod:`prefab_mlops.flows.reproduce`):
   ``reproduced``, ``identical``.

``BENCH_PHASES`` (default all: kills,concurrency,promotions,faults,fuzz,soak,reproduce)
picks phases; ``BENCH_QUICK=1`` shrinks every default (a few minutes in all).

Environment:
    BENCH_KILL_TRIALS=N        kill trials on the local store (default 160; quick 5)
    BENCH_KILL_TRIALS_S3=N     kill trials on S3 (default 40, about 8-13 s each here; quick 2)
    BENCH_KILL_WINDOW_S=S      kill delay range after the writer is ready (default 2.0)
    BENCH_RESET_EVERY=N        fresh registry every N trials (default 10)
    BENCH_CONCURRENT_ROUNDS=N  rounds of 8 concurrent registrations per store (default 3; quick 1)
    BENCH_PROMOTION_ROUNDS=N   adversarial promotion rounds per store (default 6; quick 2)
    BENCH_PROMOTION_RUNS=N     runs per promotion round (default 6)
    BENCH_FAULT_ROUNDS=N       transient-fault rounds, three outages each (default 3; quick 1)
    BENCH_FAULT_DOWN_S=S       seconds the endpoint stays down per outage (default 3)
    BENCH_FUZZ_FILES/FRAMES/REQUESTS  fuzz cases (defaults 100/100/300; quick 20/20/60)
    BENCH_SOAK_S=S             soak seconds (default 120; quick 30)
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
CONF = REPO / "conf"
PHASES = ("kills", "concurrency", "promotions", "faults", "fuzz", "soak", "reproduce")


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


def promotions(kind: str, tmp: Path, endpoint: str, rounds: int, n: int,
               seed: int) -> dict[str, Any]:
    """Adversarial promotion rounds into fresh registries (see the module docstring)."""
    from prefab_mlops.config import RegisterConfig
    from prefab_mlops.core.storage import S3Config, StorageConfig
    from prefab_mlops.testing.promotions import (
        MODEL,
        Runs,
        promote_all_at_once,
        promotion_features,
        promotion_regressions,
        start_round,
    )

    features = promotion_features()
    regressions = promoted = decided_again = 0
    examples: list[str] = []
    for r in range(rounds):
        spec = new_spec(kind, tmp, endpoint)
        storage = (StorageConfig() if kind == "local" else StorageConfig(
            kind="s3", bucket=spec.bucket, s3=S3Config(endpoint_url=endpoint)))
        root = spec.root if kind == "local" else spec.prefix
        runs = Runs(RegisterConfig(model_name=MODEL, root=root), storage, features)
        first = runs.train(0.2)
        runs.promote(runs.decide(first), first)
        challenges, decisions = start_round(runs, seed + r, n)
        if r % 2:
            outcomes = promote_all_at_once(runs, challenges, decisions)
        else:
            outcomes = [runs.promote(d, c, max_attempts=n)
                         for d, c in zip(decisions, challenges, strict=True)]
        found = promotion_regressions(runs)
        regressions += len(found)
        examples += [f"{kind} round {r}: {line}" for line in found][: 10 - len(examples)]
        promoted += sum(o.state is not None for o in outcomes)
        decided_again += sum(o.attempts > 1 for o in outcomes)
    return {"concurrent_promotions": rounds * n, "promotion_regressions": regressions,
            "promoted": promoted, "decided_again": decided_again, "examples": examples}


def transient_faults(endpoint: str, tmp: Path, rounds: int, down_s: float) -> dict[str, Any]:
    """Training and batch scoring on S3 through an endpoint that goes down on cue."""
    from urllib.parse import urlparse

    import boto3

    from prefab_mlops.core.registry import ModelRegistry
    from prefab_mlops.core.registry_check import check_registry, repair_registry
    from prefab_mlops.core.storage import S3Config, S3ObjectStore
    from prefab_mlops.flows.batch_inference import batch_inference
    from prefab_mlops.flows.training import training
    from prefab_mlops.testing.faults import FaultyProxy, pipeline_outages
    from prefab_mlops.testing.flights_batches import flights

    raw = flights()
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    target = urlparse(endpoint)
    fired = survived = orphans = 0
    seconds, failures = [], []
    for r in range(rounds):
        bucket = f"faults-{uuid.uuid4().hex[:10]}"
        s3.create_bucket(Bucket=bucket)
        rows = raw.sample(14_000, random_state=r)
        s3.put_object(Bucket=bucket, Key="in/flights.csv",
                      Body=rows.head(12_000).to_csv(index=False).encode())
        s3.put_object(Bucket=bucket, Key="in/batch.csv",
                      Body=rows.tail(2_000).to_csv(index=False).encode())
        common = [f"paths.root={tmp / f'faults-{r}'}", "storage=s3",
                  f"storage.bucket={bucket}", "tracking=disabled", "evaluate.plots=false"]
        t0 = time.perf_counter()
        with FaultyProxy((target.hostname or "127.0.0.1", target.port or 80)) as proxy:
            proxy.outages += pipeline_outages(bucket, down_s)
            os.environ["PREFAB_S3_ENDPOINT_URL"] = proxy.url
            try:
                trained = training(overrides=[*common, f"data.uri=s3://{bucket}/in/flights.csv",
                                              "model.n_estimators=30"], config_dir=str(CONF))
                scored = batch_inference(overrides=common, config_dir=str(CONF),
                                         batch_uri=f"s3://{bucket}/in/batch.csv")
                registry = ModelRegistry(S3ObjectStore(bucket, "prefab/registry",
                                                       S3Config(endpoint_url=endpoint)))
                # a write cut by an outage may leave orphans (as a killed writer does):
                # the registry is consistent when --repair removes everything found
                found = check_registry(registry, grace_s=0)
                orphans += sum(p.repairable for p in found)
                problems = [p for p in found if not p.repairable]
                if found:
                    repair_registry(registry, grace_s=0)
                    problems += check_registry(registry, grace_s=0)
                ok = (trained["version"] == 1 and scored["rows"] == 2_000 and not problems
                      and registry.alias(trained["model_name"], "production") is not None)
                if not ok:
                    failures.append(f"round {r}: {[p.line() for p in problems]}")
            except Exception as exc:  # noqa: BLE001 - a run that did not survive, counted
                ok = False
                failures.append(f"round {r}: {type(exc).__name__}: {str(exc)[:300]}")
            finally:
                os.environ.pop("PREFAB_S3_ENDPOINT_URL", None)
            fired += len(proxy.fired())
            survived += len(proxy.fired()) if ok else 0
        seconds.append(round(time.perf_counter() - t0, 1))
        log(f"faults: round {r + 1}/{rounds}: {len(proxy.fired())} outages, "
            f"{'survived' if ok else 'FAILED'}", "reliability")
    return {"transient_faults": fired, "survived": survived, "down_s": down_s,
            "orphans_repaired": orphans,
            "round_s": seconds, "failures": failures[:10]}


def reproductions(tmp: Path) -> dict[str, Any]:
    """Seeded XGBoost and random forest: train, register, reproduce, compare sha256."""
    from prefab_mlops.flows.reproduce import reproduce
    from prefab_mlops.flows.training import training

    out: dict[str, Any] = {"reproduced": 0, "identical": 0, "models": {}}
    for model in ("xgboost", "random_forest"):
        root = tmp / f"reproduce-{model}"
        overrides = [f"paths.root={root}", f"model={model}", "model.n_estimators=30",
                     "data.sample_rows=8000", "tracking=disabled", "evaluate.plots=false"]
        t0 = time.perf_counter()
        s = training(overrides=overrides, config_dir=str(CONF))
        result = reproduce(s["model_name"], s["version"], overrides, str(CONF))
        out["reproduced"] += 1
        out["identical"] += result.identical
        out["models"][model] = {"identical": result.identical,
                                "differences": result.differences, "code": result.code,
                                "seconds": round(time.perf_counter() - t0, 1)}
    return out


def main() -> int:
    quick = os.environ.get("BENCH_QUICK") == "1"

    def size(name: str, default: int, quick_default: int, minimum: int = 0) -> int:
        return _int_env(name, quick_default if quick else default, minimum)

    try:
        trials = {"local": size("BENCH_KILL_TRIALS", 160, 5, 1),
                  "s3": size("BENCH_KILL_TRIALS_S3", 40, 2, 1)}
        window = float(os.environ.get("BENCH_KILL_WINDOW_S", "2.0"))
        reset_every = _int_env("BENCH_RESET_EVERY", 10, 1)
        rounds = size("BENCH_CONCURRENT_ROUNDS", 3, 1)
        promotion_rounds = size("BENCH_PROMOTION_ROUNDS", 6, 2)
        promotion_runs = _int_env("BENCH_PROMOTION_RUNS", 6, 2)
        fault_rounds = size("BENCH_FAULT_ROUNDS", 3, 1)
        down_s = float(os.environ.get("BENCH_FAULT_DOWN_S", "3.0"))
        fuzz_sizes = (size("BENCH_FUZZ_FILES", 100, 20), size("BENCH_FUZZ_FRAMES", 100, 20),
                      size("BENCH_FUZZ_REQUESTS", 300, 60))
        soak_s = float(os.environ.get("BENCH_SOAK_S", "30" if quick else "120"))
        seed = _int_env("BENCH_SEED", 42, 0)
        stores = [s for s in os.environ.get("BENCH_STORES", "local,s3").split(",") if s]
        phases = [p for p in os.environ.get("BENCH_PHASES", ",".join(PHASES)).split(",") if p]
        if not stores or set(stores) - {"local", "s3"} or window <= 0:
            raise ValueError("BENCH_STORES takes local and/or s3; BENCH_KILL_WINDOW_S > 0")
        if not phases or set(phases) - set(PHASES):
            raise ValueError(f"BENCH_PHASES takes a comma-separated subset of {','.join(PHASES)}")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    keep = os.environ.get("BENCH_KEEP") == "1"
    tmp = Path(tempfile.mkdtemp(prefix="prefab-bench-rel-"))
    moto = None
    t_all = time.perf_counter()
    per_store: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    seconds: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args)
        seconds[name] = round(seconds.get(name, 0.0) + time.perf_counter() - t0, 1)
        return out

    try:
        endpoint = ""
        if ("s3" in stores and set(phases) & {"kills", "concurrency", "promotions"}
                or "faults" in phases):
            moto, endpoint = start_moto(tmp)
        rng = random.Random(seed)
        for kind in stores:
            per_store[kind] = {}
            if "kills" in phases:
                log(f"{kind}: {trials[kind]} kills at random times in [0, {window}) s",
                    "reliability")
                per_store[kind]["kills"] = timed("kills", kill_trials, kind, tmp, endpoint,
                                                 trials[kind], window, reset_every, rng)
            if "concurrency" in phases:
                log(f"{kind}: {rounds} rounds of {WRITERS} concurrent registrations",
                    "reliability")
                per_store[kind]["concurrency"] = timed("concurrency", concurrency, kind, tmp,
                                                       endpoint, rounds)
            if "promotions" in phases:
                log(f"{kind}: {promotion_rounds} rounds of {promotion_runs} promotions in "
                    "adversarial order", "reliability")
                per_store[kind]["promotions"] = timed(
                    "promotions", promotions, kind, tmp, endpoint, promotion_rounds,
                    promotion_runs, seed)
        if set(phases) & {"faults", "reproduce"}:
            from prefect.testing.utilities import prefect_test_harness

            from prefab_mlops.orchestration.runtime import in_process_run

            log("starting Prefect's test harness for the flows", "reliability")
            with prefect_test_harness(server_startup_timeout=120), in_process_run():
                if "faults" in phases:
                    extra["faults"] = timed("faults", transient_faults, endpoint, tmp,
                                            fault_rounds, down_s)
                if "reproduce" in phases:
                    log("reproduce: xgboost and random_forest", "reliability")
                    extra["reproduce"] = timed("reproduce", reproductions, tmp)
        if "fuzz" in phases:
            from bench.fuzz import run_fuzz

            log(f"fuzz: {fuzz_sizes[0]} files, {fuzz_sizes[1]} frames, {fuzz_sizes[2]} "
                "requests", "reliability")
            extra["fuzz"] = timed("fuzz", run_fuzz, *fuzz_sizes)
        if "soak" in phases:
            from bench.serving import run_soak

            log(f"soak: {soak_s:.0f} s", "reliability")
            extra["soak"] = timed("soak", run_soak, soak_s,
                                  size("BENCH_SAMPLE_ROWS", 50_000, 10_000, 1000))
    finally:
        kill(moto)
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)

    def total(section: str, key: str) -> int | None:
        found = [int(s[section][key]) for s in per_store.values() if section in s]
        return sum(found) if found else None

    def get(section: str, key: str) -> Any:
        return extra[section][key] if section in extra else None

    result: dict[str, Any] = {
        "kill_trials": total("kills", "kill_trials"),
        "inconsistent_after_kill": total("kills", "inconsistent_after_kill"),
        "unrecorded_after_kill": total("kills", "unrecorded_after_kill"),
        "concurrent_promotions": total("promotions", "concurrent_promotions"),
        "promotion_regressions": total("promotions", "promotion_regressions"),
        "transient_faults": get("faults", "transient_faults"),
        "survived": get("faults", "survived"),
        "fuzz_cases": get("fuzz", "fuzz_cases"),
        "server_5xx": get("fuzz", "server_5xx"),
        "concurrent_registrations": total("concurrency", "concurrent_registrations"),
        "lost": total("concurrency", "lost"),
        "duplicate_versions": total("concurrency", "duplicate_versions"),
        "soak_requests": get("soak", "soak_requests"),
        "soak_failed": get("soak", "soak_failed"),
        "soak_rss_growth_mb": get("soak", "soak_rss_growth_mb"),
        "reproduced": get("reproduce", "reproduced"),
        "identical": get("reproduce", "identical"),
        "stores": per_store,
        "faults": extra.get("faults"),
        "fuzz": {k: v for k, v in extra["fuzz"].items() if k in (
            "invariant_failures", "server_statuses", "registry_changed",
            "valid_request_after", "setup")} if "fuzz" in extra else None,
        "soak": {k: v for k, v in extra["soak"].items() if k in (
            "soak_s", "soak_rps", "soak_promotions", "soak_rollbacks", "checks",
            "failures")} if "soak" in extra else None,
        "reproduce": extra.get("reproduce"),
        "kill_window_s": window,
        "quick": quick,
        "phase_s": seconds,
        "total_s": round(time.perf_counter() - t_all, 1),
        "env": {"python": platform.python_version(), "cpus": os.cpu_count(),
                "load_avg_1m": round(os.getloadavg()[0], 2),
                **{d: package_version(d) for d in ("boto3", "moto", "prefect")}},
    }
    bad = [result[k] for k in ("inconsistent_after_kill", "unrecorded_after_kill", "lost",
                               "duplicate_versions", "promotion_regressions", "server_5xx",
                               "soak_failed") if result[k]]
    if result["survived"] != result["transient_faults"]:
        bad.append("faults")
    if result["identical"] != result["reproduced"]:
        bad.append("reproduce")
    if "fuzz" in extra and extra["fuzz"]["invariant_failures"]:
        bad.append("fuzz")
    if "soak" in extra and not extra["soak"]["checks_ok"]:
        bad.append("soak")
    result["checks_ok"] = not bad
    if keep:
        result["artifacts_dir"] = str(tmp)
    print(json.dumps(result, indent=2, default=str))
    return 0 if result["checks_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
