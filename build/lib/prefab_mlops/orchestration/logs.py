"""Logging that works inside and outside Prefect runs."""

from __future__ import annotations

import logging


def get_logger(name: str = "prefab") -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a flow/task run, a plain logger otherwise.

    Lets task bodies log the same way whether they run in a flow or through
    ``task.fn(...)`` in a unit test (which must not need a Prefect server).
    """
    try:
        from prefect.context import FlowRunContext, TaskRunContext
        from prefect.logging import get_run_logger

        if TaskRunContext.get() or FlowRunContext.get():
            return get_run_logger()
    except Exception:  # noqa: BLE001 - fall back to stdlib logging
        pass
    return logging.getLogger(name)
