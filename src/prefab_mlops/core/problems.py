"""The problem types the framework handles and the metrics each one is scored with.

The one home of these names: config checks (``evaluate.primary_metric``,
``evaluate.gate``), the evaluate task and schema inference all read them from here.
"""

from __future__ import annotations

BINARY = "binary"
MULTICLASS = "multiclass"
REGRESSION = "regression"
PROBLEM_TYPES = (BINARY, MULTICLASS, REGRESSION)

#: Test-split metrics by problem type, as ``evaluate`` computes them (besides ``n_test``
#: and, for binary problems, ``positive_rate``, which describe the split, not the model).
METRICS: dict[str, tuple[str, ...]] = {
    REGRESSION: ("rmse", "mae", "r2"),
    BINARY: ("roc_auc", "pr_auc", "log_loss", "accuracy", "f1", "precision", "recall"),
    MULTICLASS: ("log_loss", "roc_auc", "accuracy", "f1", "precision", "recall"),
}

#: Metrics where a smaller value is better (errors and losses).
LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss"})


def perfect_value(metric: str) -> float:
    """The value a perfect model scores on ``metric``.

    Every metric in :data:`METRICS` is either an error or a loss whose best value is 0
    (:data:`LOWER_IS_BETTER`) or a score whose best value is 1 (AUCs, accuracy, F1,
    precision, recall, R²). The baseline gate measures improvement as a share of the
    way from a naive baseline's value to this one.
    """
    return 0.0 if metric in LOWER_IS_BETTER else 1.0


def greater_is_better(metric: str) -> bool:
    """Whether a larger ``metric`` means a better model (every metric but errors and
    losses); the champion comparison and the gate follow it."""
    return metric not in LOWER_IS_BETTER
