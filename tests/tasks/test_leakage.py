"""The leakage alarm in the tasks: ``check_leakage.fn`` on the training split before training
(warn, fail, off; the fix it names works), and ``evaluate.fn``'s second look when a test
score is suspiciously perfect. Real tables: scikit-learn's breast cancer with a leaking
column added, and flights."""

from __future__ import annotations

import dataclasses
import logging
import pickle

import numpy as np
import pandas as pd
import pytest

from prefab_mlops.config import (
    CategoricalFeatures,
    DatetimeFeatures,
    FeaturesConfig,
    ModelSpec,
    NumericFeatures,
    PipelineConfig,
    TargetSpec,
)
from prefab_mlops.core.errors import LeakageError
from prefab_mlops.tasks.evaluate import evaluate
from prefab_mlops.tasks.featurize import FeatureSet, featurize
from prefab_mlops.tasks.ingest import Dataset, prepare
from prefab_mlops.tasks.train import train
from prefab_mlops.tasks.validate import (
    check_leakage,
    leakage_summary,
    leakage_text,
)

TARGET = TargetSpec("target", "binary")


def dataset(frame: pd.DataFrame, target: str) -> Dataset:
    return Dataset.of(frame, name="t", fingerprint=f"fp-{frame.shape}", source="test",
                      source_fingerprint="s", snapshot_uri=None, target=target)


def cancer(leak: bool) -> pd.DataFrame:
    """Breast cancer; with ``leak``, plus the label with a little noise (sd 0.1)."""
    from sklearn import datasets

    frame = datasets.load_breast_cancer(as_frame=True).frame
    if leak:
        noise = np.random.default_rng(0).normal(0, 0.1, len(frame))
        frame = frame.assign(leak=frame["target"] + noise)
    return frame


def recipe(cfg: PipelineConfig, numeric: list[str], **more: object) -> FeaturesConfig:
    return dataclasses.replace(cfg.features, numeric=NumericFeatures(columns=numeric),
                               categorical=CategoricalFeatures(columns=[]),
                               datetime=DatetimeFeatures(columns=[]), **more)


def features_of(cfg: PipelineConfig, frame: pd.DataFrame, recipe: FeaturesConfig) -> FeatureSet:
    return featurize.fn(dataset(frame, "target"), recipe, TARGET, cfg.seed)


@pytest.fixture(scope="module")
def leaky(config) -> tuple[PipelineConfig, FeatureSet]:
    cfg = config("model.n_estimators=40", "model.n_jobs=1")
    frame = cancer(leak=True)
    return cfg, features_of(cfg, frame, recipe(cfg, [c for c in frame if c != "target"]))


class TestBeforeTraining:
    def test_warn_names_the_column_and_the_fix(self, leaky, caplog: pytest.LogCaptureFixture
                                               ) -> None:
        cfg, fs = leaky
        with caplog.at_level(logging.WARNING, logger="prefab"):
            report = check_leakage.fn(fs, cfg.validate, cfg.seed)
        assert cfg.validate.leakage == "warn"  # the stock default
        assert report.suspects == ["leak"]
        assert report.scan.rows == len(fs.train)  # training rows only
        assert report.scan.suspects[0].score >= 0.99
        assert report.fix().startswith("Leave them out of the model's inputs in conf/"
                                       "features: remove 'leak' from features.numeric.columns")
        assert "'leak' (roc_auc 1.0000 alone)" in caplog.text
        assert "validate.leakage=warn: continuing" in caplog.text
        md = report.to_markdown()
        assert "**1 suspect(s)**" in md and "| leak | 1.0000 |" in md

    def test_fail_stops_with_the_columns_scores_and_fix(self, leaky) -> None:
        cfg, fs = leaky
        with pytest.raises(LeakageError) as err:
            check_leakage.fn(fs, dataclasses.replace(cfg.validate, leakage="fail"), cfg.seed)
        assert "'leak' (roc_auc 1.0000 alone)" in err.value.message
        assert err.value.suspects == [("leak", 1.0, "roc_auc")]
        assert "remove 'leak' from features.numeric.columns" in err.value.fix
        assert "validate.leakage=warn" in err.value.fix
        again = pickle.loads(pickle.dumps(err.value))  # crosses Prefect's result storage
        assert (again.suspects, again.fix) == (err.value.suspects, err.value.fix)

    def test_off_skips_the_check(self, leaky) -> None:
        cfg, fs = leaky
        report = check_leakage.fn(fs, dataclasses.replace(cfg.validate, leakage="off"),
                                  cfg.seed)
        assert report.scan is None and report.suspects == []
        assert report.line() == "off (validate.leakage=off)"

    def test_the_named_fix_for_a_passthrough_column_works(self, config) -> None:
        cfg = config()
        frame = cancer(leak=True)
        listed = [c for c in frame if c not in ("target", "leak")][:10]
        fs = features_of(cfg, frame, recipe(cfg, listed, remainder="passthrough"))
        strict = dataclasses.replace(cfg.validate, leakage="fail")
        with pytest.raises(LeakageError) as err:
            check_leakage.fn(fs, strict, cfg.seed)
        assert "'leak'" in err.value.message and "features.drop=[leak]" in err.value.fix
        fixed = features_of(cfg, frame, recipe(cfg, listed, remainder="passthrough",
                                               drop=["leak"]))
        assert check_leakage.fn(fixed, strict, cfg.seed).suspects == []

    def test_no_false_alarm_on_flights(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        frame = prepare(flights_frame, cfg.data, cfg.seed, "flights.csv")
        fs = featurize.fn(dataset(frame, "delayed"), cfg.features,
                          TargetSpec.from_data(cfg.data), cfg.seed)
        report = check_leakage.fn(fs, dataclasses.replace(cfg.validate, leakage="fail"),
                                  cfg.seed)
        assert report.suspects == [] and report.scan.columns == 10
        assert report.line().startswith("no model input alone nearly determines the target "
                                        "(10 checked on")


class TestAfterEvaluation:
    def test_a_perfect_score_names_the_inputs_behind_it(self, leaky) -> None:
        cfg, fs = leaky
        trained = train.fn(fs, ModelSpec.from_config(cfg.model), cfg.seed)
        result = evaluate.fn(trained, fs, cfg.evaluate)
        assert result.metrics["roc_auc"] >= 0.999
        assert result.leakage is not None
        assert [s.column for s in result.leakage.suspects] == ["leak"]
        before = check_leakage.fn(fs, cfg.validate, cfg.seed)
        record = leakage_summary(before, result.leakage)
        assert record["at_evaluation"]["suspects"] == ["leak"]
        text = leakage_text(record)
        assert text.startswith("SUSPECTED: 'leak' (roc_auc 1.0000 alone); the test score is "
                               "suspiciously perfect: inputs that alone nearly determine the "
                               "target: ['leak']. Fix: Leave them out")

    def test_an_ordinary_score_is_not_rechecked(self, config, flights_frame: pd.DataFrame
                                                ) -> None:
        cfg = config("model.n_estimators=40", "model.n_jobs=1")
        frame = prepare(flights_frame, dataclasses.replace(cfg.data, sample_rows=4000),
                        cfg.seed, "flights.csv")
        fs = featurize.fn(dataset(frame, "delayed"), cfg.features,
                          TargetSpec.from_data(cfg.data), cfg.seed)
        result = evaluate.fn(train.fn(fs, ModelSpec.from_config(cfg.model), cfg.seed), fs,
                             cfg.evaluate)
        assert result.metrics["roc_auc"] < 0.999 and result.leakage is None
