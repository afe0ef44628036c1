"""Track: log a flow run to Weights & Biases (config, metrics, plots, model artifact).

An I/O task with retries; the flow runs it so that a failure only warns. Only
network failures (:class:`~prefab_mlops.core.errors.TrackingTransientError`) are retried,
with the retries and backoff of ``orchestration.tasks.track``.
"""

from __future__ import annotations

from dataclasses import replace

from prefect import task

from prefab_mlops.config import RegisterConfig, TrackingConfig
from prefab_mlops.core.manifest import ModelVersion
from prefab_mlops.core.storage import StorageConfig
from prefab_mlops.orchestration.retries import retry_transient
from prefab_mlops.tasks.registry import open_registry
from prefab_mlops.tracking import RunRecord, TrackedRun, log_to_wandb


@task(name="track", retry_condition_fn=retry_transient)
def track(record: RunRecord, cfg: TrackingConfig, model: ModelVersion | None = None,
          registry: RegisterConfig | None = None,
          storage: StorageConfig | None = None) -> TrackedRun:
    """Send ``record`` to W&B as one run.

    Args:
        record: What to log.
        cfg: ``conf/tracking``: mode, project, entity, dir, init timeout.
        model: A registered version to log as the run's model artifact: its model
            file is read here (sha256-checked) from the registry that ``registry``
            and ``storage`` describe, and only when ``tracking.log_model`` is on.
        registry: ``conf/register`` (where ``model`` is registered).
        storage: ``conf/storage``.

    Returns:
        The W&B run id/dir and the logged model artifact.

    Raises:
        TrackingTransientError: W&B could not be reached (retried).
        TrackingError: W&B failed otherwise (not retried; the flow turns it into a
            warning).
    """
    if model is not None and cfg.log_model and cfg.mode != "disabled":
        if registry is None or storage is None:
            raise TypeError("track(model=...) needs the registry and storage configs too")
        record = replace(record, model_bytes=open_registry(registry, storage).model_bytes(model))
    return log_to_wandb(cfg, record)


@task(name="track-search", retry_condition_fn=retry_transient)
def track_search(records: list[RunRecord], cfg: TrackingConfig) -> list[TrackedRun]:
    """Send a search's trials to W&B, one run each (they share ``record.group``).

    Args:
        records: One record per trial (``job_type`` ``search-trial``).
        cfg: ``conf/tracking``.

    Returns:
        The W&B runs, in the order of ``records``.
    """
    return [log_to_wandb(cfg, record) for record in records]
