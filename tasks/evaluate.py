"""Evaluate: metrics, plots and the quality gate, and the champion comparison.

Pure computation: predictions on the held-out test split go through the whole
inference pipeline (exactly as serving will), metrics depend on the problem type,
plots are returned as PNG bytes, and the quality gate from ``conf/evaluate`` is
checked rule by rule (every failing rule is reported).

The quality gate has two kinds of rule. The *baseline rule* (``evaluate.baseline``,
the default) fits a naive baseline on the training split (the class prior, or the
training mean or median) and requires the model to beat its score on the same test
split by ``min_improvement`` of the way to a perfect score, which works on any
learnable data. *Absolute rules* (``evaluate.gate``, e.g. ``r2: {min: 0.8}``) are
thresholds a project sets on purpose for its own data. Every check, held or failed,
is recorded with the rule that made it (:class:`GateResult`).

The production model (the champion) and the new model (the challenger) are
compared on the test rows that neither was trained on: test rows that were in the
champion's train or validation split (it records their row hashes when it is
registered) would flatter it, so they are left out, and both models are scored on
the same remaining rows (:func:`compare_with_champion`).

:func:`evaluate_partitioned` and :func:`evaluate_champion_partitioned` are the Dask
engine's steps (``data.engine: dask``): they score the test split partition by
partition and reduce the per-partition counts to the metrics (an AUC from score
histograms).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from sklearn import metrics as skm

from prefab_mlops.config import BaselineRule, ChampionCheckConfig, EvaluateConfig, GateRule
from prefab_mlops.core.fingerprint import RowFingerprint, lineage, row_hashes
from prefab_mlops.core.leakage import LeakageScan, scan_if_perfect
from prefab_mlops.core.manifest import BaselineCheck, GateRecord, RuleCheck
from prefab_mlops.core.problems import LOWER_IS_BETTER, greater_is_better, perfect_value
from prefab_mlops.core.registry import LoadedModel
from prefab_mlops.core.storage import StorageConfig
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.partitions import (
    TRAIN,
    PartitionedFeatures,
    compute_client,
    curves_from_counts,
    metrics_from_counts,
    score_partitions,
    split_rows_of,
    storage_options,
)
from prefab_mlops.tasks.featurize import FeatureSet, Split
from prefab_mlops.tasks.train import TrainedModel

#: The rule kinds of the quality gate (``RuleCheck.rule``).
BASELINE_RULE = "baseline"  # evaluate.baseline: beat a naive baseline
ABSOLUTE_RULE = "absolute"  # evaluate.gate: fixed thresholds a project sets

#: What each naive baseline is, in words (``BaselineCheck.strategy``).
_BASELINES = {"prior": "class-prior", "mean": "training-mean", "median": "training-median"}


@dataclass
class GateResult:
    """The quality gate's outcome: every check made and the rules they came from.

    Attributes:
        checks: Every check, held or failed, baseline rule first.
        rules: The absolute rules as configured (``evaluate.gate``).
        baseline: The baseline rule's numbers, None when ``evaluate.baseline`` is null.
    """

    checks: list[RuleCheck] = field(default_factory=list)
    rules: dict[str, dict[str, float | None]] = field(default_factory=dict)
    baseline: BaselineCheck | None = None

    @property
    def passed(self) -> bool:
        """Whether every check held."""
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[str]:
        """The failed checks, in words, each naming its rule."""
        return [c.text for c in self.checks if not c.passed]

    @property
    def decided_by(self) -> list[RuleCheck]:
        """The checks that decided: the failed ones, or every one if all held."""
        failed = [c for c in self.checks if not c.passed]
        return failed if failed else list(self.checks)

    def describe(self) -> str:
        """One line: ``passed``/``FAILED`` and the checks that decided, in words."""
        if not self.checks:
            return "passed (no rule set)"
        return ("passed: " if self.passed else "FAILED: ") + "; ".join(
            c.text for c in self.decided_by)

    def as_record(self) -> GateRecord:
        """The record of this outcome (registry manifest, evaluation records, run
        summary): ``passed``, ``decided_by`` (the deciding rules' names), ``summary``
        (:meth:`describe`), ``checks``, ``rules`` and ``baseline``."""
        return GateRecord(passed=self.passed,
                          decided_by=list(dict.fromkeys(c.rule for c in self.decided_by)),
                          summary=self.describe(), checks=list(self.checks),
                          rules={k: dict(v) for k, v in self.rules.items()},
                          baseline=self.baseline)


@dataclass
class Evaluation:
    """Test-split metrics, the gate outcome and PNG plots of one model.

    ``leakage`` is set when the test score is suspiciously perfect (see
    :func:`prefab_mlops.core.leakage.scan_if_perfect`): the one-feature scan of the
    training rows that looks for the inputs behind it.
    """

    metrics: dict[str, float]
    confusion_matrix: list[list[int]] | None
    gate: GateResult
    plots: dict[str, bytes]
    primary_metric: str
    fingerprint: str
    leakage: LeakageScan | None = None

    @property
    def primary(self) -> float:
        return self.metrics[self.primary_metric]

    @property
    def greater_is_better(self) -> bool:
        return greater_is_better(self.primary_metric)


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


def baseline_model(problem_type: str, metric: str) -> tuple[Any, str]:
    """The naive baseline for ``problem_type`` (unfitted) and its strategy name.

    Classifiers: the class prior (``DummyClassifier(strategy="prior")``): the training
    class frequencies as probabilities and the majority class as the label.
    Regression: the training mean (``DummyRegressor``), or the median when ``metric``
    is ``mae`` (the best constant for an absolute error).
    """
    from sklearn.dummy import DummyClassifier, DummyRegressor

    if problem_type == "regression":
        strategy = "median" if metric == "mae" else "mean"
        return DummyRegressor(strategy=strategy), strategy
    return DummyClassifier(strategy="prior"), "prior"


def score_baseline(train: Split, test: Split, problem_type: str, metric: str,
                   threshold: float) -> tuple[str, dict[str, float]]:
    """Fit the naive baseline on ``train`` only and score it on ``test`` (pure).

    Returns:
        ``(strategy, metrics)``: see :func:`baseline_model` and :func:`compute_metrics`.
    """
    model, strategy = baseline_model(problem_type, metric)
    model.fit(train.X, train.y)
    values, _, _ = compute_metrics(model, test, problem_type, threshold)
    return strategy, values


def _finite(value: float | None) -> bool:
    return value is not None and bool(np.isfinite(value))


def check_baseline(metrics: dict[str, float], baseline_metrics: dict[str, float],
                   metric: str, strategy: str,
                   rule: BaselineRule) -> tuple[RuleCheck, BaselineCheck]:
    """The baseline rule on ``metric`` (pure).

    The model must go ``rule.min_improvement`` of the way from the baseline's value to
    a perfect score (:func:`~prefab_mlops.core.problems.perfect_value`): for a score,
    ``value >= b + m * (1 - b)``; for an error or a loss, ``value <= (1 - m) * b``,
    a relative reduction. A metric the model or the baseline lacks (an AUC on a
    one-class test split) fails the rule.
    """
    lower = metric in LOWER_IS_BETTER
    base = baseline_metrics.get(metric, float("nan"))
    m = rule.min_improvement
    required = base + m * (perfect_value(metric) - base) if _finite(base) else float("nan")
    value = metrics.get(metric)
    what = f"{_BASELINES.get(strategy, strategy)} baseline"
    check = BaselineCheck(metric=metric, strategy=strategy, value=base, required=required,
                          min_improvement=m, metrics=dict(baseline_metrics))
    if not _finite(base):
        return RuleCheck(BASELINE_RULE, metric, False,
                         f"baseline rule: the {what}'s {metric} is not available on this "
                         "test split"), check
    if value is None or not _finite(value):
        return RuleCheck(BASELINE_RULE, metric, False,
                         f"baseline rule: {metric} is not available"), check
    passed = value <= required if lower else value >= required
    op = {(True, True): "<=", (True, False): ">", (False, True): ">=", (False, False): "<"}[
        (lower, passed)]
    share = f"{m * 100:g}%"
    way = (f"{share} below the {what}'s {base:.4f}" if lower else
           f"{share} of the way from the {what}'s {base:.4f} to {perfect_value(metric):g}")
    text = (f"baseline rule: {metric} {value:.4f} {op} {required:.4f} required: {way} "
            f"(evaluate.baseline.min_improvement={m})")
    return RuleCheck(BASELINE_RULE, metric, passed, text), check


def check_gate(metrics: dict[str, float], gate: dict[str, GateRule],
               baseline: tuple[RuleCheck, BaselineCheck] | None = None) -> GateResult:
    """Check every gate rule; collect every check, held or failed.

    Args:
        metrics: The model's test metrics.
        gate: The absolute rules (``evaluate.gate``).
        baseline: The baseline rule's check (:func:`check_baseline`), if it is on.
    """
    checks, rules = [], {}
    if baseline is not None:
        checks.append(baseline[0])
    for name, rule in gate.items():
        rules[name] = {"min": rule.min, "max": rule.max}
        value = metrics.get(name)
        if value is None or not np.isfinite(value):
            checks.append(RuleCheck(ABSOLUTE_RULE, name, False,
                                    f"absolute rule: {name} is not available"))
            continue
        if rule.min is not None:
            ok = bool(value >= rule.min)
            checks.append(RuleCheck(ABSOLUTE_RULE, name, ok, f"absolute rule: {name} "
                                    f"{value:.4f} {'>=' if ok else '<'} min {rule.min}"))
        if rule.max is not None:
            ok = bool(value <= rule.max)
            checks.append(RuleCheck(ABSOLUTE_RULE, name, ok, f"absolute rule: {name} "
                                    f"{value:.4f} {'<=' if ok else '>'} max {rule.max}"))
    return GateResult(checks=checks, rules=rules,
                      baseline=baseline[1] if baseline is not None else None)


# ------------------------------------------------------------------ plots
def to_png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes (100 dpi; a 5x4 inch figure is 500x400 px)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def new_figure(title: str, size: tuple[float, float] = (5, 4)) -> tuple[Any, Any]:
    """A figure with one titled axes (no pyplot, so no global figure state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
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


def confusion_plot(cm: list[list[int]], classes: list[Any] | None,
                   threshold: float | None) -> bytes:
    """The confusion matrix as a PNG heat map with the counts written in."""
    counts = np.asarray(cm)
    labels = [str(c) for c in classes] if classes and len(classes) == len(counts) else [
        str(i) for i in range(len(counts))]
    title = "Confusion matrix" + (f" (threshold {threshold:g})" if threshold is not None
                                  else "")
    side = min(8.0, 3.0 + 0.4 * len(labels))
    fig, ax = new_figure(title, (side + 0.5, side))
    ax.imshow(counts, cmap="Blues")
    ticks = list(range(len(labels)))
    ax.set_xticks(ticks, labels, rotation=45 if len(labels) > 4 else 0)
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    high = counts.max() / 2 if counts.size else 0
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, f"{n:,}", ha="center", va="center",
                color="white" if n > high else "black")
    return to_png(fig)


def make_plots(trained: TrainedModel, split: Split, scores: np.ndarray, top_k: int,
               confusion: list[list[int]] | None = None,
               threshold: float | None = None) -> dict[str, bytes]:
    """PNG plots: ROC + PR (binary), confusion matrix (classifiers), residuals
    (regression), feature importance.

    Args:
        trained: The model (problem type, classes, feature importances).
        split: The test split.
        scores: From :func:`compute_metrics`.
        top_k: ``evaluate.importance_top_k``.
        confusion: The confusion matrix from :func:`compute_metrics` (classifiers).
        threshold: The decision threshold it was made with (binary), for its title.
    """
    plots: dict[str, bytes] = {}
    y = split.y
    if trained.problem_type == "binary":
        fpr, tpr, _ = skm.roc_curve(y, scores)
        prec, rec, _ = skm.precision_recall_curve(y, scores)
        plots.update(curve_plots(fpr, tpr, rec, prec))
    elif trained.problem_type == "regression":
        fig, ax = new_figure("Residuals")
        ax.scatter(scores, y - scores, s=2, alpha=0.3)
        ax.axhline(0, color="grey", linestyle="--")
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual - predicted")
        plots["residuals.png"] = to_png(fig)
    plots.update(common_plots(trained, top_k, confusion, threshold))
    return plots


def curve_plots(fpr: np.ndarray, tpr: np.ndarray, recall: np.ndarray,
                precision: np.ndarray) -> dict[str, bytes]:
    """``roc.png`` and ``pr.png`` of a binary classifier from its curves' points."""
    fig, ax = new_figure(f"ROC (AUC {skm.auc(fpr, tpr):.3f})")
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    plots = {"roc.png": to_png(fig)}
    fig, ax = new_figure("Precision-recall")
    ax.plot(recall, precision)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    plots["pr.png"] = to_png(fig)
    return plots


def common_plots(trained: TrainedModel, top_k: int, confusion: list[list[int]] | None,
                 threshold: float | None) -> dict[str, bytes]:
    """``confusion.png`` (classifiers; ``threshold`` goes in its title for a binary
    classifier) and ``importance.png`` (when the model has importances), on either
    engine."""
    plots: dict[str, bytes] = {}
    if confusion is not None:
        plots["confusion.png"] = confusion_plot(
            confusion, trained.classes, threshold if trained.problem_type == "binary" else None)
    imp = importance(trained)[:top_k]
    if imp:
        fig, ax = new_figure("Feature importance")
        names, vals = zip(*reversed(imp), strict=True)
        ax.barh(list(names), list(vals))
        plots["importance.png"] = to_png(fig)
    return plots


# ------------------------------------------------------------------- tasks
@task(name="evaluate", persist_result=True)
def evaluate(model: TrainedModel, features: FeatureSet, cfg: EvaluateConfig) -> Evaluation:
    """Score the trained model on the test split, draw plots and check the gate.

    Args:
        model: The trained pipeline.
        features: Provides the held-out test split.
        cfg: ``conf/evaluate``: primary metric, threshold, the gate's baseline rule
            (``baseline``) and absolute rules (``gate``), plots.

    Returns:
        An :class:`Evaluation`. A failed gate is reported in ``gate``; the flow
        decides (``on_gate_failure``) whether that stops the run.
    """
    values, cm, scores = compute_metrics(model.pipeline, features.test, model.problem_type,
                                         cfg.threshold)
    baseline = None
    if cfg.baseline is not None:
        strategy, base = score_baseline(features.train, features.test, model.problem_type,
                                        cfg.primary_metric, cfg.threshold)
        baseline = check_baseline(values, base, cfg.primary_metric, strategy, cfg.baseline)
    gate = check_gate(values, cfg.gate, baseline)
    plots = make_plots(model, features.test, scores, cfg.importance_top_k, cm,
                       cfg.threshold) if cfg.plots else {}
    get_logger().info("Test metrics: %s; quality gate %s",
                      {k: round(v, 4) for k, v in values.items()}, gate.describe())
    leakage = scan_if_perfect(values, features.train.X, features.train.y, model.problem_type,
                              features.split_info.seed)
    if leakage is not None:
        get_logger().warning("Suspiciously perfect test score; inputs that alone nearly "
                             "determine the target: %s", [s.text() for s in leakage.suspects])
    return Evaluation(metrics=values, confusion_matrix=cm, gate=gate, plots=plots,
                      primary_metric=cfg.primary_metric,
                      fingerprint=lineage(evaluate, model, features, cfg), leakage=leakage)


# ------------------------------------------------------ champion comparison
COMPARED = "compared"          # both scored on the test rows neither was trained on
SAME_MODEL = "same_model"      # the champion is the challenger
NO_CHAMPION = "no_champion"    # nothing in production yet
INCOMPATIBLE = "incompatible"  # the champion cannot score the current test split
TOO_FEW_ROWS = "too_few_rows"  # too few test rows left that the champion was not trained on


@dataclass
class ChampionComparison:
    """The champion and the challenger, scored on the same test rows.

    Attributes:
        status: :data:`COMPARED`, :data:`SAME_MODEL`, :data:`NO_CHAMPION`,
            :data:`INCOMPATIBLE` or :data:`TOO_FEW_ROWS`.
        champion_version: The champion's registry version (None without one).
        test_rows: Rows in the test split.
        compared_rows: Test rows both models were scored on.
        excluded_rows: Test rows left out because the champion was trained on them.
        excluded_own_rows: Test rows left out because the challenger's own train or
            validation split holds a row with the same inputs.
        checked: Whether the champion's training rows were known. A champion
            registered without them is scored on the whole test split.
        champion: The champion's metrics on the compared rows (None unless compared).
        challenger: The challenger's metrics on the same rows (None unless compared).
        note: Why the champion is not comparable, or a caveat; empty otherwise.
    """

    status: str
    champion_version: int | None
    test_rows: int
    compared_rows: int = 0
    excluded_rows: int = 0
    excluded_own_rows: int = 0
    checked: bool = False
    champion: dict[str, float] | None = None
    challenger: dict[str, float] | None = None
    note: str = ""

    @property
    def compared(self) -> bool:
        """Whether both models have metrics on the same rows."""
        return self.status in (COMPARED, SAME_MODEL)

    @classmethod
    def same_model(cls, version: int, evaluation: Evaluation) -> ChampionComparison:
        """The champion *is* the challenger: its metrics on this test split are known."""
        n = int(evaluation.metrics.get("n_test", 0))
        return cls(SAME_MODEL, version, n, compared_rows=n, checked=True,
                   champion=dict(evaluation.metrics), challenger=dict(evaluation.metrics))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe record (for the run summary and the registry)."""
        return dict(self.__dict__)


def clean_rows(test: Split, champion_rows: RowFingerprint | None,
               challenger_rows: RowFingerprint | None) -> tuple[np.ndarray, np.ndarray]:
    """Which test rows each model was trained on (pure).

    Args:
        test: The test split; its ``row_hash`` is used when the columns match.
        champion_rows: The champion's train and validation rows, or None.
        challenger_rows: The challenger's, over the columns of ``test.X``.

    Returns:
        ``(seen_by_champion, seen_by_challenger)``: boolean masks over ``test``.

    Raises:
        KeyError: the test split lacks a column the champion's rows were hashed on.
    """
    none = np.zeros(len(test), dtype=bool)

    def seen(rows: RowFingerprint | None) -> np.ndarray:
        if rows is None:
            return none
        if test.row_hash is not None and set(rows.columns) == set(test.X.columns):
            return rows.contains_hashes(test.row_hash)
        missing = [c for c in rows.columns if c not in test.X.columns]
        if missing:
            raise KeyError(f"the test split has no column(s) {missing}")
        return rows.contains_hashes(row_hashes(test.X, rows.columns))

    return seen(champion_rows), seen(challenger_rows)


def compare_with_champion(champion: Any, champion_version: int,
                          champion_rows: RowFingerprint | None, challenger: Any,
                          challenger_rows: RowFingerprint | None, test: Split,
                          problem_type: str, threshold: float,
                          cfg: ChampionCheckConfig) -> ChampionComparison:
    """Score champion and challenger on the test rows neither was trained on (pure).

    Args:
        champion: The champion's fitted pipeline.
        champion_version: Its registry version (for messages).
        champion_rows: The rows it was trained on; None scores it on the whole test
            split (a version registered without them), with a warning.
        challenger: The challenger's fitted pipeline.
        challenger_rows: The rows the challenger was trained on.
        test: The test split.
        problem_type: ``binary``, ``multiclass`` or ``regression``.
        threshold: Decision threshold (``evaluate.threshold``).
        cfg: ``evaluate.champion``: how few clean rows make it not comparable.

    Returns:
        A :class:`ChampionComparison`.
    """
    log = get_logger()
    n = len(test)
    base: dict[str, Any] = dict(champion_version=champion_version, test_rows=n,
                                checked=champion_rows is not None)
    label = f"v{champion_version}"
    try:
        by_champion, by_challenger = clean_rows(test, champion_rows, challenger_rows)
    except KeyError as exc:
        note = f"{label} cannot score the current test split ({exc.args[0]})"
        log.warning("%s; treating it as not comparable.", note)
        return ChampionComparison(INCOMPATIBLE, note=note, **base)
    keep = ~(by_champion | by_challenger)
    base.update(compared_rows=int(keep.sum()), excluded_rows=int(by_champion.sum()),
                excluded_own_rows=int(by_challenger.sum()))
    note = ""
    if champion_rows is None:
        note = (f"{label} was registered without the hashes of its training rows: compared "
                "on the whole test split, which may contain rows it was trained on")
        log.warning("%s.", note)
    need = min(cfg.min_rows, n)
    if base["compared_rows"] < max(need, cfg.min_share * n):
        note = (f"only {base['compared_rows']:,} of {n:,} test rows were not used to train "
                f"{label} or this model ({base['excluded_rows']:,} were {label}'s training "
                f"rows); at least {cfg.min_rows:,} and {cfg.min_share:.0%} of the test "
                "split are needed (evaluate.champion)")
        log.warning("Champion %s is not comparable: %s.", label, note)
        return ChampionComparison(TOO_FEW_ROWS, note=note, **base)
    rows = test if keep.all() else test.subset(keep)
    try:
        champ, _, _ = compute_metrics(champion, rows, problem_type, threshold)
    except Exception as exc:  # noqa: BLE001 - an incompatible champion is not fatal
        note = f"{label} cannot score the current test split ({type(exc).__name__}: {exc})"
        log.warning("%s; treating it as not comparable.", note)
        return ChampionComparison(INCOMPATIBLE, note=note, **base)
    mine, _, _ = compute_metrics(challenger, rows, problem_type, threshold)
    log.info("Champion %s and this model compared on %s of %s test rows (%s excluded as %s's "
             "training rows, %s as this model's)", label, base["compared_rows"], n,
             base["excluded_rows"], label, base["excluded_own_rows"])
    return ChampionComparison(COMPARED, champion=champ, challenger=mine, note=note, **base)


@task(name="evaluate-champion")
def evaluate_champion(champion: LoadedModel | None, challenger: TrainedModel,
                      features: FeatureSet, cfg: EvaluateConfig) -> ChampionComparison:
    """Score the production model and the new one on the test rows neither was trained on.

    Args:
        champion: The production model from the registry (with the rows it was trained
            on, see :func:`prefab_mlops.tasks.registry.load_production`), or None.
        challenger: The newly trained model.
        features: Provides the test split and the challenger's training rows.
        cfg: ``conf/evaluate`` (threshold, ``champion`` check).

    Returns:
        A :class:`ChampionComparison`; a champion that cannot score this data (e.g.
        its input columns changed) or has too few clean rows to be scored on is
        reported there as not comparable, with the reason logged.
    """
    n = len(features.test)
    if champion is None:
        return ChampionComparison(NO_CHAMPION, None, n)
    own = None
    if features.train.row_hash is not None and features.valid.row_hash is not None:
        own = RowFingerprint.of(features.test.X.columns, features.train.row_hash,
                                features.valid.row_hash)
    return compare_with_champion(champion.model, champion.version.version,
                                 champion.trained_rows, challenger.pipeline, own, features.test,
                                 features.problem_type, cfg.threshold, cfg.champion)


# ------------------------------------------- data.engine: dask (partitioned data)
class _Constant:
    """A model that gives every row the same score (the naive baseline's prediction)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = np.full(len(X), self.value)
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X), self.value)


def _train_label_center(features: PartitionedFeatures, metric: str,
                        storage: StorageConfig) -> float:
    """The naive baseline's one prediction, from the train split (a Dask reduction):
    the positive rate (classes), the mean or, for ``mae``, the median (regression)."""
    import dask.dataframe as dd

    ddf = dd.read_parquet(features.data_uri,
                          storage_options=storage_options(features.data_uri, storage))
    y = ddf.map_partitions(lambda p: pd.Series(split_rows_of(p, features, TRAIN)[1]),
                           meta=pd.Series(dtype="float64"))
    _, strategy = baseline_model(features.problem_type, metric)
    with compute_client():
        return float((y.quantile(0.5) if strategy == "median" else y.mean()).compute())


@task(name="evaluate-partitioned")
def evaluate_partitioned(model: TrainedModel, features: PartitionedFeatures,
                         cfg: EvaluateConfig, storage: StorageConfig) -> Evaluation:
    """Score the model on the test split partition by partition and check the gate.

    The naive baseline of the gate (``evaluate.baseline``) is scored in the same pass.
    The ROC and precision-recall plots are drawn from the score histograms, the
    confusion matrix and importances as on the pandas path; no residual plot (it needs
    every row) and no second leakage scan of a perfect model's training rows.

    Args:
        model: From :func:`train_partitioned`.
        features: From :func:`featurize_partitioned`.
        cfg: ``conf/evaluate``.
        storage: ``conf/storage`` (to read the data on S3).

    Returns:
        An :class:`~prefab_mlops.tasks.evaluate.Evaluation`.
    """
    models: dict[str, Any] = {"model": model.pipeline}
    strategy = ""
    if cfg.baseline is not None:
        _, strategy = baseline_model(model.problem_type, cfg.primary_metric)
        models["baseline"] = _Constant(_train_label_center(features, cfg.primary_metric,
                                                           storage))
    counts = score_partitions(features, models, cfg.threshold, storage)
    values, cm = metrics_from_counts(counts["model"], model.problem_type)
    baseline = None
    if cfg.baseline is not None:
        base, _ = metrics_from_counts(counts["baseline"], model.problem_type)
        baseline = check_baseline(values, base, cfg.primary_metric, strategy, cfg.baseline)
    gate = check_gate(values, cfg.gate, baseline)
    get_logger().info("Test metrics (%s partition-wise): %s; quality gate %s",
                      int(values["n_test"]), {k: round(v, 4) for k, v in values.items()},
                      gate.describe())
    plots: dict[str, bytes] = {}
    if model.problem_type == "binary":
        fpr, tpr, precision = curves_from_counts(counts["model"])
        plots.update(curve_plots(fpr, tpr, tpr, precision))
    plots.update(common_plots(model, cfg.importance_top_k, cm, cfg.threshold))
    return Evaluation(metrics=values, confusion_matrix=cm, gate=gate, plots=plots,
                      primary_metric=cfg.primary_metric,
                      fingerprint=lineage(evaluate_partitioned, model, features, cfg))


@task(name="evaluate-champion-partitioned")
def evaluate_champion_partitioned(champion: Any, challenger: TrainedModel,
                                  features: PartitionedFeatures, cfg: EvaluateConfig,
                                  storage: StorageConfig) -> ChampionComparison:
    """The production model and the new one on the test rows the champion was not
    trained on, partition by partition (the counterpart of
    :func:`prefab_mlops.tasks.evaluate.evaluate_champion`; a test row never shares a
    ``hash`` split with a training row of the same inputs, so none is left out as the
    challenger's own).

    Args:
        champion: The production model (``LoadedModel``), or None.
        challenger: The newly trained model.
        features: From :func:`featurize_partitioned`.
        cfg: ``conf/evaluate`` (threshold, ``champion`` check).
        storage: ``conf/storage``.
    """
    n = features.split_info.test_rows
    if champion is None:
        return ChampionComparison(NO_CHAMPION, None, n)
    label = f"v{champion.version.version}"
    base: dict[str, Any] = dict(champion_version=champion.version.version, test_rows=n,
                                checked=champion.trained_rows is not None)
    rows = champion.trained_rows
    if rows is not None and not set(rows.columns) <= set(features.feature_columns):
        note = f"{label} cannot score the current test split (columns {rows.columns})"
        return ChampionComparison(INCOMPATIBLE, note=note, **base)
    try:
        counts = score_partitions(features, {"champion": champion.model,
                                             "challenger": challenger.pipeline},
                                  cfg.threshold, storage, exclude=rows)
    except Exception as exc:  # noqa: BLE001 - an incompatible champion is not fatal
        note = f"{label} cannot score the current test split ({type(exc).__name__}: {exc})"
        get_logger().warning("%s; treating it as not comparable.", note)
        return ChampionComparison(INCOMPATIBLE, note=note, **base)
    kept = n - counts["excluded"]
    base.update(compared_rows=kept, excluded_rows=counts["excluded"])
    if kept < max(min(cfg.champion.min_rows, n), cfg.champion.min_share * n):
        note = (f"only {kept:,} of {n:,} test rows were not used to train {label} "
                "(evaluate.champion)")
        return ChampionComparison(TOO_FEW_ROWS, note=note, **base)
    champ, _ = metrics_from_counts(counts["champion"], features.problem_type)
    mine, _ = metrics_from_counts(counts["challenger"], features.problem_type)
    return ChampionComparison(COMPARED, champion=champ, challenger=mine, **base)
