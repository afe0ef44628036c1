"""Register: store a trained model as a new, immutable registry version.

A version holds the pickled inference pipeline, its sha256, metrics, parameters,
the resolved config, the data lineage (fingerprint and snapshot location), the
git commit and package versions, plots, a drift-reference sample and the row
hashes of its train and validation rows (so that a later model is compared with it
only on rows it was not trained on). Writes are
atomic (see :mod:`prefab_mlops.core.registry`).

A model is registered once: registering the same training lineage again, or a
byte-identical model (the same sha256 of the pickle, e.g. trained from the same rows
read from another path), returns the existing version instead of creating a
duplicate, and records this run's evaluation as that version's latest when its
metrics or gate outcome differ from the last one (so a version never shows a stale
gate result).

:func:`register_partitioned` is the Dask engine's step (``data.engine: dask``): the
same version, with a seeded drift-reference sample drawn across partitions.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from prefect import task

from prefab_mlops.config import RegisterConfig
from prefab_mlops.core.fingerprint import RowFingerprint, bytes_sha256
from prefab_mlops.core.manifest import (
    ChampionRecord,
    DataRecord,
    EvaluatedData,
    EvaluationRecord,
    FeatureRecord,
    ModelVersion,
    RunFacts,
    TrainedRowsRecord,
)
from prefab_mlops.core.pickling import dumps_model
from prefab_mlops.core.provenance import git_info, package_versions
from prefab_mlops.core.registry import (
    REFERENCE_FILE,
    REFERENCE_TARGET,
    TRAINED_ROWS_FILE,
    ModelRegistry,
)
from prefab_mlops.core.storage import StorageConfig
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.orchestration.retries import retry_transient
from prefab_mlops.partitions import PartitionedDataset, PartitionedFeatures, reference_sample
from prefab_mlops.tasks.evaluate import ChampionComparison, Evaluation
from prefab_mlops.tasks.featurize import FeatureSet
from prefab_mlops.tasks.ingest import Dataset
from prefab_mlops.tasks.registry import open_registry
from prefab_mlops.tasks.train import TrainedModel


@dataclass
class RunInfo:
    """Facts about the current run recorded with a version (no logic depends on them)."""

    config: dict[str, Any] = field(default_factory=dict)
    project_root: str = "."
    flow_run_id: str | None = None
    flow_run_name: str | None = None
    triggered_by: str | None = None

    def as_record(self) -> RunFacts:
        """What a version (or a later evaluation of it) records about the run."""
        return RunFacts(flow_run_id=self.flow_run_id, flow_run_name=self.flow_run_name,
                        triggered_by=self.triggered_by)


def _reference_sample(features: FeatureSet, rows: int, seed: int) -> bytes:
    X = features.train.X
    ref = X.sample(n=min(rows, len(X)), random_state=seed) if rows < len(X) else X
    ref = ref.assign(**{REFERENCE_TARGET: features.train.y[ref.index.to_numpy()]})
    buf = io.BytesIO()
    ref.reset_index(drop=True).to_parquet(buf, index=False)
    return buf.getvalue()


def trained_rows(features: FeatureSet) -> RowFingerprint | None:
    """The rows a model trained on ``features`` saw: its train and validation splits.

    Hashed over the model's input columns (the columns of the splits' ``X``), so that
    a later test row with the same inputs is known to be one the model was trained on.
    """
    train, valid = features.train, features.valid
    if train.row_hash is None or valid.row_hash is None:
        return None
    return RowFingerprint.of([str(c) for c in train.X.columns], train.row_hash, valid.row_hash)


def _champion_record(comparison: ChampionComparison | None) -> ChampionRecord | None:
    """The champion comparison as the registry records it (None without a champion)."""
    if comparison is None or comparison.champion_version is None:
        return None
    c = comparison
    return ChampionRecord(
        version=c.champion_version, status=c.status, test_rows=c.test_rows,
        compared_rows=c.compared_rows, excluded_rows=c.excluded_rows,
        excluded_own_rows=c.excluded_own_rows, checked=c.checked, metrics=c.champion,
        challenger_metrics=c.challenger, note=c.note)


def _evaluated_again(registry: ModelRegistry, existing: ModelVersion, same: str,
                     evaluation: Evaluation, data: DataRecord,
                     comparison: ChampionComparison | None, run: RunInfo) -> None:
    """Record this run's evaluation of an already registered model, if it changed."""
    log = get_logger()
    record = EvaluationRecord(
        version=existing.version, at="", metrics=dict(evaluation.metrics),
        gate=evaluation.gate.as_record(), champion=_champion_record(comparison),
        data=EvaluatedData(fingerprint=data.fingerprint, source=data.source, rows=data.rows),
        run=run.as_record())
    if record.same_outcome(registry.latest_evaluation(existing)):
        log.info("%s already holds this exact model (%s); not registering again. Its latest "
                 "evaluation is unchanged (quality gate %s).", existing.label, same,
                 record.gate.summary)
        return
    registry.record_evaluation(existing.model_name, record)
    log.info("%s already holds this exact model (%s); not registering again. This "
             "evaluation is recorded as its latest (quality gate %s).", existing.label, same,
             record.gate.summary)


@task(name="register", retry_condition_fn=retry_transient)
def register(model: TrainedModel, evaluation: Evaluation, data: Dataset, features: FeatureSet,
             comparison: ChampionComparison | None, cfg: RegisterConfig,
             storage: StorageConfig, run: RunInfo, seed: int) -> ModelVersion:
    """Register ``model`` (or return the identical version already registered).

    A version of the same lineage (``model.fingerprint``) or with the same model
    bytes (sha256 of the pickle) is the same model: it is returned, and this
    evaluation is recorded as its latest (:meth:`ModelRegistry.record_evaluation`)
    unless its metrics and gate outcome equal the latest one's.

    Args:
        model: The trained pipeline.
        evaluation: Its test metrics, gate outcome and plots.
        data: The data set it was trained on (lineage).
        features: Split facts, input schema, the drift-reference sample source and
            the row hashes of the train and validation splits (``train_rows.npy``).
        comparison: The production model and this one on the same clean test rows.
        cfg: ``conf/register``: model name, registry root, aliases, sample size.
        storage: ``conf/storage``: local or S3.
        run: Resolved config and run ids to record.
        seed: Global seed (for the reference sample).

    Returns:
        The registered :class:`ModelVersion`; ``cfg.aliases`` point at it. For a model
        registered before, its manifest as registered (its latest evaluation is
        :meth:`ModelRegistry.latest_evaluation`).
    """
    def reference() -> bytes:
        return _reference_sample(features, cfg.reference_sample_rows, seed)

    return store_version(model, evaluation, replace(data.lineage_record(),
                                                    split=features.split_info),
                         data.target, reference if cfg.reference_sample_rows > 0 else None,
                         trained_rows(features), comparison, cfg, storage, run)


def store_version(model: TrainedModel, evaluation: Evaluation, data: DataRecord, target: str,
                  reference: Callable[[], bytes] | None, rows: RowFingerprint | None,
                  comparison: ChampionComparison | None, cfg: RegisterConfig,
                  storage: StorageConfig, run: RunInfo) -> ModelVersion:
    """Register ``model`` from facts already computed (both data engines end here).

    Args:
        model: The trained pipeline.
        evaluation: Its test metrics, gate outcome and plots.
        data: Where the data came from, with its split.
        target: The target column.
        reference: Makes the drift-reference sample as Parquet bytes, called only when
            a new version is stored (None: none stored).
        rows: The train and validation rows as row hashes (None: not recorded).
        comparison, cfg, storage, run: as :func:`register`.
    """
    log = get_logger()
    registry = open_registry(cfg, storage)
    existing = registry.find_by_fingerprint(cfg.model_name, model.fingerprint)
    if existing is not None:
        _evaluated_again(registry, existing, f"same lineage {model.fingerprint[:12]}",
                         evaluation, data, comparison, run)
        return existing
    blob = dumps_model(model.pipeline)
    sha = bytes_sha256(blob)
    existing = registry.find_by_sha256(cfg.model_name, sha)
    if existing is not None:
        _evaluated_again(registry, existing, f"byte-identical: sha256 {sha[:12]}…",
                         evaluation, data, comparison, run)
        return existing
    files = {f"plots/{name}": png for name, png in evaluation.plots.items()}
    if reference is not None:
        files[REFERENCE_FILE] = reference()
    data_record = data
    if rows is not None:
        files[TRAINED_ROWS_FILE] = rows.to_npy()
        data_record = replace(data_record, trained_rows=TrainedRowsRecord(
            columns=list(rows.columns), distinct=len(rows)))
    manifest = ModelVersion(
        model_name=cfg.model_name, version=0, created_at="", fingerprint=model.fingerprint,
        model_key="", model_sha256="", problem_type=model.problem_type,
        estimator=model.estimator, params=model.params, fit=model.fit,
        metrics=evaluation.metrics, confusion_matrix=evaluation.confusion_matrix,
        gate=evaluation.gate.as_record(),
        champion=_champion_record(comparison),
        config=run.config,
        data=data_record,
        features=FeatureRecord(input_schema=model.input_schema,
                               feature_names=model.feature_names, classes=model.classes,
                               target=target),
        git=git_info(run.project_root), packages=package_versions(),
        run=run.as_record(),
    )
    mv = registry.register(manifest, blob, files)
    for alias in cfg.aliases:
        registry.set_alias(cfg.model_name, alias, mv.version, reason="registered")
    log.info("Registered %s (sha256 %s…)", mv.label, mv.model_sha256[:12])
    return mv


# ------------------------------------------- data.engine: dask (partitioned data)
@task(name="register-partitioned")
def register_partitioned(model: TrainedModel, evaluation: Evaluation, data: PartitionedDataset,
                         features: PartitionedFeatures, comparison: ChampionComparison | None,
                         cfg: RegisterConfig, storage: StorageConfig, run: RunInfo,
                         seed: int) -> Any:
    """Register ``model`` as :func:`prefab_mlops.tasks.register.register` does.

    The drift-reference sample is a seeded sample across partitions. The row hashes of
    the train and validation splits are not stored (they would be 8 bytes a row), so a
    later model is compared with this one on its whole test split.
    """
    def reference() -> bytes:
        return reference_sample(features, cfg.reference_sample_rows, seed, storage)

    return store_version(model, evaluation,
                         replace(data.lineage_record(), split=features.split_info),
                         data.target, reference if cfg.reference_sample_rows > 0 else None,
                         None, comparison, cfg, storage, run)
