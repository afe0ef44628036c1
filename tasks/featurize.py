"""Featurize: seeded train/validation/test split and a fitted ``ColumnTransformer``.

The default ``hash`` split places each row by a seeded hash of its values, so a row
keeps its split when the table grows or is sampled (see :func:`split_rows`). Each
split carries the row hashes of the model's input columns, from which registration
records what a model was trained on.

The transformer is built from ``conf/features`` (impute, scale, one-hot/ordinal/
native categorical, datetime parts, drop), fitted on the train split only, and
later saved *inside* the model as one inference pipeline.

:func:`featurize_partitioned` is the Dask engine's step (``data.engine: dask``): each
row is placed by the same ``hash`` split, whatever the partitioning, and the
transformer's statistics (medians or means, category sets) are Dask reductions over
the train split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)

from prefab_mlops.config import FeaturesConfig, TargetSpec
from prefab_mlops.core.errors import DataError
from prefab_mlops.core.fingerprint import hash_position, lineage, row_hashes
from prefab_mlops.core.manifest import SplitRecord
from prefab_mlops.core.schema import ColumnKind, ColumnSpec, InputSchema
from prefab_mlops.core.storage import StorageConfig
from prefab_mlops.core.transformers import DatetimeParts, NativeCategorical, as_str_object
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.orchestration.payloads import Payload
from prefab_mlops.partitions import (
    TEST,
    TRAIN,
    VALID,
    PartitionedDataset,
    PartitionedFeatures,
    compute_client,
    split_codes,
    storage_options,
)
from prefab_mlops.tasks.ingest import Dataset

MISSING_CATEGORY = "__missing__"


@dataclass
class Split:
    """Raw feature rows and labels of one split.

    ``row_hash`` holds each row's hash over the columns of ``X`` (see
    :func:`prefab_mlops.core.fingerprint.row_hashes`), when it was computed.
    """

    X: pd.DataFrame
    y: np.ndarray
    row_hash: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.X)

    def subset(self, mask: np.ndarray) -> Split:
        """The rows where ``mask`` is true (a new Split; this one is not changed)."""
        return Split(self.X.loc[mask].reset_index(drop=True), self.y[mask],
                     None if self.row_hash is None else self.row_hash[mask])


@dataclass
class FeatureSet:
    """The splits, the fitted preprocessor and what the model's input looks like.

    ``Xt_train``/``Xt_valid`` are the transformed train/validation matrices, so the
    train task does not transform again. ``test`` stays raw: evaluation runs the
    full inference pipeline on it exactly as serving will. The splits and matrices
    live in ``payload``, which the result cache stores apart and loads only when
    they are read (see :mod:`prefab_mlops.orchestration.payloads`).
    """

    payload: Payload  # train, valid, test (Split), Xt_train, Xt_valid
    preprocessor: ColumnTransformer
    input_schema: InputSchema
    feature_names: list[str]
    classes: list[Any] | None
    problem_type: str
    native_categorical: bool
    split_info: SplitRecord
    fingerprint: str

    @property
    def train(self) -> Split:
        split: Split = self.payload["train"]
        return split

    @property
    def valid(self) -> Split:
        split: Split = self.payload["valid"]
        return split

    @property
    def test(self) -> Split:
        split: Split = self.payload["test"]
        return split

    @property
    def Xt_train(self) -> Any:  # noqa: N802 - the usual name of a design matrix
        return self.payload["Xt_train"]

    @property
    def Xt_valid(self) -> Any:  # noqa: N802
        return self.payload["Xt_valid"]


def build_preprocessor(cfg: FeaturesConfig) -> ColumnTransformer:
    """The (unfitted) ``ColumnTransformer`` described by ``conf/features``."""
    parts: list[tuple[str, Any, list[str]]] = []
    num = cfg.numeric
    if num.columns:
        steps: list[tuple[str, Any]] = []
        if num.impute != "none":
            strategy = "constant" if num.impute == "zero" else num.impute
            steps.append(("impute", SimpleImputer(strategy=strategy, fill_value=0)))
        if num.scale == "standard":
            steps.append(("scale", StandardScaler()))
        elif num.scale == "robust":
            steps.append(("scale", RobustScaler()))
        parts.append(("num", Pipeline(steps) if steps else "passthrough", list(num.columns)))
    cat = cfg.categorical
    if cat.columns:
        steps = [("as_str", FunctionTransformer(as_str_object, feature_names_out="one-to-one"))]
        if cat.impute != "none" and cat.encoding != "native":
            steps.append(("impute", SimpleImputer(
                strategy="constant" if cat.impute == "constant" else "most_frequent",
                fill_value=MISSING_CATEGORY)))
        if cat.encoding == "onehot":
            steps.append(("encode", OneHotEncoder(handle_unknown="infrequent_if_exist"
                                                  if cat.min_frequency else "ignore",
                                                  min_frequency=cat.min_frequency,
                                                  sparse_output=False, dtype=np.float32)))
        elif cat.encoding == "ordinal":
            steps.append(("encode", OrdinalEncoder(
                handle_unknown="use_encoded_value", unknown_value=-1,
                encoded_missing_value=-1, min_frequency=cat.min_frequency, dtype=np.float32)))
        else:
            steps.append(("encode", NativeCategorical()))
        parts.append(("cat", Pipeline(steps), list(cat.columns)))
    if cfg.datetime.columns:
        parts.append(("dt", DatetimeParts(parts=list(cfg.datetime.parts)),
                      list(cfg.datetime.columns)))
    # cfg.drop needs no part here: featurize leaves those columns out of the model's
    # input altogether (a "drop" part would then name columns its input does not have).
    ct = ColumnTransformer(parts, remainder=cfg.remainder, verbose_feature_names_out=False)
    if cat.columns and cat.encoding == "native":
        ct.set_output(transform="pandas")
    return ct


def input_schema(X: pd.DataFrame, cfg: FeaturesConfig) -> InputSchema:
    """What a caller must send to the model: one column spec per column of ``X`` (pure).

    The columns of ``conf/features`` take the kind of their list; any other column of
    ``X`` (passed through by ``remainder: passthrough``) takes the kind of its dtype.
    """
    kinds = {**dict.fromkeys(cfg.numeric.columns, ColumnKind.NUMERIC),
             **dict.fromkeys(cfg.categorical.columns, ColumnKind.CATEGORICAL),
             **dict.fromkeys(cfg.datetime.columns, ColumnKind.DATETIME)}
    columns = []
    for col in X.columns:
        s = X[col]
        rest = col not in kinds
        kind = kinds.get(col) or (
            ColumnKind.DATETIME if pd.api.types.is_datetime64_any_dtype(s)
            else ColumnKind.NUMERIC if pd.api.types.is_numeric_dtype(s)
            else ColumnKind.CATEGORICAL)
        columns.append(ColumnSpec.categorical(col, s.dropna().unique().tolist(), remainder=rest)
                       if kind is ColumnKind.CATEGORICAL
                       else ColumnSpec(col, kind, str(s.dtype), remainder=rest))
    return InputSchema(tuple(columns))


def _labels(y: pd.Series, target: TargetSpec) -> tuple[np.ndarray, list[Any] | None]:
    if target.problem_type == "regression":
        return y.to_numpy(dtype="float64"), None
    classes = sorted(pd.unique(y.dropna()).tolist(), key=lambda v: (str(type(v)), v))
    index = {c: i for i, c in enumerate(classes)}
    return y.map(index).to_numpy(dtype="int64"), [
        c.item() if hasattr(c, "item") else c for c in classes]


def split_rows(frame: pd.DataFrame, y: np.ndarray, cfg: FeaturesConfig, seed: int,
               time_column: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of train, validation and test (pure, seeded).

    ``hash``: a row is in test when its :func:`hash_position` is below
    ``test_size``, in validation when below ``test_size + valid_size``, else in
    train. The place depends only on the row's values in ``split.key`` (default:
    all columns of ``frame``) and the seed, so a row keeps its split when other rows
    are added, removed or reordered, and identical rows share a split. The sizes
    match ``test_size``/``valid_size`` up to sampling noise.

    ``random``/``stratified``: a seeded shuffle of this table; ``time``: the oldest
    rows train and the newest test.

    Raises:
        KeyError: a ``split.key`` column is not in ``frame``.
    """
    n = len(frame)
    idx = np.arange(n)
    sp = cfg.split
    if sp.strategy == "hash":
        where = hash_position(row_hashes(frame, list(sp.key) or None), seed)
        test = where < sp.test_size
        valid = ~test & (where < sp.test_size + sp.valid_size)
        return np.flatnonzero(~(test | valid)), np.flatnonzero(valid), np.flatnonzero(test)
    if sp.strategy == "time":
        col = sp.time_column or time_column
        order = np.argsort(frame[col].to_numpy(), kind="stable")
        n_test = int(round(n * sp.test_size))
        n_valid = int(round(n * sp.valid_size))
        return (order[: n - n_test - n_valid], order[n - n_test - n_valid: n - n_test],
                order[n - n_test:])
    strat = y if sp.strategy == "stratified" else None
    rest, test = train_test_split(idx, test_size=sp.test_size, random_state=seed,
                                  stratify=strat)
    if sp.valid_size <= 0:
        return rest, rest[:0], test
    valid_share = sp.valid_size / (1 - sp.test_size)
    train, valid = train_test_split(rest, test_size=valid_share, random_state=seed + 1,
                                    stratify=strat[rest] if strat is not None else None)
    return np.sort(train), np.sort(valid), np.sort(test)


@task(name="featurize", persist_result=True)
def featurize(data: Dataset, cfg: FeaturesConfig, target: TargetSpec, seed: int) -> FeatureSet:
    """Split ``data`` and fit the preprocessing on the train split only.

    Args:
        data: The validated data set.
        cfg: ``conf/features``: split strategy and sizes, column recipes.
        target: Target column and problem type (from ``conf/data``).
        seed: Global seed (``seed``) for the split.

    Returns:
        A :class:`FeatureSet`.

    Raises:
        DataError: a feature or ``split.key`` column is missing, or a split would be
            empty.
    """
    frame = data.frame
    feature_cols = [*cfg.numeric.columns, *cfg.categorical.columns, *cfg.datetime.columns]
    if cfg.remainder == "passthrough":
        listed = {*feature_cols, *cfg.drop, target.name}
        feature_cols += [c for c in frame.columns if c not in listed]
    missing = [c for c in [*feature_cols, target.name] if c not in frame.columns]
    if missing:
        raise DataError(f"Data set '{data.name}' has no column(s) {missing} named in "
                        f"conf/features; it has {list(frame.columns)}.",
                        fix="Fix the column lists in conf/features or data.columns.")
    key = list(cfg.split.key) if cfg.split.strategy == "hash" else []
    missing_key = [c for c in key if c not in frame.columns]
    if missing_key:
        raise DataError(f"features.split.key names column(s) {missing_key} that data set "
                        f"'{data.name}' does not have; it has {list(frame.columns)}.",
                        fix="Fix features.split.key (or leave it empty to hash whole rows).")
    y, classes = _labels(frame[target.name], target)
    if len(frame) < 10:
        raise DataError(f"Data set '{data.name}' has only {len(frame)} rows; a train/"
                        "validation/test split needs at least 10.",
                        fix="Use more data (validate.min_rows guards this earlier).")
    try:
        tr, va, te = split_rows(frame, y, cfg, seed, data.time_column)
    except ValueError as exc:  # e.g. a class too rare to stratify
        raise DataError(f"Cannot split data set '{data.name}' ({len(frame)} rows) with "
                        f"strategy '{cfg.split.strategy}': {exc}",
                        fix="Use more data, or features.split.strategy=random.") from None
    if min(len(tr), len(te)) == 0:
        raise DataError(f"Split of {len(frame)} rows left an empty train or test set.",
                        fix="Use more data or change features.split sizes.")
    X = frame[feature_cols]
    hashes = row_hashes(X)  # what the model is given of each row: records what it saw
    splits = [Split(X.iloc[i].reset_index(drop=True), y[i], hashes[i]) for i in (tr, va, te)]
    pre = build_preprocessor(cfg)
    Xt_train = pre.fit_transform(splits[0].X, splits[0].y)
    Xt_valid = pre.transform(splits[1].X) if len(splits[1]) else None
    names = [str(n) for n in pre.get_feature_names_out()]
    info = SplitRecord(
        strategy=cfg.split.strategy, seed=seed, test_size=cfg.split.test_size,
        valid_size=cfg.split.valid_size, train_rows=len(tr), valid_rows=len(va),
        test_rows=len(te),
        key=(key or [str(c) for c in frame.columns]) if cfg.split.strategy == "hash" else None,
        test_from=str(frame[cfg.split.time_column or data.time_column].iloc[te].min())
        if cfg.split.strategy == "time" else None)
    get_logger().info("Split %s rows: %s train / %s valid / %s test (%s); %s features",
                      len(frame), len(tr), len(va), len(te), cfg.split.strategy, len(names))
    return FeatureSet(payload=Payload(train=splits[0], valid=splits[1], test=splits[2],
                                      Xt_train=Xt_train, Xt_valid=Xt_valid),
                      preprocessor=pre, input_schema=input_schema(X, cfg), feature_names=names,
                      classes=classes, problem_type=target.problem_type,
                      native_categorical=cfg.categorical.encoding == "native"
                      and bool(cfg.categorical.columns),
                      split_info=info, fingerprint=lineage(featurize, data, cfg, target, seed))


# ------------------------------------------- data.engine: dask (partitioned data)
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
