"""Fixtures shared by the task-level tests."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from prefab_mlops.config import PipelineConfig, load_config

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory):
    """``config(*overrides)`` -> the typed config, composed once per override set.

    Hydra composition costs about 0.2 s; these tasks never touch ``paths``. Each call
    returns a deep copy, so a test cannot leak changes into another.
    """
    root = tmp_path_factory.mktemp("root")
    cache: dict[tuple[str, ...], PipelineConfig] = {}

    def _config(*overrides: str) -> PipelineConfig:
        if overrides not in cache:
            cache[overrides] = load_config([f"paths.root={root}", *overrides],
                                           config_dir=CONF).typed
        return copy.deepcopy(cache[overrides])

    return _config
