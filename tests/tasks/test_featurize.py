"""tasks/featurize.py through ``featurize.fn``: the hash split (a row keeps its split
when the table grows, is sampled or reordered), seeded/stratified/time splits, a
preprocessor fitted on the train split only, and each categorical encoding, on real
flights rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefab_mlops.config import PipelineConfig, SplitConfig, TargetSpec
from prefab_mlops.core.errors import DataError
from prefab_mlops.core.fingerprint import row_hashes
from prefab_mlops.core.manifest import SplitRecord
from prefab_mlops.core.schema import CATEGORY_CAP, ColumnKind, ColumnSpec
from prefab_mlops.tasks.featurize import FeatureSet, featurize, split_rows
from prefab_mlops.tasks.ingest import Dataset, prepare

NUMERIC = ["month", "day", "sched_dep_time", "sched_arr_time", "distance", "flight"]
CONF = Path(__file__).resolve().parents[2] / "conf"


def flights(cfg: PipelineConfig, frame: pd.DataFrame) -> Dataset:
    rows = prepare(frame, cfg.data, cfg.seed, "flights.csv")
    return Dataset.of(rows, name="flights", fingerprint=f"fp{len(rows)}",
                      source="flights.csv", source_fingerprint="src", snapshot_uri=None,
                      target="delayed", time_column="time_hour")


def run(cfg: PipelineConfig, data: Dataset, seed: int | None = None) -> FeatureSet:
    return featurize.fn(data, cfg.features, TargetSpec.from_data(cfg.data),
                        cfg.seed if seed is None else seed)


def positions(cfg: PipelineConfig, data: Dataset, seed: int):
    y = data.frame[cfg.data.target].to_numpy(dtype="int64")
    return split_rows(data.frame, y, cfg.features, seed, data.time_column)


def parts(cfg: PipelineConfig, frame: pd.DataFrame, seed: int | None = None) -> np.ndarray:
    """The split of each row of ``frame``: 0 train, 1 validation, 2 test."""
    y = frame[cfg.data.target].to_numpy(dtype="int64")
    out = np.full(len(frame), -1)
    for part, rows in enumerate(split_rows(frame, y, cfg.features,
                                           cfg.seed if seed is None else seed, "time_hour")):
        out[rows] = part
    assert (out >= 0).all()
    return out


@pytest.fixture()
def rows(config, flights_frame: pd.DataFrame) -> pd.DataFrame:
    """The 20,000-row flights slice as ingest prepares it (19,4xx rows with a target)."""
    return flights(config(), flights_frame).frame


class TestHashSplit:
    def test_is_the_default(self, config) -> None:
        assert SplitConfig().strategy == "hash" and SplitConfig().key == []
        assert config().features.split.strategy == "hash"

    def test_sizes_match_test_and_valid_size(self, config, rows: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=hash")
        n = len(rows)
        counts = np.bincount(parts(cfg, rows), minlength=3) / n
        # binomial noise: one standard deviation is 0.003 here
        assert abs(counts[2] - 0.2) < 0.015 and abs(counts[1] - 0.1) < 0.015
        other = config("features.split.strategy=hash", "features.split.test_size=0.3",
                       "features.split.valid_size=0.05")
        counts = np.bincount(parts(other, rows), minlength=3) / n
        assert abs(counts[2] - 0.3) < 0.015 and abs(counts[1] - 0.05) < 0.015

    def test_a_row_keeps_its_split_when_rows_are_appended(
            self, config, rows: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=hash")
        old = rows.iloc[:8000]
        grown = pd.concat([old, rows.iloc[8000:]], ignore_index=True)
        np.testing.assert_array_equal(parts(cfg, grown)[:8000], parts(cfg, old))

    def test_a_row_keeps_its_split_when_the_table_is_sampled(
            self, config, flights_frame: pd.DataFrame, rows: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=hash")
        sampled = flights(config("data.sample_rows=3000"), flights_frame).frame  # prepare only
        assert len(sampled) == 3000
        whole = pd.Series(parts(cfg, rows), index=row_hashes(rows))
        np.testing.assert_array_equal(parts(cfg, sampled),
                                      whole.loc[row_hashes(sampled)].to_numpy())

    def test_a_row_keeps_its_split_when_rows_are_shuffled_or_removed(
            self, config, rows: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=hash")
        before = parts(cfg, rows)
        order = np.random.default_rng(0).permutation(len(rows))
        np.testing.assert_array_equal(parts(cfg, rows.iloc[order]), before[order])
        kept = np.flatnonzero(rows["carrier"].to_numpy() != "UA")
        np.testing.assert_array_equal(parts(cfg, rows.iloc[kept]), before[kept])

    def test_a_row_keeps_its_split_when_a_column_is_read_as_another_dtype(
            self, config, rows: pd.DataFrame) -> None:
        # one missing value in an appended row turns an int column into float
        cfg = config("features.split.strategy=hash")
        recast = rows.assign(distance=rows["distance"].astype("float64"),
                             carrier=rows["carrier"].astype("category"),
                             time_hour=rows["time_hour"].dt.as_unit("ns"))
        np.testing.assert_array_equal(parts(cfg, recast), parts(cfg, rows))

    def test_another_seed_gives_another_split(self, config, rows: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=hash")
        a, b = parts(cfg, rows, 42), parts(cfg, rows, 43)
        test_a, test_b = a == 2, b == 2
        # independent splits share about 20% of their test rows, not all of them
        assert 0.1 < (test_a & test_b).sum() / test_a.sum() < 0.3
        assert abs(test_b.mean() - 0.2) < 0.015
        np.testing.assert_array_equal(parts(cfg, rows, 42), a)

    def test_identical_rows_share_a_split(self, config, rows: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=hash")
        doubled = pd.concat([rows, rows.iloc[::3]], ignore_index=True)
        split = parts(cfg, doubled)
        np.testing.assert_array_equal(split[len(rows):], split[: len(rows)][::3])

    def test_key_columns_alone_place_a_row(self, config, rows: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=hash", "features.split.key=[carrier,origin]")
        split = parts(cfg, rows)
        per_group = pd.Series(split).groupby([rows["carrier"], rows["origin"]]).nunique()
        assert (per_group == 1).all() and len(per_group) > 20
        assert len(set(split)) == 3
        # other columns do not move a row
        moved = rows.assign(distance=rows["distance"] + 1, delayed=~rows["delayed"])
        np.testing.assert_array_equal(parts(cfg, moved), split)
        whole_rows = config("features.split.strategy=hash")
        assert not np.array_equal(parts(whole_rows, moved), parts(whole_rows, rows))

    def test_split_info_records_strategy_key_seed_and_sizes(
            self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=hash", "features.split.key=[flight,time_hour]")
        fs = run(cfg, flights(cfg, flights_frame))
        assert fs.split_info == SplitRecord(strategy="hash", key=["flight", "time_hour"],
                                            seed=42, test_size=0.2, valid_size=0.1,
                                            train_rows=len(fs.train), valid_rows=len(fs.valid),
                                            test_rows=len(fs.test))
        data = flights(cfg, flights_frame)
        whole_rows = config("features.split.strategy=hash")
        assert run(whole_rows, data).split_info.key == list(data.frame.columns)

    def test_each_split_carries_the_row_hashes_of_its_inputs(
            self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=hash")
        fs = run(cfg, flights(cfg, flights_frame))
        for part in (fs.train, fs.valid, fs.test):
            assert part.row_hash.dtype == np.uint64
            np.testing.assert_array_equal(part.row_hash, row_hashes(part.X))
        assert not np.isin(fs.test.row_hash, fs.train.row_hash).any()

    def test_unknown_key_column_is_named(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=hash")
        cfg.features.split.key = ["flight", "tail_number"]  # data.columns not checked here
        with pytest.raises(DataError) as err:
            run(cfg, flights(cfg, flights_frame))
        assert "features.split.key" in str(err.value) and "['tail_number']" in str(err.value)
        assert "'carrier'" in str(err.value)  # lists the columns it has


class TestSeededSplit:
    def test_same_seed_same_rows(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=random")
        data = flights(cfg, flights_frame)
        a, b = run(cfg, data), run(cfg, data)
        for part in ("train", "valid", "test"):
            pd.testing.assert_frame_equal(getattr(a, part).X, getattr(b, part).X)
            np.testing.assert_array_equal(getattr(a, part).y, getattr(b, part).y)
        assert a.fingerprint == b.fingerprint
        assert a.split_info == SplitRecord(strategy="random", train_rows=len(a.train),
                                           valid_rows=len(a.valid), test_rows=len(a.test),
                                           seed=cfg.seed, test_size=0.2, valid_size=0.1)

    def test_another_seed_other_rows(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=random")
        data = flights(cfg, flights_frame)
        tr, va, te = positions(cfg, data, 42)
        tr2, _, te2 = positions(cfg, data, 43)
        assert len(te) == len(te2)
        assert not np.array_equal(te, te2)
        assert run(cfg, data, 43).fingerprint != run(cfg, data, 42).fingerprint

    def test_parts_are_disjoint_and_cover_every_row(self, config,
                                                    flights_frame: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=random")
        data = flights(cfg, flights_frame)
        n = len(data.frame)
        tr, va, te = positions(cfg, data, cfg.seed)
        assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(n))
        assert abs(len(te) / n - 0.2) < 0.001 and abs(len(va) / n - 0.1) < 0.001

    def test_no_validation_split_when_size_is_zero(self, config,
                                                   flights_frame: pd.DataFrame) -> None:
        cfg = config("features.split.valid_size=0")
        fs = run(cfg, flights(cfg, flights_frame))
        assert len(fs.valid) == 0 and fs.Xt_valid is None
        assert len(fs.train) + len(fs.test) == len(flights_frame.dropna(subset=["arr_delay"]))


class TestStratifiedSplit:
    def test_class_ratio_kept_within_one_percent(self, config,
                                                 flights_frame: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=stratified")
        data = flights(cfg, flights_frame)
        fs = run(cfg, data)
        overall = data.frame["delayed"].mean()
        for part in (fs.train, fs.valid, fs.test):
            assert abs(part.y.mean() - overall) < 0.01
        assert fs.classes == [False, True]
        assert set(np.unique(fs.train.y)) == {0, 1}


class TestTimeSplit:
    def test_newest_rows_are_the_test_set(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=time")
        data = flights(cfg, flights_frame)
        fs = run(cfg, data)
        t_train, t_valid, t_test = (p.X["time_hour"] for p in (fs.train, fs.valid, fs.test))
        assert t_train.max() <= t_valid.min()
        assert t_valid.max() <= t_test.min()
        assert t_test.max() == data.frame["time_hour"].max()
        assert fs.split_info.test_from == str(t_test.min())
        assert len(fs.test) == round(len(data.frame) * 0.2)

    def test_time_split_ignores_the_seed(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=time")
        data = flights(cfg, flights_frame)
        pd.testing.assert_frame_equal(run(cfg, data, 1).test.X, run(cfg, data, 2).test.X)


class TestPreprocessorFitOnTrainOnly:
    def test_scaler_mean_is_the_train_mean(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config("features=linear")
        assert cfg.features.numeric.scale == "standard"
        data = flights(cfg, flights_frame)
        fs = run(cfg, data)
        scaler = fs.preprocessor.named_transformers_["num"].named_steps["scale"]
        train_mean = fs.train.X[NUMERIC].mean().to_numpy()
        full_mean = data.frame[NUMERIC].mean().to_numpy()
        np.testing.assert_allclose(scaler.mean_, train_mean, rtol=1e-12)
        assert not np.allclose(scaler.mean_, full_mean, rtol=1e-6, atol=0)
        assert scaler.n_samples_seen_ == len(fs.train)
        Xt = fs.Xt_train[:, : len(NUMERIC)]
        np.testing.assert_allclose(Xt.mean(axis=0), 0, atol=1e-9)
        np.testing.assert_allclose(Xt.std(axis=0), 1, atol=1e-9)

    def test_imputer_uses_the_train_median(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config("features.split.strategy=time")
        data = flights(cfg, flights_frame)
        frame = data.frame.assign(distance=data.frame["distance"].astype("float64"))
        frame.loc[frame.index[::50], "distance"] = np.nan
        fs = run(cfg, data.with_frame(frame))
        imputer = fs.preprocessor.named_transformers_["num"].named_steps["impute"]
        col = NUMERIC.index("distance")
        assert imputer.statistics_[col] == fs.train.X["distance"].median()
        assert fs.train.X["distance"].median() != fs.test.X["distance"].median()
        missing = fs.train.X["distance"].isna().to_numpy()
        assert missing.sum() > 0
        assert set(fs.Xt_train[missing, col]) == {imputer.statistics_[col]}


class TestEncodings:
    def test_ordinal_codes_follow_sorted_train_categories(
            self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        fs = run(cfg, flights(cfg, flights_frame))
        enc = fs.preprocessor.named_transformers_["cat"].named_steps["encode"]
        cats = sorted(fs.train.X["carrier"].unique())
        assert enc.categories_[0].tolist() == cats
        col = fs.feature_names.index("carrier")
        expected = fs.train.X["carrier"].map({c: i for i, c in enumerate(cats)})
        np.testing.assert_array_equal(fs.Xt_train[:, col], expected.to_numpy(dtype="float32"))
        assert fs.feature_names == [*NUMERIC, "carrier", "origin", "dest",
                                    "time_hour_dayofweek", "time_hour_hour"]

    def test_onehot_has_one_column_per_category(self, config,
                                                flights_frame: pd.DataFrame) -> None:
        cfg = config("features.categorical.encoding=onehot")
        fs = run(cfg, flights(cfg, flights_frame))
        names = ["origin_EWR", "origin_JFK", "origin_LGA"]
        idx = [fs.feature_names.index(n) for n in names]
        expected = (fs.train.X["origin"].to_numpy()[:, None]
                    == np.array(["EWR", "JFK", "LGA"])).astype("float32")
        np.testing.assert_array_equal(fs.Xt_train[:, idx], expected)
        n_carriers = fs.train.X["carrier"].nunique()
        assert sum(n.startswith("carrier_") for n in fs.feature_names) == n_carriers

    def test_onehot_min_frequency_groups_rare_carriers(self, config,
                                                       flights_frame: pd.DataFrame) -> None:
        cfg = config("features=linear")
        assert cfg.features.categorical.min_frequency == 100
        fs = run(cfg, flights(cfg, flights_frame))
        counts = fs.train.X["carrier"].value_counts()
        rare, common = counts[counts < 100].index, counts[counts >= 100].index
        assert len(rare) > 0
        carrier_cols = {n for n in fs.feature_names if n.startswith("carrier_")}
        assert carrier_cols == {f"carrier_{c}" for c in common} | {"carrier_infrequent_sklearn"}
        col = fs.feature_names.index("carrier_infrequent_sklearn")
        assert fs.Xt_train[:, col].sum() == counts[rare].sum()

    def test_native_gives_pandas_categories(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config("features.categorical.encoding=native")
        fs = run(cfg, flights(cfg, flights_frame))
        assert fs.native_categorical is True
        Xt = fs.Xt_train
        assert isinstance(Xt, pd.DataFrame)
        assert list(Xt.columns) == fs.feature_names
        assert isinstance(Xt["carrier"].dtype, pd.CategoricalDtype)
        assert list(Xt["carrier"].cat.categories) == sorted(fs.train.X["carrier"].unique())
        assert Xt["carrier"].astype(str).tolist() == fs.train.X["carrier"].tolist()
        assert Xt["distance"].tolist() == fs.train.X["distance"].astype(float).tolist()

    def test_datetime_parts(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        fs = run(cfg, flights(cfg, flights_frame))
        t = fs.train.X["time_hour"]
        for part in ("dayofweek", "hour"):
            col = fs.feature_names.index(f"time_hour_{part}")
            np.testing.assert_array_equal(fs.Xt_train[:, col], getattr(t.dt, part).to_numpy())

    def test_input_schema_describes_raw_columns(self, config,
                                                flights_frame: pd.DataFrame) -> None:
        cfg = config()
        fs = run(cfg, flights(cfg, flights_frame))
        assert fs.input_schema.names == (*NUMERIC, "carrier", "origin", "dest", "time_hour")
        assert fs.input_schema["origin"] == ColumnSpec(
            "origin", ColumnKind.CATEGORICAL, "str", ("EWR", "JFK", "LGA"), capped=False)
        assert fs.input_schema["distance"] == ColumnSpec("distance", ColumnKind.NUMERIC, "int64")
        assert fs.input_schema["time_hour"].kind is ColumnKind.DATETIME
        assert str(fs.input_schema["time_hour"].tz) == "UTC"

    def test_categories_are_capped_and_marked(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        frame = flights_frame.assign(dest=[f"D{i:05d}" for i in range(len(flights_frame))])
        data = flights(cfg, frame)
        dest = run(cfg, data).input_schema["dest"]
        assert len(dest.categories) == CATEGORY_CAP and dest.capped
        assert dest.categories == tuple(sorted(data.frame["dest"].unique())[:CATEGORY_CAP])
        assert dest.known_categories is None

    def test_passed_through_columns_are_inputs_of_their_dtype_kind(
            self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config("features.remainder=passthrough", "features.numeric.columns=[month,day]")
        fs = run(cfg, flights(cfg, flights_frame))
        passed = ["sched_dep_time", "sched_arr_time", "flight", "distance", "hour"]
        assert fs.input_schema.names == tuple(fs.train.X.columns) == (
            "month", "day", "carrier", "origin", "dest", "time_hour", *passed)
        for c in passed:
            assert fs.input_schema[c] == ColumnSpec(c, ColumnKind.NUMERIC, "int64",
                                                    remainder=True), c
        assert not fs.input_schema["month"].remainder


class TestDroppedColumns:
    def test_drop_keeps_a_column_out_of_a_passthrough_model(
            self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config("features.remainder=passthrough", "features.drop=[hour,time_hour]",
                     "features.datetime.columns=[]")
        fs = run(cfg, flights(cfg, flights_frame))
        assert "hour" not in fs.train.X.columns and "time_hour" not in fs.train.X.columns
        assert fs.feature_names == [*NUMERIC, "carrier", "origin", "dest"]


class TestUnknownCategories:
    @pytest.mark.parametrize("encoding", ["ordinal", "onehot", "native"])
    def test_unseen_values_do_not_crash(self, config, flights_frame: pd.DataFrame,
                                        encoding: str) -> None:
        cfg = config(f"features.categorical.encoding={encoding}")
        fs = run(cfg, flights(cfg, flights_frame))
        X = fs.test.X.head(50).assign(carrier="ZZ", dest="XXX")
        out = fs.preprocessor.transform(X)
        assert len(out) == 50
        if encoding == "ordinal":
            col = fs.feature_names.index("carrier")
            assert set(out[:, col]) == {-1.0}
        elif encoding == "onehot":
            cols = [i for i, n in enumerate(fs.feature_names) if n.startswith("carrier_")]
            assert out[:, cols].sum() == 0
        else:
            assert out["carrier"].isna().all() and out["dest"].isna().all()
            assert out["origin"].notna().all()

    def test_missing_category_values_are_imputed(self, config,
                                                 flights_frame: pd.DataFrame) -> None:
        cfg = config()
        fs = run(cfg, flights(cfg, flights_frame))
        X = fs.test.X.head(10).copy()
        X["origin"] = pd.Series([None] * 10, dtype="object")
        col = fs.feature_names.index("origin")
        assert set(fs.preprocessor.transform(X)[:, col]) == {-1.0}


class TestFeaturizeBadInput:
    def test_missing_feature_column_is_named(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        data = flights(cfg, flights_frame)
        data = data.with_frame(data.frame.drop(columns=["distance"]))
        with pytest.raises(DataError) as err:
            run(cfg, data)
        assert "['distance']" in str(err.value) and "'flights'" in str(err.value)
        assert "conf/features" in err.value.fix

    def test_missing_target_is_named(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        data = flights(cfg, flights_frame)
        data = data.with_frame(data.frame.drop(columns=["delayed"]))
        with pytest.raises(DataError) as err:
            run(cfg, data)
        assert "['delayed']" in str(err.value)

    def test_input_frame_is_not_modified(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config("features=linear")
        data = flights(cfg, flights_frame)
        before = data.frame.copy()
        run(cfg, data)
        pd.testing.assert_frame_equal(data.frame, before)
