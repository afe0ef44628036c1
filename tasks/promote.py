"""Promote: move ``production`` to a registered version when it earns it.

:func:`decide_promotion` is pure: it promotes only if the challenger passed its
quality gate (by default: it beats a naive baseline, see ``evaluate.baseline``) and
beats the champion's primary metric, on the same test rows (those neither was trained
on), by more than ``promote.min_improvement``; the reason names the gate rule that
decided. :func:`promote` moves the alias and records the decision in the registry's
audit log; :func:`rollback` moves it back.

A promotion is a compare-and-set against the champion the decision was made
with: if another run moved the alias in the meantime, :func:`promote` loads the
new champion, scores it and the challenger on the challenger's test rows neither
was trained on, decides again and retries, so a model only ever replaces one it
was compared with and beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import task

from prefab_mlops.config import EvaluateConfig, PromoteConfig, RegisterConfig
from prefab_mlops.core.errors import AliasMovedError
from prefab_mlops.core.manifest import ModelVersion
from prefab_mlops.core.registry import (
    DECLINE_EVENT,
    PROMOTE_EVENT,
    AliasState,
    LoadedModel,
    ModelRegistry,
)
from prefab_mlops.core.storage import StorageConfig
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.orchestration.retries import retry_transient
from prefab_mlops.partitions import PartitionedFeatures
from prefab_mlops.tasks.evaluate import (
    INCOMPATIBLE,
    NO_CHAMPION,
    SAME_MODEL,
    TOO_FEW_ROWS,
    ChampionComparison,
    Evaluation,
    evaluate_champion,
    evaluate_champion_partitioned,
)
from prefab_mlops.tasks.featurize import FeatureSet
from prefab_mlops.tasks.registry import load_production, open_registry
from prefab_mlops.tasks.train import TrainedModel

#: How many times :func:`promote` tries its compare-and-set (deciding again in between).
PROMOTE_ATTEMPTS = 5


@dataclass
class PromotionDecision:
    """Whether the challenger becomes ``promote.alias``, and why.

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
                     comparison: ChampionComparison, cfg: PromoteConfig) -> PromotionDecision:
    """Decide whether ``challenger`` should become ``cfg.alias`` (pure).

    A champion of the challenger's own lineage (``SAME_MODEL``) is the same model:
    it is "already" ``cfg.alias``. A champion that cannot score the current test
    split is replaced (it cannot serve this data either). A champion with too few
    test rows it was not trained on is *kept*: it might be better, and there is no
    honest way to tell, so the decision is left to a person (``prefab promote``).

    Args:
        challenger: The registered challenger.
        evaluation: Its test metrics and gate outcome.
        comparison: The champion and the challenger on the same clean test rows
            (:func:`prefab_mlops.tasks.evaluate.evaluate_champion`); its
            ``champion_version`` is the version behind ``cfg.alias`` (None: no alias
            yet).
        cfg: ``conf/promote``: alias, auto promotion, gate requirement, min improvement.

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
    if comparison.status == SAME_MODEL:
        return PromotionDecision(False, f"v{champion_version}, of the same lineage as "
                                 f"v{challenger.version}, is already {cfg.alias}", **base)
    if not cfg.auto_promote:
        return PromotionDecision(False, "promote.auto_promote is false", **base)
    gate = evaluation.gate
    if cfg.require_gate and not gate.passed:
        return PromotionDecision(False, "quality gate failed: " + "; ".join(gate.failures),
                                 **base)
    # which gate rule let it through, said after the reason
    passed = (f"; quality gate {gate.describe()}" if cfg.require_gate else
              f"; quality gate not required (promote.require_gate=false): {gate.describe()}")
    if champion_version is None:
        return PromotionDecision(True, f"no {cfg.alias} model yet{passed}", **base)
    champ = f"v{champion_version}"
    if comparison.status == TOO_FEW_ROWS:
        return PromotionDecision(False, f"the {cfg.alias} model {champ} is not comparable: "
                                 f"{comparison.note}; keeping {champ} (promote by hand with "
                                 "`prefab promote` if wanted)", **base)
    if comparison.status == INCOMPATIBLE or delta is None:
        return PromotionDecision(True, f"the {cfg.alias} model {champ} cannot "
                                 f"score the current test split{passed}", **base)
    rows = (f"on {comparison.compared_rows:,} of {comparison.test_rows:,} test rows, "
            f"{comparison.excluded_rows:,} of them excluded as {champ}'s training rows"
            if comparison.checked else
            f"on all {comparison.test_rows:,} test rows ({champ}'s training rows unknown)")
    if delta > cfg.min_improvement:
        return PromotionDecision(True, f"{metric} {value:.4f} beats {champ}'s "
                                 f"{champ_value:.4f} by {delta:.4f} "
                                 f"(> {cfg.min_improvement}) {rows}{passed}", **base)
    return PromotionDecision(False, f"{metric} {value:.4f} does not beat {champ}'s "
                             f"{champ_value:.4f} by more than {cfg.min_improvement} {rows}",
                             **base)


@dataclass
class Challenge:
    """What a promotion decision was made with, to make it again against a new champion.

    Attributes:
        challenger: The registered challenger version.
        evaluation: Its metrics on its test split and its gate outcome.
        trained: The challenger's fitted pipeline, scored next to a new champion on
            the test rows neither was trained on.
        features: The run's feature set: its test split (and the challenger's train
            and validation rows, which are left out) scores a new champion. On the
            Dask engine the partitioned split, scored partition by partition (inside
            the flow run's Dask session).
        evaluate: ``conf/evaluate`` (the threshold and the ``champion`` check).
        comparison: The first champion and the challenger on that split
            (:func:`~prefab_mlops.tasks.evaluate.evaluate_champion`).
        storage: ``conf/storage``, where partitioned rows are read from (only read
            with partitioned ``features``).
    """

    challenger: ModelVersion
    evaluation: Evaluation
    trained: TrainedModel
    features: FeatureSet | PartitionedFeatures
    evaluate: EvaluateConfig
    comparison: ChampionComparison
    storage: StorageConfig | None = None


@dataclass
class PromotionOutcome:
    """What :func:`promote` did.

    Attributes:
        decision: The final decision, made against the champion it names.
        state: The alias after a promotion; None when the decision was to decline.
        comparison: That champion and the challenger on the challenger's clean test
            rows (``Challenge.comparison`` if the champion never moved; None without
            a ``Challenge``).
        attempts: Compare-and-set attempts made (1 if the champion never moved).
    """

    decision: PromotionDecision
    state: AliasState | None
    comparison: ChampionComparison | None
    attempts: int


def decide_again(challenge: Challenge, champion: LoadedModel | None, cfg: PromoteConfig
                 ) -> tuple[PromotionDecision, ChampionComparison]:
    """Decide ``challenge`` against ``champion`` (the alias's current model).

    The champion and the challenger are scored on the challenger's test rows that
    neither was trained on (:func:`~prefab_mlops.tasks.evaluate.evaluate_champion`),
    unless the champion is of the challenger's lineage (loaded with ``model=None``),
    which is the same model.

    Args:
        challenge: The challenger, its evaluation, its pipeline and its test split.
        champion: The model behind the alias now (``load_production`` with its
            training rows), or None.
        cfg: ``conf/promote``.

    Returns:
        The decision and the comparison it was made with.
    """
    features = challenge.features
    if isinstance(features, PartitionedFeatures):
        test_rows = features.split_info.test_rows
    else:
        test_rows = len(features.test)
    if champion is None:
        comparison = ChampionComparison(NO_CHAMPION, None, test_rows)
    elif champion.version.fingerprint == challenge.challenger.fingerprint:
        comparison = ChampionComparison.same_model(champion.version.version,
                                                   challenge.evaluation)
    elif isinstance(features, PartitionedFeatures):
        comparison = evaluate_champion_partitioned.fn(
            champion, challenge.trained, features, challenge.evaluate,
            challenge.storage or StorageConfig())
    else:
        comparison = evaluate_champion.fn(champion, challenge.trained, features,
                                          challenge.evaluate)
    return decide_promotion(challenge.challenger, challenge.evaluation, comparison,
                            cfg), comparison


def _apply(registry: ModelRegistry, decision: PromotionDecision, model_name: str,
           alias: str, attempt: int) -> AliasState | None:
    """Record a decline, or move ``alias`` if it still points at the decision's champion.

    Raises:
        AliasMovedError: the alias no longer points at ``decision.champion_version``.
    """
    log = get_logger()
    if not decision.promote:
        registry.record_event(model_name, DECLINE_EVENT,
                              version=decision.challenger_version, alias=alias,
                              reason=decision.reason, decision=decision.as_dict(),
                              attempt=attempt)
        log.info("Not promoting v%s: %s", decision.challenger_version, decision.reason)
        return None
    state = registry.set_alias(model_name, alias, decision.challenger_version,
                               reason=decision.reason, event=PROMOTE_EVENT,
                               details={"decision": decision.as_dict(), "attempt": attempt},
                               expected=decision.champion_version)
    log.info("Promoted v%s to %s: %s", decision.challenger_version, alias, decision.reason)
    return state


def _name(version: int | None) -> str:
    return "unset" if version is None else f"v{version}"


@task(name="promote", retry_condition_fn=retry_transient)
def promote(decision: PromotionDecision, model_name: str, cfg: PromoteConfig,
            registry_cfg: RegisterConfig, storage: StorageConfig,
            challenge: Challenge | None = None,
            max_attempts: int = PROMOTE_ATTEMPTS) -> PromotionOutcome:
    """Apply a :class:`PromotionDecision`: move the alias and log the event.

    The move is a compare-and-set: the alias moves only if it still points at
    ``decision.champion_version``. If another run moved it since, and ``challenge``
    is given, the new champion is loaded, it and the challenger are scored on the
    challenger's test rows neither was trained on, and the decision is made again
    against it (and applied the same way), up to ``max_attempts`` times in all. The
    audit event (``promote`` or ``promotion_declined``) records the final decision
    only, with the champion it was made against.

    Args:
        decision: From :func:`decide_promotion`.
        model_name: ``register.model_name``.
        cfg: ``conf/promote`` (the alias).
        registry_cfg: ``conf/register`` (where the registry is).
        storage: ``conf/storage``.
        challenge: What the decision was made with, to decide again if the champion
            moved. Without it, a moved champion raises :class:`AliasMovedError`.
        max_attempts: Compare-and-set attempts before giving up.

    Returns:
        The final decision, the alias state (None when not promoted), the comparison
        with the champion it was made against and the number of attempts.

    Raises:
        AliasMovedError: the champion moved and there is no ``challenge``, or it kept
            moving for ``max_attempts`` attempts; the alias is left where others put it.
    """
    log = get_logger()
    registry = open_registry(registry_cfg, storage)
    attempts = max(1, max_attempts) if challenge is not None else 1
    comparison = challenge.comparison if challenge is not None else None
    attempt = 1
    while True:
        try:
            state = _apply(registry, decision, model_name, cfg.alias, attempt)
            return PromotionOutcome(decision, state, comparison, attempt)
        except AliasMovedError as moved:
            if challenge is None:
                raise
            log.warning("Promotion attempt %d/%d: %s is now %s, not %s, which v%s was "
                        "compared with.", attempt, attempts, cfg.alias, _name(moved.current),
                        _name(moved.expected), decision.challenger_version)
            if attempt == attempts:
                raise AliasMovedError(
                    f"'{cfg.alias}' of '{model_name}' moved under each of {attempts} "
                    f"promotion attempts of v{decision.challenger_version} (last from "
                    f"{_name(moved.expected)} to {_name(moved.current)}); v"
                    f"{decision.challenger_version} stays registered but not {cfg.alias}.",
                    current=moved.current, expected=moved.expected,
                    fix="Find what keeps moving the alias (prefab history); then promote "
                    f"by hand if v{decision.challenger_version} is better: prefab promote "
                    f"{model_name} {decision.challenger_version}") from moved
            champion = load_production.fn(registry_cfg, storage, cfg.alias,
                                          unless_lineage=challenge.challenger.fingerprint,
                                          with_trained_rows=True)
            decision, comparison = decide_again(challenge, champion, cfg)
            log.info("Promotion attempt %d/%d: decided again against %s: %s",
                     attempt + 1, attempts, _name(decision.champion_version),
                     decision.reason)
            attempt += 1


@task(name="rollback", retry_condition_fn=retry_transient)
def rollback(model_name: str, cfg: PromoteConfig, registry_cfg: RegisterConfig,
             storage: StorageConfig, reason: str = "rollback") -> AliasState:
    """Move ``cfg.alias`` back to the previous version (recorded in the audit log)."""
    state = open_registry(registry_cfg, storage).rollback(model_name, cfg.alias, reason=reason)
    get_logger().info("Rolled %s of %s back to v%s", cfg.alias, model_name, state.version)
    return state
