"""tasks/promote.py: the promotion decision (pure) and the alias moves it causes.

Decisions compare the champion and the challenger on the test rows neither was
trained on (a :class:`ChampionComparison`). Promotions are compare-and-sets against
the champion they were decided against; a run whose champion moved decides again
against the new one. Those tests use a real registry (a local directory, or a
bucket on the moto S3 server) and stand-in models (:class:`RowScores`) whose real
metrics on a shared test split are known.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import uuid
from pathlib import Path

import pytest

from prefab_mlops.config import (
    BaselineRule,
    GateRule,
    PromoteConfig,
    RegisterConfig,
)
from prefab_mlops.core.errors import AliasMovedError, RegistryError
from prefab_mlops.core.fingerprint import RowFingerprint
from prefab_mlops.core.manifest import ModelVersion
from prefab_mlops.core.problems import LOWER_IS_BETTER
from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.storage import S3Config, StorageConfig
from prefab_mlops.tasks.evaluate import (
    COMPARED,
    INCOMPATIBLE,
    NO_CHAMPION,
    SAME_MODEL,
    TOO_FEW_ROWS,
    ChampionComparison,
    Evaluation,
    GateResult,
    check_baseline,
    check_gate,
    evaluate_champion,
)
from prefab_mlops.tasks.featurize import FeatureSet
from prefab_mlops.tasks.promote import (
    Challenge,
    PromotionDecision,
    PromotionOutcome,
    decide_promotion,
    promote,
    rollback,
)
from prefab_mlops.tasks.registry import open_registry
from prefab_mlops.testing.promotions import (
    METRIC,
    MODEL,
    N_TEST,
    Runs,
    auc_on,
    promote_all_at_once,
    promotion_features,
    promotion_regressions,
    start_round,
)
from tests.conftest import make_bucket

LOCAL = StorageConfig()


def challenger(version: int = 2) -> ModelVersion:
    return ModelVersion(model_name=MODEL, version=version, created_at="", fingerprint="fp",
                        model_key="", model_sha256="", problem_type="binary")


def baseline_gate(metrics: dict[str, float], metric: str, passed: bool) -> GateResult:
    """The default gate (the baseline rule) on ``metric``: a naive baseline the model
    beats by far (``passed``) or one it does not beat at all."""
    value = metrics[metric]
    lower = metric in LOWER_IS_BETTER
    base = value if not passed else (2 * value if lower else value / 2)
    return check_gate(metrics, {}, check_baseline(metrics, {metric: base}, metric, "prior",
                                                  BaselineRule()))


def evaluation(value: float, metric: str = "roc_auc", passed: bool = True,
               gate: GateResult | None = None) -> Evaluation:
    metrics = {metric: value, "n_test": 1000.0}
    return Evaluation(metrics=metrics, confusion_matrix=None,
                      gate=gate or baseline_gate(metrics, metric, passed), plots={},
                      primary_metric=metric, fingerprint="ev")


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
           metric: str = "roc_auc", passed: bool = True,
           version: int = 2, gate: GateResult | None = None, **promote) -> PromotionDecision:
    return decide_promotion(challenger(version),
                            evaluation(value, metric, passed, gate),
                            comparison(value, champion, champion_version, metric),
                            PromoteConfig(**promote))


class TestDecideNoChampion:
    def test_no_champion_promotes(self) -> None:
        d = decide(0.70, None, champion_version=None)

        assert d.promote is True
        assert d.reason.startswith("no production model yet; quality gate passed: "
                                   "baseline rule: roc_auc 0.7000 >= 0.3825 required")
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
        assert d.reason == ("quality gate failed: baseline rule: roc_auc 0.9900 < 0.9905 "
                            "required: 5% of the way from the class-prior baseline's 0.9900 "
                            "to 1 (evaluate.baseline.min_improvement=0.05)")

    def test_failed_gate_without_champion_never_promotes(self) -> None:
        assert decide(0.99, None, champion_version=None, passed=False).promote is False

    def test_gate_can_be_waived(self) -> None:
        d = decide(0.80, 0.70, passed=False, require_gate=False)
        assert d.promote is True
        assert d.reason.endswith("; quality gate not required (promote.require_gate=false): "
                                 "FAILED: baseline rule: roc_auc 0.8000 < 0.8100 required: 5% "
                                 "of the way from the class-prior baseline's 0.8000 to 1 "
                                 "(evaluate.baseline.min_improvement=0.05)")

    def test_reason_names_the_rule_that_let_it_through(self) -> None:
        beats = decide(0.80, 0.70)
        assert beats.promote is True
        assert beats.reason.startswith("roc_auc 0.8000 beats v1's 0.7000 by 0.1000")
        assert "; quality gate passed: baseline rule: roc_auc 0.8000 >= 0.4300 required" in (
            beats.reason)
        metrics = {"roc_auc": 0.8, "n_test": 1000.0}
        absolute = check_gate(metrics, {"roc_auc": GateRule(min=0.75)})
        d = decide(0.80, None, champion_version=None, gate=absolute)
        assert d.reason == ("no production model yet; quality gate passed: absolute rule: "
                            "roc_auc 0.8000 >= min 0.75")

    def test_lower_is_better_baseline_rule(self) -> None:
        d = decide(50.0, None, champion_version=None, metric="rmse",
                   passed=False)
        assert d.promote is False
        assert d.reason.startswith("quality gate failed: baseline rule: rmse 50.0000 > "
                                   "47.5000 required: 5% below the class-prior baseline's "
                                   "50.0000")


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
    def test_compares_the_metrics_on_the_clean_rows_not_the_wholesplit_of(self) -> None:
        # on the whole split the challenger scores 0.70 and the champion (flattered by
        # its own training rows) would look better; on the clean rows it is not
        cmp = ChampionComparison(COMPARED, 1, 1000, compared_rows=600, excluded_rows=400,
                                 checked=True, champion={"roc_auc": 0.66},
                                 challenger={"roc_auc": 0.69})
        d = decide_promotion(challenger(), evaluation(0.70), cmp, PromoteConfig())

        assert d.promote is True
        assert (d.challenger_value, d.champion_value) == (0.69, 0.66)
        assert d.delta == pytest.approx(0.03)
        assert (d.compared_rows, d.excluded_rows) == (600, 400)
        assert "on 600 of 1,000 test rows, 400 of them excluded as v1's training rows" in (
            d.reason)

    def test_too_few_clean_rows_keeps_the_champion(self) -> None:
        cmp = ChampionComparison(TOO_FEW_ROWS, 1, 1000, compared_rows=30, excluded_rows=970,
                                 checked=True, note="only 30 of 1,000 test rows ...")
        d = decide_promotion(challenger(), evaluation(0.9), cmp, PromoteConfig())

        assert d.promote is False
        assert d.reason.startswith("the production model v1 is not comparable: only 30 of")
        assert "prefab promote" in d.reason
        assert (d.champion_value, d.delta, d.compared_rows, d.excluded_rows) == (
            None, None, None, 970)
        assert d.challenger_value == 0.9  # on the whole test split

    def test_unchecked_champion_says_so(self) -> None:
        cmp = comparison(0.76, 0.75, 1, checked=False)
        d = decide_promotion(challenger(), evaluation(0.76), cmp, PromoteConfig())

        assert d.promote is True
        assert "on all 1,000 test rows (v1's training rows unknown)" in d.reason


class TestDecideLowerIsBetter:
    def test_lower_rmse_promotes(self) -> None:
        d = decide(9.0, 10.0, metric="rmse", min_improvement=0.5)

        assert d.promote is True
        assert d.delta == pytest.approx(1.0)

    def test_higher_rmse_does_not_promote(self) -> None:
        d = decide(11.0, 10.0, metric="rmse")

        assert d.promote is False
        assert d.delta == pytest.approx(-1.0)

    def test_lower_rmse_by_too_little_does_not_promote(self) -> None:
        d = decide(9.8, 10.0, metric="rmse", min_improvement=0.5)

        assert d.promote is False


class TestDecideNoop:
    def test_same_version_is_not_promoted_again(self) -> None:
        d = decide(0.9, 0.5, champion_version=2, version=2)

        assert d.promote is False and d.reason == "v2 is already production"

    def test_champion_of_the_same_lineage_is_already_production(self) -> None:
        """Another version of the challenger's lineage is the same model, however good."""
        same = ChampionComparison(SAME_MODEL, 5, 1000, compared_rows=1000, checked=True,
                                  champion={"roc_auc": 0.5}, challenger={"roc_auc": 0.9})
        d = decide_promotion(challenger(2), evaluation(0.9), same, PromoteConfig())

        assert d.promote is False
        assert d.reason == "v5, of the same lineage as v2, is already production"
        assert d.champion_version == 5

    def test_same_model_comparison_declines(self) -> None:
        """As the training flow builds it: the champion's metrics are the challenger's."""
        ev = evaluation(0.9)
        d = decide_promotion(challenger(2), ev, ChampionComparison.same_model(5, ev),
                             PromoteConfig())

        assert d.promote is False
        assert d.reason == "v5, of the same lineage as v2, is already production"

    def test_champion_of_another_lineage_is_compared(self) -> None:
        d = decide_promotion(challenger(2), evaluation(0.9), comparison(0.9, 0.5, 5),
                             PromoteConfig())

        assert d.promote is True

    def test_auto_promote_false_never_promotes(self) -> None:
        d = decide(0.9, 0.5, auto_promote=False)

        assert d.promote is False and d.reason == "promote.auto_promote is false"

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


def decision(promote_it: bool, version: int, reason: str = "test",
             champion: int | None = 1) -> PromotionDecision:
    """A decision made against ``champion`` (the version production pointed at)."""
    return PromotionDecision(promote_it, reason, version, champion, "roc_auc", 0.8, 0.7,
                             0.1 if promote_it else -0.1)


class TestPromote:
    def test_promotion_moves_the_alias_and_logs_the_decision(
            self, registry: ModelRegistry, reg_cfg: RegisterConfig) -> None:
        d = decision(True, 2, "roc_auc 0.8 beats v1")

        out = promote.fn(d, MODEL, PromoteConfig(), reg_cfg, LOCAL)

        assert (out.state.version, out.state.history) == (2, [1])
        assert (out.decision, out.attempts) == (d, 1)
        assert registry.alias(MODEL, "production").version == 2
        last = registry.events(MODEL)[-1]
        assert (last["event"], last["alias"], last["version"], last["previous"]) == (
            "promote", "production", 2, 1)
        assert last["reason"] == "roc_auc 0.8 beats v1"
        assert last["decision"] == d.as_dict() and last["attempt"] == 1

    def test_declined_promotion_is_logged_and_leaves_the_alias(
            self, registry: ModelRegistry, reg_cfg: RegisterConfig) -> None:
        before = registry.alias(MODEL, "production")

        out = promote.fn(decision(False, 3, "gate failed"), MODEL, PromoteConfig(), reg_cfg,
                         LOCAL)

        assert out.state is None and out.decision.promote is False
        assert registry.alias(MODEL, "production") == before
        last = registry.events(MODEL)[-1]
        assert (last["event"], last["version"], last["alias"], last["reason"]) == (
            "promotion_declined", 3, "production", "gate failed")

    def test_promotion_to_another_alias(self, registry: ModelRegistry,
                                        reg_cfg: RegisterConfig) -> None:
        # decided against staging's champion: none yet
        promote.fn(decision(True, 3, champion=None), MODEL, PromoteConfig(alias="staging"),
                   reg_cfg, LOCAL)

        assert registry.alias(MODEL, "staging").version == 3
        assert registry.alias(MODEL, "production").version == 1

    def test_promoting_an_unknown_version_fails(self, registry: ModelRegistry,
                                                reg_cfg: RegisterConfig) -> None:
        with pytest.raises(RegistryError, match="no version 9"):
            promote.fn(decision(True, 9), MODEL, PromoteConfig(), reg_cfg, LOCAL)
        assert registry.alias(MODEL, "production").version == 1


class TestRollback:
    def test_rollback_twice_then_refuse(self, registry: ModelRegistry,
                                        reg_cfg: RegisterConfig) -> None:
        promote.fn(decision(True, 2), MODEL, PromoteConfig(), reg_cfg, LOCAL)
        promote.fn(decision(True, 3, champion=2), MODEL, PromoteConfig(), reg_cfg, LOCAL)

        assert rollback.fn(MODEL, PromoteConfig(), reg_cfg, LOCAL, reason="v3 drifts").version == 2
        assert rollback.fn(MODEL, PromoteConfig(), reg_cfg, LOCAL).version == 1
        with pytest.raises(RegistryError, match="no earlier version"):
            rollback.fn(MODEL, PromoteConfig(), reg_cfg, LOCAL)

        kinds = [(e["event"], e["version"]) for e in registry.events(MODEL)
                 if e["event"] in ("promote", "rollback")]
        assert kinds == [("promote", 1), ("promote", 2), ("promote", 3), ("rollback", 2),
                         ("rollback", 1)]
        assert [e.get("reason") for e in registry.events(MODEL)
                if e["event"] == "rollback"] == ["v3 drifts", "rollback"]


# ------------------------------------------------------- compare-and-set promotion
@pytest.fixture(scope="module")
def features() -> FeatureSet:
    """A binary test split of N_TEST rows, half positives (see promotion_features)."""
    return promotion_features()


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest) -> StorageConfig:
    """The registry's storage: a local directory, or a fresh bucket on the moto server."""
    if request.param == "local":
        return LOCAL
    endpoint = request.getfixturevalue("s3_env")
    bucket = f"deploy-{uuid.uuid4().hex[:12]}"
    make_bucket(endpoint, bucket)
    return StorageConfig(kind="s3", bucket=bucket, s3=S3Config(endpoint_url=endpoint))


@pytest.fixture()
def runs(reg_cfg: RegisterConfig, storage: StorageConfig, features: FeatureSet) -> Runs:
    """A registry whose production model is v1, a weak one."""
    r = Runs(reg_cfg, storage, features)
    first = r.train(0.2)
    assert r.promote(r.decide(first), first).state.version == 1
    return r


class TestPromoteCompareAndSet:
    """Two runs decided against the same champion v1; they promote in either order."""

    def test_better_run_first_then_the_worse_run_declines_against_it(self, runs: Runs
                                                                     ) -> None:
        a, b = runs.train(1.2), runs.train(0.7)
        v_a, v_b = a.challenger.version, b.challenger.version
        assert runs.auc[1] < runs.auc[v_b] < runs.auc[v_a]
        dec_a, dec_b = runs.decide(a), runs.decide(b)
        assert (dec_a.promote, dec_a.champion_version) == (True, 1)
        assert (dec_b.promote, dec_b.champion_version) == (True, 1)

        first = runs.promote(dec_a, a)
        assert (first.state.version, first.attempts) == (v_a, 1)
        late = runs.promote(dec_b, b)

        assert runs.production() == v_a
        assert late.state is None and late.attempts == 2
        final = late.decision
        assert (final.promote, final.champion_version) == (False, v_a)
        assert final.champion_value == pytest.approx(runs.auc[v_a])
        assert f"does not beat v{v_a}'s" in final.reason
        assert late.comparison.champion[METRIC] == pytest.approx(runs.auc[v_a])
        assert (late.comparison.status, late.comparison.champion_version) == (COMPARED, v_a)
        assert (late.comparison.compared_rows, late.comparison.excluded_rows) == (N_TEST, 0)
        assert late.comparison.checked  # v_a's training rows were read
        assert [(e["version"], e["previous"]) for e in runs.events("promote")] == [
            (1, None), (v_a, 1)]
        declined = runs.events("promotion_declined")[-1]
        assert (declined["version"], declined["attempt"]) == (v_b, 2)
        assert declined["decision"] == final.as_dict()

    def test_worse_run_first_then_the_better_run_decides_again_and_promotes(
            self, runs: Runs) -> None:
        a, b = runs.train(1.2), runs.train(0.7)
        v_a, v_b = a.challenger.version, b.challenger.version
        dec_a, dec_b = runs.decide(a), runs.decide(b)

        runs.promote(dec_b, b)
        late = runs.promote(dec_a, a)

        assert runs.production() == v_a
        assert late.attempts == 2
        assert (late.decision.promote, late.decision.champion_version) == (True, v_b)
        assert (late.state.version, late.state.history) == (v_a, [1, v_b])
        last = runs.events("promote")[-1]
        assert (last["version"], last["previous"], last["attempt"]) == (v_a, v_b, 2)
        assert last["decision"] == late.decision.as_dict()
        assert last["decision"]["champion_value"] == pytest.approx(runs.auc[v_b])

    def test_each_attempt_is_logged(self, runs: Runs, caplog: pytest.LogCaptureFixture
                                    ) -> None:
        a, b = runs.train(1.2), runs.train(0.7)
        dec_a, dec_b = runs.decide(a), runs.decide(b)
        runs.promote(dec_a, a)

        with caplog.at_level(logging.INFO, logger="prefab"):
            runs.promote(dec_b, b)

        text = [r.getMessage() for r in caplog.records]
        v_a, v_b = a.challenger.version, b.challenger.version
        assert (f"Promotion attempt 1/5: production is now v{v_a}, not v1, which v{v_b} was "
                "compared with.") in text
        assert any(t.startswith(f"Promotion attempt 2/5: decided again against v{v_a}: ")
                   for t in text)
        assert any(t.startswith(f"Not promoting v{v_b}: ") for t in text)

    def test_without_a_challenge_a_moved_champion_is_an_error(self, runs: Runs) -> None:
        a, b = runs.train(1.2), runs.train(0.7)
        dec_a, dec_b = runs.decide(a), runs.decide(b)
        runs.promote(dec_a, a)
        promotions = runs.events("promote")

        with pytest.raises(AliasMovedError) as err:
            runs.promote(dec_b, None)

        assert (err.value.current, err.value.expected) == (a.challenger.version, 1)
        assert runs.production() == a.challenger.version
        assert runs.events("promote") == promotions

    def test_a_move_to_the_challenger_itself_is_already_production(self, runs: Runs
                                                                   ) -> None:
        """E.g. the promote task is retried after its compare-and-set went through."""
        a = runs.train(1.2)
        dec = runs.decide(a)
        runs.promote(dec, a)

        again = runs.promote(dec, a)

        assert again.decision.promote is False
        assert again.decision.reason == f"v{a.challenger.version} is already production"
        assert [e["version"] for e in runs.events("promote")] == [1, a.challenger.version]

    def test_a_move_to_a_twin_of_the_same_lineage_is_already_production(self, runs: Runs
                                                                        ) -> None:
        """Two runs of the same lineage registered at once got two versions."""
        a = runs.train(1.2, fingerprint="fp-twin")
        twin = runs.train(1.2, fingerprint="fp-twin")
        dec_a, dec_twin = runs.decide(a), runs.decide(twin)
        runs.promote(dec_twin, twin)

        out = runs.promote(dec_a, a)

        v_a, v_twin = a.challenger.version, twin.challenger.version
        assert out.decision.promote is False
        assert out.decision.reason == (f"v{v_twin}, of the same lineage as v{v_a}, is "
                                       "already production")
        assert runs.production() == v_twin

    def test_a_new_champion_is_compared_on_the_rows_it_was_not_trained_on(
            self, runs: Runs) -> None:
        """Deciding again reads the new champion's training rows and leaves them out."""
        a = runs.train(1.2)
        dec_a = runs.decide(a)  # against v1, which was trained on none of the test rows
        assert (a.comparison.status, a.comparison.checked) == (COMPARED, True)
        assert (a.comparison.compared_rows, a.comparison.excluded_rows) == (N_TEST, 0)
        test = runs.features.test
        seen = test.X["row"].to_numpy() < 150  # b was trained on 150 of the test rows too
        b = runs.train(1.0, trained_on=RowFingerprint.of(
            ["row"], test.row_hash[seen], runs.features.train.row_hash))
        runs.promote(runs.decide(b), b)
        v_a, v_b = a.challenger.version, b.challenger.version
        assert runs.production() == v_b

        late = runs.promote(dec_a, a)

        cmp = late.comparison
        assert late.attempts == 2 and cmp.champion_version == v_b
        assert (cmp.status, cmp.checked, cmp.test_rows) == (COMPARED, True, N_TEST)
        assert (cmp.compared_rows, cmp.excluded_rows, cmp.excluded_own_rows) == (
            N_TEST - 150, 150, 0)
        clean = test.subset(~seen)
        final = late.decision
        assert final.champion_value == pytest.approx(auc_on(b.trained.pipeline, clean))
        assert final.challenger_value == pytest.approx(auc_on(a.trained.pipeline, clean))
        assert final.champion_value != pytest.approx(runs.auc[v_b])  # not the whole split
        assert (final.compared_rows, final.excluded_rows) == (N_TEST - 150, 150)
        assert (final.promote, runs.production()) == (True, v_a)
        assert (f"on {N_TEST - 150} of {N_TEST} test rows, 150 of them excluded as "
                f"v{v_b}'s training rows") in final.reason

    def test_a_declined_decision_touches_nothing_even_if_the_champion_moved(
            self, runs: Runs) -> None:
        weak, strong = runs.train(0.05), runs.train(1.2)
        dec_weak, dec_strong = runs.decide(weak), runs.decide(strong)
        assert dec_weak.promote is False
        runs.promote(dec_strong, strong)

        out = runs.promote(dec_weak, weak)

        assert (out.decision, out.attempts, out.state) == (dec_weak, 1, None)
        assert runs.production() == strong.challenger.version

    def test_gives_up_when_the_champion_keeps_moving(self, runs: Runs,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        a = runs.train(1.2)
        dec = runs.decide(a)
        movers = [runs.train(0.3 + 0.1 * i).challenger.version for i in range(3)]
        moves = iter(movers)
        runs.registry.set_alias(MODEL, "production", next(moves))
        real = evaluate_champion.fn

        def score_then_move(champion, challenger, features, cfg):  # another run promotes
            comparison = real(champion, challenger, features, cfg)
            runs.registry.set_alias(MODEL, "production", next(moves))
            return comparison

        monkeypatch.setattr("prefab_mlops.tasks.promote.evaluate_champion.fn", score_then_move)

        with pytest.raises(AliasMovedError, match="moved under each of 3 promotion attempts"
                           ) as err:
            runs.promote(dec, a, max_attempts=3)

        assert err.value.current == movers[-1]
        assert runs.production() == movers[-1]
        assert a.challenger.version not in [e["version"] for e in runs.events("promote")]


class TestConcurrentPromotions:
    """Many runs, all decided against v1, promote in shuffled order or all at once.

    Whatever the order, every promotion replaces a worse model (by the true metric on
    the shared split, the one each decision used) and production ends on the best
    model ever promoted, which is the best one trained.
    """

    def check(self, runs: Runs, decisions: list[PromotionDecision],
              outcomes: list[PromotionOutcome]) -> None:
        # never a worse model over a better one, always over the one it was compared
        # with, and production ends on the best model trained
        assert promotion_regressions(runs) == []
        promotions = runs.events("promote")
        promoted = {e["version"] for e in promotions}
        assert runs.production() == max(promoted, key=runs.auc.__getitem__)
        assert len(promotions) == 1 + sum(o.decision.promote for o in outcomes)
        # All decided against v1: the first compare-and-set from v1 wins, every other
        # run that wanted to promote finds production moved and decides again.
        wanted = sum(d.promote for d in decisions)
        assert sum(o.attempts > 1 for o in outcomes) == wanted - 1 > 0
        for o in outcomes:
            assert (o.state is not None) == o.decision.promote
            champ = o.decision.champion_version
            if not o.decision.promote:
                assert runs.auc[champ] >= runs.auc[o.decision.challenger_version]

    def start(self, runs: Runs, seed: int, n: int) -> tuple[list[Challenge],
                                                          list[PromotionDecision]]:
        challenges, decisions = start_round(runs, seed, n)
        assert len(set(runs.auc.values())) == len(runs.auc)  # no ties: one best model
        assert {d.champion_version for d in decisions} == {1}  # all against v1
        return challenges, decisions

    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_in_shuffled_order(self, runs: Runs, seed: int) -> None:
        challenges, decisions = self.start(runs, seed, 6)

        outcomes = [runs.promote(d, c, max_attempts=2)
                    for d, c in zip(decisions, challenges, strict=True)]

        self.check(runs, decisions, outcomes)

    @pytest.mark.parametrize("seed", [4, 5])
    def test_all_at_once(self, runs: Runs, seed: int) -> None:
        challenges, decisions = self.start(runs, seed, 6)

        outcomes = promote_all_at_once(runs, challenges, decisions)

        self.check(runs, decisions, outcomes)

    # S3's conditional writes are the server's, whichever process sends them (see the
    # threads above); here, flock between processes. About 3 s of imports per process.
    @pytest.mark.parametrize("storage", ["local"], indirect=True)
    def test_in_separate_processes(self, runs: Runs) -> None:
        """As separate training runs do: one process each, all promoting at once."""
        n = 3
        challenges, decisions = self.start(runs, 6, n)
        ctx = multiprocessing.get_context("spawn")
        go, results = ctx.Barrier(n, timeout=300), ctx.Queue()
        procs = [ctx.Process(target=_promote_in_process,
                             args=(runs.reg_cfg, runs.storage, decisions[i], challenges[i],
                                   n, go, results))
                 for i in range(n)]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=300) for _ in procs]
        for proc in procs:
            proc.join(60)
        assert [proc.exitcode for proc in procs] == [0] * n

        self.check(runs, decisions, outcomes)


def _promote_in_process(reg_cfg: RegisterConfig, storage: StorageConfig,
                        decision: PromotionDecision, challenge: Challenge, attempts: int,
                        go, results) -> None:  # type: ignore[no-untyped-def]
    go.wait()
    results.put(promote.fn(decision, MODEL, PromoteConfig(), reg_cfg, storage, challenge,
                           max_attempts=attempts))
