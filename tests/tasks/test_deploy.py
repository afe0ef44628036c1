"""tasks/deploy.py: the promotion decision (pure) and the alias moves it causes."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from prefab_core.config import DeployConfig, RegisterConfig, StorageConfig
from prefab_core.errors import RegistryError
from prefab_core.registry import ModelRegistry, ModelVersion
from tasks.deploy import PromotionDecision, decide_promotion, promote, rollback
from tasks.evaluate import (
    COMPARED,
    INCOMPATIBLE,
    NO_CHAMPION,
    TOO_FEW_ROWS,
    ChampionComparison,
    Evaluation,
    GateResult,
)
from tasks.register import open_registry

MODEL = "flights-binary"
LOCAL = StorageConfig()


def challenger(version: int = 2) -> ModelVersion:
    return ModelVersion(model_name=MODEL, version=version, created_at="", fingerprint="fp",
                        model_key="", model_sha256="", problem_type="binary")


def evaluation(value: float, metric: str = "roc_auc", greater_is_better: bool = True,
               passed: bool = True) -> Evaluation:
    failures = [] if passed else [f"{metric} {value} < 0.65", "log_loss 0.7 > 0.6"]
    return Evaluation(metrics={metric: value, "n_test": 1000.0}, confusion_matrix=None,
                      gate=GateResult(passed=passed, failures=failures), plots={},
                      primary_metric=metric, greater_is_better=greater_is_better,
                      fingerprint="ev")


def comparison(value: float, champion: float | None, champion_version: int | None,
               metric: str = "roc_auc", test_rows: int = 1000,
               excluded_rows: int = 0, checked: bool = True) -> ChampionComparison:
    """Champion and challenger metrics on the same rows (the challenger's is ``value``)."""
    if champion_version is None:
        return ChampionComparison(NO_CHAMPION, None, test_rows)
    if champion is None:
        return ChampionComparison(INCOMPATIBLE, champion_version, test_rows,
                                  note="v1 cannot score the current test split")
    rows = test_rows - excluded_rows
    return ChampionComparison(COMPARED, champion_version, test_rows, compared_rows=rows,
                              excluded_rows=excluded_rows, checked=checked,
                              champion={metric: champion, "n_test": float(rows)},
                              challenger={metric: value, "n_test": float(rows)})


def decide(value: float, champion: float | None, champion_version: int | None = 1,
           metric: str = "roc_auc", greater_is_better: bool = True, passed: bool = True,
           version: int = 2, **deploy) -> PromotionDecision:
    return decide_promotion(challenger(version),
                            evaluation(value, metric, greater_is_better, passed),
                            comparison(value, champion, champion_version, metric),
                            DeployConfig(**deploy))


class TestDecideNoChampion:
    def test_no_champion_promotes(self) -> None:
        d = decide(0.70, None, champion_version=None)

        assert d.promote is True
        assert d.reason == "no production model yet"
        assert (d.champion_version, d.champion_value, d.delta) == (None, None, None)
        assert (d.challenger_version, d.challenger_value, d.primary_metric) == (2, 0.70,
                                                                               "roc_auc")

    def test_champion_that_cannot_score_the_split_is_replaced(self) -> None:
        d = decide(0.70, None, champion_version=1)

        assert d.promote is True and "cannot score" in d.reason


class TestDecideGate:
    def test_failed_gate_never_promotes(self) -> None:
        d = decide(0.99, 0.5, passed=False)

        assert d.promote is False
        assert d.reason.startswith("quality gate failed: ")
        assert "log_loss 0.7 > 0.6" in d.reason

    def test_failed_gate_without_champion_never_promotes(self) -> None:
        assert decide(0.99, None, champion_version=None, passed=False).promote is False

    def test_gate_can_be_waived(self) -> None:
        assert decide(0.80, 0.70, passed=False, require_gate=False).promote is True


class TestDecideComparison:
    def test_better_champion_keeps_production(self) -> None:
        d = decide(0.70, 0.75)

        assert d.promote is False
        assert d.delta == pytest.approx(-0.05)
        assert "does not beat v1's 0.7500" in d.reason

    def test_challenger_better_by_more_than_min_improvement(self) -> None:
        d = decide(0.76, 0.75, min_improvement=0.005)

        assert d.promote is True
        assert d.delta == pytest.approx(0.01)
        assert "beats v1's 0.7500 by 0.0100" in d.reason

    def test_challenger_better_by_less_than_min_improvement(self) -> None:
        d = decide(0.752, 0.75, min_improvement=0.005)

        assert d.promote is False
        assert d.delta == pytest.approx(0.002)
        assert "by more than 0.005" in d.reason

    def test_equal_metric_does_not_promote(self) -> None:
        assert decide(0.75, 0.75).promote is False


class TestDecideOnCleanRows:
    def test_compares_the_metrics_on_the_clean_rows_not_the_whole_split(self) -> None:
        # on the whole split the challenger scores 0.70 and the champion (flattered by
        # its own training rows) would look better; on the clean rows it is not
        cmp = ChampionComparison(COMPARED, 1, 1000, compared_rows=600, excluded_rows=400,
                                 checked=True, champion={"roc_auc": 0.66},
                                 challenger={"roc_auc": 0.69})
        d = decide_promotion(challenger(), evaluation(0.70), cmp, DeployConfig())

        assert d.promote is True
        assert (d.challenger_value, d.champion_value) == (0.69, 0.66)
        assert d.delta == pytest.approx(0.03)
        assert (d.compared_rows, d.excluded_rows) == (600, 400)
        assert "on 600 of 1,000 test rows, 400 of them excluded as v1's training rows" in (
            d.reason)

    def test_too_few_clean_rows_keeps_the_champion(self) -> None:
        cmp = ChampionComparison(TOO_FEW_ROWS, 1, 1000, compared_rows=30, excluded_rows=970,
                                 checked=True, note="only 30 of 1,000 test rows ...")
        d = decide_promotion(challenger(), evaluation(0.9), cmp, DeployConfig())

        assert d.promote is False
        assert d.reason.startswith("the production model v1 is not comparable: only 30 of")
        assert "prefab promote" in d.reason
        assert (d.champion_value, d.delta, d.compared_rows, d.excluded_rows) == (
            None, None, None, 970)
        assert d.challenger_value == 0.9  # on the whole test split

    def test_unchecked_champion_says_so(self) -> None:
        cmp = comparison(0.76, 0.75, 1, checked=False)
        d = decide_promotion(challenger(), evaluation(0.76), cmp, DeployConfig())

        assert d.promote is True
        assert "on all 1,000 test rows (v1's training rows unknown)" in d.reason


class TestDecideLowerIsBetter:
    def test_lower_rmse_promotes(self) -> None:
        d = decide(9.0, 10.0, metric="rmse", greater_is_better=False, min_improvement=0.5)

        assert d.promote is True
        assert d.delta == pytest.approx(1.0)

    def test_higher_rmse_does_not_promote(self) -> None:
        d = decide(11.0, 10.0, metric="rmse", greater_is_better=False)

        assert d.promote is False
        assert d.delta == pytest.approx(-1.0)

    def test_lower_rmse_by_too_little_does_not_promote(self) -> None:
        d = decide(9.8, 10.0, metric="rmse", greater_is_better=False, min_improvement=0.5)

        assert d.promote is False


class TestDecideNoop:
    def test_same_version_is_not_promoted_again(self) -> None:
        d = decide(0.9, 0.5, champion_version=2, version=2)

        assert d.promote is False and d.reason == "v2 is already production"

    def test_auto_promote_false_never_promotes(self) -> None:
        d = decide(0.9, 0.5, auto_promote=False)

        assert d.promote is False and d.reason == "deploy.auto_promote is false"

    def test_auto_promote_false_without_champion(self) -> None:
        assert decide(0.9, None, champion_version=None, auto_promote=False).promote is False

    def test_decision_is_json_safe(self) -> None:
        import json

        d = decide(0.76, 0.75)
        assert json.loads(json.dumps(d.as_dict())) == d.as_dict()


@pytest.fixture()
def reg_cfg(tmp_path: Path) -> RegisterConfig:
    return RegisterConfig(model_name=MODEL, root=str(tmp_path / "registry"))


@pytest.fixture()
def registry(reg_cfg: RegisterConfig) -> ModelRegistry:
    """Three registered versions, v1 in production."""
    reg = open_registry(reg_cfg, LOCAL)
    for i in (1, 2, 3):
        reg.register(challenger(0), pickle.dumps({"model": i}))
    reg.set_alias(MODEL, "production", 1, event="promote")
    return reg


def decision(promote_it: bool, version: int, reason: str = "test") -> PromotionDecision:
    return PromotionDecision(promote_it, reason, version, 1, "roc_auc", 0.8, 0.7,
                             0.1 if promote_it else -0.1)


class TestPromote:
    def test_promotion_moves_the_alias_and_logs_the_decision(
            self, registry: ModelRegistry, reg_cfg: RegisterConfig) -> None:
        d = decision(True, 2, "roc_auc 0.8 beats v1")

        state = promote.fn(d, MODEL, DeployConfig(), reg_cfg, LOCAL)

        assert (state.version, state.history) == (2, [1])
        assert registry.alias(MODEL, "production").version == 2
        last = registry.events(MODEL)[-1]
        assert (last["event"], last["alias"], last["version"], last["previous"]) == (
            "promote", "production", 2, 1)
        assert last["reason"] == "roc_auc 0.8 beats v1"
        assert last["decision"] == d.as_dict()

    def test_declined_promotion_is_logged_and_leaves_the_alias(
            self, registry: ModelRegistry, reg_cfg: RegisterConfig) -> None:
        before = registry.alias(MODEL, "production")

        state = promote.fn(decision(False, 3, "gate failed"), MODEL, DeployConfig(), reg_cfg,
                           LOCAL)

        assert state is None
        assert registry.alias(MODEL, "production") == before
        last = registry.events(MODEL)[-1]
        assert (last["event"], last["version"], last["alias"], last["reason"]) == (
            "promotion_declined", 3, "production", "gate failed")

    def test_promotion_to_another_alias(self, registry: ModelRegistry,
                                        reg_cfg: RegisterConfig) -> None:
        promote.fn(decision(True, 3), MODEL, DeployConfig(alias="staging"), reg_cfg, LOCAL)

        assert registry.alias(MODEL, "staging").version == 3
        assert registry.alias(MODEL, "production").version == 1

    def test_promoting_an_unknown_version_fails(self, registry: ModelRegistry,
                                                reg_cfg: RegisterConfig) -> None:
        with pytest.raises(RegistryError, match="no version 9"):
            promote.fn(decision(True, 9), MODEL, DeployConfig(), reg_cfg, LOCAL)
        assert registry.alias(MODEL, "production").version == 1


class TestRollback:
    def test_rollback_twice_then_refuse(self, registry: ModelRegistry,
                                        reg_cfg: RegisterConfig) -> None:
        promote.fn(decision(True, 2), MODEL, DeployConfig(), reg_cfg, LOCAL)
        promote.fn(decision(True, 3), MODEL, DeployConfig(), reg_cfg, LOCAL)

        assert rollback.fn(MODEL, DeployConfig(), reg_cfg, LOCAL, reason="v3 drifts").version == 2
        assert rollback.fn(MODEL, DeployConfig(), reg_cfg, LOCAL).version == 1
        with pytest.raises(RegistryError, match="no earlier version"):
            rollback.fn(MODEL, DeployConfig(), reg_cfg, LOCAL)

        kinds = [(e["event"], e["version"]) for e in registry.events(MODEL)
                 if e["event"] in ("promote", "rollback")]
        assert kinds == [("promote", 1), ("promote", 2), ("promote", 3), ("rollback", 2),
                         ("rollback", 1)]
        assert [e.get("reason") for e in registry.events(MODEL)
                if e["event"] == "rollback"] == ["v3 drifts", "rollback"]
