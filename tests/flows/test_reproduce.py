"""``prefab reproduce``: a registered version retrained from its record (data snapshot,
resolved config) is byte-identical for seeded XGBoost and random forest, and the
project's registry is left alone; when it differs, the report names the input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from prefab_mlops.core.provenance import GitInfo
from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.storage import LocalObjectStore
from prefab_mlops.flows.reproduce import differences, reproduce
from prefab_mlops.flows.training import training

pytestmark = pytest.mark.usefixtures("prefect_harness")

CONF = str(Path(__file__).resolve().parents[2] / "conf")
FAST = ["data.sample_rows=8000", "tracking=disabled"]


@pytest.mark.parametrize("model", ["xgboost", "random_forest"])
def test_seeded_models_reproduce_byte_identical(model: str, tmp_path: Path) -> None:
    overrides = [f"paths.root={tmp_path}", f"model={model}", "model.n_estimators=30", *FAST]
    s = training(overrides=overrides, config_dir=CONF)
    registry_dir = tmp_path / "registry"
    before = sorted((p.relative_to(registry_dir), p.read_bytes())
                    for p in registry_dir.rglob("*") if p.is_file())

    result = reproduce(s["model_name"], s["version"], overrides, CONF)

    assert result.identical, result.render()
    assert result.reproduced_sha256 == result.recorded_sha256
    assert "reproduced byte-identical" in result.render()
    after = sorted((p.relative_to(registry_dir), p.read_bytes())
                   for p in registry_dir.rglob("*") if p.is_file())
    assert after == before  # nothing written to the project's registry


def test_the_report_names_the_inputs_that_differ(tmp_path: Path) -> None:
    overrides = [f"paths.root={tmp_path}", "model=random_forest", "model.n_estimators=5",
                 *FAST]
    s = training(overrides=overrides, config_dir=CONF)
    mv = ModelRegistry(LocalObjectStore(tmp_path / "registry")).get_version(
        s["model_name"], s["version"])
    assert differences(mv, mv, str(tmp_path)) == {}
    old = dataclasses.replace(
        mv, packages={**mv.packages, "scikit-learn": "0.0.1"},
        git=GitInfo(commit="0" * 40, branch="main", dirty=True),
        params={**mv.params, "n_estimators": 7})
    found = differences(old, mv, str(tmp_path))
    assert set(found) == {"packages", "code", "config"}
    assert any("scikit-learn: recorded 0.0.1" in d for d in found["packages"])
    assert any("uncommitted changes" in d for d in found["code"])
    assert any("n_estimators" in d for d in found["config"])
