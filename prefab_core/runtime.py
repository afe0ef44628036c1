"""Apply ``conf/orchestration`` to Prefect tasks (retries, timeouts, caching).

Flows call :func:`configure` on each task instead of hard-coding options, so the
same task code runs with different retry/caching policies per project.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect.cache_policies import NO_CACHE

from prefab_core.caching import LineagePolicy
from prefab_core.config import OrchestrationConfig, TaskRuntime


def result_storage(value: str) -> Any:
    """A directory path, or a saved block slug given as ``block:<type>/<name>``."""
    if value.startswith("block:"):
        return value[len("block:"):]
    path = Path(value).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def configure(task: Any, family: str, cfg: OrchestrationConfig, *, cache: bool = False,
              extra_key: Callable[[dict[str, Any]], str] | None = None,
              refresh: bool = False) -> Any:
    """``task.with_options(...)`` from ``conf/orchestration``.

    Args:
        task: A Prefect task.
        family: Key in ``orchestration.tasks`` (``ingest``, ``register``...).
        cfg: ``conf/orchestration``.
        cache: Whether this task's result is cached across runs (heavy, pure tasks).
        extra_key: Extra cache-key part computed from the inputs (see LineagePolicy).
        refresh: Force a fresh run even if a cached result exists.
    """
    rt: TaskRuntime = cfg.tasks.get(family, TaskRuntime())
    opts: dict[str, Any] = {
        "retries": rt.retries,
        "retry_delay_seconds": list(rt.retry_delay_seconds) or 0,
        "timeout_seconds": rt.timeout_seconds,
    }
    if cache and cfg.cache.enabled:
        storage = result_storage(cfg.cache.result_storage)
        policy = LineagePolicy(extra=extra_key)
        if isinstance(storage, Path):
            # Cache records (metadata) in their own directory: result files then hold the
            # raw pickle instead of base64 inside JSON, which loads several times faster
            # on a cache hit (about 1 s -> 0.1 s for the 43 MB flights data set).
            keys = storage / "_records"
            keys.mkdir(parents=True, exist_ok=True)
            policy = policy.configure(key_storage=keys)
        opts.update(cache_policy=policy, persist_result=True, result_storage=storage,
                    refresh_cache=bool(refresh or cfg.cache.refresh))
    else:
        opts.update(cache_policy=NO_CACHE, persist_result=False)
    return task.with_options(**opts)
