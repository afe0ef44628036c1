"""An offline, isolated process environment for a test session.

Used by this repository's tests and by every generated project's ``tests/conftest.py``,
so the rules of a test environment have one home.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefab_mlops.core.environ import temporary_environ

#: Set for the session: a Prefect home of its own, no telemetry, W&B offline and quiet.
OFFLINE = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_TELEMETRY_ENABLED": "false",
    "PREFAB_WANDB_MODE": "offline",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    # a temporary server on a loaded 2-core machine can take longer than Prefect's 20 s
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}
#: Removed for the session: a real server or key, or another project's config, never leaks in.
DROPPED = ("PREFECT_API_URL", "WANDB_API_KEY", "PREFAB_CONFIG_DIR", "PREFAB_PROJECT_ROOT")


@contextmanager
def offline_environment(prefect_home: Path) -> Iterator[None]:
    """Set :data:`OFFLINE` (with ``PREFECT_HOME=prefect_home``), drop :data:`DROPPED`,
    and restore every variable on exit.

    Example:
        >>> with offline_environment(tmp_path / "prefect-home"):
        ...     ...  # flows here use an ephemeral server of their own, W&B offline
    """
    with temporary_environ({"PREFECT_HOME": str(prefect_home), **OFFLINE}, DROPPED):
        yield
