"""Monitor: drift and quality of a current batch against the production model.

Uses Evidently's current API (``evidently.Report`` with one ``ValueDrift`` metric
per input column and Evidently's default drift method for each; never
``evidently.legacy`` directly): per-column drift, the share of drifted columns and
the dataset-drift decision (the ``DataDriftPreset`` rule: drift when the share
reaches ``monitor.drift_share``, computed once from the per-column results rather
than three times as the preset does), drift of the model's predictions, and model
quality (Evidently's classification/regression preset) when the batch has labels.
The reference is the sample stored with the model at registration, so the
training set is never reloaded; the current batch is sampled down to
``monitor.max_rows`` so a 1M-row batch stays fast.

When the batch drifts, :func:`emit_drift_event` emits the Prefect event
``prefab.model.drift-detected`` (configurable) that the ``retrain-on-drift``
deployment is triggered by.
"""

from __future__ import annotations

import datetime as _dt
import io
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task

from prefab_mlops.config import MonitorConfig, RegisterConfig, TargetSpec
from prefab_mlops.core.fingerprint import lineage
from prefab_mlops.core.manifest import ModelVersion
from prefab_mlops.core.problems import BINARY, MULTICLASS, REGRESSION
from prefab_mlops.core.registry import REFERENCE_FILE, REFERENCE_TARGET
from prefab_mlops.core.schema import ColumnKind, InputSchema
from prefab_mlops.core.storage import StorageConfig, object_store
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.orchestration.retries import retry_transient
from prefab_mlops.tasks.evaluate import compute_metrics, new_figure, to_png
from prefab_mlops.tasks.featurize import Split
from prefab_mlops.tasks.registry import open_registry

PREDICTION = "__prediction__"
# The label column of the frames given to Evidently: the reference sample's own.
TARGET = REFERENCE_TARGET


@dataclass
class DriftReport:
    """Outcome of :func:`detect_drift` (JSON-safe except ``html`` and ``plots``).

    ``plots`` are PNG distribution plots (reference vs current) by file name: the
    model's predictions and the most drifted columns (``monitor.plot_columns``).
    """

    model_name: str
    model_version: int
    dataset_drift: bool
    drift_share: float
    threshold: float
    drifted_columns: list[str]
    columns: dict[str, dict[str, Any]]
    prediction_drift: dict[str, Any] | None
    quality: dict[str, float] | None
    rows_current: int
    rows_sampled: int
    rows_reference: int
    fingerprint: str
    html: bytes = field(default=b"", repr=False)
    plots: dict[str, bytes] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("html", "plots")}

    def to_markdown(self, report_uri: str | None = None) -> str:
        rows = "\n".join(
            f"| {c} | {v['method']} | {v['score']:.4f} | {v['threshold']} | "
            f"{'**drift**' if v['drifted'] else 'ok'} |" for c, v in self.columns.items())
        pred = self.prediction_drift
        return "\n".join([
            f"# Drift report: `{self.model_name}` v{self.model_version}",
            f"**Dataset drift**: {'YES' if self.dataset_drift else 'no'} - "
            f"{len(self.drifted_columns)}/{len(self.columns)} columns drifted "
            f"(share {self.drift_share:.2f}, threshold {self.threshold})",
            "**Drifted columns**: " + (", ".join(f"`{c}`" for c in self.drifted_columns)
                                       or "none"),
            "**Prediction drift**: " + ("n/a" if pred is None
                                        else ("YES" if pred["drifted"] else "no")),
            f"**Rows**: {self.rows_current:,} current ({self.rows_sampled:,} sampled), "
            f"{self.rows_reference:,} reference",
            f"**Quality on labelled batch**: {self.quality or 'no labels'}",
            "**Full report**: " + (f"[{report_uri}]({report_link(report_uri)})" if report_uri
                                   else "-"), "",
            "| column | method | score | threshold | status |", "|---|---|---|---|---|", rows])


def report_link(uri: str) -> str:
    """A link to a report location: a storage URI as it is, a local path as ``file://``."""
    return uri if "://" in uri else Path(uri).resolve().as_uri()


def _columns(schema: InputSchema, only: list[str] | None) -> tuple[list[str], list[str]]:
    """The numeric and the categorical input columns to check (``monitor.columns``)."""
    num = schema.names_of(ColumnKind.NUMERIC)
    cat = schema.names_of(ColumnKind.CATEGORICAL)
    if only is not None:
        num = [c for c in num if c in only]
        cat = [c for c in cat if c in only]
    return num, cat


def _predictions(model: Any, X: pd.DataFrame, problem_type: str) -> np.ndarray:
    if problem_type == BINARY:
        return np.asarray(model.predict_proba(X))[:, 1]
    if problem_type == MULTICLASS:
        return np.asarray(model.predict(X)).astype(str)
    return np.asarray(model.predict(X), dtype="float64")


def _frame(X: pd.DataFrame, num: list[str], cat: list[str], pred: np.ndarray,
           y: np.ndarray | None) -> pd.DataFrame:
    out = X[num].apply(pd.to_numeric, errors="coerce").astype("float64")
    for c in cat:
        out[c] = X[c].astype("object").where(X[c].notna(), None).astype(str)
    out[PREDICTION] = pred
    if y is not None:
        out[TARGET] = y
    return out.reset_index(drop=True)


def run_evidently(current: pd.DataFrame, reference: pd.DataFrame, num: list[str],
                  cat: list[str], cfg: MonitorConfig, problem_type: str,
                  with_quality: bool) -> tuple[dict[str, Any], bytes]:
    """Run the Evidently report; return its dict and its HTML."""
    with warnings.catch_warnings():
        # evidently 0.7 touches numpy.core at import time (DeprecationWarning on numpy 2)
        warnings.simplefilter("ignore", DeprecationWarning)
        from evidently import BinaryClassification, DataDefinition, Dataset, Regression, Report
        from evidently.metrics import ValueDrift
        from evidently.presets import ClassificationPreset, RegressionPreset

    metrics: list[Any] = [ValueDrift(column=c) for c in [*num, *cat]]
    pred_num = problem_type != MULTICLASS
    if cfg.prediction_drift:
        metrics.append(ValueDrift(column=PREDICTION))
    kwargs: dict[str, Any] = {}
    if with_quality and problem_type == BINARY:
        kwargs["classification"] = [BinaryClassification(
            target=TARGET, prediction_probas=PREDICTION, pos_label=1)]
        metrics.append(ClassificationPreset())
    elif with_quality and problem_type == REGRESSION:
        kwargs["regression"] = [Regression(target=TARGET, prediction=PREDICTION)]
        metrics.append(RegressionPreset())
    definition = DataDefinition(
        numerical_columns=[*num, *([PREDICTION] if pred_num else []),
                           *([TARGET] if with_quality and problem_type == REGRESSION else [])],
        categorical_columns=[*cat, *([] if pred_num else [PREDICTION]),
                             *([TARGET] if with_quality and problem_type == BINARY else [])],
        **kwargs)
    with warnings.catch_warnings():
        # Evidently's correlation/statistics code divides by zero on constant columns.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        snapshot = Report(metrics, include_tests=True).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition))
        result = snapshot.dict()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "report.html"
            snapshot.save_html(str(path))
            html = path.read_bytes()
    return result, html


def parse_drift(result: dict[str, Any], drift_share: float,
                exclude: tuple[str, ...] = (PREDICTION,)
                ) -> tuple[dict[str, dict[str, Any]], float, bool]:
    """Per-column drift (score, method, threshold, drifted) and the dataset decision.

    The decision follows Evidently's ``DataDriftPreset``: the data set drifts when
    the share of drifted columns (``exclude``d ones aside) is at least ``drift_share``.
    """
    metrics = {m["id"]: m for m in result["metrics"]}
    columns: dict[str, dict[str, Any]] = {}
    share, dataset_drift = 0.0, False
    for t in result["tests"]:
        bound = t.get("bound_test") or {}
        metric = metrics.get(bound.get("metric_fingerprint") or
                             t.get("metric_config", {}).get("metric_id"))
        if metric is None:
            continue
        mcfg = metric["config"]
        status = str(getattr(t["status"], "value", t["status"]))
        if mcfg.get("type", "").endswith("ValueDrift"):
            columns[mcfg["column"]] = {"score": float(metric["value"]),
                                       "method": mcfg.get("method"),
                                       "threshold": mcfg.get("threshold"),
                                       "drifted": status == "FAIL"}
    counted = [v for c, v in columns.items() if c not in exclude]
    if counted:
        share = sum(v["drifted"] for v in counted) / len(counted)
        dataset_drift = share >= drift_share
    return columns, share, dataset_drift


def _severity(result: dict[str, Any]) -> float:
    """How far past its threshold a column's drift score is (higher: more drift).

    Evidently's p-value tests (``K-S p_value``, ``chi-square p_value``, ...) drift
    below their threshold, its distances above it.
    """
    score, threshold = float(result["score"]), float(result["threshold"] or 0)
    if "p_value" in str(result["method"]):
        return threshold / max(score, 1e-300)
    return score / threshold if threshold else score


def _file_name(column: str) -> str:
    return "drift-" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", column).strip("_") or "column") + ".png"


def _distribution_plot(title: str, current: pd.Series, reference: pd.Series,
                       categorical: bool) -> bytes:
    """Reference vs current distribution of one column, as a PNG."""
    fig, ax = new_figure(title, (5, 3.2))
    if categorical:
        ref = reference.astype(str).value_counts(normalize=True)
        cur = current.astype(str).value_counts(normalize=True)
        top = (ref.add(cur, fill_value=0).sort_values(ascending=False).index[:12]).tolist()
        x = np.arange(len(top))
        ax.bar(x - 0.2, ref.reindex(top, fill_value=0).to_numpy(), 0.4, label="reference")
        ax.bar(x + 0.2, cur.reindex(top, fill_value=0).to_numpy(), 0.4, label="current")
        ax.set_xticks(x, top, rotation=45 if len(top) > 4 else 0, ha="right"
                      if len(top) > 4 else "center", fontsize=8)
        ax.set_ylabel("share of rows")
    else:
        ref_v = pd.to_numeric(reference, errors="coerce").dropna().to_numpy()
        cur_v = pd.to_numeric(current, errors="coerce").dropna().to_numpy()
        both = np.concatenate([ref_v, cur_v])
        if both.size:
            lo, hi = np.percentile(both, [0.5, 99.5])
            edges = np.histogram_bin_edges(both, bins=30, range=(lo, hi) if hi > lo else None)
            for values, label in ((ref_v, "reference"), (cur_v, "current")):
                ax.hist(values, bins=edges, density=True, histtype="step", linewidth=1.5,
                        label=label)
        ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return to_png(fig)


def drift_plots(current: pd.DataFrame, reference: pd.DataFrame,
                columns: dict[str, dict[str, Any]], categorical: list[str],
                prediction: dict[str, Any] | None, limit: int) -> dict[str, bytes]:
    """PNG distribution plots, reference vs current (pure).

    Args:
        current: The current batch as compared (input columns and ``__prediction__``).
        reference: The reference sample, likewise.
        columns: Per-column drift from :func:`parse_drift` (predictions excluded).
        categorical: Which columns are categorical (bar charts; histograms otherwise).
        prediction: The predictions' drift, when it was tested (their plot comes first).
        limit: ``monitor.plot_columns``: how many of the drifted columns, most drifted
            first.

    Returns:
        PNG bytes by file name (``prediction-drift.png``, ``drift-<column>.png``).
    """
    def status(result: dict[str, Any]) -> str:
        return (f"{result['method']} {result['score']:.3g}, "
                f"{'drift' if result['drifted'] else 'no drift'}")

    plots: dict[str, bytes] = {}
    if prediction is not None and PREDICTION in current.columns:
        plots["prediction-drift.png"] = _distribution_plot(
            f"Predictions ({status(prediction)})", current[PREDICTION],
            reference[PREDICTION], not pd.api.types.is_numeric_dtype(current[PREDICTION]))
    drifted = sorted((c for c, v in columns.items() if v["drifted"]),
                     key=lambda c: -_severity(columns[c]))
    for column in drifted[:limit]:
        plots[_file_name(column)] = _distribution_plot(
            f"{column} ({status(columns[column])})", current[column], reference[column],
            column in categorical)
    return plots


def _encode_labels(cur: pd.DataFrame, y_raw: pd.Series, classes: list[Any] | None,
                   target: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Encode labels with the training class order; rows without a label are dropped.

    Raises:
        DataValidationError: the batch has labels the model was never trained on.
    """
    from prefab_mlops.core.errors import DataValidationError

    if classes is None:
        classes = sorted(pd.unique(y_raw.dropna()).tolist())
    index = {c: i for i, c in enumerate(classes)}
    index.update({str(c): i for i, c in enumerate(classes)})
    keep = y_raw.notna().to_numpy()
    y = y_raw[keep]
    mapped = y.map(lambda v: index.get(v, index.get(str(v))))
    unknown = sorted({str(v) for v in y[mapped.isna()].unique()})
    if unknown:
        raise DataValidationError(
            f"Target '{target}' of the batch has labels {unknown[:10]} the model was not "
            f"trained on (classes: {classes}).", [{"column": target, "rule": "known class",
                                                   "count": int(mapped.isna().sum()),
                                                   "examples": unknown[:5]}],
            fix="Retrain with these classes, or monitor with monitor.labels=false.")
    return mapped.to_numpy(dtype="int64"), cur.loc[keep]


@task(name="detect-drift")
def detect_drift(batch: pd.DataFrame, reference: pd.DataFrame, model: Any,
                 schema: InputSchema, cfg: MonitorConfig,
                 target: TargetSpec, model_name: str, model_version: int,
                 seed: int, classes: list[Any] | None = None) -> DriftReport:
    """Compare ``batch`` with the model's reference sample.

    Args:
        batch: The current batch (validated; the target column is optional).
        reference: The reference sample stored with the model (``REFERENCE_FILE``:
            input columns plus ``REFERENCE_TARGET``).
        model: The production inference pipeline.
        schema: The model's input schema (its manifest's ``features.input_schema``).
        cfg: ``conf/monitor``: drift share, sampling budget, columns, quality.
        target: Target column and problem type (from ``conf/data``).
        model_name: Registry name.
        model_version: Production version number.
        seed: Global seed for sampling.
        classes: The model's class labels in training order (classifiers), used to
            encode the batch's labels exactly as training did.

    Returns:
        A :class:`DriftReport` including the HTML report bytes and the distribution
        plots of the predictions and the most drifted columns.
    """
    num, cat = _columns(schema, cfg.columns)
    inputs = list(schema.names)
    cur = batch.sample(n=cfg.max_rows, random_state=seed) if len(batch) > cfg.max_rows else batch
    labelled = cfg.labels and target.name in cur.columns
    y_cur = None
    if labelled:
        y_raw = cur[target.name]
        if target.problem_type == REGRESSION:
            y_cur = y_raw.to_numpy(dtype="float64")
        else:
            y_cur, cur = _encode_labels(cur, y_raw, classes, target.name)
    X_cur = cur[inputs].reset_index(drop=True)
    X_ref = reference[inputs]
    y_ref = reference[TARGET].to_numpy() if TARGET in reference.columns else None
    current = _frame(X_cur, num, cat, _predictions(model, X_cur, target.problem_type),
                     y_cur if labelled else None)
    ref = _frame(X_ref, num, cat, _predictions(model, X_ref, target.problem_type),
                 y_ref if labelled else None)
    with_quality = bool(cfg.quality and labelled and target.problem_type != MULTICLASS)
    result, html = run_evidently(current, ref, num, cat, cfg, target.problem_type, with_quality)
    columns, share, dataset_drift = parse_drift(result, cfg.drift_share)
    pred = columns.pop(PREDICTION, None)
    plots = drift_plots(current, ref, columns, cat, pred, cfg.plot_columns)
    quality = None
    if labelled and y_cur is not None:
        quality, _, _ = compute_metrics(model, Split(X_cur, y_cur), target.problem_type)
    drifted = [c for c, v in columns.items() if v["drifted"]]
    get_logger().info("Drift: %s/%s columns (share %.2f, threshold %s) -> dataset drift %s; "
                      "prediction drift %s", len(drifted), len(columns), share,
                      cfg.drift_share, dataset_drift, pred["drifted"] if pred else "n/a")
    return DriftReport(model_name=model_name, model_version=model_version,
                       dataset_drift=dataset_drift, drift_share=share,
                       threshold=cfg.drift_share, drifted_columns=drifted, columns=columns,
                       prediction_drift=pred, quality=quality, rows_current=len(batch),
                       rows_sampled=len(cur), rows_reference=len(reference),
                       fingerprint=lineage(detect_drift, cfg, target, model_name,
                                           model_version, seed), html=html, plots=plots)


@task(name="emit-drift-event", retry_condition_fn=retry_transient)
def emit_drift_event(report: DriftReport, event: str, report_uri: str | None,
                     batch_source: str) -> str | None:
    """Emit the drift event for the model (the retrain-on-drift trigger).

    The resource is ``prefab.model.<model_name>``; the payload carries the drift
    share, drifted columns, model version, report location and batch source.

    Returns:
        The event id, or None if events are not available (no Prefect API).
    """
    from prefect.events import emit_event

    ev = emit_event(
        event=event,
        resource={"prefect.resource.id": f"prefab.model.{report.model_name}",
                  "prefect.resource.name": report.model_name,
                  "prefab.model.version": str(report.model_version)},
        payload={"model_name": report.model_name, "model_version": report.model_version,
                 "drift_share": report.drift_share, "threshold": report.threshold,
                 "drifted_columns": report.drifted_columns,
                 "prediction_drift": bool(report.prediction_drift
                                          and report.prediction_drift["drifted"]),
                 "report_uri": report_uri, "batch": batch_source,
                 "rows": report.rows_current})
    get_logger().warning("Drift detected for %s v%s: emitted %s", report.model_name,
                         report.model_version, event)
    return str(ev.id) if ev is not None else None


# ----------------------------------------------------------------- I/O tasks
@task(name="load-reference", retry_condition_fn=retry_transient)
def load_reference(manifest: ModelVersion, registry_cfg: RegisterConfig,
                   storage: StorageConfig) -> pd.DataFrame:
    """The drift reference stored with ``manifest``'s version at registration.

    Args:
        manifest: The production version (from ``load_production``).
        registry_cfg: ``conf/register`` (where the registry is).
        storage: ``conf/storage``.

    Returns:
        The reference sample (``REFERENCE_FILE``, ``register.reference_sample_rows``).
    """
    data = open_registry(registry_cfg, storage).read_file(manifest, REFERENCE_FILE)
    return pd.read_parquet(io.BytesIO(data))


@task(name="write-drift-report", retry_condition_fn=retry_transient)
def write_report(report: DriftReport, report_dir: str, storage: StorageConfig) -> str:
    """Write the Evidently HTML report under ``monitor.report_dir``; returns its URI.

    Args:
        report: From :func:`detect_drift`.
        report_dir: ``monitor.report_dir`` (a directory, or a prefix on S3).
        storage: ``conf/storage``.
    """
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    store = object_store(storage, report_dir, "monitoring")
    key = f"{report.model_name}/{stamp}-v{report.model_version}.html"
    store.put(key, report.html)
    return store.uri(key)


@task(name="record-drift-check", retry_condition_fn=retry_transient)
def record_drift_check(report: DriftReport, report_uri: str, event_id: str | None,
                       batch_source: str, registry_cfg: RegisterConfig,
                       storage: StorageConfig) -> None:
    """Add the check to the model's audit log (``drift_detected`` or ``drift_checked``)."""
    open_registry(registry_cfg, storage).record_event(
        report.model_name, "drift_detected" if report.dataset_drift else "drift_checked",
        version=report.model_version, drift_share=report.drift_share,
        drifted_columns=report.drifted_columns, report_uri=report_uri, event_id=event_id,
        batch=batch_source)
