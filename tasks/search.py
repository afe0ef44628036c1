"""Search: candidate models from ``conf/search``, each trained and scored as one trial.

A trial trains ``conf/model`` with some of its keys replaced on the featurized train
split (XGBoost stops early on the validation split, as :func:`~prefab_mlops.tasks.train.train`
does) and scores it on the validation split by ``evaluate.primary_metric``. Trials
are plain tasks, so the flow maps them over the task runner: on a Dask runner each
runs in a worker process.

Trials never receive the feature frames: :func:`stage_features` writes the split once
to a file named by its fingerprint, and each trial reads it from there (a
:class:`FeatureRef` of a path and a fingerprint). Big frames passed between tasks on a
Dask runner stay pinned in the workers' memory and are recomputed when a worker dies.
The trial's cache key is its own (the lineage policy keys it on the fingerprint, never
on the path), so a search that stopped half way resumes with the finished trials
cached.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cloudpickle
from prefect import task

from prefab_mlops.config import ModelSpec, OptunaConfig, SearchConfig
from prefab_mlops.core.errors import ConfigError, PrefabError
from prefab_mlops.core.fingerprint import stable_hash
from prefab_mlops.core.problems import greater_is_better
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.tasks.evaluate import compute_metrics
from prefab_mlops.tasks.featurize import FeatureSet
from prefab_mlops.tasks.train import TrainedModel, check_estimator_fits, train

_T = TypeVar("_T")


class SearchError(PrefabError):
    """A candidate search could not produce a best candidate."""


@dataclass(frozen=True)
class FeatureRef:
    """A featurized split on disk (``path``), known by its lineage ``fingerprint``."""

    path: str
    fingerprint: str

    def load(self) -> FeatureSet:
        with open(self.path, "rb") as fh:
            features: FeatureSet = cloudpickle.load(fh)
        if features.fingerprint != self.fingerprint:
            raise SearchError(f"{self.path} holds features {features.fingerprint[:12]}, not "
                              f"{self.fingerprint[:12]}.",
                              fix="Remove the file; the next run stages the features again.")
        return features


@dataclass
class Trial:
    """One finished trial: the candidate's params, its validation score and model."""

    number: int
    params: dict[str, Any]
    metric: str
    score: float
    seconds: float
    best_iteration: int | None
    trained: TrainedModel


@dataclass
class TrialRecord:
    """What a search records of each trial, finished or not (artifact and W&B rows)."""

    number: int
    params: dict[str, Any]
    status: str
    score: float | None = None
    seconds: float | None = None
    best_iteration: int | None = None
    error: str | None = None

    def row(self, metric: str) -> dict[str, Any]:
        return {"trial": self.number, "status": self.status,
                metric: None if self.score is None else round(self.score, 6),
                "best_iteration": self.best_iteration, "seconds": self.seconds,
                **{f"param.{k}": v for k, v in self.params.items()},
                **({"error": self.error} if self.error else {})}


def candidate_params(cfg: SearchConfig) -> list[dict[str, Any]]:
    """The candidates of a ``grid`` or ``list`` search, as model keys to replace.

    A grid is expanded in the order its keys are written; an empty dict is ``conf/model``
    itself.
    """
    if cfg.strategy == "grid":
        keys = list(cfg.grid)
        return [dict(zip(keys, values, strict=True))
                for values in itertools.product(*(cfg.grid[k] for k in keys))]
    if cfg.strategy == "list":
        return [dict(c) for c in cfg.candidates]
    return [{}]


def params_to_check(cfg: SearchConfig) -> list[dict[str, Any]]:
    """Candidates that exercise every key the search may set (for :func:`check_candidates`):
    the grid or list itself, or each end of an Optuna space."""
    if cfg.strategy != "optuna":
        return candidate_params(cfg)
    ends: list[dict[str, Any]] = [{}, {}]
    for name, r in cfg.optuna.space.items():
        if r.type == "categorical":
            values = [(r.choices or [None])[0], (r.choices or [None])[-1]]
        else:
            cast = int if r.type == "int" else float
            values = [cast(r.low), cast(r.high)]
        for end, value in zip(ends, values, strict=True):
            end[name] = value
    return ends


def candidate_spec(model: ModelSpec, params: dict[str, Any], threads: int | None) -> ModelSpec:
    """``model`` with ``params`` replaced and, when ``threads`` is set and the estimator
    takes ``n_jobs``, that many threads."""
    merged = {**model.params, **params}
    if threads is not None and "n_jobs" in model.instantiate().get_params():
        merged["n_jobs"] = threads
    return ModelSpec(target=model.target, params=merged)


def check_candidates(model: ModelSpec, candidates: list[dict[str, Any]],
                     problem_type: str) -> None:
    """Build every candidate before any work, so a wrong key fails at once, named.

    Raises:
        ConfigError: a candidate's keys are not parameters of ``model._target_``.
    """
    fix = ("Use only parameters of model._target_ in conf/search (search.grid, "
           "search.candidates, search.optuna.space).")
    # XGBoost takes any keyword (**kwargs) and only warns at fit time: check the names
    # against the parameters the estimator declares
    known = set(model.instantiate().get_params())
    for i, params in enumerate(candidates):
        unknown = sorted(k for k in params if k not in known)
        if unknown:
            raise ConfigError(f"search candidate {i} {params}: {unknown} are not parameters of "
                              f"'{model.target}'.", fix=fix)
        spec = candidate_spec(model, params, None)
        try:
            check_estimator_fits(spec.instantiate(), problem_type, spec.target)
        except ConfigError as exc:
            raise ConfigError(f"search candidate {i} {params}: {exc.message}", fix=fix) from None


@task(name="stage-features")
def stage_features(features: FeatureSet, directory: str) -> FeatureRef:
    """Write ``features`` once to ``directory/<fingerprint>.pkl`` for the trials to read.

    Args:
        features: The featurized split (:func:`~prefab_mlops.tasks.featurize.featurize`).
        directory: Where trials can read it: a local directory, shared by the Dask workers
            when they run on other machines (``paths.cache_dir``/search).

    Returns:
        Its path and fingerprint (a file already there is reused).
    """
    path = Path(directory) / f"features-{features.fingerprint}.pkl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as fh:
            cloudpickle.dump(features, fh, protocol=5)
        os.replace(tmp, path)
    return FeatureRef(str(path), features.fingerprint)


def trial_name() -> str:
    """A trial's task run name: ``trial`` and the params it replaced."""
    from prefect.runtime import task_run

    params = task_run.parameters.get("params") or {}
    return "trial-" + ",".join(f"{k}={v}" for k, v in params.items())


@task(name="trial", persist_result=True, task_run_name=trial_name)
def run_trial(features: FeatureRef, model: ModelSpec, params: dict[str, Any], seed: int,
              metric: str, threshold: float = 0.5) -> Trial:
    """Train one candidate and score it on the validation split.

    Args:
        features: The staged featurized split (:func:`stage_features`).
        model: The candidate's estimator (``conf/model`` with ``params`` replaced and the
            runner's thread count).
        params: The keys this candidate replaced (recorded with the trial).
        seed: Global seed.
        metric: ``evaluate.primary_metric``.
        threshold: ``evaluate.threshold`` for binary labels.

    Returns:
        The trial, with its trained model (a :class:`~prefab_mlops.tasks.train.TrainedModel`
        exactly as the train task makes it). Its ``number`` is -1: the search numbers its
        trials, and a trial's result (and cache key) does not depend on its place.

    Raises:
        SearchError: the validation split is empty, so candidates cannot be compared.
    """
    data = features.load()
    if len(data.valid) == 0:
        raise SearchError("A search scores candidates on the validation split, which is empty.",
                          fix="Set features.split.valid_size > 0.")
    start = time.perf_counter()
    trained = train.fn(data, model, seed)
    metrics, _, _ = compute_metrics(trained.pipeline, data.valid, data.problem_type, threshold)
    seconds = round(time.perf_counter() - start, 3)
    score = float(metrics[metric])
    get_logger().info("Trial %s: %s=%.5f in %.1fs", params, metric, score, seconds)
    return Trial(number=-1, params=params, metric=metric, score=score, seconds=seconds,
                 best_iteration=trained.fit.best_iteration if trained.fit else None,
                 trained=trained)


def _best(items: Sequence[_T], score: Callable[[_T], float | None],
          number: Callable[[_T], int], metric: str, counted: str, fix: str) -> _T:
    """The item with the best ``score`` by ``metric`` (None and NaN never win; ties go to
    the lower number); ``counted`` and ``fix`` word the error when none has a score."""
    scored = [(s, number(i), i) for i in items if (s := score(i)) is not None and s == s]
    if not scored:
        raise SearchError(f"No search trial finished with a {metric} score "
                          f"({len(items)} {counted}).", fix=fix)
    sign = -1.0 if greater_is_better(metric) else 1.0
    return min(scored, key=lambda x: (sign * x[0], x[1]))[2]


def best_trial(trials: list[Trial], metric: str) -> Trial:
    """The best trial by ``metric`` (NaN scores never win; ties go to the lower number).

    Raises:
        SearchError: no trial finished with a score.
    """
    return _best(trials, lambda t: t.score, lambda t: t.number, metric, "finished",
                 "See the failed trials in the search artifact; fix their cause and rerun "
                 "(finished trials are cached).")


def best_record(records: list[TrialRecord], metric: str) -> TrialRecord:
    """The best finished record by ``metric``, as :func:`best_trial` picks.

    Raises:
        SearchError: no record finished with a score.
    """
    return _best(records, lambda r: r.score if r.status == "complete" else None,
                 lambda r: r.number, metric, "recorded",
                 "See the failed trials in the search artifact; fix their cause and rerun.")


# ------------------------------------------------------------------- optuna
def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise SearchError(f"search.strategy is 'optuna' but optuna cannot be imported ({exc}).",
                          fix="pip install 'prefab-mlops[dask]', or use search=grid.") from None
    return optuna


def study_name(model_name: str, features_fingerprint: str, cfg: OptunaConfig,
               model: ModelSpec) -> str:
    """The study a search resumes: the same model, data, base params, space and sampler."""
    return f"{model_name}-" + stable_hash(features_fingerprint, model, cfg.space, cfg.sampler,
                                          cfg.seed)[:16]


@task(name="open-study", retries=2, retry_delay_seconds=1)
def open_study(cfg: OptunaConfig, name: str, metric: str) -> int:
    """Create or load the study; mark trials left running by a stopped run as failed.

    Returns:
        How many of its trials are finished (complete or failed).
    """
    optuna = _optuna()
    study = optuna.create_study(study_name=name, storage=cfg.storage, load_if_exists=True,
                                direction="maximize" if greater_is_better(metric)
                                else "minimize", sampler=_sampler(optuna, cfg))
    finished = 0
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            finished += 1
        elif t.state.is_finished():
            finished += 1
    return finished


def _sampler(optuna: Any, cfg: OptunaConfig, asked: int = 0) -> Any:
    """The study's sampler, seeded from ``cfg.seed`` and the trials ``asked`` so far.

    Every batch loads the study with a new sampler; seeded alike, it would propose the
    same points again (as a resumed study would), so the seed moves on with the study.
    """
    seed = None if cfg.seed is None else cfg.seed + asked
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _distribution(optuna: Any, r: Any) -> Any:
    d = optuna.distributions
    if r.type == "categorical":
        return d.CategoricalDistribution(list(r.choices))
    if r.type == "int":
        return d.IntDistribution(int(r.low), int(r.high), log=r.log)
    return d.FloatDistribution(float(r.low), float(r.high), log=r.log)


@task(name="ask-trials")
def ask_trials(cfg: OptunaConfig, name: str, metric: str,
               n: int) -> list[tuple[int, dict[str, Any]]]:
    """Ask the study for ``n`` new trials: ``(optuna trial number, params)`` each."""
    optuna = _optuna()
    study = optuna.load_study(study_name=name, storage=cfg.storage)
    study.sampler = _sampler(optuna, cfg, len(study.get_trials(deepcopy=False)))
    space = {k: _distribution(optuna, r) for k, r in cfg.space.items()}
    asked = [study.ask(space) for _ in range(n)]
    return [(t.number, dict(t.params)) for t in asked]


@task(name="tell-trials", retries=2, retry_delay_seconds=1)
def tell_trials(cfg: OptunaConfig, name: str, results: list[tuple[int, float | None]]) -> None:
    """Tell the study each asked trial's score (None: it failed)."""
    optuna = _optuna()
    study = optuna.load_study(study_name=name, storage=cfg.storage)
    for number, score in results:
        if score is None or score != score:
            study.tell(number, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(number, score)


@task(name="study-trials")
def study_trials(cfg: OptunaConfig, name: str) -> list[TrialRecord]:
    """Every trial the study holds, finished in this run or before."""
    optuna = _optuna()
    study = optuna.load_study(study_name=name, storage=cfg.storage)
    return [TrialRecord(number=t.number, params=dict(t.params), status=t.state.name.lower(),
                        score=None if t.value is None else float(t.value),
                        seconds=None if t.duration is None else round(
                            t.duration.total_seconds(), 3))
            for t in study.get_trials(deepcopy=False)]


__all__ = ["FeatureRef", "SearchError", "Trial", "TrialRecord", "ask_trials", "best_record",
           "best_trial", "params_to_check",
           "candidate_params", "candidate_spec", "check_candidates", "open_study",
           "run_trial", "stage_features", "trial_name", "study_name", "study_trials", "tell_trials"]
