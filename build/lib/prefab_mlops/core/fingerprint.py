"""Content fingerprints: stable hashes that identify data, configs and code.

A fingerprint is a short hex digest that changes whenever anything that could
change a result changes. Task outputs carry the fingerprint of what produced them
(inputs + config subtree + task code), so downstream cache keys never need to hash
a large DataFrame, and lineage is recorded with every registered model.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_CHUNK = 1 << 20


def _canonical(obj: Any) -> Any:
    fp = getattr(obj, "fingerprint", None)
    if isinstance(fp, str):
        return {"__fp__": fp}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [_canonical(v) for v in obj]
        return sorted(items, key=repr) if isinstance(obj, (set, frozenset)) else items
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, (Path, _dt.date, _dt.datetime)):
        return str(obj)
    if isinstance(obj, np.generic):
        return _canonical(obj.item())
    if isinstance(obj, bytes):
        return {"__bytes__": hashlib.sha256(obj).hexdigest()}
    raise TypeError(
        f"Cannot fingerprint a {type(obj).__name__}. Give it a `fingerprint` attribute "
        "or pass plain values/dataclasses."
    )


def stable_hash(*parts: Any) -> str:
    """A 32-hex-digit digest of ``parts`` that is stable across processes and runs."""
    payload = json.dumps(_canonical(list(parts)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def bytes_sha256(data: bytes) -> str:
    """Full sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    """Full sha256 hex digest of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def code_hash(fn: Callable[..., Any]) -> str:
    """Hash of a function's source code (falls back to its bytecode)."""
    fn = getattr(fn, "fn", fn)  # a Prefect task: hash the wrapped function
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        src = repr(getattr(fn, "__code__", fn).co_code)
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def lineage(fn: Callable[..., Any], *parts: Any) -> str:
    """Fingerprint of what ``fn`` produces from ``parts``: its code plus its inputs.

    Args:
        fn: The task function that produces the output.
        *parts: Its inputs (fingerprinted objects, config dataclasses, plain values).
    """
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
    return stable_hash(name, code_hash(fn), *parts)
