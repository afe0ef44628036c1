"""Fuzzing benchmark (``make bench-fuzz``): how many generated bad inputs ingest,
validate and the model server took, and how many broke the invariant.

Prints ONE JSON object on stdout; progress goes to stderr, the server's log to a
file in the temporary directory. The same strategies as the property tests
(:mod:`prefab_mlops.testing.fuzzing`), with more examples and fresh random ones on
every run; a failing case is counted and kept (its repr in ``failures``), not
shrunk, so one run reports every kind of failure it met.

1. **ingest**: ``BENCH_FUZZ_FILES`` (default 400) generated data files (CSV in any
   separator/encoding/compression, Parquet under any name, damaged and random
   bytes) with generated ``conf/data`` (format, ``data.read``, preparation keys),
   plus as many damaged real flights files under the flights config, each through
   ``ingest.fn``. A case passes when it returns a Dataset or raises a PrefabError
   that names the file (or a ``data.`` key) and has a fix.
2. **validate**: ``BENCH_FUZZ_FRAMES`` (default 400) generated frames against
   generated contracts through ``validate.fn``: a report, or a DataValidationError.
3. **server**: trains and registers a flights model (``bench/_plain.py``, 5,000 rows,
   50 trees), starts ``python -m prefab_mlops.serve`` (2 workers) and sends
   ``BENCH_FUZZ_REQUESTS`` (default 1000) generated ``POST /predict`` bodies over
   HTTP (10 s client timeout: a hang counts as a failure). A case passes on a 200 or
   a 4xx whose ``detail`` names a field, without a traceback. The registry's files
   are hashed before and after.

Output: ``fuzz_cases`` (all cases), ``server_5xx``, ``server_statuses``,
``ingest``/``validate``/``server`` (cases, outcomes, failures, seconds),
``registry_changed``, ``valid_request_after`` (the status of a valid request sent
after the fuzzed ones), ``invariant_failures``; exit status 1 if any case failed.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/x.py` puts bench/ first, not the repo
    sys.path.insert(0, str(REPO))

from bench._common import log as _log  # noqa: E402
from bench.serving import MODEL, Server, load_rows  # noqa: E402
from prefab_mlops.testing.local_prefect import free_port  # noqa: E402

CONF = REPO / "conf"


def log(msg: str) -> None:
    _log(msg, "bench-fuzz")


@dataclasses.dataclass
class Tally:
    """Cases of one target: how each ended, and the first failures met."""

    cases: int = 0
    outcomes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    failures: list[str] = dataclasses.field(default_factory=list)
    failed: int = 0
    seconds: float = 0.0

    def fail(self, case: Any, err: BaseException) -> None:
        self.failed += 1
        if len(self.failures) < 10:
            self.failures.append(f"{type(err).__name__}: {str(err)[:300]} <- {case!r:.300}")

    def report(self) -> dict[str, Any]:
        return {"cases": self.cases, "outcomes": dict(self.outcomes.most_common()),
                "failed": self.failed, "failures": self.failures,
                "seconds": round(self.seconds, 1)}


def run_cases(tally: Tally, strategy: Any, examples: int, case_fn: Any) -> None:
    """Run ``case_fn`` on ``examples`` draws of ``strategy``; failures are tallied."""
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(case: Any) -> None:
        tally.cases += 1
        try:
            tally.outcomes[case_fn(case)] += 1
        except Exception as err:  # noqa: BLE001 - a broken invariant, kept for the report
            tally.fail(case, err)

    t0 = time.perf_counter()
    prop()
    tally.seconds += time.perf_counter() - t0


# ------------------------------------------------------------------- ingest
def fuzz_ingest(root: Path, files: int) -> Tally:
    from hypothesis import strategies as st

    from prefab_mlops.config import load_config
    from prefab_mlops.core.storage import parse_location, read_source
    from prefab_mlops.datasets import parse_bytes
    from prefab_mlops.tasks.ingest import ingest
    from prefab_mlops.testing.fuzzing import (
        assert_clear_error,
        damaged_rows,
        data_configs,
        data_files,
    )

    cfg = load_config([f"paths.root={root}", "tracking=disabled"], config_dir=CONF).typed
    work = root / "files"
    work.mkdir(parents=True)
    tally = Tally()

    def one(case: tuple[Any, Any]) -> str:
        file, data = case
        path = work / f"{uuid.uuid4().hex[:8]}-{file.name}"
        path.write_bytes(file.content)
        try:
            ds = ingest.fn(dataclasses.replace(data, uri=str(path)), cfg.paths, cfg.storage,
                           cfg.seed)
        except Exception as err:  # noqa: BLE001 - checked below
            assert_clear_error(err, path.name, "data.")
            return f"refused: {type(err).__name__}"
        finally:
            path.unlink()
        assert len(set(ds.columns)) == len(ds.columns)
        return f"read: {ds.layout.format if ds.layout else '?'}"

    log(f"ingest: {files} generated files, then {files} damaged real flights files")
    run_cases(tally, st.tuples(data_files(), data_configs(cfg.data)), files, one)
    loc = parse_location(cfg.data.uri)
    real, _ = parse_bytes(read_source(loc, cfg.storage.s3), loc, cfg.data.format,
                          cfg.data.parse_dates)
    real = real.sample(n=40, random_state=7).reset_index(drop=True)
    flights = dataclasses.replace(cfg.data, format="auto")
    run_cases(tally, data_files(damaged_rows(real)).map(lambda f: (f, flights)), files, one)
    return tally


# ----------------------------------------------------------------- validate
def fuzz_validate(frames_n: int) -> Tally:
    from hypothesis import strategies as st

    from prefab_mlops.core.errors import DataValidationError
    from prefab_mlops.tasks.ingest import Dataset
    from prefab_mlops.tasks.validate import validate
    from prefab_mlops.testing.fuzzing import assert_clear_error, contracts, frames

    tally = Tally()

    @st.composite
    def cases(draw: st.DrawFn) -> tuple[Any, Any, Any]:
        frame = draw(frames())
        return (frame, *draw(contracts(frame)))

    def one(case: tuple[Any, Any, Any]) -> str:
        frame, cfg, target = case
        data = Dataset.of(frame, name="fuzz", fingerprint="fp", source="fuzz.csv",
                          source_fingerprint="src", snapshot_uri=None, target=target.name)
        try:
            report = validate.fn(data, cfg, target)
        except Exception as err:  # noqa: BLE001 - checked below
            assert_clear_error(err, "fuzz.csv")
            assert isinstance(err, DataValidationError), type(err)
            return "refused"
        report.to_markdown()
        return "passed" if report.passed else "warned"

    log(f"validate: {frames_n} generated frames and contracts")
    run_cases(tally, cases(), frames_n, one)
    return tally


# ------------------------------------------------------------------- server
def registry_state(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def fuzz_server(root: Path, requests: int
                ) -> tuple[Tally, collections.Counter, bool, int | None]:
    """The server's tally, status counts, whether the registry changed, and the status of
    a valid request sent after the fuzzed ones."""
    import httpx

    from bench._plain import run_plain
    from prefab_mlops.testing.fuzzing import assert_client_error, predict_bodies

    log("server: training a flights model to serve (5,000 rows, 50 trees)")
    run_plain([f"paths.root={root}", "data.sample_rows=5000", "model.n_estimators=50",
               "tracking=disabled", "evaluate.plots=false"], config_dir=str(CONF))
    registry = root / "registry"
    record = load_rows(registry, 1)[0][0]
    before = registry_state(registry)
    server = Server(registry, free_port(), 2, root / "server.log")
    statuses: collections.Counter = collections.Counter()
    tally = Tally()
    after = None
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:

            def one(body: bytes) -> str:
                r = client.post("/predict", content=body,
                                headers={"content-type": "application/json"})
                statuses[r.status_code] += 1
                assert_client_error(r.status_code, r.content)
                return f"HTTP {r.status_code}"

            log(f"server: {requests} generated bodies over HTTP")
            run_cases(tally, predict_bodies(record), requests, one)
            after = client.post("/predict", json=record).status_code
    finally:
        server.stop()
    return tally, statuses, registry_state(registry) != before, after


def run_fuzz(files: int, frames_n: int, requests: int) -> dict[str, Any]:
    """The three fuzzing phases (see the module docstring); the result's
    ``invariant_failures`` counts the cases that broke the invariant."""
    tmp = Path(tempfile.mkdtemp(prefix="prefab-bench-fuzz-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)  # validate's on_failure=warn logs every warned case
        try:
            ingest = fuzz_ingest(tmp / "ingest", files) if files else Tally()
            validate = fuzz_validate(frames_n) if frames_n else Tally()
            server, statuses, changed, after = (
                fuzz_server(tmp / "serve", requests) if requests
                else (Tally(), collections.Counter(), False, None))
        finally:
            logging.disable(logging.NOTSET)
            if os.environ.get("BENCH_KEEP") == "1":
                log(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    failures = (ingest.failed + validate.failed + server.failed + int(changed)
                + int(requests > 0 and after != 200))
    result = {
        "fuzz_cases": ingest.cases + validate.cases + server.cases,
        "server_5xx": sum(n for s, n in statuses.items() if s >= 500),
        "server_statuses": {str(s): n for s, n in sorted(statuses.items())},
        "registry_changed": changed,
        "valid_request_after": after,
        "invariant_failures": failures,
        "ingest": ingest.report(),
        "validate": validate.report(),
        "server": server.report(),
        "setup": {"files": files, "frames": frames_n, "requests": requests,
                  "model": MODEL, "python": sys.version.split()[0]},
    }
    return result


def main() -> int:
    result = run_fuzz(int(os.environ.get("BENCH_FUZZ_FILES", 400)),
                      int(os.environ.get("BENCH_FUZZ_FRAMES", 400)),
                      int(os.environ.get("BENCH_FUZZ_REQUESTS", 1000)))
    print(json.dumps(result, indent=2))
    return 1 if result["invariant_failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
