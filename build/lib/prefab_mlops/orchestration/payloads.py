"""Big values of task results that the result cache keeps apart and loads on first use.

A fully cached rerun hands each heavy task's result on to the next task only to
compute that task's cache key (from fingerprints) and, at the end, to read a few
facts (row counts, split sizes, the model's lineage). Loading the data frames, the
transformed matrices and the fitted booster of every cached result is then wasted
work that grows with the data: 85 MB of pickles per rerun for the flights table,
850 MB at ten times its size.

A :class:`Payload` holds those big values for a task result (``Dataset.frame``,
the splits and matrices of a ``FeatureSet``, a ``TrainedModel``'s pipeline):

* In an ordinary pickle (or a deep copy) a payload carries its values inline, so
  results stay self-contained everywhere else.
* :class:`prefab_mlops.orchestration.caching.RawPickleSerializer` writes each value to a file of
  its own next to the result and records only a reference. When the result is
  read back (a cache hit), each value stays on disk until the code reads it.

Prefect walks task parameters and results recursively through dataclasses, lists
and dicts (to resolve futures and link results to task runs). A payload is none of
these, so that walk never loads a value either.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle

from prefab_mlops.core.errors import CacheError


def _inline(value: Any) -> Any:
    return value


class Offload:
    """A payload value on its way into a pickle.

    The cache's pickler stores it in a file of its own; any other pickler keeps the
    value inline (``__reduce__`` unwraps it).
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return (_inline, (self.value,))


@dataclass(frozen=True)
class Deferred:
    """A payload value stored at ``path`` (``size`` bytes) and not read yet."""

    path: str
    size: int

    def load(self) -> Any:
        """Read and unpickle the value.

        Raises:
            CacheError: the file is gone or does not have the recorded size.
        """
        fix = ("Run again with --refresh-cache (orchestration.cache.refresh=true), or "
               "delete the result cache directory.")
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise CacheError(f"A cached result refers to {self.path}, which no longer "
                             "exists (was part of the cache directory deleted?).",
                             fix=fix) from None
        with fh:
            size = os.fstat(fh.fileno()).st_size
            if size != self.size:
                raise CacheError(f"Cached value {self.path} has {size} bytes; "
                                 f"{self.size} were written.", fix=fix)
            # unpickled from the file: big arrays are read into place, not copied
            return cloudpickle.load(fh)

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        # Any pickler but the cache's: read the value now and keep it inline.
        return (_inline, (self.load(),))


def write_value(directory: Path, value: Any) -> Deferred:
    """Pickle ``value`` into a new file in ``directory``, atomically."""
    data = cloudpickle.dumps(value, protocol=5)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.pkl"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return Deferred(str(path), len(data))


class Payload:
    """Named big values of one task result; each is loaded on first access.

    Args:
        **values: The values, e.g. ``Payload(frame=df)``.
    """

    def __init__(self, **values: Any) -> None:
        self._values: dict[str, Any] = dict(values)

    def __getitem__(self, name: str) -> Any:
        value = self._values[name]
        if isinstance(value, Deferred):
            value = self._values[name] = value.load()
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def loaded(self, name: str) -> bool:
        """Whether ``name`` is in memory (not waiting on disk)."""
        return not isinstance(self._values[name], Deferred)

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        state = {k: v if isinstance(v, Deferred) or v is None else Offload(v)
                 for k, v in self._values.items()}
        return (_restore, (state,))

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={'<on disk>' if not self.loaded(k) else type(v).__name__}"
                          for k, v in self._values.items())
        return f"Payload({parts})"


def _restore(state: dict[str, Any]) -> Payload:
    return Payload(**state)
