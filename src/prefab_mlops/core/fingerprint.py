"""Content fingerprints: stable hashes that identify data, configs and code.

A fingerprint is a short hex digest that changes whenever anything that could
change a result changes. Task outputs carry the fingerprint of what produced them
(inputs + config subtree + task code), so downstream cache keys never need to hash
a large DataFrame, and lineage is recorded with every registered model.

Rows have fingerprints of their own: :func:`row_hashes` gives each row of a frame a
stable 64-bit hash of its values, which places a row in its split (the ``hash``
split) and records which rows a model was trained on (:class:`RowFingerprint`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import inspect
import io
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

_CHUNK = 1 << 20


def _canonical(obj: Any) -> Any:
    fp = getattr(obj, "fingerprint", None)
    if isinstance(fp, str):
        return {"__fp__": fp}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [_canonical(v) for v in obj]
        return sorted(items, key=repr) if isinstance(obj, (set, frozenset)) else items
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, (Path, _dt.date, _dt.datetime)):
        return str(obj)
    if isinstance(obj, np.generic):
        return _canonical(obj.item())
    if isinstance(obj, bytes):
        return {"__bytes__": hashlib.sha256(obj).hexdigest()}
    raise TypeError(
        f"Cannot fingerprint a {type(obj).__name__}. Give it a `fingerprint` attribute "
        "or pass plain values/dataclasses."
    )


def stable_hash(*parts: Any) -> str:
    """A 32-hex-digit digest of ``parts`` that is stable across processes and runs."""
    payload = json.dumps(_canonical(list(parts)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def bytes_sha256(data: bytes) -> str:
    """Full sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    """Full sha256 hex digest of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def code_hash(fn: Callable[..., Any] | ModuleType) -> str:
    """Hash of a function's or a module's source code (falls back to bytecode)."""
    fn = getattr(fn, "fn", fn)  # a Prefect task: hash the wrapped function
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        src = repr(getattr(getattr(fn, "__code__", None), "co_code", repr(fn)))
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def lineage(fn: Callable[..., Any], *parts: Any) -> str:
    """Fingerprint of what ``fn`` produces from ``parts``: its code plus its inputs.

    Args:
        fn: The task function that produces the output.
        *parts: Its inputs (fingerprinted objects, config dataclasses, plain values).
    """
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
    return stable_hash(name, code_hash(fn), *parts)


# ------------------------------------------------------------------ rows
def _canonical_column(series: pd.Series) -> Any:
    """The values of ``series`` in a form whose hash does not depend on how it was read.

    A column's dtype can change with the rows around it: one missing value turns an
    int column into float, a Parquet round trip changes a timestamp's unit. So
    numbers and booleans hash as float64 (``-0.0`` as ``0.0``, every NaN alike) and
    timestamps and durations at microsecond resolution; strings hash the same as
    ``object``, ``str`` or ``category`` (pandas hashes a category by its value).
    """
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or (pd.api.types.is_numeric_dtype(dtype)
                                            and not pd.api.types.is_complex_dtype(dtype)):
        values = series.to_numpy(dtype="float64", na_value=np.nan) + 0.0
        values[np.isnan(values)] = np.nan
        return values
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return series.dt.as_unit("us").array
    return series.array  # an array, not a Series: no alignment on the frame's index


def row_hashes(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> np.ndarray:
    """A stable 64-bit hash of each row's values in ``columns`` (default: every column).

    The hash depends only on the values of the row, not on its position, the other
    rows, the order of the columns or how the column was read (see
    :func:`_canonical_column`); it is the same in every process and pandas version
    (pandas' ``hash_pandas_object`` with its fixed key). Identical rows have the
    same hash.

    Args:
        frame: The rows.
        columns: The columns to hash (in any order).

    Returns:
        A ``uint64`` array with one hash per row of ``frame``.

    Raises:
        KeyError: a column is not in ``frame``.
        ValueError: no columns to hash.
    """
    import pandas as pd

    names = sorted(frame.columns if columns is None else columns, key=str)
    if not names:
        raise ValueError("row_hashes needs at least one column")
    canon = pd.DataFrame({str(c): _canonical_column(frame[c]) for c in names},
                         index=pd.RangeIndex(len(frame)))
    return pd.util.hash_pandas_object(canon, index=False).to_numpy(dtype=np.uint64)


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A content fingerprint of a whole frame: its columns, their dtypes and every row.

    Changes whenever a value, a row, the row order, a column name, the column order
    or a dtype changes (a column's values alone hash alike across dtypes, see
    :func:`row_hashes`, so the dtypes are part of it). About 0.2-0.5 s for the
    336,776 x 19 flights table on 2 cores.
    """
    columns = [str(c) for c in frame.columns]
    rows = hashlib.sha256(row_hashes(frame).tobytes()).hexdigest() if columns else ""
    return stable_hash(columns, [str(t) for t in frame.dtypes], len(frame), rows)


@dataclasses.dataclass(frozen=True)
class RowFingerprint:
    """A set of rows (for example what a model was trained on), as row hashes.

    Attributes:
        columns: The columns hashed (:func:`row_hashes`); a row of another frame is
            in the set when its values in these columns equal a member's.
        hashes: Sorted, unique ``uint64`` row hashes: 8 bytes per distinct row.
    """

    columns: tuple[str, ...]
    hashes: np.ndarray

    @classmethod
    def of(cls, columns: Iterable[str], *hashes: np.ndarray) -> RowFingerprint:
        """The set of rows with these hashes (from :func:`row_hashes` over ``columns``)."""
        joined = np.concatenate([np.asarray(h, dtype=np.uint64) for h in hashes]) if hashes \
            else np.empty(0, dtype=np.uint64)
        return cls(tuple(columns), np.unique(joined))

    def __len__(self) -> int:
        return len(self.hashes)

    def contains(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows of ``frame`` are in the set (a boolean mask).

        Raises:
            KeyError: ``frame`` lacks one of :attr:`columns`.
        """
        return self.contains_hashes(row_hashes(frame, self.columns))

    def contains_hashes(self, hashes: np.ndarray) -> np.ndarray:
        """Which of ``hashes`` (row hashes over :attr:`columns`) are in the set."""
        return np.isin(np.asarray(hashes, dtype=np.uint64), self.hashes)

    def to_npy(self) -> bytes:
        """The hashes as ``.npy`` bytes (the columns are stored by the caller)."""
        buf = io.BytesIO()
        np.save(buf, self.hashes, allow_pickle=False)
        return buf.getvalue()

    @classmethod
    def from_npy(cls, data: bytes, columns: Iterable[str]) -> RowFingerprint:
        """Read what :meth:`to_npy` wrote."""
        hashes = np.load(io.BytesIO(data), allow_pickle=False)
        return cls(tuple(columns), np.asarray(hashes, dtype=np.uint64))


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 that spreads every input bit.

    uint64 array arithmetic wraps around, as intended here.
    """
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_position(hashes: np.ndarray, seed: int) -> np.ndarray:
    """Each row's place in [0, 1), from its row hash and the seed (pure).

    The seed is mixed into the hash, so another seed gives another split, and the
    result is uniform however the row hashes are distributed.
    """
    salt = _mix64(np.array([seed % 2**64], dtype=np.uint64))
    mixed = _mix64(np.asarray(hashes, dtype=np.uint64) ^ salt)
    return (mixed >> np.uint64(11)).astype(np.float64) * 2.0**-53
