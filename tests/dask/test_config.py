"""``orchestration.task_runner`` and ``conf/search``: checked when the config loads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prefab_mlops.config import ModelSpec
from prefab_mlops.core.errors import ConfigError
from prefab_mlops.orchestration.runners import parallel_slots, task_runner, task_threads
from prefab_mlops.tasks.search import (
    TrialRecord,
    best_record,
    candidate_params,
    candidate_spec,
    check_candidates,
    params_to_check,
)

CONF = Path(__file__).resolve().parents[2] / "conf"


class TestSearchConfig:
    def test_stock_grid_is_eight_candidates_of_the_model(self, load) -> None:
        cfg = load("search=grid").typed
        params = candidate_params(cfg.search)
        assert len(params) == 8
        assert params[0] == {"max_depth": 4, "learning_rate": 0.05, "min_child_weight": 1.0}
        spec = candidate_spec(ModelSpec.from_config(cfg.model), params[-1], threads=1)
        assert spec.params["max_depth"] == 8 and spec.params["n_jobs"] == 1
        assert spec.params["n_estimators"] == cfg.model["n_estimators"]

    def test_default_is_no_search(self, load) -> None:
        assert load().typed.search.strategy == "none"

    @pytest.mark.parametrize(("overrides", "named"), [
        (["search=grid", "search.grid.max_depth=[]"], "has no values for ['max_depth']"),
        (["search=grid", "+search.max_candidates=4"], "makes 8 candidates"),
        (["search.strategy=list"], "'search.candidates' is empty"),
        (["search=optuna", "search.optuna.space.max_depth.low=20"], "space.max_depth"),
        (["search=optuna", "search.optuna.n_trials=0"], "n_trials"),
        (["search.strategy=random"], "'search.strategy' is 'random'"),
        (["orchestration.task_runner=spark"], "'orchestration.task_runner' is 'spark'"),
        (["orchestration.task_runner=dask", "orchestration.dask.address=tcp://x:8786",
          "orchestration.dask.cluster_class=distributed.LocalCluster"], "both set"),
    ])
    def test_bad_config_fails_on_load_with_the_key_named(self, load, overrides: list[str],
                                                        named: str) -> None:
        with pytest.raises(ConfigError, match=None) as err:
            load(*overrides)
        assert named in str(err.value)

    def test_a_candidate_key_the_model_does_not_take_fails_before_any_work(self, load) -> None:
        cfg = load("search=grid", "+search.grid.max_deep=[3]").typed
        with pytest.raises(ConfigError, match=r"search candidate 0 .*max_deep"):
            check_candidates(ModelSpec.from_config(cfg.model), params_to_check(cfg.search),
                             "binary")

    def test_optuna_space_ends_are_checked(self, load) -> None:
        cfg = load("search=optuna").typed
        ends = params_to_check(cfg.search)
        assert ends[0]["max_depth"] == 3 and ends[1]["max_depth"] == 10
        check_candidates(ModelSpec.from_config(cfg.model), ends, "binary")

    def test_best_record_follows_the_metric_direction(self) -> None:
        records = [TrialRecord(0, {}, "complete", 0.5), TrialRecord(1, {}, "failed"),
                   TrialRecord(2, {}, "complete", 0.7), TrialRecord(3, {}, "complete", 0.7)]
        assert best_record(records, "roc_auc").number == 2
        assert best_record(records, "log_loss").number == 0


class TestTaskRunner:
    def test_thread_is_the_default_and_runs_in_process(self, load) -> None:
        from prefect.task_runners import ThreadPoolTaskRunner

        orch = load().typed.orchestration
        runner = task_runner(orch)
        assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 1
        assert task_threads(orch) is None and parallel_slots(orch) == 1

    def test_dask_local_cluster_from_config(self, load) -> None:
        from prefect_dask import DaskTaskRunner

        orch = load("orchestration.task_runner=dask", "orchestration.dask.n_workers=3",
                    "orchestration.dask.memory_limit=1GB").typed.orchestration
        runner = task_runner(orch)
        assert isinstance(runner, DaskTaskRunner)
        assert runner.cluster_kwargs["n_workers"] == 3
        assert runner.cluster_kwargs["memory_limit"] == "1GB"
        assert task_threads(orch) == 1 and parallel_slots(orch) == 3

    def test_dask_address_and_cluster_class(self, load) -> None:
        orch = load("orchestration.task_runner=dask",
                    "orchestration.dask.address=tcp://10.0.0.5:8786").typed.orchestration
        assert task_runner(orch).address == "tcp://10.0.0.5:8786"
        orch = load("orchestration.task_runner=dask",
                    "orchestration.dask.cluster_class=distributed.SpecCluster",
                    "+orchestration.dask.cluster_kwargs.name=per-run").typed.orchestration
        runner = task_runner(orch)  # prefect-dask imports the class by its path here
        assert runner.cluster_class == "distributed.SpecCluster"
        assert runner.cluster_kwargs == {"name": "per-run"}

    def test_missing_dask_extra_is_named(self, tmp_path: Path) -> None:
        # a process where prefect_dask cannot be imported (as without the [dask] extra)
        code = textwrap.dedent(f"""
            import sys
            sys.modules["prefect_dask"] = None
            from prefab_mlops.config import load_config
            from prefab_mlops.orchestration.runners import DaskNotInstalled, task_runner
            cfg = load_config(["paths.root={tmp_path}", "orchestration.task_runner=dask"],
                              config_dir={str(CONF)!r}).typed
            try:
                task_runner(cfg.orchestration)
            except DaskNotInstalled as exc:
                print(exc.fix)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120)
        assert "prefab-mlops[dask]" in out.stdout, out.stderr[-2000:]
