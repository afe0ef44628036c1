"""A numpy fast path for the fitted ``ColumnTransformer`` of a registered pipeline.

One ``predict_proba`` of the scikit-learn pipeline costs milliseconds whether it
scores 1 row or 100: the ColumnTransformer's fixed cost (pandas indexing, input
validation, one DataFrame per step) dominates, while the estimator itself takes
a fraction of a millisecond. The fast path reads the *fitted* parameters once
and replays them with plain numpy and dict look-ups on the validated columns.

Supported steps (anything else raises :class:`FastPathUnsupported` and the server
uses the scikit-learn pipeline instead):

* ``SimpleImputer`` (mean, median, most_frequent, constant; no indicator),
  ``StandardScaler``, ``RobustScaler``, ``MinMaxScaler`` and ``"passthrough"`` on
  numeric columns;
* the categorical recipe of ``tasks/featurize.py``: the ``as_str_object``
  ``FunctionTransformer``, a constant/most-frequent ``SimpleImputer`` and an
  ``OrdinalEncoder`` or dense ``OneHotEncoder`` (no infrequent categories, no ``drop``);
* :class:`prefab_mlops.core.transformers.DatetimeParts`;
* ``"drop"`` columns and ``remainder="drop"``.

Native categorical encoding (pandas ``category`` output) is not supported.
:func:`verify` compares the fast path with the scikit-learn transformer; the
server runs it on every model it loads and falls back if they differ.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prefab_mlops.core.schema import ColumnKind, InputSchema
from prefab_mlops.core.transformers import DatetimeParts, NativeCategorical
from prefab_mlops.serve.errors import FastPathUnsupported


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


# --------------------------------------------------------------------- blocks
@dataclass
class _NumericBlock:
    """Numeric columns → float64, then imputation and scaling, in fitted order."""

    columns: list[str]
    ops: list[tuple[str, Any, Any]] = field(default_factory=list)
    dtype: Any = np.float64

    @property
    def width(self) -> int:
        return len(self.columns)

    def fill(self, out: np.ndarray, cols: dict[str, list[Any]], n: int) -> None:
        X = np.empty((n, len(self.columns)), dtype=np.float64)
        for j, c in enumerate(self.columns):
            X[:, j] = np.asarray(cols[c], dtype=np.float64) if n > 1 else (
                math.nan if cols[c][0] is None else cols[c][0])
        for op, a, b in self.ops:
            if op == "impute":
                mask = np.isnan(X)
                if mask.any():
                    X = np.where(mask, a, X)
            elif op == "sub":
                X -= a
            elif op == "div":
                X /= b
            elif op == "minmax":
                X *= a
                X += b
        out[:, : X.shape[1]] = X


@dataclass
class _CategoricalBlock:
    """Object columns → imputed → ordinal codes or one-hot indicators."""

    columns: list[str]
    fills: list[Any] | None  # imputed value per column, or None (no imputer)
    maps: list[dict[Any, int]]
    sizes: list[int]
    onehot: bool
    unknown_value: float = -1.0
    missing_code: list[float | None] = field(default_factory=list)
    dtype: Any = np.float64

    @property
    def width(self) -> int:
        return sum(self.sizes) if self.onehot else len(self.columns)

    def fill(self, out: np.ndarray, cols: dict[str, list[Any]], n: int) -> None:
        offset = 0
        for j, c in enumerate(self.columns):
            values = cols[c]
            fill = self.fills[j] if self.fills is not None else None
            if fill is not None:
                values = [fill if v is None else v for v in values]
            mapping = self.maps[j]
            missing = self.missing_code[j]
            if self.onehot:
                block = out[:, offset: offset + self.sizes[j]]
                for i, v in enumerate(values):
                    k = (None if missing is None else int(missing)) if v is None else \
                        mapping.get(v)
                    if k is not None:
                        block[i, k] = 1.0
                offset += self.sizes[j]
            else:
                unknown = self.unknown_value
                on_missing = unknown if missing is None else missing
                out[:, j] = [on_missing if v is None else mapping.get(v, unknown)
                             for v in values]


@dataclass
class _DatetimeBlock:
    """Datetime columns (already parsed and in the training zone) → calendar parts."""

    columns: list[str]
    parts: list[str]
    dtype: Any = np.float64

    @property
    def width(self) -> int:
        return len(self.columns) * len(self.parts)

    def fill(self, out: np.ndarray, cols: dict[str, list[Any]], n: int) -> None:
        k = 0
        nan = math.nan
        for c in self.columns:
            values: list[_dt.datetime | None] = cols[c]
            for part in self.parts:
                get = _PARTS[part]
                # DatetimeParts computes is_weekend as (dayofweek >= 5): 0, not NaN, for NaT
                missing = 0.0 if part == "is_weekend" else nan
                out[:, k] = [missing if ts is None else get(ts) for ts in values]
                k += 1


_PARTS: dict[str, Any] = {
    "year": lambda ts: ts.year,
    "month": lambda ts: ts.month,
    "day": lambda ts: ts.day,
    "dayofweek": lambda ts: ts.weekday(),
    "dayofyear": lambda ts: ts.timetuple().tm_yday,
    "hour": lambda ts: ts.hour,
    "minute": lambda ts: ts.minute,
    "weekofyear": lambda ts: ts.isocalendar()[1],
    "is_weekend": lambda ts: 1.0 if ts.weekday() >= 5 else 0.0,
}


# ------------------------------------------------------------------ compiled
@dataclass
class CompiledTransformer:
    """The fitted ``ColumnTransformer`` as numpy operations.

    Attributes:
        blocks: ``(slice of the output, block)`` in the transformer's output order.
        n_features: Width of the output matrix.
        dtype: Output dtype (numpy's result type of the blocks, as ``hstack`` gives).
        steps: A short description of each block, for ``GET /model``.
    """

    blocks: list[tuple[slice, Any]]
    n_features: int
    dtype: Any
    steps: list[str]

    def transform(self, cols: dict[str, list[Any]], n: int) -> np.ndarray:
        out = np.zeros((n, self.n_features), dtype=np.float64)
        for sl, block in self.blocks:
            block.fill(out[:, sl], cols, n)
        return out if self.dtype == np.float64 else out.astype(self.dtype)


def _is_identity(step: Any) -> bool:
    """``"passthrough"``, which a fitted ColumnTransformer holds as an empty FunctionTransformer."""
    from sklearn.preprocessing import FunctionTransformer

    return step is None or (isinstance(step, str) and step == "passthrough") or (
        isinstance(step, FunctionTransformer) and step.func is None)


def _steps_of(trans: Any) -> list[Any]:
    from sklearn.pipeline import Pipeline

    steps = [s for _, s in trans.steps] if isinstance(trans, Pipeline) else [trans]
    return [s for s in steps if not _is_identity(s)]


def _imputer_values(imp: Any, what: str) -> np.ndarray:
    if getattr(imp, "add_indicator", False):
        raise FastPathUnsupported(f"{what}: SimpleImputer(add_indicator=True)")
    mv = imp.missing_values
    if not (mv is None or _is_nan(mv) or mv is np.nan):
        raise FastPathUnsupported(f"{what}: SimpleImputer(missing_values={mv!r})")
    return np.asarray(imp.statistics_)


def _numeric_block(columns: list[str], steps: list[Any], what: str) -> _NumericBlock:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

    block = _NumericBlock(list(columns))
    for step in steps:
        if isinstance(step, SimpleImputer):
            stats = _imputer_values(step, what).astype(np.float64)
            if np.isnan(stats).any():  # sklearn drops all-missing columns
                raise FastPathUnsupported(f"{what}: a column with no observed values")
            block.ops.append(("impute", stats.reshape(1, -1), None))
        elif isinstance(step, StandardScaler):
            if step.mean_ is not None:
                block.ops.append(("sub", step.mean_.reshape(1, -1), None))
            if step.scale_ is not None:
                block.ops.append(("div", None, step.scale_.reshape(1, -1)))
        elif isinstance(step, RobustScaler):
            if step.center_ is not None:
                block.ops.append(("sub", step.center_.reshape(1, -1), None))
            if step.scale_ is not None:
                block.ops.append(("div", None, step.scale_.reshape(1, -1)))
        elif isinstance(step, MinMaxScaler):
            if getattr(step, "clip", False):
                raise FastPathUnsupported(f"{what}: MinMaxScaler(clip=True)")
            block.ops.append(("minmax", step.scale_.reshape(1, -1), step.min_.reshape(1, -1)))
        else:
            raise FastPathUnsupported(f"{what}: {type(step).__name__} on numeric columns")
    return block


def _is_str_object(step: Any) -> bool:
    from sklearn.preprocessing import FunctionTransformer

    func = getattr(step, "func", None)
    return (isinstance(step, FunctionTransformer) and func is not None
            and getattr(func, "__name__", "") == "as_str_object"
            and not step.kw_args and not getattr(step, "validate", False))


def _categorical_block(columns: list[str], steps: list[Any], what: str) -> _CategoricalBlock:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    fills: list[Any] | None = None
    encoder = None
    for k, step in enumerate(steps):
        if _is_str_object(step):
            continue
        if isinstance(step, SimpleImputer) and encoder is None:
            fills = [v for v in _imputer_values(step, what).tolist()]
            if any(v is None or _is_nan(v) for v in fills):
                raise FastPathUnsupported(f"{what}: a column with no observed values")
        elif isinstance(step, (OrdinalEncoder, OneHotEncoder)) and k == len(steps) - 1:
            encoder = step
        elif isinstance(step, NativeCategorical):
            raise FastPathUnsupported(f"{what}: native categorical encoding")
        else:
            raise FastPathUnsupported(f"{what}: {type(step).__name__} on categorical columns")
    if encoder is None:
        raise FastPathUnsupported(f"{what}: categorical columns without an encoder")
    if getattr(encoder, "_infrequent_enabled", False):
        raise FastPathUnsupported(f"{what}: infrequent categories (min_frequency)")
    onehot = isinstance(encoder, OneHotEncoder)
    if onehot:
        if encoder.drop_idx_ is not None:
            raise FastPathUnsupported(f"{what}: OneHotEncoder(drop=...)")
        if encoder.sparse_output:
            raise FastPathUnsupported(f"{what}: sparse one-hot output")
        if encoder.handle_unknown == "error":
            raise FastPathUnsupported(f"{what}: OneHotEncoder(handle_unknown='error')")
    elif encoder.handle_unknown != "use_encoded_value":
        raise FastPathUnsupported(f"{what}: OrdinalEncoder(handle_unknown='error')")
    maps, sizes, missing = [], [], []
    missing_indices = getattr(encoder, "_missing_indices", {}) or {}
    for j, cats in enumerate(encoder.categories_):
        mapping: dict[Any, int] = {}
        for idx, cat in enumerate(cats.tolist()):
            if cat is None or _is_nan(cat):
                continue
            mapping[cat] = idx
        maps.append(mapping)
        sizes.append(len(cats))
        if j in missing_indices:
            missing.append(float(missing_indices[j]) if onehot
                           else float(encoder.encoded_missing_value))
        else:
            missing.append(None)
    return _CategoricalBlock(
        list(columns), fills, maps, sizes, onehot,
        unknown_value=0.0 if onehot else float(encoder.unknown_value),
        missing_code=missing, dtype=encoder.dtype)


def compile_transformer(ct: Any, schema: InputSchema) -> CompiledTransformer:
    """Compile a fitted ``ColumnTransformer`` into a :class:`CompiledTransformer`.

    Args:
        ct: The pipeline's fitted ``preprocess`` step.
        schema: The version's input schema (its manifest's ``features.input_schema``).

    Raises:
        FastPathUnsupported: naming the first step it cannot reproduce.
    """
    from sklearn.compose import ColumnTransformer

    if type(ct) is not ColumnTransformer:
        raise FastPathUnsupported(f"preprocess step is {type(ct).__name__}, "
                                  "not a ColumnTransformer")
    if getattr(ct, "sparse_output_", False):
        raise FastPathUnsupported("sparse ColumnTransformer output")
    names_in = [str(c) for c in getattr(ct, "feature_names_in_", [])]
    blocks: list[tuple[slice, Any]] = []
    steps: list[str] = []
    dtypes = []
    pos = 0
    for name, trans, cols in ct.transformers_:
        if isinstance(cols, slice) or (len(cols) and not isinstance(cols[0], str)):
            idx = np.arange(len(names_in))[cols] if len(names_in) else []
            cols = [names_in[i] for i in idx]
        cols = list(cols)
        if trans == "drop" or not cols:
            continue
        what = f"transformer '{name}'"
        for c in cols:
            if c not in schema:
                raise FastPathUnsupported(f"{what}: column '{c}' is not in the input schema")
        kinds = {schema[c].kind for c in cols}
        if trans == "passthrough":
            if kinds != {ColumnKind.NUMERIC}:
                raise FastPathUnsupported(f"{what}: passthrough of non-numeric columns")
            block: Any = _NumericBlock(cols)
        elif isinstance(trans, DatetimeParts):
            if kinds != {ColumnKind.DATETIME}:
                raise FastPathUnsupported(f"{what}: DatetimeParts on non-datetime columns")
            block = _DatetimeBlock(cols, list(trans.parts))
            unknown = [p for p in block.parts if p not in _PARTS]
            if unknown:
                raise FastPathUnsupported(f"{what}: datetime parts {unknown}")
        elif kinds == {ColumnKind.NUMERIC}:
            block = _numeric_block(cols, _steps_of(trans), what)
        elif kinds == {ColumnKind.CATEGORICAL}:
            block = _categorical_block(cols, _steps_of(trans), what)
        else:
            raise FastPathUnsupported(f"{what}: {type(trans).__name__} on "
                                      f"{sorted(k.value for k in kinds)} columns")
        sl = slice(pos, pos + block.width)
        expected = ct.output_indices_.get(name)
        if expected is not None and (expected.start, expected.stop) != (sl.start, sl.stop):
            raise FastPathUnsupported(f"{what}: output columns {expected} where the fast "
                                      f"path computes {sl}")
        blocks.append((sl, block))
        dtypes.append(np.dtype(block.dtype))
        steps.append(f"{name}: {type(block).__name__.strip('_')} {cols}")
        pos = sl.stop
    if not blocks:
        raise FastPathUnsupported("the ColumnTransformer outputs no columns")
    return CompiledTransformer(blocks, pos, np.result_type(*dtypes), steps)


def verify(compiled: CompiledTransformer, ct: Any, cols: dict[str, list[Any]], n: int,
           frame: Any) -> str | None:
    """Compare the fast path with the scikit-learn transformer on the same rows.

    Args:
        compiled: The compiled transformer.
        ct: The fitted ``ColumnTransformer``.
        cols: The rows as validated columns (what the fast path reads).
        n: Number of rows.
        frame: The same rows as the DataFrame the scikit-learn pipeline reads.

    Returns:
        ``None`` if every value matches (NaN where NaN), else what differs.
    """
    fast = compiled.transform(cols, n)
    slow = np.asarray(ct.transform(frame), dtype=np.float64)
    if fast.shape != slow.shape:
        return f"shape {fast.shape} != scikit-learn's {slow.shape}"
    fast64 = fast.astype(np.float64)
    same = np.isclose(fast64, slow, rtol=1e-12, atol=0.0, equal_nan=True)
    if not same.all():
        i, j = map(int, np.argwhere(~same)[0])
        return (f"{int((~same).sum())} value(s) differ, first at row {i} column {j}: "
                f"fast {fast64[i, j]!r} vs scikit-learn {slow[i, j]!r}")
    return None
