"""Parallel candidate search through both task runners, on real flights data.

The Dask runner runs against a real two-process ``LocalCluster`` (tests/dask/conftest.py)
and a real Prefect server; the thread runner runs the same flow and config in process.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.storage import LocalObjectStore
from prefab_mlops.flows.training import training
from prefab_mlops.tasks.search import SearchError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CONF = str(Path(__file__).resolve().parents[2] / "conf")
SMALL = ["data.sample_rows=4000", "model.n_estimators=60", "model.early_stopping_rounds=10",
         "tracking=disabled", "search=grid", "search.grid.max_depth=[3,6]",
         "search.grid.learning_rate=[0.05,0.3]", "~search.grid.min_child_weight"]


def run(root: Path, *overrides: str, refresh: bool = False) -> dict[str, Any]:
    return training(overrides=[f"paths.root={root}", *SMALL, *overrides], config_dir=CONF,
                    refresh_cache=refresh)


def dask_runner(cluster: Any) -> list[str]:
    return ["orchestration.task_runner=dask",
            f"orchestration.dask.address={cluster.scheduler_address}"]


def registry(root: Path) -> ModelRegistry:
    return ModelRegistry(LocalObjectStore(root / "registry"))


def trial_runs(flow_run_id: str) -> list[Any]:
    """The trial task runs of the search subflow of a training run."""
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        subflows = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[UUID(flow_run_id)])))
        runs = []
        for sub in subflows:
            runs += client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [sub.id]}))
    return [r for r in runs if r.name.startswith("trial-")]


class TestSearchOnBothRunners:
    def test_dask_and_thread_pick_the_same_best_of_four(self, tmp_path: Path,
                                                         dask_cluster: Any) -> None:
        on_dask = run(tmp_path / "dask", *dask_runner(dask_cluster))
        in_threads = run(tmp_path / "thread")
        for s in (on_dask, in_threads):
            assert s["search"]["trials"] == 4 and s["search"]["failed"] == 0
            assert s["version"] == 1
        # the same candidates scored the same on the same split, whichever runner ran them
        assert on_dask["search"]["best"]["params"] == in_threads["search"]["best"]["params"]
        assert on_dask["search"]["best"]["score"] == pytest.approx(
            in_threads["search"]["best"]["score"], abs=1e-9)
        # the registered model is the best trial's (n_jobs from the runner's threads)
        version = registry(tmp_path / "dask").get_version("flights-binary", 1)
        best = on_dask["search"]["best"]["params"]
        assert {k: version.params[k] for k in best} == best
        assert version.params["n_jobs"] == 1
        # every trial ran in a worker process of the cluster, not in this one
        pids = {p for p in dask_cluster.scheduler_info["workers"]}
        assert len(pids) == 2
        trials = trial_runs(on_dask["flow_run_id"])
        assert sorted(r.name for r in trials) == [f"trial-{i}" for i in range(4)]
        assert all(r.state.is_completed() for r in trials)

    def test_rerun_resumes_from_cached_trials(self, tmp_path: Path, dask_cluster: Any) -> None:
        first = run(tmp_path, *dask_runner(dask_cluster))
        again = run(tmp_path, *dask_runner(dask_cluster), "search.grid.max_depth=[3,6,8]")
        states = {r.name: r.state.name for r in trial_runs(again["flow_run_id"])}
        # trials 0..3 of the old grid are not the new grid's 0..3 (max_depth=8 comes in
        # between), so count by params: the four old candidates are cache hits
        assert sorted(states.values()).count("Cached") == 4, states
        assert again["search"]["trials"] == 6
        assert first["search"]["failed"] == again["search"]["failed"] == 0


class TestWorkerLoss:
    def test_a_worker_killed_mid_search_still_completes(self, tmp_path: Path,
                                                        dask_cluster: Any) -> None:
        from distributed import Client

        slow = ["data.sample_rows=20000", "model.n_estimators=400",
                "model.early_stopping_rounds=null", "search.grid.max_depth=[6,8]"]
        killed: list[int] = []

        def kill_a_busy_worker() -> None:
            with Client(dask_cluster.scheduler_address, timeout=30) as client:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and not killed:
                    busy = [w for w, tasks in client.processing().items() if tasks]
                    if busy:
                        time.sleep(0.5)  # inside the fit
                        pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                        return
                    time.sleep(0.05)

        killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
        killer.start()
        try:
            s = run(tmp_path, *dask_runner(dask_cluster), *slow)
        except SearchError:
            # a named failure is allowed; then nothing may be registered
            assert killed
            assert registry(tmp_path).versions("flights-binary") == []
            return
        finally:
            killer.join(30)
        assert killed, "no worker was busy during the search"
        assert s["search"]["trials"] == 4
        assert s["search"]["failed"] < 4
        assert s["version"] == 1
        # the cluster replaced the worker for the next tests
        dask_cluster.wait_for_workers(2, timeout=60)
