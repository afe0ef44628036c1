"""Typed config schemas and the one function that loads them.

The YAML files in ``conf/`` are Hydra config groups that mirror the pipeline
stages. Each group has a dataclass schema here; :func:`load_config` composes the
YAML with Hydra, merges it into the schema (so an unknown key or a wrong type
fails *before* any work starts), resolves every interpolation and returns

* a :class:`PipelineConfig` of typed dataclasses, from which each task receives only
  its own subtree, and
* the same config as a plain, fully resolved ``dict`` for logging, lineage and
  experiment tracking.

Nothing here touches data; loading a config never starts Prefect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from prefab_mlops.core.errors import ConfigError
from prefab_mlops.core.registry import PRODUCTION_ALIAS
from prefab_mlops.core.storage import StorageConfig

PROBLEM_TYPES = ("binary", "multiclass", "regression")
CONFIG_DIR_ENV = "PREFAB_CONFIG_DIR"
ROOT_ENV = "PREFAB_PROJECT_ROOT"


# --------------------------------------------------------------------- paths
@dataclass
class PathsConfig:
    """``conf/paths``: every location the project writes to."""

    root: str = MISSING
    data_dir: str = MISSING
    registry_dir: str = MISSING
    cache_dir: str = MISSING
    output_dir: str = MISSING
    tracking_dir: str = MISSING


# ---------------------------------------------------------------------- data
@dataclass
class WindowConfig:
    """Optional time window applied at ingest, on ``data.time_column``.

    ``newest`` keeps only the newest calendar ``month``, ``week`` or ``day`` in the
    data; ``start``/``end`` are ISO timestamps (start inclusive, end exclusive).
    ``timezone`` (an IANA name such as ``America/New_York``) is where calendar days
    begin: the newest month of flights from New York is December 2013 there, but
    January 2014 in UTC, where its last evening's flights already are. Without it,
    the column's own zone is used (UTC for timestamps written with ``Z``). It also
    places ``start``/``end`` given without an offset.
    """

    start: Optional[str] = None
    end: Optional[str] = None
    newest: Optional[str] = None
    timezone: Optional[str] = None


@dataclass
class DataConfig:
    """``conf/data``: where the data comes from and how the target is defined.

    ``uri`` is a local path, ``s3://bucket/key`` or ``pkg://package/path`` (a file
    shipped inside an installed Python package; ``#member`` selects a file inside a
    ``.tar.gz``). ``derive`` adds columns from pandas expressions *after* rows with
    nulls in ``dropna`` are removed (e.g. the target ``arr_delay > 15``).
    """

    name: str = MISSING
    uri: str = MISSING
    format: str = "auto"
    problem_type: str = MISSING
    target: str = MISSING
    time_column: Optional[str] = None
    parse_dates: List[str] = field(default_factory=list)
    dropna: List[str] = field(default_factory=list)
    derive: Dict[str, str] = field(default_factory=dict)
    columns: Optional[List[str]] = None
    window: WindowConfig = field(default_factory=WindowConfig)
    sample_rows: Optional[int] = None
    snapshot: bool = True


# ------------------------------------------------------------------ validate
@dataclass
class ColumnRule:
    """One column of the declarative schema.

    ``dtype`` is one of ``int``, ``float``, ``number``, ``str``, ``category``,
    ``bool``, ``datetime`` or null (any).
    """

    dtype: Optional[str] = None
    nullable: bool = True
    min: Optional[float] = None
    max: Optional[float] = None
    allowed: Optional[List[Any]] = None
    unique: bool = False
    required: bool = True


@dataclass
class ValidateConfig:
    """``conf/validate``: the data contract checked before any feature work."""

    on_failure: str = "fail"
    min_rows: int = 1
    strict: bool = False
    columns: Dict[str, ColumnRule] = field(default_factory=dict)
    unique: List[List[str]] = field(default_factory=list)
    max_examples: int = 5


# ------------------------------------------------------------------ features
@dataclass
class SplitConfig:
    """How rows are split into train, validation and test.

    ``hash`` (the default) places each row by a seeded 64-bit hash of its values in
    ``key`` (default: every column of the ingested data), so a row keeps its split
    when rows are appended, removed or sampled, and identical rows share a split.
    ``random`` and ``stratified`` shuffle the rows of this table (a row's split
    changes when the table does); ``time`` puts the oldest rows in train and the
    newest in test. ``key`` is used by ``hash`` only.
    """

    strategy: str = "hash"
    key: List[str] = field(default_factory=list)
    time_column: Optional[str] = None
    valid_size: float = 0.1
    test_size: float = 0.2


@dataclass
class NumericFeatures:
    columns: List[str] = field(default_factory=list)
    impute: str = "median"
    scale: str = "none"


@dataclass
class CategoricalFeatures:
    columns: List[str] = field(default_factory=list)
    encoding: str = "ordinal"
    impute: str = "constant"
    min_frequency: Optional[int] = None


@dataclass
class DatetimeFeatures:
    columns: List[str] = field(default_factory=list)
    parts: List[str] = field(default_factory=lambda: ["month", "dayofweek", "hour"])


@dataclass
class FeaturesConfig:
    """``conf/features``: the split and the ``ColumnTransformer`` recipe.

    Columns not listed in a section are dropped (``remainder: drop``) or passed
    through unchanged (``remainder: passthrough``); ``drop`` names columns that are
    always dropped, which matters with ``passthrough``.
    """

    split: SplitConfig = field(default_factory=SplitConfig)
    numeric: NumericFeatures = field(default_factory=NumericFeatures)
    categorical: CategoricalFeatures = field(default_factory=CategoricalFeatures)
    datetime: DatetimeFeatures = field(default_factory=DatetimeFeatures)
    drop: List[str] = field(default_factory=list)
    remainder: str = "drop"


# ------------------------------------------------------------------ evaluate
@dataclass
class GateRule:
    min: Optional[float] = None
    max: Optional[float] = None


@dataclass
class ChampionCheckConfig:
    """How the production model (champion) is compared with the new model.

    Both are scored on the test rows that neither was trained on. When fewer than
    ``min_rows`` such rows remain, or fewer than ``min_share`` of the test split, the
    champion is not comparable and the new model is not promoted automatically.
    """

    min_rows: int = 50
    min_share: float = 0.1


@dataclass
class EvaluateConfig:
    """``conf/evaluate``: metrics, plots, the quality gate and the champion comparison.

    ``on_gate_failure``: ``warn`` registers the model as a candidate that is never
    promoted; ``fail`` ends the run before anything is registered.
    """

    primary_metric: str = MISSING
    greater_is_better: bool = True
    threshold: float = 0.5
    gate: Dict[str, GateRule] = field(default_factory=dict)
    on_gate_failure: str = "warn"
    plots: bool = True
    importance_top_k: int = 20
    champion: ChampionCheckConfig = field(default_factory=ChampionCheckConfig)


# ------------------------------------------------------- register and promote
@dataclass
class RegisterConfig:
    """``conf/register``: the model registry (a directory by default, S3 via ``storage``)."""

    model_name: str = MISSING
    root: str = MISSING
    aliases: List[str] = field(default_factory=lambda: ["candidate"])
    reference_sample_rows: int = 5000


@dataclass
class PromoteConfig:
    """``conf/promote``: when a registered version becomes ``alias`` (production).

    ``alias`` is the one setting of which alias is "production": promotion moves it,
    and monitoring, batch scoring and the model server all follow it.
    """

    alias: str = PRODUCTION_ALIAS
    auto_promote: bool = True
    require_gate: bool = True
    min_improvement: float = 0.0


# ------------------------------------------------------------------ tracking
@dataclass
class TrackingConfig:
    """``conf/tracking``: W&B. ``mode`` is ``offline`` (default), ``online`` or ``disabled``."""

    mode: str = "offline"
    project: str = "prefab-mlops"
    entity: Optional[str] = None
    dir: str = MISSING
    init_timeout_s: float = 30.0
    log_model: bool = True
    tags: List[str] = field(default_factory=list)


# ------------------------------------------------------------------- monitor
@dataclass
class MonitorConfig:
    """``conf/monitor``: drift detection against the production model's reference.

    ``drift_share``: the batch drifts when at least this share of the model's input
    columns drift (Evidently ``DataDriftPreset``). ``max_rows`` is the sampling
    budget per side, which keeps a 1M-row batch fast. ``labels: false`` monitors
    batches without the target (e.g. logged serving traffic).
    """

    drift_share: float = 0.5
    max_rows: int = 20000
    columns: Optional[List[str]] = None
    prediction_drift: bool = True
    quality: bool = True
    labels: bool = True
    event: str = "prefab.model.drift-detected"
    emit_event: bool = True
    report_dir: str = MISSING


# ----------------------------------------------------------------- inference
@dataclass
class InferenceConfig:
    """``conf/inference``: batch scoring with the production model.

    ``passthrough`` columns (ids) are copied from the batch into the output.
    """

    output_dir: str = MISSING
    format: str = "parquet"
    passthrough: List[str] = field(default_factory=list)


# ------------------------------------------------------------- orchestration
@dataclass
class TaskRuntime:
    """Prefect task options, applied with ``Task.with_options``."""

    retries: int = 0
    retry_delay_seconds: List[float] = field(default_factory=list)
    timeout_seconds: Optional[float] = None


@dataclass
class CacheConfig:
    """Cross-run caching. ``refresh: true`` forces every task to run afresh.

    ``result_storage`` is a directory, or ``block:<type>/<name>`` for a saved
    storage block (for example ``block:s3-bucket/prefab-cache``).
    """

    enabled: bool = True
    refresh: bool = False
    result_storage: str = MISSING


@dataclass
class OrchestrationConfig:
    """``conf/orchestration``: retries, timeouts and caching per task family."""

    cache: CacheConfig = field(default_factory=CacheConfig)
    tasks: Dict[str, TaskRuntime] = field(default_factory=dict)


# ---------------------------------------------------------------------- root
@dataclass
class PipelineConfig:
    """The root config of a project's pipeline (``conf/pipeline.yaml``).

    One config for every flow of the project: training, monitoring and batch scoring
    (and the model server's defaults) read their own subtrees of it.
    """

    seed: int = 42
    paths: PathsConfig = field(default_factory=PathsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    data: DataConfig = field(default_factory=DataConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: Dict[str, Any] = field(default_factory=dict)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)
    # Namespaces (dotted module prefixes) whose callables `_target_` may name, on top of
    # ALLOWED_TARGETS; add only code you trust.
    allowed_targets: List[str] = field(default_factory=list)


SCHEMAS: dict[str, type] = {"pipeline": PipelineConfig}

#: What a config's ``_target_`` may build without further ado: estimators and
#: transformers, the framework itself and the project's own tasks. Anything else (``os``,
#: ``subprocess``, ``builtins``...) is refused when the config is loaded.
ALLOWED_TARGETS = ("sklearn", "xgboost", "lightgbm", "catboost", "prefab_mlops", "tasks")


def _targets(node: Any, path: str) -> list[tuple[str, str]]:
    """Every ``_target_`` in a resolved config: ``(key path, target)``."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                found.append((where, str(value)))
            else:
                found += _targets(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _targets(value, f"{path}[{i}]")
    return found


def _check_targets(resolved: dict[str, Any]) -> None:
    """Refuse a ``_target_`` outside :data:`ALLOWED_TARGETS` and ``allowed_targets``."""
    allowed = (*ALLOWED_TARGETS, *[str(a).rstrip(".") for a in resolved.get("allowed_targets")
                                   or []])
    bad = [(where, t) for where, t in _targets(resolved, "")
           if not any(t == a or t.startswith(a + ".") for a in allowed)]
    if bad:
        listed = "; ".join(f"'{where}' is '{t}'" for where, t in bad)
        raise ConfigError(
            f"Config names callables outside the allowed namespaces: {listed}. A config "
            f"may only build objects from {', '.join(allowed)}.",
            fix="Use an estimator or transformer from an allowed library, or, if you trust "
            "that code, add its namespace to allowed_targets in conf/pipeline.yaml "
            "(e.g. allowed_targets: [my_company.models]).")

_CHOICES: dict[str, tuple[str, ...]] = {
    "data.problem_type": PROBLEM_TYPES,
    "data.format": ("auto", "csv", "parquet"),
    "data.window.newest": ("month", "week", "day"),
    "storage.kind": ("local", "s3"),
    "validate.on_failure": ("fail", "warn"),
    "features.split.strategy": ("hash", "random", "stratified", "time"),
    "features.numeric.impute": ("median", "mean", "zero", "none"),
    "features.numeric.scale": ("none", "standard", "robust"),
    "features.categorical.encoding": ("onehot", "ordinal", "native"),
    "features.categorical.impute": ("constant", "most_frequent", "none"),
    "features.remainder": ("drop", "passthrough"),
    "evaluate.on_gate_failure": ("warn", "fail"),
    "tracking.mode": ("offline", "online", "disabled"),
    "inference.format": ("parquet", "csv"),
}


# -------------------------------------------------------------------- loader
@dataclass(frozen=True)
class LoadedConfig:
    """What :func:`load_config` returns: typed tree, plain resolved dict, origin."""

    typed: Any
    resolved: dict[str, Any]
    config_dir: Path
    overrides: tuple[str, ...]


def default_config_dir() -> Path:
    """The project's ``conf/``: ``$PREFAB_CONFIG_DIR`` if set, else ``./conf``.

    The framework ships no project config of its own (only the stock groups on the
    search path), so a flow run outside a project fails in :func:`load_config` with
    a message that says where it looked.
    """
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (Path.cwd() / "conf").resolve()


def load_config(
    overrides: list[str] | tuple[str, ...] | None = None,
    config_name: str = "pipeline",
    config_dir: str | Path | None = None,
) -> LoadedConfig:
    """Compose, type-check and resolve a config.

    Args:
        overrides: Hydra override strings, e.g. ``["model=random_forest",
            "model.n_estimators=300"]``.
        config_name: Primary config file in the config dir (``train``).
        config_dir: Directory holding ``pipeline.yaml`` and the groups. Defaults to
            :func:`default_config_dir`.

    Returns:
        A :class:`LoadedConfig`.

    Raises:
        ConfigError: unknown group option, unknown key, wrong type, missing
            required value or inconsistent settings, naming the key and the fix.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    conf_dir = Path(config_dir).expanduser().resolve() if config_dir else default_config_dir()
    if not (conf_dir / f"{config_name}.yaml").is_file():
        raise ConfigError(
            f"Config '{config_name}.yaml' not found in {conf_dir}.",
            fix="Pass config_dir= pointing at your project's conf/ directory or set "
            f"${CONFIG_DIR_ENV}.",
        )
    overrides = tuple(overrides or ())
    extra: list[str] = []
    if not any(o.lstrip("+~").startswith("paths.root=") for o in overrides):
        extra.append(f"paths.root={os.environ.get(ROOT_ENV) or conf_dir.parent}")

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=[*overrides, *extra])
    except HydraException as exc:
        raise ConfigError(
            f"Could not compose config '{config_name}' with overrides {list(overrides)}: {exc}",
            fix="Check the override spelling; a group's options are the YAML files under "
            f"{conf_dir}/<group>/ and the framework's stock ones (pkg://prefab_mlops.conf), "
            "as listed above.",
        ) from None
    finally:
        GlobalHydra.instance().clear()

    schema = SCHEMAS.get(config_name, PipelineConfig)
    typed = _merge_schema(schema, cfg)
    try:
        resolved = OmegaConf.to_container(typed, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        raise _config_error(exc) from None
    obj = OmegaConf.to_object(typed)
    _check_choices(resolved)
    _check_targets(resolved)
    _check_timezone(obj)
    _check_consistency(obj)
    assert isinstance(resolved, dict)
    return LoadedConfig(typed=obj, resolved=resolved, config_dir=conf_dir, overrides=overrides)


FRAMEWORK_CONF = "pkg://prefab_mlops.conf"


def framework_config_dir() -> Path:
    """Where the framework's stock config groups are installed (package data)."""
    from importlib.resources import files

    return Path(str(files("prefab_mlops.conf")))


def config_groups(config_dir: str | Path | None = None,
                  config_name: str = "pipeline") -> dict[str, list[str]]:
    """Every config group and its options, as Hydra sees them for ``config_name``.

    That is the project's ``conf/`` plus what its search path adds (the framework's
    stock groups), so a test can compose every option a user can pick.

    Args:
        config_dir: The project's ``conf/`` (default: :func:`default_config_dir`).
        config_name: Its primary config, whose ``hydra.searchpath`` is applied.

    Returns:
        ``{group: [option, ...]}``, sorted, without ``hydra`` and ``local``.
    """
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    conf_dir = Path(config_dir).expanduser().resolve() if config_dir else default_config_dir()
    roots = [conf_dir, framework_config_dir()]
    names = sorted({p.name for r in roots if r.is_dir() for p in r.iterdir()
                    if p.is_dir() and p.name not in ("local", "__pycache__")})
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            return {g: sorted(loader.get_group_options(g, config_name=config_name))
                    for g in names}
    finally:
        GlobalHydra.instance().clear()


def _merge_schema(schema: type, cfg: DictConfig) -> DictConfig:
    base = OmegaConf.structured(schema)
    try:
        merged = OmegaConf.merge(base, cfg)
    except OmegaConfBaseException as exc:
        raise _config_error(exc) from None
    assert isinstance(merged, DictConfig)
    return merged


def _config_error(exc: OmegaConfBaseException) -> ConfigError:
    key = getattr(exc, "full_key", None) or "?"
    msg = str(exc).splitlines()[0]
    kind = type(exc).__name__
    if kind == "ConfigKeyError":
        fix = f"Remove or rename '{key}'; see the schema in prefab_mlops/config.py for valid keys."
    elif kind == "MissingMandatoryValue":
        fix = f"Set '{key}' in its YAML file or on the command line ({key}=...)."
    else:
        fix = f"Give '{key}' a value of the type declared in prefab_mlops/config.py."
    return ConfigError(f"Invalid config at '{key}': {msg}", fix=fix)


def _get(d: dict[str, Any], dotted: str) -> Any:
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _check_choices(resolved: dict[str, Any]) -> None:
    errors = []
    for key, choices in _CHOICES.items():
        value = _get(resolved, key)
        if value is not None and value not in choices:
            errors.append(f"'{key}' is {value!r}; expected one of {list(choices)}")
    if errors:
        raise ConfigError("Invalid config: " + "; ".join(errors),
                          fix="Change the named keys to one of the listed values.")


def _check_timezone(cfg: Any) -> None:
    window = getattr(getattr(cfg, "data", None), "window", None)
    name = getattr(window, "timezone", None)
    if not name:
        return
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"data.window.timezone = '{name}' is not a known time zone.",
                          fix="Use an IANA name such as 'UTC', 'Europe/Berlin' or "
                          "'America/New_York'.") from None


def _check_consistency(cfg: Any) -> None:
    """Cross-group checks that a schema alone cannot express."""
    if not isinstance(cfg, PipelineConfig):
        return
    errors: list[str] = []
    target = cfg.data.target
    feats = cfg.features
    used = [*feats.numeric.columns, *feats.categorical.columns, *feats.datetime.columns]
    dropped = set(feats.drop) & set(used)
    if dropped:
        errors.append(f"columns {sorted(dropped)} are both features and in 'features.drop'")
    if target in used:
        errors.append(f"target '{target}' is also listed as a feature in 'features'")
    dup = sorted({c for c in used if used.count(c) > 1})
    if dup:
        errors.append(f"columns {dup} appear in more than one 'features' section")
    if not used:
        errors.append("'features' lists no numeric, categorical or datetime columns")
    if feats.split.strategy == "time" and not (feats.split.time_column or cfg.data.time_column):
        errors.append("'features.split.strategy' is 'time' but no time column is set "
                      "(features.split.time_column or data.time_column)")
    if feats.split.strategy == "stratified" and cfg.data.problem_type == "regression":
        errors.append("'features.split.strategy' is 'stratified' for a regression problem")
    if not 0 < feats.split.test_size < 1 or not 0 <= feats.split.valid_size < 1 or (
            feats.split.test_size + feats.split.valid_size >= 1):
        errors.append("'features.split.test_size' and 'valid_size' must be in (0, 1) "
                      "and sum to less than 1")
    key = list(feats.split.key)
    if feats.split.strategy == "hash":
        dup_key = sorted({c for c in key if key.count(c) > 1})
        if dup_key:
            errors.append(f"'features.split.key' lists {dup_key} more than once")
        # The ingested columns are known here only when data.columns lists them; else
        # featurize checks the key against the data.
        if cfg.data.columns is not None:
            unknown = [c for c in key if c not in cfg.data.columns]
            if unknown:
                errors.append(f"'features.split.key' names {unknown}, which the data does not "
                              f"have; its columns (data.columns) are {list(cfg.data.columns)}")
    check = cfg.evaluate.champion
    if check.min_rows < 1 or not 0 <= check.min_share <= 1:
        errors.append("'evaluate.champion.min_rows' must be at least 1 and "
                      "'evaluate.champion.min_share' in [0, 1]")
    if not 0 < cfg.monitor.drift_share <= 1:
        errors.append("'monitor.drift_share' must be in (0, 1]")
    if cfg.monitor.max_rows < 100:
        errors.append("'monitor.max_rows' must be at least 100")
    if "_target_" not in cfg.model:
        errors.append("'model' has no '_target_' (the estimator class to instantiate)")
    if cfg.storage.kind == "s3" and not cfg.storage.bucket:
        errors.append("'storage.kind' is 's3' but 'storage.bucket' is not set")
    metric_sets = {
        "regression": {"rmse", "mae", "r2"},
        "binary": {"roc_auc", "f1", "precision", "recall", "accuracy", "log_loss", "pr_auc"},
        "multiclass": {"f1", "precision", "recall", "accuracy", "log_loss", "roc_auc"},
    }
    valid = metric_sets.get(cfg.data.problem_type, set())
    if cfg.evaluate.primary_metric not in valid:
        errors.append(f"'evaluate.primary_metric' is '{cfg.evaluate.primary_metric}', not a "
                      f"{cfg.data.problem_type} metric {sorted(valid)}")
    for metric in cfg.evaluate.gate:
        if metric not in valid:
            errors.append(f"'evaluate.gate.{metric}' is not a {cfg.data.problem_type} metric "
                          f"{sorted(valid)}")
    if errors:
        raise ConfigError("Inconsistent config: " + "; ".join(errors),
                          fix="Change the named keys, or pick matching config groups "
                          "(e.g. experiment=diamonds for regression).")


def as_plain(obj: Any) -> Any:
    """A dataclass tree as plain JSON-safe containers (for hashing and logging)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: as_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {str(k): as_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_plain(v) for v in obj]
    return obj


# ------------------------------------------------------------- typed views
@dataclass(frozen=True)
class TargetSpec:
    """What the label is: the target column and the problem type (from ``conf/data``)."""

    name: str
    problem_type: str

    @classmethod
    def from_data(cls, data: DataConfig) -> TargetSpec:
        return cls(name=data.target, problem_type=data.problem_type)


@dataclass(frozen=True)
class ModelSpec:
    """The estimator to build (``conf/model``): its class path and keyword arguments."""

    target: str
    params: Dict[str, Any]

    @classmethod
    def from_config(cls, model: dict[str, Any]) -> ModelSpec:
        params = {k: v for k, v in model.items() if not k.startswith("_")}
        return cls(target=str(model["_target_"]), params=params)

    def instantiate(self) -> Any:
        """Build the (unfitted) estimator with Hydra's ``instantiate``.

        Raises:
            ConfigError: the class cannot be imported or rejects a parameter.
        """
        from hydra.errors import InstantiationException
        from hydra.utils import instantiate

        try:
            return instantiate({"_target_": self.target, **self.params}, _convert_="all")
        except (InstantiationException, TypeError, ImportError) as exc:
            # One line, but keep the cause: Hydra puts the TypeError on the second line.
            raise ConfigError(
                f"Cannot build model '{self.target}' from conf/model: "
                + " ".join(str(exc).split()),
                fix="Check model._target_ and that every model.* key is a parameter of that "
                "estimator.") from None
