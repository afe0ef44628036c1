"""Every config group option composes, type-checks and instantiates; bad config fails early."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefab_mlops.config import ModelSpec, config_groups, load_config
from prefab_mlops.core.errors import ConfigError
from prefab_mlops.core.storage import parse_location
from prefab_mlops.tasks.featurize import build_preprocessor
from prefab_mlops.tasks.train import check_estimator_fits

CONF = Path(__file__).resolve().parents[1] / "conf"
# the project's groups plus the framework's stock ones (Hydra's search path)
OPTIONS = config_groups(CONF)
GROUPS = sorted(OPTIONS)
REGRESSION_MODELS = {"xgboost_regressor", "random_forest_regressor", "linear_regression"}


def options(group: str) -> list[str]:
    return OPTIONS[group]


def compose(tmp_path: Path, *overrides: str):
    return load_config([f"paths.root={tmp_path}", *overrides], config_dir=CONF)


CASES = [(g, o) for g in GROUPS for o in options(g)]


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_option_composes_and_instantiates(group: str, option: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFAB_S3_BUCKET", "bucket")
    extra: list[str] = []
    if group == "model" and option in REGRESSION_MODELS or (
            group in ("data", "validate", "features", "evaluate") and option == "diamonds") or (
            group == "evaluate" and option == "regression"):
        extra = ["experiment=diamonds"]
    key = f"{group}={option}" if group != "experiment" else f"experiment={option}"
    cfg = compose(tmp_path, *extra, key).typed
    spec = ModelSpec.from_config(cfg.model)
    check_estimator_fits(spec.instantiate(), cfg.data.problem_type, spec.target)
    assert build_preprocessor(cfg.features).transformers
    loc = parse_location(cfg.data.uri, cfg.paths.root)
    assert Path(loc.path).is_file()
    assert cfg.paths.root == str(tmp_path)


def test_resolved_config_is_plain_and_fully_resolved(tmp_path: Path) -> None:
    loaded = compose(tmp_path)
    flat = repr(loaded.resolved)
    assert "${" not in flat
    assert loaded.resolved["register"]["model_name"] == "flights-binary"
    assert loaded.resolved["model"]["random_state"] == 42


def test_seed_flows_into_the_model(tmp_path: Path) -> None:
    assert compose(tmp_path, "seed=7").typed.model["random_state"] == 7


class TestBadConfigFailsEarly:
    def test_unknown_key_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"validate\.on_failur"):
            compose(tmp_path, "+validate.on_failur=warn")

    def test_wrong_type_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"validate\.min_rows"):
            compose(tmp_path, "validate.min_rows=lots")

    def test_unknown_group_option_lists_choices(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="xgboost") as err:
            compose(tmp_path, "model=xgbost")
        assert "conf" in str(err.value)

    def test_bad_choice(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="tracking.mode"):
            compose(tmp_path, "tracking.mode=sometimes")

    def test_unknown_time_zone_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"data\.window\.timezone = 'Mars/Olympus'"
                           ) as err:
            compose(tmp_path, "data.window.timezone=Mars/Olympus")
        assert "America/New_York" in str(err.value)  # the fix shows valid names
        assert compose(tmp_path, "data.window.timezone=Europe/Berlin").typed.data.window \
            .timezone == "Europe/Berlin"

    def test_data_read_options_are_checked(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as err:
            compose(tmp_path, "data.read.encoding=klingon", "data.read.sep=ab")
        msg = str(err.value)
        assert "data.read.encoding = 'klingon' is not a known encoding" in msg
        assert "data.read.sep = 'ab' is not one character" in msg
        assert "cp1252" in err.value.fix and "'tab'" in err.value.fix
        read = compose(tmp_path, "data.read.encoding=latin-1", "data.read.sep=tab").typed \
            .data.read
        assert (read.encoding, read.separator()) == ("latin-1", "\t")
        assert compose(tmp_path).typed.data.read.separator() is None  # auto

    def test_unknown_split_key_column_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as err:
            compose(tmp_path, "features.split.key=[flight,tail_number]")
        msg = str(err.value)
        assert "'features.split.key' names ['tail_number']" in msg
        assert "'time_hour', 'month'" in msg  # lists the data's columns
        assert compose(tmp_path, "features.split.key=[flight,time_hour]").typed.features \
            .split.key == ["flight", "time_hour"]

    def test_split_strategies(self, tmp_path: Path) -> None:
        assert compose(tmp_path).typed.features.split.strategy == "hash"
        with pytest.raises(ConfigError, match=r"\['hash', 'random', 'stratified', 'time'\]"):
            compose(tmp_path, "features.split.strategy=shuffle")

    def test_champion_check_limits(self, tmp_path: Path) -> None:
        check = compose(tmp_path).typed.evaluate.champion
        assert (check.min_rows, check.min_share) == (50, 0.1)
        with pytest.raises(ConfigError, match=r"evaluate\.champion\.min_share"):
            compose(tmp_path, "evaluate.champion.min_share=1.5")

    def test_negative_drift_plot_count(self, tmp_path: Path) -> None:
        assert compose(tmp_path).typed.monitor.plot_columns == 4
        with pytest.raises(ConfigError, match=r"monitor\.plot_columns' must be 0 \(no plots\) "
                           r"or more, not -1"):
            compose(tmp_path, "monitor.plot_columns=-1")

    def test_target_used_as_feature(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="target 'delayed'"):
            compose(tmp_path, "features.numeric.columns=[delayed,distance]")

    def test_metric_of_other_problem_type(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="rmse"):
            compose(tmp_path, "evaluate.primary_metric=rmse")

    def test_regressor_for_classification(self, tmp_path: Path) -> None:
        cfg = compose(tmp_path, "model=xgboost_regressor").typed
        spec = ModelSpec.from_config(cfg.model)
        with pytest.raises(ConfigError, match="not a classifier"):
            check_estimator_fits(spec.instantiate(), cfg.data.problem_type, spec.target)

    def test_unknown_model_parameter(self, tmp_path: Path) -> None:
        cfg = compose(tmp_path, "model=random_forest", "+model.n_trees=3").typed
        with pytest.raises(ConfigError, match="RandomForestClassifier"):
            ModelSpec.from_config(cfg.model).instantiate()

    def test_s3_storage_without_bucket(self, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("PREFAB_S3_BUCKET", raising=False)
        with pytest.raises(ConfigError, match="PREFAB_S3_BUCKET"):
            compose(tmp_path, "storage=s3")

    def test_missing_config_dir(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="not found"):
            load_config([], config_dir=tmp_path)


def test_every_task_family_a_flow_uses_is_configured(tmp_path: Path) -> None:
    """Each ``configure(task, "<family>", ...)`` in the flows has its own entry in
    ``conf/orchestration`` (no task silently runs on defaults or borrows another's)."""
    import re

    flows = Path(__file__).resolve().parents[1] / "flows"
    used = {m for f in flows.glob("*.py")
            for m in re.findall(r'configure\(\s*\w+,\s*"([a-z_]+)"', f.read_text())}
    heavy = re.compile(r'heavy\(\s*\w+,\s*"([a-z_]+)"')
    used |= {m for f in flows.glob("*.py") for m in heavy.findall(f.read_text())}
    families = set(compose(tmp_path).typed.orchestration.tasks)
    assert used and not used - families, sorted(used - families)


class TestTargetsAreLockedDown:
    """``_target_`` builds only estimators, transformers and our own code."""

    @pytest.mark.parametrize("target", ["os.system", "subprocess.run", "builtins.eval",
                                        "sklearnx.Evil", "posix.system"])
    def test_a_foreign_callable_is_refused_when_loading(self, target: str,
                                                        tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=rf"'model\._target_' is '{target}'") as err:
            compose(tmp_path, f"model._target_={target}")
        assert "allowed_targets" in err.value.fix

    def test_a_nested_target_is_checked_too(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"'model\.callback\._target_' is 'os\.system'"):
            compose(tmp_path, "+model.callback={_target_: os.system, command: 'true'}")

    def test_the_allow_list_is_extendable(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError):
            compose(tmp_path, "model._target_=collections.OrderedDict")
        cfg = compose(tmp_path, "model._target_=collections.OrderedDict",
                      "allowed_targets=[collections]")
        assert cfg.typed.model["_target_"] == "collections.OrderedDict"
