"""Monitoring and batch inference flows inside Prefect's test harness, on real data."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from prefab_mlops.core.errors import DataError, DataValidationError, RegistryError
from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.storage import LocalObjectStore
from prefab_mlops.flows.batch_inference import batch_inference
from prefab_mlops.flows.monitoring import monitoring
from prefab_mlops.flows.training import training
from prefab_mlops.orchestration.artifacts import ARTIFACT_BUDGET_BYTES
from prefab_mlops.testing.flights_batches import drifted_batch, flights, stable_batch, train_batch

pytestmark = pytest.mark.usefixtures("prefect_harness")
CONF = str(Path(__file__).resolve().parents[2] / "conf")
MODEL = "flights-binary"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, prefect_harness) -> Path:
    """A project with a production model trained on Jan-Oct flights, and three batches."""
    root = tmp_path_factory.mktemp("monitor-project")
    raw = flights()
    train_batch(raw, 30_000).to_csv(root / "train.csv", index=False)
    stable_batch(raw, 20_000).to_csv(root / "stable.csv", index=False)
    drifted_batch(raw, 20_000).to_csv(root / "drifted.csv", index=False)
    s = training(overrides=[f"paths.root={root}", f"data.uri={root / 'train.csv'}",
                            "model.n_estimators=50", "tracking=disabled"], config_dir=CONF)
    assert s["decision"]["promote"]
    return root


def monitor(root: Path, batch: Path, *overrides: str) -> dict:
    return monitoring(overrides=[f"paths.root={root}", "tracking=disabled", *overrides],
                      batch_uri=str(batch), config_dir=CONF)


def drift_events(root: Path) -> list[dict]:
    reg = ModelRegistry(LocalObjectStore(root / "registry"))
    return [e for e in reg.events(MODEL) if e["event"].startswith("drift")]


class TestDrift:
    def test_stable_batch_does_not_drift(self, project: Path) -> None:
        s = monitor(project, project / "stable.csv")
        assert s["dataset_drift"] is False and s["event_id"] is None
        assert s["drift_share"] < 0.5 and s["model_version"] == 1
        assert s["rows_current"] > 19_000 and s["quality"]["roc_auc"] > 0.6
        assert Path(s["report_uri"]).read_bytes()[:200].lower().count(b"<html") == 1

    def test_drifted_batch_emits_event(self, project: Path) -> None:
        s = monitor(project, project / "drifted.csv")
        assert s["dataset_drift"] is True and s["event_id"]
        assert {"distance", "sched_dep_time", "sched_arr_time", "flight"} <= set(
            s["drifted_columns"])
        assert s["event"] == "prefab.model.drift-detected"
        assert s["prediction_drift"] is not None
        last = drift_events(project)[-1]
        assert last["event"] == "drift_detected" and last["event_id"] == s["event_id"]

    def test_drift_artifact_lists_columns_links_report_and_embeds_plots(
            self, project: Path) -> None:
        from uuid import UUID

        from prefect import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        s = monitor(project, project / "drifted.csv", "monitor.plot_columns=2")
        flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(s["flow_run_id"])]))
        with get_client(sync_client=True) as client:
            arts = {a.key: a for a in client.read_artifacts(artifact_filter=flt)}
        md = arts[f"{MODEL}-drift"].data
        assert len(md.encode()) <= ARTIFACT_BUDGET_BYTES
        assert "**Drifted columns**: " + ", ".join(f"`{c}`" for c in s["drifted_columns"]) in md
        uri = Path(s["report_uri"]).resolve().as_uri()
        assert f"**Full report**: [{s['report_uri']}]({uri})" in md
        assert arts[f"{MODEL}-drift-report"].data == f"[Evidently drift report]({uri})"
        alts = re.findall(r"!\[([^\]]*)\]\(data:image/png;base64,", md)
        assert alts[0] == "prediction-drift" and len(alts) == 3
        assert {a.removeprefix("drift-") for a in alts[1:]} <= set(s["drifted_columns"])

    def test_sampling_budget_limits_rows(self, project: Path) -> None:
        s = monitor(project, project / "drifted.csv", "monitor.max_rows=2000")
        assert s["rows_sampled"] == 2000 and s["rows_current"] > 19_000
        assert s["dataset_drift"] is True

    def test_unlabelled_batch(self, project: Path, tmp_path: Path) -> None:
        frame = pd.read_csv(project / "drifted.csv").drop(columns=["arr_delay"])
        batch = tmp_path / "unlabelled.csv"
        frame.to_csv(batch, index=False)
        s = monitor(project, batch, "monitor.labels=false", "monitor.emit_event=false")
        assert s["quality"] is None and s["dataset_drift"] is True and s["event_id"] is None


class TestBadBatch:
    def _bad(self, project: Path, tmp_path: Path, change) -> Path:
        frame = change(pd.read_csv(project / "drifted.csv"))
        path = tmp_path / "bad.csv"
        frame.to_csv(path, index=False)
        return path

    def test_missing_column_rejected_without_event(self, project: Path,
                                                   tmp_path: Path) -> None:
        before = len(drift_events(project))
        path = self._bad(project, tmp_path, lambda f: f.drop(columns=["carrier"]))
        with pytest.raises(Exception, match="carrier"):
            monitor(project, path)
        assert len(drift_events(project)) == before

    def test_extra_column_and_wrong_dtype_rejected(self, project: Path, tmp_path: Path) -> None:
        before = len(drift_events(project))
        path = self._bad(project, tmp_path,
                         lambda f: f.assign(surprise=1, distance=f["distance"].astype(str) + "mi"))
        with pytest.raises(DataValidationError) as err:
            monitor(project, path, "data.columns=null")
        msg = str(err.value)
        assert "distance" in msg
        assert len(drift_events(project)) == before

    def test_extra_column_named(self, project: Path, tmp_path: Path) -> None:
        path = self._bad(project, tmp_path, lambda f: f.assign(surprise=1))
        with pytest.raises(DataValidationError, match="surprise"):
            monitor(project, path, "data.columns=null")

    def test_no_production_model_says_so(self, tmp_path: Path) -> None:
        with pytest.raises(RegistryError, match="no 'production' version"):
            monitoring(overrides=[f"paths.root={tmp_path}", "tracking=disabled"],
                       config_dir=CONF)


class TestBatchInference:
    def test_scores_with_production_model(self, project: Path, tmp_path: Path) -> None:
        batch = tmp_path / "to_score.csv"
        pd.read_csv(project / "stable.csv").drop(columns=["arr_delay", "dep_delay"]).head(
            500).to_csv(batch, index=False)
        s = batch_inference(overrides=[f"paths.root={project}"], batch_uri=str(batch),
                            config_dir=CONF)
        out = pd.read_parquet(s["output_uri"])
        assert len(out) == 500 == s["rows"]
        assert set(out["model_version"]) == {1}
        assert {"flight", "carrier", "prediction", "probability", "scored_at"} <= set(out.columns)
        reg = ModelRegistry(LocalObjectStore(project / "registry"))
        model = reg.load(MODEL, alias="production").model
        raw = pd.read_csv(batch)
        cols = list(reg.get_version(MODEL, 1).features.input_schema.names)
        raw["time_hour"] = pd.to_datetime(raw["time_hour"])
        expected = model.predict_proba(raw[cols])[:, 1]
        assert out["probability"].to_numpy() == pytest.approx(expected, rel=1e-6)

    def test_batch_missing_input_rejected(self, project: Path, tmp_path: Path) -> None:
        batch = tmp_path / "bad.csv"
        pd.read_csv(project / "stable.csv").drop(columns=["dest"]).head(50).to_csv(batch,
                                                                                  index=False)
        with pytest.raises(DataError, match="dest"):
            batch_inference(overrides=[f"paths.root={project}"], batch_uri=str(batch),
                            config_dir=CONF)
        shutil.rmtree(tmp_path)
