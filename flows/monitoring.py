"""The monitoring flow: ingest a current batch → validate → detect drift → emit the event.

Run it from the command line::

    python -m prefab_mlops.flows.monitoring data.window.newest=month  # the newest month
    python -m prefab_mlops.flows.monitoring --batch s3://bucket/batch.parquet
    python -m prefab_mlops.flows.monitoring --batch logs/requests.parquet monitor.labels=false

or from the ``monitor`` deployment in ``prefect.yaml``. When the batch drifts it
emits ``prefab.model.drift-detected``, which the ``retrain-on-drift`` deployment
is triggered by.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from prefect import flow

from prefab_mlops.config import LoadedConfig, PipelineConfig, TargetSpec
from prefab_mlops.core.errors import RegistryError
from prefab_mlops.flows.common import (
    jsonable,
    load_and_log,
    run_cli,
    run_ids,
    unlabelled,
)
from prefab_mlops.orchestration.artifacts import publish_link, publish_markdown
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.orchestration.runtime import configure
from prefab_mlops.tasks.ingest import ingest
from prefab_mlops.tasks.monitor import (
    detect_drift,
    emit_drift_event,
    load_reference,
    record_drift_check,
    report_link,
    write_report,
)
from prefab_mlops.tasks.registry import load_production
from prefab_mlops.tasks.track import track
from prefab_mlops.tasks.validate import validate, validate_batch
from prefab_mlops.tracking import RunRecord


@flow(name="monitoring")
def monitoring(overrides: list[str] | None = None, batch_uri: str | None = None,
               config_name: str = "pipeline", config_dir: str | None = None) -> dict[str, Any]:
    """Check a current batch for drift against the production model.

    Args:
        overrides: Hydra overrides (e.g. ``["data.window.newest=month"]``).
        batch_uri: The batch to check (overrides ``data.uri``).
        config_name: Primary config.
        config_dir: The project's ``conf/`` directory.

    Returns:
        A JSON-safe summary: drift decision, drifted columns, report location, the id
        of the emitted drift event (if any) and ``validation_warnings``: columns whose
        values go beyond the expected ones recorded in conf/validate (``expected_*``).

    Raises:
        RegistryError: there is no production model to monitor yet.
        DataValidationError: the batch does not match the model's schema (no event
            is emitted and nothing else changes).
    """
    log = get_logger()
    loaded = load_and_log(overrides, config_name, config_dir,
                          [f"data.uri={batch_uri}"] if batch_uri else None)
    cfg: PipelineConfig = loaded.typed
    orch, mon = cfg.orchestration, cfg.monitor
    name = cfg.register.model_name
    target = TargetSpec.from_data(cfg.data)
    production = configure(load_production, "register", orch)(cfg.register, cfg.storage,
                                                              cfg.promote.alias)
    if production is None:
        raise RegistryError(f"Model '{name}' has no '{cfg.promote.alias}' version yet, so "
                            "there is nothing to monitor.",
                            fix="Train and promote a model first (make train), then monitor.")
    manifest = production.version
    data_cfg = cfg.data if mon.labels else unlabelled(cfg.data)
    batch = configure(ingest, "ingest", orch, cache=True)(
        data_cfg, cfg.paths, cfg.storage, cfg.seed)
    checked = configure(validate, "validate", orch)(
        batch, dataclasses.replace(cfg.validate, on_failure="fail"), target, mon.labels)
    schema = manifest.features.input_schema
    # columns the model's training data had (e.g. the target) are expected too
    allowed = [*manifest.data.columns, target.name]
    configure(validate_batch, "validate", orch)(batch.frame, schema, allowed, batch.source)
    reference = configure(load_reference, "reference", orch)(manifest, cfg.register,
                                                             cfg.storage)
    report = configure(detect_drift, "monitor", orch)(
        batch.frame, reference, production.model, schema, mon, target, name,
        manifest.version, cfg.seed, manifest.features.classes)
    report_uri = configure(write_report, "report", orch)(report, mon.report_dir, cfg.storage)
    beyond = ("\n\n**Beyond the expected values** (conf/validate `expected_*`, warnings): "
              + "; ".join(f"{w['column']}: {w['rule']}, {w['count']} row(s)"
                          for w in checked.warnings)) if checked.warnings else ""
    publish_markdown(f"{name}-drift", report.to_markdown(report_uri) + beyond, "Drift summary",
                     images=report.plots)
    publish_link(f"{name}-drift-report", report_link(report_uri), "Evidently drift report")

    event_id = None
    if report.dataset_drift and mon.emit_event:
        event_id = configure(emit_drift_event, "events", orch)(report, mon.event, report_uri,
                                                               batch.source)
    configure(record_drift_check, "events", orch)(report, report_uri, event_id, batch.source,
                                                  cfg.register, cfg.storage)
    summary = jsonable({**report.summary(), "report_uri": report_uri, "event_id": event_id,
                        "event": mon.event if event_id else None, "batch": batch.source,
                        "validation_warnings": checked.warnings,
                        "flow_run_id": run_ids()[0]})

    if cfg.tracking.mode != "disabled":
        metrics = {"drift/share": report.drift_share,
                   "drift/dataset_drift": float(report.dataset_drift),
                   **{f"drift/{c}": v["score"] for c, v in report.columns.items()},
                   **{f"quality/{k}": v for k, v in (report.quality or {}).items()}}
        record = RunRecord(name=run_ids()[1] or f"{name}-monitor", config=loaded.resolved,
                           metrics=metrics, summary={"model_version": manifest.version,
                                                     "report_uri": report_uri},
                           plots=report.plots, job_type="monitor")
        state = configure(track, "track", orch)(record, cfg.tracking, return_state=True)
        if not state.is_completed():
            log.warning("W&B tracking failed and was skipped: %s", state.message)
    return summary


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable result of a drift check."""
    return (f"{s['model_name']} v{s['model_version']}: dataset drift "
            f"{'YES' if s['dataset_drift'] else 'no'} ({len(s['drifted_columns'])} of "
            f"{len(s['columns'])} columns: {s['drifted_columns']}); report {s['report_uri']}"
            + (f"; emitted {s['event']}" if s["event_id"] else ""))


def run(args: argparse.Namespace, loaded: LoadedConfig | None = None) -> int:
    """Run the flow from parsed command-line arguments (see :mod:`prefab_mlops.flows.cli`),
    with the config ``loaded`` from them if the caller has it already."""
    return run_cli(args, lambda: monitoring(
        overrides=args.overrides, batch_uri=args.batch, config_name=args.config_name,
        config_dir=args.config_dir), format_summary, loaded=loaded)


def main(argv: list[str] | None = None) -> int:
    """``python -m prefab_mlops.flows.monitoring``: the same as ``prefab monitor``."""
    from prefab_mlops.flows.cli import main as cli_main

    return cli_main(["monitor", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
