"""The Prefect task runner that ``orchestration.task_runner`` names.

``thread`` keeps mapped tasks in the flow's process (Prefect's ``ThreadPoolTaskRunner``,
``orchestration.thread_workers`` at a time). ``dask`` hands them to prefect-dask's
``DaskTaskRunner`` on the cluster ``orchestration.dask`` describes: a running
scheduler (``address``), a cluster class started per flow run (``cluster_class`` with
``cluster_kwargs``, e.g. dask-kubernetes' ``KubeCluster``), or a ``LocalCluster`` of
worker processes (a configured ``address`` is where the tasks run even when this
process already holds another Dask client: :mod:`.dask_runner`). prefect-dask is
imported only here and only for ``dask``.

Flows take the runner with ``flow.with_options(task_runner=task_runner(cfg))``, so
the same flow and config run either way.
"""

from __future__ import annotations

from typing import Any

from prefab_mlops.config import OrchestrationConfig
from prefab_mlops.core.errors import PrefabError

DASK_EXTRA = "prefab-mlops[dask]"


class DaskNotInstalled(PrefabError):
    """``orchestration.task_runner`` is ``dask`` but prefect-dask is not installed."""


def task_runner(cfg: OrchestrationConfig) -> Any:
    """A new, unstarted Prefect task runner for ``cfg`` (``conf/orchestration``).

    Raises:
        DaskNotInstalled: ``task_runner: dask`` without the ``[dask]`` extra.
    """
    if cfg.task_runner != "dask":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=cfg.thread_workers)
    try:
        from prefect_dask import DaskTaskRunner

        from prefab_mlops.orchestration.dask_runner import AddressedDaskTaskRunner
    except ImportError as exc:
        raise DaskNotInstalled(
            f"orchestration.task_runner is 'dask' but prefect-dask cannot be imported ({exc}).",
            fix=f"pip install '{DASK_EXTRA}' where the flow runs and on every Dask worker, "
            "or set orchestration.task_runner=thread.") from None
    dask = cfg.dask
    if dask.address:
        return AddressedDaskTaskRunner(address=dask.address)
    if dask.cluster_class:
        return DaskTaskRunner(cluster_class=dask.cluster_class,
                              cluster_kwargs=dict(dask.cluster_kwargs))
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={
        "n_workers": dask.n_workers, "threads_per_worker": dask.threads_per_worker,
        "memory_limit": dask.memory_limit, "processes": True, "host": "127.0.0.1",
        **dict(dask.cluster_kwargs)})


def parallel_slots(cfg: OrchestrationConfig) -> int:
    """How many mapped tasks the runner runs at a time (as configured, not measured)."""
    if cfg.task_runner == "dask":
        return cfg.dask.n_workers * cfg.dask.threads_per_worker
    return cfg.thread_workers


def task_threads(cfg: OrchestrationConfig) -> int | None:
    """The threads one mapped model fit should use: a Dask worker's threads, or None
    (the model's own ``n_jobs``) on the thread runner."""
    return cfg.dask.threads_per_worker if cfg.task_runner == "dask" else None
