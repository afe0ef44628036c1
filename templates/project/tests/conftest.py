"""Shared fixtures: an isolated environment and Prefect's test harness.

* Every test session gets its own ``PREFECT_HOME``, telemetry off, W&B offline:
  nothing leaves the machine and nothing is written outside ``tmp_path``.
* ``prefect_harness`` enters Prefect's test harness (a temporary API server) once.
* ``load`` composes this project's config with every output under ``tmp_path``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefab_mlops.testing.env import offline_environment

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with offline_environment(tmp_path_factory.mktemp("prefect-home")):
        yield


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Prefect's test harness (a temporary API server) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture()
def load(tmp_path: Path) -> Callable[..., object]:
    """Compose this project's config with outputs redirected into ``tmp_path``."""
    from prefab_mlops.config import load_config

    def _load(*overrides: str):
        return load_config([f"paths.root={tmp_path}", *overrides], config_dir=CONF)

    return _load
