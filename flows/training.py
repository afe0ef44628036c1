"""The training flow: ingest → validate → featurize → train → evaluate → register → promote.

A project adds its own steps at the hooks ``after_ingest`` and ``after_evaluate``
through ``conf/steps`` (see :mod:`prefab_mlops.tasks.steps`), without copying the flow.

Run it from the command line with Hydra overrides::

    python -m prefab_mlops.flows.training model=random_forest model.n_estimators=300
    python -m prefab_mlops.flows.training experiment=NAME     # conf/experiment/NAME.yaml
    python -m prefab_mlops.flows.training --refresh-cache        # ignore cached task results

from a test or a script (``training(overrides=[...])``), or from a Prefect
deployment (``prefect.yaml``) with the same parameters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from prefect import Task, flow

from prefab_mlops.config import LoadedConfig, ModelSpec, PipelineConfig, TargetSpec
from prefab_mlops.core.errors import ConfigError, QualityGateError
from prefab_mlops.core.manifest import ModelVersion
from prefab_mlops.core.problems import LOWER_IS_BETTER
from prefab_mlops.flows.common import (
    load_and_log,
    project_steps,
    run_after_evaluate,
    run_after_ingest,
    run_cli,
    run_ids,
)
from prefab_mlops.flows.search import SearchResult, candidate_search
from prefab_mlops.orchestration.artifacts import md_table, publish_markdown, publish_table
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.orchestration.runners import task_runner
from prefab_mlops.orchestration.runtime import configure
from prefab_mlops.partitions import PartitionedDataset, dask_session
from prefab_mlops.tasks.evaluate import (
    ChampionComparison,
    Evaluation,
    evaluate,
    evaluate_champion,
    evaluate_champion_partitioned,
    evaluate_partitioned,
)
from prefab_mlops.tasks.featurize import featurize, featurize_partitioned
from prefab_mlops.tasks.ingest import Dataset, ingest, ingest_partitioned
from prefab_mlops.tasks.promote import Challenge, PromotionDecision, decide_promotion, promote
from prefab_mlops.tasks.register import RunInfo, register, register_partitioned
from prefab_mlops.tasks.registry import load_production
from prefab_mlops.tasks.search import check_candidates, params_to_check, stage_features
from prefab_mlops.tasks.steps import Candidate
from prefab_mlops.tasks.track import track, track_search
from prefab_mlops.tasks.train import TrainedModel, check_estimator_fits, train, train_partitioned
from prefab_mlops.tasks.validate import (
    LeakageReport,
    ValidationReport,
    check_leakage,
    check_leakage_partitioned,
    leakage_summary,
    leakage_text,
    validate,
    validate_partitioned,
)
from prefab_mlops.tracking import RunRecord


def _comparison_text(c: dict[str, Any]) -> str:
    """One line on which test rows the champion was compared on (summary and CLI)."""
    champ = f"v{c['champion_version']}"
    if c["status"] == "no_champion":
        return "no champion yet"
    if c["status"] == "same_model":
        return f"{champ} is this model"
    if c["status"] == "incompatible":
        return f"not comparable: {c['note']}"
    text = (f"on {c['compared_rows']:,} of {c['test_rows']:,} test rows; "
            f"{c['excluded_rows']:,} excluded as {champ}'s training rows")
    if c["excluded_own_rows"]:
        text += f", {c['excluded_own_rows']:,} as this model's"
    if c["status"] == "too_few_rows":
        return f"not comparable ({text})"
    if not c["checked"]:
        text += f" ({champ}'s training rows unknown)"
    return text


def _production_text(s: dict[str, Any]) -> str:
    """Where the alias points after the run, said as such when nothing is there."""
    if s["production_version"] is None:
        return f"no {s['alias']} model yet"
    moved = "is now" if s["decision"]["promote"] else "stays"
    return f"{s['alias']} {moved} v{s['production_version']}"


def _summary_markdown(s: dict[str, Any]) -> str:
    gate = s["gate"]
    cmp = s["comparison"]
    both = cmp["status"] == "compared"
    baseline = gate["baseline"]

    def on_compared(metrics: dict[str, float] | None, k: str) -> Any:
        return round(metrics[k], 5) if both and metrics and k in metrics else ""

    rows = []
    for k, v in s["metrics"].items():
        row = {"metric": k, "value": round(v, 5), "gate": _rule_text(gate, k)}
        if baseline is not None:
            row[f"{baseline['strategy']} baseline"] = (
                round(baseline["metrics"][k], 5) if k in baseline["metrics"] else "")
        row.update({"this model on compared rows": on_compared(cmp["challenger"], k),
                    "champion on compared rows": on_compared(cmp["champion"], k)})
        rows.append(row)
    dec = s["decision"]
    return "\n".join([
        f"# Training run: `{s['model_name']}`",
        f"**Data**: `{s['data']['source']}`, {s['data']['rows']:,} rows, fingerprint "
        f"`{s['data']['fingerprint'][:12]}`",
        f"**Model**: `{s['estimator']}` registered as **v{s['version']}**",
        f"**Quality gate**: {gate['summary']}",
        f"**Leakage check**: {leakage_text(s['leakage'])}",
        f"**Champion comparison**: {_comparison_text(cmp)}",
        f"**Promotion**: {'PROMOTED to ' + s['alias'] if dec['promote'] else 'not promoted'}"
        f" ({dec['reason']}); {_production_text(s)}", "", md_table(rows)])


def _rule_text(gate: dict[str, Any], metric: str) -> str:
    """The gate's requirement on ``metric`` (the table's gate column)."""
    parts = []
    baseline = gate["baseline"]
    if baseline is not None and baseline["metric"] == metric:
        op = "<=" if metric in LOWER_IS_BETTER else ">="
        parts.append(f"baseline rule: {op} {baseline['required']:.5g}")
    for bound, value in (gate["rules"].get(metric) or {}).items():
        if value is not None:
            parts.append(f"absolute rule: {bound} {value}")
    return "; ".join(parts)


def _stop_on_failed_gate(evaluation: Evaluation, cfg: PipelineConfig) -> None:
    """Raise when the model failed its gate and ``evaluate.on_gate_failure`` is fail."""
    if not evaluation.gate.passed and cfg.evaluate.on_gate_failure == "fail":
        raise QualityGateError(
            "Model failed its quality gate: " + "; ".join(evaluation.gate.failures),
            fix="Improve the model, or change the rule that failed (the baseline rule: "
            "evaluate.baseline.min_improvement; absolute rules: evaluate.gate); with "
            "evaluate.on_gate_failure=warn it is registered but never promoted.")


def _compare_with_champion(cfg: PipelineConfig, trained: TrainedModel, evaluation: Evaluation,
                           compare: Task[..., ChampionComparison], *args: Any
                           ) -> ChampionComparison:
    """The production model (the champion) against ``trained``, on either engine.

    ``compare`` is the engine's comparison task (``evaluate_champion`` or
    ``evaluate_champion_partitioned``), called as ``compare(champion, trained, *args)``.
    """
    champion = configure(load_production, "register", cfg.orchestration)(
        cfg.register, cfg.storage, cfg.promote.alias, unless_lineage=trained.fingerprint,
        with_trained_rows=True)
    if champion is not None and champion.version.fingerprint == trained.fingerprint:
        # the champion *is* this model (same lineage): its metrics on this split are known
        return ChampionComparison.same_model(champion.version.version, evaluation)
    # both scored on the test rows neither was trained on
    return configure(compare, "evaluate", cfg.orchestration)(champion, trained, *args)


def _partitioned(cfg: PipelineConfig, run: RunInfo) -> tuple[
        PartitionedDataset, ValidationReport, LeakageReport, TrainedModel, Evaluation,
        ChampionComparison, ModelVersion, Challenge]:
    """ingest → validate → featurize → train → evaluate → register on the Dask engine
    (``data.engine: dask``), inside the flow run's :func:`dask_session`; the challenge
    is what a promotion decides again with if the champion moves meanwhile.

    The steps pass paths and fitted objects, never frames. The leakage check fits its
    one-feature models on a seeded sample of the training split drawn across partitions.
    """
    orch = cfg.orchestration
    target = TargetSpec.from_data(cfg.data)
    model_spec = ModelSpec.from_config(cfg.model)
    data = configure(ingest_partitioned, "ingest", orch)(cfg.data, cfg.paths, cfg.storage,
                                                         cfg.seed)
    report = configure(validate_partitioned, "validate", orch)(data, cfg.validate, target,
                                                               cfg.storage)
    features = configure(featurize_partitioned, "featurize", orch)(
        data, cfg.features, target, cfg.seed, cfg.storage)
    leakage = configure(check_leakage_partitioned, "validate", orch)(
        features, cfg.validate, cfg.seed, cfg.storage)
    publish_markdown(f"{cfg.register.model_name}-validation",
                     report.to_markdown() + "\n\n" + leakage.to_markdown(),
                     "Validation summary")
    trained = configure(train_partitioned, "train", orch)(features, model_spec, cfg.seed,
                                                          cfg.storage)
    evaluation = configure(evaluate_partitioned, "evaluate", orch)(trained, features,
                                                                   cfg.evaluate, cfg.storage)
    _stop_on_failed_gate(evaluation, cfg)
    comparison = _compare_with_champion(cfg, trained, evaluation, evaluate_champion_partitioned,
                                        features, cfg.evaluate, cfg.storage)
    version = configure(register_partitioned, "register", orch)(
        trained, evaluation, data, features, comparison, cfg.register, cfg.storage, run,
        cfg.seed)
    challenge = Challenge(version, evaluation, trained, features, cfg.evaluate, comparison,
                          cfg.storage)
    return data, report, leakage, trained, evaluation, comparison, version, challenge


def _promote(cfg: PipelineConfig, version: ModelVersion, evaluation: Evaluation,
             comparison: ChampionComparison, challenge: Challenge
             ) -> tuple[PromotionDecision, ChampionComparison]:
    """Decide, then apply the decision as a compare-and-set: if another run moved
    production since, decide again against it (on either engine). Returns the final
    decision and the comparison it was made with."""
    decision = decide_promotion(version, evaluation, comparison, cfg.promote)
    outcome = configure(promote, "promote", cfg.orchestration)(
        decision, cfg.register.model_name, cfg.promote, cfg.register, cfg.storage, challenge)
    return outcome.decision, (outcome.comparison if outcome.comparison is not None
                              else comparison)


@flow(name="training")
def training(overrides: list[str] | None = None, config_name: str = "pipeline",
             config_dir: str | None = None, refresh_cache: bool = False,
             triggered_by: str | None = None) -> dict[str, Any]:
    """Train, evaluate, register and (maybe) promote a model.

    Args:
        overrides: Hydra overrides, e.g. ``["model=random_forest", "model.n_estimators=300"]``.
        config_name: Primary config in the config dir.
        config_dir: The project's ``conf/`` directory (default: see
            :func:`prefab_mlops.config.default_config_dir`).
        refresh_cache: Ignore cached task results and run every task afresh.
        triggered_by: Why this run started (e.g. the drift event that triggered a
            retraining); recorded with the registered version.

    Returns:
        A JSON-safe summary: registered version, metrics, gate, the final promotion
        decision and the champion comparison it was made with (``comparison``: on how
        many test rows both models were scored, how many were excluded as the
        champion's training rows, and both models' metrics on those rows;
        ``champion_metrics`` repeats the champion's). If another run moved the
        champion before the promotion, both are the ones made against the new champion.
        ``validation.warnings`` lists values beyond the expected ones (conf/validate
        ``expected_*``); ``leakage`` the leakage alarm before training and, on a
        suspiciously perfect test score, after evaluation, with the fix.
    """
    log = get_logger()
    loaded = load_and_log(overrides, config_name, config_dir)
    cfg: PipelineConfig = loaded.typed
    if triggered_by:
        log.info("Triggered by: %s", triggered_by)
    target = TargetSpec.from_data(cfg.data)
    model_spec = ModelSpec.from_config(cfg.model)
    check_estimator_fits(model_spec.instantiate(), target.problem_type, model_spec.target)
    steps = project_steps(loaded)
    orch = cfg.orchestration
    runner = None
    if cfg.search.strategy != "none":
        check_candidates(model_spec, params_to_check(cfg.search), target.problem_type)
        runner = task_runner(orch)  # a missing [dask] extra fails here, before any work

    def heavy(t: Any, family: str, **kw: Any) -> Any:
        return configure(t, family, orch, cache=True, refresh=refresh_cache, **kw)

    flow_run_id, flow_run_name = run_ids()
    run = RunInfo(config=loaded.resolved, project_root=cfg.paths.root,
                  flow_run_id=flow_run_id, flow_run_name=flow_run_name,
                  triggered_by=triggered_by)
    data: Dataset | PartitionedDataset
    searched: SearchResult | None = None
    if cfg.data.engine == "dask":
        if steps.names():
            raise ConfigError(
                f"data.engine is 'dask' but the project has steps {steps.names()}; "
                "they take a pandas data set.",
                fix="Leave conf/steps empty with data.engine=dask, or use data.engine=pandas.")
        with dask_session(cfg.data.dask):
            data, report, leakage, trained, evaluation, comparison, version, challenge = \
                _partitioned(cfg, run)
            # deciding again against a moved champion scores it on the cluster
            decision, comparison = _promote(cfg, version, evaluation, comparison, challenge)
    else:
        data = heavy(ingest, "ingest")(cfg.data, cfg.paths, cfg.storage, cfg.seed)
        data = run_after_ingest(data, steps, orch, refresh_cache)
        report = heavy(validate, "validate")(data, cfg.validate, target)
        features = heavy(featurize, "featurize")(data, cfg.features, target, cfg.seed)
        leakage = heavy(check_leakage, "validate")(features, cfg.validate, cfg.seed)
        publish_markdown(f"{cfg.register.model_name}-validation",
                         report.to_markdown() + "\n\n" + leakage.to_markdown(),
                         "Validation summary")
        if runner is None:
            trained = heavy(train, "train")(features, model_spec, cfg.seed)
        else:
            staged = configure(stage_features, "featurize", orch)(
                features, str(Path(cfg.paths.cache_dir) / "search"))
            searched = candidate_search.with_options(task_runner=runner)(
                staged, model_spec, cfg.search, orch, cfg.seed, cfg.evaluate.primary_metric,
                cfg.evaluate.threshold, cfg.register.model_name, refresh_cache)
            trained = searched.best.trained
        evaluation = heavy(evaluate, "evaluate")(trained, features, cfg.evaluate)
        evaluation = run_after_evaluate(Candidate(trained, features, evaluation), steps, orch,
                                        refresh_cache)
        _stop_on_failed_gate(evaluation, cfg)
        comparison = _compare_with_champion(cfg, trained, evaluation, evaluate_champion,
                                            features, cfg.evaluate)
        version = configure(register, "register", orch)(
            trained, evaluation, data, features, comparison, cfg.register, cfg.storage, run,
            cfg.seed)
        challenge = Challenge(version, evaluation, trained, features, cfg.evaluate, comparison)
        decision, comparison = _promote(cfg, version, evaluation, comparison, challenge)

    summary: dict[str, Any] = {
        "model_name": cfg.register.model_name, "version": version.version,
        "estimator": trained.estimator, "alias": cfg.promote.alias,
        "production_version": decision.challenger_version if decision.promote
        else decision.champion_version,
        "metrics": evaluation.metrics, "gate": evaluation.gate.as_record().to_json(),
        "champion_metrics": comparison.champion, "comparison": comparison.as_dict(),
        "decision": decision.as_dict(),
        "data": {"source": data.source, "rows": data.rows, "fingerprint": data.fingerprint,
                 "snapshot_uri": data.snapshot_uri},
        "validation": {"passed": report.passed, "violations": len(report.violations),
                       "warnings": report.warnings},
        "leakage": leakage_summary(leakage, evaluation.leakage),
        "steps": steps.names(),
        "search": None if searched is None else searched.summary(),
        "flow_run_id": flow_run_id, "triggered_by": triggered_by,
    }
    publish_table(f"{cfg.register.model_name}-metrics",
                  [{"metric": k, "value": v} for k, v in evaluation.metrics.items()],
                  "Test-split metrics")
    publish_markdown(f"{cfg.register.model_name}-training-summary", _summary_markdown(summary),
                     "Training summary", images=evaluation.plots)

    if cfg.tracking.mode != "disabled":
        group = None
        if searched is not None:
            group = f"search-{flow_run_name or cfg.register.model_name}"
            trial_records = [RunRecord(
                name=f"{group}-trial-{r.number}", config={**loaded.resolved, "trial": r.params},
                metrics={} if r.score is None else {f"valid_{searched.metric}": r.score},
                summary={"status": r.status, "params": r.params, "error": r.error,
                         "best_iteration": r.best_iteration, "seconds": r.seconds},
                plots={}, job_type="search-trial", group=group) for r in searched.records]
            state = configure(track_search, "track", orch)(trial_records, cfg.tracking,
                                                          return_state=True)
            if not state.is_completed():
                log.warning("W&B tracking of the search failed and was skipped: %s",
                            state.message)
        aliases = [*cfg.register.aliases, f"v{version.version}"]
        if decision.promote:
            aliases.append(cfg.promote.alias)
        record = RunRecord(
            name=flow_run_name or f"{cfg.register.model_name}-v{version.version}",
            config=loaded.resolved, metrics=evaluation.metrics,
            summary={"version": version.version, "promoted": decision.promote,
                     "decision": decision.reason, "data_fingerprint": data.fingerprint,
                     "champion_compared_rows": comparison.compared_rows,
                     "champion_excluded_rows": comparison.excluded_rows},
            plots=evaluation.plots, model_name=cfg.register.model_name,
            model_metadata={"version": version.version, "sha256": version.model_sha256,
                            "fingerprint": version.fingerprint},
            aliases=aliases, group=group)
        state = configure(track, "track", orch)(record, cfg.tracking, version, cfg.register,
                                                 cfg.storage, return_state=True)
        if state.is_completed():
            tracked = state.result()
            summary["tracking"] = {"mode": cfg.tracking.mode, "run_dir": tracked.run_dir,
                                   "artifact": tracked.artifact}
        else:
            log.warning("W&B tracking failed and was skipped: %s", state.message)
            summary["tracking"] = {"mode": cfg.tracking.mode, "error": state.message}
    return summary


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable end-of-run report."""
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in s["metrics"].items() if k != "n_test")
    dec = s["decision"]
    return (f"Registered {s['model_name']} v{s['version']} ({s['estimator']})\n"
            f"  metrics: {metrics}\n"
            f"  quality gate: {s['gate']['summary']}\n"
            f"  leakage check: {leakage_text(s['leakage'])}\n"
            f"  champion comparison: {_comparison_text(s['comparison'])}\n"
            f"  promotion: {'PROMOTED to ' + s['alias'] if dec['promote'] else 'not promoted'}"
            f" - {dec['reason']}\n"
            f"  {_production_text(s)}")


def run(args: argparse.Namespace, loaded: LoadedConfig | None = None) -> int:
    """Run the flow from parsed command-line arguments (see :mod:`prefab_mlops.flows.cli`),
    with the config ``loaded`` from them if the caller has it already."""
    return run_cli(args, lambda: training(
        overrides=args.overrides, config_name=args.config_name, config_dir=args.config_dir,
        refresh_cache=args.refresh_cache), format_summary, check=project_steps, loaded=loaded)


def main(argv: list[str] | None = None) -> int:
    """``python -m prefab_mlops.flows.training``: the same as ``prefab train``."""
    from prefab_mlops.flows.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
