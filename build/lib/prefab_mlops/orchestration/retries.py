"""Retry policy: retry transient failures only.

Used as ``retry_condition_fn`` on every task that has retries, so a network blip
is retried with the backoff set in ``conf/orchestration`` while bad data or bad
config fails at once.
"""

from __future__ import annotations

import socket
from typing import Any

from prefab_mlops.core.errors import PrefabError, TransientError


def is_transient(exc: BaseException | None) -> bool:
    """True if ``exc`` may go away on retry.

    Transient: :class:`TransientError`, ``ConnectionError``, ``TimeoutError`` and
    socket errors. Every other :class:`PrefabError` (bad data, config, registry
    integrity) and every other exception is not.
    """
    if exc is None:
        return False
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, PrefabError):
        return False
    return isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, socket.gaierror))


def _exception_of(state: Any) -> BaseException | None:
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return data
    try:
        result = state.result(raise_on_failure=False)
    except Exception as exc:  # noqa: BLE001 - the stored exception itself
        return exc
    return result if isinstance(result, BaseException) else None


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the failure is transient."""
    return is_transient(_exception_of(state))
