"""Environment variables set (or removed) for a block of code, and restored after it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def temporary_environ(values: Mapping[str, str], drop: Iterable[str] = ()) -> Iterator[None]:
    """Set ``values`` and remove ``drop`` from ``os.environ``; restore both on exit.

    Args:
        values: Variables to set for the block.
        drop: Variables to remove for the block.
    """
    dropped = tuple(drop)
    saved = {k: os.environ.get(k) for k in [*values, *dropped]}
    os.environ.update(values)
    for key in dropped:
        os.environ.pop(key, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
