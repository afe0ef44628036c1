"""Reading and preparing tabular data sets: the logic ingest and schema inference share.

Pure functions over bytes and DataFrames (no Prefect, no I/O beyond the bytes
given): :func:`parse_bytes` turns CSV/Parquet bytes into a DataFrame with clear
errors, detecting what the configuration leaves open (Parquet bytes under a ``.csv``
name, compression, the text encoding, the separator), :func:`prepare` applies
``conf/data``'s ``dropna``/``derive``/``columns``/``window``/``sample_rows``.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import itertools
import lzma
import unicodedata
import zipfile
from dataclasses import dataclass
from typing import Any

import pandas as pd

from prefab_mlops.config import DataConfig, ReadConfig, WindowConfig
from prefab_mlops.config.schema import SEPARATOR_NAMES
from prefab_mlops.core.errors import DataError, DataFormatError
from prefab_mlops.core.manifest import ReadRecord
from prefab_mlops.core.storage import Location

_CSV_COMPRESSION = {".zip": "zip", ".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}


# ------------------------------------------------------------------ parsing
#: How much of a file detection looks at: the encoding, the separator and whether the
#: bytes are Parquet, compressed or a spreadsheet are read off its first 64 KiB.
SNIFF_BYTES = 64 * 1024
#: The separators ``data.read.sep: auto`` chooses from, in order of preference.
SEPARATORS = (",", ";", "\t", "|")
#: Windows-1252 characters, beyond letters, that Western European text uses.
_WESTERN_SYMBOLS = frozenset("€£¥¢§°±²³µ¶·¹º»«¼½¾¿¡©®™–—‘’‚“”„•…‰×÷¤¦¨¬¯´¸ª†‡ˆ‹›\xa0\xad")
_BOMS = ((b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe\x00\x00", "utf-32"),
         (b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"),
          (b"\x28\xb5\x2f\xfd", "zstd"), (b"PK\x03\x04", "zip"))
#: Bytes that text files do not hold (C0 controls but tab, line feed, form feed, CR).
_BINARY_BYTES = [bytes([b]) for b in range(32) if b not in (9, 10, 12, 13)]
_SEP_NAMES = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}
#: How a fix names each separator in an override (``data.read.sep=semicolon``).
_SEP_WORDS = {char: word for word, char in SEPARATOR_NAMES.items() if word.isalpha()}


@dataclass(frozen=True)
class Layout:
    """How a data file's bytes were read: configured or detected.

    Logged by ingest and kept in the data set's lineage record, so a wrong guess
    (Windows-1252 for a file that was really Latin-2, say) is visible and can be
    overridden in ``data.read``. The fields are those of its record,
    :class:`~prefab_mlops.core.manifest.ReadRecord` (:meth:`record`).
    """

    format: str
    encoding: str | None = None
    sep: str | None = None
    compression: str | None = None
    detected: tuple[str, ...] = ()

    def describe(self) -> str:
        """``"csv, cp1252 (detected), ';'-separated (detected)"``, for log lines."""
        def mark(name: str) -> str:
            return " (detected)" if name in self.detected else ""

        parts = [f"{self.format}{mark('format')}"]
        if self.compression:
            parts.append(f"{self.compression}-compressed{mark('compression')}")
        if self.encoding:
            parts.append(f"{self.encoding}{mark('encoding')}")
        if self.sep:
            parts.append(f"{_SEP_NAMES.get(self.sep, repr(self.sep))}-separated{mark('sep')}")
        return ", ".join(parts)

    def record(self) -> ReadRecord:
        """The lineage record's form."""
        return ReadRecord(format=self.format, encoding=self.encoding, sep=self.sep,
                          compression=self.compression, detected=list(self.detected))


def _format_of(loc: Location, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    name = loc.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if ".csv" in name or name.endswith((".txt", ".tsv")):
        return "csv"
    raise DataFormatError(
        f"Cannot tell the format of '{loc.display}' from its name.",
        fix="Set data.format to csv or parquet.")


def _compression(loc: Location) -> str | None:
    for suffix, comp in _CSV_COMPRESSION.items():
        if loc.name.lower().endswith(suffix):
            return comp
    return None


def _is_parquet(raw: bytes) -> bool:
    return len(raw) >= 12 and raw[:4] == b"PAR1" and raw[-4:] == b"PAR1"


def _not_tabular(raw: bytes, loc: Location) -> None:
    """Refuse spreadsheets, which are often saved under a ``.csv`` name."""
    if raw.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") or (
            raw.startswith(b"PK\x03\x04") and b"[Content_Types].xml" in raw[:SNIFF_BYTES]
            and b"xl/" in raw[:SNIFF_BYTES]):
        raise DataFormatError(
            f"'{loc.display}' is an Excel workbook, not a CSV or Parquet file (detected from "
            "its first bytes).",
            fix="Export the sheet as CSV (UTF-8) or Parquet and point data.uri at that file.")


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


def _decompress(raw: bytes, comp: str | None, loc: Location) -> bytes:
    """The uncompressed bytes of a CSV file (a ``.zip`` must hold exactly one file)."""
    if comp is None:
        return raw
    try:
        if comp == "gzip":
            return gzip.decompress(raw)
        if comp == "bz2":
            return bz2.decompress(raw)
        if comp == "xz":
            return lzma.decompress(raw)
        if comp == "zip":
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                names = [n for n in zf.namelist()
                         if not n.endswith("/") and not n.startswith("__MACOSX/")]
                if len(names) != 1:
                    raise DataFormatError(
                        f"'{loc.display}' is a zip archive of {len(names)} files "
                        f"{names[:10]}; a zipped CSV holds exactly one.",
                        fix="Zip one CSV file per archive, or unpack it and point data.uri "
                        "at the CSV.")
                return zf.read(names[0])
        try:
            import zstandard
        except ImportError:
            raise DataFormatError(
                f"'{loc.display}' is zstd-compressed, and reading it needs the zstandard "
                "package, which is not installed.",
                fix="pip install zstandard, or compress the file with gzip.") from None
        with zstandard.ZstdDecompressor().stream_reader(raw) as reader:
            return bytes(reader.read())
    except DataFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - every codec raises its own types
        raise DataFormatError(f"'{loc.display}' is not a readable {comp} file: {exc}",
                              fix="Check the file: it may be truncated or not compressed "
                              "the way its name says.") from None


def _line_of(text: bytes, pos: int) -> int:
    return text.count(b"\n", 0, pos) + 1


def _western(text: str) -> bool:
    """Whether Windows-1252-decoded text reads as Western European rather than mojibake.

    Accented letters in French, German, Spanish... stand alone between ASCII letters
    (``Montréal``, ``Größe``); bytes of Cyrillic, Greek or Asian text decoded as
    Windows-1252 give runs of them, or symbols no text uses.
    """
    odd = [c for c in text if ord(c) > 127]
    if any(not (unicodedata.category(c).startswith("L") or c in _WESTERN_SYMBOLS)
           for c in odd):
        return False
    run, in_runs = 0, 0
    for c in text + " ":
        if ord(c) > 127:
            run += 1
            continue
        if run >= 3:
            in_runs += run
        run = 0
    return in_runs <= 0.1 * len(odd)


def _detect_encoding(head: bytes, truncated: bool, loc: Location) -> str:
    """The encoding of CSV text from its first bytes (see :class:`ReadConfig`)."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    probe = head[:4096]
    if b"\x00" in probe:
        even, odd = probe[0::2].count(0), probe[1::2].count(0)
        if odd > 0.3 * len(probe) / 2 and even < 0.05 * len(probe) / 2:
            return "utf-16-le"
        if even > 0.3 * len(probe) / 2 and odd < 0.05 * len(probe) / 2:
            return "utf-16-be"
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the end of the sample is not an error.
        if truncated and exc.reason == "unexpected end of data":
            return "utf-8"
        bad = head[exc.start:exc.start + 1]
        line = _line_of(head, exc.start)
    controls = sum(probe.count(c) for c in _BINARY_BYTES)
    if controls > 0.05 * len(probe) and controls >= 4:
        raise DataFormatError(
            f"'{loc.display}' is binary, not CSV text: it is not UTF-8, {controls} of its "
            f"first {len(probe)} bytes are control bytes, and it has no byte-order mark.",
            fix="Point data.uri at a CSV or Parquet file; if it is UTF-16 or UTF-32 text "
            "without a byte-order mark, set data.read.encoding (e.g. utf-16-le).")
    try:
        text = head.decode("cp1252")
    except UnicodeDecodeError:
        text = ""
    if text and _western(text):
        return "cp1252"
    raise DataFormatError(
        f"'{loc.display}' is not UTF-8 text: byte 0x{bad.hex().upper()} on line {line} does "
        "not decode, there is no byte-order mark, and the text does not read as Western "
        "European (Windows-1252) either (detected from its first "
        f"{len(head) // 1024 or 1} KiB).",
        fix="Set data.read.encoding to the file's encoding (for example cp1251, cp1250, "
        "shift_jis, gb18030 or latin-1), or save the file as UTF-8.")


def _detect_sep(sample: str, truncated: bool) -> str | None:
    """The separator that splits the header and the sampled rows into the same fields.

    A candidate qualifies when the header has as many fields as most (90 %) of the
    sampled rows and more than one; the one giving the most fields wins. None when
    none qualifies (a one-column file, or rows too ragged to tell): see
    :func:`_fallback_sep`.
    """
    best: tuple[int, str] | None = None
    for sep in SEPARATORS:
        counts = [len(r) for r in itertools.islice(
            csv.reader(io.StringIO(sample, newline=""), delimiter=sep), 200) if r]
        if truncated and len(counts) > 1:
            counts.pop()  # the last row may be cut by the end of the sample
        if not counts or counts[0] < 2:
            continue
        if counts.count(counts[0]) < 0.9 * len(counts):
            continue
        if best is None or counts[0] > best[0]:
            best = (counts[0], sep)
    return best[1] if best else None


def _fallback_sep(sample: str) -> str:
    """The separator when none splits the file evenly: a comma if it splits the header
    (the rows are ragged: the parser names the first bad one), else, for a one-column
    file, the rarest in text of those that occur nowhere in the sample."""
    header = sample.split("\n", 1)[0]
    if "," in header:
        return ","
    return next((sep for sep in reversed(SEPARATORS) if sep not in sample), ",")


def _check_configured_sep(head: bytes, truncated: bool, layout: Layout,
                          loc: Location) -> None:
    """Refuse a configured separator that leaves one column where another gives many."""
    sample = head.decode("utf-8", errors="replace")
    first = sample.split("\n", 1)[0]
    if layout.sep in first:
        return
    other = _detect_sep(sample, truncated)
    if other is not None and other != layout.sep:
        fields = len(next(csv.reader(io.StringIO(first), delimiter=other)))
        raise DataFormatError(
            f"'{loc.display}' has one column when read as {layout.describe()} "
            f"(data.read.sep), but {_SEP_NAMES.get(other, repr(other))} splits its header and "
            f"rows alike into {fields} fields (detected from its first "
            f"{len(head) // 1024 or 1} KiB).",
            fix=f"Set data.read.sep={_SEP_WORDS[other]} (or auto, which detects it).")


def _decode(text: bytes, encoding: str, layout: Layout, loc: Location) -> bytes:
    """``text`` as UTF-8 without a byte-order mark (what the CSV parser reads)."""
    codec = codecs.lookup(encoding).name
    if codec in ("utf-8", "utf-8-sig"):
        return text[3:] if text.startswith(codecs.BOM_UTF8) else text
    try:
        return text.decode(encoding).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"'{loc.display}' does not decode as {layout.describe()}: byte "
            f"0x{text[exc.start:exc.start + 1].hex().upper()} on line "
            f"{_line_of(text, exc.start)} ({exc.reason}).",
            fix=_encoding_fix(layout)) from None


def _encoding_fix(layout: Layout) -> str:
    how = "was detected" if "encoding" in layout.detected else "is set in data.read.encoding"
    return (f"The encoding {layout.encoding} {how}; set data.read.encoding to the file's "
            "encoding (for example cp1252, latin-1, cp1251, utf-16), or save the file as "
            "UTF-8.")


def _not_utf8(text: bytes, layout: Layout, loc: Location,
              columns: list[str] | None = None) -> DataFormatError:
    """The error for CSV text that is not valid UTF-8 where it should be (error path only:
    it decodes the whole text to find the first bad byte)."""
    try:
        text.decode("utf-8")
        where = ""
    except UnicodeDecodeError as exc:
        where = (f": byte 0x{text[exc.start:exc.start + 1].hex().upper()} on line "
                 f"{_line_of(text, exc.start)}")
    cols = f", in column(s) {columns[:10]}" if columns else ""
    return DataFormatError(f"'{loc.display}' does not decode as {layout.describe()}{where}"
                           f"{cols}.", fix=_encoding_fix(layout))


def _undecoded_columns(frame: pd.DataFrame) -> list[str]:
    """Columns the CSV parser kept as raw bytes: their text was not valid UTF-8."""
    out = []
    for col in frame.columns:
        if frame[col].dtype == object:
            first = frame[col].first_valid_index()
            if first is not None and isinstance(frame[col].at[first], bytes):
                out.append(str(col))
    return out


def _read_parquet(raw: bytes, loc: Location) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        # Check names from the footer first: read_table fails on duplicates.
        _check_duplicates(pq.read_schema(io.BytesIO(raw)).names, loc)
        table = pq.read_table(io.BytesIO(raw))
    except DataFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types
        what = ("" if _is_parquet(raw) else
                " (it does not start and end with the Parquet magic bytes PAR1)")
        raise DataFormatError(f"'{loc.display}' is not a readable Parquet file{what}: {exc}",
                              fix="Check data.format and the file.") from None
    return table.to_pandas()


def _read_csv(raw: bytes, loc: Location, parse_dates: list[str], read: ReadConfig,
              detected: list[str]) -> tuple[pd.DataFrame, Layout]:
    comp = _compression(loc)
    if comp is None:
        for magic, name in _MAGIC:
            if raw.startswith(magic):
                comp = name
                detected.append("compression")
                break
    text = _decompress(raw, comp, loc)
    if not text.strip():
        raise DataFormatError(f"'{loc.display}' has no header row (it holds "
                              f"{'only blank lines' if text else 'nothing'}).",
                              fix="Point data.uri at a CSV with a header row.")
    head, truncated = text[:SNIFF_BYTES], len(text) > SNIFF_BYTES
    if read.encoding == "auto":
        encoding = _detect_encoding(head, truncated, loc)
        detected.append("encoding")
    else:
        encoding = read.encoding
    sep = read.separator()
    if sep is None:
        sample = head.decode(encoding, errors="replace")
        sample = sample.lstrip("\ufeff")
        sep = _detect_sep(sample, truncated) or _fallback_sep(sample)
        detected.append("sep")
    layout = Layout("csv", codecs.lookup(encoding).name, sep, comp, tuple(detected))
    text = _decode(text, encoding, layout, loc)
    if "sep" not in detected:
        _check_configured_sep(text[:SNIFF_BYTES], truncated, layout, loc)
    try:
        header = pd.read_csv(io.BytesIO(text), sep=sep, header=None, nrows=1, dtype=str,
                             keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"'{loc.display}' has no header row (it holds only blank lines).",
                              fix="Point data.uri at a CSV with a header row.") from None
    except UnicodeDecodeError:
        raise _not_utf8(text, layout, loc) from None
    except Exception as exc:  # noqa: BLE001
        raise DataFormatError(
            f"'{loc.display}' is not a readable CSV (read as {layout.describe()}): "
            f"{_first_line(exc)}",
            fix="Check the file, and data.read.sep and data.read.encoding.") from None
    names = [str(v) for v in header.iloc[0].tolist()]
    _check_duplicates(names, loc)
    try:
        frame = pd.read_csv(io.BytesIO(text), sep=sep, engine="pyarrow",
                            parse_dates=[c for c in parse_dates if c in set(names)])
    except Exception as exc:  # noqa: BLE001 - pyarrow/pandas parser errors
        raise DataFormatError(
            f"'{loc.display}' is a malformed CSV (read as {layout.describe()}): "
            f"{_first_line(exc)}",
            fix="Every row must have as many fields as the header; quote fields that "
            "contain the separator (or set data.read.sep if it is another one).") from None
    undecoded = _undecoded_columns(frame)
    if undecoded:
        raise _not_utf8(text, layout, loc, undecoded)
    frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise DataFormatError(f"'{loc.display}' has a header row but no data rows.",
                              fix="Point data.uri at a CSV that contains data.")
    return frame, layout


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def parse_bytes(raw: bytes, loc: Location, fmt: str, parse_dates: list[str],
                read: ReadConfig | None = None) -> tuple[pd.DataFrame, Layout]:
    """Parse CSV/Parquet bytes into a DataFrame with clear errors.

    With ``fmt`` ``auto``, bytes that are Parquet (``PAR1`` at both ends) are read as
    Parquet whatever the file's name; otherwise the name decides. A CSV's
    compression, encoding and separator come from its name and ``read`` or are
    detected (see :class:`~prefab_mlops.config.ReadConfig`).

    Args:
        raw: The file's bytes.
        loc: Where they came from (named in errors; its name gives format/compression).
        fmt: ``data.format``: ``auto``, ``csv`` or ``parquet``.
        parse_dates: ``data.parse_dates``: CSV columns to parse as timestamps.
        read: ``data.read``: encoding and separator (default: both detected).

    Returns:
        The frame and the :class:`Layout` it was read with.

    Raises:
        DataFormatError: empty, binary, mis-encoded, malformed, compressed wrongly,
            a spreadsheet, duplicate columns, or Parquet bytes where CSV was configured.
    """
    read = read or ReadConfig()
    if not raw:
        raise DataFormatError(f"'{loc.display}' is empty (0 bytes).",
                              fix="Point data.uri at a file with a header row and data.")
    _not_tabular(raw, loc)
    detected: list[str] = []
    if fmt == "auto" and _is_parquet(raw):
        fmt = "parquet"
        detected.append("format")
    fmt = _format_of(loc, fmt)
    if fmt == "csv" and _is_parquet(raw):
        raise DataFormatError(
            f"'{loc.display}' is a Parquet file (it starts and ends with the bytes PAR1), "
            "but data.format is 'csv'.",
            fix="Set data.format=parquet (or auto, which detects it), or point data.uri at "
            "the CSV file.")
    if fmt == "parquet":
        frame, layout = _read_parquet(raw, loc), Layout("parquet", detected=tuple(detected))
    else:
        frame, layout = _read_csv(raw, loc, parse_dates, read, detected)
    # Parquet cannot store second-resolution timestamps (a snapshot would read back as
    # another unit); use pandas' default unit so the frame equals its snapshot exactly.
    for col in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[col]) and frame[col].dt.unit == "s":
            frame[col] = frame[col].dt.as_unit("us")
    unnamed = [c for c in frame.columns if c in ("", "Unnamed: 0")]
    if unnamed:  # an index column written by R/pandas (e.g. diamonds)
        frame = frame.drop(columns=unnamed)
    return frame, layout


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
