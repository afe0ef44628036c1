"""The Dask data engine (``data.engine: dask``): the training steps on partitioned data.

For data larger than one machine's memory. Each step here is the counterpart of the
pandas step of the same name and ends in the same records, so registration, serving,
batch scoring and monitoring do not change:

* :func:`ingest_partitioned` reads a partitioned Parquet dataset, a directory of CSV
  files or a glob, locally or on S3 (s3fs), lazily. Its fingerprint comes from each
  file's metadata (size and mtime, or the ETag on S3) and the file list, the way DVC
  does, without reading the data. The prepared rows are written once as partitioned
  Parquet (the snapshot), which the later steps read: tasks pass paths, never frames.
* :func:`validate_partitioned` checks the same data contract partition by partition
  (the pandas check on each partition); global rules (row count, uniqueness, two
  classes) are Dask aggregations. Every violation is gathered into one error.
* :func:`featurize_partitioned` places each row by the pandas path's ``hash`` split (a
  seeded hash of the row's values in ``features.split.key``), so a row lands in the
  same split on both paths, whatever the partitioning. The transformer's statistics
  (medians or means, category sets) are Dask reductions over the train split.
* :func:`train_partitioned` trains with ``xgboost.dask`` (``DaskQuantileDMatrix``,
  early stopping on the validation split) and keeps a plain XGBoost model behind the
  fitted transformer: the same kind of pipeline the pandas path registers.
* :func:`evaluate_partitioned` scores the test split partition by partition and
  reduces the per-partition counts to the metrics (an AUC from score histograms).
* :func:`register_partitioned` stores the version with a seeded drift-reference
  sample drawn across partitions.

The tasks compute on the Dask client of the flow run (:func:`dask_session`); inside a
Dask worker (a Dask task runner) they use ``distributed.worker_client()``, which
secedes the task's thread so ``xgboost.dask`` cannot deadlock a one-thread worker.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from sklearn.pipeline import Pipeline

from prefab_mlops import datasets
from prefab_mlops.config import (
    DataConfig,
    EvaluateConfig,
    FeaturesConfig,
    ModelSpec,
    PathsConfig,
    RegisterConfig,
    TargetSpec,
    ValidateConfig,
)
from prefab_mlops.config.schema import DaskEngineConfig
from prefab_mlops.core.errors import ConfigError, DataError, DataValidationError
from prefab_mlops.core.fingerprint import code_hash, lineage
from prefab_mlops.core.manifest import FitRecord, SplitRecord
from prefab_mlops.core.storage import StorageConfig
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.orchestration.payloads import Payload
from prefab_mlops.partitions import (
    COMPLETE_MARKER,
    TEST,
    TRAIN,
    VALID,
    PartitionedDataset,
    PartitionedFeatures,
    compute_client,
    design_matrix,
    files_fingerprint,
    list_files,
    metrics_from_counts,
    reference_sample,
    resolve_uri,
    score_partitions,
    split_codes,
    split_rows_of,
    storage_options,
)
from prefab_mlops.tasks.evaluate import (
    COMPARED,
    INCOMPATIBLE,
    NO_CHAMPION,
    TOO_FEW_ROWS,
    ChampionComparison,
    Evaluation,
    baseline_model,
    check_baseline,
    check_gate,
)
from prefab_mlops.tasks.featurize import build_preprocessor, input_schema
from prefab_mlops.tasks.register import RunInfo, store_version
from prefab_mlops.tasks.train import TrainedModel, _json_safe, check_estimator_fits
from prefab_mlops.tasks.validate import (
    _TWO_CLASSES,
    ValidationReport,
    _summarize,
    build_schema,
    soft_warnings,
)


# ------------------------------------------------------------------- ingest
def _prepare_partition(part: pd.DataFrame, cfg: DataConfig, seed: int,
                       source: str) -> pd.DataFrame:
    """``data.dropna``/``derive``/``columns``/``window`` on one partition (pure)."""
    return datasets.prepare(part, cfg, seed, source)


@task(name="ingest-partitioned", retries=0)
def ingest_partitioned(cfg: DataConfig, paths: PathsConfig, storage: StorageConfig,
                       seed: int) -> PartitionedDataset:
    """Read the partitioned data set of ``conf/data`` lazily and write its snapshot.

    Args:
        cfg: ``conf/data`` with ``engine: dask``: ``uri`` is a directory, a glob or a
            file, local or ``s3://``.
        paths: ``conf/paths``: project root and snapshot dir.
        storage: ``conf/storage``: S3 endpoint, and where snapshots go.
        seed: Global seed (``seed``); part of the lineage.

    Returns:
        A :class:`PartitionedDataset` whose ``uri`` holds the prepared rows.

    Raises:
        DataSourceNotFound: no data file at ``data.uri``.
        DataError: a column named in the config is missing.
    """
    import dask.dataframe as dd

    log = get_logger()
    uri = resolve_uri(cfg.uri, paths)
    options = storage_options(uri, storage)
    fs, files, fmt = list_files(uri, cfg.format, options)
    root = fs._strip_protocol(uri.split("*")[0])
    src_fp = files_fingerprint(fs, files, root)
    protocol = "s3://" if uri.startswith("s3://") else ""
    urls = [protocol + f for f in files]
    if fmt == "parquet":
        raw = dd.read_parquet(urls, storage_options=options)
    else:
        raw = dd.read_csv(urls, storage_options=options, blocksize=cfg.dask.blocksize,
                          parse_dates=list(cfg.parse_dates) or False,
                          sep=cfg.read.separator() or ",",
                          encoding="utf-8" if cfg.read.encoding == "auto" else cfg.read.encoding)
    prepared = raw.map_partitions(_prepare_partition, cfg, seed, uri,
                                  meta=datasets.prepare(raw._meta, cfg, seed, uri))
    # where the rows are computed is no part of what they are
    fingerprint = lineage(ingest_partitioned, src_fp, replace(cfg, dask=DaskEngineConfig()),
                          seed, code_hash(datasets))
    if storage.kind == "s3":
        base = f"s3://{storage.bucket}/{storage.prefix}/snapshots"
    else:
        base = f"{paths.data_dir}/snapshots" if cfg.snapshot else f"{paths.cache_dir}/partitioned"
    if storage.kind == "s3" and not cfg.snapshot:
        base = f"s3://{storage.bucket}/{storage.prefix}/partitioned"
    out = f"{base}/{cfg.name}/{fingerprint}"
    out_options = storage_options(out, storage)
    import fsspec

    out_fs, out_path = fsspec.core.url_to_fs(out, **out_options)
    with compute_client():
        if not out_fs.exists(f"{out_path}/{COMPLETE_MARKER}"):
            prepared.to_parquet(out, write_index=False, storage_options=out_options,
                                overwrite=out_fs.exists(out_path))
            out_fs.pipe(f"{out_path}/{COMPLETE_MARKER}", b"")
        written = dd.read_parquet(out, storage_options=out_options)
        facts: dict[str, Any] = {"rows": written.shape[0]}
        if cfg.time_column and cfg.time_column in written.columns:
            facts.update(time_min=written[cfg.time_column].min(),
                         time_max=written[cfg.time_column].max())
        import dask

        (computed,) = dask.compute(facts)
    rows = int(computed.pop("rows"))
    stats = {k: str(v) for k, v in computed.items()} if rows else {}
    log.info("Ingested %s rows x %s columns from %s files at %s as %s partitions "
             "(fingerprint %s)", rows, len(written.columns), len(files), uri,
             written.npartitions, fingerprint[:12])
    return PartitionedDataset(
        name=cfg.name, uri=out, fingerprint=fingerprint, source=uri,
        source_fingerprint=src_fp, snapshot_uri=out if cfg.snapshot else None,
        target=cfg.target, rows=rows, columns=[str(c) for c in written.columns],
        files=len(files), partitions=written.npartitions, time_column=cfg.time_column,
        stats=stats)


# ----------------------------------------------------------------- validate
def _partition_violations(part: pd.DataFrame, cfg: ValidateConfig, target: TargetSpec
                          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The per-row rules of the data contract on one partition: (violations, warnings).

    Global rules are left to :func:`validate_partitioned`: the row count, uniqueness
    and the two classes of a classification target.
    """
    import pandera.pandas as pa

    local = replace(cfg, min_rows=0, unique=[],
                    columns={k: replace(r, unique=False) for k, r in cfg.columns.items()})
    schema, violations, _ = build_schema(part, local, target)
    try:
        schema.validate(part, lazy=True)
    except pa.errors.SchemaErrors as err:
        found = _summarize(err.failure_cases, part, cfg.max_examples)
        violations += [v for v in found if v["rule"] != _TWO_CLASSES
                       and not v["rule"].startswith("min_rows")]
    bad = {v["column"] for v in violations if v["rule"].startswith("dtype ")}
    warnings = soft_warnings(part, {k: r for k, r in cfg.columns.items() if k not in bad},
                             cfg.max_examples)
    return violations, warnings


def _merge(records: list[dict[str, Any]], max_examples: int) -> list[dict[str, Any]]:
    """Records of the same (column, rule) from several partitions as one: counts added,
    examples pooled (a table-wide rule such as a dtype is counted once per partition)."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        key = (r["column"], r["rule"])
        if key not in merged:
            merged[key] = {**r, "examples": list(r["examples"])}
            continue
        m = merged[key]
        m["count"] += r["count"]
        m["examples"] += [e for e in r["examples"] if e not in m["examples"]]
    for m in merged.values():
        m["examples"] = m["examples"][:max_examples]
    return list(merged.values())


@task(name="validate-partitioned")
def validate_partitioned(data: PartitionedDataset, cfg: ValidateConfig, target: TargetSpec,
                         storage: StorageConfig) -> ValidationReport:
    """Check the data contract on every partition and the global rules on the whole.

    Args:
        data: From :func:`ingest_partitioned`.
        cfg: ``conf/validate``.
        target: Target column and problem type (from ``conf/data``).
        storage: ``conf/storage`` (to read ``data.uri`` on S3).

    Returns:
        A :class:`ValidationReport` (also when ``on_failure`` is ``warn``).

    Raises:
        DataValidationError: violations found and ``on_failure`` is ``fail``.
    """
    import dask
    import dask.dataframe as dd

    options = storage_options(data.uri, storage)
    with compute_client():
        ddf = dd.read_parquet(data.uri, storage_options=options)
        per_part = [dask.delayed(_partition_violations)(p, cfg, target)
                    for p in ddf.to_delayed()]
        unique_cols = [c for c, r in cfg.columns.items() if r.unique and c in ddf.columns]
        keys = [[c for c in cols if c in ddf.columns] for cols in cfg.unique]
        dup_counts = {c: (ddf[c].value_counts() > 1).sum() for c in unique_cols}
        group_dups = {", ".join(k): ddf.groupby(k).size().pipe(lambda s: s[s > 1]).sum()
                      for k in keys if k}
        classes = (ddf[target.name].dropna().nunique()
                   if target.problem_type != "regression" and target.name in ddf.columns
                   else None)
        (parts,) = dask.compute(per_part)  # delayed and expressions: computed apart
        dups, groups, n_classes = dask.compute(dup_counts, group_dups, classes)
    violations = _merge([v for vs, _ in parts for v in vs], cfg.max_examples)
    warnings = _merge([w for _, ws in parts for w in ws], cfg.max_examples)
    if data.rows < cfg.min_rows:
        violations.append({"column": "<table>", "rule": f"min_rows({cfg.min_rows})",
                           "count": 1, "examples": [f"found {data.rows} row(s)"]})
    for col, n in dups.items():
        if n:
            violations.append({"column": col, "rule": "field_uniqueness", "count": int(n),
                               "examples": ["values that occur more than once"]})
    for cols, n in groups.items():
        if n:
            violations.append({"column": cols, "rule": "unique together", "count": int(n),
                               "examples": []})
    if n_classes is not None and n_classes < 2:
        violations.append({"column": target.name, "rule": _TWO_CLASSES, "count": 1,
                           "examples": [f"found {n_classes} class(es)"]})
    report = ValidationReport(passed=not violations, rows=data.rows, columns=len(data.columns),
                              violations=violations, on_failure=cfg.on_failure,
                              fingerprint=lineage(validate_partitioned, data, cfg, target),
                              dataset=f"{data.name} ({data.source})", warnings=warnings)
    if warnings:
        get_logger().warning("%s", report.warning_text())
    if violations:
        if cfg.on_failure == "fail":
            raise DataValidationError(
                report.message(), violations,
                fix="Fix the data at its source, or relax the rule in conf/validate "
                "(set validate.on_failure=warn to continue anyway).")
        get_logger().warning("%s\n(on_failure=warn: continuing)", report.message())
    return report


# ---------------------------------------------------------------- featurize
def _fit_frame(meta: pd.DataFrame, head: pd.DataFrame, centers: dict[str, float],
               categories: dict[str, list[Any]]) -> pd.DataFrame:
    """A small frame on which fitting the transformer gives the statistics computed by
    Dask: each numeric column constant at its center (its median or mean), each
    categorical column holding each of its values (pure)."""
    n = max([len(v) for v in categories.values()] + [1])
    out = {}
    for col in meta.columns:
        if col in categories:
            values = categories[col] or [None]
            out[col] = pd.Series([values[i % len(values)] for i in range(n)], dtype=object)
        elif col in centers:
            center = centers[col]
            dtype = meta[col].dtype
            if pd.api.types.is_integer_dtype(dtype) and not float(center).is_integer():
                dtype = np.dtype("float64")
            out[col] = pd.Series([center] * n).astype(dtype)
        else:
            out[col] = pd.Series([head[col].iloc[0]] * n).astype(meta[col].dtype)
    return pd.DataFrame(out)


@task(name="featurize-partitioned")
def featurize_partitioned(data: PartitionedDataset, cfg: FeaturesConfig, target: TargetSpec,
                          seed: int, storage: StorageConfig) -> PartitionedFeatures:
    """Place each row in a split and fit the transformer on the train split's statistics.

    Args:
        data: From :func:`ingest_partitioned`.
        cfg: ``conf/features`` (``hash`` split only).
        target: Target column and problem type.
        seed: Global seed (``seed``) for the split.
        storage: ``conf/storage`` (to read ``data.uri`` on S3).

    Returns:
        A :class:`PartitionedFeatures` (no rows: the splits are read when used).

    Raises:
        DataError: a feature or ``split.key`` column is missing, or a split is empty.
    """
    import dask
    import dask.dataframe as dd

    feature_cols = [*cfg.numeric.columns, *cfg.categorical.columns, *cfg.datetime.columns]
    missing = [c for c in [*feature_cols, *cfg.split.key, target.name] if c not in data.columns]
    if missing:
        raise DataError(f"Data set '{data.name}' has no column(s) {missing} named in "
                        f"conf/features; it has {data.columns}.",
                        fix="Fix the column lists in conf/features or data.columns.")
    key = list(cfg.split.key)
    sp = cfg.split
    options = storage_options(data.uri, storage)
    with compute_client():
        ddf = dd.read_parquet(data.uri, storage_options=options)
        codes = ddf.map_partitions(lambda p: pd.Series(split_codes(
            p, key, seed, sp.test_size, sp.valid_size), index=p.index),
            meta=pd.Series(dtype="int8"))
        # one expression that filters each partition (a boolean mask from another
        # expression need not line up: Dask may fuse partitions of a column projection)
        train = ddf.map_partitions(lambda p: p.loc[split_codes(
            p, key, seed, sp.test_size, sp.valid_size) == TRAIN], meta=ddf._meta)
        num = list(cfg.numeric.columns)
        lazy: dict[str, Any] = {"counts": codes.value_counts()}
        if num and cfg.numeric.impute == "median":
            lazy["centers"] = train[num].quantile(0.5)
        elif num and cfg.numeric.impute == "mean":
            lazy["centers"] = train[num].mean()
        lazy["categories"] = {c: train[c].astype("object").dropna().unique()
                              for c in cfg.categorical.columns}
        lazy["missing"] = {c: train[c].isna().any() for c in cfg.categorical.columns}
        if target.problem_type != "regression":
            lazy["classes"] = ddf[target.name].dropna().unique()
        lazy["head"] = train[feature_cols].head(1, npartitions=-1)
        (got,) = dask.compute(lazy)
    counts = {int(k): int(v) for k, v in got["counts"].items()}
    tr, va, te = (counts.get(c, 0) for c in (TRAIN, VALID, TEST))
    if min(tr, te) == 0:
        raise DataError(f"Split of {data.rows} rows left an empty train or test set.",
                        fix="Use more data or change features.split sizes.")
    centers = ({str(k): float(v) for k, v in got["centers"].items()} if "centers" in got
               else dict.fromkeys(num, 0.0))
    categories = {c: sorted(map(str, v)) + ([None] if got["missing"][c] else [])
                  for c, v in got["categories"].items()}
    classes = None
    if "classes" in got:
        found = sorted(pd.unique(got["classes"]).tolist(), key=lambda v: (str(type(v)), v))
        classes = [c.item() if hasattr(c, "item") else c for c in found]
    meta = ddf._meta[feature_cols]
    fit_on = _fit_frame(meta, got["head"], centers, categories)
    pre = build_preprocessor(cfg)
    pre.fit(fit_on)
    names = [str(n) for n in pre.get_feature_names_out()]
    info = SplitRecord(strategy="hash", seed=seed, test_size=sp.test_size,
                       valid_size=sp.valid_size, train_rows=tr, valid_rows=va, test_rows=te,
                       key=key or list(data.columns))
    get_logger().info("Split %s rows: %s train / %s valid / %s test (hash, %s partitions); "
                      "%s features", data.rows, tr, va, te, data.partitions, len(names))
    return PartitionedFeatures(
        data_uri=data.uri, feature_columns=feature_cols, split_key=key, target=target.name,
        preprocessor=pre, input_schema=input_schema(fit_on, cfg), feature_names=names,
        classes=classes, problem_type=target.problem_type, split_info=info,
        fingerprint=lineage(featurize_partitioned, data, cfg, target, seed))


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
    pipeline = Pipeline([("preprocess", features.preprocessor), ("model", final)])
    return TrainedModel(payload=Payload(pipeline=pipeline),
                        fingerprint=lineage(train_partitioned, features, model, seed),
                        estimator=model.target, params=_json_safe(final.get_params()),
                        problem_type=features.problem_type, classes=features.classes,
                        input_schema=features.input_schema,
                        feature_names=features.feature_names, fit=fit)


# ----------------------------------------------------------------- evaluate
class _Constant:
    """A model that gives every row the same score (the naive baseline's prediction)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = np.full(len(X), self.value)
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X), self.value)


def _train_label_center(features: PartitionedFeatures, metric: str,
                        storage: StorageConfig) -> float:
    """The naive baseline's one prediction, from the train split (a Dask reduction):
    the positive rate (classes), the mean or, for ``mae``, the median (regression)."""
    import dask.dataframe as dd

    ddf = dd.read_parquet(features.data_uri,
                          storage_options=storage_options(features.data_uri, storage))
    y = ddf.map_partitions(lambda p: pd.Series(split_rows_of(p, features, TRAIN)[1]),
                           meta=pd.Series(dtype="float64"))
    _, strategy = baseline_model(features.problem_type, metric)
    with compute_client():
        return float((y.quantile(0.5) if strategy == "median" else y.mean()).compute())


@task(name="evaluate-partitioned")
def evaluate_partitioned(model: TrainedModel, features: PartitionedFeatures,
                         cfg: EvaluateConfig, storage: StorageConfig) -> Evaluation:
    """Score the model on the test split partition by partition and check the gate.

    The naive baseline of the gate (``evaluate.baseline``) is scored in the same pass.
    No plots, and no leakage scan of the training rows, on this engine.

    Args:
        model: From :func:`train_partitioned`.
        features: From :func:`featurize_partitioned`.
        cfg: ``conf/evaluate``.
        storage: ``conf/storage`` (to read the data on S3).

    Returns:
        An :class:`~prefab_mlops.tasks.evaluate.Evaluation`.
    """
    models: dict[str, Any] = {"model": model.pipeline}
    strategy = ""
    if cfg.baseline is not None:
        _, strategy = baseline_model(model.problem_type, cfg.primary_metric)
        models["baseline"] = _Constant(_train_label_center(features, cfg.primary_metric,
                                                           storage))
    counts = score_partitions(features, models, cfg.threshold, storage)
    values, cm = metrics_from_counts(counts["model"], model.problem_type)
    baseline = None
    if cfg.baseline is not None:
        base, _ = metrics_from_counts(counts["baseline"], model.problem_type)
        baseline = check_baseline(values, base, cfg.primary_metric, strategy, cfg.baseline)
    gate = check_gate(values, cfg.gate, baseline)
    get_logger().info("Test metrics (%s partition-wise): %s; quality gate %s",
                      int(values["n_test"]), {k: round(v, 4) for k, v in values.items()},
                      gate.describe())
    return Evaluation(metrics=values, confusion_matrix=cm, gate=gate, plots={},
                      primary_metric=cfg.primary_metric,
                      fingerprint=lineage(evaluate_partitioned, model, features, cfg))


@task(name="evaluate-champion-partitioned")
def evaluate_champion_partitioned(champion: Any, challenger: TrainedModel,
                                  features: PartitionedFeatures, cfg: EvaluateConfig,
                                  storage: StorageConfig) -> ChampionComparison:
    """The production model and the new one on the test rows the champion was not
    trained on, partition by partition (the counterpart of
    :func:`prefab_mlops.tasks.evaluate.evaluate_champion`; a test row never shares a
    ``hash`` split with a training row of the same inputs, so none is left out as the
    challenger's own).

    Args:
        champion: The production model (``LoadedModel``), or None.
        challenger: The newly trained model.
        features: From :func:`featurize_partitioned`.
        cfg: ``conf/evaluate`` (threshold, ``champion`` check).
        storage: ``conf/storage``.
    """
    n = features.split_info.test_rows
    if champion is None:
        return ChampionComparison(NO_CHAMPION, None, n)
    label = f"v{champion.version.version}"
    base: dict[str, Any] = dict(champion_version=champion.version.version, test_rows=n,
                                checked=champion.trained_rows is not None)
    rows = champion.trained_rows
    if rows is not None and not set(rows.columns) <= set(features.feature_columns):
        note = f"{label} cannot score the current test split (columns {rows.columns})"
        return ChampionComparison(INCOMPATIBLE, note=note, **base)
    try:
        counts = score_partitions(features, {"champion": champion.model,
                                             "challenger": challenger.pipeline},
                                  cfg.threshold, storage, exclude=rows)
    except Exception as exc:  # noqa: BLE001 - an incompatible champion is not fatal
        note = f"{label} cannot score the current test split ({type(exc).__name__}: {exc})"
        get_logger().warning("%s; treating it as not comparable.", note)
        return ChampionComparison(INCOMPATIBLE, note=note, **base)
    kept = n - counts["excluded"]
    base.update(compared_rows=kept, excluded_rows=counts["excluded"])
    if kept < max(min(cfg.champion.min_rows, n), cfg.champion.min_share * n):
        note = (f"only {kept:,} of {n:,} test rows were not used to train {label} "
                "(evaluate.champion)")
        return ChampionComparison(TOO_FEW_ROWS, note=note, **base)
    champ, _ = metrics_from_counts(counts["champion"], features.problem_type)
    mine, _ = metrics_from_counts(counts["challenger"], features.problem_type)
    return ChampionComparison(COMPARED, champion=champ, challenger=mine, **base)


@task(name="register-partitioned")
def register_partitioned(model: TrainedModel, evaluation: Evaluation, data: PartitionedDataset,
                         features: PartitionedFeatures, comparison: ChampionComparison | None,
                         cfg: RegisterConfig, storage: StorageConfig, run: RunInfo,
                         seed: int) -> Any:
    """Register ``model`` as :func:`prefab_mlops.tasks.register.register` does.

    The drift-reference sample is a seeded sample across partitions. The row hashes of
    the train and validation splits are not stored (they would be 8 bytes a row), so a
    later model is compared with this one on its whole test split.
    """
    def reference() -> bytes:
        return reference_sample(features, cfg.reference_sample_rows, seed, storage)

    return store_version(model, evaluation,
                         replace(data.lineage_record(), split=features.split_info),
                         data.target, reference if cfg.reference_sample_rows > 0 else None,
                         None, comparison, cfg, storage, run)
