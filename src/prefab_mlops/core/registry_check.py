"""Check a model registry's consistency, and repair what a killed writer left behind.

``prefab registry check [MODEL] [--repair]`` is a thin wrapper around
:func:`check_registry` and :func:`repair_registry`. For every model it verifies:

* every manifest parses, names its own model and version, its files exist and the
  model file matches its sha256;
* every alias points at an existing version (its history too), carries the event
  of its last move, and every earlier move of it has its event file (``seq`` 1..N);
* the lineage and sha256 indexes: each entry names a version of that lineage (of
  those model bytes), the checkpoint is not past the last version, and every version
  up to it is indexed;
* nothing is left of interrupted writes: blob folders that no manifest references
  and (local store) hidden ``.tmp`` files, once older than a grace period.

Not problems, because the registry derives them (see ``core.registry``): a version
above the lineage checkpoint that is not indexed yet, and an alias's last move whose
event file is not written yet. :func:`repair_registry` writes them anyway.

Repair only removes what no manifest references and rebuilds what manifests and
alias files determine: it never writes or removes a complete version's manifest or
files. The grace period keeps it from removing the blobs of a registration still in
flight; a registration slower than the grace period would lose its files, so keep
it well above the slowest upload (the default is an hour).
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from prefab_mlops.core.errors import PrefabError
from prefab_mlops.core.fingerprint import bytes_sha256
from prefab_mlops.core.manifest import ModelVersion
from prefab_mlops.core.registry import (
    LINEAGE_CHECKPOINT,
    AliasState,
    ModelRegistry,
    alias_key,
    blobs_prefix,
    event_key,
    lineage_key,
    sha256_key,
)
from prefab_mlops.core.storage import StoredObject

#: Seconds an unreferenced blob folder or a ``.tmp`` file must have been left alone
#: before it counts as orphaned (``prefab registry check --grace``).
DEFAULT_GRACE_S = 3600.0

# The folders a model's keys live in; a top-level name with none of them is not a model.
_MODEL_FOLDERS = ("versions", "blobs", "aliases", "events", "lineage", "sha256",
                  "evaluations")


@dataclass(frozen=True)
class _Index:
    """One of a model's lookup indexes: a folder of ``<value>.json`` entries, each
    naming the earliest version whose ``of(manifest)`` is that value."""

    folder: str
    what: str
    key: Callable[[str, str], str]
    of: Callable[[ModelVersion], str]


# What ModelRegistry._index_lineage writes, and catch_up_lineage's checkpoint covers.
_INDEXES = (_Index("lineage", "lineage", lineage_key, lambda mv: mv.fingerprint),
            _Index("sha256", "model file", sha256_key, lambda mv: mv.model_sha256))


class ProblemKind(enum.Enum):
    """What is wrong. The value is the word ``prefab registry check`` prints."""

    MANIFEST_UNREADABLE = "manifest-unreadable"
    MANIFEST_MISMATCH = "manifest-mismatch"
    FILE_MISSING = "file-missing"
    SHA256_MISMATCH = "sha256-mismatch"
    ALIAS_UNREADABLE = "alias-unreadable"
    ALIAS_DANGLING = "alias-dangling"
    MOVE_UNRECORDED = "move-unrecorded"
    EVENT_UNREADABLE = "event-unreadable"
    LINEAGE_STALE = "lineage-stale"
    ORPHAN_BLOBS = "orphan-blobs"
    PARTIAL_WRITE = "partial-write"

    @property
    def repairable(self) -> bool:
        """Whether :func:`repair_registry` fixes it (removes it, or rebuilds it from
        the manifests)."""
        return self in _REPAIRABLE


_REPAIRABLE = frozenset({ProblemKind.LINEAGE_STALE, ProblemKind.ORPHAN_BLOBS,
                         ProblemKind.PARTIAL_WRITE})


@dataclass(frozen=True)
class Problem:
    """One problem: the model, what is wrong, the key it is about and the details."""

    model: str
    kind: ProblemKind
    key: str
    detail: str

    @property
    def repairable(self) -> bool:
        return self.kind.repairable

    def line(self) -> str:
        return f"{self.model}: {self.kind.value}: {self.key}: {self.detail}"


@dataclass(frozen=True)
class Repair:
    """One thing :func:`repair_registry` did (``removed ...``, ``rebuilt ...``)."""

    model: str
    kind: ProblemKind | None  # None: a derived record written ahead of time, no problem
    key: str
    action: str

    def line(self) -> str:
        return f"{self.model}: {self.action}: {self.key}"


@dataclass
class RepairReport:
    """What :func:`repair_registry` found, what it did, and the problems a new check
    still finds."""

    found: list[Problem] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)
    remaining: list[Problem] = field(default_factory=list)


@dataclass
class _Scan:
    """One model as found, with the problems and what a repair would do."""

    model: str
    problems: list[Problem] = field(default_factory=list)
    manifests: dict[int, ModelVersion] = field(default_factory=dict)
    unreadable: set[int] = field(default_factory=set)
    orphan_blobs: dict[str, list[str]] = field(default_factory=dict)  # folder -> keys
    partials: list[str] = field(default_factory=list)
    # index folder -> indexed value (fingerprint, sha256) -> the version its entry names
    entries: dict[str, dict[str, int | None]] = field(default_factory=dict)
    checkpoint: int | None = None  # None: absent or unreadable
    checkpoint_ok: bool = True
    pending_moves: list[AliasState] = field(default_factory=list)

    def add(self, kind: ProblemKind, key: str, detail: str) -> None:
        self.problems.append(Problem(self.model, kind, key, detail))

    def earliest(self, index: _Index) -> dict[str, int]:
        """Indexed value -> its earliest readable version."""
        out: dict[str, int] = {}
        for n in sorted(self.manifests):
            value = index.of(self.manifests[n])
            if value:
                out.setdefault(value, n)
        return out


def models_in(registry: ModelRegistry) -> list[str]:
    """Every model with anything stored, including one whose only registration died."""
    names = {k.split("/", 2)[0] for k in registry.store.list("")
             if k.count("/") >= 2 and k.split("/", 2)[1] in _MODEL_FOLDERS}
    names |= {e.key.split("/", 1)[0] for e in registry.store.partial_writes("")
              if "/" in e.key}
    return sorted(names)


def check_registry(registry: ModelRegistry, model: str | None = None, *,
                   grace_s: float = DEFAULT_GRACE_S) -> list[Problem]:
    """Every problem of one model (or of every model), in a stable order.

    Args:
        registry: The registry to check.
        model: One model name; None checks every model in the store.
        grace_s: How old an unreferenced blob folder or a partial write must be to
            count as orphaned (younger ones may belong to a write in flight).
    """
    names = [model] if model else models_in(registry)
    return [p for name in names for p in _scan(registry, name, grace_s).problems]


def repair_registry(registry: ModelRegistry, model: str | None = None, *,
                    grace_s: float = DEFAULT_GRACE_S) -> RepairReport:
    """Remove orphans and rebuild derived records, then check again.

    Removes blob folders no manifest references and partial writes, both older than
    ``grace_s``; rebuilds the lineage index from the manifests and writes the event
    files of alias moves that only their alias file records. Never writes or removes
    a manifest, an alias file or a file a manifest references.

    Returns:
        What was done, and the problems a new check still finds (those are not
        repairable: a corrupt manifest, a missing model file, a dangling alias...).
    """
    names = [model] if model else models_in(registry)
    report = RepairReport()
    for name in names:
        scan = _scan(registry, name, grace_s)
        report.found.extend(scan.problems)
        report.repairs.extend(_repair(registry, scan))
    report.remaining = check_registry(registry, model, grace_s=grace_s)
    return report


# ------------------------------------------------------------------ scanning
def _scan(registry: ModelRegistry, model: str, grace_s: float) -> _Scan:
    scan = _Scan(model)
    now = time.time()
    # Blobs are listed before the manifests: a blob folder then counts as orphaned
    # only if its registration took longer than the grace period.
    blobs = registry.store.entries(blobs_prefix(model))
    _scan_versions(registry, scan)
    _scan_blobs(scan, blobs, now, grace_s)
    for entry in registry.store.partial_writes(f"{model}/"):
        if now - entry.modified >= grace_s:
            scan.partials.append(entry.key)
            scan.add(ProblemKind.PARTIAL_WRITE, entry.key,
                     f"a write that never finished ({_age(now - entry.modified)} old)")
    recorded = _scan_events(registry, scan)
    _scan_aliases(registry, scan, recorded)
    _scan_lineage(registry, scan)
    return scan


def _scan_versions(registry: ModelRegistry, scan: _Scan) -> None:
    model, store = scan.model, registry.store
    for key in store.list(f"{model}/versions/"):
        stem = PurePosixPath(key).stem
        if not key.endswith(".json") or not stem.isdigit():
            continue
        number = int(stem)
        try:
            mv = registry.get_version(model, number)
        except (PrefabError, ValueError, TypeError, KeyError) as exc:
            scan.unreadable.add(number)
            scan.add(ProblemKind.MANIFEST_UNREADABLE, key, _first_line(exc))
            continue
        if (mv.model_name, mv.version) != (model, number):
            scan.unreadable.add(number)
            scan.add(ProblemKind.MANIFEST_MISMATCH, key,
                     f"names {mv.model_name}:v{mv.version}, not {model}:v{number}")
            continue
        scan.manifests[number] = mv
        try:
            data = store.get(mv.model_key)
        except KeyError:
            scan.add(ProblemKind.FILE_MISSING, mv.model_key, f"{mv.label}'s model file")
        else:
            if bytes_sha256(data) != mv.model_sha256:
                scan.add(ProblemKind.SHA256_MISMATCH, mv.model_key,
                         f"{mv.label}'s model file has sha256 {bytes_sha256(data)[:12]}…, "
                         f"registered {mv.model_sha256[:12]}…")
        for rel, file_key in sorted(mv.files.items()):
            if not store.exists(file_key):
                scan.add(ProblemKind.FILE_MISSING, file_key, f"{mv.label}'s file '{rel}'")


def _blob_folder(key: str, model: str) -> str | None:
    """``<model>/blobs/<token>/`` of a key inside one, else None."""
    rest = key[len(blobs_prefix(model)):] if key.startswith(blobs_prefix(model)) else ""
    token = rest.split("/", 1)[0] if "/" in rest else ""
    return f"{blobs_prefix(model)}{token}/" if token else None


def _scan_blobs(scan: _Scan, blobs: list[StoredObject], now: float, grace_s: float) -> None:
    if scan.unreadable:  # what an unreadable manifest references is unknown: keep all
        return
    referenced = set()
    for mv in scan.manifests.values():
        for key in (mv.model_key, *mv.files.values()):
            folder = _blob_folder(key, scan.model)
            if folder:
                referenced.add(folder)
    folders: dict[str, list[StoredObject]] = {}
    for entry in blobs:
        folder = _blob_folder(entry.key, scan.model)
        if folder and folder not in referenced:
            folders.setdefault(folder, []).append(entry)
    for folder, entries in sorted(folders.items()):
        age = now - max(e.modified for e in entries)
        if age >= grace_s:
            scan.orphan_blobs[folder] = [e.key for e in entries]
            scan.add(ProblemKind.ORPHAN_BLOBS, folder,
                     f"{len(entries)} file(s) no manifest references, last written "
                     f"{_age(age)} ago (a registration that died before its manifest)")


def _scan_events(registry: ModelRegistry, scan: _Scan) -> dict[str, set[int]]:
    """Alias -> the move numbers (``seq``) that have an event file."""
    recorded: dict[str, set[int]] = {}
    for key in registry.store.list(f"{scan.model}/events/"):
        try:
            body = json.loads(registry.store.get(key))
            if not isinstance(body, dict) or "event" not in body:
                raise ValueError("not an event object")
        except (ValueError, KeyError) as exc:
            scan.add(ProblemKind.EVENT_UNREADABLE, key, _first_line(exc))
            continue
        if isinstance(body.get("alias"), str) and isinstance(body.get("seq"), int):
            recorded.setdefault(body["alias"], set()).add(body["seq"])
    return recorded


def _scan_aliases(registry: ModelRegistry, scan: _Scan, recorded: dict[str, set[int]]
                  ) -> None:
    model = scan.model
    for key in registry.store.list(f"{model}/aliases/"):
        if not key.endswith(".json"):
            continue
        name = PurePosixPath(key).stem
        try:
            state = AliasState(**json.loads(registry.store.get(key)))
        except (ValueError, TypeError, KeyError) as exc:
            scan.add(ProblemKind.ALIAS_UNREADABLE, key, _first_line(exc))
            continue
        versions = set(scan.manifests) | scan.unreadable
        missing = [v for v in [state.version, *state.history] if v not in versions]
        if state.version in missing:
            scan.add(ProblemKind.ALIAS_DANGLING, key,
                     f"'{name}' points at v{state.version}, which does not exist")
        elif missing:
            scan.add(ProblemKind.ALIAS_DANGLING, key,
                     f"'{name}' history names {_versions(missing)}, which do not exist "
                     "(a rollback would fail)")
        event = state.event
        if (state.seq < 1 or not state.event_id or event.get("alias") != name
                or event.get("version") != state.version or event.get("seq") != state.seq):
            scan.add(ProblemKind.ALIAS_UNREADABLE, key,
                     f"'{name}' at v{state.version} (move #{state.seq}) does not carry the "
                     f"event of its last move (it carries {event or 'none'})")
            continue
        have = recorded.get(name, set())
        if state.seq not in have:
            scan.pending_moves.append(state)
        lost = sorted(set(range(1, state.seq)) - have)
        if lost:
            scan.add(ProblemKind.MOVE_UNRECORDED, key,
                     f"move(s) #{', #'.join(map(str, lost))} of '{name}' (of {state.seq}) "
                     "have no audit event")


def _scan_lineage(registry: ModelRegistry, scan: _Scan) -> None:
    model, store = scan.model, registry.store
    last = max(set(scan.manifests) | scan.unreadable, default=0)
    key = lineage_key(model, LINEAGE_CHECKPOINT)
    if store.exists(key):
        try:
            scan.checkpoint = int(json.loads(store.get(key))["through"])
        except (ValueError, TypeError, KeyError) as exc:
            scan.checkpoint_ok = False
            scan.add(ProblemKind.LINEAGE_STALE, key, f"unreadable checkpoint ({_first_line(exc)})")
        else:
            if scan.checkpoint > last:
                scan.checkpoint_ok = False
                scan.add(ProblemKind.LINEAGE_STALE, key,
                         f"checkpoint at v{scan.checkpoint}, past the last version "
                         f"v{last}: later versions would never be indexed")
    for index in _INDEXES:
        _scan_index(registry, scan, index)


def _scan_index(registry: ModelRegistry, scan: _Scan, index: _Index) -> None:
    model, store = scan.model, registry.store
    earliest = scan.earliest(index)
    entries = scan.entries.setdefault(index.folder, {})
    for key in store.list(f"{model}/{index.folder}/"):
        value = PurePosixPath(key).stem
        if not key.endswith(".json") or value == LINEAGE_CHECKPOINT:
            continue
        try:
            named: int | None = int(json.loads(store.get(key))["version"])
        except (ValueError, TypeError, KeyError):
            named = None
        entries[value] = named
        if named in scan.unreadable:
            continue
        mv = scan.manifests.get(named) if named is not None else None
        if mv is None or index.of(mv) != value:
            what = ("is unreadable" if named is None else
                    f"names v{named}, which does not exist" if mv is None else
                    f"names v{named}, of another {index.what}")
            scan.add(ProblemKind.LINEAGE_STALE, key,
                     f"{index.folder} index entry {what}; the manifests say "
                     f"{'v' + str(earliest[value]) if value in earliest else 'no version'}")
    through = scan.checkpoint if scan.checkpoint_ok and scan.checkpoint else 0
    for n in sorted(scan.manifests):
        value = index.of(scan.manifests[n])
        if n <= through and value and value not in entries:
            scan.add(ProblemKind.LINEAGE_STALE, index.key(model, value),
                     f"v{n} is at or below the checkpoint (v{through}) but its "
                     f"{index.what} is not indexed: lookups would miss it")


# ------------------------------------------------------------------ repairing
def _repair(registry: ModelRegistry, scan: _Scan) -> list[Repair]:
    store, model = registry.store, scan.model
    done: list[Repair] = []
    for folder, keys in scan.orphan_blobs.items():
        for key in keys:
            store.delete(key)
        done.append(Repair(model, ProblemKind.ORPHAN_BLOBS, folder,
                           f"removed {len(keys)} orphaned blob file(s)"))
    for key in scan.partials:
        store.delete(key)
        done.append(Repair(model, ProblemKind.PARTIAL_WRITE, key, "removed partial write"))
    done.extend(_rebuild_lineage(registry, scan))
    for state in scan.pending_moves:
        if registry.record_move(model, state):
            done.append(Repair(model, None, event_key(model, state.event_id),
                               f"recorded move #{state.seq} of '{state.alias}' from "
                               f"{alias_key(model, state.alias)}"))
    return done


def _rebuild_lineage(registry: ModelRegistry, scan: _Scan) -> list[Repair]:
    """Make every index entry name a version of its value, index every readable
    version, and move the checkpoint up to the last version before a gap or an
    unreadable manifest (a bad checkpoint is rewritten there, however low)."""
    store, model = registry.store, scan.model
    done = [r for index in _INDEXES for r in _rebuild_index(registry, scan, index)]
    numbers = sorted(set(scan.manifests) | scan.unreadable)
    complete = 0  # the last version with every version up to it readable (and indexed)
    for expected, n in enumerate(numbers, start=1):
        if n != expected or n in scan.unreadable:
            break
        complete = n
    if not scan.checkpoint_ok or complete > (scan.checkpoint or 0):
        key = lineage_key(model, LINEAGE_CHECKPOINT)
        store.put(key, json.dumps({"through": complete}).encode())
        done.append(Repair(model, None if scan.checkpoint_ok else ProblemKind.LINEAGE_STALE,
                           key, f"moved the lineage checkpoint to v{complete}"))
    return done


def _rebuild_index(registry: ModelRegistry, scan: _Scan, index: _Index) -> list[Repair]:
    store, model = registry.store, scan.model
    earliest = scan.earliest(index)
    entries = scan.entries.get(index.folder, {})
    done = []
    for value, named in sorted(entries.items()):
        if named in scan.unreadable:
            continue
        mv = scan.manifests.get(named) if named is not None else None
        if mv is not None and index.of(mv) == value:
            continue
        key = index.key(model, value)
        if value in earliest:
            store.put(key, json.dumps({"version": earliest[value]}).encode())
            done.append(Repair(model, ProblemKind.LINEAGE_STALE, key,
                               f"rebuilt {index.folder} index entry (v{earliest[value]})"))
        else:
            store.delete(key)
            done.append(Repair(model, ProblemKind.LINEAGE_STALE, key,
                               f"removed {index.folder} index entry of no version"))
    through = scan.checkpoint if scan.checkpoint_ok and scan.checkpoint else 0
    for n in sorted(scan.manifests):
        value = index.of(scan.manifests[n])
        if value and value not in entries and earliest.get(value) == n:
            key = index.key(model, value)
            if store.put_if_absent(key, json.dumps({"version": n}).encode()):
                done.append(Repair(model, ProblemKind.LINEAGE_STALE if n <= through else None,
                                   key, f"indexed v{n}"))
    return done


# ------------------------------------------------------------------ wording
def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _versions(numbers: list[int]) -> str:
    return ", ".join(f"v{n}" for n in numbers)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


__all__ = ["DEFAULT_GRACE_S", "Problem", "ProblemKind", "Repair", "RepairReport",
           "check_registry", "models_in", "repair_registry"]
