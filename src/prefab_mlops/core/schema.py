"""A model's input schema: what a caller must send to a registered model.

One typed object, :class:`InputSchema`: an ordered tuple of :class:`ColumnSpec`
(name, kind, training dtype and, for categorical columns, the training values).
``featurize`` writes it from the training columns and ``conf/features``; the registry
stores it in the manifest (``features.input_schema``, through
:meth:`~prefab_mlops.core.records.Record.to_json`); batch validation, monitoring,
batch scoring, the model server's request validator and its numpy fast path read
it. Nothing else parses the stored form.

JSON layout::

    {"columns": [
        {"name": "distance", "kind": "numeric", "dtype": "int64"},
        {"name": "origin", "kind": "categorical", "dtype": "str",
         "categories": ["EWR", "JFK", "LGA"], "capped": false},
        {"name": "time_hour", "kind": "datetime", "dtype": "datetime64[us, UTC]"}]}
"""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from prefab_mlops.core.records import Record

#: Most categories stored per categorical column: the first ones of the sorted
#: training values. A column with more is marked ``capped``, and its list no longer
#: says which values are unknown.
CATEGORY_CAP = 1000


class ColumnKind(enum.StrEnum):
    """How a model input column is read (by the pipeline, the server and monitoring)."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    DATETIME = "datetime"


@dataclass(frozen=True)
class ColumnSpec(Record):
    """One model input column.

    Attributes:
        name: The column name.
        kind: Numeric, categorical or datetime (``conf/features`` column lists).
        dtype: Its pandas dtype in the training data (``int64``, ``str``,
            ``datetime64[us, UTC]``...); a datetime column's zone comes from it.
        categories: Categorical columns: the training values, as strings, sorted (at
            most :data:`CATEGORY_CAP`). Empty for other kinds.
        capped: Categorical columns: the training data had more distinct values than
            ``categories`` holds.
        remainder: The column is in no ``conf/features`` list: ``remainder:
            passthrough`` hands it to the model, and its kind is its dtype's.
    """

    name: str
    kind: ColumnKind
    dtype: str
    categories: tuple[str, ...] = ()
    capped: bool = False
    remainder: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ColumnKind):
            object.__setattr__(self, "kind", ColumnKind(self.kind))
        if self.kind is not ColumnKind.CATEGORICAL and (self.categories or self.capped):
            raise ValueError(f"column '{self.name}' is {self.kind.value}, so it has no "
                             "categories")
        if len(self.categories) > CATEGORY_CAP:
            raise ValueError(f"column '{self.name}' has {len(self.categories)} categories; "
                             f"at most {CATEGORY_CAP} are stored")
        try:
            self.tz  # noqa: B018 - a zone the reader cannot resolve is refused here, once
        except (KeyError, ValueError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"column '{self.name}' has dtype {self.dtype!r}, whose time zone "
                             f"is unknown here ({exc})") from None

    @classmethod
    def categorical(cls, name: str, values: Iterable[Any], dtype: str = "str",
                    remainder: bool = False) -> ColumnSpec:
        """A categorical column from its non-missing training values.

        The values are read as strings (as the pipeline reads them), de-duplicated,
        sorted and capped at :data:`CATEGORY_CAP`.
        """
        cats = sorted({str(v) for v in values})
        return cls(name, ColumnKind.CATEGORICAL, dtype, tuple(cats[:CATEGORY_CAP]),
                   capped=len(cats) > CATEGORY_CAP, remainder=remainder)

    @cached_property
    def known_categories(self) -> frozenset[str] | None:
        """The values a categorical column was trained on, or None when that list
        cannot tell an unknown value (the list is capped or empty, or not categorical)."""
        if self.kind is not ColumnKind.CATEGORICAL or self.capped or not self.categories:
            return None
        return frozenset(self.categories)

    @cached_property
    def tz(self) -> _dt.tzinfo | None:
        """The zone of a datetime column in training; None for a naive one.

        ``datetime64[us, UTC]`` → UTC, ``datetime64[ns]`` → naive, and anything else
        (strings that ``DatetimeParts`` parses) → UTC. None for other kinds.
        """
        if self.kind is not ColumnKind.DATETIME:
            return None
        dtype = self.dtype
        if dtype.startswith("datetime64"):
            inner = dtype[dtype.index("[") + 1: -1] if "[" in dtype else ""
            if "," not in inner:
                return None
            name = inner.split(",", 1)[1].strip()
            return _dt.UTC if name.upper() in ("UTC", "Z", "+00:00") else ZoneInfo(name)
        return _dt.UTC

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind.value, "dtype": self.dtype}
        if self.kind is ColumnKind.CATEGORICAL:
            out.update(categories=list(self.categories), capped=self.capped)
        if self.remainder:
            out["remainder"] = True
        return out


@dataclass(frozen=True)
class InputSchema(Record):
    """The model's input columns, in the order ``featurize`` lists them.

    Iterating yields the :class:`ColumnSpec` objects; ``schema[name]`` looks one up.
    """

    columns: tuple[ColumnSpec, ...] = ()

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for spec in self.columns:
            if spec.name in seen:
                raise ValueError(f"column '{spec.name}' is listed twice")
            seen.add(spec.name)

    @cached_property
    def _by_name(self) -> dict[str, ColumnSpec]:
        return {spec.name: spec for spec in self.columns}

    @cached_property
    def names(self) -> tuple[str, ...]:
        """The input column names, in order."""
        return tuple(spec.name for spec in self.columns)

    def names_of(self, kind: ColumnKind) -> list[str]:
        """The names of the columns of one kind, in order."""
        return [spec.name for spec in self.columns if spec.kind is kind]

    def __len__(self) -> int:
        return len(self.columns)

    def __iter__(self) -> Iterator[ColumnSpec]:
        return iter(self.columns)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> ColumnSpec:
        """The column called ``name``.

        Raises:
            KeyError: it is not an input column.
        """
        return self._by_name[name]
