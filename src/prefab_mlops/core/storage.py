"""Where bytes live: data sources and the object stores behind snapshots and the registry.

Two kinds of location are handled:

* **Data sources** (:func:`read_source`, :func:`source_fingerprint`): a local path,
  ``s3://bucket/key`` (read through a prefect-aws ``S3Bucket`` block), or
  ``pkg://package/path`` for data files shipped inside an installed package. A
  ``#member`` suffix selects one file inside a ``.tar``/``.tar.gz`` archive.
* **Object stores** (:class:`LocalObjectStore`, :class:`S3ObjectStore`): a flat
  key → bytes namespace with an atomic *create-if-absent*, on which the model
  registry and the data snapshots are built.

S3 failures that may pass (connection errors, throttling, 5xx) are raised as
:class:`~prefab_mlops.core.errors.TransientError` so that retries apply to them only.
"""

from __future__ import annotations

import fcntl
import importlib.util
import io
import os
import random
import stat
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Protocol

from prefab_mlops.core.errors import DataSourceNotFound, PrefabError, TransientError
from prefab_mlops.core.fingerprint import bytes_sha256, file_sha256, stable_hash


# ---------------------------------------------------------- storage config
# conf/storage's schema lives with the storage it configures, so the model server
# reads it without the Hydra/OmegaConf stack (Optional: OmegaConf 2.3 needs it).
@dataclass
class S3Config:
    """How to reach S3 (or an S3-speaking server) through prefect-aws blocks.

    ``credentials_block`` names a saved ``AwsCredentials`` block; without it the
    boto3 default chain (``AWS_ACCESS_KEY_ID`` ...) is used.
    """

    endpoint_url: Optional[str] = None
    region_name: str = "us-east-1"
    credentials_block: Optional[str] = None


@dataclass
class StorageConfig:
    """``conf/storage``: where snapshots and the registry live (``local`` or ``s3``)."""

    kind: str = "local"
    bucket: Optional[str] = None
    prefix: str = "prefab"
    s3: S3Config = field(default_factory=S3Config)


_TRANSIENT_S3_CODES = {
    "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
    "RequestTimeoutException", "Throttling", "ThrottlingException", "500", "502", "503", "504",
}
_NOT_FOUND_S3_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
# A conditional write lost: the object changed (If-Match) or exists (If-None-Match).
_CONFLICT_S3_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


# ------------------------------------------------------------------ locations
@dataclass(frozen=True)
class Location:
    """A parsed data location."""

    scheme: str  # "file" | "s3"
    path: str  # local filesystem path, or S3 key
    bucket: str | None = None
    member: str | None = None  # file inside a tar archive

    @property
    def display(self) -> str:
        base = f"s3://{self.bucket}/{self.path}" if self.scheme == "s3" else self.path
        return f"{base}#{self.member}" if self.member else base

    @property
    def name(self) -> str:
        return Path(self.member or self.path).name


def parse_location(uri: str, base_dir: str | Path | None = None) -> Location:
    """Parse ``uri`` into a :class:`Location`.

    Relative local paths are resolved against ``base_dir`` (the project root).

    Raises:
        DataSourceNotFound: ``pkg://`` names a package that is not installed.
    """
    uri = str(uri)
    member = None
    if "#" in uri:
        uri, member = uri.split("#", 1)
    if uri.startswith("s3://"):
        bucket, _, key = uri[5:].partition("/")
        if not bucket or not key:
            raise DataSourceNotFound(
                f"'{uri}' is not a valid S3 location.", fix="Use s3://<bucket>/<key>.")
        return Location("s3", key, bucket=bucket, member=member)
    if uri.startswith("pkg://"):
        package, _, rel = uri[6:].partition("/")
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):  # a dotted name whose parent is missing, or ""
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise DataSourceNotFound(
                f"Data location '{uri}' names package '{package}', which is not installed.",
                fix=f"pip install {package}, or point data.uri at a file.")
        root = Path(list(spec.submodule_search_locations)[0])
        return Location("file", str(root / rel), member=member)
    if uri.startswith("file://"):
        uri = uri[7:]
    path = Path(uri).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return Location("file", str(path), member=member)


# ----------------------------------------------------------------- S3 blocks
def s3_client(s3: S3Config):
    """A boto3 S3 client for ``conf/storage``'s ``s3`` settings.

    Without ``credentials_block`` the client uses boto3's default credential chain
    (``AWS_ACCESS_KEY_ID`` ..., a profile, an instance role), which is all the model
    server needs. A named prefect-aws ``AwsCredentials`` block is loaded only when
    configured, and so needs the ``[pipeline]`` extra.
    """
    if s3.credentials_block:
        from prefect_aws import AwsCredentials  # a saved Prefect block: pipeline side

        return AwsCredentials.load(s3.credentials_block).get_s3_client()
    import boto3

    return boto3.client("s3", region_name=s3.region_name, endpoint_url=s3.endpoint_url or None)


def _s3_error(exc: Exception, what: str) -> Exception:
    """Turn a botocore error into a transient or not-found prefab error."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError,
                        ReadTimeoutError, ConnectTimeoutError)):
        return TransientError(f"Cannot reach S3 for {what}: {exc}",
                              fix="Check storage.s3.endpoint_url and that the server is up; "
                              "the task retries by itself.")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _TRANSIENT_S3_CODES:
            return TransientError(f"S3 answered {code} for {what}.",
                                  fix="Transient; the task retries by itself.")
        if code in _NOT_FOUND_S3_CODES:
            return DataSourceNotFound(f"{what} does not exist (S3 {code}).",
                                      fix="Check the bucket and key in data.uri.")
        return PrefabError(f"S3 refused {what}: {code} {exc}",
                           fix="Check credentials and bucket permissions.")
    return exc


# ---------------------------------------------------------------- data reads
def read_source(loc: Location, s3: S3Config) -> bytes:
    """Read the bytes of a data location (the archive member, if one is named).

    Raises:
        DataSourceNotFound: the file, key or archive member does not exist.
        TransientError: S3 could not be reached.
    """
    if loc.scheme == "s3":
        assert loc.bucket is not None
        client = s3_client(s3)
        try:
            data = client.get_object(Bucket=loc.bucket, Key=loc.path)["Body"].read()
        except Exception as exc:  # noqa: BLE001 - mapped below
            raise _s3_error(exc, f"data location '{loc.display}'") from exc
    else:
        path = Path(loc.path)
        if not path.is_file():
            hint = "it is a directory" if path.is_dir() else "no such file"
            raise DataSourceNotFound(
                f"Data file '{loc.path}' cannot be read: {hint}.",
                fix="Fix data.uri (a local path, s3://bucket/key or pkg://package/path).")
        data = path.read_bytes()
    return member_bytes(data, loc)


def member_bytes(data: bytes, loc: Location) -> bytes:
    """The bytes to parse out of ``data``, the whole file or object at ``loc.path``.

    That is the archive member ``loc.member`` if one is named, else ``data`` itself.
    ``read_source(replace(loc, member=None), s3)`` followed by this function reads a
    location once and keeps the whole file for :func:`source_fingerprint`.

    Raises:
        DataSourceNotFound: the archive has no such member, or is not a tar archive.
    """
    if not loc.member:
        return data
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            try:
                member = tar.getmember(loc.member)  # type: ignore[arg-type]
            except KeyError:
                raise DataSourceNotFound(
                    f"Archive '{loc.path}' has no member '{loc.member}'.",
                    fix="Fix the part after '#' in data.uri.") from None
            fh = tar.extractfile(member)
            if fh is None:
                raise DataSourceNotFound(f"'{loc.display}' is not a regular file.")
            return fh.read()
    except tarfile.TarError as exc:
        raise DataSourceNotFound(
            f"'{loc.path}' is not a readable tar archive ({exc}).",
            fix="Only .tar/.tar.gz archives support the '#member' suffix.") from None


def source_fingerprint(loc: Location, s3: S3Config, data: bytes | None = None) -> str:
    """A cheap fingerprint of a data location's current content.

    Local files are hashed (sha256, streamed); S3 objects use their ETag and size,
    so a cache key never needs to download the data. For a ``#member`` location the
    whole archive is hashed, together with the member's name.

    Args:
        loc: The location (``data.uri`` parsed by :func:`parse_location`).
        s3: ``conf/storage`` ``s3``: the connection for ``s3://`` locations.
        data: The local file's bytes (the whole archive for a ``#member``
            location), when the caller has already read them: they are hashed
            instead of the file, so the fingerprint is of exactly those bytes and
            the file is not read again. Ignored for S3 locations.

    Raises:
        DataSourceNotFound: the file or S3 object does not exist.
        TransientError: S3 could not be reached.
    """
    if loc.scheme == "s3":
        assert loc.bucket is not None
        client = s3_client(s3)
        try:
            head = client.head_object(Bucket=loc.bucket, Key=loc.path)
        except Exception as exc:  # noqa: BLE001
            raise _s3_error(exc, f"data location '{loc.display}'") from exc
        return stable_hash("s3", loc.display, head.get("ETag"), head.get("ContentLength"))
    if data is not None:
        return stable_hash("file", bytes_sha256(data), loc.member)
    path = Path(loc.path)
    if not path.is_file():
        raise _no_data_file(loc)
    return stable_hash("file", file_sha256(path), loc.member)


def _no_data_file(loc: Location) -> DataSourceNotFound:
    return DataSourceNotFound(
        f"Data file '{loc.path}' does not exist.",
        fix="Fix data.uri (a local path, s3://bucket/key or pkg://package/path).")


def source_stamp(loc: Location, s3: S3Config) -> str:
    """A version stamp of a data location that reads none of its content.

    What a cache key needs to tell that the source changed, the way DVC and make do:
    for a local file its identity and status (resolved path, device, inode, size and
    the modification *and* status-change times in nanoseconds; any write, rename
    over it or ``touch -d`` moves the status-change time, which no user can set back);
    for an S3 object its ETag and size (the same as :func:`source_fingerprint`).
    Identical content under a new stamp only costs a cache miss: the content
    fingerprint computed on that miss is the same, and so is everything downstream.

    Raises:
        DataSourceNotFound: the file or S3 object does not exist.
        TransientError: S3 could not be reached.
    """
    if loc.scheme == "s3":
        return source_fingerprint(loc, s3)
    path = Path(loc.path)
    try:
        st = path.stat()
    except OSError:
        raise _no_data_file(loc) from None
    if not stat.S_ISREG(st.st_mode):
        raise _no_data_file(loc)
    return stable_hash("stat", str(path.resolve()), st.st_dev, st.st_ino, st.st_size,
                       st.st_mtime_ns, st.st_ctime_ns, loc.member)


# -------------------------------------------------------------- object stores
@dataclass(frozen=True)
class StoredObject:
    """A key of an object store and when it was last written (POSIX seconds)."""

    key: str
    modified: float


class ObjectStore(Protocol):
    """A key → bytes namespace (keys use ``/``).

    ``list`` and ``entries`` leave out hidden names (a path part starting with ``.``);
    ``partial_writes`` lists what a writer killed mid-write left behind, which no
    reader ever sees and only ``delete`` removes.
    """

    def get(self, key: str) -> bytes: ...
    def put(self, key: str, data: bytes) -> None: ...
    def put_if_absent(self, key: str, data: bytes) -> bool: ...
    def update(self, key: str, change: Callable[[bytes | None], bytes]) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def entries(self, prefix: str) -> list[StoredObject]: ...
    def partial_writes(self, prefix: str) -> list[StoredObject]: ...
    def delete(self, key: str) -> None: ...
    def uri(self, key: str) -> str: ...


# The suffix of the hidden file a local write goes through before its rename.
_PARTIAL_SUFFIX = ".tmp"


class LocalObjectStore:
    """An object store in a local directory. Every write is atomic (tmp + rename).

    A writer killed mid-write leaves its hidden ``.<name>.<random>.tmp`` file behind
    (never the key itself); :meth:`partial_writes` lists them for ``registry check``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root.resolve() not in p.parents and p != self.root.resolve():
            raise PrefabError(f"Key '{key}' escapes the store root {self.root}.")
        return p

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def _tmp(self, target: Path, data: bytes) -> Path:
        for _ in range(5):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=_PARTIAL_SUFFIX,
                                           dir=target.parent)
                break
            except FileNotFoundError:  # `delete` removed the folder once it was empty
                continue
        else:
            raise PrefabError(f"Cannot create a file in {target.parent}: the folder keeps "
                              "disappearing.", fix="Stop whatever deletes it and retry.")
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp)

    def put(self, key: str, data: bytes) -> None:
        target = self._path(key)
        os.replace(self._tmp(target, data), target)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist; atomic (``link`` fails if taken)."""
        target = self._path(key)
        tmp = self._tmp(target, data)
        try:
            os.link(tmp, target)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def update(self, key: str, change: Callable[[bytes | None], bytes]) -> bytes:
        """Atomic read-modify-write of ``key``: writes ``change(current or None)``.

        Concurrent updates of the same key (threads or processes on this machine)
        are serialized with ``flock`` on a hidden lock file next to it. ``change``
        may raise to leave the key as it is.
        """
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f".{target.name}.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                current = target.read_bytes() if target.is_file() else None
                data = change(current)
                self.put(key, data)
                return data
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        return [e.key for e in self.entries(prefix)]

    def _files(self, prefix: str, hidden: bool) -> list[StoredObject]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        out = []
        for p in base.rglob("*"):
            if p.name.startswith(".") != hidden:
                continue
            try:
                st = p.stat()  # one stat per file: its type and its write time
            except FileNotFoundError:  # removed while listing
                continue
            if stat.S_ISREG(st.st_mode):
                out.append(StoredObject(p.relative_to(self.root).as_posix(), st.st_mtime))
        return sorted(out, key=lambda e: e.key)

    def entries(self, prefix: str) -> list[StoredObject]:
        return self._files(prefix, hidden=False)

    def partial_writes(self, prefix: str) -> list[StoredObject]:
        """Hidden temporary files of writes that never finished (their writer died)."""
        return [e for e in self._files(prefix, hidden=True) if e.key.endswith(_PARTIAL_SUFFIX)]

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error if it is gone), then its folders left empty."""
        path = self._path(key)
        path.unlink(missing_ok=True)
        root = self.root.resolve()
        for parent in path.parents:
            if parent == root:
                break
            try:
                parent.rmdir()
            except OSError:  # not empty (or gone): stop climbing
                break

    def uri(self, key: str) -> str:
        return str(self._path(key))


class S3ObjectStore:
    """An object store under ``s3://bucket/prefix`` (boto3; see :func:`s3_client`).

    ``put_if_absent`` uses S3 conditional writes (``If-None-Match: *``).
    """

    def __init__(self, bucket: str, prefix: str, s3: S3Config) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = s3_client(s3)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def get(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except Exception as exc:  # noqa: BLE001
            err = _s3_error(exc, f"s3://{self.bucket}/{self._key(key)}")
            if isinstance(err, DataSourceNotFound):
                raise KeyError(key) from None
            raise err from exc

    def put(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except Exception as exc:  # noqa: BLE001
            raise _s3_error(exc, f"writing s3://{self.bucket}/{self._key(key)}") from exc

    def put_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                    IfNoneMatch="*")
            return True
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _CONFLICT_S3_CODES:
                return False
            raise _s3_error(exc, f"writing s3://{self.bucket}/{self._key(key)}") from exc
        except Exception as exc:  # noqa: BLE001
            raise _s3_error(exc, f"writing s3://{self.bucket}/{self._key(key)}") from exc

    def _holds(self, key: str, data: bytes) -> bool:
        """Whether ``key`` holds exactly ``data`` now (False if it cannot be read)."""
        try:
            obj = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            return bool(obj["Body"].read() == data)
        except Exception:  # noqa: BLE001 - unreadable: not known to hold it
            return False

    def update(self, key: str, change: Callable[[bytes | None], bytes],
               attempts: int = 20) -> bytes:
        """Atomic read-modify-write of ``key`` with S3 conditional writes.

        Reads the object and its ETag, then writes ``change(current or None)`` only
        if the object is still that version (``If-Match``), or still absent
        (``If-None-Match: *``). If another writer got in between, it reads again and
        calls ``change`` on the newer content, so no update is lost. ``change`` may
        raise to leave the key as it is.

        Raises:
            TransientError: the key kept changing for ``attempts`` tries.
        """
        from botocore.exceptions import ClientError

        where = f"s3://{self.bucket}/{self._key(key)}"
        for attempt in range(attempts):
            try:
                obj = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
                current, etag = obj["Body"].read(), obj["ETag"]
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code", "")) not in _NOT_FOUND_S3_CODES:
                    raise _s3_error(exc, where) from exc
                current, etag = None, None
            except Exception as exc:  # noqa: BLE001 - connection errors become TransientError
                raise _s3_error(exc, where) from exc
            data = change(current)
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                        **condition)
                return data
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code not in _CONFLICT_S3_CODES:
                    raise _s3_error(exc, f"writing {where}") from exc
                if self._holds(key, data):
                    # Our write landed, but its answer was lost and botocore sent it again,
                    # which the condition then refused: the update is done, not lost.
                    return data
            except Exception as exc:  # noqa: BLE001
                raise _s3_error(exc, f"writing {where}") from exc
            time.sleep(min(0.05 * 2 ** attempt, 1.0) * random.random())
        raise TransientError(f"{where} kept changing while it was being updated "
                             f"({attempts} tries).",
                             fix="Retry; if it persists, find what rewrites it so often.")

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in _NOT_FOUND_S3_CODES:
                return False
            raise _s3_error(exc, f"s3://{self.bucket}/{self._key(key)}") from exc
        except Exception as exc:  # noqa: BLE001 - connection errors become TransientError
            raise _s3_error(exc, f"s3://{self.bucket}/{self._key(key)}") from exc

    def list(self, prefix: str) -> list[str]:
        return [e.key for e in self.entries(prefix)]

    def entries(self, prefix: str) -> list[StoredObject]:
        full = self._key(prefix)
        out: list[StoredObject] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    rel = key[len(self.prefix) + 1:] if self.prefix else key
                    if not Path(rel).name.startswith("."):
                        out.append(StoredObject(rel, obj["LastModified"].timestamp()))
        except Exception as exc:  # noqa: BLE001
            raise _s3_error(exc, f"listing s3://{self.bucket}/{full}") from exc
        return sorted(out, key=lambda e: e.key)

    def partial_writes(self, prefix: str) -> list[StoredObject]:
        """Always empty: an S3 ``PutObject`` lands whole or not at all."""
        return []

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:  # noqa: BLE001
            raise _s3_error(exc, f"deleting s3://{self.bucket}/{self._key(key)}") from exc

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"


def object_store(storage: StorageConfig, local_root: str | Path, area: str) -> ObjectStore:
    """The store for ``area`` (``registry`` or ``snapshots``).

    Local storage uses ``local_root`` as is; S3 storage uses
    ``s3://<bucket>/<prefix>/<area>``.
    """
    if storage.kind == "s3":
        assert storage.bucket
        return S3ObjectStore(storage.bucket, f"{storage.prefix}/{area}", storage.s3)
    return LocalObjectStore(local_root)


def new_token() -> str:
    """A random token for staging keys."""
    return uuid.uuid4().hex


__all__ = [
    "Location", "LocalObjectStore", "ObjectStore", "S3ObjectStore", "StoredObject",
    "bytes_sha256",
    "member_bytes", "new_token", "object_store", "parse_location", "read_source",
    "s3_client", "source_fingerprint", "source_stamp",
]
