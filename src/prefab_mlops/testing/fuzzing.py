"""Hypothesis strategies for fuzzing what users feed prefab-mlops: data files, data
frames against a data contract, and request bodies for the model server.

Used by the property tests (``tests/tasks/test_ingest_fuzz.py``,
``tests/tasks/test_validate_fuzz.py``, ``tests/serve/test_serve_fuzz.py``) and by
``bench/fuzz.py``, which runs the same properties with more examples and counts the
cases. Needs the ``[dev]`` extra (hypothesis).

The invariant they all check: bad input ends in a :class:`~prefab_mlops.core.errors.
PrefabError` (or an HTTP 4xx) that names the file, column or field and says how to
fix it; never another exception, a 5xx, a hang or a traceback shown to the client.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from prefab_mlops.config import (
    ColumnRule,
    DataConfig,
    ReadConfig,
    TargetSpec,
    ValidateConfig,
    WindowConfig,
)
from prefab_mlops.core.errors import PrefabError

#: Column names that have broken CSV readers and schema checks elsewhere.
NASTY_NAMES = ("", " ", "Unnamed: 0", "a,b", 'quote"d', "new\nline", "tab\tname",
               "semi;colon", "pipe|x", "ünïcödé", "名前", "🙂", "\u202ertl", "e\u0301",
               "NaN", "null", "1", "True", "\ufeffbom", "x" * 300, "dup", "dup")
#: Values that have broken parsers: special floats, huge and odd strings.
NASTY_VALUES = (float("nan"), float("inf"), float("-inf"), 1e308, -0.0, 2**63, -(2**63) - 1,
                "", " ", "NaN", "inf", "null", "None", "1e999", "0x1F", "١٢٣", "\x00",
                '"', '""', "a,b", "line\nbreak", "\r", "🙂" * 50, "\u202e", "x" * 100_000,
                "2013-01-01T05:00:00Z", "0001-01-01", "9999-12-31T23:59:59+14:00", True, None)
#: Values a client sends for a number, a category or a date-time by mistake.
NEAR_MISSES = ("5", "5.0", " 5", "1e3", "1_000", 5, 5.5, -1, 0, True, "true", "EWR", "ewr",
               ["EWR"], {"code": "EWR"}, "2013-01-01", "2013-01-01T05:00", "2013-01-01 05:00:00",
               "2013-01-01T05:00:00.123456789+05:30", "2013-13-45T99:00:00Z", "T05:00",
               1356998400, 1356998400000, "1356998400", "2013-01-01T05:00:00Z[UTC]",
               "+002013-01-01T00:00:00Z", "2013-W01-1", "2013-001", "now", "")
SEPARATORS = (",", ";", "\t", "|")
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1")


def column_names(max_size: int = 6) -> st.SearchStrategy[list[str]]:
    """Column names: identifiers, any unicode, and :data:`NASTY_NAMES` (duplicates too)."""
    name = st.one_of(st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True),
                     st.text(max_size=12), st.sampled_from(NASTY_NAMES))
    return st.lists(name, min_size=1, max_size=max_size)


def _values(kind: str, n: int) -> st.SearchStrategy[list[Any]]:
    """``n`` values of one kind of column."""
    scalar: dict[str, st.SearchStrategy[Any]] = {
        "int": st.integers(-(2**70), 2**70),
        "small_int": st.integers(-5, 30),
        "float": st.floats(allow_nan=True, allow_infinity=True),
        "bool": st.booleans(),
        "text": st.text(max_size=30),
        "category": st.sampled_from(["EWR", "JFK", "LGA", "ewr", "JFK ", ""]),
        "datetime": st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 1, 1),
                                 timezones=st.one_of(st.none(), st.just(dt.UTC))),
        "nasty": st.sampled_from(NASTY_VALUES),
    }
    if kind == "mixed":
        each = st.one_of(*scalar.values(), st.none())
    else:
        each = st.one_of(scalar[kind], st.none()) if kind != "nasty" else scalar[kind]
    return st.lists(each, min_size=n, max_size=n)


@st.composite
def frames(draw: st.DrawFn, max_rows: int = 12, max_columns: int = 6) -> pd.DataFrame:
    """A DataFrame of any column names and column kinds (mixed, null, nasty values)."""
    names = draw(column_names(max_columns))
    n = draw(st.integers(0, max_rows))
    kinds = ("int", "small_int", "float", "bool", "text", "category", "datetime", "nasty",
             "mixed")
    columns = []
    for _ in names:
        kind = draw(st.sampled_from(kinds))
        values = draw(_values(kind, n))
        dtype = draw(st.sampled_from([None, "object", "category", "string"]))
        series = pd.Series(values, dtype=object)
        if dtype is None:
            series = pd.Series(values) if n else series
        elif dtype != "object":
            try:
                series = series.astype(dtype)
            except (TypeError, ValueError):
                pass
        columns.append(series)
    frame = pd.concat(columns, axis=1) if columns else pd.DataFrame()
    frame.columns = names
    return frame


def _encodable(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class DataFile:
    """A generated data file: its name (the suffix matters) and its bytes."""

    name: str
    content: bytes
    how: str  # how it was made, for failure reports

    def __repr__(self) -> str:
        return f"DataFile({self.name!r}, {len(self.content)} bytes, {self.how})"


def _mutate(data: bytes, draw: st.DrawFn) -> tuple[bytes, str]:
    """Byte-level damage: truncation, inserted or replaced bytes, a lost separator."""
    how = draw(st.sampled_from(["truncate", "insert", "replace", "drop_sep", "append",
                                "crlf", "nul"]))
    if not data:
        return draw(st.binary(max_size=64)), "random"
    at = draw(st.integers(0, len(data)))
    if how == "truncate":
        return data[:at], f"truncated at {at}"
    if how == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:], f"insert@{at}"
    if how == "replace":
        return data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at + 4:], f"repl@{at}"
    if how == "drop_sep":
        i = data.find(b",", at)
        return (data[:i] + data[i + 1:], f"drop sep@{i}") if i >= 0 else (data, "unchanged")
    if how == "append":
        return data + draw(st.binary(min_size=1, max_size=64)), "append"
    if how == "crlf":
        return data.replace(b"\n", b"\r\n").replace(b"\r\r", b"\r"), "crlf"
    return data[:at] + b"\x00" + data[at:], f"nul@{at}"


@st.composite
def data_files(draw: st.DrawFn, seed_frames: st.SearchStrategy[pd.DataFrame] | None = None
               ) -> DataFile:
    """A data file as users send them: CSV in any separator and encoding, compressed or
    not, Parquet under any name, damaged bytes, or random bytes.

    Args:
        seed_frames: Frames to write (default :func:`frames`); e.g. mutated real rows.
    """
    source = seed_frames if seed_frames is not None else frames()
    kind = draw(st.sampled_from(["csv", "csv", "csv", "parquet", "damaged", "random"]))
    if kind == "random":
        return DataFile(draw(st.sampled_from(["r.csv", "r.parquet", "r.csv.gz", "r.txt"])),
                        draw(st.binary(max_size=512)), "random bytes")
    frame = draw(source)
    if kind == "parquet":
        buf = io.BytesIO()
        try:
            frame.to_parquet(buf, index=False)
        except Exception:  # noqa: BLE001 - pyarrow refuses mixed/odd columns: write CSV
            kind = "csv"
        else:
            name = draw(st.sampled_from(["p.parquet", "p.csv", "p.bin"]))
            return DataFile(name, buf.getvalue(), "parquet")
    sep = draw(st.sampled_from(SEPARATORS))
    encoding = draw(st.sampled_from(ENCODINGS))
    try:
        text = frame.to_csv(index=False, sep=sep)
    except Exception:  # noqa: BLE001 - pandas cannot write some odd frames: write their text
        text = frame.astype(str).to_csv(index=False, sep=sep)
    if not _encodable(text, encoding):
        encoding = "utf-8"
    content = text.encode(encoding)
    suffix = draw(st.sampled_from([".csv", ".csv", ".tsv", ".txt", ".csv.gz", ".csv.zip"]))
    if suffix == ".csv.gz":
        import gzip

        content = gzip.compress(content, mtime=0)
    elif suffix == ".csv.zip":
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("data.csv", content)
        content = buf.getvalue()
    how = f"csv sep={sep!r} encoding={encoding}"
    if kind == "damaged":
        content, damage = _mutate(content, draw)
        how += f" {damage}"
    return DataFile(f"f{suffix}", content, how)


@st.composite
def read_configs(draw: st.DrawFn) -> ReadConfig:
    """``data.read``: mostly ``auto``, sometimes a (possibly wrong) explicit choice."""
    return ReadConfig(encoding=draw(st.sampled_from(["auto", "auto", "utf-8", "cp1252",
                                                     "utf-16"])),
                      sep=draw(st.sampled_from(["auto", "auto", "comma", "semicolon", "tab"])))


@st.composite
def data_configs(draw: st.DrawFn, data: DataConfig) -> DataConfig:
    """``conf/data`` for a generated file, from ``data``: format, ``data.read``, and,
    now and then, preparation keys naming columns that may or may not be there."""
    name = st.sampled_from(["a", "dup", "", "time_hour", "distance", "名前", "1"])
    plain = draw(st.integers(0, 3)) > 0  # mostly: read the file as it is
    time_column = None if plain else draw(st.one_of(st.none(), name))
    window = WindowConfig(newest=draw(st.sampled_from([None, "month", "day"])),
                          start=draw(st.sampled_from([None, "2013-06-01", "0001-01-01"])),
                          timezone=draw(st.sampled_from([None, "America/New_York"])))
    return dataclasses.replace(
        data, name="fuzz", format=draw(st.sampled_from(["auto", "auto", "csv", "parquet"])),
        read=draw(read_configs()), parse_dates=draw(st.lists(name, max_size=2)),
        dropna=[] if plain else draw(st.lists(name, max_size=1)), derive={},
        columns=None if plain else draw(st.one_of(st.none(), st.lists(name, max_size=2))),
        time_column=time_column,
        window=WindowConfig() if plain else window,
        sample_rows=draw(st.sampled_from([None, 1, 5])), snapshot=True)



# ------------------------------------------------------------------- real rows
def damaged_rows(rows: pd.DataFrame) -> st.SearchStrategy[pd.DataFrame]:
    """Real rows with some cells, a column's type or a header damaged."""

    @st.composite
    def build(draw: st.DrawFn) -> pd.DataFrame:
        frame = rows.copy()
        for _ in range(draw(st.integers(1, 3))):
            pos = draw(st.integers(0, frame.shape[1] - 1))
            how = draw(st.sampled_from(["cells", "column", "rename", "drop", "duplicate",
                                        "empty"]))
            if how == "cells" and len(frame):
                idx = draw(st.lists(st.integers(0, len(frame) - 1), min_size=1, max_size=5))
                value = draw(st.one_of(st.sampled_from(NASTY_VALUES), st.text(max_size=20),
                                       st.integers(-(2**70), 2**70), st.floats()))
                cells = frame.iloc[:, pos].astype(object).to_numpy(copy=True)
                for i in idx:
                    cells[i] = value
                frame = _with_column(frame, pos, cells)
            elif how == "column":
                values = draw(_values(draw(st.sampled_from(["text", "float", "bool", "mixed",
                                                            "nasty", "datetime"])),
                                      len(frame)))
                frame = _with_column(frame, pos, np.array(values + [None], dtype=object)[:-1])
            elif how == "rename":
                names = list(frame.columns)
                names[pos] = draw(st.sampled_from(NASTY_NAMES))
                frame.columns = names
            elif how == "drop" and frame.shape[1] > 1:
                frame = frame.iloc[:, [i for i in range(frame.shape[1]) if i != pos]]
            elif how == "duplicate":
                frame = pd.concat([frame, frame.iloc[:, [pos]]], axis=1)
            elif how == "empty":
                frame = frame.iloc[0:0]
        return frame

    return build()


def _with_column(frame: pd.DataFrame, pos: int, values: np.ndarray) -> pd.DataFrame:
    """``frame`` with the column at ``pos`` replaced (duplicate names allowed)."""
    parts = [frame.iloc[:, i] for i in range(frame.shape[1])]
    parts[pos] = pd.Series(values, index=frame.index, dtype=object)
    out = pd.concat(parts, axis=1)
    out.columns = frame.columns
    return out


# -------------------------------------------------------------------- contracts
@st.composite
def contracts(draw: st.DrawFn, frame: pd.DataFrame) -> tuple[ValidateConfig, TargetSpec]:
    """A data contract (``conf/validate``) and a target for ``frame``: rules on its own
    columns and on absent ones, bounds of any float, allowed lists of mixed types."""
    names = [str(c) for c in frame.columns] or ["x"]
    name = st.one_of(st.sampled_from(names), st.sampled_from(NASTY_NAMES))
    bound = st.one_of(st.none(), st.floats(allow_nan=False), st.integers(-10, 10))
    rule = st.builds(
        ColumnRule,
        dtype=st.sampled_from([None, "int", "float", "number", "bool", "datetime", "str",
                               "category"]),
        nullable=st.booleans(), min=bound, max=bound,
        allowed=st.one_of(st.none(), st.lists(st.one_of(st.text(max_size=5), st.integers(),
                                                        st.booleans(), st.none()),
                                              max_size=4)),
        unique=st.booleans(), required=st.booleans())
    columns = draw(st.dictionaries(name, rule, max_size=5))
    cfg = ValidateConfig(on_failure=draw(st.sampled_from(["fail", "warn"])),
                         min_rows=draw(st.integers(0, 20)), strict=draw(st.booleans()),
                         columns=columns,
                         unique=draw(st.lists(st.lists(name, min_size=1, max_size=3),
                                              max_size=2)),
                         max_examples=draw(st.integers(1, 5)))
    target = TargetSpec(name=draw(name),
                        problem_type=draw(st.sampled_from(["binary", "multiclass",
                                                           "regression"])))
    return cfg, target


# --------------------------------------------------------------- request bodies
def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value, nested a little, with huge numbers and unicode."""
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**80), 2**80),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                     st.sampled_from([v for v in NASTY_VALUES
                                      if isinstance(v, str) and len(v) < 1000]))
    return st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
        max_leaves=8)


@st.composite
def predict_bodies(draw: st.DrawFn, record: dict[str, Any]) -> bytes:
    """A ``POST /predict`` body built from a valid ``record``: fields dropped, retyped,
    renamed or added; records wrapped in lists or ``{"records": ...}``; raw hostile
    JSON text (NaN, duplicate keys, invalid UTF-8, truncation)."""
    fields = list(record)
    rec = dict(record)
    for _ in range(draw(st.integers(0, 4))):
        how = draw(st.sampled_from(["value", "drop", "extra", "null", "nasty", "near"]))
        field = draw(st.sampled_from(fields))
        if how == "value":
            rec[field] = draw(json_values())
        elif how == "drop":
            rec.pop(field, None)
        elif how == "extra":
            rec[draw(st.one_of(st.text(max_size=10), st.sampled_from(NASTY_NAMES)))] = draw(
                json_values())
        elif how == "null":
            rec[field] = None
        elif how == "near":
            rec[field] = draw(st.sampled_from(NEAR_MISSES))
        else:
            value = draw(st.sampled_from(NASTY_VALUES))
            rec[field] = value if not isinstance(value, float) or np.isfinite(value) else None
    shape = draw(st.sampled_from(["one", "list", "records", "many", "any"]))
    body: Any = {"one": rec, "list": [rec] * draw(st.integers(0, 3)),
                 "records": {"records": [rec]}, "many": [rec] * draw(st.integers(1, 1200)),
                 "any": draw(json_values())}[shape]
    raw = json.dumps(body, default=str).encode()
    damage = draw(st.sampled_from(["none", "none", "none", "truncate", "nan", "dupkey",
                                   "latin1", "bytes"]))
    if damage == "truncate" and raw:
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif damage == "nan":
        raw = raw.replace(b"null", b"NaN", 1)
    elif damage == "dupkey" and raw.startswith(b"{") and len(raw) > 2:
        raw = b'{"month": 1, ' + raw[1:]
    elif damage == "latin1":
        raw = raw.replace(b'"', b'"\xe9', 1)
    elif damage == "bytes":
        raw = draw(st.binary(max_size=64))
    return raw


# ------------------------------------------------------------------- invariants
def assert_clear_error(err: BaseException, *names: str) -> None:
    """``err`` is a :class:`PrefabError` with a fix whose message names one of ``names``
    (the file, or the config key that caused it).

    Raises:
        AssertionError: any other exception (re-raised as its cause), or a vague one.
    """
    if not isinstance(err, PrefabError):
        raise AssertionError(f"{type(err).__name__} instead of a PrefabError: {err}") from err
    assert err.fix, f"no fix in {err!r}"
    text = str(err)
    assert any(n in text for n in names), f"none of {names} named in {text!r}"
    assert "Traceback" not in text, text


def assert_client_error(status: int, body: bytes) -> None:
    """An HTTP answer to a bad request: a 4xx naming the field, no traceback, no 5xx."""
    assert status < 500, f"HTTP {status}: {body[:500]!r}"
    assert b"Traceback" not in body and b'File "' not in body, body[:2000]
    if status == 200:
        return
    assert 400 <= status < 500, status
    detail = json.loads(body)["detail"]
    assert detail and all(isinstance(e.get("loc"), list) and e["loc"] and e.get("msg")
                          for e in detail), detail
