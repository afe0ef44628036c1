"""``data.engine: dask`` on real flights rows, on a real two-process ``LocalCluster``.

Covers: a row lands in the pandas path's split however the rows are partitioned;
metrics reduced from per-partition counts equal scikit-learn's; the training flow on
a partitioned copy of flights reaches the pandas path's gate decision with the same
split and metrics within :data:`TOLERANCE`, and registers a plain XGBoost pipeline that
the model server's loader and batch scoring use as is; the fingerprint comes from file
metadata; every violation of every partition in one error; a leaking input column stops
the run before training; a run whose champion moved before it promoted decides again
against the new one; a partitioned dataset on the moto S3 server; and the config checks
of what the engine cannot do.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from prefab_mlops import partitions as P
from prefab_mlops.config import TargetSpec, load_config
from prefab_mlops.core.errors import ConfigError, DataValidationError, LeakageError
from prefab_mlops.core.registry import REFERENCE_FILE, REFERENCE_TARGET, ModelRegistry
from prefab_mlops.core.storage import LocalObjectStore, S3Config, StorageConfig
from prefab_mlops.tasks.featurize import split_rows
from prefab_mlops.tasks.ingest import ingest_partitioned
from prefab_mlops.tasks.validate import validate_partitioned
from tests.conftest import make_bucket
from tests.flows.test_training import WITH_ARR_DELAY

CONF = Path(__file__).resolve().parents[2] / "conf"
ROWS, PARTS = 8000, 4
FAST = ["model.n_estimators=60", "tracking=disabled"]
#: How far the dask path's test metrics may be from the pandas path's on the same rows
#: and split. XGBoost's quantile sketch is built from each worker's rows and merged, so
#: its histogram bins (and so the trees) differ a little from one process's; measured
#: differences here are below 0.01.
TOLERANCE = 0.02


@pytest.fixture(scope="module")
def flights_parts(tmp_path_factory: pytest.TempPathFactory,
                  flights_frame: pd.DataFrame) -> tuple[Path, Path]:
    """The first 8,000 rows of the flights slice as 4 Parquet files, and as one file."""
    frame = flights_frame.head(ROWS)
    root = tmp_path_factory.mktemp("flights-parts")
    parts = root / "parts"
    parts.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(ROWS), PARTS)):
        frame.iloc[rows].to_parquet(parts / f"part-{i}.parquet", index=False)
    frame.to_parquet(root / "flights.parquet", index=False)
    return parts, root / "flights.parquet"


def dask_overrides(uri: Path | str) -> list[str]:
    return ["data.engine=dask", f"data.uri={uri}", "data.format=parquet", *FAST]


class TestSplit:
    def test_a_row_lands_in_the_pandas_split_whatever_the_partitioning(
            self, flights_frame: pd.DataFrame) -> None:
        cfg = load_config([], config_dir=CONF).typed
        frame = flights_frame.head(3000).reset_index(drop=True)
        y = np.zeros(len(frame))
        train, valid, test = split_rows(frame, y, cfg.features, 42, None)
        sp = cfg.features.split
        for cuts in ([3000], [1000, 2000, 3000], [7, 1500, 1501, 3000]):
            codes = np.concatenate([
                P.split_codes(frame.iloc[a:b].reset_index(drop=True), [], 42, sp.test_size,
                              sp.valid_size) for a, b in zip([0, *cuts[:-1]], cuts, strict=True)])
            assert np.array_equal(np.flatnonzero(codes == P.TRAIN), train)
            assert np.array_equal(np.flatnonzero(codes == P.VALID), valid)
            assert np.array_equal(np.flatnonzero(codes == P.TEST), test)


class TestMetricsFromCounts:
    def test_binary_metrics_equal_sklearn_on_flights(self, flights_frame: pd.DataFrame) -> None:
        frame = flights_frame.dropna(subset=["arr_delay"])
        y = (frame["arr_delay"] > 15).to_numpy(dtype=int)
        # a real, tied score: later scheduled departures are delayed more often
        score = frame["sched_dep_time"].to_numpy() / 2400.0
        chunks = np.array_split(np.arange(len(y)), 4)
        counts = [P._counts(y[c], score[c], "binary", 0.5) for c in chunks]
        total = counts[0]
        for c in counts[1:]:
            total = P._add(total, c)
        got, cm = P.metrics_from_counts(total, "binary")
        pred = (score >= 0.5).astype(int)
        assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
        assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, score), abs=1e-12)
        assert got["log_loss"] == pytest.approx(skm.log_loss(y, score), rel=1e-9)
        assert got["f1"] == pytest.approx(skm.f1_score(y, pred))
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
        assert cm == skm.confusion_matrix(y, pred).tolist()

    def test_curves_are_sklearns_on_the_binned_scores(self, flights_frame: pd.DataFrame
                                                      ) -> None:
        frame = flights_frame.dropna(subset=["arr_delay"])
        y = (frame["arr_delay"] > 15).to_numpy(dtype=int)
        score = frame["sched_dep_time"].to_numpy() / 2400.0
        counts = P._add(P._counts(y[:5000], score[:5000], "binary", 0.5),
                        P._counts(y[5000:], score[5000:], "binary", 0.5))
        fpr, tpr, precision = P.curves_from_counts(counts)
        binned = np.minimum((score * P.AUC_BINS).astype(np.int64), P.AUC_BINS - 1)
        want_fpr, want_tpr, _ = skm.roc_curve(y, binned, drop_intermediate=False)
        assert np.allclose(fpr, want_fpr) and np.allclose(tpr, want_tpr)
        got, _ = P.metrics_from_counts(counts, "binary")
        assert skm.auc(fpr, tpr) == pytest.approx(got["roc_auc"], abs=1e-12)
        want_prec, want_rec, _ = skm.precision_recall_curve(y, binned)
        # sklearn lists the points from the lowest threshold up, ending at (recall 0, 1)
        assert np.allclose(precision[1:], want_prec[::-1][1:])
        assert np.allclose(tpr[1:], want_rec[::-1][1:])

    def test_regression_metrics_equal_sklearn(self, flights_frame: pd.DataFrame) -> None:
        y = flights_frame["distance"].to_numpy(dtype=float)
        pred = flights_frame["air_time"].fillna(0).to_numpy(dtype=float) * 7.5
        total = P._add(P._counts(y[:900], pred[:900], "regression", 0.5),
                       P._counts(y[900:], pred[900:], "regression", 0.5))
        got, _ = P.metrics_from_counts(total, "regression")
        assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
        assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
        assert got["r2"] == pytest.approx(skm.r2_score(y, pred))


@pytest.mark.usefixtures("prefect_harness", "dask_cluster")
class TestEngineMatchesPandas:
    def test_same_gate_decision_split_and_metrics_and_a_plain_servable_model(
            self, tmp_path: Path, flights_parts: tuple[Path, Path]) -> None:
        from prefab_mlops.flows.training import training
        from prefab_mlops.serve.model import load_served
        from prefab_mlops.tasks.predict import predict_frame

        parts, single = flights_parts
        pandas_run = training(overrides=[f"paths.root={tmp_path / 'pandas'}",
                                         f"data.uri={single}", "data.format=parquet", *FAST],
                              config_dir=str(CONF))
        dask_run = training(overrides=[f"paths.root={tmp_path / 'dask'}",
                                       *dask_overrides(parts)], config_dir=str(CONF))
        assert dask_run["gate"]["passed"] is pandas_run["gate"]["passed"] is True
        assert dask_run["decision"]["promote"] is pandas_run["decision"]["promote"] is True
        assert dask_run["gate"]["baseline"]["value"] == pandas_run["gate"]["baseline"]["value"]
        assert dask_run["data"]["rows"] == pandas_run["data"]["rows"]
        for k in ("roc_auc", "pr_auc", "log_loss", "accuracy"):
            assert abs(dask_run["metrics"][k] - pandas_run["metrics"][k]) < TOLERANCE, k
        assert dask_run["metrics"]["n_test"] == pandas_run["metrics"]["n_test"]
        # the leakage check ran on the train split (all of it: under the scan's 20,000)
        for r in (dask_run, pandas_run):
            assert r["leakage"]["before_training"]["suspects"] == []
        assert dask_run["leakage"]["before_training"]["scan"]["rows"] == \
            pandas_run["leakage"]["before_training"]["scan"]["rows"]

        reg = {k: ModelRegistry(LocalObjectStore(tmp_path / k / "registry"))
               for k in ("pandas", "dask")}
        name = dask_run["model_name"]
        mv = {k: r.get_version(name, 1) for k, r in reg.items()}
        split = {k: m.data.split for k, m in mv.items()}
        assert split["dask"] is not None and split["pandas"] is not None
        assert (split["dask"].train_rows, split["dask"].valid_rows, split["dask"].test_rows) \
            == (split["pandas"].train_rows, split["pandas"].valid_rows,
                split["pandas"].test_rows)
        assert mv["dask"].features.feature_names == mv["pandas"].features.feature_names
        plots = {k: {f for f in m.files if f.startswith("plots/")} for k, m in mv.items()}
        assert plots["dask"] == plots["pandas"] == {
            "plots/roc.png", "plots/pr.png", "plots/confusion.png", "plots/importance.png"}
        snapshot = Path(dask_run["data"]["snapshot_uri"])
        assert len(list(snapshot.glob("*.parquet"))) == PARTS

        # the registered model is a plain pipeline: the server's loader and batch scoring
        served = load_served(reg["dask"], name, 1)
        rows = pd.read_parquet(single).dropna(subset=["arr_delay"]).head(50)
        X = rows[[c.name for c in mv["dask"].features.input_schema.columns]]
        cols = {c: X[c].tolist() for c in X.columns}
        prediction = served.predict(cols, len(X))
        loaded = reg["dask"].load(name, version=1)
        batch = predict_frame(loaded.model, X, "binary", mv["dask"].features.classes)
        assert np.allclose(prediction.proba[:, 1], batch["probability"], atol=1e-6)
        assert 0.05 < batch["probability"].mean() < 0.6
        ref = pd.read_parquet(io.BytesIO(reg["dask"].read_file(mv["dask"], REFERENCE_FILE)))
        # a seeded sample of the train split, here all of it (under register's 20,000)
        assert REFERENCE_TARGET in ref.columns and len(ref) == split["dask"].train_rows
        assert set(ref[REFERENCE_TARGET]) == {0, 1}

        # a second run on the same rows is compared with the champion on the test split
        again = training(overrides=[f"paths.root={tmp_path / 'dask'}", *dask_overrides(parts),
                                    "model.n_estimators=20"], config_dir=str(CONF))
        assert again["comparison"]["status"] == "compared"
        assert again["comparison"]["compared_rows"] == dask_run["metrics"]["n_test"]
        assert again["comparison"]["champion"]["roc_auc"] == pytest.approx(
            dask_run["metrics"]["roc_auc"])


def dask_challenge(root: Path, parts: Path, n_estimators: int) -> Any:
    """One dask-engine training run up to registration, each step's ``.fn`` on the test
    cluster: what the flow hands to promote (a ``Challenge``), decided against no
    champion, as two runs started side by side both decide."""
    from prefab_mlops.config import ModelSpec
    from prefab_mlops.tasks.evaluate import (
        NO_CHAMPION,
        ChampionComparison,
        evaluate_partitioned,
    )
    from prefab_mlops.tasks.featurize import featurize_partitioned
    from prefab_mlops.tasks.promote import Challenge
    from prefab_mlops.tasks.register import RunInfo, register_partitioned
    from prefab_mlops.tasks.train import train_partitioned

    loaded = load_config([f"paths.root={root}", *dask_overrides(parts),
                          f"model.n_estimators={n_estimators}"], config_dir=CONF)
    cfg = loaded.typed
    data = ingest_partitioned.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
    feats = featurize_partitioned.fn(data, cfg.features, TargetSpec.from_data(cfg.data),
                                     cfg.seed, cfg.storage)
    trained = train_partitioned.fn(feats, ModelSpec.from_config(cfg.model), cfg.seed,
                                   cfg.storage)
    evaluation = evaluate_partitioned.fn(trained, feats, cfg.evaluate, cfg.storage)
    comparison = ChampionComparison(NO_CHAMPION, None, feats.split_info.test_rows)
    version = register_partitioned.fn(trained, evaluation, data, feats, comparison,
                                      cfg.register, cfg.storage,
                                      RunInfo(config=loaded.resolved, project_root=str(root)),
                                      cfg.seed)
    return cfg, Challenge(version, evaluation, trained, feats, cfg.evaluate, comparison,
                          cfg.storage)


@pytest.mark.usefixtures("dask_cluster")
class TestPromotionRaceOnDask:
    """Two dask-engine runs decided against the same champion (none): the one that
    promotes second finds production moved, scores the new champion on the cluster,
    and decides again."""

    @pytest.mark.parametrize("better_first", [True, False])
    def test_the_late_run_decides_again_against_the_moved_champion(
            self, tmp_path: Path, flights_parts: tuple[Path, Path], better_first: bool
    ) -> None:
        from prefab_mlops.tasks.evaluate import COMPARED
        from prefab_mlops.tasks.promote import decide_promotion, promote

        parts, _ = flights_parts
        _, strong = dask_challenge(tmp_path, parts, 60)
        cfg, weak = dask_challenge(tmp_path, parts, 3)
        auc = {c.challenger.version: c.evaluation.metrics["roc_auc"] for c in (strong, weak)}
        assert auc[strong.challenger.version] > auc[weak.challenger.version]
        first, late = (strong, weak) if better_first else (weak, strong)

        def run_promote(c: Any) -> Any:
            decision = decide_promotion(c.challenger, c.evaluation, c.comparison, cfg.promote)
            assert (decision.promote, decision.champion_version) == (True, None)
            return promote.fn(decision, cfg.register.model_name, cfg.promote, cfg.register,
                              cfg.storage, c)

        assert run_promote(first).attempts == 1
        outcome = run_promote(late)

        assert outcome.attempts == 2
        assert outcome.decision.champion_version == first.challenger.version
        assert outcome.decision.promote is (not better_first)
        assert (outcome.comparison.status, outcome.comparison.champion_version) == (
            COMPARED, first.challenger.version)
        # both scored on the late run's test split, partition by partition
        assert outcome.comparison.compared_rows == first.comparison.test_rows
        assert outcome.comparison.champion["roc_auc"] == pytest.approx(
            auc[first.challenger.version], abs=1e-9)
        reg = ModelRegistry(LocalObjectStore(tmp_path / "registry"))
        production = reg.alias(cfg.register.model_name, "production")
        assert production is not None
        assert production.version == strong.challenger.version


@pytest.mark.usefixtures("prefect_harness", "dask_cluster")
class TestLeakageAlarmOnDask:
    def test_a_leaking_column_stops_the_run_before_training(
            self, tmp_path: Path, flights_parts: tuple[Path, Path]) -> None:
        """The arrival delay (``delayed = arr_delay > 15``) as an input: the scan of a
        sample drawn across the partitions names it, and nothing is registered."""
        from prefab_mlops.flows.training import training

        parts, _ = flights_parts
        with pytest.raises(LeakageError, match=r"'arr_delay' \(roc_auc 1\.0000 alone\)") as err:
            training(overrides=[f"paths.root={tmp_path}", *dask_overrides(parts),
                                *WITH_ARR_DELAY, "validate.leakage=fail"],
                     config_dir=str(CONF))
        assert "remove 'arr_delay' from features.numeric.columns" in err.value.fix
        assert ModelRegistry(LocalObjectStore(tmp_path / "registry")).versions(
            "flights-binary") == []


@pytest.mark.usefixtures("dask_cluster")
class TestPartitionedIngest:
    def test_fingerprint_from_file_metadata(self, tmp_path: Path,
                                            flights_frame: pd.DataFrame) -> None:
        parts = tmp_path / "parts"
        parts.mkdir()
        frame = flights_frame.head(2000)
        for i in range(2):
            frame.iloc[i * 1000:(i + 1) * 1000].to_parquet(parts / f"p{i}.parquet", index=False)
        cfg = load_config([f"paths.root={tmp_path}", *dask_overrides(parts)],
                          config_dir=CONF).typed
        first = ingest_partitioned.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
        marker = Path(first.uri) / P.COMPLETE_MARKER
        written = marker.stat().st_mtime_ns
        same = ingest_partitioned.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
        assert same.fingerprint == first.fingerprint and marker.stat().st_mtime_ns == written
        assert first.rows == frame["arr_delay"].notna().sum() and first.files == 2
        # the same bytes rewritten: a new mtime is a new version, DVC-style
        later = time.time() + 5
        os.utime(parts / "p1.parquet", (later, later))
        touched = ingest_partitioned.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
        assert touched.source_fingerprint != first.source_fingerprint
        # a new file is a new version too
        frame.iloc[:10].to_parquet(parts / "p2.parquet", index=False)
        grown = ingest_partitioned.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
        assert grown.files == 3 and grown.rows == first.rows + frame.iloc[:10][
            "arr_delay"].notna().sum()


    def test_a_glob_of_csv_files(self, tmp_path: Path, flights_frame: pd.DataFrame) -> None:
        frame = flights_frame.head(3000)
        for i in range(3):
            frame.iloc[i * 1000:(i + 1) * 1000].to_csv(tmp_path / f"f{i}.csv", index=False)
        (tmp_path / "notes.txt").write_text("not data")
        cfg = load_config([f"paths.root={tmp_path}", "data.engine=dask",
                           f"data.uri={tmp_path}/f*.csv", "data.format=auto",
                           "data.dask.blocksize=64KB"], config_dir=CONF).typed
        data = ingest_partitioned.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
        assert data.files == 3
        assert data.rows == frame["arr_delay"].notna().sum()
        report = validate_partitioned.fn(data, cfg.validate, TargetSpec.from_data(cfg.data),
                                           cfg.storage)
        assert report.passed, report.violations
        snap = pd.read_parquet(data.uri)
        assert str(snap["time_hour"].dtype).startswith("datetime64")

@pytest.mark.usefixtures("dask_cluster")
class TestPartitionedValidate:
    def test_every_violation_of_every_partition_in_one_error(
            self, tmp_path: Path, flights_frame: pd.DataFrame) -> None:
        parts = tmp_path / "parts"
        parts.mkdir()
        # flown flights only: ingest drops the others (data.dropna) before validation
        frame = flights_frame.dropna(subset=["arr_delay"]).head(3000).reset_index(drop=True)
        chunks = [frame.iloc[i * 1000:(i + 1) * 1000].copy() for i in range(3)]
        chunks[0].loc[chunks[0].index[:3], "month"] = 13
        chunks[2].loc[chunks[2].index[:2], "month"] = 14
        chunks[1]["origin"] = chunks[1]["origin"].astype(object)
        chunks[1].loc[chunks[1].index[:4], "origin"] = "XXX"
        chunks[2] = pd.concat([chunks[2], chunks[0].iloc[[10, 11]]])  # duplicated rows
        for i, chunk in enumerate(chunks):
            chunk.to_parquet(parts / f"p{i}.parquet", index=False)
        cfg = load_config([f"paths.root={tmp_path}", *dask_overrides(parts),
                           "validate.unique=[[time_hour,carrier,flight,origin]]"],
                          config_dir=CONF).typed
        data = ingest_partitioned.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
        with pytest.raises(DataValidationError) as err:
            validate_partitioned.fn(data, cfg.validate, TargetSpec.from_data(cfg.data),
                                      cfg.storage)
        found = {(v["column"], v["rule"]): v["count"] for v in err.value.violations}
        assert found[("month", "less_than_or_equal_to(12.0)")] == 5
        assert found[("origin", "isin(['EWR', 'JFK', 'LGA'])")] == 4
        assert found[("time_hour, carrier, flight, origin", "unique together")] == 4
        ok = replace(cfg.validate, on_failure="warn")
        report = validate_partitioned.fn(data, ok, TargetSpec.from_data(cfg.data),
                                           cfg.storage)
        assert not report.passed and len(report.violations) == 3


@pytest.mark.usefixtures("dask_cluster")
class TestPartitionedS3:
    def test_a_partitioned_dataset_on_s3(self, tmp_path: Path, s3_env: str,
                                         flights_frame: pd.DataFrame) -> None:
        import boto3

        bucket = "dask-flights"
        make_bucket(s3_env, bucket)
        s3 = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")

        def upload(i: int, part: pd.DataFrame) -> None:
            buf = io.BytesIO()
            part.to_parquet(buf, index=False)
            s3.put_object(Bucket=bucket, Key=f"raw/flights/part-{i}.parquet",
                          Body=buf.getvalue())

        frame = flights_frame.head(4000)
        for i in range(4):
            upload(i, frame.iloc[i * 1000:(i + 1) * 1000])
        cfg = load_config([f"paths.root={tmp_path}", *dask_overrides(
            f"s3://{bucket}/raw/flights/"), "storage=s3", f"storage.bucket={bucket}"],
            config_dir=CONF).typed
        assert cfg.storage == StorageConfig(kind="s3", bucket=bucket, prefix="prefab",
                                            s3=S3Config(endpoint_url=s3_env))
        data = ingest_partitioned.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
        assert data.uri.startswith(f"s3://{bucket}/prefab/snapshots/flights/")
        assert data.files == 4 and data.rows == frame["arr_delay"].notna().sum()
        keys = [o["Key"] for o in s3.list_objects_v2(
            Bucket=bucket, Prefix="prefab/snapshots/")["Contents"]]
        assert sum(k.endswith(".parquet") for k in keys) == 4
        report = validate_partitioned.fn(data, cfg.validate, TargetSpec.from_data(cfg.data),
                                           cfg.storage)
        assert report.passed
        # the fingerprint follows the ETags: new bytes in one file, a new fingerprint
        upload(3, frame.iloc[3000:3999])
        changed = ingest_partitioned.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
        assert changed.source_fingerprint != data.source_fingerprint
        assert changed.rows == data.rows - int(pd.notna(frame["arr_delay"].iloc[3999]))


class TestDaskEngineConfig:
    @pytest.mark.parametrize(("override", "named"), [
        ("features.split.strategy=random", "features.split.strategy"),
        ("model=random_forest", "XGBoost"),
        ("features.numeric.scale=standard", "features.numeric.scale"),
    ])
    def test_what_the_engine_cannot_do_fails_on_load(self, override: str, named: str) -> None:
        with pytest.raises(ConfigError, match=named):
            load_config(["data.engine=dask", override], config_dir=CONF)

    def test_an_unknown_engine_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="data.engine"):
            load_config(["data.engine=spark"], config_dir=CONF)

    def test_pandas_stays_the_default(self) -> None:
        cfg: Any = load_config([], config_dir=CONF).typed
        assert cfg.data.engine == "pandas"
