"""Infer a starting data contract and feature recipe from a data set.

Reads a data set the way the training flow does (``tasks.ingest`` parses and
prepares it, so dtypes are the ones ``validate`` will see), then proposes

* ``conf/validate/<name>.yaml``: dtype, nullability, a minimum row count, and what the
  data looked like as *soft* rules: the observed range of numbers
  (``expected_min``/``expected_max``) and the values of low-cardinality strings
  (``expected_values``). A later batch beyond them passes validation with a warning;
  only bounds you write yourself (``min``/``max``/``allowed``) fail it. The classes of
  a classification target are the exception: they are ``allowed`` (hard), since a
  new class is a different problem;
* ``conf/features/<name>.yaml``: numeric, categorical and datetime columns, and a
  hash split (a row keeps its split as the data grows). Left out, each with its
  reason printed: the target; the columns a derived target is computed from, and
  any other column that alone nearly determines a derived target (the one-feature
  check of :mod:`prefab_mlops.core.leakage`); constants; row indexes and ids (names
  such as ``id``, ``index``, ``rownames`` or pandas' ``Unnamed: 0``, unique integers
  rising by one, strings with one value per row); free text. ``--keep COL`` (the
  template's ``keep_columns`` answer) brings a column back.

It also checks that the target fits the problem type (a binary target is 0/1 or
true/false, a regression target is numeric), so a wrong answer fails at once.

Two entry points share :func:`infer` (Examples)::

    prefab schema infer data/sales.csv --target churned            # print both YAMLs
    prefab schema infer data/sales.csv --target churned --keep store_id
    prefab schema infer --dataset sales --write                    # from conf/data/sales.yaml
    python -m prefab_mlops.scaffold.schema_infer --dataset sales --from-copier  # template hook
    python -m prefab_mlops.scaffold.schema_infer --dataset sales --from-setup   # make setup

The module imports only the standard library and PyYAML at import time, so the
project template's post-generation step can report a missing dependency clearly
instead of failing on an import.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from prefab_mlops.core.errors import PrefabError
from prefab_mlops.core.problems import PROBLEM_TYPES

if TYPE_CHECKING:  # pandas and scikit-learn are imported when inference runs
    from prefab_mlops.core.leakage import LeakageScan

LOW_CARDINALITY = 30        # strings with at most this many values get `expected_values`
MAX_CATEGORIES = 1000       # more distinct strings than this: not a feature (id, free text)
ID_SHARE = 0.5              # ... nor when more than this share of the rows are distinct
MAX_CLASSES = 100           # a classification target with more classes is probably wrong
MIN_ID_ROWS = 10            # id-by-values rules (rising by one, one per row) need this many rows
FREE_TEXT_CHARS = 40        # strings this long (median) with spaces in most: free text
#: Column names that mark a row index or id whatever the values: pandas' index written
#: to CSV (``Unnamed: 0``), R's ``rownames`` and readr's ``...1``, and the usual names.
ID_NAME = re.compile(r"^(id|index|idx|rownames|row_?id|row_?num(ber)?|uuid|guid|unnamed: \d+|"
                     r"\.\.\.\d+)$", re.IGNORECASE)
#: Names that look like a key (``customer_id``, ``orderId``): an id when unique per row.
ID_LIKE_NAME = re.compile(r"(^id_|_id$|[a-z]Id$|_key$|_uuid$)")


class SchemaInferenceError(PrefabError):
    """The data cannot be read, or does not fit the answers (target, problem type)."""


@dataclass(frozen=True)
class Names:
    """How the user names each input, so an error says which one to change.

    The template's hook talks about *answers* (``the 'target' answer``); the CLI
    about its options (``--target``).
    """

    data_uri: str = "DATA_URI"
    target: str = "--target"
    problem_type: str = "--problem-type"
    time_column: str = "--time-column"
    derive: str = "--derive"
    keep: str = "--keep"


COPIER_NAMES = Names(data_uri="the 'data_uri' answer", target="the 'target' answer",
                     problem_type="the 'problem_type' answer",
                     time_column="the 'time_column' answer",
                     derive="the 'target_expression' answer",
                     keep="the 'keep_columns' answer")


@dataclass(frozen=True)
class Exclusion:
    """A column left out of the features, and why (printed, and written as a comment).

    ``identifier``: a row index or id, whose range grows with the data, so no expected
    range or values are recorded for it.
    """

    column: str
    reason: str
    identifier: bool = False


@dataclass
class InferredSchema:
    """What :func:`infer` found: the two config documents and notes for the user.

    Attributes:
        excluded: The columns left out of the features (the target aside), with reasons.
        notes: Anything else worth saying (kept columns, suspected leaks kept).
        leakage: The one-feature scan of the feature candidates against the target.
    """

    validate: dict[str, Any]
    features: dict[str, Any]
    rows: int
    notes: list[str] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    leakage: LeakageScan | None = None


# ------------------------------------------------------------------ reading
def read_prepared(data: Any, root: str | Path, s3: Any = None, names: Names = Names()) -> Any:
    """Read and prepare the rows described by a ``conf/data`` config, like ``ingest``.

    ``tasks.ingest`` holds the parser and the preparation (``dropna``, ``derive``,
    ``columns``); reusing them means the inferred dtypes are exactly the ones the
    ``validate`` task will check.

    Args:
        data: A :class:`prefab_mlops.config.DataConfig` (``conf/data``).
        root: The project root, for relative paths.
        s3: A :class:`prefab_mlops.config.S3Config` for ``s3://`` locations.
        names: How to name the inputs in error messages.

    Returns:
        The prepared ``pandas.DataFrame`` (``sample_rows`` is ignored: bounds and
        categories come from every row).

    Raises:
        SchemaInferenceError: the location is unreadable or the target/time column
            is missing, naming the input to change.
    """
    import dataclasses

    from prefab_mlops.core.errors import DataError
    from prefab_mlops.core.storage import S3Config, parse_location, read_source
    from prefab_mlops.datasets import parse_bytes, prepare

    try:
        loc = parse_location(data.uri, root)
        raw = read_source(loc, s3 or S3Config())
        frame, _ = parse_bytes(raw, loc, data.format, list(data.parse_dates), data.read)
    except DataError as exc:
        raise SchemaInferenceError(f"Cannot read the data at '{data.uri}': {exc.message}",
                                   fix=f"Change {names.data_uri} to a readable CSV or Parquet "
                                   "file (a local path, s3://bucket/key or "
                                   "pkg://package/path).") from None
    if data.target not in frame.columns and data.target not in data.derive:
        raise SchemaInferenceError(
            f"Target column '{data.target}' is not in '{data.uri}'; its columns are "
            f"{_preview(frame.columns)}.",
            fix=f"Change {names.target} to one of those columns, or derive it with "
            f"{names.derive}.")
    if data.time_column and data.time_column not in frame.columns:
        raise SchemaInferenceError(
            f"Time column '{data.time_column}' is not in '{data.uri}'; its columns are "
            f"{_preview(frame.columns)}.",
            fix=f"Change {names.time_column} to one of those columns, or leave it empty.")
    for name in data.derive:
        refs = sorted(set(_names_in(data.derive[name])) & set(frame.columns))
        if not refs:
            raise SchemaInferenceError(
                f"The target expression '{data.derive[name]}' uses none of the columns of "
                f"'{data.uri}' ({_preview(frame.columns)}).",
                fix=f"Change {names.derive} (a pandas expression over those columns), or "
                "leave it empty if the target column exists.")
    try:
        frame = prepare(frame, dataclasses.replace(data, sample_rows=None), 0, data.uri)
    except DataError as exc:
        raise SchemaInferenceError(f"Cannot prepare '{data.uri}': {exc.message}",
                                   fix=f"Check {names.derive} and {names.target}.") from None
    if data.target not in frame.columns:  # e.g. data.columns leaves it out
        raise SchemaInferenceError(
            f"Target column '{data.target}' is not among the prepared columns of "
            f"'{data.uri}' ({_preview(frame.columns)}).",
            fix=f"Change {names.target}, or add it to data.columns.")
    return frame


def _names_in(expr: str) -> list[str]:
    """The column names a pandas expression may use: identifiers and `back quoted` names."""
    return [quoted or bare for quoted, bare in
            re.findall(r"`([^`]+)`|([A-Za-z_][A-Za-z0-9_]*)", expr)]


def _preview(columns: Any, limit: int = 40) -> str:
    cols = [str(c) for c in columns]
    more = f" ... (+{len(cols) - limit})" if len(cols) > limit else ""
    return str(cols[:limit])[:-1] + more + "]"


# ---------------------------------------------------------------- inferring
def _py(value: Any) -> Any:
    """A numpy/pandas scalar as a plain Python value (for YAML)."""
    return value.item() if hasattr(value, "item") else value


def _kind(series: Any) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_numeric_dtype(series):
        return "number"
    return "str"


def check_target(series: Any, problem_type: str, target: str, names: Names = Names()) -> None:
    """Refuse a target that cannot be learned as ``problem_type``.

    Raises:
        SchemaInferenceError: naming the answer to change.
    """
    import pandas as pd

    values = series.dropna()
    if values.empty:
        raise SchemaInferenceError(f"Target '{target}' has no values.",
                                   fix=f"Change {names.target}.")
    n = int(values.nunique())
    kind = _kind(series)
    if problem_type == "regression":
        if kind not in ("int", "number"):
            raise SchemaInferenceError(
                f"Target '{target}' is not numeric (dtype {series.dtype}, e.g. "
                f"{values.astype(str).unique()[:3].tolist()}), so it cannot be a regression "
                "target.", fix=f"Change {names.problem_type} to binary or multiclass, or "
                f"{names.target} to a numeric column.")
        return
    if n < 2:
        raise SchemaInferenceError(f"Target '{target}' has a single class "
                                   f"({values.iloc[0]!r}); a classifier needs two or more.",
                                   fix=f"Change {names.target} or {names.derive}.")
    if problem_type == "binary":
        ok = set(pd.unique(values)) <= {0, 1}  # True == 1, False == 0
        if not ok:
            hint = (f"Change {names.problem_type} to multiclass" if n <= MAX_CLASSES
                    else f"Change {names.problem_type} to regression")
            # a value the column has, e.g. 'Yes' of No/Yes (the last in sorted order)
            value = sorted(pd.unique(values), key=str)[-1]
            literal = repr(value) if isinstance(value, str) else str(value)
            raise SchemaInferenceError(
                f"Target '{target}' has {n} distinct values "
                f"({values.astype(str).unique()[:5].tolist()}); a binary target must be 0/1 "
                "or true/false.",
                fix=f"{hint}, or derive a 0/1 target with {names.derive} "
                f"(e.g. \"{target} == {literal}\").")
    elif n > MAX_CLASSES or (kind == "number" and not values.astype(float).apply(
            float.is_integer).all()):
        raise SchemaInferenceError(
            f"Target '{target}' has {n} distinct values (dtype {series.dtype}); that looks "
            "like a quantity, not classes.",
            fix=f"Change {names.problem_type} to regression, or {names.target}.")


def guess_problem_type(series: Any) -> str:
    """``binary`` for 0/1 or true/false, ``regression`` for many numbers, else ``multiclass``."""
    import pandas as pd

    values = series.dropna()
    if set(pd.unique(values)) <= {0, 1}:  # True == 1 and False == 0
        return "binary"
    if _kind(series) in ("int", "number") and values.nunique() > 20:
        return "regression"
    return "multiclass"


def not_a_feature(name: str, series: Any, rows: int, max_categories: int) -> Exclusion | None:
    """Why column ``name`` is no feature (a row index, an id, free text, a constant), or None.

    Numbers are not judged by being unique, since a measurement often is. Integers
    are an id when they are a row number (unique and rising by one, in any order), or
    unique with a key-like name (``ID_LIKE_NAME``); strings when each row has its own,
    or too many values.
    """
    kind = _kind(series)
    values = series.dropna()
    distinct = int(values.nunique()) if len(values) else 0
    if distinct == 0:
        return Exclusion(name, "it is empty")
    if distinct == 1:
        return Exclusion(name, "it is constant")
    if ID_NAME.match(name):
        return Exclusion(name, f"its name '{name}' marks a row index or id (e.g. a pandas "
                         "index written to CSV)", identifier=True)
    per_row = distinct == rows and rows >= MIN_ID_ROWS
    if kind == "int" and per_row and int(values.max()) - int(values.min()) == rows - 1:
        return Exclusion(name, f"its values are unique integers rising by one "
                         f"({_py(values.min())}..{_py(values.max())}), a row number",
                         identifier=True)
    if per_row and ID_LIKE_NAME.search(name) and kind in ("int", "str"):
        return Exclusion(name, "it has one value per row and an id-like name",
                         identifier=True)
    if kind != "str":
        return None
    if per_row:
        return Exclusion(name, f"it has one value per row ({distinct} distinct strings), "
                         "like an id", identifier=True)
    text = values.astype(str)
    length = float(text.str.len().median())
    if length >= FREE_TEXT_CHARS and text.str.contains(" ", regex=False).mean() >= 0.5:
        return Exclusion(name, f"it is free text (median {length:.0f} characters)")
    if distinct > max_categories:
        return Exclusion(name, f"its {distinct} distinct strings look like an id or free text")
    return None


def infer(frame: Any, target: str, problem_type: str, time_column: str | None = None,
          derive: dict[str, str] | None = None, source: str = "",
          names: Names = Names(), keep: list[str] | tuple[str, ...] = (),
          seed: int = 0) -> InferredSchema:
    """Propose ``conf/validate`` and ``conf/features`` for ``frame``.

    Args:
        frame: The prepared rows (see :func:`read_prepared`).
        target: The target column (``data.target``).
        problem_type: ``binary``, ``multiclass`` or ``regression`` (``data.problem_type``).
        time_column: ``data.time_column``, used by the ``time`` split.
        derive: ``data.derive``: the columns a derived target is computed from are
            not features (they would leak the label), nor are other columns that alone
            nearly determine it (:func:`prefab_mlops.core.leakage.scan`).
        source: Where the rows came from (for the notes).
        names: How to name the inputs in error messages.
        keep: Columns to use as features although they would be left out (``--keep``).
        seed: Seeds the one-feature leakage check.

    Returns:
        An :class:`InferredSchema` of plain dicts, ready for YAML; ``excluded`` says
        which columns were left out and why.

    Raises:
        SchemaInferenceError: the target does not fit ``problem_type``, or ``keep``
            names the target or a column the data does not have.
    """
    from prefab_mlops.core.leakage import scan

    if problem_type not in PROBLEM_TYPES:
        raise SchemaInferenceError(f"Unknown problem type '{problem_type}'.",
                                   fix=f"Change {names.problem_type} to one of "
                                   f"{list(PROBLEM_TYPES)}.")
    check_target(frame[target], problem_type, target, names)
    if time_column and _kind(frame[time_column]) != "datetime":
        raise SchemaInferenceError(
            f"Time column '{time_column}' is not a timestamp (dtype {frame[time_column].dtype}, "
            f"e.g. {frame[time_column].dropna().astype(str).head(3).tolist()}).",
            fix=f"Change {names.time_column} to a column of ISO dates/times, or leave it empty.")
    all_columns = list(map(str, frame.columns))
    unknown = [c for c in keep if c not in all_columns]
    if unknown or target in keep:
        what = (f"names {unknown}, which the data does not have; its columns are "
                f"{_preview(all_columns)}" if unknown else f"names the target '{target}'")
        raise SchemaInferenceError(f"{names.keep} {what}.",
                                   fix=f"Change {names.keep} to columns of the data, "
                                   "other than the target.")
    rows = len(frame)
    notes: list[str] = []
    excluded: list[Exclusion] = []
    leaky = {c for expr in (derive or {}).values() for c in _names_in(expr)} & set(all_columns)
    max_categories = int(min(MAX_CATEGORIES, max(LOW_CARDINALITY, ID_SHARE * rows)))
    columns: dict[str, dict[str, Any]] = {}
    candidates: list[str] = []
    for name in all_columns:
        s = frame[name]
        kind = _kind(s)
        rule: dict[str, Any] = {"dtype": kind, "nullable": bool(s.isna().any())}
        values = s.dropna()
        distinct = int(values.nunique()) if len(values) else 0
        why: Exclusion | None = None
        if name == target:
            rule["nullable"] = False
        elif name in leaky:
            why = Exclusion(name, "the target is derived from it")
        else:
            why = not_a_feature(name, s, rows, max_categories)
        if why is not None and name in keep:
            notes.append(f"'{name}' is kept as a feature ({names.keep}), although {why.reason}")
            why = None
        id_like = why is not None and why.identifier
        if kind in ("int", "number") and len(values) and not id_like:
            rule["expected_min"], rule["expected_max"] = _py(values.min()), _py(values.max())
        if kind == "str" and 0 < distinct <= LOW_CARDINALITY and not id_like:
            rule["expected_values"] = sorted(map(str, values.unique()))
        if name == target and problem_type != "regression" and kind == "str":
            rule.pop("expected_values", None)
            rule["allowed"] = sorted(map(str, values.unique()))  # the classes: hard
        columns[name] = rule
        if name == target:
            continue
        if why is not None:
            excluded.append(why)
        else:
            candidates.append(name)
    leakage = scan(frame[candidates], frame[target], problem_type, seed) if candidates else None
    for found in leakage.suspects if leakage else []:
        alone = f"alone it nearly determines the target ({found.metric} {found.score:.4f})"
        if derive and found.column not in keep:
            excluded.append(Exclusion(found.column, alone + ", like the columns the target "
                                      "is derived from"))
            candidates.remove(found.column)
        else:
            notes.append(f"'{found.column}' is a feature, but {alone}: if it is not known when "
                         "a prediction is made, leave it out (training warns about it: "
                         "validate.leakage)")
    numeric: list[str] = []
    categorical: list[str] = []
    datetimes: list[str] = []
    parts: list[str] = ["month", "dayofweek"]
    for name in candidates:
        kind = _kind(frame[name])
        if kind == "datetime":
            datetimes.append(name)
            values = frame[name].dropna()
            if (values.dt.normalize() != values).any() and "hour" not in parts:
                parts.append("hour")
        elif kind in ("int", "number"):
            numeric.append(name)
        else:
            categorical.append(name)
    if not (numeric or categorical or datetimes):
        raise SchemaInferenceError(
            f"'{source or 'the data'}' has no usable feature columns besides the target "
            f"'{target}'.", fix=f"Check the data, data.columns and the target, or keep a "
            f"column with {names.keep}.")
    validate = {"on_failure": "fail", "leakage": "warn",
                "min_rows": max(1, min(1000, rows // 10)),
                "strict": False, "max_examples": 5, "unique": [], "columns": columns}
    features = {
        "split": {"strategy": "hash", "key": [], "time_column": time_column or None,
                  "valid_size": 0.1, "test_size": 0.2},
        "numeric": {"columns": numeric, "impute": "median", "scale": "none"},
        "categorical": {"columns": categorical, "encoding": "ordinal", "impute": "constant",
                        "min_frequency": None},
        "datetime": {"columns": datetimes, "parts": parts if datetimes else []},
        "drop": [], "remainder": "drop",
    }
    return InferredSchema(validate=validate, features=features, rows=rows, notes=notes,
                          excluded=excluded, leakage=leakage)


# ------------------------------------------------------------------- output
_VALIDATE_HEAD = """\
# Data contract for '{name}', inferred by `prefab schema infer` from
#   {source} ({rows:,} rows).
# Checked after ingest and before any feature work; every violation is reported at once.
# expected_min/expected_max/expected_values record what those rows looked like: a new
# batch beyond them passes with a warning (validation report, drift summary). Declare
# hard limits with min/max/allowed: those fail the run (on_failure).
# leakage: warn | fail | off - the features that alone nearly determine the target.
"""
_FEATURES_HEAD = """\
# Feature recipe for '{name}', inferred by `prefab schema infer` from
#   {source}
# Fitted on the train split only; saved inside the model as one inference pipeline.
"""


def _dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=96,
                          allow_unicode=True)


def render(schema: InferredSchema, name: str, source: str) -> tuple[str, str]:
    """The text of ``conf/validate/<name>.yaml`` and ``conf/features/<name>.yaml``."""
    head = _VALIDATE_HEAD.format(name=name, source=source, rows=schema.rows)
    feats = _FEATURES_HEAD.format(name=name, source=source)
    if schema.excluded:
        feats += ("# Not features (bring one back with `prefab schema infer --keep COLUMN`):\n"
                  + "".join(f"#   - {e.column}: {e.reason}\n" for e in schema.excluded))
    if schema.notes:
        feats += "# Notes:\n" + "".join(f"#   - {n}\n" for n in schema.notes)
    return head + _dump(schema.validate), feats + _dump(schema.features)


def placeholders(name: str, reason: str, command: str) -> tuple[str, str]:
    """Files to write when the data cannot be read yet (e.g. ``s3://`` at generation)."""
    why = f"# Not inferred yet: {reason}\n# Infer it with:  {command}\n"
    validate = why + _dump({"on_failure": "fail", "leakage": "warn", "min_rows": 1,
                            "strict": False, "max_examples": 5, "unique": [], "columns": {}})
    features = why + ("# Until then training stops with \"'features' lists no numeric, "
                      "categorical or datetime columns\".\n") + _dump({
        "split": {"strategy": "hash", "key": [], "time_column": None, "valid_size": 0.1,
                  "test_size": 0.2},
        "numeric": {"columns": [], "impute": "median", "scale": "none"},
        "categorical": {"columns": [], "encoding": "ordinal", "impute": "constant",
                        "min_frequency": None},
        "datetime": {"columns": [], "parts": []}, "drop": [], "remainder": "drop"})
    return validate, features


def write(conf_dir: Path, name: str, texts: tuple[str, str], force: bool) -> list[Path]:
    """Write ``validate/<name>.yaml`` and ``features/<name>.yaml``; never clobber silently.

    Returns:
        The files written (existing files are kept unless ``force``).
    """
    written = []
    for group, text in zip(("validate", "features"), texts, strict=True):
        path = conf_dir / group / f"{name}.yaml"
        if path.exists() and not force:
            print(f"kept {path} (exists; --force overwrites it)", file=sys.stderr)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


# ---------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``prefab schema infer`` (shared with ``python -m``)."""
    p.add_argument("data_uri", nargs="?", default=None,
                   help="CSV/Parquet: a path, s3://bucket/key or pkg://package/path "
                   "(default: data.uri of --dataset)")
    p.add_argument("--dataset", default=None,
                   help="read conf/data/DATASET.yaml for the location, target and preparation")
    p.add_argument("--target", default=None, help="the target column (required with DATA_URI)")
    p.add_argument("--problem-type", choices=PROBLEM_TYPES, default=None,
                   help="binary | multiclass | regression (default: guessed from the target)")
    p.add_argument("--time-column", default=None, help="timestamp column (parsed as a date)")
    p.add_argument("--name", default=None,
                   help="data set name for the written files (default: the file name's stem)")
    p.add_argument("--derive", default=None, metavar="EXPR",
                   help="pandas expression computing the target, e.g. 'amount > 100'")
    p.add_argument("--keep", action="append", default=[], metavar="COL",
                   help="use COL as a feature although inference leaves it out (an id, a "
                   "constant, a suspected leak); repeat it or separate columns by commas")
    p.add_argument("--config-dir", default="conf", type=Path,
                   help="the project's conf/ directory (default: ./conf)")
    p.add_argument("--write", action="store_true",
                   help="write conf/validate/NAME.yaml and conf/features/NAME.yaml")
    p.add_argument("--force", action="store_true", help="with --write: overwrite existing files")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--from-copier", action="store_true", help=argparse.SUPPRESS)
    # the project's first `make setup`, inferring what a Copier of its own could not
    p.add_argument("--from-setup", action="store_true", help=argparse.SUPPRESS)
    return p


def _data_config(args: argparse.Namespace) -> Any:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from prefab_mlops.config import DataConfig
    from prefab_mlops.core.errors import ConfigError

    if args.dataset:
        path = args.config_dir / "data" / f"{args.dataset}.yaml"
        if not path.is_file():
            raise ConfigError(f"No data config {path}.",
                              fix="Pass --dataset with a file name from conf/data/, or "
                              "--config-dir.")
        try:
            cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(path))
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{path} is not a valid data config: {exc}",
                              fix="Compare it with DataConfig in "
                              "prefab_mlops/config/schema.py.") from None
        for key in ("data_uri", "target", "problem_type", "time_column"):
            value = getattr(args, key)
            if value is not None:
                cfg[{"data_uri": "uri"}.get(key, key)] = value
        data = OmegaConf.to_object(cfg)
    else:
        if not args.data_uri or not args.target:
            raise ConfigError("Give DATA_URI and --target, or --dataset NAME.",
                              fix="e.g. prefab schema infer data/sales.csv --target churned")
        stem = re.sub(r"[^a-z0-9_]", "_", Path(args.data_uri.split("#")[-1]).name.split(".")[0]
                      .lower()) or "data"
        data = DataConfig(name=args.name or stem, uri=args.data_uri,
                          problem_type=args.problem_type or "binary",
                          target=args.target, time_column=args.time_column or None,
                          parse_dates=[args.time_column] if args.time_column else [])
    if args.derive:
        data.derive = {data.target: args.derive}
    return data


def _s3_config() -> Any:
    import os

    from prefab_mlops.core.storage import S3Config

    return S3Config(endpoint_url=os.environ.get("PREFAB_S3_ENDPOINT_URL") or None,
                    region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))


def run(args: argparse.Namespace) -> int:
    """Infer, then print or write. Returns the process exit code."""
    import json

    names = COPIER_NAMES if args.from_copier else Names()
    root = args.config_dir.resolve().parent
    if args.from_copier:
        try:
            import omegaconf  # noqa: F401
            import pandas  # noqa: F401
        except ImportError as exc:
            return _copier_placeholder(args, f"{exc.name} is not importable from "
                                       f"{sys.executable}")
    data = _data_config(args)
    if args.from_copier and data.uri.startswith("s3://"):
        return _copier_placeholder(args, f"{data.uri} is on S3, which is not read while the "
                                   "project is generated")
    frame = read_prepared(data, root, _s3_config(), names)
    if not args.dataset and args.problem_type is None:
        data.problem_type = guess_problem_type(frame[data.target])
    keep = [c.strip() for arg in args.keep for c in arg.split(",") if c.strip()]
    schema = infer(frame, data.target, data.problem_type, data.time_column, data.derive,
                   data.uri, names, keep=keep)
    texts = render(schema, data.name, data.uri)
    for gone in schema.excluded:
        how = names.keep if args.from_copier else f"{names.keep} '{gone.column}'"
        print(f"not a feature: '{gone.column}': {gone.reason} (keep it with {how})",
              file=sys.stderr)
    for note in schema.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.write or args.from_copier:
        written = write(args.config_dir, data.name, texts, args.force)
        for path in written:
            print(f"wrote {path}", file=sys.stderr)
    elif args.json:
        print(json.dumps({"name": data.name, "rows": schema.rows, "validate": schema.validate,
                          "features": schema.features, "notes": schema.notes,
                          "excluded": [e.__dict__ for e in schema.excluded],
                          "leakage": schema.leakage.as_dict() if schema.leakage else None},
                         indent=2, default=str))
    else:
        print(f"# --- conf/validate/{data.name}.yaml\n{texts[0]}\n"
              f"# --- conf/features/{data.name}.yaml\n{texts[1]}", end="")
    return 0


def _copier_placeholder(args: argparse.Namespace, reason: str) -> int:
    name = args.dataset or "data"
    command = f"prefab schema infer --dataset {name} --write --force"
    written = write(args.config_dir, name, placeholders(name, reason, command), force=False)
    print(f"note: the validation schema and features of '{name}' were not inferred: {reason}.\n"
          f"      Wrote placeholders {[str(p) for p in written]}; once the data can be read, "
          f"run:\n        {command}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m prefab_mlops.scaffold.schema_infer``: see the module docstring."""
    parser = add_arguments(argparse.ArgumentParser(
        prog="python -m prefab_mlops.scaffold.schema_infer", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    # `make setup` runs the template's hook where Copier's own Python could not
    args.from_copier = args.from_copier or args.from_setup
    try:
        return run(args)
    except PrefabError as exc:
        if args.from_setup:
            # the project exists: its answers change with its own Copier (a dev dependency)
            copier = os.path.relpath(Path(sys.executable).parent / "copier")
            print(f"error: Project setup stopped: the data contract (conf/validate, "
                  f"conf/features) could not be inferred: {exc}\nTo change an answer of this "
                  f"project: {copier} recopy --trust --defaults --overwrite --data "
                  "NAME=VALUE (its other answers are kept); then run make again.",
                  file=sys.stderr)
            return 2
        where = "Project generation stopped: " if args.from_copier else ""
        print(f"error: {where}{exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
