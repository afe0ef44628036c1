"""tasks/deploy.py: the promotion decision (pure) and the alias moves it causes."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from prefab_mlops.tasks.deploy import PromotionDecision, decide_promotion, promote, rollback
from prefab_mlops.tasks.evaluate import Evaluation, GateResult
from prefab_mlops.tasks.register import open_registry

from prefab_mlops.config import DeployConfig, RegisterConfig
from prefab_mlops.core.errors import RegistryError
from prefab_mlops.core.registry import ModelRegistry, ModelVersion
from prefab_mlops.core.storage import StorageConfig

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


def decide(value: float, champion: float | None, champion_version: int | None = 1,
           metric: str = "roc_auc", greater_is_better: bool = True, passed: bool = True,
           version: int = 2, **deploy) -> PromotionDecision:
    return decide_promotion(challenger(version),
                            evaluation(value, metric, greater_is_better, passed),
                            champion_version,
                            {metric: champion} if champion is not None else None,
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
