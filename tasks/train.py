"""Train: fit the estimator from ``conf/model`` and wrap it with the preprocessing.

The estimator is built through Hydra ``_target_`` (XGBoost classifier/regressor,
scikit-learn random forest, logistic/linear regression, or any scikit-learn
compatible class). XGBoost models stop early on the validation split when
``early_stopping_rounds`` is set. Training is deterministic for a fixed seed.

:func:`train_partitioned` is the Dask engine's step (``data.engine: dask``): it trains
with ``xgboost.dask`` and keeps a plain XGBoost model behind the fitted transformer,
the same kind of pipeline the pandas path registers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from prefect import task
from sklearn.base import is_classifier, is_regressor
from sklearn.pipeline import Pipeline

from prefab_mlops.config import ModelSpec
from prefab_mlops.core.errors import ConfigError
from prefab_mlops.core.fingerprint import lineage
from prefab_mlops.core.manifest import FitRecord
from prefab_mlops.core.schema import InputSchema
from prefab_mlops.core.storage import StorageConfig
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.orchestration.payloads import Payload
from prefab_mlops.partitions import (
    TRAIN,
    VALID,
    PartitionedFeatures,
    compute_client,
    design_matrix,
    storage_options,
)
from prefab_mlops.tasks.featurize import FeatureSet


@dataclass
class TrainedModel:
    """A fitted inference pipeline (``preprocess`` → ``model``) and its training facts.

    The pipeline lives in ``payload``, which the result cache stores apart and loads
    only when ``pipeline`` is read (see :mod:`prefab_mlops.orchestration.payloads`).
    """

    payload: Payload  # pipeline
    fingerprint: str
    estimator: str
    params: dict[str, Any]
    problem_type: str
    classes: list[Any] | None
    input_schema: InputSchema
    feature_names: list[str]
    fit: FitRecord | None = None

    @property
    def pipeline(self) -> Pipeline:
        pipeline: Pipeline = self.payload["pipeline"]
        return pipeline


def _json_safe(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = repr(v)  # JSON has no NaN/inf (xgboost's `missing` is nan)
        elif v is None or isinstance(v, (bool, int, float, str)):
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(i, (bool, int, float, str))
                                                  for i in v):
            out[k] = list(v)
        else:
            out[k] = repr(v)
    return out


def check_estimator_fits(estimator: Any, problem_type: str, target: str) -> None:
    """Refuse a regressor for classification and vice versa (before any work)."""
    if problem_type == "regression" and not is_regressor(estimator):
        raise ConfigError(f"model._target_ '{target}' is not a regressor but data.problem_type "
                          "is 'regression'.",
                          fix="Pick a regression model, e.g. model=xgboost_regressor.")
    if problem_type in ("binary", "multiclass") and not is_classifier(estimator):
        raise ConfigError(f"model._target_ '{target}' is not a classifier but "
                          f"data.problem_type is '{problem_type}'.",
                          fix="Pick a classification model, e.g. model=xgboost.")


def _trained(est: Any, features: FeatureSet | PartitionedFeatures, model: ModelSpec,
             fit: FitRecord, fingerprint: str) -> TrainedModel:
    """The fitted estimator behind the fitted transformer, as both engines return it."""
    pipeline = Pipeline([("preprocess", features.preprocessor), ("model", est)])
    return TrainedModel(payload=Payload(pipeline=pipeline), fingerprint=fingerprint,
                        estimator=model.target, params=_json_safe(est.get_params()),
                        problem_type=features.problem_type, classes=features.classes,
                        input_schema=features.input_schema,
                        feature_names=features.feature_names, fit=fit)


@task(name="train", persist_result=True)
def train(features: FeatureSet, model: ModelSpec, seed: int) -> TrainedModel:
    """Fit the configured estimator on the train split.

    Args:
        features: Splits and the fitted preprocessor from
            :func:`prefab_mlops.tasks.featurize.featurize`.
        model: ``conf/model``: estimator class (``_target_``) and its parameters.
        seed: Global seed; recorded in the lineage (models take it via ``random_state``).

    Returns:
        A :class:`TrainedModel` whose ``pipeline`` maps raw input columns to predictions.

    Raises:
        ConfigError: the estimator does not match the problem type, or native
            categorical encoding is used with an estimator that does not support it.
    """
    log = get_logger()
    est = model.instantiate()
    check_estimator_fits(est, features.problem_type, model.target)
    params = est.get_params()
    if features.native_categorical:
        if "enable_categorical" not in params:
            raise ConfigError(
                f"features.categorical.encoding is 'native' but '{model.target}' cannot take "
                "pandas categories.", fix="Use encoding 'ordinal' or 'onehot', or XGBoost.")
        est.set_params(enable_categorical=True)
    fit_kwargs: dict[str, Any] = {}
    early = params.get("early_stopping_rounds")
    if early:
        if features.Xt_valid is None or len(features.valid) == 0:
            raise ConfigError("model.early_stopping_rounds is set but the validation split is "
                              "empty.", fix="Set features.split.valid_size > 0.")
        fit_kwargs = {"eval_set": [(features.Xt_valid, features.valid.y)], "verbose": False}
    start = time.perf_counter()
    est.fit(features.Xt_train, features.train.y, **fit_kwargs)
    seconds = time.perf_counter() - start
    best = getattr(est, "best_iteration", None) if early else None
    fit = FitRecord(seconds=round(seconds, 3), train_rows=len(features.train),
                    best_iteration=None if best is None else int(best))
    log.info("Trained %s on %s rows in %.1fs%s", model.target, len(features.train), seconds,
             f" (best iteration {best})" if best is not None else "")
    return _trained(est, features, model, fit, lineage(train, features, model, seed))


# ------------------------------------------- data.engine: dask (partitioned data)
@task(name="train-partitioned")
def train_partitioned(features: PartitionedFeatures, model: ModelSpec, seed: int,
                      storage: StorageConfig) -> TrainedModel:
    """Train the XGBoost model of ``conf/model`` with ``xgboost.dask``.

    ``DaskQuantileDMatrix`` over the transformed train split, early stopping on the
    validation split when ``early_stopping_rounds`` is set. The booster goes into a
    plain ``XGBClassifier``/``XGBRegressor`` behind the fitted transformer, so the
    registered pipeline is the pandas path's kind.

    Args:
        features: From :func:`featurize_partitioned`.
        model: ``conf/model`` (an ``xgboost`` estimator).
        seed: Global seed (``seed``); part of the lineage.
        storage: ``conf/storage`` (to read the data on S3).

    Returns:
        A :class:`~prefab_mlops.tasks.train.TrainedModel`.

    Raises:
        ConfigError: not an XGBoost model, or early stopping with no validation rows.
    """
    import xgboost as xgb
    import xgboost.dask  # noqa: F401 - makes xgb.dask available

    est = model.instantiate()
    check_estimator_fits(est, features.problem_type, model.target)
    if not isinstance(est, xgb.XGBModel):
        raise ConfigError(f"model._target_ '{model.target}' is not an XGBoost model; "
                          "data.engine=dask trains with xgboost.dask.",
                          fix="Use model=xgboost (or xgboost_regressor), or data.engine=pandas.")
    params = est.get_xgb_params()
    params.pop("n_jobs", None)
    params.update(tree_method="hist", nthread=None)
    params = {k: v for k, v in params.items() if v is not None}
    early = est.get_params().get("early_stopping_rounds")
    if early and features.split_info.valid_rows == 0:
        raise ConfigError("model.early_stopping_rounds is set but the validation split is "
                          "empty.", fix="Set features.split.valid_size > 0.")
    import dask.dataframe as dd

    options = storage_options(features.data_uri, storage)
    start = time.perf_counter()
    with compute_client() as client:
        ddf = dd.read_parquet(features.data_uri, storage_options=options)
        X, y = design_matrix(ddf, features, TRAIN)
        dtrain = xgb.dask.DaskQuantileDMatrix(client, X, y)
        evals = []
        if early:
            Xv, yv = design_matrix(ddf, features, VALID)
            evals = [(xgb.dask.DaskQuantileDMatrix(client, Xv, yv, ref=dtrain), "valid")]
        out = xgb.dask.train(client, params, dtrain, num_boost_round=est.n_estimators,
                             evals=evals, early_stopping_rounds=early or None,
                             verbose_eval=False)
    seconds = time.perf_counter() - start
    booster = out["booster"]
    # the pipeline gives the model a plain array, as on the pandas path
    booster.feature_names = None
    booster.feature_types = None
    final = type(est)(**est.get_params())
    final.load_model(bytearray(booster.save_raw("ubj")))
    best = final.best_iteration if early else None
    fit = FitRecord(seconds=round(seconds, 3), train_rows=features.split_info.train_rows,
                    best_iteration=None if best is None else int(best))
    get_logger().info("Trained %s with xgboost.dask on %s rows in %.1fs%s", model.target,
                      features.split_info.train_rows, seconds,
                      f" (best iteration {best})" if best is not None else "")
    return _trained(final, features, model, fit,
                    lineage(train_partitioned, features, model, seed))
