"""The training flow end to end inside Prefect's test harness, on real data.

Covers: a full run that registers and promotes, cross-run cache hits, the partial
rerun after a hyperparameter change, the refresh switch, retries of transient
failures (and no retries for bad data), the champion compared only on test rows it
was not trained on after rows are appended, bad input leaving the registry
untouched, the quality-gate modes, a champion that moves while the run decides, and
the diamonds regression run.
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path
from uuid import UUID

import numpy as np
import pandas as pd
import pytest

from prefab_mlops.core.errors import (
    DataFormatError,
    DataSourceNotFound,
    DataValidationError,
    QualityGateError,
    TransientError,
)
from prefab_mlops.core.manifest import ModelVersion
from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.storage import LocalObjectStore
from prefab_mlops.flows.training import training

pytestmark = pytest.mark.usefixtures("prefect_harness")

CONF = str(Path(__file__).resolve().parents[2] / "conf")
HEAVY = ("ingest", "validate", "featurize", "train", "evaluate")
FAST = ["data.sample_rows=20000", "model.n_estimators=40", "tracking=disabled",
        "orchestration.tasks.ingest.retry_delay_seconds=[0.1]"]


def run(root: Path, *overrides: str, refresh: bool = False) -> dict:
    return training(overrides=[f"paths.root={root}", *FAST, *overrides], config_dir=CONF,
                    refresh_cache=refresh)


def task_runs(flow_run_id: str, expect: int | None = None) -> dict[str, object]:
    """Task runs of a flow run by task name (polls until all are terminal)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
    deadline = time.monotonic() + 15
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=flt)
        done = all(r.state and r.state.is_final() for r in runs)
        if (done and (expect is None or len(runs) >= expect)) or time.monotonic() > deadline:
            return {r.name.rsplit("-", 1)[0]: r for r in runs}
        time.sleep(0.2)


def states(flow_run_id: str) -> dict[str, str]:
    return {k: r.state.name for k, r in task_runs(flow_run_id, expect=len(HEAVY)).items()}


def registry(root: Path) -> ModelRegistry:
    return ModelRegistry(LocalObjectStore(root / "registry"))


class TestTrainingRun:
    def test_registers_promotes_and_records_lineage(self, tmp_path: Path) -> None:
        s = run(tmp_path, "tracking=wandb")
        assert s["version"] == 1 and s["decision"]["promote"] is True
        assert s["metrics"]["roc_auc"] > 0.6
        reg = registry(tmp_path)
        prod = reg.alias("flights-binary", "production")
        assert prod is not None and prod.version == 1
        mv = reg.get_version("flights-binary", 1)
        assert len(mv.model_sha256) == 64
        assert mv.data.fingerprint == s["data"]["fingerprint"]
        assert mv.data.snapshot_uri is not None and Path(mv.data.snapshot_uri).is_file()
        assert mv.config["model"]["n_estimators"] == 40
        assert {"prefect", "pandas", "scikit-learn", "python"} <= set(mv.packages)
        assert {"plots/roc.png", "plots/pr.png", "plots/importance.png",
                "reference.parquet"} <= set(mv.files)
        loaded = reg.load("flights-binary", alias="production")
        assert hasattr(loaded.model, "predict_proba")
        # W&B offline: one run, all files under the project
        assert s["tracking"]["mode"] == "offline"
        assert Path(s["tracking"]["run_dir"]).resolve().is_relative_to(tmp_path.resolve())
        runs = list((tmp_path / "wandb").glob("offline-run-*"))
        assert len(runs) == 1

    def test_leaves_ui_artifacts(self, tmp_path: Path) -> None:
        from prefect import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        s = run(tmp_path)
        flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(s["flow_run_id"])]))
        with get_client(sync_client=True) as client:
            arts = client.read_artifacts(artifact_filter=flt)
        by_key = {a.key: a for a in arts}
        assert {"flights-binary-validation", "flights-binary-metrics",
                "flights-binary-training-summary"} <= set(by_key)
        summary = by_key["flights-binary-training-summary"].data
        assert "v1" in summary and "PROMOTED" in summary and "roc_auc" in summary
        assert by_key["flights-binary-metrics"].type == "table"


class TestCaching:
    def test_rerun_is_cached_and_hparam_change_reruns_only_downstream(
            self, tmp_path: Path) -> None:
        first = run(tmp_path)
        assert all(states(first["flow_run_id"])[t] == "Completed" for t in HEAVY)

        again = run(tmp_path)
        st = states(again["flow_run_id"])
        assert {t: st[t] for t in HEAVY} == {t: "Cached" for t in HEAVY}
        # identical model: same version, nothing new promoted
        assert again["version"] == first["version"] == 1
        assert again["decision"]["promote"] is False
        assert len(registry(tmp_path).versions("flights-binary")) == 1

        changed = run(tmp_path, "model.n_estimators=41")
        st = states(changed["flow_run_id"])
        assert [st[t] for t in ("ingest", "validate", "featurize")] == ["Cached"] * 3
        assert [st[t] for t in ("train", "evaluate")] == ["Completed"] * 2
        assert changed["version"] == 2

        forced = run(tmp_path, refresh=True)
        st = states(forced["flow_run_id"])
        assert all(st[t] == "Completed" for t in HEAVY)

    def test_changed_data_file_invalidates_ingest(self, tmp_path: Path,
                                                   flights_frame) -> None:
        csv = tmp_path / "f.csv"
        flights_frame.to_csv(csv, index=False)
        a = run(tmp_path, f"data.uri={csv}")
        flights_frame.iloc[:-10].to_csv(csv, index=False)
        b = run(tmp_path, f"data.uri={csv}")
        assert states(b["flow_run_id"])["ingest"] == "Completed"
        assert a["data"]["fingerprint"] != b["data"]["fingerprint"]


class TestRetries:
    def test_transient_failure_is_retried(self, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        import prefab_mlops.tasks.ingest as ingest_mod

        real = ingest_mod.read_source
        calls = {"n": 0}

        def flaky(loc, s3):
            calls["n"] += 1
            if calls["n"] == 1:
                raise TransientError("simulated S3 hiccup")
            return real(loc, s3)

        monkeypatch.setattr(ingest_mod, "read_source", flaky)
        s = run(tmp_path, refresh=True)
        assert calls["n"] == 2
        ingest_run = task_runs(s["flow_run_id"])["ingest"]
        assert ingest_run.run_count == 2 and ingest_run.state.name == "Completed"

    def test_bad_data_fails_at_once_without_retries(self, tmp_path: Path) -> None:
        from prefect import get_client
        from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
        from prefect.client.schemas.sorting import TaskRunSort

        bad = tmp_path / "missing.csv"
        with pytest.raises(DataSourceNotFound, match="missing.csv"):
            run(tmp_path, f"data.uri={bad}", "orchestration.tasks.ingest.retries=3")
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="ingest-")),
                sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=1)
        assert runs[0].state.is_failed() and runs[0].run_count == 1


class TestChampionOnAGrowingTable:
    """Rows are appended to the data between two runs (as in retraining on drift): the
    champion is compared only on new test rows it was not trained on."""

    @staticmethod
    def two_runs(tmp_path: Path, rows, *overrides: str) -> tuple[dict, dict]:
        csv = tmp_path / "flights.csv"
        shuffled = rows.sample(frac=1.0, random_state=5)
        shuffled.iloc[:6000].to_csv(csv, index=False)
        args = (f"data.uri={csv}", "promote.require_gate=false", *overrides)
        first = run(tmp_path, *args)
        shuffled.iloc[:9000].to_csv(csv, index=False)  # 3,000 rows appended
        return first, run(tmp_path, *args)

    def test_hash_split_leaves_no_champion_training_rows_in_the_test_split(
            self, tmp_path: Path, flights_frame) -> None:
        first, second = self.two_runs(tmp_path, flights_frame)
        assert first["comparison"]["status"] == "no_champion"
        assert first["decision"]["promote"] is True  # v1 is the champion of the second run
        c = second["comparison"]
        assert (c["status"], c["champion_version"], c["checked"]) == ("compared", 1, True)
        assert c["excluded_rows"] == 0 and c["compared_rows"] == c["test_rows"] > 1500
        assert second["champion_metrics"] == c["champion"]
        assert c["challenger"] == second["metrics"]  # the whole test split was compared
        mv = registry(tmp_path).get_version("flights-binary", 2)
        assert mv.data.split is not None and mv.data.split.strategy == "hash"
        assert mv.champion is not None and mv.champion.compared_rows == c["compared_rows"]
        assert "train_rows.npy" in mv.files

    def test_reshuffled_split_excludes_the_champion_training_rows(
            self, tmp_path: Path, flights_frame) -> None:
        from prefect import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        from prefab_mlops.config import TargetSpec, load_config
        from prefab_mlops.tasks.featurize import featurize
        from prefab_mlops.tasks.ingest import ingest

        _, second = self.two_runs(tmp_path, flights_frame, "features.split.strategy=random")
        c = second["comparison"]
        # recompute independently which new test rows were v1's train/validation rows
        cfg = load_config([f"paths.root={tmp_path}", *FAST, f"data.uri={tmp_path}/flights.csv",
                           "features.split.strategy=random"], config_dir=CONF).typed
        data = ingest.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
        test = featurize.fn(data, cfg.features, TargetSpec.from_data(cfg.data), cfg.seed).test
        reg = registry(tmp_path)
        overlap = int(reg.trained_rows(reg.get_version("flights-binary", 1)).contains(
            test.X).sum())
        assert overlap > 0.25 * len(test)
        assert (c["status"], c["test_rows"], c["excluded_rows"]) == ("compared", len(test),
                                                                     overlap)
        assert c["compared_rows"] == len(test) - overlap
        assert c["challenger"]["n_test"] == c["champion"]["n_test"] == c["compared_rows"]
        dec = second["decision"]
        assert dec["compared_rows"] == c["compared_rows"] and dec["excluded_rows"] == overlap
        assert f"{overlap:,} of them excluded as v1's training rows" in dec["reason"]

        flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[UUID(second["flow_run_id"])]))
        with get_client(sync_client=True) as client:
            arts = {a.key: a for a in client.read_artifacts(artifact_filter=flt)}
        summary = arts["flights-binary-training-summary"].data
        assert (f"**Champion comparison**: on {len(test) - overlap:,} of {len(test):,} test "
                f"rows; {overlap:,} excluded as v1's training rows") in summary
        assert "champion on compared rows" in summary


class TestBadInputLeavesRegistryAlone:
    def test_failed_run_never_replaces_production(self, tmp_path: Path, flights_frame) -> None:
        good = run(tmp_path)
        reg = registry(tmp_path)
        before = (len(reg.versions("flights-binary")),
                  reg.alias("flights-binary", "production").version)

        bad_carrier = flights_frame.copy()
        bad_carrier.loc[:5, "carrier"] = "ZZ"
        bad_carrier.loc[10:12, "distance"] = -5
        csv = tmp_path / "bad.csv"
        bad_carrier.to_csv(csv, index=False)
        with pytest.raises(DataValidationError) as err:
            run(tmp_path, f"data.uri={csv}")
        assert "carrier" in str(err.value) and "distance" in str(err.value)

        empty = tmp_path / "empty.csv"
        empty.write_bytes(b"")
        with pytest.raises(DataFormatError, match="empty.csv"):
            run(tmp_path, f"data.uri={empty}")

        after = (len(reg.versions("flights-binary")),
                 reg.alias("flights-binary", "production").version)
        assert after == before == (1, good["version"])


class TestQualityGate:
    def test_fail_mode_stops_before_registering(self, tmp_path: Path) -> None:
        with pytest.raises(QualityGateError, match="roc_auc"):
            run(tmp_path, "evaluate.gate.roc_auc.min=0.99", "evaluate.on_gate_failure=fail")
        assert registry(tmp_path).versions("flights-binary") == []

    def test_warn_mode_registers_but_never_promotes(self, tmp_path: Path) -> None:
        s = run(tmp_path, "evaluate.gate.roc_auc.min=0.99")
        assert s["gate"]["passed"] is False and s["decision"]["promote"] is False
        reg = registry(tmp_path)
        assert [v.version for v in reg.versions("flights-binary")] == [1]
        assert reg.alias("flights-binary", "production") is None
        assert reg.alias("flights-binary", "candidate").version == 1


class CoinFlip:
    """A stand-in model that scores every row 0.5 (ROC AUC 0.5 on any split)."""

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.full((len(X), 2), 0.5)


class TestChampionMovesDuringTheRun:
    def test_the_run_decides_again_against_the_new_champion(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Another run promotes its model after this run decided against v1: the
        promotion is redone against that model, and the summary says so."""
        import prefab_mlops.flows.training as training_mod

        weak = run(tmp_path, "model.n_estimators=2")
        assert (weak["version"], weak["decision"]["promote"]) == (1, True)  # the champion
        reg = registry(tmp_path)
        real_decide = training_mod.decide_promotion
        other: list[int] = []

        def decide_then_lose_the_race(*args, **kwargs):  # type: ignore[no-untyped-def]
            decision = real_decide(*args, **kwargs)
            mv = reg.register(ModelVersion(
                model_name="flights-binary", version=0, created_at="",
                fingerprint="another-run", model_key="", model_sha256="",
                problem_type="binary"), pickle.dumps(CoinFlip()))
            reg.set_alias("flights-binary", "production", mv.version, event="promote")
            other.append(mv.version)
            return decision

        monkeypatch.setattr(training_mod, "decide_promotion", decide_then_lose_the_race)
        s = run(tmp_path)

        assert (s["version"], other) == (2, [3])
        dec = s["decision"]
        assert (dec["promote"], dec["champion_version"]) == (True, 3)
        assert dec["champion_value"] == 0.5 and s["champion_metrics"]["roc_auc"] == 0.5
        # the summary's comparison is the one the final decision was made with: v3 was
        # registered without its training rows, so it was scored on the whole test split
        c = s["comparison"]
        assert (c["status"], c["champion_version"], c["checked"]) == ("compared", 3, False)
        assert c["compared_rows"] == c["test_rows"] and c["excluded_rows"] == 0
        assert c["champion"]["roc_auc"] == 0.5 and c["challenger"] == s["metrics"]
        assert f"on all {c['test_rows']:,} test rows (v3's training rows unknown)" in (
            dec["reason"])
        assert s["production_version"] == 2
        assert reg.alias("flights-binary", "production").version == 2
        last = [e for e in reg.events("flights-binary") if e["event"] == "promote"][-1]
        assert (last["version"], last["previous"], last["attempt"]) == (2, 3, 2)
        assert last["decision"] == dec
        # what was registered with v2 is the comparison it was first decided on, with v1
        champion = registry(tmp_path).get_version("flights-binary", 2).champion
        assert champion is not None and champion.version == 1

        from prefect import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(s["flow_run_id"])]))
        with get_client(sync_client=True) as client:
            arts = {a.key: a for a in client.read_artifacts(artifact_filter=flt)}
        summary = arts["flights-binary-training-summary"].data
        assert (f"**Champion comparison**: on {c['test_rows']:,} of {c['test_rows']:,} test "
                "rows; 0 excluded as v3's training rows (v3's training rows unknown)") in summary
        assert "**Promotion**: PROMOTED to production" in summary and "v3's 0.5000" in summary


@pytest.mark.slow
class TestFullData:
    def test_diamonds_regression_end_to_end(self, tmp_path: Path) -> None:
        s = training(overrides=[f"paths.root={tmp_path}", "experiment=diamonds",
                                "tracking=disabled"], config_dir=CONF)
        assert s["model_name"] == "diamonds-regression"
        assert s["metrics"]["r2"] > 0.95 and s["metrics"]["rmse"] < 800
        assert s["decision"]["promote"] is True
        mv = registry(tmp_path).get_version("diamonds-regression", 1)
        assert "plots/residuals.png" in mv.files and mv.data.rows == 53_940

    def test_default_flights_run(self, tmp_path: Path) -> None:
        s = training(overrides=[f"paths.root={tmp_path}", "tracking=disabled"], config_dir=CONF)
        assert s["data"]["rows"] == 327_346
        assert s["metrics"]["roc_auc"] > 0.75 and s["gate"]["passed"]
        assert json.loads(json.dumps(s, default=str))["version"] == 1
