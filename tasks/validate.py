"""Validate: check a data set against the declarative schema in ``conf/validate``.

The schema (dtypes, nullability, ranges, allowed categories, uniqueness, minimum
rows, target present and valid) is turned into a pandera ``DataFrameSchema`` and
checked lazily, so *every* violation is collected and reported at once, naming
column, rule, count and examples. ``on_failure`` chooses between failing the run
and warning. The soft rules (``expected_min``/``expected_max``/``expected_values``:
what the data looked like when its schema was inferred) never fail: values beyond
them are listed as warnings in the report.

:func:`check_leakage` is the leakage alarm (``validate.leakage``): on the training
split, before training, it names the model inputs that alone nearly determine the
target (:mod:`prefab_mlops.core.leakage`).

:func:`validate_partitioned` is the Dask engine's step (``data.engine: dask``): the
same data contract partition by partition (the pandas check on each partition);
global rules (row count, uniqueness, two classes) are Dask aggregations.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from prefect import task

from prefab_mlops.config import ColumnRule, TargetSpec, ValidateConfig
from prefab_mlops.core.errors import DataValidationError, LeakageError
from prefab_mlops.core.fingerprint import lineage
from prefab_mlops.core.leakage import MAX_ROWS as LEAKAGE_SCAN_ROWS
from prefab_mlops.core.leakage import LeakageScan, scan
from prefab_mlops.core.schema import ColumnKind, InputSchema
from prefab_mlops.core.storage import StorageConfig
from prefab_mlops.orchestration.artifacts import md_table
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.partitions import (
    PartitionedDataset,
    PartitionedFeatures,
    compute_client,
    storage_options,
    train_sample,
)
from prefab_mlops.tasks.featurize import FeatureSet
from prefab_mlops.tasks.ingest import Dataset

_DTYPE_FAMILIES = {
    "int": pd.api.types.is_integer_dtype,
    "float": pd.api.types.is_float_dtype,
    "number": lambda s: pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s),
    "bool": pd.api.types.is_bool_dtype,
    "datetime": pd.api.types.is_datetime64_any_dtype,
    "str": lambda s: pd.api.types.is_string_dtype(s) or isinstance(s.dtype, pd.CategoricalDtype)
    or pd.api.types.is_object_dtype(s),
    "category": lambda s: isinstance(s.dtype, pd.CategoricalDtype)
    or pd.api.types.is_string_dtype(s) or pd.api.types.is_object_dtype(s),
}


@dataclass
class ValidationReport:
    """The outcome of :func:`validate`.

    Attributes:
        passed: No violations.
        rows: Rows checked.
        columns: Columns checked.
        violations: One record per (column, rule): ``column``, ``rule``, ``count``,
            ``examples``.
        on_failure: ``fail`` or ``warn`` (from config).
        fingerprint: Fingerprint of the checked data + schema.
        warnings: Values beyond the soft rules (``expected_*``), in the same records
            as ``violations``; they never fail validation.
    """

    passed: bool
    rows: int
    columns: int
    violations: list[dict[str, Any]] = field(default_factory=list)
    on_failure: str = "fail"
    fingerprint: str = ""
    dataset: str = ""
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def to_markdown(self) -> str:
        head = "passed" if self.passed else f"**{len(self.violations)} violation(s)**"
        if self.warnings:
            head += f", {len(self.warnings)} warning(s)"
        text = (f"# Validation of `{self.dataset}`\n\n{self.rows:,} rows × {self.columns} "
                f"columns: {head} (on_failure: `{self.on_failure}`)\n\n"
                + (md_table(self.violations) if self.violations else ""))
        if self.warnings:
            text += ("\n\n## Beyond the expected values (warnings)\n\nThe data contract "
                     "records what the data looked like (`expected_min`, `expected_max`, "
                     "`expected_values`); these rows go beyond it. Widen those values if "
                     "this is the new normal, or declare a hard `min`/`max`/`allowed` if it "
                     "is an error.\n\n" + md_table(self.warnings))
        return text

    def warning_text(self) -> str:
        lines = [f"Data set '{self.dataset}' goes beyond its expected values "
                 f"(conf/validate, expected_*) in {len(self.warnings)} column(s); "
                 "validation passes:"]
        for v in self.warnings:
            lines.append(f"  - column '{v['column']}': {v['rule']}: {v['count']} row(s); "
                         f"examples: {v['examples']}")
        return "\n".join(lines)

    def message(self) -> str:
        lines = [f"Data set '{self.dataset}' ({self.rows:,} rows) violates its schema "
                 f"(conf/validate) in {len(self.violations)} way(s):"]
        for v in self.violations:
            lines.append(f"  - column '{v['column']}': {v['rule']} failed for {v['count']} "
                         f"row(s); examples: {v['examples']}")
        return "\n".join(lines)


def _dtype_ok(series: pd.Series, dtype: str) -> bool:
    check = _DTYPE_FAMILIES.get(dtype)
    if check is None:
        raise DataValidationError(f"Unknown dtype '{dtype}' in conf/validate.",
                                  fix=f"Use one of {sorted(_DTYPE_FAMILIES)}.")
    return bool(check(series))


#: The rule name of a classification target with fewer than two classes.
_TWO_CLASSES = "target must have at least two classes"


def _orderable(series: pd.Series) -> bool:
    """Whether ``series`` compares with the numbers of ``min``/``max``."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return False
    if pd.api.types.is_object_dtype(series):
        return pd.api.types.infer_dtype(series, skipna=True) in (
            "integer", "floating", "mixed-integer-float", "decimal", "boolean", "empty")
    return pd.api.types.is_numeric_dtype(series)


def _bounds(rule: ColumnRule) -> str:
    return " and ".join(f"{k} {v}" for k, v in (("min", rule.min), ("max", rule.max))
                        if v is not None)


def _duplicate_names(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One violation per column name that occurs more than once."""
    counts = pd.Series([str(c) for c in frame.columns]).value_counts()
    return [{"column": name, "rule": "unique column name", "count": int(n),
             "examples": [f"{n} columns are named {name!r}; only the first was checked"]}
            for name, n in counts[counts > 1].items()]


def _target_rule(target: TargetSpec) -> list[Any]:
    import pandera.pandas as pa

    if target.problem_type == "regression":
        return [pa.Check(lambda s: np.isfinite(pd.to_numeric(s, errors="coerce")
                                               .astype("float64")),
                         element_wise=False, name="finite_target",
                         error="target must be a finite number")]
    return [pa.Check(lambda s: s.nunique(dropna=True) >= 2, name="at_least_two_classes",
                     error=_TWO_CLASSES),
            *([pa.Check.isin([0, 1, True, False])] if target.problem_type == "binary" else [])]


def build_schema(frame: pd.DataFrame, cfg: ValidateConfig, target: TargetSpec | None,
                 drop_rules: tuple[str, ...] = ()):
    """Build the pandera schema for ``frame`` and collect dtype violations.

    Columns whose dtype is wrong get no value checks (comparing strings with
    numbers would only add noise); their dtype violation is returned instead.
    """
    import pandera.pandas as pa

    dtype_violations: list[dict[str, Any]] = []
    columns: dict[str, Any] = {}
    rules: dict[str, ColumnRule] = dict(cfg.columns)
    if target is None:
        rules = {k: r for k, r in rules.items() if k not in drop_rules}
    elif target.name not in rules:
        rules[target.name] = ColumnRule(nullable=False)
    for name, rule in rules.items():
        checks: list[Any] = []
        value_checks = True
        if name in frame.columns and rule.dtype and not _dtype_ok(frame[name], rule.dtype):
            value_checks = False
            dtype_violations.append({
                "column": name, "rule": f"dtype {rule.dtype}", "count": len(frame),
                "examples": f"found dtype {frame[name].dtype}; values "
                            f"{frame[name].dropna().astype(str).unique()[:3].tolist()}"})
        bounded = rule.min is not None or rule.max is not None
        if value_checks and bounded and name in frame.columns and not _orderable(frame[name]):
            # A bound compares numbers: on text it would only report pandas' TypeError.
            dtype_violations.append({
                "column": name, "rule": _bounds(rule), "count": len(frame),
                "examples": f"found dtype {frame[name].dtype}: the bounds need a number "
                            "column (set dtype: number, or drop min/max)"})
            bounded = False
        if value_checks:
            if bounded and rule.min is not None:
                checks.append(pa.Check.ge(rule.min))
            if bounded and rule.max is not None:
                checks.append(pa.Check.le(rule.max))
            if rule.allowed is not None:
                checks.append(pa.Check.isin(list(rule.allowed)))
            if target is not None and name == target.name:
                checks.extend(_target_rule(target))
        is_target = target is not None and name == target.name
        columns[name] = pa.Column(checks=checks, nullable=rule.nullable and not is_target,
                                  unique=rule.unique, required=rule.required or is_target)
    # No ``error=``: pandera would report that text instead of the name _summarize expects.
    frame_checks = [pa.Check(lambda df: len(df) >= cfg.min_rows,
                             name=f"min_rows({cfg.min_rows})")]
    # Compound keys are checked in validate(), one record per key (pandera would split a
    # key into one record per column, without the duplicated key values).
    schema = pa.DataFrameSchema(columns, checks=frame_checks, strict=cfg.strict)
    return schema, dtype_violations, [list(u) for u in cfg.unique]


def _fmt(value: Any) -> str:
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def soft_warnings(frame: pd.DataFrame, rules: dict[str, ColumnRule],
                  max_examples: int) -> list[dict[str, Any]]:
    """Values beyond each column's ``expected_min``/``expected_max``/``expected_values``.

    Pure. Columns that are absent, or whose values are not comparable (a dtype
    violation reports those), are skipped.

    Returns:
        One record per (column, soft rule), like a violation: ``column``, ``rule``,
        ``count`` and ``examples`` (the most extreme values, or the unexpected ones).
    """
    out: list[dict[str, Any]] = []
    for name, rule in rules.items():
        if name not in frame.columns:
            continue
        values = frame[name].dropna()
        low, high = rule.expected_min, rule.expected_max
        if (low is not None or high is not None) and pd.api.types.is_numeric_dtype(values) \
                and not pd.api.types.is_bool_dtype(values):
            below = values[values < low] if low is not None else values[:0]
            above = values[values > high] if high is not None else values[:0]
            if len(below) or len(above):
                bounds = f"[{_fmt(low) if low is not None else '-inf'}, " \
                         f"{_fmt(high) if high is not None else 'inf'}]"
                extreme = [*below.nsmallest(max_examples).tolist(),
                           *above.nlargest(max_examples).tolist()]
                out.append({"column": name, "rule": f"expected range {bounds}",
                            "count": int(len(below) + len(above)),
                            "examples": [_fmt(v) for v in extreme[:max_examples]]})
        if rule.expected_values is not None:
            known = {str(v) for v in rule.expected_values}
            new = values[~values.map(str).isin(known)]
            if len(new):
                out.append({"column": name, "rule": "expected values",
                            "count": int(len(new)),
                            "examples": new.map(str).value_counts().index[:max_examples]
                            .tolist()})
    return out


def _summarize(failure_cases: pd.DataFrame, frame: pd.DataFrame,
               max_examples: int) -> list[dict[str, Any]]:
    out = []
    fc = failure_cases.copy()
    fc["column"] = fc["column"].astype("object").where(fc["column"].notna(), "<table>")
    for (column, check), grp in fc.groupby(["column", "check"], sort=False, dropna=False):
        # map(str), not astype(str): pandas 3 keeps NaN as NaN in astype(str).
        cases = grp["failure_case"].map(str).unique().tolist()
        examples = cases[:max_examples]
        rule = str(check)
        count = len(grp)
        if rule == "column_in_dataframe":  # name every missing column, not just examples
            column, rule = ", ".join(cases), "column present"
            examples = [f"columns found: {list(map(str, frame.columns))[:30]}"]
        elif rule.startswith("min_rows"):
            examples = [f"found {len(frame)} row(s)"]
            count = 1
        elif rule == _TWO_CLASSES:
            found = frame[column].dropna().unique() if column in frame.columns else []
            examples = [f"found {len(found)} class(es): "
                        f"{[str(v) for v in found[:max_examples]]}"]
            count = 1
        elif rule == "column_in_schema":
            column, rule = ", ".join(cases), "column declared (strict schema)"
        elif rule == "not_nullable":
            rule = "not null"
        out.append({"column": str(column), "rule": rule, "count": int(count),
                    "examples": examples})
    return out


def _soft_warnings_of_typed(frame: pd.DataFrame, cfg: ValidateConfig,
                            violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The soft rules' warnings on the columns whose dtype is right (a column with a
    dtype violation is reported once, as that)."""
    dtype_bad = {v["column"] for v in violations if v["rule"].startswith("dtype ")}
    return soft_warnings(frame, {k: r for k, r in cfg.columns.items() if k not in dtype_bad},
                         cfg.max_examples)


def _settle(report: ValidationReport) -> ValidationReport:
    """Log the report's warnings, then fail on its violations (``on_failure: fail``) or
    log them and go on (``warn``); both engines' validate end here."""
    if report.warnings:
        get_logger().warning("%s", report.warning_text())
    if report.violations:
        if report.on_failure == "fail":
            raise DataValidationError(
                report.message(), report.violations,
                fix="Fix the data at its source, or relax the rule in conf/validate "
                "(set validate.on_failure=warn to continue anyway).")
        get_logger().warning("%s\n(on_failure=warn: continuing)", report.message())
    return report


@task(name="validate", persist_result=True)
def validate(data: Dataset, cfg: ValidateConfig, target: TargetSpec,
             labelled: bool = True) -> ValidationReport:
    """Check ``data`` against its schema and report every violation at once.

    Args:
        data: The ingested data set.
        cfg: ``conf/validate``: the declarative schema and ``on_failure``.
        target: Target column and problem type (from ``conf/data``).
        labelled: False for batches without the target (its rules are skipped).

    Returns:
        A :class:`ValidationReport` (also when ``on_failure`` is ``warn``).

    Raises:
        DataValidationError: violations found and ``on_failure`` is ``fail``. Never
            retried: the data will not change by itself.
    """
    import pandera.pandas as pa

    frame = data.frame
    violations = _duplicate_names(frame)
    if violations:  # pandera and the checks below need one column per name
        frame = frame.loc[:, ~frame.columns.duplicated()]
    schema, dtype_violations, extra_unique = build_schema(
        frame, cfg, target if labelled else None, drop_rules=(target.name,))
    violations += dtype_violations
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        violations += _summarize(err.failure_cases, frame, cfg.max_examples)
    for cols in extra_unique:
        present = [c for c in cols if c in frame.columns]
        dup = frame.duplicated(subset=present, keep=False) if present else None
        if dup is not None and dup.any():
            violations.append({"column": ", ".join(cols), "rule": "unique together",
                               "count": int(dup.sum()),
                               "examples": frame.loc[dup, present].drop_duplicates()
                               .head(cfg.max_examples).astype(str).values.tolist()})
    warnings = _soft_warnings_of_typed(frame, cfg, violations)
    report = ValidationReport(passed=not violations, rows=len(frame), columns=frame.shape[1],
                              violations=violations, on_failure=cfg.on_failure,
                              fingerprint=lineage(validate, data, cfg, target, labelled),
                              dataset=f"{data.name} ({data.source})", warnings=warnings)
    return _settle(report)


# ------------------------------------------------------------------ leakage
def leakage_fix(columns: list[str], listed: dict[str, str]) -> str:
    """How to leave ``columns`` out of the model's inputs (conf/features).

    Args:
        columns: The suspected columns.
        listed: Column -> the ``features`` section that lists it (``numeric``,
            ``categorical``, ``datetime``); columns not listed come in through
            ``remainder: passthrough``.
    """
    steps = []
    for kind in ("numeric", "categorical", "datetime"):
        mine = [c for c in columns if listed.get(c) == kind]
        if mine:
            steps.append(f"remove {', '.join(repr(c) for c in mine)} from "
                         f"features.{kind}.columns")
    rest = [c for c in columns if c not in listed]
    if rest:
        steps.append(f"add {', '.join(repr(c) for c in rest)} to features.drop (e.g. "
                     f"features.drop=[{','.join(rest)}])")
    return ("Leave them out of the model's inputs in conf/features: " + "; ".join(steps)
            + ". If they are truly known when a prediction is made, keep them and set "
            "validate.leakage=warn (or off).")


@dataclass
class LeakageReport:
    """The outcome of :func:`check_leakage`.

    Attributes:
        mode: ``validate.leakage``: ``warn``, ``fail`` or ``off``.
        scan: What the one-feature models found (None when ``off``).
        listed: Column -> the ``features`` section that lists it, for the fix.
    """

    mode: str
    scan: LeakageScan | None
    listed: dict[str, str] = field(default_factory=dict)

    @property
    def suspects(self) -> list[str]:
        return [s.column for s in self.scan.suspects] if self.scan else []

    def fix(self) -> str:
        return leakage_fix(self.suspects, self.listed)

    def message(self) -> str:
        assert self.scan is not None
        found = ", ".join(s.text() for s in self.scan.suspects)
        return (f"Leakage alarm: {len(self.scan.suspects)} model input(s) alone nearly "
                f"determine the target on the training split: {found} (threshold "
                f"{self.scan.threshold}; one-feature models, cross-validated on "
                f"{self.scan.rows:,} training rows). A feature this good is usually the "
                "label in another form, or something recorded after the outcome.")

    def line(self) -> str:
        """One line for the run summary."""
        if self.scan is None:
            return "off (validate.leakage=off)"
        if not self.scan.suspects:
            text = (f"no model input alone nearly determines the target ({self.scan.columns} "
                    f"checked on {self.scan.rows:,} training rows; best "
                    + (self.scan.scores[0].text() if self.scan.scores else "none") + ")")
        else:
            text = ("SUSPECTED: " + ", ".join(s.text() for s in self.scan.suspects)
                    + ". Fix: " + self.fix())
        if self.scan.unchecked:
            text += f"; not checked (time bound): {self.scan.unchecked}"
        return text

    def to_markdown(self) -> str:
        head = "## Leakage check (training rows)\n\n"
        if self.scan is None or not self.scan.suspects:
            return head + self.line()
        rows = [{"column": s.column, self.scan.metric + " alone": f"{s.score:.4f}"}
                for s in self.scan.suspects]
        return (head + f"**{len(rows)} suspect(s)** (validate.leakage: `{self.mode}`): each "
                "alone nearly determines the target.\n\n" + md_table(rows)
                + f"\n\n**Fix**: {self.fix()}")

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe record (the run summary)."""
        return {"mode": self.mode, "suspects": self.suspects,
                "fix": self.fix() if self.suspects else None,
                "scan": self.scan.as_dict() if self.scan else None}


def leakage_summary(report: LeakageReport, at_evaluation: LeakageScan | None) -> dict[str, Any]:
    """The run summary's record of both leakage checks (JSON-safe).

    Args:
        report: The check before training (:func:`check_leakage`).
        at_evaluation: The evaluate step's scan, made only when the test score was
            suspiciously perfect (``Evaluation.leakage``), else None.
    """
    after = None
    if at_evaluation is not None:
        suspects = [s.column for s in at_evaluation.suspects]
        after = {"suspects": suspects,
                 "fix": leakage_fix(suspects, report.listed) if suspects else None,
                 "scan": at_evaluation.as_dict()}
    return {"before_training": report.as_dict(), "at_evaluation": after}


def leakage_text(record: dict[str, Any]) -> str:
    """One line on a :func:`leakage_summary` record (run summary and CLI)."""
    before, after = record["before_training"], record["at_evaluation"]
    scan_ = before["scan"]
    if scan_ is None:
        text = "off (validate.leakage=off)"
    elif before["suspects"]:
        text = "SUSPECTED: " + ", ".join(f"'{x['column']}' ({x['metric']} {x['score']:.4f} "
                                         "alone)" for x in scan_["suspects"])
    else:
        text = f"no single input of {scan_['columns']} nearly determines the target"
    if after is not None:
        text += ("; the test score is suspiciously perfect: " + (
            f"inputs that alone nearly determine the target: {after['suspects']}"
            if after["suspects"] else "no single input explains it"))
    fix = before["fix"] or (after or {}).get("fix")
    return text + (f". Fix: {fix}" if fix else "")


@task(name="check-leakage", persist_result=True)
def check_leakage(features: FeatureSet, cfg: ValidateConfig, seed: int) -> LeakageReport:
    """The leakage alarm: which model inputs alone nearly determine the target?

    Runs on the training split only (rows the model is tested on stay unseen), with
    the bounded one-feature scan of :func:`prefab_mlops.core.leakage.scan` (at most
    20,000 rows and 30 s).

    Args:
        features: The split and the model's input columns (``train.X``).
        cfg: ``conf/validate``: ``leakage`` is ``warn``, ``fail`` or ``off``.
        seed: Global seed (``seed``): the row sample, folds and trees.

    Returns:
        A :class:`LeakageReport` (also when suspects are found with ``warn``).

    Raises:
        LeakageError: with ``leakage: fail``, naming each suspect, its one-feature score
            and the fix. Never retried: the data will not change by itself.
    """
    listed = {s.name: s.kind.value for s in features.input_schema if not s.remainder}
    if cfg.leakage == "off":
        return LeakageReport("off", None, listed)
    return _leakage_report(scan(features.train.X, features.train.y, features.problem_type,
                                seed), cfg, listed)


@task(name="check-leakage-partitioned")
def check_leakage_partitioned(features: PartitionedFeatures, cfg: ValidateConfig, seed: int,
                              storage: StorageConfig) -> LeakageReport:
    """:func:`check_leakage` on the Dask engine: the same scan, on a seeded sample of the
    training split drawn across all partitions (the scan uses at most 20,000 rows either
    way, so the sample is what it would draw from rows in memory).

    Args:
        features: The partitioned split and the model's input columns.
        cfg: ``conf/validate``: ``leakage`` is ``warn``, ``fail`` or ``off``.
        seed: Global seed (``seed``): the row sample, folds and trees.
        storage: Where the prepared rows are (S3 options for s3:// data).

    Returns:
        A :class:`LeakageReport`.

    Raises:
        LeakageError: with ``leakage: fail``, as :func:`check_leakage`.
    """
    listed = {s.name: s.kind.value for s in features.input_schema if not s.remainder}
    if cfg.leakage == "off":
        return LeakageReport("off", None, listed)
    X, y = train_sample(features, LEAKAGE_SCAN_ROWS, seed, storage)
    return _leakage_report(scan(X, y, features.problem_type, seed), cfg, listed)


def _leakage_report(result: LeakageScan, cfg: ValidateConfig,
                    listed: dict[str, str]) -> LeakageReport:
    """Log what a scan found, and raise with ``leakage: fail``."""
    report = LeakageReport(cfg.leakage, result, listed)
    log = get_logger()
    if result.unchecked:
        log.warning("Leakage check: %s column(s) not checked within %.0f s: %s",
                    len(result.unchecked), result.seconds, result.unchecked)
    if result.suspects:
        if cfg.leakage == "fail":
            raise LeakageError(report.message(),
                               [(s.column, s.score, s.metric) for s in result.suspects],
                               fix=report.fix())
        log.warning("%s\nFix: %s\n(validate.leakage=warn: continuing)", report.message(),
                    report.fix())
    else:
        log.info("Leakage check: %s", report.line())
    return report


_KIND_DTYPE_OK = {
    ColumnKind.NUMERIC: lambda s: pd.api.types.is_numeric_dtype(s)
    and not pd.api.types.is_bool_dtype(s),
    ColumnKind.CATEGORICAL: lambda s: not pd.api.types.is_float_dtype(s),
    ColumnKind.DATETIME: lambda s: pd.api.types.is_datetime64_any_dtype(s)
    or pd.api.types.is_string_dtype(s),
}


def check_batch_schema(frame: pd.DataFrame, schema: InputSchema,
                       allowed_extra: list[str], source: str) -> None:
    """Reject a batch whose columns or dtypes do not match the model's input schema.

    Args:
        frame: The batch.
        schema: The model's input schema (its manifest's ``features.input_schema``).
        allowed_extra: Columns that are not inputs but may be present (ids, the target).
        source: Where the batch came from, for the message.

    Raises:
        DataValidationError: listing every missing column, unexpected column and
            wrong dtype at once.
    """
    problems = []
    missing = [c for c in schema.names if c not in frame.columns]
    if missing:
        problems.append({"column": ", ".join(missing), "rule": "column present",
                         "count": len(missing), "examples": ["missing from the batch"]})
    extra = [c for c in frame.columns if c not in schema and c not in allowed_extra]
    if extra:
        problems.append({"column": ", ".join(map(str, extra)), "rule": "known column",
                         "count": len(extra), "examples": ["not an input of the model"]})
    for spec in schema:
        if spec.name not in frame.columns:
            continue
        s = frame[spec.name]
        if not _KIND_DTYPE_OK[spec.kind](s):
            problems.append({"column": spec.name, "rule": f"dtype {spec.kind.value}",
                             "count": len(s),
                             "examples": [f"found {s.dtype}, model trained on {spec.dtype}"]})
    if problems:
        lines = [f"Batch '{source}' does not match the model's input schema:"]
        lines += [f"  - {p['column']}: {p['rule']} ({p['examples'][0]})" for p in problems]
        raise DataValidationError("\n".join(lines), problems,
                                  fix="Send the columns and types the model was trained on "
                                  "(see `prefab registry show` -> features.input_schema).")


@task(name="validate-batch")
def validate_batch(frame: pd.DataFrame, schema: InputSchema,
                   allowed_extra: list[str], source: str) -> int:
    """Task form of :func:`check_batch_schema`; returns the number of rows checked."""
    check_batch_schema(frame, schema, allowed_extra, source)
    return len(frame)


# ------------------------------------------- data.engine: dask (partitioned data)
def _partition_violations(part: pd.DataFrame, cfg: ValidateConfig, target: TargetSpec
                          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The per-row rules of the data contract on one partition: (violations, warnings).

    Global rules are left to :func:`validate_partitioned`: the row count, uniqueness
    and the two classes of a classification target.
    """
    import pandera.pandas as pa

    local = replace(cfg, min_rows=0, unique=[],
                    columns={k: replace(r, unique=False) for k, r in cfg.columns.items()})
    schema, violations, _ = build_schema(part, local, target)
    try:
        schema.validate(part, lazy=True)
    except pa.errors.SchemaErrors as err:
        found = _summarize(err.failure_cases, part, cfg.max_examples)
        violations += [v for v in found if v["rule"] != _TWO_CLASSES
                       and not v["rule"].startswith("min_rows")]
    warnings = _soft_warnings_of_typed(part, cfg, violations)
    return violations, warnings


def _merge(records: list[dict[str, Any]], max_examples: int) -> list[dict[str, Any]]:
    """Records of the same (column, rule) from several partitions as one: counts added,
    examples pooled (a table-wide rule such as a dtype is counted once per partition)."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        key = (r["column"], r["rule"])
        if key not in merged:
            merged[key] = {**r, "examples": list(r["examples"])}
            continue
        m = merged[key]
        m["count"] += r["count"]
        m["examples"] += [e for e in r["examples"] if e not in m["examples"]]
    for m in merged.values():
        m["examples"] = m["examples"][:max_examples]
    return list(merged.values())


@task(name="validate-partitioned")
def validate_partitioned(data: PartitionedDataset, cfg: ValidateConfig, target: TargetSpec,
                         storage: StorageConfig) -> ValidationReport:
    """Check the data contract on every partition and the global rules on the whole.

    Args:
        data: From :func:`ingest_partitioned`.
        cfg: ``conf/validate``.
        target: Target column and problem type (from ``conf/data``).
        storage: ``conf/storage`` (to read ``data.uri`` on S3).

    Returns:
        A :class:`ValidationReport` (also when ``on_failure`` is ``warn``).

    Raises:
        DataValidationError: violations found and ``on_failure`` is ``fail``.
    """
    import dask
    import dask.dataframe as dd

    options = storage_options(data.uri, storage)
    with compute_client():
        ddf = dd.read_parquet(data.uri, storage_options=options)
        per_part = [dask.delayed(_partition_violations)(p, cfg, target)
                    for p in ddf.to_delayed()]
        unique_cols = [c for c, r in cfg.columns.items() if r.unique and c in ddf.columns]
        keys = [[c for c in cols if c in ddf.columns] for cols in cfg.unique]
        dup_counts = {c: (ddf[c].value_counts() > 1).sum() for c in unique_cols}
        group_dups = {", ".join(k): ddf.groupby(k).size().pipe(lambda s: s[s > 1]).sum()
                      for k in keys if k}
        classes = (ddf[target.name].dropna().nunique()
                   if target.problem_type != "regression" and target.name in ddf.columns
                   else None)
        (parts,) = dask.compute(per_part)  # delayed and expressions: computed apart
        dups, groups, n_classes = dask.compute(dup_counts, group_dups, classes)
    violations = _merge([v for vs, _ in parts for v in vs], cfg.max_examples)
    warnings = _merge([w for _, ws in parts for w in ws], cfg.max_examples)
    if data.rows < cfg.min_rows:
        violations.append({"column": "<table>", "rule": f"min_rows({cfg.min_rows})",
                           "count": 1, "examples": [f"found {data.rows} row(s)"]})
    for col, n in dups.items():
        if n:
            violations.append({"column": col, "rule": "field_uniqueness", "count": int(n),
                               "examples": ["values that occur more than once"]})
    for cols, n in groups.items():
        if n:
            violations.append({"column": cols, "rule": "unique together", "count": int(n),
                               "examples": []})
    if n_classes is not None and n_classes < 2:
        violations.append({"column": target.name, "rule": _TWO_CLASSES, "count": 1,
                           "examples": [f"found {n_classes} class(es)"]})
    report = ValidationReport(passed=not violations, rows=data.rows, columns=len(data.columns),
                              violations=violations, on_failure=cfg.on_failure,
                              fingerprint=lineage(validate_partitioned, data, cfg, target),
                              dataset=f"{data.name} ({data.source})", warnings=warnings)
    return _settle(report)
