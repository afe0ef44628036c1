"""Deploy: promote a registered version to ``production`` when it earns it.

:func:`decide_promotion` is pure: it promotes only if the challenger passed its
quality gate and beats the champion's primary metric on the same test split by
more than ``deploy.min_improvement``. :func:`promote` moves the alias and records
the decision in the registry's audit log; :func:`rollback` moves it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefab_mlops.tasks.evaluate import Evaluation
from prefab_mlops.tasks.register import open_registry
from prefect import task

from prefab_mlops.config import DeployConfig, RegisterConfig
from prefab_mlops.core.registry import AliasState, ModelVersion
from prefab_mlops.core.storage import StorageConfig
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.orchestration.retries import retry_transient


@dataclass
class PromotionDecision:
    promote: bool
    reason: str
    challenger_version: int
    champion_version: int | None
    primary_metric: str
    challenger_value: float
    champion_value: float | None
    delta: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def decide_promotion(challenger: ModelVersion, evaluation: Evaluation,
                     champion_version: int | None, champion_metrics: dict[str, float] | None,
                     cfg: DeployConfig) -> PromotionDecision:
    """Decide whether ``challenger`` should become ``cfg.alias`` (pure)."""
    metric = evaluation.primary_metric
    value = evaluation.metrics[metric]
    base = dict(challenger_version=challenger.version, champion_version=champion_version,
                primary_metric=metric, challenger_value=value)
    champ_value = champion_metrics.get(metric) if champion_metrics else None
    sign = 1.0 if evaluation.greater_is_better else -1.0
    delta = None if champ_value is None else sign * (value - champ_value)
    base.update(champion_value=champ_value, delta=delta)
    if champion_version == challenger.version:
        return PromotionDecision(False, f"v{challenger.version} is already {cfg.alias}", **base)
    if not cfg.auto_promote:
        return PromotionDecision(False, "deploy.auto_promote is false", **base)
    if cfg.require_gate and not evaluation.gate.passed:
        return PromotionDecision(False, "quality gate failed: "
                                 + "; ".join(evaluation.gate.failures), **base)
    if champion_version is None:
        return PromotionDecision(True, f"no {cfg.alias} model yet", **base)
    if delta is None:
        return PromotionDecision(True, f"the {cfg.alias} model v{champion_version} cannot "
                                 "score the current test split", **base)
    if delta > cfg.min_improvement:
        return PromotionDecision(True, f"{metric} {value:.4f} beats v{champion_version}'s "
                                 f"{champ_value:.4f} by {delta:.4f} "
                                 f"(> {cfg.min_improvement})", **base)
    return PromotionDecision(False, f"{metric} {value:.4f} does not beat v{champion_version}'s "
                             f"{champ_value:.4f} by more than {cfg.min_improvement}", **base)


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
