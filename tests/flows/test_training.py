"""The training flow end to end inside Prefect's test harness, on real data.

Covers: a full run that registers and promotes, cross-run cache hits, the partial
rerun after a hyperparameter change, the refresh switch, retries of transient
failures (and no retries for bad data), the champion compared only on test rows it
was not trained on after rows are appended, bad input leaving the registry
untouched, the quality-gate modes, the default baseline gate on a weak but learnable
regression and on noise, the latest evaluation shown for a re-registered model, a
champion that moves while the run decides, and the diamonds regression run.
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Iterable
from pathlib import Path
from uuid import UUID

import numpy as np
import pandas as pd
import pytest

from prefab_mlops.core.errors import (
    DataFormatError,
    DataSourceNotFound,
    DataValidationError,
    LeakageError,
    QualityGateError,
    TransientError,
)
from prefab_mlops.core.manifest import ModelVersion
from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.storage import LocalObjectStore
from prefab_mlops.flows.training import training

pytestmark = pytest.mark.usefixtures("prefect_harness")

CONF = str(Path(__file__).resolve().parents[2] / "conf")
HEAVY = ("ingest", "validate", "featurize", "check-leakage", "train", "evaluate")
FAST = ["data.sample_rows=20000", "model.n_estimators=40", "tracking=disabled",
        "orchestration.tasks.ingest.retry_delay_seconds=[0.1]"]


def run(root: Path, *overrides: str, refresh: bool = False) -> dict:
    return training(overrides=[f"paths.root={root}", *FAST, *overrides], config_dir=CONF,
                    refresh_cache=refresh)


def task_runs(flow_run_id: str, expect: Iterable[str] = HEAVY) -> dict[str, object]:
    """Task runs of a flow run by task name, once every task named in ``expect`` is
    recorded and all are terminal (task-run states reach the server as events, so the
    last ones can land after the flow run has returned)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=flt)
        by_name = {r.name.rsplit("-", 1)[0]: r for r in runs}
        done = all(r.state and r.state.is_final() for r in runs)
        if (done and set(expect) <= set(by_name)) or time.monotonic() > deadline:
            return by_name
        time.sleep(0.2)


def states(flow_run_id: str, expect: Iterable[str] = HEAVY) -> dict[str, str]:
    return {k: r.state.name for k, r in task_runs(flow_run_id, expect).items()}


def registry(root: Path) -> ModelRegistry:
    return ModelRegistry(LocalObjectStore(root / "registry"))


class TestTrainingRun:
    def test_registers_promotes_and_records_lineage(self, tmp_path: Path) -> None:
        s = run(tmp_path, "tracking=wandb")
        assert s["version"] == 1 and s["decision"]["promote"] is True
        assert s["metrics"]["roc_auc"] > 0.6
        assert (s["gate"]["passed"], s["gate"]["decided_by"]) == (True, ["baseline"])
        assert s["gate"]["baseline"]["value"] == 0.5  # the class prior's ROC AUC
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
        # the track task read the registered model file (sha256-checked) and logged it
        assert s["tracking"]["artifact"] == "flights-binary"

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
        assert [st[t] for t in ("ingest", "validate", "featurize", "check-leakage")
                ] == ["Cached"] * 4
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
        with pytest.raises(QualityGateError, match="absolute rule: roc_auc"):
            run(tmp_path, "+evaluate.gate.roc_auc.min=0.99", "evaluate.on_gate_failure=fail")
        assert registry(tmp_path).versions("flights-binary") == []

    def test_warn_mode_registers_but_never_promotes(self, tmp_path: Path) -> None:
        from prefab_mlops.flows.training import format_summary

        s = run(tmp_path, "+evaluate.gate.roc_auc.min=0.99")
        assert s["gate"]["passed"] is False and s["decision"]["promote"] is False
        assert s["gate"]["decided_by"] == ["absolute"]
        assert s["decision"]["reason"].startswith("quality gate failed: absolute rule: "
                                                  "roc_auc ")
        reg = registry(tmp_path)
        assert [v.version for v in reg.versions("flights-binary")] == [1]
        assert reg.alias("flights-binary", "production") is None
        assert reg.alias("flights-binary", "candidate").version == 1
        # nothing was promoted into an empty registry: said as such
        assert s["production_version"] is None
        text = format_summary(s)
        assert text.endswith("\n  no production model yet") and "vNone" not in text


def diabetes_run(root: Path, *overrides: str, noise: bool = False) -> dict:
    """A training run on scikit-learn's diabetes data (or on it with a shuffled target)."""
    from tests.conftest import diabetes_frame, diabetes_overrides

    name = "noise" if noise else "diabetes"
    csv = root / f"{name}.csv"
    diabetes_frame(noise).to_csv(csv, index=False)
    return training(overrides=[f"paths.root={root}", "tracking=disabled",
                               *diabetes_overrides(csv, name), *overrides], config_dir=CONF)


def summary_artifact(flow_run_id: str, model_name: str) -> str:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
    with get_client(sync_client=True) as client:
        arts = {a.key: a for a in client.read_artifacts(artifact_filter=flt)}
    return arts[f"{model_name}-training-summary"].data


class TestBaselineGate:
    """The default gate works on any learnable data: it compares the model with a naive
    baseline on the same test split, not with thresholds that suit one data set."""

    def test_weak_but_learnable_regression_is_promoted(self, tmp_path: Path) -> None:
        from prefab_mlops.flows.training import format_summary

        s = diabetes_run(tmp_path)
        assert 0.3 < s["metrics"]["r2"] < 0.6  # the old stock gate wanted r2 >= 0.8
        gate = s["gate"]
        assert (gate["passed"], gate["decided_by"]) == (True, ["baseline"])
        assert gate["baseline"]["strategy"] == "mean"
        assert s["metrics"]["rmse"] <= gate["baseline"]["required"] == pytest.approx(
            0.95 * gate["baseline"]["value"])
        assert s["decision"]["promote"] is True and s["production_version"] == 1
        assert s["decision"]["reason"].startswith(
            "no production model yet; quality gate passed: baseline rule: rmse ")
        text = format_summary(s)
        assert "  quality gate: passed: baseline rule: rmse " in text
        assert text.endswith("\n  production is now v1")
        md = summary_artifact(s["flow_run_id"], "diabetes-regression")
        assert "**Quality gate**: passed: baseline rule: rmse" in md
        assert f"baseline rule: <= {gate['baseline']['required']:.5g}" in md
        assert "mean baseline" in md  # the baseline's own metrics, next to the model's
        mv = registry(tmp_path).get_version("diabetes-regression", 1)
        assert mv.gate is not None and mv.gate.to_json() == gate

    def test_a_model_of_noise_fails_with_the_rule_named(self, tmp_path: Path) -> None:
        from prefab_mlops.flows.training import format_summary

        s = diabetes_run(tmp_path, noise=True)
        gate = s["gate"]
        assert (gate["passed"], gate["decided_by"]) == (False, ["baseline"])
        assert s["decision"]["promote"] is False
        assert s["decision"]["reason"].startswith("quality gate failed: baseline rule: rmse ")
        assert "below the training-mean baseline's" in s["decision"]["reason"]
        assert registry(tmp_path).alias("noise-regression", "production") is None
        text = format_summary(s)
        assert "  quality gate: FAILED: baseline rule: rmse " in text
        assert text.endswith("\n  no production model yet")

    def test_absolute_rules_are_an_option(self, tmp_path: Path) -> None:
        s = diabetes_run(tmp_path, "evaluate.baseline=null", "+evaluate.gate.r2.min=0.8")
        assert (s["gate"]["passed"], s["gate"]["decided_by"]) == (False, ["absolute"])
        assert s["gate"]["baseline"] is None
        assert s["decision"]["reason"].startswith("quality gate failed: absolute rule: r2 ")


class TestLatestEvaluation:
    def test_a_promoted_version_shows_its_latest_gate_result(
            self, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
        """Run 1 fails a strict absolute gate; run 2 (same model, default gate) passes and
        promotes it. The registry shows the latest evaluation, not the first one."""
        from prefab_mlops.cli import main

        first = run(tmp_path, "+evaluate.gate.roc_auc.min=0.99")
        second = run(tmp_path)
        assert (first["version"], first["gate"]["passed"]) == (1, False)
        assert (second["version"], second["gate"]["passed"]) == (1, True)
        assert second["decision"]["promote"] is True

        reg = registry(tmp_path)
        v1 = reg.get_version("flights-binary", 1)
        assert reg.alias("flights-binary", "production").version == 1
        assert reg.latest_evaluation(v1).gate.to_json() == second["gate"]
        assert reg.latest_evaluation(v1).run.flow_run_id == second["flow_run_id"]

        capsys.readouterr()
        assert main(["registry", "list", "--config-dir", CONF, "--",
                     f"paths.root={tmp_path}"]) == 0
        line = capsys.readouterr().out.strip()
        assert line.startswith("flights-binary v1")
        assert "production" in line and "gate=ok(baseline)" in line
        assert "decision=promoted" in line and "FAIL" not in line


# The arrival delay, which the target `delayed = arr_delay > 15` is computed from, given to
# the model as an input: real leakage on the real table.
WITH_ARR_DELAY = [
    "data.columns=[time_hour,month,day,sched_dep_time,sched_arr_time,carrier,flight,origin,"
    "dest,distance,hour,arr_delay,delayed]",
    "features.numeric.columns=[month,day,sched_dep_time,sched_arr_time,distance,flight,"
    "arr_delay]"]


class TestLeakageAlarm:
    def test_fail_mode_stops_before_training(self, tmp_path: Path) -> None:
        with pytest.raises(LeakageError, match=r"'arr_delay' \(roc_auc 1\.0000 alone\)") as err:
            run(tmp_path, *WITH_ARR_DELAY, "validate.leakage=fail")
        assert "remove 'arr_delay' from features.numeric.columns" in err.value.fix
        assert registry(tmp_path).versions("flights-binary") == []

    def test_warn_mode_names_the_column_in_the_summaries(self, tmp_path: Path) -> None:
        from prefect import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        from prefab_mlops.flows.training import format_summary

        s = run(tmp_path, *WITH_ARR_DELAY)
        leak = s["leakage"]
        assert leak["before_training"]["suspects"] == ["arr_delay"]
        assert 0.6 * s["data"]["rows"] < leak["before_training"]["scan"]["rows"] < 0.8 * s[
            "data"]["rows"]  # the training split only
        # the model is (nearly) perfect, so evaluate looks again and finds the same column
        assert s["metrics"]["roc_auc"] >= 0.999
        assert leak["at_evaluation"]["suspects"] == ["arr_delay"]
        assert "leakage check: SUSPECTED: 'arr_delay' (roc_auc 1.0000 alone)" in \
            format_summary(s)
        flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(s["flow_run_id"])]))
        with get_client(sync_client=True) as client:
            arts = {a.key: a for a in client.read_artifacts(artifact_filter=flt)}
        validation = arts["flights-binary-validation"].data
        assert "## Leakage check (training rows)" in validation and "| arr_delay |" in validation
        assert "**Leakage check**: SUSPECTED: 'arr_delay'" in arts[
            "flights-binary-training-summary"].data

    def test_clean_run_reports_no_suspect(self, tmp_path: Path) -> None:
        s = run(tmp_path)
        assert s["leakage"]["before_training"]["suspects"] == []
        assert s["leakage"]["before_training"]["scan"]["columns"] == 10
        assert s["leakage"]["at_evaluation"] is None


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
