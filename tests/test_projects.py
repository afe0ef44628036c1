"""scripts/projects.py: a throw-away project composes and carries its local settings."""

from __future__ import annotations

from pathlib import Path

from prefab_mlops.config import load_config
from prefab_mlops.testing.projects import make_project


class TestMakeProject:
    def test_project_loads_with_its_overrides(self, tmp_path: Path) -> None:
        root = tmp_path / "proj"

        conf = make_project(root, overrides={"evaluate": {"plots": False}})

        assert conf == root / "conf"
        assert (root / "data").is_dir()
        cfg = load_config([f"paths.root={tmp_path}"], "pipeline", conf).typed
        assert cfg.data.uri == str(root / "data" / "flights.csv")
        assert cfg.tracking.mode == "disabled"
        assert cfg.model["n_estimators"] == 60
        assert cfg.evaluate.plots is False

    def test_overrides_replace_the_defaults(self, tmp_path: Path) -> None:
        data = tmp_path / "elsewhere" / "batch.csv"

        conf = make_project(tmp_path / "proj", data, {"model": {"n_estimators": 7}})

        cfg = load_config([f"paths.root={tmp_path}"], "pipeline", conf).typed
        assert cfg.data.uri == str(data)
        assert cfg.model["n_estimators"] == 7
        assert cfg.tracking.mode == "disabled"
        assert data.parent.is_dir()
