"""What every flow shares: config loading, run ids, the project's steps and the CLI runner.

``add_cli_arguments`` is :func:`prefab_mlops.flows.cli.add_cli_arguments`.

Public, so that a project's own flows (``templates/flow``) compose the same way.
No task logic here.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from prefect.context import FlowRunContext

from prefab_mlops.config import DataConfig, LoadedConfig, OrchestrationConfig, load_config
from prefab_mlops.core.errors import PrefabError
from prefab_mlops.flows.cli import add_cli_arguments, print_failure
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.orchestration.runtime import configure, in_process_run
from prefab_mlops.tasks.evaluate import Evaluation
from prefab_mlops.tasks.ingest import Dataset
from prefab_mlops.tasks.steps import (
    Candidate,
    Step,
    Steps,
    apply_check_step,
    apply_data_step,
    resolve_steps,
    with_checks,
)


def load_and_log(overrides: list[str] | None, config_name: str,
                 config_dir: str | None, extra: list[str] | None = None) -> LoadedConfig:
    """Load the config (with ``extra`` overrides appended) and log it resolved."""
    loaded = load_config([*(overrides or []), *(extra or [])], config_name, config_dir)
    get_logger().info("Resolved config (overrides %s):\n%s", list(loaded.overrides),
                      yaml.safe_dump(loaded.resolved, sort_keys=False))
    return loaded


def project_steps(loaded: LoadedConfig) -> Steps:
    """The project's steps (``conf/steps``), checked against their hooks before any work.

    Their modules are imported from the project (the directory holding ``conf/``) or the
    working directory, however the flow was started.
    """
    return resolve_steps(loaded.typed.steps, loaded.typed.orchestration.tasks,
                         (loaded.config_dir.parent, Path.cwd()))


def _step_task(task: Any, step: Step, orch: OrchestrationConfig, refresh: bool) -> Any:
    """``task`` with the step's orchestration family and caching, named after the step."""
    return configure(task, step.family, orch, cache=step.cache,
                     refresh=refresh).with_options(name=step.name)


def run_after_ingest(data: Dataset, steps: Steps, orch: OrchestrationConfig,
                     refresh: bool = False) -> Dataset:
    """Run the ``after_ingest`` steps on ``data`` in order, each as a Prefect task.

    Args:
        data: What ingest returned.
        steps: The project's steps (:func:`project_steps`).
        orch: ``conf/orchestration``: each step's family's retries and timeout.
        refresh: Ignore cached results of steps with ``cache: true``.

    Returns:
        The data set the last step returned (``data`` itself without steps).
    """
    for step in steps.after_ingest:
        data = _step_task(apply_data_step, step, orch, refresh)(data, step)
    return data


def run_after_evaluate(candidate: Candidate, steps: Steps, orch: OrchestrationConfig,
                       refresh: bool = False) -> Evaluation:
    """Run the ``after_evaluate`` checks, each as a Prefect task, and merge them.

    Args:
        candidate: The trained model, its splits and the stock evaluation.
        steps: The project's steps (:func:`project_steps`).
        orch: ``conf/orchestration``: each step's family's retries and timeout.
        refresh: Ignore cached results of steps with ``cache: true``.

    Returns:
        The candidate's evaluation with the checks' metrics and, in its gate, their
        failures (:func:`prefab_mlops.tasks.steps.with_checks`).
    """
    checks = [(step, _step_task(apply_check_step, step, orch, refresh)(candidate, step))
              for step in steps.after_evaluate]
    return with_checks(candidate.evaluation, checks)


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


class _NoTraceback(logging.Filter):
    """Drops the traceback of a log record, keeping its one-line message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


@contextmanager
def _short_failures(debug: bool) -> Iterator[None]:
    """Prefect logs every failing task and flow with its traceback; keep one line each."""
    if debug:
        yield
        return
    loggers = [logging.getLogger(n) for n in ("prefect.task_runs", "prefect.flow_runs",
                                               "prefect.engine", "prefect.flow_engine",
                                               "prefect.task_engine")]
    flt = _NoTraceback()
    for lg in loggers:
        lg.addFilter(flt)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(flt)


def run_cli(args: argparse.Namespace, start: Callable[[], dict[str, Any]],
            render: Callable[[dict[str, Any]], str],
            check: Callable[[LoadedConfig], object] | None = None,
            loaded: LoadedConfig | None = None) -> int:
    """Run a flow from its command line: check the config first, then run it in-process.

    The config is composed and type-checked (and given to ``check``, e.g.
    :func:`project_steps`) before Prefect starts a server or a flow run, so a bad
    override or a bad step fails at once with the valid options. A failure of ours
    (:class:`~prefab_mlops.core.errors.PrefabError`) ends with its cause and fix and no
    traceback unless ``--debug``; anything else is a bug and shows its traceback.

    Args:
        args: Parsed arguments (see :func:`add_cli_arguments`).
        start: Calls the flow and returns its summary.
        render: The human-readable summary (``--json`` prints the summary itself).
        check: More checks of the loaded config that need no Prefect.
        loaded: The config as the caller already loaded it from ``args`` (it is
            loaded here otherwise).

    Returns:
        The exit status: 0, or 2 for a failure with a named cause.
    """
    import json

    try:
        if loaded is None:
            loaded = load_config(args.overrides, args.config_name, args.config_dir)
        if check is not None:
            check(loaded)
        with in_process_run(), _short_failures(args.debug):
            summary = start()
    except PrefabError as exc:
        if args.debug:
            raise
        return print_failure(exc)
    print(json.dumps(summary, indent=2, default=str) if args.json else render(summary))
    return 0


__all__ = ["add_cli_arguments", "jsonable", "load_and_log", "project_steps",
           "run_after_evaluate", "run_after_ingest", "run_cli", "run_ids", "unlabelled"]
