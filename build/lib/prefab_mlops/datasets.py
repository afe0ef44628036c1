"""Reading and preparing tabular data sets: the logic ingest and schema inference share.

Pure functions over bytes and DataFrames (no Prefect, no I/O beyond the bytes
given): :func:`parse_bytes` turns CSV/Parquet bytes into a DataFrame with clear
errors, :func:`prepare` applies ``conf/data``'s ``dropna``/``derive``/``columns``/
``window``/``sample_rows``.
"""

from __future__ import annotations

import io
from typing import Any

import pandas as pd

from prefab_mlops.config import DataConfig, WindowConfig
from prefab_mlops.core.errors import DataError, DataFormatError
from prefab_mlops.core.storage import Location

_CSV_COMPRESSION = {".zip": "zip", ".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}


# ------------------------------------------------------------------ parsing
def _format_of(loc: Location, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    name = loc.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if ".csv" in name or name.endswith(".txt"):
        return "csv"
    raise DataFormatError(
        f"Cannot tell the format of '{loc.display}' from its name.",
        fix="Set data.format to csv or parquet.")


def _compression(loc: Location) -> str | None:
    for suffix, comp in _CSV_COMPRESSION.items():
        if loc.name.lower().endswith(suffix):
            return comp
    return None


def _check_duplicates(names: list[str], loc: Location) -> None:
    seen, dups = set(), []
    for n in names:
        if n in seen and n not in dups:
            dups.append(n)
        seen.add(n)
    if dups:
        raise DataFormatError(
            f"'{loc.display}' has duplicate column names {dups}.",
            fix="Rename the columns so that every header is unique.")


def parse_bytes(raw: bytes, loc: Location, fmt: str, parse_dates: list[str]) -> pd.DataFrame:
    """Parse CSV/Parquet bytes into a DataFrame with clear errors.

    Raises:
        DataFormatError: empty file, malformed CSV, unreadable Parquet, duplicate columns.
    """
    fmt = _format_of(loc, fmt)
    if not raw:
        raise DataFormatError(f"'{loc.display}' is empty (0 bytes).",
                              fix="Point data.uri at a file with a header row and data.")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            # Check names from the footer first: read_table fails on duplicates.
            _check_duplicates(pq.read_schema(io.BytesIO(raw)).names, loc)
            table = pq.read_table(io.BytesIO(raw))
        except DataFormatError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types
            raise DataFormatError(f"'{loc.display}' is not a readable Parquet file: {exc}",
                                  fix="Check data.format and the file.") from None
        frame = table.to_pandas()
    else:
        comp = _compression(loc)
        try:
            header = pd.read_csv(io.BytesIO(raw), compression=comp, header=None, nrows=1,
                                 dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise DataFormatError(f"'{loc.display}' has no header row (the file is empty).",
                                  fix="Point data.uri at a CSV with a header row.") from None
        except Exception as exc:  # noqa: BLE001
            raise DataFormatError(f"'{loc.display}' is not a readable CSV: {exc}",
                                  fix="Check the file and data.format.") from None
        _check_duplicates([str(v) for v in header.iloc[0].tolist()], loc)
        missing_dates = [c for c in parse_dates if c not in set(header.iloc[0].tolist())]
        try:
            frame = pd.read_csv(io.BytesIO(raw), compression=comp, engine="pyarrow",
                                parse_dates=[c for c in parse_dates if c not in missing_dates])
        except Exception as exc:  # noqa: BLE001 - pyarrow/pandas parser errors
            msg = str(exc).splitlines()[0]
            raise DataFormatError(
                f"'{loc.display}' is a malformed CSV: {msg}",
                fix="Every row must have as many fields as the header; quote fields that "
                "contain the delimiter.") from None
        frame.columns = [str(c) for c in frame.columns]
        if frame.empty:
            raise DataFormatError(f"'{loc.display}' has a header row but no data rows.",
                                  fix="Point data.uri at a CSV that contains data.")
    # Parquet cannot store second-resolution timestamps (a snapshot would read back as
    # another unit); use pandas' default unit so the frame equals its snapshot exactly.
    for col in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[col]) and frame[col].dt.unit == "s":
            frame[col] = frame[col].dt.as_unit("us")
    unnamed = [c for c in frame.columns if c in ("", "Unnamed: 0")]
    if unnamed:  # an index column written by R/pandas (e.g. diamonds)
        frame = frame.drop(columns=unnamed)
    return frame


# ---------------------------------------------------------------- preparing
def _require(frame: pd.DataFrame, cols: list[str], what: str, source: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise DataError(
            f"'{source}' has no column(s) {missing} required by {what}; it has "
            f"{list(frame.columns)}.",
            fix=f"Fix {what} in conf/data, or the data file.")


def _bound(value: str, tz: Any) -> pd.Timestamp:
    """``value`` as a timestamp comparable with a column in zone ``tz`` (None: naive)."""
    t = pd.Timestamp(value)
    if t.tzinfo is None:
        return t.tz_localize(tz) if tz is not None else t
    return t.tz_convert(tz) if tz is not None else t.tz_convert("UTC").tz_localize(None)


def _apply_window(frame: pd.DataFrame, col: str, window: WindowConfig) -> pd.DataFrame:
    ts = frame[col]
    if not pd.api.types.is_datetime64_any_dtype(ts):
        ts = pd.to_datetime(ts, errors="coerce", utc=True)
    if window.timezone:
        # calendar boundaries (newest month/week/day) are those of this zone
        ts = (ts.dt.tz_convert(window.timezone) if ts.dt.tz is not None else
              ts.dt.tz_localize(window.timezone, ambiguous=False,
                                nonexistent="shift_forward"))
    mask = pd.Series(True, index=frame.index)
    tz = ts.dt.tz
    if window.start:
        mask &= ts >= _bound(window.start, tz)
    if window.end:
        mask &= ts < _bound(window.end, tz)
    if window.newest:
        newest = ts[mask].max()
        if pd.isna(newest):
            return frame.iloc[0:0]
        day = newest.normalize()
        start = {"month": day.replace(day=1),
                 "week": day - pd.Timedelta(days=int(day.dayofweek)),
                 "day": day}[window.newest]
        mask &= ts >= start
    return frame.loc[mask.to_numpy()]


def prepare(frame: pd.DataFrame, cfg: DataConfig, seed: int, source: str) -> pd.DataFrame:
    """Apply ``dropna``, ``derive``, ``columns``, ``window`` and ``sample_rows`` (pure)."""
    _require(frame, cfg.dropna, "data.dropna", source)
    if cfg.dropna:
        frame = frame.dropna(subset=cfg.dropna)
    for name, expr in cfg.derive.items():
        try:
            frame = frame.assign(**{name: frame.eval(expr, engine="python")})
        except Exception as exc:  # noqa: BLE001 - pandas eval raises many types
            raise DataError(f"data.derive.{name} = '{expr}' failed on '{source}': {exc}",
                            fix="Use a pandas expression over existing columns.") from None
    if cfg.columns is not None:
        _require(frame, list(cfg.columns), "data.columns", source)
        frame = frame[list(cfg.columns)]
    if any([cfg.window.start, cfg.window.end, cfg.window.newest]):
        if not cfg.time_column:
            raise DataError("data.window is set but data.time_column is not.",
                            fix="Set data.time_column to the timestamp column.")
        _require(frame, [cfg.time_column], "data.time_column", source)
        frame = _apply_window(frame, cfg.time_column, cfg.window)
    if cfg.sample_rows is not None and cfg.sample_rows < len(frame):
        frame = frame.sample(n=cfg.sample_rows, random_state=seed).sort_index()
    return frame.reset_index(drop=True)


def stats(frame: pd.DataFrame, time_column: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if time_column and time_column in frame.columns and len(frame):
        ts = frame[time_column]
        out["time_min"], out["time_max"] = str(ts.min()), str(ts.max())
    return out
