"""Request validation against a registered model's input schema.

The version's :class:`~prefab_mlops.core.schema.InputSchema` (its manifest's
``features.input_schema``) is wrapped once per loaded model in a :class:`RecordValidator`.
Validation is done in plain Python (no pydantic model per request: the schema
is only known at run time and changes with every promoted version) and yields
the rows *column-wise*, normalised for the model:

* ``numeric``: JSON numbers; ``null`` is a missing value (the pipeline imputes it);
  booleans and strings are type errors.
* ``categorical``: JSON strings; ``null`` is missing. A value outside the training
  categories (when the stored list is complete, see ``ColumnSpec.known_categories``)
  is rejected (``unknown_category="reject"``, 422 naming the field and
  the allowed values) or accepted and flagged (``"accept"``: the model's own
  unseen-value handling applies, the response carries a warning).
* ``datetime``: ISO 8601 strings (``2013-01-01T05:00:00Z``, ``2013-01-01 05:00:00``,
  ``2013-01-01``); ``null`` is missing. Values are converted to the time zone of
  the training column (``ColumnSpec.tz``); a value without an offset is read as UTC, as
  :class:`prefab_mlops.core.transformers.DatetimeParts` reads strings. Only instants
  from :data:`DATETIME_MIN` to :data:`DATETIME_MAX` are accepted (within what a
  pandas ``datetime64[ns]`` column holds, whichever pandas version scores).

A field that is missing from a record is an error (send ``null`` for a missing
value). Fields that are not model inputs but were columns of the training data
(``data.columns`` in the manifest, e.g. ids) are accepted and kept for the request
log; any other field is rejected (or ignored with ``extra_fields="ignore"``).
Every problem is collected (up to :data:`MAX_ERRORS`), then reported at once.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import reprlib
from dataclasses import dataclass, field
from typing import Any

from prefab_mlops.core.schema import ColumnKind, ColumnSpec, InputSchema
from prefab_mlops.serve.errors import RequestInvalid

MAX_ERRORS = 50
#: Most records accepted in one request unless the server is started with another
#: ``--max-rows`` (the default of ``ServeSettings.max_rows``).
MAX_ROWS = 1000
_NUMERIC = ColumnKind.NUMERIC  # module names: the per-value loops look them up often
_CATEGORICAL = ColumnKind.CATEGORICAL
_NUMBER_TYPES = frozenset({int, float, type(None)})
_STRING_TYPES = frozenset({str, type(None)})
_DT_CACHE = 4096  # parsed datetime strings kept per model (requests repeat timestamps)
_SHOW_CATEGORIES = 40  # allowed values listed in one error message
_UTC = _dt.UTC
# Accepted date-times: whole days inside pandas' nanosecond range
# (1677-09-21T00:12:43.145224193 to 2262-04-11T23:47:16.854775807), compared as UTC
# instants, or as wall clock for a naive training column.
DATETIME_MIN = _dt.datetime(1677, 9, 22)
DATETIME_MAX = _dt.datetime(2262, 4, 10, 23, 59, 59, 999999)
_DT_MIN_UTC = DATETIME_MIN.replace(tzinfo=_UTC)
_DT_MAX_UTC = DATETIME_MAX.replace(tzinfo=_UTC)
_DT_RANGE = f"{DATETIME_MIN:%Y-%m-%d} to {DATETIME_MAX:%Y-%m-%d}"
_PREVIEW_CHARS = 40  # most characters of a user value quoted in a message


@dataclass
class Validated:
    """Valid rows, column-wise.

    Attributes:
        columns: Model input column → one normalised value per row (``None`` = missing).
        extras: Accepted non-input fields → one value per row (for the request log).
        rows: Number of rows.
        warnings: Flags raised on accepted rows (unknown categories in ``accept`` mode).
    """

    columns: dict[str, list[Any]]
    extras: dict[str, list[Any]]
    rows: int
    warnings: list[dict[str, Any]] = field(default_factory=list)


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.total = 0

    def add(self, loc: tuple[Any, ...], msg: str, kind: str, **ctx: Any) -> None:
        self.total += 1
        if len(self.items) < MAX_ERRORS:
            err: dict[str, Any] = {"loc": list(loc), "msg": msg, "type": kind}
            if ctx:
                err["ctx"] = ctx
            self.items.append(err)

    def raise_if_any(self) -> None:
        if self.total:
            raise RequestInvalid(self.items, total=self.total)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class _Preview(reprlib.Repr):
    """``repr`` with bounded depth, width and length, for values quoted in messages.

    Never recurses more than two levels into a value (a body may nest ~1000 deep),
    never formats a huge int, never sorts an object's keys.
    """

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 2
        self.maxlist = self.maxtuple = self.maxdict = 3
        self.maxstring = self.maxlong = self.maxother = _PREVIEW_CHARS

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # formatting is quadratic, refused beyond 4300 digits
            return f"<{x.bit_length()}-bit integer>"
        return super().repr_int(x, level)

    def repr_dict(self, x: dict, level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{" + self.fillvalue + "}"
        pieces = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
                  for k, v in itertools.islice(x.items(), self.maxdict)]
        if len(x) > self.maxdict:
            pieces.append(self.fillvalue)
        return "{" + ", ".join(pieces) + "}"


_PREVIEWER = _Preview()


def preview(value: Any) -> str:
    """A short ``repr`` of a user value for an error message: at most 40 characters,
    safe for any JSON value (deeply nested, huge, very long)."""
    text = _PREVIEWER.repr(value)
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 3] + "..."


class RecordValidator:
    """Validate JSON records against one model's input schema.

    Args:
        schema: The version's input schema (its manifest's ``features.input_schema``).
        data_columns: The manifest's ``data.columns`` (training data columns);
            non-input ones are accepted as extra fields.
        target: The target column name (never accepted as an input).
        unknown_category: ``reject`` or ``accept`` (settings ``unknown_category``).
        extra_fields: ``reject`` or ``ignore`` (settings ``extra_fields``).
        max_rows: Most records per request (settings ``max_rows``).
    """

    def __init__(self, schema: InputSchema, data_columns: list[str], target: str | None,
                 unknown_category: str = "reject", extra_fields: str = "reject",
                 max_rows: int = MAX_ROWS) -> None:
        self.schema = schema
        self.specs: tuple[ColumnSpec, ...] = schema.columns
        self.names = schema.names
        self._inputs = frozenset(self.names)
        self.extra_names = tuple(c for c in data_columns
                                 if c not in self._inputs and c != target)
        self._extras = frozenset(self.extra_names)
        self.unknown_category = unknown_category
        self.extra_fields = extra_fields
        self.max_rows = max_rows
        self._dt_cache: dict[str, dict[str, Any]] = {}  # column -> text -> parsed

    # ------------------------------------------------------------- shape
    def records(self, payload: Any) -> tuple[list[Any], tuple[Any, ...], bool]:
        """The list of records in a parsed body, the ``loc`` prefix, and single-ness.

        Accepted bodies: one record (an object), an array of records, or
        ``{"records": [...]}``.

        Raises:
            RequestInvalid: not an object/array, empty, or more than ``max_rows``.
        """
        if isinstance(payload, list):
            recs, prefix, single = payload, ("body",), False
        elif isinstance(payload, dict):
            if "records" in payload and "records" not in self._inputs:
                recs, prefix, single = payload["records"], ("body", "records"), False
                if not isinstance(recs, list):
                    raise RequestInvalid([{
                        "loc": list(prefix), "type": "list_type",
                        "msg": f"'records' must be an array of objects, not {_describe(recs)}"}])
                extra = sorted(k for k in payload if k != "records")
                if extra and self.extra_fields == "reject":
                    raise RequestInvalid([{
                        "loc": ["body", extra[0]], "type": "extra_forbidden",
                        "msg": f"unexpected top-level field(s) {preview(extra)} next to "
                               "'records'"}])
            else:
                recs, prefix, single = [payload], ("body",), True
        else:
            raise RequestInvalid([{
                "loc": ["body"], "type": "model_type",
                "msg": "expected one record (a JSON object), an array of records, or "
                       f"{{\"records\": [...]}}; got {_describe(payload)}"}])
        if not recs:
            raise RequestInvalid([{"loc": list(prefix), "type": "too_short",
                                   "msg": "no records: send at least one record"}])
        if len(recs) > self.max_rows:
            raise RequestInvalid([{
                "loc": list(prefix), "type": "too_long",
                "msg": f"{len(recs)} records in one request; at most {self.max_rows} are "
                       "accepted (split the batch, or start the server with a larger "
                       "--max-rows)",
                "ctx": {"max_rows": self.max_rows, "rows": len(recs)}}])
        return recs, prefix, single

    # ------------------------------------------------------------- values
    def validate(self, payload: Any) -> Validated:
        """Validate a parsed request body.

        A column-wise pass accepts the common case (every record holds exactly the
        input fields, with valid values) cheaply; anything else goes through the
        row-by-row pass, which names every problem.

        Raises:
            RequestInvalid: every problem found (up to :data:`MAX_ERRORS`).
        """
        recs, prefix, single = self.records(payload)
        fast = self._columnwise(recs)
        if fast is not None:
            return fast
        return self._rowwise(recs, prefix, single)

    def _columnwise(self, recs: list[Any]) -> Validated | None:
        """The rows column by column if all of them are valid and plain, else ``None``."""
        n_inputs = len(self.specs)
        for rec in recs:
            if type(rec) is not dict or len(rec) != n_inputs:
                return None
        columns: dict[str, list[Any]] = {}
        for spec in self.specs:
            name = spec.name
            try:
                values = [rec[name] for rec in recs]
            except KeyError:
                return None
            kinds = set(map(type, values))
            if spec.kind is _NUMERIC:
                if not kinds <= _NUMBER_TYPES:
                    return None
            elif spec.kind is _CATEGORICAL:
                if not kinds <= _STRING_TYPES:
                    return None
                known = spec.known_categories
                if known is not None and not known.issuperset(
                        v for v in values if v is not None):
                    return None
            else:
                if not kinds <= _STRING_TYPES:
                    return None
                cache = self._dt_cache.setdefault(name, {})
                parsed = [None if v is None else cache.get(v) or self._datetime(v, spec)
                          for v in values]
                for v, ts in zip(values, parsed, strict=True):
                    if v is not None and ts is None:
                        return None
                if len(cache) > _DT_CACHE:
                    cache.clear()
                cache.update((v, ts) for v, ts in zip(values, parsed, strict=True)
                             if v is not None)
                values = parsed
            columns[name] = values
        return Validated(columns, {}, len(recs), [])

    def _rowwise(self, recs: list[Any], prefix: tuple[Any, ...], single: bool) -> Validated:
        n = len(recs)
        errors = _Errors()
        columns: dict[str, list[Any]] = {s.name: [None] * n for s in self.specs}
        extras: dict[str, list[Any]] = {}
        warnings: list[dict[str, Any]] = []
        n_inputs = len(self.specs)
        for i, rec in enumerate(recs):
            base = prefix if single else (*prefix, i)
            if type(rec) is not dict:
                errors.add(base, f"expected a JSON object with the model's input fields, "
                           f"got {_describe(rec)}", "model_type")
                continue
            for spec in self.specs:
                try:
                    v = rec[spec.name]
                except KeyError:
                    errors.add((*base, spec.name), f"field '{spec.name}' is required "
                               f"({spec.kind}; send null for a missing value)", "missing")
                    continue
                if v is None:
                    continue
                kind = spec.kind
                t = type(v)
                if kind is _NUMERIC:
                    if t is int or t is float:
                        columns[spec.name][i] = v
                    else:
                        errors.add((*base, spec.name), f"'{spec.name}' must be a number, "
                                   f"not {_describe(v)} ({preview(v)})", "number_type")
                elif kind is _CATEGORICAL:
                    if t is not str:
                        errors.add((*base, spec.name), f"'{spec.name}' must be a string, "
                                   f"not {_describe(v)} ({preview(v)})", "string_type")
                        continue
                    known = spec.known_categories
                    if known is not None and v not in known:
                        if self.unknown_category == "reject":
                            shown = list(spec.categories[:_SHOW_CATEGORIES])
                            more = len(spec.categories) - len(shown)
                            errors.add((*base, spec.name),
                                       f"'{spec.name}' = {preview(v)} is not a category the "
                                       f"model was trained on; allowed: {shown}"
                                       + (f" and {more} more" if more > 0 else ""),
                                       "unknown_category", allowed=list(spec.categories))
                            continue
                        warnings.append({"row": i, "field": spec.name, "value": v,
                                         "type": "unknown_category"})
                    columns[spec.name][i] = v
                else:
                    parsed = self._datetime(v, spec) if t is str else None
                    if parsed is None:
                        msg, kind, ctx = self._datetime_error(v, spec)
                        errors.add((*base, spec.name), msg, kind, **ctx)
                    else:
                        columns[spec.name][i] = parsed
            if len(rec) != n_inputs or not rec.keys() <= self._inputs:
                for key in rec:
                    if key in self._inputs:
                        continue
                    if key in self._extras:
                        extras.setdefault(key, [None] * n)[i] = rec[key]
                    elif self.extra_fields == "reject":
                        errors.add((*base, key), f"unexpected field {preview(key)}: not an "
                                   f"input of the model; inputs are {list(self.names)}"
                                   + (f", optional extra fields {list(self.extra_names)}"
                                      if self.extra_names else ""), "extra_forbidden")
        errors.raise_if_any()
        return Validated(columns, extras, n, warnings)

    @staticmethod
    def _datetime(value: str, spec: ColumnSpec) -> _dt.datetime | None:
        """``value`` in the training zone; ``None`` if it is not an ISO 8601 date-time
        or not between :data:`DATETIME_MIN` and :data:`DATETIME_MAX`."""
        try:
            ts = _dt.datetime.fromisoformat(value)
            if spec.tz is None:  # naive training column: aware input as UTC wall clock
                if ts.tzinfo is not None:
                    ts = ts.astimezone(_UTC).replace(tzinfo=None)
                return ts if DATETIME_MIN <= ts <= DATETIME_MAX else None
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=_UTC)
            if not _DT_MIN_UTC <= ts <= _DT_MAX_UTC:
                return None
            return ts.astimezone(spec.tz)
        except (ValueError, OverflowError):  # OverflowError: an offset past year 1 or 9999
            return None

    @staticmethod
    def _datetime_error(value: Any, spec: ColumnSpec) -> tuple[str, str, dict[str, str]]:
        """``(msg, type, ctx)`` for a value :meth:`_datetime` refused."""
        if isinstance(value, str):
            try:
                _dt.datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                zone = "" if spec.tz is None else " UTC"
                return (f"'{spec.name}' = {preview(value)} is out of range: expected a "
                        f"date-time from {_DT_RANGE}{zone}", "datetime_range",
                        {"min": DATETIME_MIN.isoformat(), "max": DATETIME_MAX.isoformat()})
        return (f"'{spec.name}' must be an ISO 8601 date-time string such as "
                f"'2013-01-01T05:00:00Z', not {_describe(value)} ({preview(value)})",
                "datetime_parsing", {})
