"""Stand-in training runs at the promote step, for the promotion tests and
``make bench-reliability``: many runs decided against the same champion that promote
in an adversarial order (shuffled, or all at once), against a real registry.

The models are :class:`RowScores`, whose real metrics on a shared test split
(:func:`promotion_features`) are known, so every promotion can be judged afterwards
(:func:`promotion_regressions`). The promotions themselves are the real ``promote``
task's compare-and-sets (``prefab_mlops.tasks.promote``), decided as the training flow
decides (``decide_again`` against the champion ``load_production`` returns).
"""

from __future__ import annotations

import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from prefab_mlops.config import EvaluateConfig, PromoteConfig, RegisterConfig
from prefab_mlops.core.fingerprint import RowFingerprint, row_hashes
from prefab_mlops.core.manifest import DataRecord, ModelVersion, SplitRecord, TrainedRowsRecord
from prefab_mlops.core.pickling import dumps_model
from prefab_mlops.core.registry import TRAINED_ROWS_FILE
from prefab_mlops.core.schema import InputSchema
from prefab_mlops.core.storage import StorageConfig
from prefab_mlops.orchestration.payloads import Payload
from prefab_mlops.tasks.evaluate import (
    NO_CHAMPION,
    ChampionComparison,
    Evaluation,
    GateResult,
    compute_metrics,
)
from prefab_mlops.tasks.featurize import FeatureSet, Split
from prefab_mlops.tasks.promote import (
    Challenge,
    PromotionDecision,
    PromotionOutcome,
    decide_again,
    promote,
)
from prefab_mlops.tasks.register import trained_rows
from prefab_mlops.tasks.registry import load_production, open_registry
from prefab_mlops.tasks.train import TrainedModel

MODEL = "flights-binary"
N_TEST = 400
METRIC = "roc_auc"
EVAL_CFG = EvaluateConfig(primary_metric=METRIC)


class RowScores:
    """A stand-in fitted pipeline: fixed positive-class scores for the test rows.

    The test split's only column is ``row`` (0..N_TEST-1), so the model's metrics on
    it are real and fixed: scoring it as a champion gives what it scored as a
    challenger.
    """

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = np.asarray(scores, dtype="float64")

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.scores[X["row"].to_numpy()]
        return np.column_stack([1 - p, p])


def split_of(rows: np.ndarray, y: np.ndarray) -> Split:
    X = pd.DataFrame({"row": rows})
    return Split(X=X, y=y, row_hash=row_hashes(X))


def promotion_features() -> FeatureSet:
    """A binary test split of N_TEST rows, half positives.

    The train and validation splits hold other rows (``row`` from N_TEST on), which
    are never scored: they are what every stand-in model records as trained on, so
    none of the test rows is left out of a comparison unless a test says so.
    """
    y = np.random.default_rng(11).permutation(np.repeat([0, 1], N_TEST // 2))
    test = split_of(np.arange(N_TEST), y)
    train = split_of(np.arange(N_TEST, 3 * N_TEST), np.tile([0, 1], N_TEST))
    valid = split_of(np.arange(3 * N_TEST, 4 * N_TEST), np.tile([0, 1], N_TEST // 2))
    return FeatureSet(payload=Payload(train=train, valid=valid, test=test),
                      preprocessor=None, input_schema=InputSchema(), feature_names=["row"],
                      classes=[0, 1], problem_type="binary", native_categorical=False,
                      split_info=SplitRecord("hash", 0, 0.25, 0.25, 2 * N_TEST, N_TEST, N_TEST),
                      fingerprint="fs")


def auc_on(model: RowScores, split: Split) -> float:
    """The model's true primary metric on ``split``."""
    return compute_metrics(model, split, "binary", EVAL_CFG.threshold)[0][METRIC]


NOISE = np.random.default_rng(5).normal(size=N_TEST)


def model_of(strength: float, features: FeatureSet) -> RowScores:
    """Scores that separate the classes better the higher ``strength`` is.

    With the same noise for every model, the ROC AUC never decreases with strength.
    """
    margin = strength * (2 * features.test.y - 1) + NOISE
    return RowScores(1 / (1 + np.exp(-margin)))


class Runs:
    """Training runs sharing one registry and one test split, at the promote step.

    ``train`` registers a stand-in model with the rows it was trained on (as
    ``register`` does) and returns its :class:`Challenge` (its real metrics on the
    split); ``decide`` does what the training flow does before it promotes: load the
    champion with its training rows, score both on the clean test rows and decide
    (setting ``Challenge.comparison``).
    """

    def __init__(self, reg_cfg: RegisterConfig, storage: StorageConfig,
                 features: FeatureSet) -> None:
        self.reg_cfg, self.storage, self.features = reg_cfg, storage, features
        self.registry = open_registry(reg_cfg, storage)
        self.auc: dict[int, float] = {}  # every version's true metric on the split

    def train(self, strength: float, fingerprint: str | None = None,
              trained_on: RowFingerprint | None = None) -> Challenge:
        """Register a model; it records ``trained_on`` (default: the train and valid rows)."""
        model = model_of(strength, self.features)
        metrics, _, _ = compute_metrics(model, self.features.test, "binary",
                                        EVAL_CFG.threshold)
        rows = trained_rows(self.features) if trained_on is None else trained_on
        assert rows is not None
        mv = self.registry.register(
            ModelVersion(model_name=MODEL, version=0, created_at="",
                         fingerprint=fingerprint or f"fp-{uuid.uuid4().hex}", model_key="",
                         model_sha256="", problem_type="binary", metrics=metrics,
                         data=DataRecord(trained_rows=TrainedRowsRecord(list(rows.columns),
                                                                        len(rows)))),
            dumps_model(model), {TRAINED_ROWS_FILE: rows.to_npy()})
        self.auc[mv.version] = metrics[METRIC]
        ev = Evaluation(metrics=metrics, confusion_matrix=None, gate=GateResult(),
                        plots={}, primary_metric=METRIC,
                        fingerprint=f"ev-{mv.version}")
        trained = TrainedModel(payload=Payload(pipeline=model), fingerprint=mv.fingerprint,
                               estimator="RowScores", params={}, problem_type="binary",
                               classes=[0, 1], input_schema=InputSchema(),
                               feature_names=["row"])
        # not decided yet: decide() sets the comparison with the champion
        return Challenge(mv, ev, trained, self.features, EVAL_CFG,
                         ChampionComparison(NO_CHAMPION, None, N_TEST))

    def decide(self, challenge: Challenge) -> PromotionDecision:
        champion = load_production.fn(self.reg_cfg, self.storage, "production",
                                      unless_lineage=challenge.challenger.fingerprint,
                                      with_trained_rows=True)
        decision, challenge.comparison = decide_again(challenge, champion, PromoteConfig())
        return decision

    def promote(self, decision: PromotionDecision, challenge: Challenge | None,
                **kw) -> PromotionOutcome:
        return promote.fn(decision, MODEL, PromoteConfig(), self.reg_cfg, self.storage,
                          challenge, **kw)

    def production(self) -> int | None:
        state = self.registry.alias(MODEL, "production")
        return state.version if state else None

    def events(self, kind: str) -> list[dict]:
        return [e for e in self.registry.events(MODEL) if e["event"] == kind]


def start_round(runs: Runs, seed: int, n: int) -> tuple[list[Challenge],
                                                       list[PromotionDecision]]:
    """``n`` runs of random strength, all decided against the current champion, in a
    shuffled order (seeded)."""
    rng = random.Random(seed)
    challenges = [runs.train(rng.uniform(0.0, 1.5)) for _ in range(n)]
    decisions = [runs.decide(c) for c in challenges]
    order = list(range(n))
    rng.shuffle(order)
    return [challenges[i] for i in order], [decisions[i] for i in order]


def promote_all_at_once(runs: Runs, challenges: list[Challenge],
                        decisions: list[PromotionDecision]) -> list[PromotionOutcome]:
    """Every run promotes at the same moment, one thread each (``n`` attempts each, as
    each promotion in between can move production once)."""
    n = len(decisions)
    go = threading.Barrier(n)

    def run(i: int) -> PromotionOutcome:
        go.wait()
        return runs.promote(decisions[i], challenges[i], max_attempts=n)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def promotion_regressions(runs: Runs) -> list[str]:
    """Every way production went backwards: a promotion over a better model, a
    promotion over another model than the one it was compared with, or production not
    ending on the best model trained (by the true metric on the shared split)."""
    problems = []
    promotions = runs.events("promote")
    for e in promotions:
        if e["previous"] is not None and runs.auc[e["version"]] <= runs.auc[e["previous"]]:
            problems.append(f"v{e['version']} ({runs.auc[e['version']]:.4f}) replaced "
                            f"v{e['previous']} ({runs.auc[e['previous']]:.4f})")
        if e["decision"]["champion_version"] != e["previous"]:
            problems.append(f"v{e['version']} was compared with "
                            f"v{e['decision']['champion_version']} but replaced "
                            f"v{e['previous']}")
    best = max(runs.auc, key=runs.auc.__getitem__)
    if runs.production() != best:
        problems.append(f"production ended on v{runs.production()}, the best is v{best}")
    return problems
