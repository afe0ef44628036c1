"""tasks/evaluate.py through ``evaluate.fn``/``evaluate_champion.fn``: metrics equal
scikit-learn's on the same predictions, the quality gate (the default baseline rule
against a naive baseline fitted on the training split, and absolute rules), every
gate failure listed with its rule, PNG plots, the regression metrics, and the
champion comparison on the test rows neither model was trained on, on models trained
on real slices (flights, diamonds, scikit-learn's diabetes data)."""

from __future__ import annotations

import dataclasses
import json
import logging
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from prefab_mlops.config import (
    BaselineRule,
    ChampionCheckConfig,
    EvaluateConfig,
    GateRule,
    ModelSpec,
    PipelineConfig,
    TargetSpec,
    load_config,
)
from prefab_mlops.core.errors import ConfigError
from prefab_mlops.core.fingerprint import RowFingerprint, row_hashes
from prefab_mlops.core.manifest import GateRecord, ModelVersion
from prefab_mlops.core.registry import LoadedModel
from prefab_mlops.orchestration.payloads import Payload
from prefab_mlops.tasks.evaluate import (
    ABSOLUTE_RULE,
    BASELINE_RULE,
    COMPARED,
    INCOMPATIBLE,
    NO_CHAMPION,
    TOO_FEW_ROWS,
    check_baseline,
    check_gate,
    compute_metrics,
    confusion_plot,
    evaluate,
    evaluate_champion,
    importance,
)
from prefab_mlops.tasks.featurize import FeatureSet, featurize
from prefab_mlops.tasks.ingest import Dataset, ingest, prepare
from prefab_mlops.tasks.register import RunInfo, register
from prefab_mlops.tasks.registry import load_production, open_registry
from prefab_mlops.tasks.train import TrainedModel, train
from tests.conftest import diabetes_frame, diabetes_overrides

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


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory: pytest.TempPathFactory):
    """A ridge regression on scikit-learn's diabetes data: weak (R² about 0.4) but learnable."""
    cfg = _config(tmp_path_factory.mktemp("diabetes"), *diabetes_overrides())
    return _fitted(cfg, diabetes_frame())


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory):
    """The same model on the diabetes data with its target shuffled: nothing to learn."""
    cfg = _config(tmp_path_factory.mktemp("noise"), *diabetes_overrides(name="noise"))
    return _fitted(cfg, diabetes_frame(noise=True))


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


class TestAbsoluteRules:
    def test_every_failing_rule_is_listed(self, binary) -> None:
        cfg, fs, tm = binary
        gate = {"roc_auc": GateRule(min=0.99), "log_loss": GateRule(max=0.01),
                "f1": GateRule(min=0.95), "accuracy": GateRule(min=0.1)}
        ev = evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, gate=gate, plots=False))
        m = ev.metrics
        assert ev.gate.passed is False
        assert ev.gate.failures == [f"absolute rule: roc_auc {m['roc_auc']:.4f} < min 0.99",
                                    f"absolute rule: log_loss {m['log_loss']:.4f} > max 0.01",
                                    f"absolute rule: f1 {m['f1']:.4f} < min 0.95"]
        assert ev.gate.rules["accuracy"] == {"min": 0.1, "max": None}
        # the baseline rule (on by default) held; the absolute rules decided
        assert [(c.rule, c.passed) for c in ev.gate.checks] == [
            (BASELINE_RULE, True), (ABSOLUTE_RULE, False), (ABSOLUTE_RULE, False),
            (ABSOLUTE_RULE, False), (ABSOLUTE_RULE, True)]
        assert ev.gate.as_record().decided_by == [ABSOLUTE_RULE]
        assert ev.gate.describe().startswith("FAILED: absolute rule: roc_auc")

    def test_gate_that_holds_passes(self, binary) -> None:
        cfg, fs, tm = binary
        gate = {"roc_auc": GateRule(min=0.6), "log_loss": GateRule(max=0.7)}
        ev = evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, gate=gate, plots=False))
        assert ev.gate.passed is True and ev.gate.failures == []
        assert ev.gate.as_record().decided_by == [BASELINE_RULE, ABSOLUTE_RULE]

    def test_absolute_rules_alone(self, diabetes) -> None:
        """The absolute option: evaluate.baseline=null and evaluate.gate set on purpose."""
        cfg, fs, tm = diabetes
        strict = dataclasses.replace(cfg.evaluate, baseline=None, plots=False,
                                     gate={"r2": GateRule(min=0.8)})
        ev = evaluate.fn(tm, fs, strict)
        r2 = ev.metrics["r2"]
        assert ev.gate.passed is False and ev.gate.baseline is None
        assert ev.gate.failures == [f"absolute rule: r2 {r2:.4f} < min 0.8"]
        record = ev.gate.as_record()
        assert (record.decided_by, record.baseline) == ([ABSOLUTE_RULE], None)
        lax = dataclasses.replace(strict, gate={"r2": GateRule(min=0.3)})
        assert evaluate.fn(tm, fs, lax).gate.describe() == (
            f"passed: absolute rule: r2 {r2:.4f} >= min 0.3")

    def test_unavailable_metric_fails_the_gate(self) -> None:
        result = check_gate({"roc_auc": 0.8, "log_loss": float("nan")},
                            {"rmse": GateRule(max=1.0), "log_loss": GateRule(max=0.5),
                             "roc_auc": GateRule(min=0.7, max=0.9)})
        assert result.failures == ["absolute rule: rmse is not available",
                                   "absolute rule: log_loss is not available"]


def constant_prediction_metrics(fs: FeatureSet, problem_type: str, value: Any,
                                threshold: float = 0.5) -> dict[str, float]:
    """Metrics of a model that predicts ``value`` (a probability row or a number)."""
    class Constant:
        def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
            return np.tile(np.asarray(value, dtype="float64"), (len(X), 1))

        def predict(self, X: pd.DataFrame) -> np.ndarray:
            return np.full(len(X), float(value))

    out, _, _ = compute_metrics(Constant(), fs.test, problem_type, threshold)
    return out


class TestBaselineRule:
    """The default gate: beat a naive baseline fitted on the training split."""

    def test_stock_configs_default_to_the_baseline_rule(self, tmp_path: Path) -> None:
        for overrides in ((), ("experiment=diamonds",)):
            evaluate_cfg = _config(tmp_path, *overrides).evaluate
            assert evaluate_cfg.baseline == BaselineRule(min_improvement=0.05)
            assert evaluate_cfg.gate == {}

    def test_classifier_baseline_is_the_training_class_prior(self, binary) -> None:
        cfg, fs, tm = binary
        ev = evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, plots=False))
        b = ev.gate.baseline
        prior = float(np.mean(fs.train.y))  # fitted on the training split only
        assert prior != float(np.mean(fs.test.y))
        expected = constant_prediction_metrics(fs, "binary", [1 - prior, prior],
                                               cfg.evaluate.threshold)
        assert (b.strategy, b.metric) == ("prior", "roc_auc")
        assert b.metrics == pytest.approx(expected, rel=1e-12, nan_ok=True)
        assert b.value == 0.5 and b.required == pytest.approx(0.525)

    def test_learnable_classifier_passes_with_the_rule_named(self, binary) -> None:
        cfg, fs, tm = binary
        ev = evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, plots=False))
        auc = ev.metrics["roc_auc"]
        assert ev.gate.passed is True and 0.6 < auc
        assert ev.gate.describe() == (
            f"passed: baseline rule: roc_auc {auc:.4f} >= 0.5250 required: 5% of the way "
            "from the class-prior baseline's 0.5000 to 1 "
            "(evaluate.baseline.min_improvement=0.05)")

    def test_weak_but_learnable_regression_passes(self, diabetes) -> None:
        cfg, fs, tm = diabetes
        ev = evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, plots=False))
        b = ev.gate.baseline
        mean = constant_prediction_metrics(fs, "regression", float(np.mean(fs.train.y)))
        assert 0.3 < ev.metrics["r2"] < 0.6  # far below the old stock gate, r2 >= 0.8
        assert (b.strategy, b.metric, b.value) == ("mean", "rmse", mean["rmse"])
        assert b.required == pytest.approx(0.95 * mean["rmse"], rel=1e-12)
        assert ev.metrics["rmse"] < b.required
        assert ev.gate.passed is True
        assert [(c.rule, c.metric, c.passed) for c in ev.gate.checks] == [
            (BASELINE_RULE, "rmse", True)]

    def test_a_model_of_noise_fails_with_the_rule_named(self, noise) -> None:
        cfg, fs, tm = noise
        ev = evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, plots=False))
        b = ev.gate.baseline
        assert ev.gate.passed is False and ev.metrics["r2"] < 0.05
        assert ev.gate.failures == [
            f"baseline rule: rmse {ev.metrics['rmse']:.4f} > {b.required:.4f} required: 5% "
            f"below the training-mean baseline's {b.value:.4f} "
            "(evaluate.baseline.min_improvement=0.05)"]
        assert ev.gate.as_record().decided_by == [BASELINE_RULE]

    def test_min_improvement_is_configurable(self, diabetes) -> None:
        cfg, fs, tm = diabetes

        def gate(m: float):
            return evaluate.fn(tm, fs, dataclasses.replace(
                cfg.evaluate, plots=False, baseline=BaselineRule(min_improvement=m))).gate

        rmse = evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, plots=False)
                           ).metrics["rmse"]
        assert 0.15 < 1 - rmse / gate(0.0).baseline.value < 0.4  # how much it learned
        assert gate(0.1).passed is True
        assert gate(0.5).passed is False
        assert gate(0.5).baseline.required == pytest.approx(0.5 * gate(0.5).baseline.value)

    def test_mae_is_judged_against_the_training_median(self, diabetes) -> None:
        cfg, fs, tm = diabetes
        ev = evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, primary_metric="mae",
                                                     plots=False))
        median = constant_prediction_metrics(fs, "regression", float(np.median(fs.train.y)))
        assert (ev.gate.baseline.strategy, ev.gate.baseline.value) == ("median", median["mae"])

    @pytest.mark.parametrize(("metric", "base", "value", "required", "passed"), [
        ("roc_auc", 0.5, 0.525, 0.525, True),     # a score: b + m * (1 - b)
        ("roc_auc", 0.5, 0.52, 0.525, False),
        ("r2", -0.02, 0.03, -0.02 + 0.05 * 1.02, False),
        ("accuracy", 0.8, 0.81, 0.81, True),      # 5% of the way from 0.8 to 1
        ("rmse", 100.0, 95.0, 95.0, True),        # an error: a relative reduction
        ("rmse", 100.0, 95.5, 95.0, False),
        ("log_loss", 0.5, 0.47, 0.475, True),
        ("mae", 0.0, 0.0, 0.0, True),             # a perfect baseline leaves nothing to gain
    ])
    def test_required_value_per_metric_direction(self, metric: str, base: float, value: float,
                                                 required: float, passed: bool) -> None:
        check, numbers = check_baseline({metric: value}, {metric: base}, metric, "x",
                                        BaselineRule(min_improvement=0.05))
        assert numbers.required == pytest.approx(required, abs=1e-12)
        assert (check.rule, check.metric, check.passed) == (BASELINE_RULE, metric, passed)

    def test_a_metric_the_baseline_lacks_fails_the_rule(self) -> None:
        check, _ = check_baseline({"roc_auc": 0.7}, {"roc_auc": float("nan")}, "roc_auc",
                                  "prior", BaselineRule())
        assert check.passed is False
        assert check.text == ("baseline rule: the class-prior baseline's roc_auc is not "
                              "available on this test split")
        check, _ = check_baseline({"roc_auc": float("nan")}, {"roc_auc": 0.5}, "roc_auc",
                                  "prior", BaselineRule())
        assert (check.passed, check.text) == (False, "baseline rule: roc_auc is not available")

    def test_record_is_json_safe_and_complete(self, diabetes) -> None:
        cfg, fs, tm = diabetes
        gate = evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, plots=False)
                           ).gate.as_record()
        record = gate.to_json()
        assert json.loads(json.dumps(record)) == record
        assert GateRecord.from_json(json.loads(json.dumps(record))) == gate
        assert set(record) == {"passed", "decided_by", "summary", "checks", "rules",
                               "baseline"}
        assert set(record["baseline"]) == {"metric", "strategy", "value", "required",
                                           "min_improvement", "metrics"}
        assert record["checks"][0]["rule"] == BASELINE_RULE


class TestGateConfigChecks:
    def test_min_improvement_must_be_below_one(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="min_improvement' is 1.0"):
            _config(tmp_path, "evaluate.baseline.min_improvement=1.0")

    def test_a_gate_without_rules_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="quality gate has no rule"):
            _config(tmp_path, "evaluate.baseline=null")
        # unless promotion does not need the gate, or an absolute rule is set on purpose
        assert _config(tmp_path, "evaluate.baseline=null",
                       "promote.require_gate=false").evaluate.baseline is None
        cfg = _config(tmp_path, "experiment=diamonds", "evaluate.baseline=null",
                      "+evaluate.gate.r2.min=0.8")
        assert cfg.evaluate.gate == {"r2": GateRule(min=0.8)}


class TestPlots:
    def test_binary_plots_are_png(self, binary) -> None:
        cfg, fs, tm = binary
        ev = evaluate.fn(tm, fs, cfg.evaluate)
        assert list(ev.plots) == ["roc.png", "pr.png", "confusion.png", "importance.png"]
        for name, png in ev.plots.items():
            width, height = png_size(png)
            assert width > 200 and height > 200, name
            assert png.endswith(b"IEND\xaeB`\x82"), name

    def test_confusion_plot_grows_with_the_classes_up_to_a_cap(self) -> None:
        three = png_size(confusion_plot([[50, 3, 0], [4, 61, 2], [0, 5, 70]], ["a", "b", "c"],
                                        None))
        many = png_size(confusion_plot(np.eye(30, dtype=int).tolist(), None, None))
        assert 300 < three[0] < many[0] <= 900 and many[1] <= 900

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
        assert ev.gate.passed is (ev.metrics["rmse"] <= ev.gate.baseline.required)

    def test_residuals_plot(self, regression) -> None:
        cfg, fs, tm = regression
        ev = evaluate.fn(tm, fs, cfg.evaluate)
        assert set(ev.plots) == {"residuals.png", "importance.png"}
        assert all(png.startswith(PNG_MAGIC) for png in ev.plots.values())

    def test_regression_gate_failures(self, regression) -> None:
        cfg, fs, tm = regression
        gate = {"r2": GateRule(min=0.9999), "rmse": GateRule(max=1.0), "mae": GateRule(max=1e9)}
        ev = evaluate.fn(tm, fs, EvaluateConfig(primary_metric="rmse",
                                                gate=gate, plots=False))
        assert [(c.rule, c.metric) for c in ev.gate.checks if not c.passed] == [
            (ABSOLUTE_RULE, "r2"), (ABSOLUTE_RULE, "rmse")]


def champion(pipeline: Any, trained_rows: RowFingerprint | None,
             version: int = 1) -> LoadedModel:
    mv = ModelVersion(model_name="flights-binary", version=version, created_at="",
                      fingerprint="champion", model_key="", model_sha256="",
                      problem_type="binary")
    return LoadedModel(version=mv, model=pipeline, trained_rows=trained_rows)


def seen(fs: FeatureSet, *extra: pd.DataFrame) -> RowFingerprint:
    """The rows of the train and validation splits (and ``extra``), as a champion records them."""
    columns = list(fs.train.X.columns)
    return RowFingerprint.of(columns, fs.train.row_hash, fs.valid.row_hash,
                             *[row_hashes(x, columns) for x in extra])


class TestEvaluateChampion:
    def test_no_champion(self, binary) -> None:
        cfg, fs, tm = binary
        c = evaluate_champion.fn(None, tm, fs, cfg.evaluate)
        assert (c.status, c.champion_version, c.champion, c.test_rows) == (
            NO_CHAMPION, None, None, len(fs.test))

    def test_compatible_champion_is_scored_on_the_same_split(self, binary) -> None:
        cfg, fs, tm = binary
        ev = evaluate.fn(tm, fs, dataclasses.replace(cfg.evaluate, plots=False))
        c = evaluate_champion.fn(champion(tm.pipeline, seen(fs)), tm, fs, cfg.evaluate)
        assert (c.status, c.compared_rows, c.excluded_rows, c.checked) == (
            COMPARED, len(fs.test), 0, True)
        assert c.champion == ev.metrics and c.challenger == ev.metrics

    def test_test_rows_the_champion_was_trained_on_are_left_out(self, binary) -> None:
        cfg, fs, tm = binary
        n = len(fs.test)
        first_half = fs.test.X.iloc[: n // 2]
        c = evaluate_champion.fn(champion(tm.pipeline, seen(fs, first_half)), tm, fs,
                                 cfg.evaluate)
        assert (c.status, c.excluded_rows, c.compared_rows, c.test_rows) == (
            COMPARED, n // 2, n - n // 2, n)
        rest = fs.test.subset(np.arange(n) >= n // 2)
        expected, _, _ = compute_metrics(tm.pipeline, rest, "binary", cfg.evaluate.threshold)
        assert c.champion == expected and c.challenger == expected
        assert c.champion["n_test"] == n - n // 2

    def test_rows_matching_the_champion_only_in_its_own_columns_are_left_out(
            self, binary) -> None:
        cfg, fs, tm = binary
        columns = ["carrier", "flight", "time_hour"]  # a champion with fewer inputs
        rows = RowFingerprint.of(columns, row_hashes(fs.test.X.iloc[:100], columns))
        c = evaluate_champion.fn(champion(tm.pipeline, rows), tm, fs, cfg.evaluate)
        assert (c.excluded_rows, c.compared_rows) == (100, len(fs.test) - 100)

    def test_too_few_clean_rows_is_not_comparable(
            self, binary, caplog: pytest.LogCaptureFixture) -> None:
        cfg, fs, tm = binary
        n = len(fs.test)
        rows = seen(fs, fs.test.X.iloc[: n - 40])
        with caplog.at_level(logging.WARNING, logger="prefab"):
            c = evaluate_champion.fn(champion(tm.pipeline, rows), tm, fs, cfg.evaluate)
        assert (c.status, c.compared_rows, c.excluded_rows) == (TOO_FEW_ROWS, 40, n - 40)
        assert c.champion is None and c.challenger is None
        assert f"only 40 of {n:,} test rows" in c.note and "evaluate.champion" in c.note
        assert "not comparable" in caplog.text
        # the limits come from evaluate.champion
        lax = dataclasses.replace(cfg.evaluate, champion=ChampionCheckConfig(min_rows=40,
                                                                            min_share=0.04))
        assert evaluate_champion.fn(champion(tm.pipeline, rows), tm, fs, lax).status == COMPARED
        share = dataclasses.replace(cfg.evaluate, champion=ChampionCheckConfig(min_rows=1,
                                                                              min_share=0.1))
        assert evaluate_champion.fn(champion(tm.pipeline, rows), tm, fs,
                                    share).status == TOO_FEW_ROWS

    def test_champion_without_recorded_rows_is_scored_on_the_whole_split(
            self, binary, caplog: pytest.LogCaptureFixture) -> None:
        cfg, fs, tm = binary
        with caplog.at_level(logging.WARNING, logger="prefab"):
            c = evaluate_champion.fn(champion(tm.pipeline, None), tm, fs, cfg.evaluate)
        assert (c.status, c.checked, c.compared_rows) == (COMPARED, False, len(fs.test))
        assert "without the hashes of its training rows" in caplog.text
        assert "whole test split" in c.note

    def test_incompatible_champion_is_not_comparable(
            self, binary, regression, caplog: pytest.LogCaptureFixture) -> None:
        cfg, fs, tm = binary
        _, _, diamonds_model = regression
        with caplog.at_level(logging.WARNING, logger="prefab"):
            c = evaluate_champion.fn(champion(diamonds_model.pipeline, None), tm, fs,
                                     cfg.evaluate)
        assert c.status == INCOMPATIBLE and c.champion is None
        assert "cannot score the current test split" in caplog.text

    def test_champion_missing_a_feature_is_not_comparable(self, binary) -> None:
        cfg, fs, tm = binary
        test = dataclasses.replace(fs.test, X=fs.test.X.drop(columns=["distance"]))
        parts = {k: fs.payload[k] for k in fs.payload if k != "test"}
        narrow = dataclasses.replace(fs, payload=Payload(**parts, test=test))
        for rows in (None, seen(fs)):  # fails when hashing its columns or when scoring
            c = evaluate_champion.fn(champion(tm.pipeline, rows), tm, narrow, cfg.evaluate)
            assert c.status == INCOMPATIBLE and "distance" in c.note
        c = evaluate_champion.fn(champion(tm.pipeline, seen(fs)), tm, fs, cfg.evaluate)
        assert np.isfinite(c.champion["roc_auc"])


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory,
           flights_frame: pd.DataFrame) -> tuple[pd.DataFrame, ...]:
    """Real flights in random order: an old table, rows appended to it, unseen rows."""
    cfg = _config(tmp_path_factory.mktemp("tables"))
    rows = prepare(flights_frame, cfg.data, cfg.seed, "flights.csv").sample(
        frac=1.0, random_state=5).reset_index(drop=True)
    return rows.iloc[:8000], rows.iloc[8000:12000], rows.iloc[12000:]


class TestChampionOnAGrowingTable:
    """The drift-retraining case: rows are appended to the table the champion was trained
    on, the table is split again and the champion is scored on the new test split.

    With a split that reshuffles the table (``random``, ``stratified``: the old default)
    a large part of the new test split was in the champion's train split, and its score
    there is inflated well above its score on rows it has never seen; the comparison
    leaves exactly those rows out. With the ``hash`` split no test row was a training
    row of the champion in the first place.
    """

    TOLERANCE = 0.04  # AUC noise on ~2,400 (or ~1,300 clean) test rows, about 3 SEs
    INFLATION = 0.06  # what a split that reshuffles the table adds, at the least

    @pytest.mark.parametrize("strategy", ["hash", "random", "stratified"])
    def test_champion_score_on_the_new_test_split_is_not_inflated(
            self, strategy: str, tables: tuple[pd.DataFrame, ...],
            tmp_path: Path) -> None:
        old, appended, unseen = tables
        cfg = _config(tmp_path, f"features.split.strategy={strategy}", "model=random_forest",
                      "tracking=disabled", "data.snapshot=false")
        target = TargetSpec.from_data(cfg.data)

        def dataset(frame: pd.DataFrame, fp: str) -> Dataset:
            return Dataset.of(frame.reset_index(drop=True), name="flights", fingerprint=fp,
                              source="test", source_fingerprint=fp, snapshot_uri=None,
                              target="delayed", time_column="time_hour")

        # the champion: trained on the old table, registered, promoted, loaded back
        first = dataset(old, "old")
        fs1 = featurize.fn(first, cfg.features, target, cfg.seed)
        tm1 = train.fn(fs1, ModelSpec.from_config(cfg.model), cfg.seed)
        ev1 = evaluate.fn(tm1, fs1, dataclasses.replace(cfg.evaluate, plots=False))
        mv = register.fn(tm1, ev1, first, fs1, None, cfg.register, cfg.storage,
                         RunInfo(project_root=str(tmp_path)), cfg.seed)
        open_registry(cfg.register, cfg.storage).set_alias(cfg.register.model_name,
                                                           "production", mv.version)
        champ = load_production.fn(cfg.register, cfg.storage, with_trained_rows=True)

        # rows are appended; the grown table is split again and a challenger trained
        fs2 = featurize.fn(dataset(pd.concat([old, appended]), "grown"), cfg.features, target,
                           cfg.seed)
        tm2 = train.fn(fs2, ModelSpec.from_config(cfg.model), cfg.seed)

        def auc(X: pd.DataFrame, y: np.ndarray) -> float:
            return float(skm.roc_auc_score(y, champ.model.predict_proba(X)[:, 1]))

        honest = auc(unseen[fs1.train.X.columns], unseen["delayed"].to_numpy(dtype=int))
        on_new_split = auc(fs2.test.X, fs2.test.y)
        overlap = int(champ.trained_rows.contains(fs2.test.X).sum())
        c = evaluate_champion.fn(champ, tm2, fs2, cfg.evaluate)

        assert c.status == COMPARED and c.checked
        assert (c.excluded_rows, c.compared_rows) == (overlap, len(fs2.test) - overlap)
        assert c.excluded_own_rows == 0
        assert c.champion["n_test"] == c.compared_rows
        assert c.champion["roc_auc"] < honest + self.TOLERANCE
        if strategy == "hash":
            assert overlap == 0
            assert on_new_split == c.champion["roc_auc"] < honest + self.TOLERANCE
            # the champion's own test rows are still test rows
            assert np.isin(fs1.test.row_hash, fs2.test.row_hash).all()
        else:
            assert overlap > 0.25 * len(fs2.test)
            assert on_new_split > honest + self.INFLATION


class TestMetricNamesHaveOneHome:
    """evaluate computes exactly the metrics that config checks accept (core.problems)."""

    @pytest.mark.parametrize("problem_type", ["binary", "multiclass", "regression"])
    def test_computed_metrics_are_the_declared_ones(self, problem_type: str) -> None:
        from sklearn.dummy import DummyClassifier, DummyRegressor

        from prefab_mlops.core.problems import METRICS
        from prefab_mlops.tasks.featurize import Split

        rng = np.random.default_rng(0)
        X = pd.DataFrame({"x": rng.normal(size=60)})
        classes = {"binary": 2, "multiclass": 3}.get(problem_type)
        y = rng.integers(0, classes, size=60) if classes else rng.normal(size=60)
        model = (DummyClassifier(strategy="stratified", random_state=0) if classes
                 else DummyRegressor()).fit(X, y)
        out, _, _ = compute_metrics(model, Split(X, y), problem_type)
        described = {"n_test", "positive_rate"}
        assert set(out) - described == set(METRICS[problem_type])
