"""Track: log a flow run to Weights & Biases (config, metrics, plots, model artifact).

An I/O task with retries; the flow runs it so that a failure only warns. Only
network failures (:class:`~prefab_mlops.core.errors.TrackingTransientError`) are retried,
with the retries and backoff of ``orchestration.tasks.track``.
"""

from __future__ import annotations

from prefect import task

from prefab_mlops.config import TrackingConfig
from prefab_mlops.orchestration.retries import retry_transient
from prefab_mlops.tracking import RunRecord, TrackedRun, log_to_wandb


@task(name="track", retry_condition_fn=retry_transient)
def track(record: RunRecord, cfg: TrackingConfig) -> TrackedRun:
    """Send ``record`` to W&B as one run.

    Args:
        record: What to log.
        cfg: ``conf/tracking``: mode, project, entity, dir, init timeout.

    Returns:
        The W&B run id/dir and the logged model artifact.

    Raises:
        TrackingTransientError: W&B could not be reached (retried).
        TrackingError: W&B failed otherwise (not retried; the flow turns it into a
            warning).
    """
    return log_to_wandb(cfg, record)
