"""Scaling-out benchmark (``make bench-scale``): prints ONE JSON object on stdout.

Sections (each a function returning flat keys, merged by :func:`main`):

* ``search``: the same candidate search (``search=grid``, ``BENCH_SEARCH_CANDIDATES``
  candidates, default 8, on flights) three ways, against a real Prefect server:

  - ``search_dask_s``: ``orchestration.task_runner=dask`` on a ``LocalCluster`` of 2
    worker processes × 1 thread (started beforehand and reached by ``address``; its
    start-up is ``search_dask_cluster_start_s``), each trial with ``n_jobs=1``, on
    warm workers; ``search_dask_cold_s`` is the same search run first, on workers that
    still import everything;
  - ``search_sequential_1t_s``: the thread runner, one trial at a time, ``n_jobs=1``;
  - ``search_sequential_all_cores_s``: the thread runner, one trial at a time, each
    trial with all cores (``n_jobs`` = CPU count).

  ``search_speedup`` = ``search_sequential_1t_s`` / ``search_dask_s`` (ideal: the
  number of worker processes). Nothing is cached (``orchestration.cache.enabled=false``).
  ``search_trial_s``: the trials' own seconds (load, fit, score) summed, per run.

* ``big``: the Dask data engine on flights x ``BENCH_SCALE`` (default 10; 100 is about
  34M rows) as partitioned Parquet on a 2-worker ``LocalCluster`` with
  ``BENCH_WORKER_MEMORY`` (5GB) each, against the pandas path at x ``BENCH_PANDAS_SCALE``
  (10): ``big_rows``, ``big_engine_s``, ``big_peak_worker_rss_mb``,
  ``per_million_rows_vs_pandas``, ``pandas_peak_rss_mb_scale10`` (bench/scale_big.py).

Environment:
    BENCH_SECTIONS=a,b       sections to run: search, big (default: both)
    BENCH_SEARCH_ROWS=N      flights rows sampled for the search (default 0: all 336,776)
    BENCH_SEARCH_CANDIDATES=N  candidates (8 by default; a multiple of 4)
    BENCH_QUIET_WAIT=S       wait up to S s (default 10) for a quiet machine before each run
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/x.py` puts bench/ first, not the repo
    sys.path.insert(0, str(REPO))

from bench._common import log, machine_busy_s, package_version, wait_quiet  # noqa: E402
from prefab_mlops.core.environ import temporary_environ  # noqa: E402
from prefab_mlops.testing.env import offline_environment  # noqa: E402
from prefab_mlops.testing.local_prefect import PrefectServer  # noqa: E402

CONF = str(REPO / "conf")


def _grid(n: int) -> list[str]:
    """``n`` grid candidates (a multiple of 4): depths × learning rates × child weights."""
    depths = [4, 6, 8, 10, 5, 7, 9, 3][: max(1, n // 4)]
    return [f"search.grid.max_depth=[{','.join(map(str, depths))}]",
            "search.grid.learning_rate=[0.05,0.2]", "search.grid.min_child_weight=[1.0,5.0]"]


def search() -> dict[str, Any]:
    """The search section (see the module docstring)."""
    from distributed import LocalCluster
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefab_mlops.config import ModelSpec, TargetSpec, load_config
    from prefab_mlops.flows.search import candidate_search
    from prefab_mlops.orchestration.runners import task_runner
    from prefab_mlops.orchestration.runtime import in_process_run
    from prefab_mlops.tasks.featurize import featurize
    from prefab_mlops.tasks.ingest import ingest
    from prefab_mlops.tasks.search import candidate_params, stage_features

    rows = int(os.environ.get("BENCH_SEARCH_ROWS", "0"))
    n = int(os.environ.get("BENCH_SEARCH_CANDIDATES", "8"))
    quiet = float(os.environ.get("BENCH_QUIET_WAIT", "10"))
    cores = os.cpu_count() or 1
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_dir:
        tmp = Path(tmp_dir)
        base = [f"paths.root={tmp / 'root'}", "tracking=disabled", "search=grid", *_grid(n),
                "orchestration.cache.enabled=false", "model.n_estimators=200",
                *([f"data.sample_rows={rows}"] if rows else [])]

        def cfg(*extra: str) -> Any:
            return load_config([*base, *extra], config_dir=CONF).typed

        c = cfg()
        target = TargetSpec.from_data(c.data)
        t0 = time.perf_counter()
        data = ingest.fn(c.data, c.paths, c.storage, c.seed)
        features = featurize.fn(data, c.features, target, c.seed)
        ref = stage_features.fn(features, str(tmp / "stage"))
        out.update(search_rows=data.rows, search_train_rows=len(features.train),
                   search_candidates=len(candidate_params(c.search)),
                   search_prepare_s=round(time.perf_counter() - t0, 2))
        log(f"search: {data.rows:,} rows, {out['search_candidates']} candidates", "scale")

        with PrefectServer(tmp / "server", startup_timeout=180) as server, \
                temporary_environ({"PREFECT_API_URL": server.url}), \
                temporary_settings({PREFECT_API_URL: server.url}), in_process_run():
            t0 = time.perf_counter()
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=":0")
            out["search_dask_cluster_start_s"] = round(time.perf_counter() - t0, 2)
            runs = {
                # the first run on fresh workers imports Prefect, the stack and our tasks
                # in each worker process; a long-lived cluster pays that once
                "search_dask_cold_s": ("orchestration.task_runner=dask",
                                       f"orchestration.dask.address={cluster.scheduler_address}",
                                       "orchestration.dask.threads_per_worker=1"),
                "search_dask_s": ("orchestration.task_runner=dask",
                                  f"orchestration.dask.address={cluster.scheduler_address}",
                                  "orchestration.dask.threads_per_worker=1"),
                "search_sequential_1t_s": ("orchestration.thread_workers=1", "model.n_jobs=1"),
                "search_sequential_all_cores_s": ("orchestration.thread_workers=1",
                                                  f"model.n_jobs={cores}"),
            }
            best: dict[str, Any] = {}
            load: dict[str, float] = {}
            trial_seconds: dict[str, float] = {}
            try:
                for key, extra in runs.items():
                    rc = cfg(*extra)
                    waited, _ = wait_quiet(quiet)
                    busy0, t0 = machine_busy_s(), time.perf_counter()
                    result = candidate_search.with_options(
                        task_runner=task_runner(rc.orchestration))(
                        ref, ModelSpec.from_config(rc.model), rc.search, rc.orchestration,
                        rc.seed, rc.evaluate.primary_metric, rc.evaluate.threshold,
                        rc.register.model_name)
                    seconds = time.perf_counter() - t0
                    out[key] = round(seconds, 2)
                    load[key] = round((machine_busy_s() - busy0) / seconds, 2)
                    best[key] = (result.best.number, round(result.best.score, 6))
                    failed = sum(r.status != "complete" for r in result.records)
                    # the fits themselves, summed: what the runner spreads
                    trial_seconds[key] = round(sum(r.seconds or 0.0 for r in result.records), 2)
                    log(f"{key}: {seconds:.1f}s (waited {waited}s for quiet), best "
                        f"{best[key]}, {failed} failed", "scale")
            finally:
                cluster.close()
    out["search_speedup"] = round(out["search_sequential_1t_s"] / out["search_dask_s"], 2)
    out["search_dask_vs_all_cores"] = round(
        out["search_sequential_all_cores_s"] / out["search_dask_s"], 2)
    out["search_same_best"] = len(set(best.values())) == 1
    out["search_best"] = best["search_dask_s"]
    out["search_trial_s"] = trial_seconds
    out["search_machine_cores_busy"] = load
    out["cores"] = cores
    return out


def big() -> dict[str, Any]:
    """The ``big`` section: bench/scale_big.py."""
    from bench.scale_big import big_section

    return big_section()


SECTIONS: dict[str, Callable[[], dict[str, Any]]] = {"search": search, "big": big}


def main() -> int:
    names = [s for s in os.environ.get("BENCH_SECTIONS", ",".join(SECTIONS)).split(",") if s]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        log(f"unknown sections {unknown}; known: {list(SECTIONS)}", "scale")
        return 2
    result: dict[str, Any] = {"versions": {d: package_version(d) for d in (
        "prefect", "prefect-dask", "dask", "distributed", "xgboost-cpu", "xgboost", "optuna")}}
    with tempfile.TemporaryDirectory(prefix="bench-scale-home-") as home, \
            offline_environment(Path(home)):
        for name in names:
            result.update(SECTIONS[name]())
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
