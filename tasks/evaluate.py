"""Evaluate: metrics, plots and the quality gate, and the champion comparison.

Pure computation: predictions on the held-out test split go through the whole
inference pipeline (exactly as serving will), metrics depend on the problem type,
plots are returned as PNG bytes, and the quality gate from ``conf/evaluate`` is
checked rule by rule (every failing rule is reported).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prefect import task
from sklearn import metrics as skm

from prefab_mlops.config import EvaluateConfig, GateRule
from prefab_mlops.core.fingerprint import lineage
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.tasks.featurize import FeatureSet, Split
from prefab_mlops.tasks.train import TrainedModel


@dataclass
class GateResult:
    passed: bool
    failures: list[str] = field(default_factory=list)
    rules: dict[str, dict[str, float | None]] = field(default_factory=dict)


@dataclass
class Evaluation:
    """Test-split metrics, the gate outcome and PNG plots of one model."""

    metrics: dict[str, float]
    confusion_matrix: list[list[int]] | None
    gate: GateResult
    plots: dict[str, bytes]
    primary_metric: str
    greater_is_better: bool
    fingerprint: str

    @property
    def primary(self) -> float:
        return self.metrics[self.primary_metric]


# ---------------------------------------------------------------- metrics
def compute_metrics(model: Any, split: Split, problem_type: str,
                    threshold: float = 0.5) -> tuple[dict[str, float], list[list[int]] | None,
                                                     np.ndarray]:
    """Metrics of ``model`` (a fitted pipeline) on ``split``.

    Returns:
        ``(metrics, confusion matrix or None, scores)`` where scores are the
        positive-class probabilities (binary), class probabilities (multiclass) or
        predictions (regression).
    """
    y = split.y
    out: dict[str, float] = {"n_test": float(len(y))}
    if problem_type == "regression":
        pred = np.asarray(model.predict(split.X), dtype="float64")
        out.update(rmse=float(np.sqrt(skm.mean_squared_error(y, pred))),
                   mae=float(skm.mean_absolute_error(y, pred)),
                   r2=float(skm.r2_score(y, pred)))
        return out, None, pred
    proba = np.asarray(model.predict_proba(split.X), dtype="float64")
    if problem_type == "binary":
        p1 = proba[:, 1]
        pred = (p1 >= threshold).astype(int)
        both = len(np.unique(y)) == 2  # AUCs are undefined on a one-class split
        out.update(roc_auc=float(skm.roc_auc_score(y, p1)) if both else float("nan"),
                   pr_auc=float(skm.average_precision_score(y, p1)) if both else float("nan"),
                   log_loss=float(skm.log_loss(y, np.clip(p1, 1e-15, 1 - 1e-15),
                                               labels=[0, 1])),
                   positive_rate=float(np.mean(y)))
        avg = "binary"
        scores = p1
    else:
        # float32 probabilities (XGBoost) miss sklearn's sum-to-one tolerance; renormalize.
        proba = proba / proba.sum(axis=1, keepdims=True)
        pred = proba.argmax(axis=1)
        labels = list(range(proba.shape[1]))
        out.update(log_loss=float(skm.log_loss(y, proba, labels=labels)),
                   roc_auc=float(skm.roc_auc_score(y, proba, multi_class="ovr",
                                                   labels=labels)))
        avg = "macro"
        scores = proba
    out.update(accuracy=float(skm.accuracy_score(y, pred)),
               f1=float(skm.f1_score(y, pred, average=avg, zero_division=0)),
               precision=float(skm.precision_score(y, pred, average=avg, zero_division=0)),
               recall=float(skm.recall_score(y, pred, average=avg, zero_division=0)))
    cm = skm.confusion_matrix(y, pred).tolist()
    return out, cm, scores


def check_gate(metrics: dict[str, float], gate: dict[str, GateRule]) -> GateResult:
    """Check every gate rule; collect all failures."""
    failures, rules = [], {}
    for name, rule in gate.items():
        rules[name] = {"min": rule.min, "max": rule.max}
        value = metrics.get(name)
        if value is None or not np.isfinite(value):
            failures.append(f"{name} is not available")
            continue
        if rule.min is not None and value < rule.min:
            failures.append(f"{name} {value:.4f} < min {rule.min}")
        if rule.max is not None and value > rule.max:
            failures.append(f"{name} {value:.4f} > max {rule.max}")
    return GateResult(passed=not failures, failures=failures, rules=rules)


# ------------------------------------------------------------------ plots
def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _figure(title: str) -> tuple[Any, Any]:
    from matplotlib.figure import Figure  # no pyplot: no global figure state

    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    return fig, ax


def importance(trained: TrainedModel) -> list[tuple[str, float]]:
    """Model-based feature importance (``feature_importances_`` or ``|coef_|``)."""
    est = trained.pipeline.named_steps["model"]
    values = getattr(est, "feature_importances_", None)
    if values is None and hasattr(est, "coef_"):
        values = np.abs(np.atleast_2d(est.coef_)).mean(axis=0)
    if values is None:
        return []
    names = trained.feature_names
    pairs = [(names[i] if i < len(names) else f"f{i}", float(v)) for i, v in enumerate(values)]
    return sorted(pairs, key=lambda p: -p[1])


def make_plots(trained: TrainedModel, split: Split, scores: np.ndarray,
               top_k: int) -> dict[str, bytes]:
    """PNG plots: ROC + PR (binary), residuals (regression), feature importance."""
    plots: dict[str, bytes] = {}
    y = split.y
    if trained.problem_type == "binary":
        fpr, tpr, _ = skm.roc_curve(y, scores)
        fig, ax = _figure(f"ROC (AUC {skm.auc(fpr, tpr):.3f})")
        ax.plot(fpr, tpr)
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        plots["roc.png"] = _png(fig)
        prec, rec, _ = skm.precision_recall_curve(y, scores)
        fig, ax = _figure("Precision-recall")
        ax.plot(rec, prec)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        plots["pr.png"] = _png(fig)
    elif trained.problem_type == "regression":
        fig, ax = _figure("Residuals")
        ax.scatter(scores, y - scores, s=2, alpha=0.3)
        ax.axhline(0, color="grey", linestyle="--")
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual - predicted")
        plots["residuals.png"] = _png(fig)
    imp = importance(trained)[:top_k]
    if imp:
        fig, ax = _figure("Feature importance")
        names, vals = zip(*reversed(imp), strict=True)
        ax.barh(list(names), list(vals))
        plots["importance.png"] = _png(fig)
    return plots


# ------------------------------------------------------------------- tasks
@task(name="evaluate", persist_result=True)
def evaluate(model: TrainedModel, features: FeatureSet, cfg: EvaluateConfig) -> Evaluation:
    """Score the trained model on the test split, draw plots and check the gate.

    Args:
        model: The trained pipeline.
        features: Provides the held-out test split.
        cfg: ``conf/evaluate``: primary metric, threshold, gate rules, plots.

    Returns:
        An :class:`Evaluation`. A failed gate is reported in ``gate``; the flow
        decides (``on_gate_failure``) whether that stops the run.
    """
    values, cm, scores = compute_metrics(model.pipeline, features.test, model.problem_type,
                                         cfg.threshold)
    gate = check_gate(values, cfg.gate)
    plots = make_plots(model, features.test, scores, cfg.importance_top_k) if cfg.plots else {}
    get_logger().info("Test metrics: %s; gate %s", {k: round(v, 4) for k, v in values.items()},
                      "passed" if gate.passed else f"FAILED: {gate.failures}")
    return Evaluation(metrics=values, confusion_matrix=cm, gate=gate, plots=plots,
                      primary_metric=cfg.primary_metric, greater_is_better=cfg.greater_is_better,
                      fingerprint=lineage(evaluate, model, features, cfg))


@task(name="evaluate-champion")
def evaluate_champion(champion: Any, features: FeatureSet,
                      cfg: EvaluateConfig) -> dict[str, float] | None:
    """Score the current production model on the *same* test split as the challenger.

    Args:
        champion: The production pipeline (from the registry), or None.
        features: Provides the test split.
        cfg: ``conf/evaluate`` (threshold).

    Returns:
        The champion's metrics, or None if there is no champion or it cannot score
        this data (e.g. its input columns changed); the reason is logged.
    """
    if champion is None:
        return None
    try:
        values, _, _ = compute_metrics(champion, features.test, features.problem_type,
                                       cfg.threshold)
    except Exception as exc:  # noqa: BLE001 - an incompatible champion is not fatal
        get_logger().warning("The champion cannot score the current test split (%s: %s); "
                             "treating it as not comparable.", type(exc).__name__, exc)
        return None
    return values
