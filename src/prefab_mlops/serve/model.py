"""One loaded registry version, ready to score validated rows.

:func:`load_served` loads a version through :meth:`ModelRegistry.load` (sha256
checked), compiles its request validator and, when the pipeline allows it, the
numpy fast path (:mod:`prefab_mlops.serve.fastpath`), which is verified against the
scikit-learn pipeline on the version's stored reference sample plus edge rows
(all values missing, unknown categories) before it is used. Anything that makes
a version unusable raises :class:`~prefab_mlops.serve.errors.ModelRefused`, so the
server keeps the model it has.
"""

from __future__ import annotations

import datetime as _dt
import io
import logging
import pickle
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prefab_mlops.core.errors import PrefabError
from prefab_mlops.core.manifest import EvaluationRecord, ModelVersion
from prefab_mlops.core.problems import REGRESSION
from prefab_mlops.core.records import dump
from prefab_mlops.core.registry import REFERENCE_FILE, ModelRegistry
from prefab_mlops.core.schema import ColumnKind, InputSchema
from prefab_mlops.serve.errors import FastPathUnsupported, ModelRefused
from prefab_mlops.serve.fastpath import CompiledTransformer, compile_transformer, verify
from prefab_mlops.serve.schema import MAX_ROWS, RecordValidator

log = logging.getLogger("prefab_mlops.serve")

_CHECK_ROWS = 256
# A valid value of each kind in the edge rows of the fast-path check; a categorical
# one the model never saw.
_EDGE_VALUE: dict[ColumnKind, Any] = {ColumnKind.NUMERIC: 1,
                                      ColumnKind.CATEGORICAL: "__prefab_serve_unknown__",
                                      ColumnKind.DATETIME: "2020-02-29T23:30:00+00:00"}


@dataclass
class Prediction:
    """Model output for a block of rows.

    Attributes:
        labels: Predicted label per row (classifiers: the argmax class; regression:
            the predicted value).
        proba: Class probabilities, one row per input row (classifiers only).
    """

    labels: np.ndarray
    proba: np.ndarray | None

    def slice(self, start: int, stop: int) -> Prediction:
        return Prediction(self.labels[start:stop],
                          None if self.proba is None else self.proba[start:stop])


class ServedModel:
    """A registry version with its validator, scorer and description.

    Args:
        mv: The version's manifest.
        pipeline: The unpickled inference pipeline.
        validator: Request validator built from the manifest's input schema.
        fast_path: Try to compile and verify the numpy fast path.
        check_frame: Rows to verify the fast path on (the stored reference sample).
        evaluation: The version's latest evaluation when it was loaded (a later run
            may have evaluated the same model again); None: the one it was
            registered with.
    """

    def __init__(self, mv: ModelVersion, pipeline: Any, validator: RecordValidator,
                 fast_path: bool = True, check_frame: pd.DataFrame | None = None,
                 evaluation: EvaluationRecord | None = None) -> None:
        self.manifest = mv
        self.evaluation = evaluation or EvaluationRecord.at_registration(mv)
        self.version = mv.version
        self.name = mv.model_name
        self.pipeline = pipeline
        self.validator = validator
        self.problem_type = mv.problem_type
        self.loaded_at = _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")
        steps = getattr(pipeline, "steps", None)
        self.estimator = steps[-1][1] if steps else pipeline
        self.preprocess = steps[0][1] if steps and len(steps) == 2 else None
        self.is_classifier = self.problem_type != REGRESSION
        if self.is_classifier and not hasattr(self.estimator, "predict_proba"):
            raise ModelRefused(f"{mv.label} is a {self.problem_type} model whose estimator "
                               f"{type(self.estimator).__name__} has no predict_proba.",
                               fix="Register a classifier with predict_proba.")
        classes: list[Any] | None = mv.features.classes
        if self.is_classifier and classes is None:
            classes = list(getattr(self.estimator, "classes_", []))
        self.classes = list(classes) if classes is not None else None
        self._labels = np.array(self.classes, dtype=object) if self.classes else None
        # Each worker process scores with one thread: parallelism comes from workers.
        try:
            if "n_jobs" in self.estimator.get_params():
                self.estimator.set_params(n_jobs=1)
        except Exception:  # noqa: BLE001 - an estimator without sklearn params API
            pass
        self.example = example_record(validator.schema, check_frame)
        self.compiled: CompiledTransformer | None = None
        self.fast_path_reason = "disabled by --no-fast-path"
        if fast_path:
            try:
                self.compiled = self._compile(check_frame)
                self.fast_path_reason = "verified against the scikit-learn pipeline"
            except FastPathUnsupported as exc:
                self.fast_path_reason = f"not supported: {exc.message}"
            except Exception as exc:  # noqa: BLE001 - the sklearn pipeline still serves
                self.fast_path_reason = f"verification failed: {type(exc).__name__}: {exc}"
            if self.compiled is None:
                log.warning("%s: numpy fast path %s; using the scikit-learn pipeline",
                            mv.label, self.fast_path_reason)

    # ---------------------------------------------------------------- build
    def _compile(self, check_frame: pd.DataFrame | None) -> CompiledTransformer:
        if self.preprocess is None:
            raise FastPathUnsupported("the model is not a two-step (preprocess, model) "
                                      "Pipeline")
        if hasattr(self.estimator, "feature_names_in_"):
            raise FastPathUnsupported("the estimator was fitted on a DataFrame "
                                      "(it needs column names)")
        schema = self.validator.schema
        compiled = compile_transformer(self.preprocess, schema)
        checker = RecordValidator(schema, [], None, unknown_category="accept",
                                  extra_fields="ignore", max_rows=10**9)
        records = check_records(schema, check_frame)
        checked = checker.validate(records)
        diff = verify(compiled, self.preprocess, checked.columns, checked.rows,
                      self.frame(checked.columns, checked.rows))
        if diff:
            raise FastPathUnsupported(f"differs from the scikit-learn pipeline on the "
                                      f"reference rows: {diff}")
        return compiled

    # -------------------------------------------------------------- scoring
    def frame(self, cols: dict[str, list[Any]], n: int) -> pd.DataFrame:
        """Validated columns as the DataFrame the scikit-learn pipeline reads."""
        data: dict[str, Any] = {}
        for spec in self.validator.specs:
            values = cols[spec.name]
            if spec.kind is ColumnKind.NUMERIC:
                data[spec.name] = np.asarray(values, dtype=np.float64)
            elif spec.kind is ColumnKind.CATEGORICAL:
                arr = np.empty(n, dtype=object)
                arr[:] = [np.nan if v is None else v for v in values]
                data[spec.name] = arr
            else:
                if spec.tz is None:
                    data[spec.name] = pd.to_datetime(pd.Series(values, dtype=object))
                else:
                    ts = pd.to_datetime(pd.Series(values, dtype=object), utc=True)
                    data[spec.name] = ts if spec.tz is _dt.UTC else ts.dt.tz_convert(spec.tz)
        order = getattr(self.pipeline, "feature_names_in_", None)
        columns = [str(c) for c in order] if order is not None else list(data)
        return pd.DataFrame({c: data[c] for c in columns if c in data},
                            index=pd.RangeIndex(n))

    def predict(self, cols: dict[str, list[Any]], n: int) -> Prediction:
        """Score ``n`` validated rows (one model call, however many requests they came from)."""
        est = self.estimator
        if self.compiled is not None:
            X = self.compiled.transform(cols, n)
            if self.is_classifier:
                proba = np.asarray(est.predict_proba(X))
            else:
                return Prediction(np.asarray(est.predict(X), dtype=np.float64), None)
        else:
            frame = self.frame(cols, n)
            if self.is_classifier:
                proba = np.asarray(self.pipeline.predict_proba(frame))
            else:
                return Prediction(np.asarray(self.pipeline.predict(frame), dtype=np.float64),
                                  None)
        proba = np.ascontiguousarray(proba)
        idx = proba.argmax(axis=1)
        labels = self._labels[idx] if self._labels is not None else idx
        return Prediction(labels, proba)

    # ------------------------------------------------------------- describe
    def describe(self) -> dict[str, Any]:
        """What ``GET /model`` shows: version, metrics, lineage and how it is served."""
        mv = self.manifest
        return {
            "model": mv.model_name, "version": mv.version, "created_at": mv.created_at,
            "loaded_at": self.loaded_at, "problem_type": mv.problem_type,
            "sha256": mv.model_sha256, "fingerprint": mv.fingerprint,
            "estimator": mv.estimator or type(self.estimator).__name__,
            "classes": self.classes, "metrics": self.evaluation.metrics,
            "gate": dump(self.evaluation.gate),
            "evaluated": {"at": self.evaluation.at,
                          "at_registration": self.evaluation.registered},
            "input_schema": self.validator.schema.to_json(),
            "extra_fields": list(self.validator.extra_names),
            "lineage": {"data": dump(mv.data), "git": dump(mv.git), "run": dump(mv.run),
                        "champion": dump(mv.champion), "packages": mv.packages},
            "serving": {"fast_path": self.compiled is not None,
                        "fast_path_reason": self.fast_path_reason,
                        "fast_path_steps": self.compiled.steps if self.compiled else None,
                        "unknown_category": self.validator.unknown_category,
                        "extra_fields": self.validator.extra_fields,
                        "max_rows": self.validator.max_rows},
        }


def example_record(schema: InputSchema, frame: pd.DataFrame | None) -> dict[str, Any]:
    """One request record for the API docs: the first reference row as JSON values, or
    typical values by kind when there is none."""
    if frame is not None and len(frame):
        return check_records(schema, frame.head(1))[0]
    return {spec.name: _EDGE_VALUE[spec.kind] for spec in schema}


def check_records(schema: InputSchema, frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    """JSON-like records to verify the fast path on: real rows plus edge rows.

    The edge rows hold a missing value in every field, an unseen value in every
    categorical field, and each known category once (the stored list is at most
    ``CATEGORY_CAP`` long).
    """
    records: list[dict[str, Any]] = []
    names = schema.names
    if frame is not None and len(frame):
        sample = frame.head(_CHECK_ROWS)
        cols: dict[str, Any] = {}
        for spec in schema:
            s = sample[spec.name] if spec.name in sample.columns else \
                pd.Series([None] * len(sample))
            if spec.kind is ColumnKind.DATETIME:
                s = pd.to_datetime(s, errors="coerce", utc=True)
                cols[spec.name] = [None if pd.isna(v) else v.isoformat() for v in s]
            elif spec.kind is ColumnKind.NUMERIC:
                cols[spec.name] = [None if pd.isna(v) else (int(v) if float(v).is_integer()
                                                            else float(v)) for v in s]
            else:
                cols[spec.name] = [None if pd.isna(v) else str(v) for v in s]
        records += [{c: cols[c][i] for c in names} for i in range(len(sample))]
    records.append(dict.fromkeys(names))
    base: dict[str, Any] = {spec.name: _EDGE_VALUE[spec.kind] for spec in schema}
    records.append(base)
    longest = max([len(spec.categories) for spec in schema] or [0])
    for k in range(longest):
        row = dict(base)
        for spec in schema:
            if spec.categories:
                row[spec.name] = spec.categories[k % len(spec.categories)]
        records.append(row)
    return records


def load_served(registry: ModelRegistry, model_name: str, version: int, *,
                unknown_category: str = "reject", extra_fields: str = "reject",
                max_rows: int = MAX_ROWS, fast_path: bool = True) -> ServedModel:
    """Load ``version`` of ``model_name`` and make it ready to serve.

    Args:
        registry: The registry (``conf/register`` + ``conf/storage``).
        model_name: Registered model name.
        version: The exact version (the watcher passes the one the alias named).
        unknown_category: Settings ``unknown_category``.
        extra_fields: Settings ``extra_fields``.
        max_rows: Settings ``max_rows``.
        fast_path: Settings ``fast_path``.

    Raises:
        ModelRefused: the version is missing, fails its sha256 check, cannot be
            unpickled, or has no usable input schema.
    """
    label = f"{model_name}:v{version}"
    start = time.perf_counter()
    try:
        loaded = registry.load(model_name, version=version)
    except PrefabError as exc:
        raise ModelRefused(f"Refused {label}: {exc.message}", fix=exc.fix) from exc
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError,
            ValueError, IndexError, MemoryError) as exc:
        raise ModelRefused(f"Refused {label}: the model file cannot be unpickled "
                           f"({type(exc).__name__}: {exc})",
                           fix="Re-register the model with the package versions the "
                           "server runs (see the manifest's 'packages').") from exc
    mv = loaded.version
    schema = mv.features.input_schema
    if not schema:
        raise ModelRefused(f"Refused {label}: its manifest's features.input_schema has no "
                           "columns, so requests cannot be validated.",
                           fix="Register the model with the training flow (tasks/register.py).")
    validator = RecordValidator(schema, mv.data.columns, mv.features.target or None,
                                unknown_category, extra_fields, max_rows)
    check = None
    if fast_path and REFERENCE_FILE in mv.files:
        try:
            check = pd.read_parquet(io.BytesIO(registry.read_file(mv, REFERENCE_FILE)))
        except Exception as exc:  # noqa: BLE001 - the check then uses edge rows only
            log.warning("%s: cannot read its reference sample (%s); verifying the fast path "
                        "on edge rows only", label, exc)
    try:
        evaluation = registry.latest_evaluation(mv)
    except PrefabError as exc:  # shown as registered; the model itself is sound
        log.warning("%s: cannot read its latest evaluation (%s); /model shows the one it "
                    "was registered with", label, exc.message)
        evaluation = None
    served = ServedModel(mv, loaded.model, validator, fast_path=fast_path, check_frame=check,
                         evaluation=evaluation)
    log.info("Loaded %s in %.2fs (fast path: %s)", label, time.perf_counter() - start,
             served.fast_path_reason)
    return served
