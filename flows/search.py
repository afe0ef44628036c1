"""The candidate search of the training flow: trials mapped over the configured runner.

:func:`candidate_search` is a flow of its own, run inside ``training`` with the task
runner that ``orchestration.task_runner`` names
(``candidate_search.with_options(task_runner=task_runner(orch))``, see
:mod:`prefab_mlops.orchestration.runners`): on ``dask`` every trial is a task on a
Dask worker; on ``thread`` they run in the flow's process. It receives the staged
features (a path and a fingerprint, :class:`~prefab_mlops.tasks.search.FeatureRef`),
never the frames.

A trial that fails (its worker died twice, its fit raised) is recorded as failed and
the search goes on; only a search where no trial finished fails
(:class:`~prefab_mlops.tasks.search.SearchError`), before anything is registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from prefect import flow, unmapped

from prefab_mlops.config import ModelSpec, OrchestrationConfig, SearchConfig
from prefab_mlops.orchestration.artifacts import publish_table
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.orchestration.runners import parallel_slots, task_threads
from prefab_mlops.orchestration.runtime import configure
from prefab_mlops.tasks.search import (
    FeatureRef,
    Trial,
    TrialRecord,
    ask_trials,
    best_record,
    best_trial,
    candidate_params,
    candidate_spec,
    open_study,
    run_trial,
    study_name,
    study_trials,
    tell_trials,
)


@dataclass
class SearchResult:
    """The best trial and the record of every trial (finished or failed)."""

    best: Trial
    metric: str
    records: list[TrialRecord] = field(default_factory=list)
    study: str | None = None

    def summary(self) -> dict[str, Any]:
        failed = sum(r.status != "complete" for r in self.records)
        return {"metric": self.metric, "trials": len(self.records), "failed": failed,
                "best": {"trial": self.best.number, "params": self.best.params,
                         "score": self.best.score}, "study": self.study}


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of one search shares (the flow's config subtrees, typed)."""

    features: FeatureRef
    model: ModelSpec
    seed: int
    metric: str
    threshold: float


def _run_trials(trial_task: Any, s: TrialSettings, params: list[dict[str, Any]],
                numbers: list[int], threads: int | None) -> tuple[list[Trial], list[TrialRecord]]:
    """Map ``trial_task`` over the candidates; wait for all; keep failures as records."""
    log = get_logger()
    specs = [candidate_spec(s.model, p, threads) for p in params]
    futures = trial_task.map(unmapped(s.features), specs, params, unmapped(s.seed),
                             unmapped(s.metric), unmapped(s.threshold))
    trials: list[Trial] = []
    records: list[TrialRecord] = []
    for number, p, future in zip(numbers, params, futures, strict=True):
        try:
            trial = replace(future.result(), number=number)
        except Exception as exc:  # noqa: BLE001 - a failed trial is recorded, not fatal
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            log.warning("Trial %d %s failed: %s", number, p, message)
            records.append(TrialRecord(number, p, "failed", error=message))
            continue
        trials.append(trial)
        records.append(TrialRecord(number, p, "complete", trial.score, trial.seconds,
                                   trial.best_iteration))
    return trials, records


@flow(name="candidate-search", validate_parameters=False)
def candidate_search(features: FeatureRef, model: ModelSpec, search: SearchConfig,
                     orch: OrchestrationConfig, seed: int, metric: str, threshold: float,
                     model_name: str, refresh_cache: bool = False) -> SearchResult:
    """Try the candidates of ``conf/search`` and return the best on the validation split.

    Args:
        features: The staged featurized split (:func:`prefab_mlops.tasks.search.stage_features`).
        model: ``conf/model``, which each candidate changes.
        search: ``conf/search``.
        orch: ``conf/orchestration``: the trials' retries, timeout and cache (family
            ``train``), and the runner's threads per trial.
        seed: Global seed.
        metric: ``evaluate.primary_metric``, the score that picks the best.
        threshold: ``evaluate.threshold``.
        model_name: ``register.model_name`` (the artifact key and the study name).
        refresh_cache: Run every trial afresh instead of reusing cached ones.

    Returns:
        The best trial (with its trained model) and every trial's record.

    Raises:
        SearchError: no trial finished.
    """
    trial_task = configure(run_trial, "train", orch, cache=True, refresh=refresh_cache)
    threads = task_threads(orch)
    settings = TrialSettings(features, model, seed, metric, threshold)
    study = None
    if search.strategy == "optuna":
        opt = search.optuna
        study = study_name(model_name, features.fingerprint, opt, model)
        done = open_study(opt, study, metric)
        batch = opt.batch or parallel_slots(orch)
        while done < opt.n_trials:
            asked = ask_trials(opt, study, metric, min(batch, opt.n_trials - done))
            trials, _ = _run_trials(trial_task, settings, [p for _, p in asked],
                                    [n for n, _ in asked], threads)
            scores = {t.number: t.score for t in trials}
            tell_trials(opt, study, [(n, scores.get(n)) for n, _ in asked])
            done += len(asked)
        records = study_trials(opt, study)
        pick = best_record(records, metric)
        # the best trial's model: a cache hit when it ran in this run or a cached one before
        trials, _ = _run_trials(trial_task, settings, [pick.params], [pick.number], threads)
        best = best_trial(trials, metric)
    else:
        params = candidate_params(search)
        trials, records = _run_trials(trial_task, settings, params, list(range(len(params))),
                                      threads)
        best = best_trial(trials, metric)
    publish_table(f"{model_name}-search", [r.row(metric) for r in records],
                  f"Candidate search ({search.strategy}): {len(records)} trials on the "
                  f"validation split by {metric}; best is trial {best.number}")
    get_logger().info("Search: best of %d trials is %d %s (%s=%.5f)", len(records),
                      best.number, best.params, metric, best.score)
    return SearchResult(best=best, metric=metric, records=records, study=study)
