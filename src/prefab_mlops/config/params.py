"""A function's config parameters, typed by the function's own signature.

The pipeline's groups (``conf/data``, ``conf/model``...) have dataclass schemas. A
project's own step (``conf/steps``) needs none: its ``params`` are the keyword
arguments of its function, and :func:`param_problems` checks them against the
signature before any work starts (unknown keys, missing required keys, wrong basic
types), the way kedro binds a node's inputs.

Examples::

    param_problems(clip_outliers, {"lower_quantile": "low"}, data_args=1)
    # ["'lower_quantile' is 'low', expected <class 'float'>"]
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

_BASIC = (bool, int, float, str, list, dict, tuple)


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


def param_problems(fn: Callable[..., Any], params: dict[str, Any],
                   data_args: int = 1) -> list[str]:
    """What keeps ``params`` from being ``fn``'s keyword arguments (empty: they fit).

    Args:
        fn: The function (``task.fn`` for a Prefect task).
        params: Keyword arguments from the config.
        data_args: How many leading positional parameters are data (not config); ``fn``
            must have at least that many.

    Returns:
        One line per problem: a missing data parameter, an unknown key, a missing
        required key or a value of the wrong basic type.
    """
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - an unresolvable annotation is simply not checked
        hints = {}
    listed = list(sig.parameters.values())
    positional = [p for p in listed[:data_args]
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    problems: list[str] = []
    if len(positional) < data_args:
        problems.append(f"it must take {data_args} positional data argument(s) first; its "
                        f"signature is {sig}")
        return problems
    config_params = listed[data_args:]
    names = {p.name for p in config_params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in config_params)
    if not takes_any:
        problems += [f"unknown key '{k}' (its parameters are {sorted(names)})"
                     for k in params if k not in names]
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
    return problems
