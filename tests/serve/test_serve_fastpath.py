"""prefab_mlops.serve/fastpath.py: the numpy replay equals the fitted scikit-learn transformer.

Equality is checked on real flights rows, with missing values and unseen
categories mixed in, for the registered pipeline and for other recipes that
``tasks/featurize.py`` builds (one-hot, scalers, other imputers, every datetime part),
and end to end on a served model with a column of every kind of the input schema.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import KBinsDiscretizer

from prefab_mlops.config import (
    CategoricalFeatures,
    DatetimeFeatures,
    FeaturesConfig,
    NumericFeatures,
)
from prefab_mlops.core.manifest import FeatureRecord, ModelVersion
from prefab_mlops.core.schema import CATEGORY_CAP, ColumnKind, InputSchema
from prefab_mlops.serve.errors import FastPathUnsupported
from prefab_mlops.serve.fastpath import compile_transformer
from prefab_mlops.serve.model import ServedModel
from prefab_mlops.serve.schema import RecordValidator
from prefab_mlops.tasks.featurize import build_preprocessor, input_schema
from prefab_mlops.testing.records import to_records
from tests.serve.conftest import ServedProject

NUMERIC = ["month", "day", "sched_dep_time", "sched_arr_time", "distance", "flight"]
CATEGORICAL = ["carrier", "origin", "dest"]


def with_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """Real rows with a missing value or an unseen category in every column somewhere."""
    out = frame.copy()
    for c in NUMERIC:
        out[c] = out[c].astype("float64")
    for c in CATEGORICAL:
        out[c] = out[c].astype(object)
    for i, c in enumerate([*NUMERIC, *CATEGORICAL, "time_hour"]):
        out.loc[i, c] = pd.NaT if c == "time_hour" else (None if c in CATEGORICAL else np.nan)
    for i, c in enumerate(CATEGORICAL):
        out.loc[20 + i, c] = "NEVER-SEEN"
    return out


def schema_for(frame: pd.DataFrame, cfg: FeaturesConfig) -> InputSchema:
    """The input schema featurize writes for ``cfg``'s columns of ``frame``."""
    columns = [*cfg.numeric.columns, *cfg.categorical.columns, *cfg.datetime.columns]
    return input_schema(frame[columns], cfg)


def fast_and_slow(ct, schema: InputSchema, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    compiled = compile_transformer(ct, schema)
    names = list(schema.names)
    checked = RecordValidator(schema, [], None, unknown_category="accept",
                              max_rows=10**6).validate(to_records(frame[names]))
    fast = compiled.transform(checked.columns, checked.rows)
    slow = np.asarray(ct.transform(frame[names]))
    return fast, slow


class TestRegisteredPipeline:
    def test_equals_the_fitted_transformer_on_real_rows(
            self, served_project: ServedProject) -> None:
        ct = served_project.pipelines[1].named_steps["preprocess"]
        from prefab_mlops.core.registry import ModelRegistry
        from prefab_mlops.core.storage import LocalObjectStore

        schema = ModelRegistry(LocalObjectStore(served_project.registry)).get_version(
            "flights-binary", 1).features.input_schema
        frame = with_gaps(served_project.test_X)
        fast, slow = fast_and_slow(ct, schema, frame)
        assert fast.shape == slow.shape == (len(frame), 11)
        assert fast.dtype == slow.dtype
        np.testing.assert_array_equal(fast, slow)  # bit for bit, NaN where NaN


RECIPES = {
    "onehot, standard scaler, mean": dict(
        numeric=NumericFeatures(NUMERIC, impute="mean", scale="standard"),
        categorical=CategoricalFeatures(CATEGORICAL, encoding="onehot", impute="constant")),
    "ordinal, robust scaler, zero, most frequent, every datetime part": dict(
        numeric=NumericFeatures(NUMERIC, impute="zero", scale="robust"),
        categorical=CategoricalFeatures(CATEGORICAL, encoding="ordinal",
                                        impute="most_frequent"),
        datetime=DatetimeFeatures(["time_hour"], parts=[
            "year", "month", "day", "dayofweek", "dayofyear", "hour", "minute",
            "weekofyear", "is_weekend"])),
    "no imputation": dict(
        numeric=NumericFeatures(NUMERIC, impute="none"),
        categorical=CategoricalFeatures(CATEGORICAL, encoding="onehot", impute="none")),
}


class TestOtherRecipes:
    @pytest.mark.parametrize("name", sorted(RECIPES))
    def test_recipe_matches(self, served_project: ServedProject, name: str) -> None:
        cfg = FeaturesConfig(**{"datetime": DatetimeFeatures(["time_hour"]), **RECIPES[name]})
        train = served_project.data.head(5000)
        ct = build_preprocessor(cfg).fit(train)
        schema = schema_for(train, cfg)
        fast, slow = fast_and_slow(ct, schema, with_gaps(served_project.data.iloc[5000:7000]
                                                         .reset_index(drop=True)))
        np.testing.assert_allclose(fast, slow.astype(np.float64), rtol=1e-12, atol=0)

    @pytest.mark.parametrize("change, reason", [
        ({"categorical": CategoricalFeatures(CATEGORICAL, encoding="native")},
         "native categorical"),
        ({"categorical": CategoricalFeatures(CATEGORICAL, encoding="onehot",
                                             min_frequency=50)}, "infrequent categories"),
    ])
    def test_unsupported_recipes_say_why(self, served_project: ServedProject, change: dict,
                                         reason: str) -> None:
        cfg = dataclasses.replace(FeaturesConfig(numeric=NumericFeatures(NUMERIC)), **change)
        train = served_project.data.head(3000)
        ct = build_preprocessor(cfg).fit(train)
        with pytest.raises(FastPathUnsupported, match=reason):
            compile_transformer(ct, schema_for(train, cfg))


class TestFallback:
    def test_unsupported_step_serves_through_scikit_learn(
            self, served_project: ServedProject) -> None:
        cfg = FeaturesConfig(numeric=NumericFeatures(NUMERIC))
        train = served_project.data.head(3000)
        pipe = Pipeline([
            ("preprocess", ColumnTransformer([("num", KBinsDiscretizer(
                n_bins=4, encode="ordinal", strategy="uniform"),
                NUMERIC)])),
            ("model", LogisticRegression(max_iter=200))]).fit(train, train["delayed"])
        schema = schema_for(train, cfg)
        mv = ModelVersion("m", 1, "", "", "", "", "binary",
                          features=FeatureRecord(input_schema=schema, classes=[False, True]))
        served = ServedModel(mv, pipe, RecordValidator(schema, [], None), fast_path=True,
                             check_frame=train)
        assert served.compiled is None
        assert "KBinsDiscretizer" in served.fast_path_reason
        rows = served_project.data.iloc[3000:3100].reset_index(drop=True)
        checked = served.validator.validate(to_records(rows[NUMERIC]))
        pred = served.predict(checked.columns, checked.rows)
        np.testing.assert_allclose(pred.proba, pipe.predict_proba(rows[NUMERIC]), rtol=1e-12)
        assert pred.labels.tolist() == [bool(v) for v in pipe.predict(rows[NUMERIC])]

    def test_verification_failure_falls_back(self, served_project: ServedProject,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
        """If the replay ever disagreed with scikit-learn, the server would not use it."""
        from prefab_mlops.serve import model as model_mod

        def broken(*args, **kwargs):
            compiled = compile_transformer(*args, **kwargs)
            compiled.blocks[0][1].ops.append(("div", None, 2.0))
            return compiled

        monkeypatch.setattr(model_mod, "compile_transformer", broken)
        pipe = served_project.pipelines[1]
        from prefab_mlops.core.registry import ModelRegistry
        from prefab_mlops.core.storage import LocalObjectStore

        mv = ModelRegistry(LocalObjectStore(served_project.registry)).get_version(
            "flights-binary", 1)
        schema = mv.features.input_schema
        served = ServedModel(mv, pipe, RecordValidator(schema, [], None), fast_path=True,
                             check_frame=served_project.test_X)
        assert served.compiled is None
        assert "differs from the scikit-learn pipeline" in served.fast_path_reason


class TestEveryColumnKind:
    """The fast path and the scikit-learn pipeline path of one served model agree on
    every kind of input column: numeric (listed and passed through by the remainder),
    categorical (with a complete and with a capped category list) and datetime (in a
    zone and naive)."""

    def test_fast_path_and_pipeline_path_predict_the_same(
            self, served_project: ServedProject) -> None:
        data = served_project.data.assign(
            flight_id=served_project.data["carrier"] + served_project.data["flight"].astype(str),
            local_time=served_project.data["time_hour"].dt.tz_convert("America/New_York")
            .dt.tz_localize(None))
        cfg = FeaturesConfig(
            numeric=NumericFeatures(NUMERIC, impute="median", scale="standard"),
            categorical=CategoricalFeatures([*CATEGORICAL, "flight_id"], encoding="ordinal",
                                            impute="most_frequent"),
            datetime=DatetimeFeatures(["time_hour", "local_time"],
                                      parts=["month", "dayofweek", "hour", "is_weekend"]),
            remainder="passthrough")
        inputs = [*NUMERIC, *CATEGORICAL, "flight_id", "time_hour", "local_time", "hour"]
        train = data[[*inputs, "delayed"]].head(8000)
        pipe = Pipeline([("preprocess", build_preprocessor(cfg)),
                         ("model", HistGradientBoostingClassifier(max_iter=30, random_state=0))]
                        ).fit(train[inputs], train["delayed"])
        schema = input_schema(train[inputs], cfg)
        kinds = {(s.kind, s.capped, s.tz is None) for s in schema}
        assert {(ColumnKind.NUMERIC, False, True), (ColumnKind.CATEGORICAL, False, True),
                (ColumnKind.CATEGORICAL, True, True), (ColumnKind.DATETIME, False, False),
                (ColumnKind.DATETIME, False, True)} == kinds
        assert schema["hour"].kind is ColumnKind.NUMERIC  # passed through by the remainder
        assert len(schema["flight_id"].categories) == CATEGORY_CAP
        mv = ModelVersion("every-kind", 1, "", "", "", "", "binary",
                          features=FeatureRecord(input_schema=schema, classes=[False, True]))

        def served(fast: bool) -> ServedModel:
            validator = RecordValidator(schema, [], None, unknown_category="accept",
                                        max_rows=10**6)
            return ServedModel(mv, pipe, validator, fast_path=fast, check_frame=train)

        fast, slow = served(True), served(False)
        assert fast.compiled is not None, fast.fast_path_reason
        assert slow.compiled is None
        rows = data[inputs].iloc[8000:10000].reset_index(drop=True)
        rows = rows.assign(**{c: rows[c].astype("float64") for c in [*NUMERIC, "hour"]})
        # a missing value in every column somewhere (but "hour": nothing imputes it)
        for i, c in enumerate(inputs[:-1]):
            rows.loc[i, c] = pd.NaT if c in ("time_hour", "local_time") else (
                None if c in (*CATEGORICAL, "flight_id") else np.nan)
        for i, c in enumerate([*CATEGORICAL, "flight_id"]):
            rows.loc[20 + i, c] = "NEVER-SEEN"
        checked = fast.validator.validate(to_records(rows))
        assert checked.rows == len(rows)
        np.testing.assert_array_equal(  # the same matrix, NaN where NaN
            fast.compiled.transform(checked.columns, checked.rows),
            np.asarray(pipe.named_steps["preprocess"].transform(
                slow.frame(checked.columns, checked.rows)), dtype=np.float64))
        by_fast = fast.predict(checked.columns, checked.rows)
        by_pipeline = slow.predict(checked.columns, checked.rows)
        np.testing.assert_allclose(by_fast.proba, by_pipeline.proba, rtol=1e-12, atol=0)
        assert by_fast.labels.tolist() == by_pipeline.labels.tolist()
        np.testing.assert_allclose(by_pipeline.proba, pipe.predict_proba(rows), rtol=1e-12)
