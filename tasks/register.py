"""Register: store a trained model as a new, immutable registry version.

A version holds the pickled inference pipeline, its sha256, metrics, parameters,
the resolved config, the data lineage (fingerprint and snapshot location), the
git commit and package versions, plots, a drift-reference sample and the row
hashes of its train and validation rows (so that a later model is compared with it
only on rows it was not trained on). Writes are
atomic (see :mod:`prefab_mlops.core.registry`); registering the same training lineage
twice returns the existing version instead of creating a duplicate.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field, replace
from typing import Any

from prefect import task

from prefab_mlops.config import RegisterConfig
from prefab_mlops.core.fingerprint import RowFingerprint
from prefab_mlops.core.manifest import (
    ChampionRecord,
    FeatureRecord,
    GateRecord,
    ModelVersion,
    RunFacts,
    TrainedRowsRecord,
)
from prefab_mlops.core.provenance import git_info, package_versions
from prefab_mlops.core.registry import REFERENCE_FILE, REFERENCE_TARGET, TRAINED_ROWS_FILE
from prefab_mlops.core.storage import StorageConfig
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.orchestration.retries import retry_transient
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


@task(name="register", retry_condition_fn=retry_transient)
def register(model: TrainedModel, evaluation: Evaluation, data: Dataset, features: FeatureSet,
             comparison: ChampionComparison | None, cfg: RegisterConfig,
             storage: StorageConfig, run: RunInfo, seed: int) -> ModelVersion:
    """Register ``model`` (or return the identical version already registered).

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
        The registered :class:`ModelVersion`; ``cfg.aliases`` point at it.
    """
    log = get_logger()
    registry = open_registry(cfg, storage)
    existing = registry.find_by_fingerprint(cfg.model_name, model.fingerprint)
    if existing is not None:
        log.info("%s already holds this exact model (same lineage %s); not registering again.",
                 existing.label, model.fingerprint[:12])
        return existing
    blob = pickle.dumps(model.pipeline, protocol=pickle.HIGHEST_PROTOCOL)
    files = {f"plots/{name}": png for name, png in evaluation.plots.items()}
    if cfg.reference_sample_rows > 0:
        files[REFERENCE_FILE] = _reference_sample(features, cfg.reference_sample_rows, seed)
    data_record = replace(data.lineage_record(), split=features.split_info)
    rows = trained_rows(features)
    if rows is not None:
        files[TRAINED_ROWS_FILE] = rows.to_npy()
        data_record = replace(data_record, trained_rows=TrainedRowsRecord(
            columns=list(rows.columns), distinct=len(rows)))
    champion = None
    if comparison is not None and comparison.champion_version is not None:
        c = comparison
        champion = ChampionRecord(
            version=c.champion_version, status=c.status, test_rows=c.test_rows,
            compared_rows=c.compared_rows, excluded_rows=c.excluded_rows,
            excluded_own_rows=c.excluded_own_rows, checked=c.checked, metrics=c.champion,
            challenger_metrics=c.challenger, note=c.note)
    gate = evaluation.gate
    manifest = ModelVersion(
        model_name=cfg.model_name, version=0, created_at="", fingerprint=model.fingerprint,
        model_key="", model_sha256="", problem_type=model.problem_type,
        estimator=model.estimator, params=model.params, fit=model.fit,
        metrics=evaluation.metrics, confusion_matrix=evaluation.confusion_matrix,
        gate=GateRecord(passed=gate.passed, failures=list(gate.failures), rules=gate.rules),
        champion=champion,
        config=run.config,
        data=data_record,
        features=FeatureRecord(input_schema=model.input_schema,
                               feature_names=model.feature_names, classes=model.classes,
                               target=data.target),
        git=git_info(run.project_root), packages=package_versions(),
        run=RunFacts(flow_run_id=run.flow_run_id, flow_run_name=run.flow_run_name,
                     triggered_by=run.triggered_by),
    )
    mv = registry.register(manifest, blob, files)
    for alias in cfg.aliases:
        registry.set_alias(cfg.model_name, alias, mv.version, reason="registered")
    log.info("Registered %s (sha256 %s…)", mv.label, mv.model_sha256[:12])
    return mv
