"""The Dask data engine's machinery (``data.engine: dask``): no tasks, no prefect.

The training steps on partitioned data live in their stage modules
(:func:`prefab_mlops.tasks.ingest.ingest_partitioned`, ``validate_partitioned``,
``featurize_partitioned``, ``train_partitioned``, ``evaluate_partitioned``,
``evaluate_champion_partitioned``, ``register_partitioned``), each the counterpart of
the pandas step of the same name, ending in the same records. What they share is here:

* the Dask client of a flow run (:func:`dask_session`) and of a task
  (:func:`compute_client`: inside a Dask worker, a seceding ``worker_client`` so
  ``xgboost.dask`` cannot deadlock a one-thread worker);
* the data files of ``data.uri`` and their metadata fingerprint (:func:`list_files`,
  :func:`files_fingerprint`), the way DVC does, without reading the data;
* the records the steps pass: :class:`PartitionedDataset` and
  :class:`PartitionedFeatures` (paths, never frames);
* the pandas path's ``hash`` split per partition (:func:`split_codes`), the design
  matrix ``xgboost.dask`` trains on, the additive counts the test metrics are reduced
  from (:func:`score_partitions`, :func:`metrics_from_counts`) and the seeded drift
  reference sample (:func:`reference_sample`).

dask, distributed and fsspec are imported inside the functions: the ``[dask]`` extra
is optional.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer

from prefab_mlops.config import PathsConfig
from prefab_mlops.config.schema import DaskEngineConfig
from prefab_mlops.core.errors import ConfigError, DataError, DataSourceNotFound
from prefab_mlops.core.fingerprint import RowFingerprint, hash_position, row_hashes, stable_hash
from prefab_mlops.core.manifest import DataRecord, SplitRecord
from prefab_mlops.core.registry import REFERENCE_TARGET
from prefab_mlops.core.storage import StorageConfig

#: Split codes of a row (see :func:`split_codes`).
TRAIN, VALID, TEST = 0, 1, 2
#: Bins of the score histograms the AUCs are computed from: an AUC is exact up to
#: ties within a bin (scores closer than 1/AUC_BINS).
AUC_BINS = 1 << 14
#: Marker written last into a finished partitioned snapshot.
COMPLETE_MARKER = "_PREFAB_COMPLETE"
_DATA_SUFFIXES = {"parquet": (".parquet", ".parq", ".pq"),
                  "csv": (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".tsv")}


# ------------------------------------------------------------------ cluster
@contextmanager
def dask_session(cfg: DaskEngineConfig) -> Iterator[Any]:
    """The Dask client the partitioned steps of one flow run compute on.

    An existing default client (a Dask task runner's) is used as is; ``address``
    connects to that scheduler; else a ``LocalCluster`` on loopback is started and
    closed when the block ends.

    Args:
        cfg: ``data.dask``.
    """
    from distributed import Client, LocalCluster

    try:
        from distributed import default_client

        yield default_client()
        return
    except ValueError:
        pass  # no client yet: make one for this run
    if cfg.address:
        with Client(cfg.address) as client:
            yield client
        return
    with LocalCluster(n_workers=cfg.n_workers, threads_per_worker=cfg.threads_per_worker,
                      memory_limit=cfg.memory_limit, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


@contextmanager
def compute_client() -> Iterator[Any]:
    """The client a task computes with: a seceding ``worker_client`` on a Dask worker,
    else the flow run's default client."""
    from distributed import default_client, get_worker, worker_client

    try:
        get_worker()
    except ValueError:
        try:
            yield default_client()
        except ValueError:
            raise ConfigError("data.engine is 'dask' but no Dask client is running.",
                              fix="Run the step inside prefab_mlops.partitions.dask_session "
                              "(the training flow does).") from None
        return
    with worker_client() as client:
        yield client


# ------------------------------------------------------------------- files
def storage_options(uri: str, storage: StorageConfig) -> dict[str, Any]:
    """fsspec options for ``uri``: the S3 endpoint and region of ``conf/storage``."""
    if not uri.startswith("s3://"):
        return {}
    kwargs: dict[str, Any] = {"region_name": storage.s3.region_name}
    if storage.s3.endpoint_url:
        kwargs["endpoint_url"] = storage.s3.endpoint_url
    return {"client_kwargs": kwargs}


def resolve_uri(uri: str, paths: PathsConfig) -> str:
    """``data.uri`` as a URL: a relative path is under ``paths.root``."""
    if "://" in uri or uri.startswith("/"):
        return uri
    return f"{paths.root.rstrip('/')}/{uri}"


def _format(cfg_format: str, files: list[str], uri: str) -> str:
    if cfg_format != "auto":
        return cfg_format
    for fmt, suffixes in _DATA_SUFFIXES.items():
        if files and all(f.lower().endswith(suffixes) for f in files):
            return fmt
    raise DataError(f"Cannot tell the format of the files at '{uri}' ({files[:3]}...).",
                    fix="Set data.format to parquet or csv.")


def list_files(uri: str, fmt: str, options: dict[str, Any]) -> tuple[Any, list[str], str]:
    """The data files at ``uri`` (a directory, a glob or one file), sorted.

    Returns:
        ``(filesystem, files, format)``; the files carry no protocol prefix.

    Raises:
        DataSourceNotFound: no data file is there.
    """
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri, **options)
    fs.invalidate_cache()  # fsspec keeps listings per filesystem: see the files as they are now
    if any(ch in path for ch in "*?["):
        found = fs.glob(path)
    elif fs.isdir(path):
        found = fs.find(path)
    elif fs.exists(path):
        found = [path]
    else:
        found = []
    names = sorted(f for f in found
                   if not any(p.startswith(("_", ".")) for p in f[len(path):].split("/")))
    suffixes = _DATA_SUFFIXES.get(fmt) or tuple(s for v in _DATA_SUFFIXES.values() for s in v)
    files = [f for f in names if f.lower().endswith(suffixes)]
    if not files:
        raise DataSourceNotFound(f"No {'' if fmt == 'auto' else fmt + ' '}data files at "
                                 f"'{uri}'.", fix="Point data.uri at a partitioned Parquet "
                                 "dataset, a directory of CSV files or a glob.")
    return fs, files, _format(fmt, files, uri)


def files_fingerprint(fs: Any, files: list[str], root: str) -> str:
    """A fingerprint of the files from their metadata alone (no data is read).

    Each file's name under ``root``, size, and ETag (S3) or modification time (local),
    like DVC: a rewritten file changes it, an untouched dataset keeps it.
    """
    facts = []
    for f in files:
        info = fs.info(f)
        version = info.get("ETag") or info.get("etag") or info.get("mtime") \
            or info.get("LastModified") or info.get("created")
        facts.append([f[len(root):] if f.startswith(root) else f, info.get("size"),
                      str(version)])
    return stable_hash("files", facts)


# ------------------------------------------------------------------ records
@dataclass
class PartitionedDataset:
    """Where the prepared rows of a partitioned data set are, and what they are.

    The counterpart of :class:`prefab_mlops.tasks.ingest.Dataset` without the frame:
    ``uri`` is the partitioned Parquet copy every later step reads.

    Attributes:
        name, source, fingerprint, source_fingerprint, snapshot_uri, target, rows,
            columns, time_column, stats: as on ``Dataset``.
        uri: The prepared rows as partitioned Parquet (the snapshot, or a working copy
            under ``paths.cache_dir`` when ``data.snapshot`` is false).
        files: How many source files were read.
        partitions: How many partitions ``uri`` holds.
    """

    name: str
    uri: str
    fingerprint: str
    source: str
    source_fingerprint: str
    snapshot_uri: str | None
    target: str
    rows: int
    columns: list[str]
    files: int
    partitions: int
    time_column: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def lineage_record(self) -> DataRecord:
        """Where the data came from, as registered models record it (no split yet)."""
        return DataRecord(name=self.name, source=self.source, fingerprint=self.fingerprint,
                          source_fingerprint=self.source_fingerprint,
                          snapshot_uri=self.snapshot_uri, rows=self.rows,
                          columns=list(self.columns), time_min=self.stats.get("time_min"),
                          time_max=self.stats.get("time_max"))


@dataclass
class PartitionedFeatures:
    """The split rule, the fitted transformer and the model's input, for partitioned data.

    Nothing here holds rows: :meth:`rows` reads the rows of a split from ``data_uri``
    partition by partition, placed by :func:`split_codes`.
    """

    data_uri: str
    feature_columns: list[str]
    split_key: list[str]
    target: str
    preprocessor: ColumnTransformer
    input_schema: Any
    feature_names: list[str]
    classes: list[Any] | None
    problem_type: str
    split_info: SplitRecord
    fingerprint: str

    def frame(self, options: dict[str, Any]) -> Any:
        """The prepared rows as a lazy Dask DataFrame."""
        import dask.dataframe as dd

        return dd.read_parquet(self.data_uri, storage_options=options)


def split_codes(part: pd.DataFrame, key: list[str], seed: int, test_size: float,
                valid_size: float) -> np.ndarray:
    """Each row's split (:data:`TRAIN`, :data:`VALID` or :data:`TEST`), pure.

    The pandas path's ``hash`` split (:func:`prefab_mlops.tasks.featurize.split_rows`):
    the row hash of its values in ``key`` (every column when empty) placed by the
    seed, so a row lands in the same split on both engines and in every partitioning.
    """
    where = hash_position(row_hashes(part, key or None), seed)
    codes = np.full(len(part), TRAIN, dtype=np.int8)
    codes[where < test_size + valid_size] = VALID
    codes[where < test_size] = TEST
    return codes


def _labels(y: pd.Series, classes: list[Any] | None) -> np.ndarray:
    if classes is None:
        return y.to_numpy(dtype="float64")
    index = {c: i for i, c in enumerate(classes)}
    return y.map(index).to_numpy(dtype="int64")


def split_rows_of(part: pd.DataFrame, feats: PartitionedFeatures, which: int
                ) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of split ``which`` in one partition: ``(X, y)``."""
    info = feats.split_info
    codes = split_codes(part, feats.split_key, info.seed, info.test_size, info.valid_size)
    rows = part.loc[codes == which]
    return rows[feats.feature_columns].reset_index(drop=True), _labels(rows[feats.target],
                                                                       feats.classes)




def _design(part: pd.DataFrame, feats: PartitionedFeatures, which: int) -> pd.DataFrame:
    """The transformed rows of split ``which`` in one partition, plus the label column
    ``__y__`` (pure)."""
    X, y = split_rows_of(part, feats, which)
    Xt = np.asarray(feats.preprocessor.transform(X), dtype="float32") if len(X) else \
        np.empty((0, len(feats.feature_names)), dtype="float32")
    out = pd.DataFrame(Xt, columns=[f"f{i}" for i in range(Xt.shape[1])])
    out["__y__"] = y.astype("float32")
    return out


def design_matrix(ddf: Any, feats: PartitionedFeatures, which: int) -> tuple[Any, Any]:
    """The transformed rows of split ``which`` and their labels, as lazy Dask
    collections ``(X, y)`` (what ``xgboost.dask`` trains on)."""
    meta = pd.DataFrame({**{f"f{i}": pd.Series(dtype="float32")
                            for i in range(len(feats.feature_names))},
                         "__y__": pd.Series(dtype="float32")})
    design = ddf.map_partitions(_design, feats, which, meta=meta)
    return design.drop(columns="__y__"), design["__y__"]


def _counts(y: np.ndarray, scores: np.ndarray, problem_type: str,
            threshold: float) -> dict[str, Any]:
    """The additive counts the metrics are reduced from (pure)."""
    if problem_type == "regression":
        err = scores - y
        return {"n": len(y), "se": float(np.sum(err ** 2)), "ae": float(np.sum(np.abs(err))),
                "sy": float(np.sum(y)), "syy": float(np.sum(y ** 2))}
    p = np.clip(scores, 1e-15, 1 - 1e-15)
    pred = scores >= threshold
    pos = y == 1
    bins = np.minimum((scores * AUC_BINS).astype(np.int64), AUC_BINS - 1)
    return {"n": len(y), "pos": int(pos.sum()),
            "ll": float(-np.sum(np.where(pos, np.log(p), np.log(1 - p)))),
            "tp": int(np.sum(pred & pos)), "fp": int(np.sum(pred & ~pos)),
            "fn": int(np.sum(~pred & pos)), "tn": int(np.sum(~pred & ~pos)),
            "hpos": np.bincount(bins[pos], minlength=AUC_BINS),
            "hneg": np.bincount(bins[~pos], minlength=AUC_BINS)}


def _add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {k: a[k] + b[k] for k in a}


def metrics_from_counts(c: dict[str, Any], problem_type: str
                        ) -> tuple[dict[str, float], list[list[int]] | None]:
    """The test metrics of :func:`prefab_mlops.tasks.evaluate.compute_metrics` from the
    summed counts (pure). The AUCs are exact up to ties within a histogram bin."""
    n = c["n"]
    out: dict[str, float] = {"n_test": float(n)}
    if problem_type == "regression":
        mean = c["sy"] / n
        ss_tot = c["syy"] - n * mean ** 2
        out.update(rmse=float(np.sqrt(c["se"] / n)), mae=c["ae"] / n,
                   r2=float(1 - c["se"] / ss_tot) if ss_tot > 0 else float("nan"))
        return out, None
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    P, N = c["pos"], n - c["pos"]  # noqa: N806
    hpos, hneg = c["hpos"].astype(float), c["hneg"].astype(float)
    if P and N:
        below = np.cumsum(hneg) - hneg  # negatives scored in lower bins
        auc = float(np.sum(hpos * (below + 0.5 * hneg)) / (P * N))
        # average precision over the thresholds at each bin, from the top
        tp_at = np.cumsum(hpos[::-1])
        fp_at = np.cumsum(hneg[::-1])
        nonempty = (hpos[::-1] + hneg[::-1]) > 0
        precision = np.divide(tp_at, tp_at + fp_at, out=np.zeros_like(tp_at),
                              where=(tp_at + fp_at) > 0)
        ap = float(np.sum((hpos[::-1] / P * precision)[nonempty]))
    else:
        auc = ap = float("nan")
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    out.update(roc_auc=auc, pr_auc=ap, log_loss=c["ll"] / n, positive_rate=P / n,
               accuracy=(tp + tn) / n, f1=2 * prec * rec / (prec + rec) if prec + rec else 0.0,
               precision=prec, recall=rec)
    return out, [[int(tn), int(fp)], [int(fn), int(tp)]]


def curves_from_counts(c: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC and precision-recall curves of binary counts (pure): ``(fpr, tpr,
    precision)`` at each non-empty histogram bin taken as the threshold, from the top,
    starting at (0, 0); the recall is ``tpr``. The area under ``(fpr, tpr)`` is the ROC
    AUC of :func:`metrics_from_counts`."""
    hpos, hneg = c["hpos"].astype(float)[::-1], c["hneg"].astype(float)[::-1]
    keep = (hpos + hneg) > 0
    tp = np.concatenate([[0.0], np.cumsum(hpos)[keep]])
    fp = np.concatenate([[0.0], np.cumsum(hneg)[keep]])
    P, N = max(tp[-1], 1.0), max(fp[-1], 1.0)  # noqa: N806
    precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=(tp + fp) > 0)
    return fp / N, tp / P, precision


def _score_partition(part: pd.DataFrame, feats: PartitionedFeatures, models: dict[str, Any],
                     threshold: float, exclude: RowFingerprint | None) -> dict[str, Any]:
    """Counts of each model on the test rows of one partition (pure).

    Rows whose inputs are in ``exclude`` (a champion's training rows) are left out
    and counted as ``excluded``.
    """
    X, y = split_rows_of(part, feats, TEST)
    out: dict[str, Any] = {"rows": len(X), "excluded": 0}
    if exclude is not None and len(X):
        seen = exclude.contains_hashes(row_hashes(X, exclude.columns))
        out["excluded"] = int(seen.sum())
        X, y = X.loc[~seen].reset_index(drop=True), y[~seen]
    for name, model in models.items():
        if feats.problem_type == "regression":
            scores = np.asarray(model.predict(X), dtype="float64") if len(X) else np.empty(0)
        else:
            scores = (np.asarray(model.predict_proba(X), dtype="float64")[:, 1] if len(X)
                      else np.empty(0))
        out[name] = _counts(y, scores, feats.problem_type, threshold)
    return out


def score_partitions(features: PartitionedFeatures, models: dict[str, Any], threshold: float,
                     storage: StorageConfig, exclude: RowFingerprint | None = None
                     ) -> dict[str, Any]:
    """Each model's counts on the test split, summed over the partitions."""
    import dask
    import dask.dataframe as dd

    ddf = dd.read_parquet(features.data_uri,
                          storage_options=storage_options(features.data_uri, storage))
    shared = dask.delayed(models, traverse=False)
    parts = [dask.delayed(_score_partition)(p, features, shared, threshold, exclude)
             for p in ddf.to_delayed()]
    total = dask.delayed(lambda ps: _sum_parts(ps))(parts)
    with compute_client():
        result: dict[str, Any] = total.compute()
    return result


def _sum_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(parts[0])
    for p in parts[1:]:
        for k, v in p.items():
            out[k] = out[k] + v if not isinstance(v, dict) else _add(out[k], v)
    return out


# ----------------------------------------------------------------- samples
def train_sample(features: PartitionedFeatures, rows: int, seed: int,
                 storage: StorageConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """A seeded sample of about ``rows`` rows of the train split drawn across all
    partitions: the model's raw input columns and the encoded labels ``(X, y)``."""
    import dask.dataframe as dd

    ddf = dd.read_parquet(features.data_uri,
                          storage_options=storage_options(features.data_uri, storage))

    def train_rows(part: pd.DataFrame) -> pd.DataFrame:
        X, y = split_rows_of(part, features, TRAIN)
        return X.assign(**{REFERENCE_TARGET: y})

    meta = train_rows(ddf._meta)
    train = ddf.map_partitions(train_rows, meta=meta)
    total = max(features.split_info.train_rows, 1)
    with compute_client():
        sample = train.sample(frac=min(1.0, 1.2 * rows / total), random_state=seed).compute()
    if len(sample) > rows:  # a seeded cut, not the first partitions' rows
        sample = sample.sample(n=rows, random_state=seed)
    sample = sample.reset_index(drop=True)
    return sample.drop(columns=[REFERENCE_TARGET]), sample[REFERENCE_TARGET].to_numpy()


# ----------------------------------------------------------------- register
def reference_sample(features: PartitionedFeatures, rows: int, seed: int,
                     storage: StorageConfig) -> bytes:
    """A seeded sample of about ``rows`` train rows drawn across all partitions, as
    Parquet bytes with the encoded label (what monitoring compares new data with)."""
    import io

    X, y = train_sample(features, rows, seed, storage)
    buf = io.BytesIO()
    X.assign(**{REFERENCE_TARGET: y}).to_parquet(buf, index=False)
    return buf.getvalue()
