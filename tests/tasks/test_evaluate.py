"""tasks/evaluate.py through ``evaluate.fn``/``evaluate_champion.fn``: metrics equal
scikit-learn's on the same predictions, every gate failure listed, PNG plots, the
regression metrics, and the champion comparison, on models trained on real slices."""

from __future__ import annotations

import dataclasses
import logging
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from prefab_mlops.config import (
    EvaluateConfig,
    GateRule,
    ModelSpec,
    PipelineConfig,
    TargetSpec,
    load_config,
)
from prefab_mlops.orchestration.payloads import Payload
from prefab_mlops.tasks.evaluate import check_gate, evaluate, evaluate_champion, importance
from prefab_mlops.tasks.featurize import FeatureSet, featurize
from prefab_mlops.tasks.ingest import Dataset, ingest, prepare
from prefab_mlops.tasks.train import TrainedModel, train

CONF = Path(__file__).resolve().parents[2] / "conf"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _fitted(cfg: PipelineConfig, frame: pd.DataFrame) -> tuple[PipelineConfig, FeatureSet,
                                                             TrainedModel]:
    data = Dataset.of(frame, name=cfg.data.name, fingerprint=f"fp-{cfg.data.name}",
                      source="test", source_fingerprint="src", snapshot_uri=None,
                      target=cfg.data.target, time_column=cfg.data.time_column)
    fs = featurize.fn(data, cfg.features, TargetSpec.from_data(cfg.data), cfg.seed)
    return cfg, fs, train.fn(fs, ModelSpec.from_config(cfg.model), cfg.seed)


def _config(root: Path, *overrides: str) -> PipelineConfig:
    return load_config([f"paths.root={root}", *overrides], config_dir=CONF).typed


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory, flights_frame: pd.DataFrame):
    """An XGBoost classifier trained on 4,000 real flights."""
    cfg = _config(tmp_path_factory.mktemp("binary"), "model.n_estimators=40", "model.n_jobs=1")
    frame = prepare(flights_frame, dataclasses.replace(cfg.data, sample_rows=4000), cfg.seed,
                    "flights.csv")
    return _fitted(cfg, frame)


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory):
    """An XGBoost regressor trained on 3,000 real diamonds."""
    cfg = _config(tmp_path_factory.mktemp("regression"), "experiment=diamonds",
                  "data.sample_rows=3000", "data.snapshot=false", "model.n_estimators=60",
                  "model.n_jobs=1")
    frame = ingest.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed).frame
    return _fitted(cfg, frame)


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == PNG_MAGIC and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


class TestClassificationMetrics:
    def test_metrics_equal_sklearn_on_the_same_predictions(self, binary) -> None:
        cfg, fs, tm = binary
        ev = evaluate.fn(tm, fs, cfg.evaluate)
        y = fs.test.y
        # XGBoost returns float32; metrics are taken in float64 (log_loss differs at 1e-8).
        p1 = tm.pipeline.predict_proba(fs.test.X)[:, 1].astype("float64")
        pred = (p1 >= cfg.evaluate.threshold).astype(int)
        assert cfg.evaluate.threshold == 0.35
        expected = {
            "n_test": float(len(y)),
            "roc_auc": skm.roc_auc_score(y, p1),
            "pr_auc": skm.average_precision_score(y, p1),
            "log_loss": skm.log_loss(y, p1),
            "positive_rate": y.mean(),
            "accuracy": skm.accuracy_score(y, pred),
            "f1": skm.f1_score(y, pred),
            "precision": skm.precision_score(y, pred),
            "recall": skm.recall_score(y, pred),
        }
        assert set(ev.metrics) == set(expected)
        for name, value in expected.items():
            assert ev.metrics[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
        assert ev.confusion_matrix == skm.confusion_matrix(y, pred).tolist()
        assert sum(map(sum, ev.confusion_matrix)) == len(y)
        assert (ev.primary_metric, ev.primary) == ("roc_auc", ev.metrics["roc_auc"])
        assert ev.greater_is_better is True

    def test_threshold_moves_the_hard_predictions_only(self, binary) -> None:
        cfg, fs, tm = binary
        low = evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, threshold=0.2, plots=False))
        high = evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, threshold=0.6,
                                                       plots=False))
        assert low.metrics["roc_auc"] == high.metrics["roc_auc"]
        assert low.metrics["recall"] > high.metrics["recall"]
        assert low.fingerprint != high.fingerprint


class TestGate:
    def test_every_failing_rule_is_listed(self, binary) -> None:
        cfg, fs, tm = binary
        gate = {"roc_auc": GateRule(min=0.99), "log_loss": GateRule(max=0.01),
                "f1": GateRule(min=0.95), "accuracy": GateRule(min=0.1)}
        ev = evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, gate=gate, plots=False))
        m = ev.metrics
        assert ev.gate.passed is False
        assert ev.gate.failures == [f"roc_auc {m['roc_auc']:.4f} < min 0.99",
                                    f"log_loss {m['log_loss']:.4f} > max 0.01",
                                    f"f1 {m['f1']:.4f} < min 0.95"]
        assert ev.gate.rules["accuracy"] == {"min": 0.1, "max": None}

    def test_gate_that_holds_passes(self, binary) -> None:
        cfg, fs, tm = binary
        gate = {"roc_auc": GateRule(min=0.6), "log_loss": GateRule(max=0.7)}
        ev = evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, gate=gate, plots=False))
        assert ev.gate.passed is True and ev.gate.failures == []

    def test_unavailable_metric_fails_the_gate(self) -> None:
        result = check_gate({"roc_auc": 0.8, "log_loss": float("nan")},
                            {"rmse": GateRule(max=1.0), "log_loss": GateRule(max=0.5),
                             "roc_auc": GateRule(min=0.7, max=0.9)})
        assert result.failures == ["rmse is not available", "log_loss is not available"]


class TestPlots:
    def test_binary_plots_are_png(self, binary) -> None:
        cfg, fs, tm = binary
        ev = evaluate.fn(tm, fs, cfg.evaluate)
        assert set(ev.plots) == {"roc.png", "pr.png", "importance.png"}
        for name, png in ev.plots.items():
            width, height = png_size(png)
            assert width > 200 and height > 200, name
            assert png.endswith(b"IEND\xaeB`\x82"), name

    def test_no_plots_when_disabled(self, binary) -> None:
        cfg, fs, tm = binary
        assert evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, plots=False)).plots == {}

    def test_importance_names_the_model_features(self, binary) -> None:
        _, fs, tm = binary
        imp = importance(tm)
        assert {name for name, _ in imp} == set(fs.feature_names)
        values = [v for _, v in imp]
        assert values == sorted(values, reverse=True) and values[0] > 0


class TestRegression:
    def test_rmse_mae_r2_equal_sklearn(self, regression) -> None:
        cfg, fs, tm = regression
        ev = evaluate.fn(tm, fs, cfg.evaluate)
        pred = tm.pipeline.predict(fs.test.X)
        y = fs.test.y
        assert set(ev.metrics) == {"n_test", "rmse", "mae", "r2"}
        assert ev.metrics["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred),
                                                   rel=1e-9)
        assert ev.metrics["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-9)
        assert ev.metrics["r2"] == pytest.approx(skm.r2_score(y, pred), rel=1e-9)
        assert ev.confusion_matrix is None
        assert (ev.primary_metric, ev.greater_is_better) == ("rmse", False)
        assert ev.gate.passed is (ev.metrics["r2"] >= 0.8)

    def test_residuals_plot(self, regression) -> None:
        cfg, fs, tm = regression
        ev = evaluate.fn(tm, fs, cfg.evaluate)
        assert set(ev.plots) == {"residuals.png", "importance.png"}
        assert all(png.startswith(PNG_MAGIC) for png in ev.plots.values())

    def test_regression_gate_failures(self, regression) -> None:
        cfg, fs, tm = regression
        gate = {"r2": GateRule(min=0.9999), "rmse": GateRule(max=1.0), "mae": GateRule(max=1e9)}
        ev = evaluate.fn(tm, fs, EvaluateConfig(primary_metric="rmse", greater_is_better=False,
                                                gate=gate, plots=False))
        assert [f.split()[0] for f in ev.gate.failures] == ["r2", "rmse"]


class TestEvaluateChampion:
    def test_no_champion(self, binary) -> None:
        cfg, fs, _ = binary
        assert evaluate_champion.fn(None, fs, cfg.evaluate) is None

    def test_compatible_champion_is_scored_on_the_same_split(self, binary) -> None:
        cfg, fs, tm = binary
        ev = evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, plots=False))
        assert evaluate_champion.fn(tm.pipeline, fs, cfg.evaluate) == ev.metrics

    def test_incompatible_champion_is_not_comparable(
            self, binary, regression, caplog: pytest.LogCaptureFixture) -> None:
        cfg, fs, _ = binary
        _, _, diamonds_model = regression
        with caplog.at_level(logging.WARNING, logger="prefab"):
            assert evaluate_champion.fn(diamonds_model.pipeline, fs, cfg.evaluate) is None
        assert "cannot score the current test split" in caplog.text

    def test_champion_missing_a_feature_is_not_comparable(self, binary) -> None:
        cfg, fs, tm = binary
        test = dataclasses.replace(fs.test, X=fs.test.X.drop(columns=["distance"]))
        parts = {k: fs.payload[k] for k in fs.payload if k != "test"}
        narrow = dataclasses.replace(fs, payload=Payload(**parts, test=test))
        assert evaluate_champion.fn(tm.pipeline, narrow, cfg.evaluate) is None
        assert np.isfinite(evaluate_champion.fn(tm.pipeline, fs, cfg.evaluate)["roc_auc"])
