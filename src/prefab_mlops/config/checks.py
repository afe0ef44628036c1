"""Checks a schema alone cannot express: allowed values, ``_target_`` namespaces,
time zones and cross-group consistency. Run by :func:`prefab_mlops.config.load_config`.
"""

from __future__ import annotations

from typing import Any

from prefab_mlops.config.schema import SEPARATOR_NAMES, PipelineConfig
from prefab_mlops.core.errors import ConfigError
from prefab_mlops.core.problems import METRICS, PROBLEM_TYPES

#: What a config's ``_target_`` may build without further ado: estimators and
#: transformers, the framework itself and the project's own tasks. Anything else (``os``,
#: ``subprocess``, ``builtins``...) is refused when the config is loaded.
ALLOWED_TARGETS = ("sklearn", "xgboost", "lightgbm", "catboost", "prefab_mlops", "tasks")


def _targets(node: Any, path: str) -> list[tuple[str, str]]:
    """Every ``_target_`` in a resolved config: ``(key path, target)``."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                found.append((where, str(value)))
            else:
                found += _targets(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _targets(value, f"{path}[{i}]")
    return found


def _check_targets(resolved: dict[str, Any]) -> None:
    """Refuse a ``_target_`` outside :data:`ALLOWED_TARGETS` and ``allowed_targets``."""
    allowed = (*ALLOWED_TARGETS, *[str(a).rstrip(".") for a in resolved.get("allowed_targets")
                                   or []])
    bad = [(where, t) for where, t in _targets(resolved, "")
           if not any(t == a or t.startswith(a + ".") for a in allowed)]
    if bad:
        listed = "; ".join(f"'{where}' is '{t}'" for where, t in bad)
        raise ConfigError(
            f"Config names callables outside the allowed namespaces: {listed}. A config "
            f"may only build objects from {', '.join(allowed)}.",
            fix="Use an estimator or transformer from an allowed library, or, if you trust "
            "that code, add its namespace to allowed_targets in conf/pipeline.yaml "
            "(e.g. allowed_targets: [my_company.models]).")

_CHOICES: dict[str, tuple[str, ...]] = {
    "data.problem_type": PROBLEM_TYPES,
    "data.format": ("auto", "csv", "parquet"),
    "data.engine": ("pandas", "dask"),
    "data.window.newest": ("month", "week", "day"),
    "storage.kind": ("local", "s3"),
    "validate.on_failure": ("fail", "warn"),
    "validate.leakage": ("warn", "fail", "off"),
    "features.split.strategy": ("hash", "random", "stratified", "time"),
    "features.numeric.impute": ("median", "mean", "zero", "none"),
    "features.numeric.scale": ("none", "standard", "robust"),
    "features.categorical.encoding": ("onehot", "ordinal", "native"),
    "features.categorical.impute": ("constant", "most_frequent", "none"),
    "features.remainder": ("drop", "passthrough"),
    "evaluate.on_gate_failure": ("warn", "fail"),
    "tracking.mode": ("offline", "online", "disabled"),
    "inference.format": ("parquet", "csv"),
    "orchestration.task_runner": ("thread", "dask"),
    "search.strategy": ("none", "grid", "list", "optuna"),
    "search.optuna.sampler": ("tpe", "random"),
}


def _get(d: dict[str, Any], dotted: str) -> Any:
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _check_choices(resolved: dict[str, Any]) -> None:
    errors = []
    for key, choices in _CHOICES.items():
        value = _get(resolved, key)
        if value is not None and value not in choices:
            errors.append(f"'{key}' is {value!r}; expected one of {list(choices)}")
    if errors:
        raise ConfigError("Invalid config: " + "; ".join(errors),
                          fix="Change the named keys to one of the listed values.")


def _check_timezone(cfg: Any) -> None:
    window = getattr(getattr(cfg, "data", None), "window", None)
    name = getattr(window, "timezone", None)
    if not name:
        return
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"data.window.timezone = '{name}' is not a known time zone.",
                          fix="Use an IANA name such as 'UTC', 'Europe/Berlin' or "
                          "'America/New_York'.") from None


def _check_read(cfg: Any) -> None:
    """``data.read.encoding`` names a codec Python has; ``data.read.sep`` is one character."""
    read = getattr(getattr(cfg, "data", None), "read", None)
    if read is None:
        return
    import codecs

    errors = []
    if read.encoding != "auto":
        try:
            codecs.lookup(read.encoding)
        except LookupError:
            errors.append(f"data.read.encoding = '{read.encoding}' is not a known encoding")
    sep = read.separator()
    if sep is not None and (len(sep) != 1 or sep in "\"\r\n"):
        errors.append(f"data.read.sep = {read.sep!r} is not one character (other than a "
                      "quote or a line break)")
    if errors:
        raise ConfigError("; ".join(errors) + ".",
                          fix="Use data.read.encoding=auto or a Python codec name (utf-8, "
                          "cp1252, latin-1, utf-16, ...), and data.read.sep=auto, one "
                          f"character, or one of {sorted(SEPARATOR_NAMES)}.")


def _dask_engine_limits(cfg: PipelineConfig) -> list[str]:
    """What ``data.engine: dask`` cannot do yet (each needs the whole table at once, or
    a transformer statistic not computed by a Dask reduction)."""
    why = "with 'data.engine' dask"
    errors = []
    if cfg.features.split.strategy != "hash":
        errors.append(f"'features.split.strategy' must be 'hash' {why} (a row's split may "
                      "not depend on the rest of the table)")
    if cfg.data.problem_type not in ("binary", "regression"):
        errors.append(f"'data.problem_type' must be 'binary' or 'regression' {why}")
    if cfg.data.window.newest or cfg.data.sample_rows is not None:
        errors.append(f"'data.window.newest' and 'data.sample_rows' must be null {why}")
    if cfg.features.numeric.scale != "none":
        errors.append(f"'features.numeric.scale' must be 'none' {why}")
    cat = cfg.features.categorical
    if cat.encoding == "native" or cat.min_frequency is not None:
        errors.append(f"'features.categorical' needs encoding ordinal or onehot and no "
                      f"min_frequency {why}")
    if cfg.features.remainder != "drop":
        errors.append(f"'features.remainder' must be 'drop' {why}")
    if not str(cfg.model.get("_target_", "")).startswith("xgboost."):
        errors.append(f"'model' must be an XGBoost model {why} (it trains with xgboost.dask)")
    if cfg.data.dask.n_workers < 1 or cfg.data.dask.threads_per_worker < 1:
        errors.append("'data.dask.n_workers' and 'data.dask.threads_per_worker' must be >= 1")
    if cfg.search.strategy != "none":
        errors.append(f"'search' must be 'none' {why} (a search trains many models on "
                      "pandas data; one big model trains on the cluster)")
    return errors


def _check_consistency(cfg: Any) -> None:
    """Cross-group checks that a schema alone cannot express."""
    if not isinstance(cfg, PipelineConfig):
        return
    errors: list[str] = []
    target = cfg.data.target
    feats = cfg.features
    used = [*feats.numeric.columns, *feats.categorical.columns, *feats.datetime.columns]
    dropped = set(feats.drop) & set(used)
    if dropped:
        errors.append(f"columns {sorted(dropped)} are both features and in 'features.drop'")
    if target in used:
        errors.append(f"target '{target}' is also listed as a feature in 'features'")
    dup = sorted({c for c in used if used.count(c) > 1})
    if dup:
        errors.append(f"columns {dup} appear in more than one 'features' section")
    if not used:
        errors.append("'features' lists no numeric, categorical or datetime columns")
    if feats.split.strategy == "time" and not (feats.split.time_column or cfg.data.time_column):
        errors.append("'features.split.strategy' is 'time' but no time column is set "
                      "(features.split.time_column or data.time_column)")
    if feats.split.strategy == "stratified" and cfg.data.problem_type == "regression":
        errors.append("'features.split.strategy' is 'stratified' for a regression problem")
    if not 0 < feats.split.test_size < 1 or not 0 <= feats.split.valid_size < 1 or (
            feats.split.test_size + feats.split.valid_size >= 1):
        errors.append("'features.split.test_size' and 'valid_size' must be in (0, 1) "
                      "and sum to less than 1")
    key = list(feats.split.key)
    if feats.split.strategy == "hash":
        dup_key = sorted({c for c in key if key.count(c) > 1})
        if dup_key:
            errors.append(f"'features.split.key' lists {dup_key} more than once")
        # The ingested columns are known here only when data.columns lists them; else
        # featurize checks the key against the data.
        if cfg.data.columns is not None:
            unknown = [c for c in key if c not in cfg.data.columns]
            if unknown:
                errors.append(f"'features.split.key' names {unknown}, which the data does not "
                              f"have; its columns (data.columns) are {list(cfg.data.columns)}")
    check = cfg.evaluate.champion
    if check.min_rows < 1 or not 0 <= check.min_share <= 1:
        errors.append("'evaluate.champion.min_rows' must be at least 1 and "
                      "'evaluate.champion.min_share' in [0, 1]")
    if not 0 < cfg.monitor.drift_share <= 1:
        errors.append("'monitor.drift_share' must be in (0, 1]")
    if cfg.monitor.max_rows < 100:
        errors.append("'monitor.max_rows' must be at least 100")
    if cfg.monitor.plot_columns < 0:
        errors.append(f"'monitor.plot_columns' must be 0 (no plots) or more, not "
                      f"{cfg.monitor.plot_columns}")
    if "_target_" not in cfg.model:
        errors.append("'model' has no '_target_' (the estimator class to instantiate)")
    if cfg.storage.kind == "s3" and not cfg.storage.bucket:
        errors.append("'storage.kind' is 's3' but 'storage.bucket' is not set")
    valid = set(METRICS.get(cfg.data.problem_type, ()))
    if cfg.evaluate.primary_metric not in valid:
        errors.append(f"'evaluate.primary_metric' is '{cfg.evaluate.primary_metric}', not a "
                      f"{cfg.data.problem_type} metric {sorted(valid)}")
    for metric in cfg.evaluate.gate:
        if metric not in valid:
            errors.append(f"'evaluate.gate.{metric}' is not a {cfg.data.problem_type} metric "
                          f"{sorted(valid)}")
    baseline = cfg.evaluate.baseline
    if baseline is not None and not 0 <= baseline.min_improvement < 1:
        errors.append(f"'evaluate.baseline.min_improvement' is {baseline.min_improvement}; it "
                      "must be in [0, 1) (the share of the way from the naive baseline to a "
                      "perfect score, e.g. 0.05)")
    if baseline is None and not cfg.evaluate.gate and cfg.promote.require_gate:
        errors.append("the quality gate has no rule ('evaluate.baseline' is null and "
                      "'evaluate.gate' is empty), so it would pass any model; set "
                      "evaluate.baseline.min_improvement, add an absolute rule such as "
                      "evaluate.gate.<metric>.min, or promote without a gate "
                      "(promote.require_gate=false)")
    errors += _search_problems(cfg)
    if cfg.data.engine == "dask":
        errors += _dask_engine_limits(cfg)
    if errors:
        raise ConfigError("Inconsistent config: " + "; ".join(errors),
                          fix="Change the named keys, or pick matching config groups "
                          "(e.g. experiment=diamonds for regression).")


def _search_problems(cfg: PipelineConfig) -> list[str]:
    """What keeps ``orchestration``'s runner and ``search`` from describing a search."""
    errors: list[str] = []
    orch = cfg.orchestration
    if orch.thread_workers < 1:
        errors.append("'orchestration.thread_workers' must be at least 1")
    dask = orch.dask
    if orch.task_runner == "dask" and (dask.n_workers < 1 or dask.threads_per_worker < 1):
        errors.append("'orchestration.dask.n_workers' and 'threads_per_worker' must be at "
                      "least 1")
    if orch.task_runner == "dask" and dask.address and dask.cluster_class:
        errors.append("'orchestration.dask.address' and 'cluster_class' are both set; a run "
                      "uses either a running scheduler or a cluster of its own")
    search = cfg.search
    if search.strategy == "grid":
        empty = [k for k, v in search.grid.items() if not v]
        if not search.grid or empty:
            errors.append("'search.strategy' is 'grid' but 'search.grid' "
                          + (f"has no values for {empty}" if empty else "is empty")
                          + " (e.g. search.grid: {max_depth: [4, 6], learning_rate: [0.05, 0.1]})")
        else:
            n = 1
            for values in search.grid.values():
                n *= len(values)
            if n > search.max_candidates:
                errors.append(f"'search.grid' makes {n} candidates, more than "
                              f"'search.max_candidates' ({search.max_candidates})")
    if search.strategy == "list" and not search.candidates:
        errors.append("'search.strategy' is 'list' but 'search.candidates' is empty")
    if search.strategy == "list" and len(search.candidates) > search.max_candidates:
        errors.append(f"'search.candidates' has {len(search.candidates)} entries, more than "
                      f"'search.max_candidates' ({search.max_candidates})")
    opt = search.optuna
    if search.strategy == "optuna":
        if not opt.space:
            errors.append("'search.strategy' is 'optuna' but 'search.optuna.space' is empty")
        if not 1 <= opt.n_trials <= search.max_candidates:
            errors.append(f"'search.optuna.n_trials' must be in [1, search.max_candidates="
                          f"{search.max_candidates}], not {opt.n_trials}")
        for name, r in opt.space.items():
            if r.type == "categorical":
                if not r.choices:
                    errors.append(f"'search.optuna.space.{name}' is categorical without choices")
            elif r.type in ("int", "float"):
                if r.low is None or r.high is None or r.low > r.high or (r.log and r.low <= 0):
                    errors.append(f"'search.optuna.space.{name}' needs low <= high (and low > 0 "
                                  "with log: true)")
            else:
                errors.append(f"'search.optuna.space.{name}.type' is {r.type!r}; expected one "
                              "of ['int', 'float', 'categorical']")
    return errors
