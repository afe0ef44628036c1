"""Deploy: promote a registered version to ``production`` when it earns it.

:func:`decide_promotion` is pure: it promotes only if the challenger passed its
quality gate and beats the champion's primary metric, on the same test rows (those
neither was trained on), by more than ``deploy.min_improvement``. :func:`promote`
moves the alias and records the decision in the registry's audit log;
:func:`rollback` moves it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import task

from prefab_core.config import DeployConfig, RegisterConfig, StorageConfig
from prefab_core.logs import get_logger
from prefab_core.registry import AliasState, ModelVersion
from prefab_core.retries import retry_transient
from tasks.evaluate import INCOMPATIBLE, TOO_FEW_ROWS, ChampionComparison, Evaluation
from tasks.register import open_registry


@dataclass
class PromotionDecision:
    """Whether the challenger becomes ``deploy.alias``, and why.

    ``challenger_value`` and ``champion_value`` are the primary metric on the
    ``compared_rows`` test rows that neither model was trained on
    (``excluded_rows`` were the champion's training rows); without a comparable
    champion, ``challenger_value`` is the metric on the whole test split.
    """

    promote: bool
    reason: str
    challenger_version: int
    champion_version: int | None
    primary_metric: str
    challenger_value: float
    champion_value: float | None
    delta: float | None
    compared_rows: int | None = None
    excluded_rows: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def decide_promotion(challenger: ModelVersion, evaluation: Evaluation,
                     comparison: ChampionComparison, cfg: DeployConfig) -> PromotionDecision:
    """Decide whether ``challenger`` should become ``cfg.alias`` (pure).

    A champion that cannot score the current test split is replaced (it cannot serve
    this data either). A champion with too few test rows it was not trained on is
    *kept*: it might be better, and there is no honest way to tell, so the decision
    is left to a person (``prefab promote``).

    Args:
        challenger: The registered challenger.
        evaluation: Its test metrics and gate outcome.
        comparison: The champion and the challenger on the same clean test rows
            (:func:`tasks.evaluate.evaluate_champion`).
        cfg: ``conf/deploy``: alias, auto promotion, gate requirement, min improvement.

    Returns:
        The :class:`PromotionDecision`, with the reason in words.
    """
    metric = evaluation.primary_metric
    champion_version = comparison.champion_version
    compared = comparison.compared and comparison.challenger is not None
    value = comparison.challenger[metric] if compared else evaluation.metrics[metric]
    champ_value = comparison.champion.get(metric) if compared and comparison.champion else None
    sign = 1.0 if evaluation.greater_is_better else -1.0
    delta = None if champ_value is None else sign * (value - champ_value)
    base = dict(challenger_version=challenger.version, champion_version=champion_version,
                primary_metric=metric, challenger_value=value, champion_value=champ_value,
                delta=delta,
                compared_rows=comparison.compared_rows if compared else None,
                excluded_rows=comparison.excluded_rows if champion_version is not None else None)
    if champion_version == challenger.version:
        return PromotionDecision(False, f"v{challenger.version} is already {cfg.alias}", **base)
    if not cfg.auto_promote:
        return PromotionDecision(False, "deploy.auto_promote is false", **base)
    if cfg.require_gate and not evaluation.gate.passed:
        return PromotionDecision(False, "quality gate failed: "
                                 + "; ".join(evaluation.gate.failures), **base)
    if champion_version is None:
        return PromotionDecision(True, f"no {cfg.alias} model yet", **base)
    champ = f"v{champion_version}"
    if comparison.status == TOO_FEW_ROWS:
        return PromotionDecision(False, f"the {cfg.alias} model {champ} is not comparable: "
                                 f"{comparison.note}; keeping {champ} (promote by hand with "
                                 "`prefab promote` if wanted)", **base)
    if comparison.status == INCOMPATIBLE or delta is None:
        return PromotionDecision(True, f"the {cfg.alias} model {champ} cannot "
                                 "score the current test split", **base)
    rows = (f"on {comparison.compared_rows:,} of {comparison.test_rows:,} test rows, "
            f"{comparison.excluded_rows:,} of them excluded as {champ}'s training rows"
            if comparison.checked else
            f"on all {comparison.test_rows:,} test rows ({champ}'s training rows unknown)")
    if delta > cfg.min_improvement:
        return PromotionDecision(True, f"{metric} {value:.4f} beats {champ}'s "
                                 f"{champ_value:.4f} by {delta:.4f} "
                                 f"(> {cfg.min_improvement}) {rows}", **base)
    return PromotionDecision(False, f"{metric} {value:.4f} does not beat {champ}'s "
                             f"{champ_value:.4f} by more than {cfg.min_improvement} {rows}",
                             **base)


@task(name="promote", retry_condition_fn=retry_transient)
def promote(decision: PromotionDecision, model_name: str, cfg: DeployConfig,
            registry_cfg: RegisterConfig, storage: StorageConfig) -> AliasState | None:
    """Apply a :class:`PromotionDecision`: move the alias and log the event.

    Args:
        decision: From :func:`decide_promotion`.
        model_name: ``register.model_name``.
        cfg: ``conf/deploy`` (the alias).
        registry_cfg: ``conf/register`` (where the registry is).
        storage: ``conf/storage``.

    Returns:
        The new alias state, or None when nothing was promoted.
    """
    log = get_logger()
    registry = open_registry(registry_cfg, storage)
    if not decision.promote:
        registry.record_event(model_name, "promotion_declined", version=decision.challenger_version,
                        alias=cfg.alias, reason=decision.reason)
        log.info("Not promoting v%s: %s", decision.challenger_version, decision.reason)
        return None
    state = registry.set_alias(model_name, cfg.alias, decision.challenger_version,
                               reason=decision.reason, event="promote",
                               details={"decision": decision.as_dict()})
    log.info("Promoted v%s to %s: %s", decision.challenger_version, cfg.alias, decision.reason)
    return state


@task(name="rollback", retry_condition_fn=retry_transient)
def rollback(model_name: str, cfg: DeployConfig, registry_cfg: RegisterConfig,
             storage: StorageConfig, reason: str = "rollback") -> AliasState:
    """Move ``cfg.alias`` back to the previous version (recorded in the audit log)."""
    state = open_registry(registry_cfg, storage).rollback(model_name, cfg.alias, reason=reason)
    get_logger().info("Rolled %s of %s back to v%s", cfg.alias, model_name, state.version)
    return state
