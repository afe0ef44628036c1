"""Config: typed schemas, the checks a schema cannot express, and the loader.

* :mod:`~prefab_mlops.config.schema`: one dataclass per config group and the root
  :class:`PipelineConfig`;
* :mod:`~prefab_mlops.config.checks`: allowed values, ``_target_`` namespaces and
  cross-group consistency;
* :mod:`~prefab_mlops.config.loader`: :func:`load_config` composes the YAML with Hydra,
  merges it into the schema (an unknown key or a wrong type fails *before* any work
  starts), resolves every interpolation and runs the checks; it returns the typed tree
  (each task receives only its own subtree) and the same config as a plain resolved
  ``dict`` for logging, lineage and tracking;
* :mod:`~prefab_mlops.config.specs`: typed views a flow hands to tasks.

The names below are re-exported so a project writes ``from prefab_mlops.config import
PipelineConfig``.
"""

from prefab_mlops.config.checks import ALLOWED_TARGETS
from prefab_mlops.config.loader import (
    CONFIG_DIR_ENV,
    FRAMEWORK_CONF,
    ROOT_ENV,
    LoadedConfig,
    config_groups,
    default_config_dir,
    framework_config_dir,
    load_config,
)
from prefab_mlops.config.schema import (
    BaselineRule,
    CacheConfig,
    CategoricalFeatures,
    ChampionCheckConfig,
    ColumnRule,
    DaskConfig,
    DataConfig,
    DatetimeFeatures,
    EvaluateConfig,
    FeaturesConfig,
    GateRule,
    InferenceConfig,
    MonitorConfig,
    NumericFeatures,
    OptunaConfig,
    OrchestrationConfig,
    ParamRange,
    PathsConfig,
    PipelineConfig,
    PromoteConfig,
    ReadConfig,
    RegisterConfig,
    SearchConfig,
    SplitConfig,
    StepConfig,
    StorageConfig,
    TaskRuntime,
    TrackingConfig,
    ValidateConfig,
    WindowConfig,
    as_plain,
)
from prefab_mlops.config.specs import ModelSpec, TargetSpec
from prefab_mlops.core.problems import PROBLEM_TYPES

__all__ = [
    "ALLOWED_TARGETS",
    "CONFIG_DIR_ENV",
    "BaselineRule",
    "CacheConfig",
    "CategoricalFeatures",
    "ChampionCheckConfig",
    "ColumnRule",
    "DaskConfig",
    "DataConfig",
    "DatetimeFeatures",
    "EvaluateConfig",
    "FRAMEWORK_CONF",
    "FeaturesConfig",
    "GateRule",
    "InferenceConfig",
    "LoadedConfig",
    "ModelSpec",
    "MonitorConfig",
    "NumericFeatures",
    "OptunaConfig",
    "OrchestrationConfig",
    "PROBLEM_TYPES",
    "ParamRange",
    "PathsConfig",
    "PipelineConfig",
    "PromoteConfig",
    "ROOT_ENV",
    "ReadConfig",
    "RegisterConfig",
    "SearchConfig",
    "SplitConfig",
    "StepConfig",
    "StorageConfig",
    "TargetSpec",
    "TaskRuntime",
    "TrackingConfig",
    "ValidateConfig",
    "WindowConfig",
    "as_plain",
    "config_groups",
    "default_config_dir",
    "framework_config_dir",
    "load_config",
]
