"""Predict: score a batch with a registered model and write the predictions."""

from __future__ import annotations

import datetime as _dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from prefect import task

from prefab_mlops.config import InferenceConfig
from prefab_mlops.core.problems import BINARY, REGRESSION
from prefab_mlops.core.storage import StorageConfig, object_store
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.orchestration.retries import retry_transient


@dataclass
class ScoredBatch:
    frame: pd.DataFrame
    model_name: str
    model_version: int
    scored_at: str


def predict_frame(model: Any, X: pd.DataFrame, problem_type: str,
                  classes: list[Any] | None) -> pd.DataFrame:
    """Predictions (and the positive-class probability for binary models) as a frame."""
    out = pd.DataFrame(index=X.index)
    if problem_type == REGRESSION:
        out["prediction"] = np.asarray(model.predict(X), dtype="float64")
        return out
    proba = np.asarray(model.predict_proba(X))
    idx = proba.argmax(axis=1)
    labels = classes if classes is not None else list(range(proba.shape[1]))
    out["prediction"] = [labels[i] for i in idx]
    if problem_type == BINARY:
        out["probability"] = proba[:, 1]
    else:
        for j, label in enumerate(labels):
            out[f"probability_{label}"] = proba[:, j]
    return out


@task(name="score-batch")
def score_batch(batch: pd.DataFrame, model: Any, input_columns: Sequence[str], problem_type: str,
                classes: list[Any] | None, model_name: str, model_version: int,
                passthrough: list[str]) -> ScoredBatch:
    """Score ``batch`` (already checked against the model's input schema).

    Args:
        batch: Rows to score.
        model: The inference pipeline.
        input_columns: The model's input columns (``InputSchema.names``).
        problem_type: ``binary``, ``multiclass`` or ``regression``.
        classes: Class labels (classifiers).
        model_name: Registry name, written into the output.
        model_version: Version number, written into the output.
        passthrough: Batch columns copied into the output (``inference.passthrough``).
    """
    preds = predict_frame(model, batch[list(input_columns)], problem_type, classes)
    keep = [c for c in passthrough if c in batch.columns]
    scored_at = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    frame = pd.concat([batch[keep].reset_index(drop=True), preds.reset_index(drop=True)], axis=1)
    frame["model_name"] = model_name
    frame["model_version"] = model_version
    frame["scored_at"] = scored_at
    return ScoredBatch(frame, model_name, model_version, scored_at)


@task(name="write-predictions", retry_condition_fn=retry_transient)
def write_predictions(scored: ScoredBatch, cfg: InferenceConfig, storage: StorageConfig,
                      name: str) -> str:
    """Write predictions (``inference.format``) under ``inference.output_dir``; return the URI."""
    store = object_store(storage, cfg.output_dir, "predictions")
    stamp = scored.scored_at.replace(":", "").replace("-", "")
    key = f"{scored.model_name}/{name}-v{scored.model_version}-{stamp}.{cfg.format}"
    buf = io.BytesIO()
    if cfg.format == "csv":
        scored.frame.to_csv(buf, index=False)
    else:
        scored.frame.to_parquet(buf, index=False)
    store.put(key, buf.getvalue())
    uri = store.uri(key)
    get_logger().info("Wrote %s predictions of %s v%s to %s", len(scored.frame),
                      scored.model_name, scored.model_version, uri)
    return uri
