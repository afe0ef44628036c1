"""The typed schemas of the config groups (one dataclass per group, plus the root).

The YAML files in ``conf/`` are Hydra config groups that mirror the pipeline stages;
:func:`prefab_mlops.config.load_config` merges them into these dataclasses, so an
unknown key or a wrong type fails before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import MISSING

from prefab_mlops.core.registry import PRODUCTION_ALIAS
from prefab_mlops.core.storage import StorageConfig


# --------------------------------------------------------------------- paths
@dataclass
class PathsConfig:
    """``conf/paths``: every location the project writes to."""

    root: str = MISSING
    data_dir: str = MISSING
    registry_dir: str = MISSING
    cache_dir: str = MISSING
    output_dir: str = MISSING
    tracking_dir: str = MISSING


# ---------------------------------------------------------------------- data
@dataclass
class WindowConfig:
    """Optional time window applied at ingest, on ``data.time_column``.

    ``newest`` keeps only the newest calendar ``month``, ``week`` or ``day`` in the
    data; ``start``/``end`` are ISO timestamps (start inclusive, end exclusive).
    ``timezone`` (an IANA name such as ``America/New_York``) is where calendar days
    begin: the newest month of flights from New York is December 2013 there, but
    January 2014 in UTC, where its last evening's flights already are. Without it,
    the column's own zone is used (UTC for timestamps written with ``Z``). It also
    places ``start``/``end`` given without an offset.
    """

    start: str | None = None
    end: str | None = None
    newest: str | None = None
    timezone: str | None = None


#: What ``data.read.sep`` may say for a separator that is awkward to type.
SEPARATOR_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


@dataclass
class ReadConfig:
    """``data.read``: how the bytes of a CSV file are read.

    ``auto`` (the default) detects each from the first 64 KiB of the file: the
    encoding from a byte-order mark, else UTF-8 if the bytes decode as UTF-8, else
    Windows-1252 if they read as Western European text; the separator from ``,``
    ``;``, tab and ``|`` by which one splits the header and the rows alike. What was
    used is logged and recorded with the data set. Set a value when detection cannot
    know, e.g. ``encoding: cp1251`` for a Cyrillic file (refused until it is set) or
    ``encoding: cp1250`` for Central European text, which can pass for Windows-1252
    with a few wrong letters.

    Attributes:
        encoding: ``auto`` or a Python codec name (``utf-8``, ``cp1252``, ``latin-1``,
            ``utf-16``, ``shift_jis`` ...).
        sep: ``auto``, one character, or ``tab``/``comma``/``semicolon``/``pipe``.
    """

    encoding: str = "auto"
    sep: str = "auto"

    def separator(self) -> str | None:
        """The separator character, or None for ``auto``."""
        if self.sep == "auto":
            return None
        return SEPARATOR_NAMES.get(self.sep, self.sep)


@dataclass
class DaskEngineConfig:
    """``data.dask``: the Dask cluster that ``data.engine: dask`` computes on.

    ``address`` is the scheduler of an existing cluster (``tcp://host:8786``); without
    it each flow run starts a ``LocalCluster`` of ``n_workers`` processes with
    ``threads_per_worker`` threads and ``memory_limit`` each (``"5GB"``, or ``auto``:
    the machine's memory shared out), on loopback, and closes it at the end. A flow run
    that already has a Dask client (a Dask task runner) uses that one.
    ``blocksize`` is how much of a CSV file one partition reads.
    """

    address: str | None = None
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    blocksize: str = "64MB"


@dataclass
class DataConfig:
    """``conf/data``: where the data comes from and how the target is defined.

    ``uri`` is a local path, ``s3://bucket/key`` or ``pkg://package/path`` (a file
    shipped inside an installed Python package; ``#member`` selects a file inside a
    ``.tar.gz``). ``format`` is ``csv``, ``parquet`` or ``auto`` (Parquet if the bytes
    are, else by the file name). ``derive`` adds columns from pandas expressions
    *after* rows with nulls in ``dropna`` are removed (e.g. the target
    ``arr_delay > 15``).

    ``engine`` is ``pandas`` (the default: the data set is read into one frame) or
    ``dask`` (data larger than memory: ``uri`` is a partitioned Parquet dataset, a
    directory of CSV files or a glob, read lazily on the cluster of ``data.dask``; see
    :mod:`prefab_mlops.partitions` and each stage's ``*_partitioned`` task).
    """

    name: str = MISSING
    uri: str = MISSING
    format: str = "auto"
    read: ReadConfig = field(default_factory=ReadConfig)
    problem_type: str = MISSING
    target: str = MISSING
    time_column: str | None = None
    parse_dates: list[str] = field(default_factory=list)
    dropna: list[str] = field(default_factory=list)
    derive: dict[str, str] = field(default_factory=dict)
    columns: list[str] | None = None
    window: WindowConfig = field(default_factory=WindowConfig)
    sample_rows: int | None = None
    snapshot: bool = True
    engine: str = "pandas"
    dask: DaskEngineConfig = field(default_factory=DaskEngineConfig)


# ------------------------------------------------------------------ validate
@dataclass
class ColumnRule:
    """One column of the declarative schema.

    ``dtype`` is one of ``int``, ``float``, ``number``, ``str``, ``category``,
    ``bool``, ``datetime`` or null (any).

    Hard rules fail validation (``on_failure``): ``min``, ``max`` and ``allowed``
    are bounds you declare, such as a month in 1..12. Soft rules only warn:
    ``expected_min``/``expected_max`` and ``expected_values`` record what the data
    looked like (``prefab schema infer`` writes them from the rows it saw), so a new
    batch beyond them passes with a warning in the validation report instead of
    stopping the run.
    """

    dtype: str | None = None
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: list[Any] | None = None
    expected_min: float | None = None
    expected_max: float | None = None
    expected_values: list[Any] | None = None
    unique: bool = False
    required: bool = True


@dataclass
class ValidateConfig:
    """``conf/validate``: the data contract checked before any feature work.

    ``leakage`` is the leakage alarm on the model's input columns, run on the training
    rows before training (:mod:`prefab_mlops.core.leakage`): ``warn`` names the
    features that alone nearly determine the target in the validation and run
    summaries, ``fail`` stops the run before training, ``off`` skips the check.
    """

    on_failure: str = "fail"
    leakage: str = "warn"
    min_rows: int = 1
    strict: bool = False
    columns: dict[str, ColumnRule] = field(default_factory=dict)
    unique: list[list[str]] = field(default_factory=list)
    max_examples: int = 5


# ------------------------------------------------------------------ features
@dataclass
class SplitConfig:
    """How rows are split into train, validation and test.

    ``hash`` (the default) places each row by a seeded 64-bit hash of its values in
    ``key`` (default: every column of the ingested data), so a row keeps its split
    when rows are appended, removed or sampled, and identical rows share a split.
    ``random`` and ``stratified`` shuffle the rows of this table (a row's split
    changes when the table does); ``time`` puts the oldest rows in train and the
    newest in test. ``key`` is used by ``hash`` only.
    """

    strategy: str = "hash"
    key: list[str] = field(default_factory=list)
    time_column: str | None = None
    valid_size: float = 0.1
    test_size: float = 0.2


@dataclass
class NumericFeatures:
    columns: list[str] = field(default_factory=list)
    impute: str = "median"
    scale: str = "none"


@dataclass
class CategoricalFeatures:
    columns: list[str] = field(default_factory=list)
    encoding: str = "ordinal"
    impute: str = "constant"
    min_frequency: int | None = None


@dataclass
class DatetimeFeatures:
    columns: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=lambda: ["month", "dayofweek", "hour"])


@dataclass
class FeaturesConfig:
    """``conf/features``: the split and the ``ColumnTransformer`` recipe.

    Columns not listed in a section are dropped (``remainder: drop``) or passed
    through unchanged (``remainder: passthrough``); ``drop`` names columns that are
    always dropped, which matters with ``passthrough``.
    """

    split: SplitConfig = field(default_factory=SplitConfig)
    numeric: NumericFeatures = field(default_factory=NumericFeatures)
    categorical: CategoricalFeatures = field(default_factory=CategoricalFeatures)
    datetime: DatetimeFeatures = field(default_factory=DatetimeFeatures)
    drop: list[str] = field(default_factory=list)
    remainder: str = "drop"


# ------------------------------------------------------------------ evaluate
@dataclass
class GateRule:
    """An absolute rule of the quality gate (``evaluate.gate.<metric>``): the metric on
    the test split must be at least ``min`` and at most ``max`` (either may be unset)."""

    min: float | None = None
    max: float | None = None


@dataclass
class BaselineRule:
    """The default quality gate (``evaluate.baseline``): beat a naive baseline.

    The baseline is fitted on the training split only and scored on the same test
    split as the model: the class prior for classifiers (``DummyClassifier(strategy=
    "prior")``: the training class frequencies as probabilities, the majority class as
    the label), the training mean for regression (the median when the primary metric
    is ``mae``). On the primary metric the model must go ``min_improvement`` of the way
    from the baseline's value to a perfect score: ``required = baseline +
    min_improvement * (perfect - baseline)``, where perfect is 1 for scores (AUC,
    accuracy, R²...) and 0 for errors and losses (RMSE, MAE, log loss), for which the
    rule is a relative reduction: ``rmse <= (1 - min_improvement) * baseline rmse``.
    0 asks only to be no worse than the baseline; it must be below 1.
    """

    min_improvement: float = 0.05


@dataclass
class ChampionCheckConfig:
    """How the production model (champion) is compared with the new model.

    Both are scored on the test rows that neither was trained on. When fewer than
    ``min_rows`` such rows remain, or fewer than ``min_share`` of the test split, the
    champion is not comparable and the new model is not promoted automatically.
    """

    min_rows: int = 50
    min_share: float = 0.1


@dataclass
class EvaluateConfig:
    """``conf/evaluate``: metrics, plots, the quality gate and the champion comparison.

    The quality gate is every rule that is set: ``baseline`` (the default: beat a
    naive baseline by ``baseline.min_improvement``; ``null`` turns it off) and the
    absolute rules in ``gate`` (none by default; a project sets them on purpose, e.g.
    ``gate: {r2: {min: 0.8}}``). ``on_gate_failure``: ``warn`` registers the model as
    a candidate that is never promoted; ``fail`` ends the run before anything is
    registered.
    """

    primary_metric: str = MISSING
    threshold: float = 0.5
    baseline: BaselineRule | None = field(default_factory=BaselineRule)
    gate: dict[str, GateRule] = field(default_factory=dict)
    on_gate_failure: str = "warn"
    plots: bool = True
    importance_top_k: int = 20
    champion: ChampionCheckConfig = field(default_factory=ChampionCheckConfig)


# ------------------------------------------------------- register and promote
@dataclass
class RegisterConfig:
    """``conf/register``: the model registry (a directory by default, S3 via ``storage``)."""

    model_name: str = MISSING
    root: str = MISSING
    aliases: list[str] = field(default_factory=lambda: ["candidate"])
    reference_sample_rows: int = 5000


@dataclass
class PromoteConfig:
    """``conf/promote``: when a registered version becomes ``alias`` (production).

    ``alias`` is the one setting of which alias is "production": promotion moves it,
    and monitoring, batch scoring and the model server all follow it.
    """

    alias: str = PRODUCTION_ALIAS
    auto_promote: bool = True
    require_gate: bool = True
    min_improvement: float = 0.0


# ------------------------------------------------------------------ tracking
@dataclass
class TrackingConfig:
    """``conf/tracking``: W&B. ``mode`` is ``offline`` (default), ``online`` or ``disabled``."""

    mode: str = "offline"
    project: str = "prefab-mlops"
    entity: str | None = None
    dir: str = MISSING
    init_timeout_s: float = 30.0
    log_model: bool = True
    tags: list[str] = field(default_factory=list)


# ------------------------------------------------------------------- monitor
@dataclass
class MonitorConfig:
    """``conf/monitor``: drift detection against the production model's reference.

    ``drift_share``: the batch drifts when at least this share of the model's input
    columns drift (Evidently ``DataDriftPreset``). ``max_rows`` is the sampling
    budget per side, which keeps a 1M-row batch fast. ``labels: false`` monitors
    batches without the target (e.g. logged serving traffic). ``plot_columns``: how
    many drifted columns get a reference-vs-current distribution plot in the run's
    drift artifact (most drifted first; 0 for none).
    """

    drift_share: float = 0.5
    max_rows: int = 20000
    columns: list[str] | None = None
    prediction_drift: bool = True
    quality: bool = True
    labels: bool = True
    event: str = "prefab.model.drift-detected"
    emit_event: bool = True
    plot_columns: int = 4
    report_dir: str = MISSING


# ----------------------------------------------------------------- inference
@dataclass
class InferenceConfig:
    """``conf/inference``: batch scoring with the production model.

    ``passthrough`` columns (ids) are copied from the batch into the output.
    """

    output_dir: str = MISSING
    format: str = "parquet"
    passthrough: list[str] = field(default_factory=list)


# ------------------------------------------------------------- orchestration
@dataclass
class TaskRuntime:
    """Prefect task options, applied with ``Task.with_options``."""

    retries: int = 0
    retry_delay_seconds: list[float] = field(default_factory=list)
    timeout_seconds: float | None = None


@dataclass
class CacheConfig:
    """Cross-run caching. ``refresh: true`` forces every task to run afresh.

    ``result_storage`` is a directory, or ``block:<type>/<name>`` for a saved
    storage block (for example ``block:s3-bucket/prefab-cache``).
    """

    enabled: bool = True
    refresh: bool = False
    result_storage: str = MISSING


@dataclass
class DaskConfig:
    """``orchestration.dask``: the Dask cluster of ``task_runner: dask``.

    One of three, in this order: ``address`` of a running scheduler
    (``tcp://scheduler:8786``); ``cluster_class``, a cluster class to start per flow
    run with ``cluster_kwargs`` (e.g. ``dask_kubernetes.operator.KubeCluster``); else a
    ``distributed.LocalCluster`` of ``n_workers`` processes with ``threads_per_worker``
    threads and ``memory_limit`` each (``auto``, ``4GB``...).

    ``threads_per_worker`` is also the thread count of each search trial's model
    (XGBoost ``n_jobs``), so that trials running side by side do not oversubscribe
    the cores; set it to what the workers of an ``address`` or ``cluster_class`` have.
    """

    address: str | None = None
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    cluster_class: str | None = None
    cluster_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OrchestrationConfig:
    """``conf/orchestration``: retries, timeouts and caching per task family, and where
    mapped tasks (a search's trials) run.

    ``task_runner``: ``thread`` (the default: in the flow's process, ``thread_workers``
    tasks at a time, each model with its own ``n_jobs``) or ``dask`` (prefect-dask's
    ``DaskTaskRunner`` on the cluster that ``dask`` describes; needs the ``[dask]``
    extra).
    """

    cache: CacheConfig = field(default_factory=CacheConfig)
    tasks: dict[str, TaskRuntime] = field(default_factory=dict)
    task_runner: str = "thread"
    thread_workers: int = 1
    dask: DaskConfig = field(default_factory=DaskConfig)


# -------------------------------------------------------------------- search
@dataclass
class ParamRange:
    """One hyperparameter of an Optuna search space (``search.optuna.space.<name>``).

    ``type``: ``int`` or ``float`` between ``low`` and ``high`` (``log`` for a log
    scale), or ``categorical`` over ``choices``.
    """

    type: str = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None


@dataclass
class OptunaConfig:
    """``search.optuna``: an Optuna study over ``space`` on top of ``conf/model``.

    ``storage`` (an Optuna RDB URL such as ``sqlite:///path/optuna.db``) keeps the
    study, so a rerun resumes it: the study is named after the model, the data's
    fingerprint and the space, and only the trials still missing from ``n_trials``
    run. ``batch`` trials are asked at a time and run side by side on the task runner
    (default: the Dask workers, or ``thread_workers``).
    """

    sampler: str = "tpe"
    n_trials: int = 20
    seed: int | None = None
    storage: str | None = None
    batch: int | None = None
    space: dict[str, ParamRange] = field(default_factory=dict)


@dataclass
class SearchConfig:
    """``conf/search``: candidate models tried before evaluation (none by default).

    ``strategy``: ``none`` (train ``conf/model`` as it is), ``grid`` (every
    combination of the values in ``grid``), ``list`` (each entry of ``candidates``)
    or ``optuna`` (a study, see :class:`OptunaConfig`). Each candidate is
    ``conf/model`` with its keys replaced. Trials are mapped Prefect tasks on the
    task runner (``orchestration.task_runner``), scored on the validation split by
    ``evaluate.primary_metric``; the best goes on to evaluation, the gate and
    registration. ``max_candidates`` stops a grid that grew by mistake.
    """

    strategy: str = "none"
    grid: dict[str, list[Any]] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    optuna: OptunaConfig = field(default_factory=OptunaConfig)
    max_candidates: int = 256


# --------------------------------------------------------------------- steps
@dataclass
class StepConfig:
    """One entry of ``conf/steps``: a project's own function at a hook of the training flow.

    ``conf/steps/<name>.yaml`` holds ``<name>: {hook: ..., _target_: ..., params: ...}``
    and ``conf/pipeline.yaml`` plugs it in (``- steps: [<name>, ...]`` in its
    defaults, in running order). :func:`prefab_mlops.tasks.steps.resolve_steps` checks
    every entry against its hook's contract before any work starts.

    Attributes:
        hook: Where it runs: ``after_ingest`` (rows in, rows out, before validation)
            or ``after_evaluate`` (a check that adds metrics and can veto promotion).
        _target_: The function or Prefect task, e.g. ``tasks.clip_outliers.clip_outliers``
            (the project's ``tasks`` namespace is allowed, see ``allowed_targets``).
        params: Its keyword arguments, checked against its signature.
        family: The ``orchestration.tasks`` entry whose retries and timeout it runs with.
        cache: Cache its result across runs on its code, params and inputs (only for a
            step that reads nothing but its inputs). Off: it runs every time, and the
            stock tasks after it are keyed on what it returned.
    """

    hook: str = MISSING
    _target_: str = MISSING
    params: dict[str, Any] = field(default_factory=dict)
    family: str = "step"
    cache: bool = False


# ---------------------------------------------------------------------- root
@dataclass
class PipelineConfig:
    """The root config of a project's pipeline (``conf/pipeline.yaml``).

    One config for every flow of the project: training, monitoring and batch scoring
    (and the model server's defaults) read their own subtrees of it.
    """

    seed: int = 42
    paths: PathsConfig = field(default_factory=PathsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    data: DataConfig = field(default_factory=DataConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: dict[str, Any] = field(default_factory=dict)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    # The project's own steps at the training flow's hooks, by name (conf/steps)
    steps: dict[str, StepConfig] = field(default_factory=dict)
    # Namespaces (dotted module prefixes) whose callables `_target_` may name, on top of
    # ALLOWED_TARGETS; add only code you trust.
    allowed_targets: list[str] = field(default_factory=list)


def as_plain(obj: Any) -> Any:
    """A dataclass tree as plain JSON-safe containers (for hashing and logging)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: as_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {str(k): as_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_plain(v) for v in obj]
    return obj
