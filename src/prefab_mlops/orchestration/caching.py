"""A cross-run cache policy keyed on lineage fingerprints.

Prefect's default policy includes the flow run id and so never hits across runs.
:class:`LineagePolicy` keys a task on

* the task's source code (Prefect's ``TASK_SOURCE``),
* each input's ``fingerprint`` when it has one (datasets, feature sets, models carry
  the fingerprint of what produced them, so a DataFrame is never hashed), and
* the plain value of every other input (the task's config subtree, the seed), and
* optionally an *extra* key computed from the inputs, e.g. the content hash of
  the data file an ingest task will read.

Changing a model hyperparameter therefore changes the key of ``train`` and of the
tasks after it, but not of ``ingest``/``validate``/``featurize``.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import cloudpickle
from prefect.cache_policies import CachePolicy, TaskSource
from prefect.serializers import Serializer
from pydantic import Field

from prefab_mlops.core.errors import PrefabError
from prefab_mlops.core.fingerprint import stable_hash
from prefab_mlops.orchestration.payloads import Deferred, Offload, write_value


@dataclass
class LineagePolicy(CachePolicy):
    """Cache key = task source + input fingerprints/values (+ an optional extra key)."""

    extra: Callable[[dict[str, Any]], str] | None = None

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        source = TaskSource().compute_key(task_ctx, inputs, flow_parameters, **kwargs)
        try:
            extra = self.extra(inputs) if self.extra else None
        except PrefabError:
            # e.g. a data file that is not there: no key, no caching; the task itself
            # then fails with that error, named, instead of a cache-key error
            return None
        return stable_hash(source, inputs, extra)


class _CachePickler(cloudpickle.Pickler):
    """cloudpickle that stores payload values (:mod:`prefab_mlops.orchestration.payloads`) apart."""

    def __init__(self, file: io.BytesIO, payload_dir: Path | None) -> None:
        super().__init__(file, protocol=5)
        self._payload_dir = payload_dir

    def persistent_id(self, obj: Any) -> tuple[str, str, int] | None:  # noqa: D102
        kind = type(obj)
        if kind is Deferred:  # read from the cache and never loaded: same file again
            return (_PAYLOAD_ID, obj.path, obj.size)
        if kind is Offload and self._payload_dir is not None:
            ref = write_value(self._payload_dir, obj.value)
            return (_PAYLOAD_ID, ref.path, ref.size)
        return None


class _CacheUnpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Deferred:  # noqa: D102
        if isinstance(pid, tuple) and len(pid) == 3 and pid[0] == _PAYLOAD_ID:
            return Deferred(pid[1], pid[2])
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


_PAYLOAD_ID = "prefab-payload"


class RawPickleSerializer(Serializer):
    """cloudpickle bytes as they are, for result files whose metadata lives elsewhere.

    Prefect's ``pickle`` serializer wraps the pickle in base64 so that it fits inside
    a JSON result record. When the record's metadata is kept in its own file
    (``key_storage``, as :func:`prefab_mlops.orchestration.runtime.configure` does for a
    local result
    directory), the result file holds only the serializer's bytes, and base64 is pure
    cost: a third more disk, an encode on every cache write, a decode on every hit,
    and a second full-size copy in memory (about 1 GB at 3.4M rows).

    With ``payload_dir`` set, every :class:`~prefab_mlops.orchestration.payloads.Payload` value in
    the result goes to a file of its own in that directory, and a cache hit loads it
    only when the code reads it (see :mod:`prefab_mlops.orchestration.payloads`).

    Never use it where the metadata is stored *with* the result (a single JSON
    record): raw bytes cannot go into JSON.
    """

    type: str = Field(default="prefab-raw-pickle", frozen=True)
    payload_dir: Optional[str] = None  # noqa: UP045 - pydantic field on py3.11

    def dumps(self, obj: Any) -> bytes:
        buf = io.BytesIO()
        _CachePickler(buf, Path(self.payload_dir) if self.payload_dir else None).dump(obj)
        return buf.getvalue()

    def loads(self, blob: bytes) -> Any:
        return _CacheUnpickler(io.BytesIO(blob)).load()
