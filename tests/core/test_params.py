"""prefab_mlops/scaffold/params.py: a task's config group is typed by the task's own signature."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefab_mlops.core.errors import ConfigError
from prefab_mlops.scaffold.params import bind_params, load_params


def clip(frame: object, columns: list[str] | None = None, low: float = 0.0, high: float = 1.0,
         *, label: str = "x") -> object:
    return frame


def needs(frame: object, threshold: int) -> object:
    return frame


@pytest.fixture()
def conf(tmp_path: Path) -> Path:
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "default.yaml").write_text("low: 0.1\nhigh: 0.9\ncolumns: [a, b]\n")
    (tmp_path / "clip" / "wide.yaml").write_text("defaults:\n  - default\n  - _self_\nhigh: 1\n")
    return tmp_path


class TestLoadParams:
    def test_loads_a_group_option(self, conf: Path) -> None:
        assert load_params("clip", config_dir=conf) == {"low": 0.1, "high": 0.9,
                                                        "columns": ["a", "b"]}

    def test_option_with_defaults_and_overrides(self, conf: Path) -> None:
        params = load_params("clip", "wide", config_dir=conf, overrides=["low=0.2", "+label=y"])
        assert params == {"low": 0.2, "high": 1, "columns": ["a", "b"], "label": "y"}

    def test_missing_option_lists_the_options(self, conf: Path) -> None:
        with pytest.raises(ConfigError, match=r"options: \['default', 'wide'\]"):
            load_params("clip", "narrow", config_dir=conf)

    def test_unknown_override_is_refused(self, conf: Path) -> None:
        with pytest.raises(ConfigError, match="lo"):
            load_params("clip", config_dir=conf, overrides=["lo=0.2"])


class TestBindParams:
    def test_fitting_params_pass_through(self) -> None:
        params = {"columns": None, "low": 0, "high": 0.5, "label": "z"}
        assert bind_params(clip, params, "conf/clip/default.yaml") == params

    def test_every_problem_is_listed(self) -> None:
        with pytest.raises(ConfigError) as err:
            bind_params(clip, {"lo": 0.1, "high": "top", "columns": "a"}, "conf/clip/x.yaml")
        msg = str(err.value)
        assert "conf/clip/x.yaml" in msg and "test_params.clip" in msg
        assert "unknown key 'lo'" in msg
        assert "'high' is 'top'" in msg
        assert "'columns' is 'a'" in msg

    def test_missing_required_and_bool_for_int(self) -> None:
        with pytest.raises(ConfigError, match="missing required key 'threshold'"):
            bind_params(needs, {}, "conf/needs/default.yaml")
        with pytest.raises(ConfigError, match="'threshold' is True"):
            bind_params(needs, {"threshold": True}, "conf/needs/default.yaml")
