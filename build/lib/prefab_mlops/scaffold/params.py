"""Config groups of project-specific tasks, typed by the task's own signature.

The pipeline's groups (``conf/data``, ``conf/model``...) have dataclass schemas in
:mod:`prefab_mlops.config`. A task added to a project (``templates/task``) needs no
dataclass: its group ``conf/<task>/<option>.yaml`` holds the keyword arguments of
the task function, and :func:`bind_params` checks them against the signature before
any work starts (unknown keys, missing required keys, wrong basic types), the way
kedro binds a node's inputs.

Examples::

    params = load_params("clip_outliers")                 # conf/clip_outliers/default.yaml
    kwargs = bind_params(clip_outliers.fn, params, "conf/clip_outliers/default.yaml")
    clip_outliers(frame, **kwargs)
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefab_mlops.core.errors import ConfigError

_BASIC = (bool, int, float, str, list, dict, tuple)


def load_params(group: str, option: str = "default", config_dir: str | Path | None = None,
                overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose ``conf/<group>/<option>.yaml`` with Hydra and return it resolved.

    Args:
        group: The task's config group (``conf/<group>/``).
        option: The YAML file in the group, without ``.yaml``.
        config_dir: The project's ``conf/`` (default:
            :func:`prefab_mlops.config.default_config_dir`).
        overrides: Hydra overrides of the group's keys, e.g. ``["upper=0.99"]``.

    Returns:
        The plain, fully resolved parameters.

    Raises:
        ConfigError: the file is missing or does not compose.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from prefab_mlops.config import default_config_dir

    conf = Path(config_dir).expanduser().resolve() if config_dir else default_config_dir()
    path = conf / group / f"{option}.yaml"
    if not path.is_file():
        have = sorted(p.stem for p in (conf / group).glob("*.yaml"))
        raise ConfigError(f"No config '{group}/{option}.yaml' in {conf} (options: {have}).",
                          fix=f"Create {path} or pick one of the options.")
    # A primary config in a group dir composes under the group's package: its keys
    # are `<group>.<key>`, so plain `key=value` overrides are prefixed.
    scoped = [_scoped(o, group) for o in overrides]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose(config_name=f"{group}/{option}", overrides=scoped)
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"Could not load {path}: {exc}",
                          fix="Check the YAML and the override spelling.") from None
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(container, dict)
    inner = container.get(group) if set(container) == {group} else container
    return {str(k): v for k, v in (inner or {}).items()}


def _scoped(override: str, group: str) -> str:
    prefix = override[:len(override) - len(override.lstrip("+~"))]
    rest = override[len(prefix):]
    return override if rest.startswith(f"{group}.") else f"{prefix}{group}.{rest}"


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether ``value`` fits a basic annotation; anything fancier is not checked."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    target = origin or annotation
    if target in (list, tuple, Sequence):
        return isinstance(value, (list, tuple))
    if target is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if target is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if target in _BASIC:
        return isinstance(value, target)
    return True


def bind_params(fn: Callable[..., Any], params: dict[str, Any], source: str,
                data_args: int = 1) -> dict[str, Any]:
    """Check config ``params`` against ``fn``'s keyword parameters.

    Args:
        fn: The task function (``task.fn`` for a Prefect task).
        params: Keyword arguments from the config group.
        source: Where the params came from, for the message (``conf/<group>/x.yaml``).
        data_args: How many leading positional parameters are data (not config).

    Returns:
        ``params`` unchanged, once they fit.

    Raises:
        ConfigError: listing every unknown key, missing required key and wrong type.
    """
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn)
    config_params = list(sig.parameters.values())[data_args:]
    names = {p.name for p in config_params}
    problems = [f"unknown key '{k}'" for k in params if k not in names]
    for p in config_params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name not in params:
            if p.default is p.empty:
                problems.append(f"missing required key '{p.name}'")
            continue
        expected = hints.get(p.name, p.annotation)
        if not _accepts(expected, params[p.name]):
            problems.append(f"'{p.name}' is {params[p.name]!r}, expected {expected}")
    if problems:
        raise ConfigError(
            f"{source} does not fit {fn.__module__}.{fn.__qualname__}: " + "; ".join(problems)
            + f". Its config parameters are {sorted(names)}.",
            fix=f"Edit {source} so that its keys are keyword parameters of the task.")
    return params
