"""Parallel candidate search through both task runners, on real flights data.

The Dask runner runs against a real two-process ``LocalCluster`` and a real Prefect
server (module fixtures: a Dask runner's flows against the ephemeral server log
"database is locked"; this process and the workers use the server's API); the thread
runner runs the same flow and config in process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prefab_mlops.core.environ import temporary_environ
from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.storage import LocalObjectStore
from prefab_mlops.flows.training import training
from prefab_mlops.tasks.search import SearchError
from prefab_mlops.testing.local_prefect import PrefectServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CONF = str(Path(__file__).resolve().parents[2] / "conf")
SMALL = ["data.sample_rows=4000", "model.n_estimators=60", "model.early_stopping_rounds=10",
         "tracking=disabled"]
GRID = ["search=grid", "search.grid.max_depth=[3,6]", "search.grid.learning_rate=[0.05,0.3]",
        "~search.grid.min_child_weight"]


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server; this process and later Dask workers use its API."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefab_mlops.orchestration.runtime import in_process_run

    with PrefectServer(tmp_path_factory.mktemp("prefect-server"), startup_timeout=180) as server:
        # environment for the worker processes the cluster spawns, settings for this one
        with temporary_environ({"PREFECT_API_URL": server.url}), \
                temporary_settings({PREFECT_API_URL: server.url}), in_process_run():
            yield server.url


@pytest.fixture(scope="module")
def search_cluster(prefect_api: str) -> Iterator[Any]:
    """Two worker processes with one thread each, on loopback. This process's environment
    is put back afterwards (a ``LocalCluster`` sets ``OMP_NUM_THREADS`` and friends in it;
    see conftest.py)."""
    from distributed import LocalCluster

    environ = dict(os.environ)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=":0", memory_limit="2GB")
    try:
        yield cluster
    finally:
        cluster.close()
        os.environ.clear()
        os.environ.update(environ)


def run(root: Path, *overrides: str, search: list[str] = GRID) -> dict[str, Any]:
    return training(overrides=[f"paths.root={root}", *SMALL, *search, *overrides],
                    config_dir=CONF)


def dask_runner(cluster: Any) -> list[str]:
    return ["orchestration.task_runner=dask",
            f"orchestration.dask.address={cluster.scheduler_address}"]


def registry(root: Path) -> ModelRegistry:
    return ModelRegistry(LocalObjectStore(root / "registry"))


def trial_runs(flow_run_id: str, expect: int) -> list[Any]:
    """The trial task runs of the search subflow of a training run, once ``expect`` of
    them are recorded and all are terminal (task-run states reach the server as events,
    so the last ones can land after the flow run has returned)."""
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            subflows = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[UUID(flow_run_id)])))
            runs = []
            for sub in subflows:
                runs += client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id={"any_": [sub.id]}))
        trials = [r for r in runs if r.name.startswith("trial-")]
        final = all(r.state and r.state.is_final() for r in trials)
        if (final and len(trials) >= expect) or time.monotonic() > deadline:
            return trials
        time.sleep(0.2)


@pytest.fixture(scope="module")
def on_dask(tmp_path_factory: pytest.TempPathFactory, search_cluster: Any,
            dask_cluster: Any) -> tuple[Path, dict[str, Any], list[str]]:
    """One search of four candidates on the Dask runner: its root, its summary and the
    keys of the tasks the search cluster's workers ran. ``dask_cluster`` is another
    cluster whose client is this process's default (prefect-dask's own runner would run
    the trials there, whatever address it was given)."""
    from prefab_mlops.testing.dask_faults import executing_markers

    root = tmp_path_factory.mktemp("on-dask")
    with executing_markers(search_cluster.scheduler_address, root / "executing") as marks:
        summary = run(root, *dask_runner(search_cluster))
    return root, summary, [m.read_text() for m in marks.glob("[0-9]*")]


class TestSearchOnBothRunners:
    def test_dask_and_thread_pick_the_same_best_of_four(
            self, tmp_path: Path, on_dask: tuple[Path, dict[str, Any], list[str]]) -> None:
        root, dask_summary, ran_on_search_cluster = on_dask
        # the trials ran on the configured cluster, not the default client's
        assert any("run_trial" in key for key in ran_on_search_cluster), ran_on_search_cluster
        in_threads = run(tmp_path / "thread")
        for s in (dask_summary, in_threads):
            assert s["search"]["trials"] == 4 and s["search"]["failed"] == 0
            assert s["version"] == 1
        # the same candidates scored the same on the same split, whichever runner ran them
        best = dask_summary["search"]["best"]
        assert best["params"] == in_threads["search"]["best"]["params"]
        assert best["score"] == pytest.approx(in_threads["search"]["best"]["score"], abs=1e-9)
        # the registered model is the best trial's, with the runner's threads per trial
        version = registry(root).get_version("flights-binary", 1)
        assert {k: version.params[k] for k in best["params"]} == best["params"]
        assert version.params["n_jobs"] == 1
        trials = trial_runs(dask_summary["flow_run_id"], 4)
        assert sorted(r.name for r in trials) == sorted(
            f"trial-max_depth={d},learning_rate={r}" for d in (3, 6) for r in (0.05, 0.3))
        assert all(r.state.is_completed() for r in trials)

    def test_rerun_resumes_from_cached_trials(
            self, on_dask: tuple[Path, dict[str, Any], list[str]], search_cluster: Any
    ) -> None:
        root, _, _ = on_dask
        again = run(root, *dask_runner(search_cluster), "search.grid.max_depth=[3,8,6]")
        states = {r.name: r.state.name for r in trial_runs(again["flow_run_id"], 6)}
        # the four candidates of the first run are cache hits although two are numbered
        # differently now (max_depth=8 comes before 6): only the two new ones train
        assert sorted(states.values()).count("Cached") == 4, states
        assert again["search"]["trials"] == 6 and again["search"]["failed"] == 0
        assert all(states[n] == "Cached" for n in states if "max_depth=8" not in n), states


class TestWorkerLoss:
    def test_a_worker_killed_mid_search_still_completes(self, tmp_path: Path,
                                                        search_cluster: Any,
                                                        dask_cluster: Any) -> None:
        """With another cluster's client as this process's default (``dask_cluster``):
        the trials must run, and a worker die, on the configured one."""
        from prefab_mlops.testing.dask_faults import kill_a_worker_running

        # the first worker to start a trial is killed while it runs it (the worker marks
        # what it executes: sampling CPU or polling the scheduler missed short trials)
        with kill_a_worker_running(search_cluster.scheduler_address, "run_trial",
                                   tmp_path / "executing") as killer:
            try:
                s = run(tmp_path, *dask_runner(search_cluster))
            except SearchError:
                # a named failure is allowed; then nothing may be registered
                assert killer.killed
                assert registry(tmp_path).versions("flights-binary") == []
                return
        assert not killer.errors, f"the killer failed: {killer.errors[0]!r}"
        assert killer.killed, "no worker started a trial"
        print("search after a worker was killed:", s["search"])
        assert s["search"]["trials"] == 4
        assert s["search"]["failed"] < 4
        assert s["version"] == 1
        # the cluster replaced the worker for the next tests
        search_cluster.wait_for_workers(2, timeout=60)


class TestOptunaStudy:
    def test_study_runs_in_batches_on_dask_and_a_rerun_resumes_it(
            self, tmp_path: Path, search_cluster: Any) -> None:
        import optuna

        storage = f"sqlite:///{tmp_path / 'study.db'}"
        study = ["search=optuna", "search.optuna.n_trials=4", f"search.optuna.storage={storage}",
                 "~search.optuna.space.subsample", "~search.optuna.space.min_child_weight"]
        first = run(tmp_path, *dask_runner(search_cluster), search=study)
        assert first["search"]["trials"] == 4 and first["search"]["failed"] == 0
        # four different candidates (trial runs are named by their params), then the best
        first_runs = trial_runs(first["flow_run_id"], 5)
        assert len(first_runs) == 5 and len({r.name for r in first_runs}) == 4
        again = run(tmp_path, *dask_runner(search_cluster), "search.optuna.n_trials=6",
                    search=study)
        assert again["search"]["study"] == first["search"]["study"]
        assert again["search"]["trials"] == 6
        # only the two missing trials trained; the best's model came from the cache
        states = [r.state.name for r in trial_runs(again["flow_run_id"], 3)]
        assert states.count("Completed") == 2 and states.count("Cached") == 1, states
        # every batch proposed new points: no candidate was tried twice
        study_obj = optuna.load_study(study_name=again["search"]["study"], storage=storage)
        tried = [tuple(sorted(t.params.items())) for t in study_obj.trials]
        assert len(set(tried)) == 6, tried
        (summary,) = optuna.get_all_study_summaries(storage)
        assert summary.n_trials == 6 and summary.best_trial.value == pytest.approx(
            again["search"]["best"]["score"])
