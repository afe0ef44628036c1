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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle
from prefect.cache_policies import CachePolicy, TaskSource
from prefect.serializers import Serializer
from pydantic import Field

from prefab_core.fingerprint import stable_hash


@dataclass
class LineagePolicy(CachePolicy):
    """Cache key = task source + input fingerprints/values (+ an optional extra key)."""

    extra: Callable[[dict[str, Any]], str] | None = None

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any],
                    flow_parameters: dict[str, Any], **kwargs: Any) -> str | None:
        source = TaskSource().compute_key(task_ctx, inputs, flow_parameters, **kwargs)
        extra = self.extra(inputs) if self.extra else None
        return stable_hash(source, inputs, extra)


class RawPickleSerializer(Serializer):
    """cloudpickle bytes as they are, for result files whose metadata lives elsewhere.

    Prefect's ``pickle`` serializer wraps the pickle in base64 so that it fits inside
    a JSON result record. When the record's metadata is kept in its own file
    (``key_storage``, as :func:`prefab_core.runtime.configure` does for a local result
    directory), the result file holds only the serializer's bytes, and base64 is pure
    cost: a third more disk, an encode on every cache write, a decode on every hit,
    and a second full-size copy in memory (about 1 GB at 3.4M rows).

    Never use it where the metadata is stored *with* the result (a single JSON
    record): raw bytes cannot go into JSON.
    """

    type: str = Field(default="prefab-raw-pickle", frozen=True)

    def dumps(self, obj: Any) -> bytes:
        return cloudpickle.dumps(obj, protocol=5)

    def loads(self, blob: bytes) -> Any:
        return cloudpickle.loads(blob)
