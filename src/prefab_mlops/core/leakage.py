"""Leakage: find the features that alone nearly determine the target.

A feature that predicts the label almost perfectly on its own is rarely a
discovery: it is usually the label in another form (``arr_delay`` for ``delayed =
arr_delay > 15``), or something recorded after the outcome. :func:`scan` fits a
*one-feature model* per column and scores it out of fold:

* numbers, booleans and timestamps (as seconds): a depth-limited decision tree
  (depth :data:`CLASSIFIER_DEPTH` or :data:`REGRESSOR_DEPTH`, missing values
  allowed);
* anything else (strings, categories): the mean of the target per value, learnt on
  the other folds (target encoding; a value never seen there gets the overall mean),
  so an id with one value per row scores like a coin and is not called a leak.

Scores are ROC AUC for classification (the mean of one-vs-rest AUCs for
multiclass) and R² for regression, both 1.0 for a perfect predictor, from
:data:`FOLDS`-fold cross-validation. A feature scoring at least :data:`LEAK_SCORE`
is a *suspect*.

Cost is bounded: at most :data:`MAX_ROWS` rows (a seeded sample) and
:data:`MAX_SECONDS` seconds; columns left when the time is up are listed as
``unchecked``, never silently passed. One column of 20,000 rows costs about
0.01-0.03 s (three tree fits, or three group-bys), so the bound is reached only
with hundreds of columns; ``bench/leakage.py`` measures it on the flights table.

Pure computation (numpy, pandas, scikit-learn); no I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: A feature whose one-feature model scores at least this (ROC AUC, R²) nearly
#: determines the target on its own.
LEAK_SCORE = 0.99
#: A model scoring at least this on its test split is suspiciously perfect: the
#: evaluate step then looks for the features behind it.
PERFECT_SCORE = 0.999
#: The metric :func:`scan_if_perfect` reads, by problem type.
PERFECT_METRIC = {"binary": "roc_auc", "multiclass": "roc_auc", "regression": "r2"}
#: Rows a scan uses at most (a seeded sample of the rows given).
MAX_ROWS = 20_000
#: Seconds a scan may take; columns left when they are used up are not checked.
MAX_SECONDS = 30.0
FOLDS = 3
CLASSIFIER_DEPTH = 6
REGRESSOR_DEPTH = 8
MIN_LEAF = 5


@dataclass(frozen=True)
class FeatureScore:
    """How well one column alone predicts the target, out of fold."""

    column: str
    score: float
    metric: str  # "roc_auc" or "r2"

    def text(self) -> str:
        return f"'{self.column}' ({self.metric} {self.score:.4f} alone)"


@dataclass
class LeakageScan:
    """The outcome of :func:`scan`.

    Attributes:
        metric: ``roc_auc`` (classification) or ``r2`` (regression).
        threshold: The score from which a column is a suspect (:data:`LEAK_SCORE`).
        suspects: Columns scoring at least ``threshold``, best first.
        scores: Every checked column's score, best first.
        unchecked: Columns not checked because the time bound was reached.
        rows: Rows used (after sampling); ``rows_given`` before.
        seconds: Time the scan took.
    """

    metric: str
    threshold: float
    suspects: list[FeatureScore] = field(default_factory=list)
    scores: list[FeatureScore] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    rows: int = 0
    rows_given: int = 0
    seconds: float = 0.0

    @property
    def columns(self) -> int:
        """Columns checked."""
        return len(self.scores)

    def score_of(self, column: str) -> float | None:
        return next((s.score for s in self.scores if s.column == column), None)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe record (run summary, registry, bench)."""
        return {"metric": self.metric, "threshold": self.threshold,
                "suspects": [s.__dict__ for s in self.suspects],
                "top": [s.__dict__ for s in self.scores[:5]],
                "unchecked": list(self.unchecked), "rows": self.rows,
                "rows_given": self.rows_given, "columns": self.columns,
                "seconds": round(self.seconds, 3)}


# ----------------------------------------------------------------- encoding
def _numeric(series: pd.Series) -> np.ndarray | None:
    """A column as float64 for a tree (NaN for missing), or None if it is not numeric."""
    if pd.api.types.is_bool_dtype(series):
        return series.astype("float64").to_numpy()
    if pd.api.types.is_datetime64_any_dtype(series):
        return (series - series.min()).dt.total_seconds().to_numpy(dtype="float64")
    if pd.api.types.is_numeric_dtype(series):
        return pd.to_numeric(series, errors="coerce").astype("float64").to_numpy()
    return None


def _labels(y: Any, problem_type: str) -> tuple[np.ndarray, np.ndarray]:
    """``(y, keep)``: numeric labels (class codes or floats) and the rows that have one."""
    values = pd.Series(np.asarray(y))
    if problem_type == "regression":
        num = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
        return num, np.isfinite(num)
    codes, _ = pd.factorize(values, use_na_sentinel=True)
    return codes.astype("int64"), codes >= 0


def _folds(y: np.ndarray, classification: bool, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    if classification and np.bincount(y).min(initial=FOLDS) >= FOLDS:
        splitter: Any = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    else:  # a class with fewer rows than folds cannot be stratified
        splitter = KFold(FOLDS, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


# ------------------------------------------------------------------ scoring
def _tree_oof(x: np.ndarray, y: np.ndarray, n_classes: int,
              folds: list[tuple[np.ndarray, np.ndarray]], seed: int) -> np.ndarray:
    """Out-of-fold predictions of a one-feature tree: class probabilities or values."""
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    X = x.reshape(-1, 1)
    if n_classes:
        out = np.zeros((len(y), n_classes))
        for train, test in folds:
            tree = DecisionTreeClassifier(max_depth=CLASSIFIER_DEPTH, min_samples_leaf=MIN_LEAF,
                                          random_state=seed).fit(X[train], y[train])
            out[np.ix_(test, tree.classes_)] = tree.predict_proba(X[test])
        return out
    pred = np.zeros(len(y))
    for train, test in folds:
        tree = DecisionTreeRegressor(max_depth=REGRESSOR_DEPTH, min_samples_leaf=MIN_LEAF,
                                     random_state=seed).fit(X[train], y[train])
        pred[test] = tree.predict(X[test])
    return pred


def _encoded_oof(codes: np.ndarray, y: np.ndarray, n_classes: int,
                 folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Out-of-fold target encoding: the target's mean (class shares) per value."""
    targets = np.eye(n_classes)[y] if n_classes else y.reshape(-1, 1)
    out = np.zeros((len(y), targets.shape[1]))
    size = int(codes.max()) + 2 if len(codes) else 1
    for train, test in folds:
        counts = np.bincount(codes[train] + 1, minlength=size).astype("float64")
        prior = targets[train].mean(axis=0)
        for j in range(targets.shape[1]):
            sums = np.bincount(codes[train] + 1, weights=targets[train, j], minlength=size)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = np.where(counts > 0, sums / counts, prior[j])
            out[test, j] = means[codes[test] + 1]
    return out if n_classes else out[:, 0]


def _score(pred: np.ndarray, y: np.ndarray, n_classes: int) -> float:
    from sklearn.metrics import r2_score, roc_auc_score

    if not n_classes:
        return float(r2_score(y, pred))
    if n_classes == 2:
        return float(roc_auc_score(y, pred[:, 1]))
    aucs = [roc_auc_score(y == k, pred[:, k]) for k in range(n_classes)
            if 0 < (y == k).sum() < len(y)]
    return float(np.mean(aucs)) if aucs else float("nan")


def scan(frame: pd.DataFrame, y: Any, problem_type: str, seed: int, *,
         threshold: float = LEAK_SCORE, max_rows: int = MAX_ROWS,
         max_seconds: float = MAX_SECONDS) -> LeakageScan:
    """Score every column of ``frame`` alone against ``y``; name the suspects.

    Args:
        frame: The candidate features (training rows only: scoring on rows the model
            is tested on would be leakage of its own).
        y: The target, one value per row (labels of any type, or numbers).
        problem_type: ``binary``, ``multiclass`` or ``regression``.
        seed: Seeds the row sample, the folds and the trees.
        threshold: The score from which a column is a suspect.
        max_rows: Rows used at most (a seeded sample).
        max_seconds: Time budget; columns left when it is spent are ``unchecked``.

    Returns:
        A :class:`LeakageScan`.
    """
    start = time.perf_counter()
    classification = problem_type != "regression"
    metric = "roc_auc" if classification else "r2"
    labels, keep = _labels(y, problem_type)
    rows = np.flatnonzero(keep)
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
    result = LeakageScan(metric=metric, threshold=threshold, rows=len(rows),
                         rows_given=len(frame))
    labels = labels[rows]
    if classification:
        _, labels = np.unique(labels, return_inverse=True)  # codes 0..k-1 of this sample
    n_classes = int(labels.max()) + 1 if classification and len(labels) else 0
    if len(rows) < 2 * FOLDS or (classification and n_classes < 2) or (
            not classification and np.ptp(labels) == 0):
        result.unchecked = [str(c) for c in frame.columns]
        result.seconds = time.perf_counter() - start
        return result
    folds = _folds(labels, classification, seed)
    sample = frame.iloc[rows]
    scores: list[FeatureScore] = []
    for i, column in enumerate(frame.columns):
        if time.perf_counter() - start > max_seconds:
            result.unchecked = [str(c) for c in frame.columns[i:]]
            break
        series = sample[column]
        x = _numeric(series)
        if x is not None:
            pred = _tree_oof(x, labels, n_classes, folds, seed)
        else:
            codes, _ = pd.factorize(series.astype("object"), use_na_sentinel=True)
            pred = _encoded_oof(codes.astype("int64"), labels, n_classes, folds)
        value = _score(pred, labels, n_classes)
        if np.isfinite(value):
            scores.append(FeatureScore(str(column), round(value, 6), metric))
    result.scores = sorted(scores, key=lambda s: -s.score)
    result.suspects = [s for s in result.scores if s.score >= threshold]
    result.seconds = time.perf_counter() - start
    return result


def perfect_metric(metrics: dict[str, float], problem_type: str) -> tuple[str, float] | None:
    """``(metric, value)`` when a model's test metrics are suspiciously perfect, else None."""
    name = PERFECT_METRIC[problem_type]
    value = metrics.get(name)
    if value is None or not np.isfinite(value) or value < PERFECT_SCORE:
        return None
    return name, float(value)


def scan_if_perfect(metrics: dict[str, float], X: pd.DataFrame, y: Any, problem_type: str,
                    seed: int) -> LeakageScan | None:
    """:func:`scan` the training rows, only when the test metrics are suspiciously perfect.

    Args:
        metrics: The model's test-split metrics (``roc_auc`` or ``r2`` is read).
        X: The model's raw input columns on its training rows.
        y: The training labels.
        problem_type: ``binary``, ``multiclass`` or ``regression``.
        seed: Seeds the scan.

    Returns:
        The scan, or None when the score is below :data:`PERFECT_SCORE`.
    """
    if perfect_metric(metrics, problem_type) is None:
        return None
    return scan(X, y, problem_type, seed)
