"""Helpers shared by the flows (config loading and run ids); no task logic here."""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml
from prefect.context import FlowRunContext

from prefab_mlops.config import DataConfig, LoadedConfig, load_config
from prefab_mlops.orchestration.logs import get_logger


def load_and_log(overrides: list[str] | None, config_name: str,
                 config_dir: str | None, extra: list[str] | None = None) -> LoadedConfig:
    """Load the config (with ``extra`` overrides appended) and log it resolved."""
    loaded = load_config([*(overrides or []), *(extra or [])], config_name, config_dir)
    get_logger().info("Resolved config (overrides %s):\n%s", list(loaded.overrides),
                      yaml.safe_dump(loaded.resolved, sort_keys=False))
    return loaded


def run_ids() -> tuple[str | None, str | None]:
    ctx = FlowRunContext.get()
    if ctx and ctx.flow_run:
        return str(ctx.flow_run.id), ctx.flow_run.name
    return None, None


def unlabelled(data: DataConfig) -> DataConfig:
    """The data config for batches without the target: no target derivation or selection."""
    columns = None if data.columns is None else [
        c for c in data.columns if c != data.target and c not in data.derive]
    return dataclasses.replace(data, dropna=[], derive={}, columns=columns)


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        return obj.item()
    return obj
