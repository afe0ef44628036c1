"""Ingest: read a CSV or Parquet data set from a local path, ``s3://`` or ``pkg://``.

The task returns a :class:`Dataset`: the prepared frame plus a content
fingerprint (used for caching and lineage) and the location of an immutable,
content-addressed Parquet snapshot, so the exact data a model was trained on can
always be retrieved.

:func:`ingest_partitioned` is the Dask engine's step (``data.engine: dask``): it reads
a partitioned Parquet dataset, a directory of CSV files or a glob, locally or on S3,
lazily, fingerprints it from each file's metadata (size and mtime, or the ETag on S3)
without reading the data, and writes the prepared rows once as partitioned Parquet
(the snapshot), which the later steps read: tasks pass paths, never frames.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
from prefect import task

from prefab_mlops import datasets
from prefab_mlops.config import DataConfig, PathsConfig
from prefab_mlops.config.schema import DaskEngineConfig
from prefab_mlops.core.fingerprint import code_hash, lineage, stable_hash
from prefab_mlops.core.manifest import DataRecord, StepRecord
from prefab_mlops.core.storage import (
    StorageConfig,
    member_bytes,
    object_store,
    parse_location,
    read_source,
    source_fingerprint,
    source_stamp,
)
from prefab_mlops.datasets import Layout, parse_bytes, prepare
from prefab_mlops.datasets import stats as _stats
from prefab_mlops.orchestration.caching import LineagePolicy
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.orchestration.payloads import Payload
from prefab_mlops.orchestration.retries import retry_transient
from prefab_mlops.partitions import (
    COMPLETE_MARKER,
    PartitionedDataset,
    compute_client,
    files_fingerprint,
    list_files,
    resolve_uri,
    storage_options,
)


@dataclass
class Dataset:
    """A prepared data set and where it came from.

    Build one with :meth:`Dataset.of`. The frame lives in ``payload``, which the
    result cache stores apart and loads only when ``frame`` is read (see
    :mod:`prefab_mlops.orchestration.payloads`); ``rows`` and ``columns`` never need it.

    Attributes:
        name: ``data.name``.
        payload: Holds ``frame``: the rows after ``dropna``/``derive``/``columns``/
            ``window``/``sample_rows``.
        fingerprint: Identifies the content (source bytes + preparation config + code).
        source: Display form of the location read.
        source_fingerprint: Fingerprint of the raw source bytes alone.
        snapshot_uri: Immutable Parquet copy of ``frame`` (None if snapshots are off).
        target: Target column name.
        rows: Number of rows of ``frame``.
        columns: Column names of ``frame``.
        time_column: Time column name, if any.
        layout: How the source's bytes were read (format, encoding, separator,
            compression, and which of them were detected); None when the data set
            was not read from a file.
        stats: Facts about ``frame`` (its time range).
        steps: The project's ``after_ingest`` steps that made ``frame`` from the
            rows ingest read (see :mod:`prefab_mlops.tasks.steps`), in order; the
            snapshot holds the rows before them.
    """

    name: str
    payload: Payload
    fingerprint: str
    source: str
    source_fingerprint: str
    snapshot_uri: str | None
    target: str
    rows: int
    columns: list[str]
    time_column: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    layout: Layout | None = None
    steps: list[StepRecord] = field(default_factory=list)

    @classmethod
    def of(cls, frame: pd.DataFrame, **facts: Any) -> Dataset:
        """A Dataset holding ``frame``; ``facts`` are the other fields but rows/columns."""
        return cls(**_holding(frame), **facts)

    @property
    def frame(self) -> pd.DataFrame:
        frame: pd.DataFrame = self.payload["frame"]
        return frame

    def with_frame(self, frame: pd.DataFrame) -> Dataset:
        """A copy of this Dataset holding ``frame`` instead (same other facts)."""
        return replace(self, **_holding(frame))

    def lineage_record(self) -> DataRecord:
        """Where the data came from, as registered models record it (no split yet)."""
        return DataRecord(name=self.name, source=self.source, fingerprint=self.fingerprint,
                          source_fingerprint=self.source_fingerprint,
                          snapshot_uri=self.snapshot_uri, rows=self.rows,
                          columns=list(self.columns), time_min=self.stats.get("time_min"),
                          time_max=self.stats.get("time_max"), steps=list(self.steps),
                          read=self.layout.record() if self.layout else None)


def _holding(frame: pd.DataFrame) -> dict[str, Any]:
    """The Dataset fields that hold or describe ``frame``."""
    return {"payload": Payload(frame=frame), "rows": len(frame),
            "columns": [str(c) for c in frame.columns]}


def _source_key(inputs: dict[str, Any]) -> str:
    """Ingest's own cache-key part: a version stamp of the data source as it is now.

    On the task's decorator, so every caller caches ingest on the data as it is now,
    not on its config alone (a changed file is a cache miss). The stamp reads no
    content (:func:`~prefab_mlops.core.storage.source_stamp`): the source is read and
    hashed once per run, by the task on a miss, and not at all on a hit.
    """
    cfg: DataConfig = inputs["cfg"]
    paths: PathsConfig = inputs["paths"]
    storage: StorageConfig = inputs["storage"]
    return stable_hash(source_stamp(parse_location(cfg.uri, paths.root), storage.s3),
                       _helpers_code())


def _helpers_code() -> str:
    """Code of the shared parsing/preparing module (part of ingest's lineage)."""
    return code_hash(datasets)


# --------------------------------------------------------------------- task
@task(name="ingest", retry_condition_fn=retry_transient, persist_result=True,
      cache_policy=LineagePolicy(extra=_source_key))
def ingest(cfg: DataConfig, paths: PathsConfig, storage: StorageConfig, seed: int) -> Dataset:
    """Read and prepare the data set named by ``conf/data``.

    Args:
        cfg: ``conf/data``: location, format, target derivation, window, sampling.
        paths: ``conf/paths``: project root (for relative paths) and snapshot dir.
        storage: ``conf/storage``: S3 connection and where snapshots go.
        seed: Global seed (``seed``), used by ``sample_rows``.

    Returns:
        The prepared :class:`Dataset` with its fingerprint and snapshot location.

    Raises:
        DataSourceNotFound: the location does not exist.
        DataFormatError: empty, binary, mis-encoded, malformed or duplicate-column
            file, or Parquet bytes where ``format`` says csv.
        DataError: columns named in the config are missing.
        TransientError: S3 could not be reached (retried).
    """
    log = get_logger()
    loc = parse_location(cfg.uri, paths.root)
    # One read: the fingerprint hashes the bytes that are parsed (for a '#member', the
    # archive they come from), not a second read of a file that may have changed since.
    whole = read_source(replace(loc, member=None), storage.s3)
    src_fp = source_fingerprint(loc, storage.s3, whole)
    raw = member_bytes(whole, loc)
    del whole
    frame, layout = parse_bytes(raw, loc, cfg.format, cfg.parse_dates, cfg.read)
    del raw
    frame = prepare(frame, cfg, seed, loc.display)
    fingerprint = lineage(ingest, src_fp, cfg, seed, _helpers_code())
    snapshot_uri = None
    if cfg.snapshot:
        store = object_store(storage, f"{paths.data_dir}/snapshots", "snapshots")
        key = f"{cfg.name}/{fingerprint}.parquet"
        if not store.exists(key):
            buf = io.BytesIO()
            frame.to_parquet(buf, index=False)
            store.put_if_absent(key, buf.getvalue())
        snapshot_uri = store.uri(key)
    log.info("Ingested %s rows x %s columns from %s, read as %s (fingerprint %s)", len(frame),
             frame.shape[1], loc.display, layout.describe(), fingerprint[:12])
    return Dataset.of(frame, name=cfg.name, fingerprint=fingerprint, source=loc.display,
                      source_fingerprint=src_fp, snapshot_uri=snapshot_uri, target=cfg.target,
                      time_column=cfg.time_column, stats=_stats(frame, cfg.time_column),
                      layout=layout)


def load_snapshot(uri: str, storage: StorageConfig) -> pd.DataFrame:
    """Read back the exact data a model was trained on from its snapshot URI."""
    loc = parse_location(uri)
    return pd.read_parquet(io.BytesIO(read_source(loc, storage.s3)))


# ------------------------------------------- data.engine: dask (partitioned data)
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
