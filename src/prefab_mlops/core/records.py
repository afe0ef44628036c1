"""Typed records to and from JSON: one parser, and errors that name the field.

What one layer stores for another (a model's input schema, a registry manifest) is a
tree of dataclasses deriving from :class:`Record`. ``to_json()`` gives plain JSON
values; ``from_json()`` checks every field against its annotation and raises
:class:`~prefab_mlops.core.errors.ContractError` naming the first field that does not
fit by its dotted path (``features.input_schema.columns[2].kind``). A field the
record does not have is refused; a field left out takes its default (a required one
is refused). A record's own ``__post_init__`` checks (``ValueError``) are reported
at the record's path.

Annotations understood: ``str``, ``int``, ``float`` (an integer is accepted),
``bool``, ``Any``, unions such as ``X | None``, ``list[X]``, ``tuple[X, ...]``,
``dict[str, X]``, :class:`enum.Enum` subclasses (stored by value) and nested
:class:`Record` dataclasses.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import reprlib
import types
import typing
from typing import Any, Self, cast

from prefab_mlops.core.errors import ContractError


class Record:
    """Base of the typed JSON records (each subclass is a dataclass)."""

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON values (objects, arrays, strings, numbers, null)."""
        return {f.name: dump(getattr(self, f.name)) for f in dataclasses.fields(cast(Any, self))}

    @classmethod
    def from_json(cls, data: Any, path: str = "") -> Self:
        """Parse what :meth:`to_json` wrote.

        Args:
            data: The decoded JSON value.
            path: Where ``data`` sits in the enclosing record, for error messages.

        Raises:
            ContractError: a field is missing, unknown, or of the wrong type or value.
        """
        return _load_record(cls, data, path)


def dump(value: Any) -> Any:
    """``value`` (a record, an enum, containers of them, or a plain value) as JSON values."""
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {str(k): dump(v) for k, v in value.items()}
    return value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _short(data: Any) -> str:
    """A bounded ``repr`` of a stored value, for an error message."""
    r = reprlib.Repr()
    r.maxstring = r.maxother = 40
    r.maxlist = r.maxdict = 3
    r.maxlevel = 2
    return r.repr(data)


def _found(data: Any) -> str:
    kind = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(data))
    return "null" if data is None else f"{_short(data)} ({kind or type(data).__name__})"


def _wrong(path: str, expected: str, data: Any) -> ContractError:
    return ContractError(f"field '{path or '(root)'}': expected {expected}, found "
                         f"{_found(data)}", path)


def _name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
                type(None): "null"}.get(tp, tp.__name__)
    return str(tp).replace("typing.", "")


def load(tp: Any, data: Any, path: str) -> Any:
    """``data`` checked against the annotation ``tp`` and converted to it.

    Raises:
        ContractError: ``data`` does not fit ``tp``; names ``path``.
    """
    if tp is Any:
        return data
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        if data is None and len(arms) < len(typing.get_args(tp)):
            return None
        if len(arms) == 1:  # X | None: X's own error names the deeper field
            return load(arms[0], data, path)
        for arm in arms:
            try:
                return load(arm, data, path)
            except ContractError:
                continue
        raise _wrong(path, " or ".join(_name(a) for a in typing.get_args(tp)), data)
    if origin is list or origin is tuple:
        args = typing.get_args(tp)
        if origin is tuple and (len(args) != 2 or args[1] is not Ellipsis):
            raise TypeError(f"records support tuple[X, ...] only, not {tp!r}")
        if not isinstance(data, list):
            raise _wrong(path, "an array", data)
        if args[0] is str and all(type(v) is str for v in data):  # category lists: fast
            items = list(data)
        else:
            items = [load(args[0], v, f"{path}[{i}]") for i, v in enumerate(data)]
        return items if origin is list else tuple(items)
    if origin is dict:
        key, value = typing.get_args(tp)
        if key is not str:
            raise TypeError(f"records support dict[str, X] only, not {tp!r}")
        if not isinstance(data, dict):
            raise _wrong(path, "an object", data)
        return {k: load(value, v, _join(path, k)) for k, v in data.items()}
    if not isinstance(tp, type):
        raise TypeError(f"records do not support the annotation {tp!r}")
    if issubclass(tp, Record):
        return tp.from_json(data, path)
    if issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            raise _wrong(path, f"one of {[m.value for m in tp]}", data) from None
    if tp is bool:
        ok = type(data) is bool
    elif tp is int:
        ok = isinstance(data, int) and type(data) is not bool
    elif tp is float:
        if isinstance(data, (int, float)) and type(data) is not bool:
            return float(data)
        ok = False
    elif tp is str:
        ok = isinstance(data, str)
    else:
        raise TypeError(f"records do not support the annotation {tp!r}")
    if not ok:
        raise _wrong(path, _name(tp), data)
    return data


@functools.cache
def _fields(cls: type[Any]) -> dict[str, tuple[Any, bool]]:
    """A record class's fields: name → (resolved annotation, required). Computed once
    per class (resolving string annotations is most of a parse's cost otherwise)."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(cls) if f.init}


def _load_record(cls: type[Any], data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise _wrong(path, f"an object ({cls.__name__})", data)
    known = _fields(cls)
    unknown = [k for k in data if k not in known]
    if unknown:
        where = _join(path, str(unknown[0]))
        raise ContractError(f"field '{where}' is not a field of {cls.__name__} (its fields: "
                            f"{', '.join(known)})", where)
    kwargs: dict[str, Any] = {}
    for name, (tp, required) in known.items():
        where = _join(path, name)
        if name in data:
            kwargs[name] = load(tp, data[name], where)
        elif required:
            raise ContractError(f"field '{where}' is missing ({cls.__name__} requires it)",
                                where)
    try:
        return cls(**kwargs)
    except ValueError as exc:  # the record's own checks (__post_init__)
        raise ContractError(f"field '{path or '(root)'}': {exc}", path) from None
