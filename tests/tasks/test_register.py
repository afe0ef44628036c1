"""tasks/register.py with a real model trained on a slice of the real flights data."""

from __future__ import annotations

import dataclasses
import io
import pickle
import subprocess
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prefab_mlops.config import (
    GateRule,
    ModelSpec,
    PipelineConfig,
    RegisterConfig,
    TargetSpec,
    load_config,
)
from prefab_mlops.core.errors import IntegrityError
from prefab_mlops.core.fingerprint import bytes_sha256, row_hashes
from prefab_mlops.core.manifest import ChampionRecord, RunFacts, TrainedRowsRecord
from prefab_mlops.core.pickling import dumps_model
from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.storage import S3Config, StorageConfig, parse_location, read_source
from prefab_mlops.orchestration.payloads import Payload
from prefab_mlops.tasks.evaluate import COMPARED, ChampionComparison, Evaluation, evaluate
from prefab_mlops.tasks.featurize import FeatureSet, featurize
from prefab_mlops.tasks.ingest import Dataset, ingest
from prefab_mlops.tasks.register import RunInfo, register
from prefab_mlops.tasks.registry import load_production, open_registry
from prefab_mlops.tasks.train import TrainedModel, train
from prefab_mlops.tasks.validate import validate
from tests.conftest import make_bucket

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
LOCAL = StorageConfig()


@dataclass
class Trained:
    cfg: PipelineConfig
    resolved: dict[str, Any]
    data: Dataset
    features: FeatureSet
    model: TrainedModel
    evaluation: Evaluation


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """ingest → validate → featurize → train → evaluate on 5,000 real flights (task .fn)."""
    root = tmp_path_factory.mktemp("register-project")
    loaded = load_config([f"paths.root={root}", "data.sample_rows=5000",
                          "model.n_estimators=20", "tracking=disabled"], config_dir=CONF)
    cfg: PipelineConfig = loaded.typed
    target = TargetSpec.from_data(cfg.data)
    data = ingest.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
    report = validate.fn(data, cfg.validate, target)
    assert report.passed, report.violations
    features = featurize.fn(data, cfg.features, target, cfg.seed)
    model = train.fn(features, ModelSpec.from_config(cfg.model), cfg.seed)
    evaluation = evaluate.fn(model, features, cfg.evaluate)
    return Trained(cfg, loaded.resolved, data, features, model, evaluation)


def reg_cfg(t: Trained, tmp_path: Path, **kw: Any) -> RegisterConfig:
    return RegisterConfig(**{"model_name": t.cfg.register.model_name,
                             "root": str(tmp_path / "registry"), "aliases": ["candidate"],
                             "reference_sample_rows": 1000, **kw})


def run_info(t: Trained) -> RunInfo:
    return RunInfo(config=t.resolved, project_root=str(REPO), flow_run_id="run-123",
                   flow_run_name="brave-otter")


def do_register(t: Trained, cfg: RegisterConfig, storage: StorageConfig = LOCAL,
                model: TrainedModel | None = None,
                champion: ChampionComparison | None = None,
                features: FeatureSet | None = None, evaluation: Evaluation | None = None,
                data: Dataset | None = None, run: RunInfo | None = None):
    return register.fn(model or t.model, evaluation or t.evaluation, data or t.data,
                       features or t.features, champion, cfg, storage, run or run_info(t),
                       t.cfg.seed)


def probabilities(pipeline: Any, t: Trained) -> np.ndarray:
    return pipeline.predict_proba(t.features.test.X)[:, 1]


class TestRegisterContents:
    def test_model_file_and_sha(self, trained: Trained, tmp_path: Path) -> None:
        cfg = reg_cfg(trained, tmp_path)
        mv = do_register(trained, cfg)
        registry = open_registry(cfg, LOCAL)

        assert (mv.model_name, mv.version) == ("flights-binary", 1)
        blob = registry.store.get(mv.model_key)
        assert mv.model_sha256 == bytes_sha256(blob)
        assert mv.fingerprint == trained.model.fingerprint
        loaded = registry.load(mv.model_name, mv.version)
        np.testing.assert_array_equal(probabilities(loaded.model, trained),
                                      probabilities(trained.model.pipeline, trained))

    def test_metrics_gate_params_and_config(self, trained: Trained, tmp_path: Path) -> None:
        comparison = ChampionComparison(COMPARED, 3, 1000, compared_rows=900, excluded_rows=100,
                                        checked=True, champion={"roc_auc": 0.6, "log_loss": 0.5},
                                        challenger={"roc_auc": 0.7, "log_loss": 0.4})
        mv = do_register(trained, reg_cfg(trained, tmp_path), champion=comparison)
        back = open_registry(reg_cfg(trained, tmp_path), LOCAL).get_version(mv.model_name, 1)

        assert back.metrics == trained.evaluation.metrics
        assert 0.5 < back.metrics["roc_auc"] <= 1.0
        assert back.gate == trained.evaluation.gate.as_record()
        assert (back.gate.passed, back.gate.decided_by) == (True, ["baseline"])
        assert back.gate.baseline is not None
        assert back.gate.baseline.value == 0.5  # the class prior's ROC AUC
        assert back.champion == ChampionRecord(
            version=3, metrics={"roc_auc": 0.6, "log_loss": 0.5},
            challenger_metrics={"roc_auc": 0.7, "log_loss": 0.4}, status="compared",
            test_rows=1000, compared_rows=900, excluded_rows=100, excluded_own_rows=0,
            checked=True, note="")
        assert back.problem_type == "binary"
        assert back.estimator == "xgboost.XGBClassifier"
        assert back.params["n_estimators"] == 20 and back.params["random_state"] == 42
        assert back.fit == trained.model.fit
        assert back.fit is not None and back.fit.train_rows == len(trained.features.train)
        assert back.confusion_matrix == trained.evaluation.confusion_matrix
        assert back.config == trained.resolved
        assert back.config["data"]["sample_rows"] == 5000
        assert back.run == RunFacts(flow_run_id="run-123", flow_run_name="brave-otter")
        assert back.features.target == "delayed"
        assert back.features.classes == trained.model.classes
        assert back.features.feature_names == trained.model.feature_names
        assert back.features.input_schema == trained.features.input_schema
        assert back.features.input_schema.names == tuple(trained.features.train.X.columns)

    def test_data_lineage_and_snapshot(self, trained: Trained, tmp_path: Path) -> None:
        mv = do_register(trained, reg_cfg(trained, tmp_path))

        assert mv.data.fingerprint == trained.data.fingerprint
        assert mv.data.source_fingerprint == trained.data.source_fingerprint
        assert mv.data.rows == 5000
        assert mv.data.split == trained.features.split_info
        assert mv.data.split.train_rows == len(trained.features.train)
        assert mv.data.time_min == trained.data.stats["time_min"]
        snapshot = mv.data.snapshot_uri
        assert snapshot == trained.data.snapshot_uri and Path(snapshot).is_file()
        frame = pd.read_parquet(io.BytesIO(read_source(parse_location(snapshot), S3Config())))
        assert len(frame) == 5000
        assert list(frame.columns) == mv.data.columns

    def test_git_and_packages(self, trained: Trained, tmp_path: Path) -> None:
        mv = do_register(trained, reg_cfg(trained, tmp_path))
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()

        assert mv.git is not None and mv.git.commit == head
        assert isinstance(mv.git.dirty, bool) and mv.git.branch
        for name in ("prefect", "pandas", "scikit-learn", "wandb"):
            assert mv.packages[name] == metadata.version(name)
        assert "xgboost-cpu" in mv.packages or "xgboost" in mv.packages

    def test_reference_sample(self, trained: Trained, tmp_path: Path) -> None:
        cfg = reg_cfg(trained, tmp_path, reference_sample_rows=1000)
        mv = do_register(trained, cfg)
        ref = pd.read_parquet(io.BytesIO(open_registry(cfg, LOCAL).read_file(
            mv, "reference.parquet")))
        train_x = trained.features.train.X

        assert len(ref) == cfg.reference_sample_rows
        assert list(ref.columns) == [*train_x.columns, "__target__"]
        # every reference row is a train row, with that row's label
        train_rows = train_x.assign(__target__=trained.features.train.y)
        key = ["time_hour", "flight", "carrier", "origin", "dest"]
        joined = ref.merge(train_rows.drop_duplicates(key), on=key, how="left",
                           suffixes=("", "_train"), validate="many_to_one", indicator=True)
        assert (joined["_merge"] == "both").all()
        assert (joined["__target__"] == joined["__target___train"]).all()
        assert set(ref["__target__"]) <= {0, 1}

    def test_reference_sample_is_capped_at_the_train_split(self, trained: Trained,
                                                            tmp_path: Path) -> None:
        cfg = reg_cfg(trained, tmp_path, reference_sample_rows=10**6)
        mv = do_register(trained, cfg)
        ref = pd.read_parquet(io.BytesIO(open_registry(cfg, LOCAL).read_file(
            mv, "reference.parquet")))

        assert len(ref) == len(trained.features.train)

    def test_no_reference_sample_when_zero_rows(self, trained: Trained, tmp_path: Path
                                                ) -> None:
        mv = do_register(trained, reg_cfg(trained, tmp_path, reference_sample_rows=0))

        assert "reference.parquet" not in mv.files

    def test_plots_are_stored(self, trained: Trained, tmp_path: Path) -> None:
        cfg = reg_cfg(trained, tmp_path)
        mv = do_register(trained, cfg)
        registry = open_registry(cfg, LOCAL)

        assert trained.evaluation.plots, "evaluate made no plots"
        assert set(mv.files) == {f"plots/{n}" for n in trained.evaluation.plots} | {
            "reference.parquet", "train_rows.npy"}
        for name, png in trained.evaluation.plots.items():
            stored = registry.read_file(mv, f"plots/{name}")
            assert stored == png and stored[:4] == b"\x89PNG"

    def test_configured_aliases_point_at_the_new_version(self, trained: Trained,
                                                         tmp_path: Path) -> None:
        cfg = reg_cfg(trained, tmp_path, aliases=["candidate", "staging"])
        do_register(trained, cfg)
        registry = open_registry(cfg, LOCAL)

        assert {k: v.version for k, v in registry.aliases(cfg.model_name).items()} == {
            "candidate": 1, "staging": 1}
        assert registry.alias(cfg.model_name, "production") is None
        assert [e["event"] for e in registry.events(cfg.model_name)] == [
            "register", "set_alias", "set_alias"]

    def test_register_into_s3(self, trained: Trained, s3_env: str) -> None:
        bucket = f"reg-{uuid.uuid4().hex[:12]}"
        make_bucket(s3_env, bucket)
        storage = StorageConfig(kind="s3", bucket=bucket, prefix="prefab",
                                s3=S3Config(endpoint_url=s3_env))
        cfg = RegisterConfig(model_name="flights-binary", root="/unused", aliases=["candidate"],
                             reference_sample_rows=100)
        mv = do_register(trained, cfg, storage)
        registry = open_registry(cfg, storage)

        assert registry.store.uri(mv.model_key).startswith(
            f"s3://{bucket}/prefab/registry/flights-binary/blobs/")
        loaded = registry.load("flights-binary", alias="candidate")
        np.testing.assert_array_equal(probabilities(loaded.model, trained),
                                      probabilities(trained.model.pipeline, trained))
        assert not Path("/unused").exists()


class TestTrainedRows:
    def test_hashes_of_the_train_and_validation_rows_are_stored(
            self, trained: Trained, tmp_path: Path) -> None:
        cfg = reg_cfg(trained, tmp_path)
        mv = do_register(trained, cfg)
        fs = trained.features
        columns = list(fs.train.X.columns)
        rows = open_registry(cfg, LOCAL).trained_rows(mv)

        assert rows is not None and list(rows.columns) == columns
        assert mv.data.trained_rows == TrainedRowsRecord(columns=columns, distinct=len(rows))
        expected = np.unique(np.concatenate([row_hashes(fs.train.X), row_hashes(fs.valid.X)]))
        np.testing.assert_array_equal(rows.hashes, expected)
        assert len(rows) == len(fs.train) + len(fs.valid)  # flights rows are distinct
        # 8 bytes a row (plus the .npy header)
        stored = open_registry(cfg, LOCAL).read_file(mv, "train_rows.npy")
        assert len(stored) - 8 * len(rows) <= 128
        assert rows.contains(pd.concat([fs.train.X, fs.valid.X])).all()
        assert not rows.contains(fs.test.X).any()

    def test_load_production_reads_them_only_when_asked(self, trained: Trained,
                                                        tmp_path: Path) -> None:
        cfg = reg_cfg(trained, tmp_path)
        mv = do_register(trained, cfg)
        registry = open_registry(cfg, LOCAL)
        registry.set_alias(cfg.model_name, "production", mv.version)

        assert load_production.fn(cfg, LOCAL).trained_rows is None
        loaded = load_production.fn(cfg, LOCAL, with_trained_rows=True)
        np.testing.assert_array_equal(loaded.trained_rows.hashes,
                                      registry.trained_rows(mv).hashes)
        # the champion is the challenger: neither the model nor its rows are read
        registry.store.put(mv.files["train_rows.npy"], b"unreadable")
        same = load_production.fn(cfg, LOCAL, unless_lineage=mv.fingerprint,
                                  with_trained_rows=True)
        assert same.model is None and same.trained_rows is None

    def test_a_version_registered_without_them_has_none(self, trained: Trained,
                                                        tmp_path: Path) -> None:
        cfg = reg_cfg(trained, tmp_path)
        fs = trained.features
        unhashed = {k: dataclasses.replace(fs.payload[k], row_hash=None)
                    for k in ("train", "valid", "test")}
        old = dataclasses.replace(fs, payload=Payload(
            **unhashed, Xt_train=fs.Xt_train, Xt_valid=fs.Xt_valid))
        mv = do_register(trained, cfg, features=old)
        registry = open_registry(cfg, LOCAL)
        registry.set_alias(cfg.model_name, "production", mv.version)

        assert "train_rows.npy" not in mv.files and mv.data.trained_rows is None
        assert registry.trained_rows(mv) is None
        assert load_production.fn(cfg, LOCAL, with_trained_rows=True).trained_rows is None


class TestRegisterDedup:
    def test_same_model_twice_gives_the_same_version(self, trained: Trained, tmp_path: Path
                                                     ) -> None:
        cfg = reg_cfg(trained, tmp_path)
        first = do_register(trained, cfg)
        again = do_register(trained, cfg)
        registry = open_registry(cfg, LOCAL)

        assert again.version == first.version == 1
        assert again.model_sha256 == first.model_sha256
        assert [v.version for v in registry.versions(cfg.model_name)] == [1]
        assert [e["event"] for e in registry.events(cfg.model_name)].count("register") == 1

    def test_a_different_model_gives_a_new_version(self, trained: Trained, tmp_path: Path
                                                   ) -> None:
        cfg = reg_cfg(trained, tmp_path)
        first = do_register(trained, cfg)
        spec = ModelSpec.from_config({**trained.cfg.model, "n_estimators": 21})
        other = train.fn(trained.features, spec, trained.cfg.seed)
        second = do_register(trained, cfg, model=other)

        assert second.version == 2 and second.model_sha256 != first.model_sha256
        state = open_registry(cfg, LOCAL).alias(cfg.model_name, "candidate")
        assert (state.version, state.history) == (2, [1])

    def test_a_byte_identical_model_of_another_lineage_is_not_registered_twice(
            self, trained: Trained, tmp_path: Path) -> None:
        """The same rows, read with the data snapshot switched off: the data lineage (and
        so the model's) differs, the fitted model is byte for byte the same."""
        cfg = reg_cfg(trained, tmp_path)
        first = do_register(trained, cfg)
        data_cfg = dataclasses.replace(trained.cfg.data, snapshot=False)
        data = ingest.fn(data_cfg, trained.cfg.paths, trained.cfg.storage, trained.cfg.seed)
        features = featurize.fn(data, trained.cfg.features, TargetSpec.from_data(data_cfg),
                                trained.cfg.seed)
        model = train.fn(features, ModelSpec.from_config(trained.cfg.model), trained.cfg.seed)
        assert model.fingerprint != trained.model.fingerprint
        assert bytes_sha256(dumps_model(model.pipeline)) == first.model_sha256

        again = do_register(trained, cfg, model=model, features=features, data=data)
        registry = open_registry(cfg, LOCAL)

        assert again.version == first.version == 1
        assert [v.version for v in registry.versions(cfg.model_name)] == [1]
        assert registry.find_by_sha256(cfg.model_name, first.model_sha256).version == 1
        assert registry.find_by_sha256(cfg.model_name, "0" * 64) is None


class TestReRegistrationRecordsTheLatestEvaluation:
    """A model registered again is not a new version, but the run's evaluation is its
    latest: a version promoted after a failed gate never shows that failure."""

    def test_the_latest_gate_result_is_shown(self, trained: Trained, tmp_path: Path) -> None:
        cfg = reg_cfg(trained, tmp_path)
        strict = dataclasses.replace(trained.cfg.evaluate, plots=False,
                                     gate={"roc_auc": GateRule(min=0.99)})
        failed = evaluate.fn(trained.model, trained.features, strict)
        assert failed.gate.passed is False and trained.evaluation.gate.passed is True
        first = do_register(trained, cfg, evaluation=failed)
        registry = open_registry(cfg, LOCAL)
        assert registry.latest_evaluation(first).gate.passed is False

        later = RunInfo(flow_run_id="run-456", flow_run_name="calm-heron")
        again = do_register(trained, cfg, run=later)  # the default gate: passes

        assert again.version == first.version == 1
        assert again.gate == failed.gate.as_record()  # the manifest is never rewritten
        latest = registry.latest_evaluation(again)
        assert latest.gate == trained.evaluation.gate.as_record()
        assert (latest.gate.passed, latest.gate.decided_by) == (True, ["baseline"])
        assert latest.metrics == trained.evaluation.metrics
        assert latest.run.flow_run_id == "run-456" and not latest.registered
        assert latest.data.fingerprint == trained.data.fingerprint
        history = registry.evaluations(again)
        assert [(e.registered, e.gate.passed) for e in history] == [(True, False),
                                                                    (False, True)]
        assert [e["event"] for e in registry.events(cfg.model_name)].count("evaluate") == 1

    def test_an_unchanged_evaluation_is_not_recorded_again(self, trained: Trained,
                                                           tmp_path: Path) -> None:
        cfg = reg_cfg(trained, tmp_path)
        mv = do_register(trained, cfg)
        do_register(trained, cfg)
        do_register(trained, cfg)

        registry = open_registry(cfg, LOCAL)
        assert len(registry.evaluations(mv)) == 1
        assert registry.latest_evaluation(mv).registered is True

    def test_a_byte_identical_model_records_its_evaluation_too(
            self, trained: Trained, tmp_path: Path) -> None:
        cfg = reg_cfg(trained, tmp_path)
        mv = do_register(trained, cfg)
        relabelled = dataclasses.replace(trained.model, fingerprint="another-lineage")
        strict = dataclasses.replace(trained.cfg.evaluate, plots=False,
                                     gate={"roc_auc": GateRule(min=0.99)})
        failed = evaluate.fn(trained.model, trained.features, strict)

        again = do_register(trained, cfg, model=relabelled, evaluation=failed)

        assert again.version == mv.version == 1
        assert open_registry(cfg, LOCAL).latest_evaluation(mv).gate.decided_by == ["absolute"]


class TestLoadProduction:
    def test_none_without_production(self, trained: Trained, tmp_path: Path) -> None:
        cfg = reg_cfg(trained, tmp_path)
        assert load_production.fn(cfg, LOCAL) is None  # empty registry

        do_register(trained, cfg)  # only 'candidate' points at it
        assert load_production.fn(cfg, LOCAL) is None

    def test_loads_the_production_model(self, trained: Trained, tmp_path: Path) -> None:
        cfg = reg_cfg(trained, tmp_path)
        mv = do_register(trained, cfg)
        open_registry(cfg, LOCAL).set_alias(cfg.model_name, "production", mv.version)

        loaded = load_production.fn(cfg, LOCAL)

        assert loaded is not None and loaded.version.version == 1
        np.testing.assert_array_equal(probabilities(loaded.model, trained),
                                      probabilities(trained.model.pipeline, trained))

    def test_champion_that_is_the_challenger_is_not_read(self, trained: Trained,
                                                         tmp_path: Path) -> None:
        cfg = reg_cfg(trained, tmp_path)
        mv = do_register(trained, cfg)
        registry: ModelRegistry = open_registry(cfg, LOCAL)
        registry.set_alias(cfg.model_name, "production", mv.version)
        registry.store.put(mv.model_key, b"unreadable")  # would fail its sha256 check

        same = load_production.fn(cfg, LOCAL, unless_lineage=mv.fingerprint)
        assert same is not None and same.model is None and same.version.version == 1
        with pytest.raises(IntegrityError):  # another challenger: the model is read
            load_production.fn(cfg, LOCAL, unless_lineage="another-lineage")

    def test_tampered_production_model_is_refused(self, trained: Trained, tmp_path: Path
                                                  ) -> None:
        cfg = reg_cfg(trained, tmp_path)
        mv = do_register(trained, cfg)
        registry: ModelRegistry = open_registry(cfg, LOCAL)
        registry.set_alias(cfg.model_name, "production", mv.version)
        registry.store.put(mv.model_key, pickle.dumps("not the model"))

        with pytest.raises(IntegrityError, match="flights-binary:v1"):
            load_production.fn(cfg, LOCAL)
