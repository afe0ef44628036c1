"""The model file's bytes: a pickle that depends on the model's value alone.

``pickle.dumps`` writes an object that two places share once and refers back to it
(a memo reference), but writes two equal objects that happen to be distinct twice. So
the bytes of the same fitted pipeline depend on the history of the process that
pickled it: whether a string such as ``'remainder'`` was interned, cached or copied
along the way. A set's order depends on the process's hash seed too. A model trained
again from its record in a fresh process (``prefab reproduce``) then has another
sha256, and the registry's byte-identical dedup misses it.

:func:`dumps_model` writes a standard pickle (any ``pickle.loads`` reads it) in which
equal strings, bytes and numpy dtypes are written once, and set members in a sorted
order, so equal models give equal bytes in any process, and a model loaded and written
again gives the bytes it was loaded from.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

import numpy as np

PROTOCOL = pickle.HIGHEST_PROTOCOL


def _ordered(items: set[Any] | frozenset[Any]) -> list[Any]:
    """A set's members in an order that does not depend on the hash seed."""
    try:
        return sorted(items)
    except TypeError:  # mixed or unorderable members: order by type, then text
        return sorted(items, key=lambda item: (type(item).__qualname__, repr(item)))


class _CanonicalPickler(pickle._Pickler):  # the Python pickler: its hooks are overridable
    """A pickler that memoizes strings, bytes and dtypes by value and writes sets sorted."""

    def __init__(self, file: BinaryIO, protocol: int) -> None:
        super().__init__(file, protocol)
        self._atoms: dict[tuple[type, Any], Any] = {}

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        kind = type(obj)
        if kind is str or kind is bytes:
            obj = self._atoms.setdefault((kind, obj), obj)
        elif isinstance(obj, np.dtype):  # one object per dtype in a process, not after a load
            obj = self._atoms.setdefault((np.dtype, pickle.dumps(obj, PROTOCOL)), obj)
        super().save(obj, save_persistent_id)

    def save_set(self, obj: set[Any]) -> None:
        self.write(pickle.EMPTY_SET)
        self.memoize(obj)
        items = _ordered(obj)
        for start in range(0, len(items), self._BATCHSIZE):  # type: ignore[attr-defined]
            self.write(pickle.MARK)
            for item in items[start:start + self._BATCHSIZE]:  # type: ignore[attr-defined]
                self.save(item)
            self.write(pickle.ADDITEMS)

    def save_frozenset(self, obj: frozenset[Any]) -> None:
        self.save_reduce(frozenset, (_ordered(obj),), obj=obj)

    dispatch = {**pickle._Pickler.dispatch, set: save_set,  # type: ignore[attr-defined]
                frozenset: save_frozenset}


def dumps_model(model: Any) -> bytes:
    """``model`` as pickle bytes that are equal for equal models in any process.

    Example:
        >>> a, b = "".join(["remain", "der"]), "".join(["remain", "der"])
        >>> dumps_model([a, a]) == dumps_model([a, b])
        True
    """
    buffer = io.BytesIO()
    _CanonicalPickler(buffer, PROTOCOL).dump(model)
    return buffer.getvalue()
