"""Every config group option composes, type-checks and instantiates, or is refused early.

Options made for the other problem types (a regressor in a classification project,
regression metrics...) must fail when the config is loaded, never halfway through a
run. The project's steps (``conf/steps/``, scaffolded from templates/task) import and
fit their hooks and the signatures of their tasks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from prefab_mlops.config import (
    ModelSpec,
    PipelineConfig,
    config_groups,
    framework_config_dir,
    load_config,
)
from prefab_mlops.core.errors import ConfigError
from prefab_mlops.core.storage import parse_location
from prefab_mlops.flows.common import project_steps
from prefab_mlops.tasks.featurize import build_preprocessor
from prefab_mlops.tasks.train import check_estimator_fits

CONF = Path(__file__).resolve().parents[1] / "conf"
TRAIN_GROUPS = {f.name for f in dataclasses.fields(PipelineConfig)} | {"experiment"}
# this project's groups plus the framework's stock ones (Hydra's search path)
OPTIONS = config_groups(CONF)
GROUP_DIRS = sorted(OPTIONS)


def options(group: str) -> list[str]:
    return OPTIONS[group]


def option_file(group: str, option: str) -> Path:
    """The YAML file Hydra picks for ``group=option``: the project's, else the stock one."""
    mine = CONF / group / f"{option}.yaml"
    return mine if mine.is_file() else framework_config_dir() / group / f"{option}.yaml"


def compose(tmp_path: Path, *overrides: str):
    return load_config([f"paths.root={tmp_path}", *overrides], config_dir=CONF)


def default_problem_type() -> str:
    defaults = OmegaConf.to_container(OmegaConf.load(CONF / "pipeline.yaml"))["defaults"]
    name = next(d["data"] for d in defaults if isinstance(d, dict) and "data" in d)
    return str(OmegaConf.load(CONF / "data" / f"{name}.yaml").problem_type)


PROBLEM_TYPE = default_problem_type()


def fits_problem_type(group: str, option: str) -> bool:
    """Whether a model/evaluate option is made for this project's problem type."""
    regression = PROBLEM_TYPE == "regression"
    if group == "evaluate":
        return (option == "regression") == regression
    if group == "model":
        raw = OmegaConf.to_container(OmegaConf.load(option_file("model", option)))
        raw["random_state"] = 0
        est = ModelSpec.from_config(raw).instantiate()
        from sklearn.base import is_regressor

        return is_regressor(est) == regression
    return True


CASES = [(g, o) for g in sorted(TRAIN_GROUPS & set(GROUP_DIRS)) for o in options(g)]


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_option_composes_and_instantiates(group: str, option: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFAB_S3_BUCKET", "bucket")
    key = f"{group}={option}"
    if not fits_problem_type(group, option):
        with pytest.raises(ConfigError):
            cfg = compose(tmp_path, key).typed
            spec = ModelSpec.from_config(cfg.model)
            check_estimator_fits(spec.instantiate(), cfg.data.problem_type, spec.target)
        return
    loaded = compose(tmp_path, key)
    cfg = loaded.typed
    spec = ModelSpec.from_config(cfg.model)
    check_estimator_fits(spec.instantiate(), cfg.data.problem_type, spec.target)
    assert build_preprocessor(cfg.features).transformers
    project_steps(loaded)  # each step imports and fits its hook and its task's signature
    assert cfg.paths.root == str(tmp_path)
    assert cfg.register.model_name == f"{cfg.data.name}-{cfg.data.problem_type}"


def test_data_location_exists(tmp_path: Path) -> None:
    data = compose(tmp_path).typed.data
    if data.uri.startswith("s3://"):
        pytest.skip("data on S3 is checked by the training run")
    loc = parse_location(data.uri, CONF.parent)
    assert Path(loc.path).is_file(), f"data.uri {data.uri} does not exist"


def test_resolved_config_is_plain(tmp_path: Path) -> None:
    loaded = compose(tmp_path)
    assert "${" not in repr(loaded.resolved)
    assert loaded.resolved["data"]["problem_type"] == PROBLEM_TYPE


def test_the_plugged_in_steps_fit_their_tasks(tmp_path: Path) -> None:
    """The steps conf/pipeline.yaml lists (none in a new project), together, in order."""
    loaded = compose(tmp_path)
    steps = project_steps(loaded)
    assert {s.name for s in (*steps.after_ingest, *steps.after_evaluate)} == set(
        loaded.typed.steps)


class TestBadConfigFailsEarly:
    def test_unknown_key_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"validate\.on_failur"):
            compose(tmp_path, "+validate.on_failur=warn")

    def test_wrong_type_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"validate\.min_rows"):
            compose(tmp_path, "validate.min_rows=lots")

    def test_target_used_as_feature(self, tmp_path: Path) -> None:
        target = compose(tmp_path).typed.data.target
        with pytest.raises(ConfigError, match=f"target '{target}'"):
            compose(tmp_path, f"features.numeric.columns=[{target}]")
