"""The project's flows end to end on its own data, inside Prefect's test harness.

A small sample of the configured data set (``data.sample_rows``) goes through
training (ingest → validate → featurize → train → evaluate → register → promote, past
the default quality gate), then batch scoring with the promoted model; everything is
written under ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from prefab_mlops.config import load_config
from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.storage import LocalObjectStore
from prefab_mlops.flows.batch_inference import batch_inference
from prefab_mlops.flows.training import training

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

CONF = Path(__file__).resolve().parents[1] / "conf"
SAMPLE_ROWS = 5000


def small(root: Path) -> list[str]:
    """Overrides for a quick run: a sample, no tracking, local storage, outputs in root."""
    cfg = load_config([f"paths.root={root}", "storage=local"], config_dir=CONF).typed
    overrides = [f"paths.root={root}", "storage=local", "tracking=disabled",
                 f"data.sample_rows={SAMPLE_ROWS}"]
    if "n_estimators" in cfg.model:
        overrides.append(f"model.n_estimators={min(int(cfg.model['n_estimators']), 100)}")
    return overrides


class TestTrainingRun:
    def test_trains_registers_promotes_and_scores(self, tmp_path: Path) -> None:
        overrides = small(tmp_path)
        summary = training(overrides=overrides, config_dir=str(CONF))
        cfg = load_config(overrides, config_dir=CONF).typed
        name = cfg.register.model_name

        assert summary["model_name"] == name
        assert summary["version"] == 1
        assert summary["validation"]["passed"] is True
        assert 0 < summary["data"]["rows"] <= SAMPLE_ROWS
        # the default quality gate: the model beats a naive baseline fitted on the
        # training split (evaluate.baseline), whatever the data
        assert summary["gate"]["passed"] is True, summary["gate"]["summary"]
        assert summary["decision"]["promote"] is True
        primary = cfg.evaluate.primary_metric
        assert primary in summary["metrics"]
        assert pd.notna(summary["metrics"][primary])

        registry = ModelRegistry(LocalObjectStore(tmp_path / "registry"))
        production = registry.alias(name, "production")
        assert production is not None and production.version == 1

        scored = batch_inference(overrides=overrides, config_dir=str(CONF))
        assert scored["model_version"] == 1
        predictions = pd.read_parquet(scored["output_uri"])
        assert 0 < len(predictions) == scored["rows"] <= SAMPLE_ROWS
        assert predictions["prediction"].notna().all()
        assert set(cfg.inference.passthrough) <= set(predictions.columns)
