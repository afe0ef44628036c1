"""A registered version's manifest: typed records, stored as JSON by the registry.

``tasks/register.py`` builds a :class:`ModelVersion`; the registry writes it with
:meth:`~prefab_mlops.core.records.Record.to_json` and reads it back with
:meth:`~prefab_mlops.core.records.Record.from_json`, the one parser of the stored
form (a manifest of the wrong shape is refused with the field named). Readers (the
model server, the CLI, promotion, monitoring, batch scoring) use attributes.

``config`` (the resolved user config) and ``params`` (the estimator's parameters)
stay plain JSON objects: their shape is the user's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from prefab_mlops.core.provenance import GitInfo
from prefab_mlops.core.records import Record, dump
from prefab_mlops.core.schema import InputSchema

#: A class label as JSON holds it (classifiers: ``features.classes``).
Label = bool | int | float | str


@dataclass(frozen=True)
class RuleCheck(Record):
    """One check of the quality gate: which rule, on which metric, whether it held.

    ``text`` says it in words, with the numbers, and names the rule, e.g.
    ``baseline rule: rmse 54.1 <= 73.2 required (training-mean baseline 77.0; ...)``.
    """

    rule: str
    metric: str
    passed: bool
    text: str


@dataclass(frozen=True)
class BaselineCheck(Record):
    """The baseline rule's numbers (``evaluate.baseline``).

    Attributes:
        metric: The primary metric it was checked on.
        strategy: The naive baseline: ``prior`` (class frequencies of the training
            split), ``mean`` or ``median`` (of the training targets).
        value: The baseline's ``metric`` on the test split.
        required: What the model needed: ``value + min_improvement * (perfect -
            value)``, perfect being 1 for scores and 0 for errors and losses.
        min_improvement: ``evaluate.baseline.min_improvement``.
        metrics: All the baseline's metrics on the test split.
    """

    metric: str
    strategy: str
    value: float
    required: float
    min_improvement: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GateRecord(Record):
    """The quality gate's outcome on the test split (``GateResult.as_record()``).

    Attributes:
        passed: Every check held.
        decided_by: The names of the rules whose checks decided (the failed ones, or
            all if every check held).
        summary: The outcome in one line, naming the deciding checks.
        checks: Every check, held or failed, baseline rule first.
        rules: The absolute rules as configured (``evaluate.gate``): metric → bounds.
        baseline: The baseline rule's numbers; None when ``evaluate.baseline`` is null.
    """

    passed: bool
    decided_by: list[str] = field(default_factory=list)
    summary: str = ""
    checks: list[RuleCheck] = field(default_factory=list)
    rules: dict[str, dict[str, float | None]] = field(default_factory=dict)
    baseline: BaselineCheck | None = None


@dataclass(frozen=True)
class ChampionRecord(Record):
    """The production model this version was compared with before promotion.

    Attributes:
        version: The champion's version.
        status: ``compared``, ``same_model``, ``incompatible`` or ``too_few_rows``.
        test_rows: Rows in the test split.
        compared_rows: Test rows both models were scored on.
        excluded_rows: Test rows left out as the champion's training rows.
        excluded_own_rows: Test rows left out as this version's training rows.
        checked: Whether the champion's training rows were known.
        metrics: The champion's metrics on the compared rows (None unless compared).
        challenger_metrics: This version's metrics on the same rows.
        note: Why the champion was not comparable, or a caveat.
    """

    version: int
    status: str
    test_rows: int
    compared_rows: int = 0
    excluded_rows: int = 0
    excluded_own_rows: int = 0
    checked: bool = False
    metrics: dict[str, float] | None = None
    challenger_metrics: dict[str, float] | None = None
    note: str = ""


@dataclass(frozen=True)
class SplitRecord(Record):
    """How ``featurize`` split the data (``conf/features`` ``split``).

    Attributes:
        strategy: ``hash``, ``random``, ``stratified`` or ``time``.
        seed: The global seed.
        test_size: Share of rows for test.
        valid_size: Share of rows for validation.
        train_rows: Rows in each split.
        valid_rows: Rows in each split.
        test_rows: Rows in each split.
        key: ``hash``: the columns a row's place was hashed from.
        test_from: ``time``: the earliest timestamp of the test split.
    """

    strategy: str
    seed: int
    test_size: float
    valid_size: float
    train_rows: int
    valid_rows: int
    test_rows: int
    key: list[str] | None = None
    test_from: str | None = None


@dataclass(frozen=True)
class TrainedRowsRecord(Record):
    """What the version's ``train_rows.npy`` holds: row hashes over ``columns``."""

    columns: list[str]
    distinct: int


@dataclass(frozen=True)
class StepRecord(Record):
    """A project step that changed the data (``conf/steps``), as its lineage records it.

    Attributes:
        name: The step's name in ``conf/steps``.
        hook: Where it ran (``after_ingest``...).
        target: The function it ran (``tasks.mine.keep_carriers``).
        code: The hash of that function's code.
        params: Its parameters (the project's shape).
    """

    name: str
    hook: str
    target: str
    code: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReadRecord(Record):
    """How ingest read the source's bytes (``data.read``, or detected).

    Attributes:
        format: ``csv`` or ``parquet``.
        encoding: The codec the CSV text was decoded with (None for Parquet).
        sep: The CSV separator (None for Parquet).
        compression: ``gzip``, ``zip``, ... or None.
        detected: Which of the fields above were detected from the bytes rather than
            set in ``conf/data`` or implied by the file name.
    """

    format: str
    encoding: str | None = None
    sep: str | None = None
    compression: str | None = None
    detected: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DataRecord(Record):
    """The data a version was trained on (its lineage).

    Attributes:
        name: ``data.name``.
        source: Where it was read from.
        fingerprint: Fingerprint of the prepared rows.
        source_fingerprint: Fingerprint of the source as read.
        snapshot_uri: The immutable snapshot of those rows, if one was written.
        rows: Rows after preparation.
        columns: Its columns (inputs, target, ids...). The server accepts the
            non-input ones as extra request fields.
        time_min: Earliest value of ``data.time_column``, if there is one.
        time_max: Latest value of ``data.time_column``.
        split: How it was split.
        trained_rows: The hashed train and validation rows (``train_rows.npy``).
        steps: The project's ``after_ingest`` steps that made the training rows from
            the rows read, in order (the snapshot holds the rows before them).
        read: How the source's bytes were read (None when not read from a file).
    """

    name: str = ""
    source: str = ""
    fingerprint: str = ""
    source_fingerprint: str = ""
    snapshot_uri: str | None = None
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    time_min: str | None = None
    time_max: str | None = None
    split: SplitRecord | None = None
    trained_rows: TrainedRowsRecord | None = None
    steps: list[StepRecord] = field(default_factory=list)
    read: ReadRecord | None = None


@dataclass(frozen=True)
class FeatureRecord(Record):
    """What goes into the model and what comes out.

    Attributes:
        input_schema: The columns a caller sends (see :mod:`prefab_mlops.core.schema`).
        feature_names: The preprocessor's output columns, in order.
        classes: Class labels in training order (classifiers); None for regression.
        target: The target column.
    """

    input_schema: InputSchema = field(default_factory=InputSchema)
    feature_names: list[str] = field(default_factory=list)
    classes: list[Label] | None = None
    target: str = ""


@dataclass(frozen=True)
class FitRecord(Record):
    """Facts of the fit (``train``).

    Attributes:
        seconds: Wall time of ``fit``.
        train_rows: Rows fitted on.
        best_iteration: Boosting round kept by early stopping, if it stopped early.
    """

    seconds: float
    train_rows: int
    best_iteration: int | None = None


@dataclass(frozen=True)
class RunFacts(Record):
    """The Prefect run that registered the version (ids only: no logic reads them)."""

    flow_run_id: str | None = None
    flow_run_name: str | None = None
    triggered_by: str | None = None


@dataclass
class ModelVersion(Record):
    """A registered version's manifest (everything needed to trust and reproduce it).

    Attributes:
        model_name: Registered model name.
        version: Version number (assigned by the registry).
        created_at: UTC time of registration (assigned by the registry).
        fingerprint: Lineage fingerprint of the trained model.
        model_key: Where the pickled pipeline is (assigned by the registry).
        model_sha256: Its sha256, checked on every load (assigned by the registry).
        problem_type: ``binary``, ``multiclass`` or ``regression``.
        estimator: The estimator class (``model._target_``).
        params: The estimator's parameters (JSON-safe).
        fit: Facts of the fit.
        metrics: Test-split metrics.
        confusion_matrix: On the test split (classifiers).
        gate: The quality gate's outcome.
        champion: The production model it was compared with, if any.
        config: The resolved config of the run.
        data: The training data's lineage.
        features: Input schema, output features, classes and target.
        files: Payload files: relative name → store key (assigned by the registry).
        git: The project's git commit, if it is a checkout.
        packages: Versions of the packages that shape the model.
        run: The Prefect run that registered it.
    """

    model_name: str
    version: int
    created_at: str
    fingerprint: str
    model_key: str
    model_sha256: str
    problem_type: str
    estimator: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    fit: FitRecord | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    confusion_matrix: list[list[int]] | None = None
    gate: GateRecord | None = None
    champion: ChampionRecord | None = None
    config: dict[str, Any] = field(default_factory=dict)
    data: DataRecord = field(default_factory=DataRecord)
    features: FeatureRecord = field(default_factory=FeatureRecord)
    files: dict[str, str] = field(default_factory=dict)
    git: GitInfo | None = None
    packages: dict[str, str] = field(default_factory=dict)
    run: RunFacts = field(default_factory=RunFacts)

    @property
    def label(self) -> str:
        return f"{self.model_name}:v{self.version}"


@dataclass(frozen=True)
class EvaluatedData(Record):
    """The data an evaluation was made on."""

    fingerprint: str = ""
    source: str = ""
    rows: int = 0


@dataclass
class EvaluationRecord(Record):
    """One evaluation of a registered version: its test metrics and quality gate.

    The first is the one made at registration (stored in the manifest); a run that
    evaluates the same model again appends another (:meth:`ModelRegistry.
    record_evaluation`).

    Attributes:
        version: The version evaluated.
        at: When (UTC, ISO 8601).
        metrics: Test-split metrics.
        gate: The quality gate's outcome.
        champion: The comparison with the production model, if there was one.
        data: The data it was evaluated on.
        run: The flow run that evaluated it.
        registered: Whether this is the evaluation made at registration.
    """

    version: int
    at: str
    metrics: dict[str, float] = field(default_factory=dict)
    gate: GateRecord | None = None
    champion: ChampionRecord | None = None
    data: EvaluatedData = field(default_factory=EvaluatedData)
    run: RunFacts = field(default_factory=RunFacts)
    registered: bool = False

    @classmethod
    def at_registration(cls, mv: ModelVersion) -> EvaluationRecord:
        """The evaluation ``mv`` was registered with (from its manifest)."""
        data = EvaluatedData(fingerprint=mv.data.fingerprint, source=mv.data.source,
                             rows=mv.data.rows)
        return cls(version=mv.version, at=mv.created_at, metrics=dict(mv.metrics),
                   gate=mv.gate, champion=mv.champion, data=data, run=mv.run,
                   registered=True)

    def same_outcome(self, other: EvaluationRecord) -> bool:
        """Whether ``other`` has the same metrics and gate result (the model's own
        evaluation; which champion it was compared with is in the decision's event)."""
        def key(r: EvaluationRecord) -> str:
            return json.dumps([r.metrics, dump(r.gate)], sort_keys=True)

        return key(self) == key(other)
