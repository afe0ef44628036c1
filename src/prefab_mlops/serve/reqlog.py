"""The request log: live traffic as batches the monitoring flow can check for drift.

Every scored row is appended (in memory, from the event loop) and written by a
background thread into ``request_log_dir`` as two files per chunk:

* ``<model>-<time>-<worker>-<seq>.parquet`` (or ``.csv``): the request's model
  input columns, plus the optional extra fields the client sent (training-data
  columns such as ids). Nothing else, so the monitoring flow accepts the file
  as its current batch as is::

      python -m prefab_mlops.flows.monitoring --batch LOGFILE monitor.labels=false data.format=auto

  (``data.format=auto`` because the flights data config says ``csv``; with the
  flights validation rules, which require the ``hour`` column, either send
  ``hour`` with each request or add ``validate.columns.hour.required=false``).
* ``<same name>.predictions.parquet`` (or ``.csv``): one row per input row, in
  the same order: ``request_id``, ``row``, ``model_version``, ``logged_at``,
  ``prediction`` and the probabilities.

Bounds: a file is closed after ``rows_per_file`` rows (and whenever the served
version changes, so one file holds one version's traffic); only the newest
``max_files`` files are kept; at most ``2 * rows_per_file`` (and at least 10,000)
rows wait in memory for the writer, and rows beyond that are dropped and counted
(``prefab_serve_request_log_dropped_rows_total``). The open file is rewritten every
``flush_seconds`` and at shutdown.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prefab_mlops.core.schema import ColumnKind
from prefab_mlops.serve.model import Prediction, ServedModel
from prefab_mlops.serve.schema import Validated, preview

log = logging.getLogger("prefab_mlops.serve")
PREDICTIONS_SUFFIX = ".predictions"


@dataclass
class _Chunk:
    model: ServedModel
    data: Validated
    prediction: Prediction
    request_id: str
    at: _dt.datetime


@dataclass
class _OpenFile:
    stem: str
    version: int
    inputs: list[pd.DataFrame]
    outputs: list[pd.DataFrame]
    rows: int = 0
    columns: tuple[str, ...] | None = None


def _scalar(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    try:
        return json.dumps(v, sort_keys=True)
    except RecursionError:  # ~1000 levels deep (orjson reads 1023): log a preview, keep the flush
        return preview(v)


class RequestLog:
    """A bounded, rotating log of scored requests.

    Args:
        directory: Where files go (settings ``request_log_dir``).
        model_name: Registered model name (file name prefix).
        fmt: ``parquet`` or ``csv`` (``request_log_format``).
        rows_per_file: Rows before a file is closed (``request_log_rows_per_file``).
        max_files: Newest files kept (``request_log_max_files``).
        flush_seconds: How often pending rows are written (``request_log_flush_seconds``).
        worker: A tag naming this worker process (file names).
        on_written: Called from the writer thread with the rows written.
        on_dropped: Called from the event loop with rows dropped.
        max_pending_rows: Most rows waiting for the writer (default: twice
            ``rows_per_file``, at least 10,000); more are dropped and counted.
    """

    def __init__(self, directory: str | Path, model_name: str, fmt: str = "parquet",
                 rows_per_file: int = 10_000, max_files: int = 50,
                 flush_seconds: float = 10.0, worker: str = "w0",
                 on_written: Any = None, on_dropped: Any = None,
                 max_pending_rows: int | None = None) -> None:
        self.directory = Path(directory)
        self.model_name = model_name
        self.fmt = fmt
        self.rows_per_file = rows_per_file
        self.max_files = max_files
        self.flush_seconds = flush_seconds
        self.worker = worker
        self.max_pending = max_pending_rows or max(2 * rows_per_file, 10_000)
        self._on_written = on_written
        self._on_dropped = on_dropped
        self._pending: list[_Chunk] = []
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._open: _OpenFile | None = None
        self._seq = 0
        self.files_written: list[Path] = []

    # ----------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="prefab-request-log",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write everything pending and close the open file (blocks)."""
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        else:
            self.flush(final=True)

    def add(self, model: ServedModel, data: Validated, prediction: Prediction,
            request_id: str) -> None:
        """Queue one scored request (cheap; called from the event loop)."""
        with self._lock:
            if self._pending_rows + data.rows > self.max_pending:
                dropped = True
            else:
                dropped = False
                self._pending.append(_Chunk(model, data, prediction, request_id,
                                            _dt.datetime.now(_dt.UTC)))
                self._pending_rows += data.rows
                full = self._pending_rows >= self.rows_per_file
        if dropped:
            if self._on_dropped:
                self._on_dropped(data.rows)
            return
        if full:
            self._wake.set()

    # --------------------------------------------------------------- writer
    def _loop(self) -> None:
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            closing = self._closing  # read first: rows added before close() are in this flush
            try:
                self.flush(final=closing)
            except Exception:  # noqa: BLE001 - never kill the writer; try again later
                log.exception("request log: writing to %s failed", self.directory)
            if closing:
                return

    def flush(self, final: bool = False) -> None:
        """Write pending rows; ``final`` also closes the open file."""
        with self._lock:
            chunks, self._pending, self._pending_rows = self._pending, [], 0
        written = 0
        for chunk in chunks:
            written += self._append(chunk)
        if self._open is not None and (written or final):
            self._write(self._open)
            if final:
                self._open = None
        if written and self._on_written:
            self._on_written(written)

    def _append(self, chunk: _Chunk) -> int:
        inputs, outputs = self._frames(chunk)
        cols = tuple(inputs.columns)
        start = 0
        n = len(inputs)
        while start < n:
            f = self._open
            if f is None or f.version != chunk.model.version or (
                    self.fmt == "csv" and f.columns not in (None, cols)):
                if f is not None:
                    self._write(f)
                f = self._open = self._new_file(chunk.model.version)
            take = min(n - start, self.rows_per_file - f.rows)
            f.inputs.append(inputs.iloc[start:start + take])
            f.outputs.append(outputs.iloc[start:start + take])
            f.rows += take
            f.columns = f.columns or cols
            start += take
            if f.rows >= self.rows_per_file:
                self._write(f)
                self._open = None
        return n

    def _new_file(self, version: int) -> _OpenFile:
        self._seq += 1
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        stem = f"{self.model_name}-{stamp}-v{version}-{self.worker}-{self._seq:05d}"
        return _OpenFile(stem, version, [], [])

    def _frames(self, chunk: _Chunk) -> tuple[pd.DataFrame, pd.DataFrame]:
        data, model, n = chunk.data, chunk.model, chunk.data.rows
        cols: dict[str, Any] = {}
        for spec in model.validator.specs:
            values = data.columns[spec.name]
            if spec.kind is ColumnKind.NUMERIC:
                cols[spec.name] = _numbers(values)
            elif spec.kind is ColumnKind.CATEGORICAL:
                cols[spec.name] = pd.Series(values, dtype=object)
            elif self.fmt == "csv":
                cols[spec.name] = [None if v is None else v.isoformat() for v in values]
            else:
                cols[spec.name] = _datetimes(values, spec.tz is not None)
        for key, values in data.extras.items():
            cols[key] = [_scalar(v) for v in values]
        inputs = pd.DataFrame(cols, index=pd.RangeIndex(n))
        pred = chunk.prediction
        out: dict[str, Any] = {"request_id": [chunk.request_id] * n,
                               "row": np.arange(n, dtype=np.int64),
                               "model_version": np.full(n, model.version, dtype=np.int64),
                               "logged_at": [chunk.at.isoformat()] * n,
                               "prediction": pred.labels.tolist()}
        if pred.proba is not None:
            if pred.proba.shape[1] == 2:
                out["probability"] = pred.proba[:, 1].astype(np.float64)
            else:
                labels = model.classes or list(range(pred.proba.shape[1]))
                for j, label in enumerate(labels):
                    out[f"probability_{label}"] = pred.proba[:, j].astype(np.float64)
        return inputs, pd.DataFrame(out, index=pd.RangeIndex(n))

    def _write(self, f: _OpenFile) -> None:
        if not f.rows:
            return
        ext = "csv" if self.fmt == "csv" else "parquet"
        inputs = pd.concat(f.inputs, ignore_index=True) if len(f.inputs) > 1 else f.inputs[0]
        outputs = pd.concat(f.outputs, ignore_index=True) if len(f.outputs) > 1 else \
            f.outputs[0]
        f.inputs, f.outputs = [inputs], [outputs]
        target = self.directory / f"{f.stem}.{ext}"
        new = not target.exists()
        _atomic_write(target, inputs, self.fmt)
        _atomic_write(self.directory / f"{f.stem}{PREDICTIONS_SUFFIX}.{ext}", outputs, self.fmt)
        if new:
            self.files_written.append(target)
            self._prune(ext)

    def _prune(self, ext: str) -> None:
        files = sorted(p for p in self.directory.glob(f"{self.model_name}-*.{ext}")
                       if not p.name.endswith(f"{PREDICTIONS_SUFFIX}.{ext}"))
        for old in files[: max(0, len(files) - self.max_files)]:
            old.unlink(missing_ok=True)
            old.with_name(f"{old.stem}{PREDICTIONS_SUFFIX}.{ext}").unlink(missing_ok=True)


def _numbers(values: list[Any]) -> Any:
    if None not in values:
        return np.asarray(values)
    ints = all(type(v) is int for v in values if v is not None)
    return pd.array(values, dtype="Int64" if ints else "Float64")


def _datetimes(values: list[Any], aware: bool) -> Any:
    s = pd.Series(values, dtype=object)
    return pd.to_datetime(s, utc=True) if aware else pd.to_datetime(s)


def _atomic_write(target: Path, frame: pd.DataFrame, fmt: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, 0o644)  # readable by the monitoring job, like registry files
    os.close(fd)
    try:
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            try:
                frame.to_parquet(tmp, index=False)
            except (TypeError, ValueError, ImportError) as exc:
                if isinstance(exc, ImportError):
                    raise
                # mixed-type extra fields: store them as text rather than lose the rows
                obj = [c for c in frame.columns if frame[c].dtype == object]
                frame.astype({c: "string" for c in obj}).to_parquet(tmp, index=False)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
