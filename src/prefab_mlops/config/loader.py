"""Loading a config: compose with Hydra, merge into the schema, resolve, check.

Nothing here touches data; loading a config never starts Prefect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from prefab_mlops.config.checks import (
    _check_choices,
    _check_consistency,
    _check_read,
    _check_targets,
    _check_timezone,
)
from prefab_mlops.config.schema import PipelineConfig
from prefab_mlops.core.errors import ConfigError

CONFIG_DIR_ENV = "PREFAB_CONFIG_DIR"
ROOT_ENV = "PREFAB_PROJECT_ROOT"
SCHEMAS: dict[str, type] = {"pipeline": PipelineConfig}


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
    _check_read(obj)
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
        fix = (f"Remove or rename '{key}'; see the schema in prefab_mlops/config/schema.py "
               "for valid keys.")
    elif kind == "MissingMandatoryValue":
        fix = f"Set '{key}' in its YAML file or on the command line ({key}=...)."
    else:
        fix = f"Give '{key}' a value of the type declared in prefab_mlops/config/schema.py."
    return ConfigError(f"Invalid config at '{key}': {msg}", fix=fix)
