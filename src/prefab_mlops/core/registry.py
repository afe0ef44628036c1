"""The versioned model registry shared by the pipeline tasks, the CLI and the server.

Layout inside an :class:`~prefab_mlops.core.storage.ObjectStore` (a local directory by
default, ``s3://bucket/prefix/registry`` with ``storage=s3``)::

    <model>/blobs/<token>/model.pkl         payload files, written first
    <model>/blobs/<token>/plots/roc.png
    <model>/blobs/<token>/reference.parquet drift reference sample
    <model>/blobs/<token>/train_rows.npy    hashes of the rows it was trained on
    <model>/versions/000003.json            the manifest; its existence *is* the version
    <model>/aliases/production.json         {"version": 3, "history": [1, 2], "seq": 4,
                                             "event_id": ..., "event": {...}}
    <model>/events/<time>-<token>.json      append-only audit log (promotions, rollbacks)
    <model>/lineage/<fingerprint>.json      {"version": 3}: the version of a lineage
    <model>/sha256/<sha256>.json            {"version": 3}: the version of these model bytes
    <model>/evaluations/000003/<time>-<token>.json   later evaluations of v3
    <model>/lineage/_checkpoint.json        {"through": 3}: every version up to 3 is indexed

Atomicity: payload files go to a fresh ``blobs/<token>/`` prefix that no reader
looks at; the version becomes visible only when its manifest is created with an
atomic *create-if-absent* (``link`` locally, ``If-None-Match`` on S3). A crash
before that leaves only unreferenced blobs and never touches existing versions.
Alias changes are atomic read-modify-writes (``flock`` locally, ``If-Match`` on S3),
so concurrent promotions and rollbacks never lose one another. A promotion can
also be a compare-and-set (``set_alias(..., expected=N)``): it moves the alias only
if it still points at the champion the decision was made against.
A manifest records the sha256 of the model file, checked on every load. Manifests are
typed records (:mod:`prefab_mlops.core.manifest`); one that does not parse is refused
with a :class:`RegistryError` naming the version and the field.

A manifest is never rewritten. It holds the evaluation made when the version was
registered; when a later run evaluates the same model again (the same lineage, or the
same model bytes), that evaluation is appended under ``evaluations/`` and is what
:meth:`ModelRegistry.latest_evaluation` returns: the gate result to show for a version
is its latest one.

Nothing a kill can interrupt leaves a change unrecorded. Every record is part of
the commit it records, or derived from it:

* a registration's audit event *is* its manifest (:meth:`ModelRegistry.events`
  derives it), and its lineage entry is caught up from the manifests registered
  since the checkpoint (:meth:`ModelRegistry.catch_up_lineage`);
* an alias move's audit event is written inside the alias file, in the same atomic
  write as the move; the event file is written after it, and the next move of that
  alias writes it first if the writer died in between. Until then
  :meth:`ModelRegistry.events` reads it from the alias file.

What a kill does leave, unreferenced blobs and (locally) hidden ``.tmp`` files,
``prefab registry check --repair`` removes (see ``registry_check``).
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prefab_mlops.core.errors import (
    AliasMovedError,
    ContractError,
    IntegrityError,
    RegistryError,
)
from prefab_mlops.core.fingerprint import RowFingerprint, bytes_sha256
from prefab_mlops.core.manifest import EvaluationRecord, ModelVersion
from prefab_mlops.core.records import Record
from prefab_mlops.core.storage import ObjectStore, new_token

_VERSION_WIDTH = 6
# A version's file of the row hashes of its train and validation rows
# (RowFingerprint.to_npy); the manifest's data.trained_rows.columns says which
# columns were hashed.
TRAINED_ROWS_FILE = "train_rows.npy"
#: A version's drift reference: a sample of its training rows (the input columns plus
#: the encoded label in :data:`REFERENCE_TARGET`), written by ``register`` and read by
#: monitoring and by the server's fast-path check.
REFERENCE_FILE = "reference.parquet"
#: The label column of :data:`REFERENCE_FILE`.
REFERENCE_TARGET = "__target__"
# A model's lineage-index checkpoint: every version up to ``through`` is indexed (see
# catch_up_lineage).
LINEAGE_CHECKPOINT = "_checkpoint"


# ------------------------------------------------------------------ layout
def version_key(model_name: str, version: int) -> str:
    return f"{model_name}/versions/{version:0{_VERSION_WIDTH}d}.json"


def alias_key(model_name: str, alias: str) -> str:
    return f"{model_name}/aliases/{alias}.json"


def event_key(model_name: str, event_id: str) -> str:
    return f"{model_name}/events/{event_id}.json"


def lineage_key(model_name: str, fingerprint: str) -> str:
    return f"{model_name}/lineage/{fingerprint}.json"


def sha256_key(model_name: str, sha256: str) -> str:
    return f"{model_name}/sha256/{sha256}.json"


def evaluations_prefix(model_name: str, version: int) -> str:
    return f"{model_name}/evaluations/{version:0{_VERSION_WIDTH}d}/"


def blobs_prefix(model_name: str) -> str:
    """Where a model's payload files live, one folder per registration attempt."""
    return f"{model_name}/blobs/"


class _Unset(enum.Enum):
    """The type of :data:`ANY_VERSION` (a sentinel that type checkers can tell apart)."""

    ANY = "any"


#: ``set_alias(expected=ANY_VERSION)`` (the default): move the alias wherever it points.
ANY_VERSION = _Unset.ANY


#: The alias of the production model unless ``promote.alias`` names another; promotion
#: moves it, and monitoring, batch scoring and the model server follow it.
PRODUCTION_ALIAS = "production"

#: Audit events that record a promotion decision on a version (``version``): a
#: promotion (by a run or by hand) and a run's decision not to promote.
PROMOTE_EVENT = "promote"
DECLINE_EVENT = "promotion_declined"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


_stamp_lock = threading.Lock()
_last_stamp_ns = 0


def _event_stamp() -> str:
    """A UTC stamp for event keys, strictly increasing within this process.

    Events are listed in key order, so the stamp must not repeat: several events
    often land in the same millisecond. Across processes, order is wall-clock order.
    """
    global _last_stamp_ns
    with _stamp_lock:
        _last_stamp_ns = max(time.time_ns(), _last_stamp_ns + 1)
        ns = _last_stamp_ns
    secs, frac = divmod(ns, 1_000_000_000)
    return f"{_dt.datetime.fromtimestamp(secs, _dt.UTC):%Y%m%dT%H%M%S}{frac:09d}"


@dataclass
class AliasState:
    """Where an alias points, where it pointed before, and the move that put it there.

    ``seq`` counts the alias's moves (1 for the first). ``event`` is the audit event
    of the last move and ``event_id`` the name of its event file: both are written
    in the same atomic write as the move itself (see :meth:`ModelRegistry.record_move`).
    """

    alias: str
    version: int
    history: list[int] = field(default_factory=list)
    updated_at: str = ""
    seq: int = 0
    event_id: str = ""
    event: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedModel:
    """A registered version and its unpickled model (None if the caller did not need it).

    ``trained_rows`` are the rows it was trained on, when the caller asked for them
    and the version has them (see :meth:`ModelRegistry.trained_rows`).
    """

    version: ModelVersion
    model: Any
    trained_rows: RowFingerprint | None = None


class ModelRegistry:
    """Versions, aliases and an audit log for named models in one object store.

    Args:
        store: Where the registry lives.
    """

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    # --------------------------------------------------------------- aliases
    def _update_alias(self, model_name: str, alias: str,
                      change: Callable[[AliasState | None], AliasState]
                      ) -> tuple[AliasState | None, AliasState]:
        """Atomic read-modify-write of an alias (see ``ObjectStore.update``).

        Concurrent promotions and rollbacks never lose one another's update: a local
        store serializes them with ``flock``, S3 with conditional writes.
        """
        seen: list[AliasState | None] = []

        def apply(raw: bytes | None) -> bytes:
            prev = AliasState(**json.loads(raw)) if raw is not None else None
            seen.append(prev)
            return json.dumps(asdict(change(prev)), indent=2, default=str).encode()

        data = self.store.update(alias_key(model_name, alias), apply)
        return seen[-1], AliasState(**json.loads(data))

    def _move_alias(self, model_name: str, alias: str,
                    target: Callable[[AliasState | None], tuple[int, list[int]]],
                    event: str, payload: dict[str, Any]) -> AliasState:
        """Move an alias and record the move in the same atomic write.

        ``target(current)`` returns the new version and history (or raises to leave
        the alias as it is). Before the write, the previous move's event file is
        written if its writer died before writing it; after the write, this move's.
        """
        def change(prev: AliasState | None) -> AliasState:
            self.record_move(model_name, prev)
            version, history = target(prev)
            seq = (prev.seq if prev else 0) + 1
            body = {"event": event, "model_name": model_name, "at": _now(), "alias": alias,
                    "version": version, "previous": prev.version if prev else None,
                    "seq": seq, **payload}
            return AliasState(alias, version, history, body["at"], seq,
                              f"{_event_stamp()}-{new_token()[:8]}", body)

        _, state = self._update_alias(model_name, alias, change)
        self.record_move(model_name, state, check=False)
        return state

    def record_move(self, model_name: str, state: AliasState | None, *,
                    check: bool = True) -> bool:
        """Write the event file of an alias's last move (``state.event``) if it is missing.

        Returns whether it was written. With ``check=False`` it is written without
        looking first (its writer, right after the move).
        """
        if state is None or not state.event_id:
            return False
        key = event_key(model_name, state.event_id)
        if check and self.store.exists(key):
            return False
        self.store.put(key, json.dumps(state.event, default=str).encode())
        return True

    # -------------------------------------------------------------- versions
    def models(self) -> list[str]:
        names = {k.split("/", 1)[0] for k in self.store.list("") if "/versions/" in k}
        return sorted(names)

    def versions(self, model_name: str) -> list[ModelVersion]:
        keys = [k for k in self.store.list(f"{model_name}/versions/") if k.endswith(".json")]
        return [self._read_manifest(k) for k in keys]

    def _read_manifest(self, key: str) -> ModelVersion:
        """The manifest at ``key``, parsed.

        Raises:
            RegistryError: it is missing, or is not a manifest of this format (naming
                the version and the first field that does not fit).
        """
        name, _, file = key.rpartition("/versions/")
        stem = Path(file).stem
        label = f"{name}:v{int(stem)}" if stem.isdigit() else name
        try:
            body = self.store.get(key)
        except KeyError:
            raise RegistryError(f"Registry manifest '{key}' is missing.") from None
        return _parse(ModelVersion, body, f"The manifest of {label} ('{key}')")

    def get_version(self, model_name: str, version: int) -> ModelVersion:
        key = version_key(model_name, version)
        if not self.store.exists(key):
            have = [v.version for v in self.versions(model_name)]
            raise RegistryError(
                f"Model '{model_name}' has no version {version} (versions: {have or 'none'}).",
                fix="List versions with `prefab registry list " + model_name + "`.")
        return self._read_manifest(key)

    def find_by_fingerprint(self, model_name: str, fingerprint: str) -> ModelVersion | None:
        """The earliest version trained from this lineage, or None.

        The lineage fingerprint (data, features, model config, seed, task code) is
        what identifies a model; the pickle's sha256 is not compared, because a
        refit of the same lineage need not pickle to the same bytes.

        It reads one index entry (``<model>/lineage/<fingerprint>.json``) and the
        version it names. On a miss it indexes the versions registered since the
        index's checkpoint (:meth:`catch_up_lineage`), so a version whose writer died
        between its manifest and its index entry is still found, and the same model
        is not registered twice.

        Args:
            model_name: Registered model name (``register.model_name``).
            fingerprint: ``TrainedModel.fingerprint`` of the model to look for.
        """
        return self._find(model_name, lineage_key(model_name, fingerprint),
                          lambda mv: mv.fingerprint == fingerprint)

    def _find(self, model_name: str, index_key: str,
              matches: Callable[[ModelVersion], bool]) -> ModelVersion | None:
        """The version an index entry names; on a miss, the first version since the
        checkpoint that ``matches`` (indexing them all: :meth:`catch_up_lineage`)."""
        try:
            entry = json.loads(self.store.get(index_key))
            return self.get_version(model_name, int(entry["version"]))
        except KeyError:
            pass
        return next((mv for mv in self.catch_up_lineage(model_name) if matches(mv)), None)

    def catch_up_lineage(self, model_name: str) -> list[ModelVersion]:
        """Index the versions registered since the lineage checkpoint, then move it.

        One listing, and normally one or two manifests. Returns those versions'
        manifests, oldest first.
        """
        checkpoint_key = lineage_key(model_name, LINEAGE_CHECKPOINT)
        try:
            through = int(json.loads(self.store.get(checkpoint_key))["through"])
        except KeyError:
            through = 0
        newer = [self.get_version(model_name, n)
                 for n in sorted(self._version_numbers(model_name)) if n > through]
        for mv in newer:
            self._index_lineage(mv)
        if newer:  # a lost race only lowers the checkpoint: a later lookup rescans
            self.store.put(checkpoint_key, json.dumps({"through": newer[-1].version}).encode())
        return newer

    def find_by_sha256(self, model_name: str, sha256: str) -> ModelVersion | None:
        """The earliest version whose model file has these bytes, or None.

        A byte-identical model can come from another lineage: the lineage covers data
        settings (a moved file, a snapshot switched off) that need not change the
        fitted model. Reads one index entry (``<model>/sha256/<sha256>.json``) and the
        version it names; on a miss it catches up like :meth:`find_by_fingerprint`.

        Args:
            model_name: Registered model name (``register.model_name``).
            sha256: The sha256 of the pickled model (``bytes_sha256``).
        """
        return self._find(model_name, sha256_key(model_name, sha256),
                          lambda mv: mv.model_sha256 == sha256)

    def _index_lineage(self, mv: ModelVersion) -> None:
        """Record ``mv`` as the version of its lineage and of its model bytes, unless an
        earlier version is."""
        entry = json.dumps({"version": mv.version}).encode()
        if mv.fingerprint:
            self.store.put_if_absent(lineage_key(mv.model_name, mv.fingerprint), entry)
        if mv.model_sha256:
            self.store.put_if_absent(sha256_key(mv.model_name, mv.model_sha256), entry)

    def _version_numbers(self, model_name: str) -> list[int]:
        """Version numbers from the manifests' names (one listing, no reads)."""
        out = []
        for key in self.store.list(f"{model_name}/versions/"):
            stem = Path(key).stem
            if key.endswith(".json") and stem.isdigit():
                out.append(int(stem))
        return out

    def register(self, manifest: ModelVersion, model_bytes: bytes,
                 extra_files: dict[str, bytes] | None = None) -> ModelVersion:
        """Store a new version atomically and return its manifest (with its number).

        ``manifest.version`` is assigned here. Payload files are written under a
        fresh blob prefix first; the manifest is then created with create-if-absent.
        That is the commit: the manifest is also the version's ``register`` audit
        event (see :meth:`events`), and its lineage entry, written right after, is
        caught up from it if this writer dies first (see :meth:`catch_up_lineage`).
        It does not look for an existing version of the same lineage or bytes (the
        register task does, with :meth:`find_by_fingerprint` and
        :meth:`find_by_sha256`); the earliest version of each stays indexed.
        """
        name = manifest.model_name
        token = new_token()
        blob = f"{blobs_prefix(name)}{token}"
        sha = bytes_sha256(model_bytes)
        manifest.model_key = f"{blob}/model.pkl"
        manifest.model_sha256 = sha
        self.store.put(manifest.model_key, model_bytes)
        files = {}
        for rel, data in (extra_files or {}).items():
            key = f"{blob}/{rel}"
            self.store.put(key, data)
            files[rel] = key
        manifest.files = files
        manifest.created_at = _now()
        for _ in range(1000):
            existing = self._version_numbers(name)
            manifest.version = (max(existing) if existing else 0) + 1
            key = version_key(name, manifest.version)
            body = _body(manifest, f"{manifest.label}'s manifest")
            if self.store.put_if_absent(key, body):
                self._index_lineage(manifest)
                return manifest
        raise RegistryError(f"Could not allocate a version number for '{name}'.")

    # ------------------------------------------------------------ evaluations
    def record_evaluation(self, model_name: str, record: EvaluationRecord) -> EvaluationRecord:
        """Append a later evaluation of a registered version (the manifest stays as is).

        Also logged in the audit log (an ``evaluate`` event with the gate's outcome).

        Args:
            model_name: Registered model name.
            record: The evaluation; ``record.version`` must exist. ``at`` is set here.

        Raises:
            RegistryError: the version does not exist.
        """
        self.get_version(model_name, record.version)
        record.at = _now()
        record.registered = False
        key = (f"{evaluations_prefix(model_name, record.version)}"
               f"{_event_stamp()}-{new_token()[:8]}.json")
        self.store.put(key, _body(record, f"an evaluation of {model_name}:v{record.version}"))
        self.record_event(model_name, "evaluate", version=record.version,
                          gate_passed=record.gate.passed if record.gate else None,
                          reason=record.gate.summary if record.gate else "")
        return record

    def evaluations(self, mv: ModelVersion) -> list[EvaluationRecord]:
        """Every evaluation of ``mv``, oldest first: the one it was registered with, then
        those appended by later runs (:meth:`record_evaluation`)."""
        keys = sorted(k for k in self.store.list(evaluations_prefix(mv.model_name,
                                                                          mv.version))
                      if k.endswith(".json"))
        return [EvaluationRecord.at_registration(mv),
                *(self._read_evaluation(mv, k) for k in keys)]

    def _read_evaluation(self, mv: ModelVersion, key: str) -> EvaluationRecord:
        return _parse(EvaluationRecord, self.store.get(key),
                      f"An evaluation of {mv.label} ('{key}')")

    def latest_evaluation(self, mv: ModelVersion) -> EvaluationRecord:
        """The latest evaluation of ``mv``: the gate result and metrics to show for it."""
        return self.latest_evaluations(mv.model_name, [mv])[mv.version]

    def latest_evaluations(self, model_name: str,
                           versions: list[ModelVersion]) -> dict[int, EvaluationRecord]:
        """The latest evaluation of each of ``versions`` (of ``model_name``), by version.

        One listing of the model's evaluations and one read per re-evaluated version.
        """
        last: dict[int, str] = {}
        for key in sorted(self.store.list(f"{model_name}/evaluations/")):
            folder = key.rsplit("/", 2)[-2]
            if key.endswith(".json") and folder.isdigit():
                last[int(folder)] = key  # keys sort oldest first
        return {mv.version: (self._read_evaluation(mv, last[mv.version])
                             if mv.version in last else EvaluationRecord.at_registration(mv))
                for mv in versions}

    def decisions(self, model_name: str) -> dict[int, dict[str, Any]]:
        """The latest promotion decision on each version (an audit event), by version.

        A decision is a :data:`PROMOTE_EVENT` (by a run or by hand) or a
        :data:`DECLINE_EVENT` naming the version; a version no run decided on is absent.
        """
        out: dict[int, dict[str, Any]] = {}
        for event in self.events(model_name):
            if event.get("event") in (PROMOTE_EVENT, DECLINE_EVENT) and isinstance(
                    event.get("version"), int):
                out[event["version"]] = event
        return out

    # ------------------------------------------------------------------ files
    def read_file(self, mv: ModelVersion, rel: str) -> bytes:
        if rel not in mv.files:
            raise RegistryError(f"{mv.label} has no file '{rel}' (files: {sorted(mv.files)}).")
        return self.store.get(mv.files[rel])

    def load(self, model_name: str, version: int | None = None,
             alias: str | None = None) -> LoadedModel:
        """Load a version's model after checking its sha256.

        Raises:
            RegistryError: unknown version/alias.
            IntegrityError: the model file does not match its recorded sha256.
        """
        if version is None:
            state = self.alias(model_name, alias or PRODUCTION_ALIAS)
            if state is None:
                raise RegistryError(
                    f"Model '{model_name}' has no '{alias or 'production'}' alias yet.",
                    fix="Train and promote a model first (make train).")
            version = state.version
        mv = self.get_version(model_name, version)
        data = self.model_bytes(mv)
        return LoadedModel(version=mv, model=pickle.loads(data))  # noqa: S301 - sha-verified

    def model_bytes(self, mv: ModelVersion) -> bytes:
        """A version's pickled model, after checking its sha256 (not unpickled).

        Raises:
            IntegrityError: the model file is missing or does not match its sha256.
        """
        try:
            data = self.store.get(mv.model_key)
        except KeyError:
            raise IntegrityError(f"{mv.label}: model file '{mv.model_key}' is missing.",
                                 fix="Restore the registry from backup or retrain.") from None
        if bytes_sha256(data) != mv.model_sha256:
            raise IntegrityError(
                f"{mv.label}: model file sha256 {bytes_sha256(data)[:12]}… does not match the "
                f"registered {mv.model_sha256[:12]}…; refusing to load a tampered model.",
                fix="Restore the file from the registry's storage backup or retrain.")
        return data

    def trained_rows(self, mv: ModelVersion) -> RowFingerprint | None:
        """The rows ``mv`` was trained on (train and validation), or None if not recorded.

        A version registered without them (by older code) returns None.
        """
        info = mv.data.trained_rows
        if TRAINED_ROWS_FILE not in mv.files or info is None:
            return None
        return RowFingerprint.from_npy(self.read_file(mv, TRAINED_ROWS_FILE), info.columns)

    # ---------------------------------------------------------------- aliases
    def alias(self, model_name: str, alias: str) -> AliasState | None:
        key = alias_key(model_name, alias)
        try:
            return AliasState(**json.loads(self.store.get(key)))
        except KeyError:
            return None

    def aliases(self, model_name: str) -> dict[str, AliasState]:
        out = {}
        for key in self.store.list(f"{model_name}/aliases/"):
            name = Path(key).stem
            state = self.alias(model_name, name)
            if state:
                out[name] = state
        return out

    def set_alias(self, model_name: str, alias: str, version: int, *,
                  reason: str = "", event: str = "set_alias",
                  details: dict[str, Any] | None = None,
                  expected: int | None | _Unset = ANY_VERSION) -> AliasState:
        """Point ``alias`` at ``version`` (remembering the previous one) and log it.

        The audit event is written with the move, in the alias file (see
        :meth:`record_move`): a kill never leaves a move unrecorded.

        With ``expected``, this is a compare-and-set: the alias moves only if it
        still points at ``expected`` (``None``: only if it does not exist yet). The
        check runs inside the alias's atomic read-modify-write (``flock`` locally,
        ``If-Match`` on S3), so no other writer can move the alias between the check
        and the write. A promotion decided against a champion passes that champion's
        version here, and never replaces a model it was not compared with.

        Args:
            model_name: Registered model name.
            alias: The alias to move (``production``...).
            version: The version to point it at; must exist.
            reason: Why, for the audit log.
            event: The audit event's kind (``promote``, ``set_alias``...).
            details: More fields for the audit event.
            expected: The version the caller believes the alias points at now, or
                ``None`` for "no alias yet". The default, :data:`ANY_VERSION`, skips
                the check (``prefab promote``, manual moves).

        Raises:
            RegistryError: ``version`` does not exist.
            AliasMovedError: ``expected`` was given and the alias points elsewhere;
                nothing was written or logged. ``err.current`` is where it points.
        """
        self.get_version(model_name, version)

        def point(prev: AliasState | None) -> tuple[int, list[int]]:
            current = prev.version if prev else None
            if expected is not ANY_VERSION and current != expected:
                raise _alias_moved(model_name, alias, version, current, expected)
            history = list(prev.history) if prev else []
            if prev and prev.version != version:
                history.append(prev.version)
            return version, history[-50:]

        return self._move_alias(model_name, alias, point, event,
                                {"reason": reason, **(details or {})})

    def rollback(self, model_name: str, alias: str = PRODUCTION_ALIAS,
                 reason: str = "manual rollback") -> AliasState:
        """Move ``alias`` back to the version it pointed at before, and log it.

        Raises:
            RegistryError: the alias does not exist or has no earlier version.
        """
        def back(cur: AliasState | None) -> tuple[int, list[int]]:
            if cur is None:
                raise RegistryError(f"Model '{model_name}' has no '{alias}' alias.",
                                    fix="Nothing to roll back; promote a version first.")
            if not cur.history:
                raise RegistryError(
                    f"'{alias}' of '{model_name}' is at v{cur.version} and has no earlier "
                    "version to roll back to.",
                    fix=f"Promote a specific version instead: prefab promote {model_name} N")
            history = list(cur.history)
            target = history.pop()
            return target, history

        return self._move_alias(model_name, alias, back, "rollback", {"reason": reason})

    # ----------------------------------------------------------------- events
    def record_event(self, model_name: str, kind: str, **payload: Any) -> None:
        """Log an event that records no registry change (a declined promotion, a drift
        check): its event file is the whole record."""
        body = {"event": kind, "model_name": model_name, "at": _now(), **payload}
        self.store.put(event_key(model_name, f"{_event_stamp()}-{new_token()[:8]}"),
                       json.dumps(body, default=str).encode())

    def events(self, model_name: str) -> list[dict[str, Any]]:
        """The audit log, oldest first.

        Event files, plus what each change records in its own commit: a ``register``
        event per manifest, and an alias's last move from its alias file when the
        mover died before writing its event file.
        """
        found: dict[str, dict[str, Any]] = {}
        for key in self.store.list(f"{model_name}/events/"):
            if key.endswith(".json"):
                found[Path(key).stem] = json.loads(self.store.get(key))
        for mv in self.versions(model_name):
            found.setdefault(*_register_event(mv))
        for state in self.aliases(model_name).values():
            if state.event_id:
                found.setdefault(state.event_id, state.event)
        return [found[k] for k in sorted(found)]


def _register_event(mv: ModelVersion) -> tuple[str, dict[str, Any]]:
    """A version's ``register`` event and its id, which sorts by ``created_at``."""
    try:
        at = _dt.datetime.fromisoformat(mv.created_at).astimezone(_dt.UTC)
        stamp = f"{at:%Y%m%dT%H%M%S}{at.microsecond * 1000:09d}"
    except ValueError:
        stamp = "0" * 24
    return (f"{stamp}-register-{mv.version:0{_VERSION_WIDTH}d}",
            {"event": "register", "model_name": mv.model_name, "at": mv.created_at,
             "version": mv.version, "fingerprint": mv.fingerprint})


_R = TypeVar("_R", bound=Record)


def _parse(cls: type[_R], body: bytes, what: str) -> _R:
    """A stored record (a manifest, an evaluation), parsed by its one parser.

    Raises:
        RegistryError: ``body`` is not JSON, or not a record of this format; names
            ``what`` and the first field that does not fit.
    """
    try:
        return cls.from_json(json.loads(body))
    except ValueError as exc:  # not JSON at all
        detail = f"it is not JSON ({exc})"
    except ContractError as exc:
        detail = exc.message
    raise RegistryError(
        f"{what} cannot be read: {detail}.",
        fix="Restore it from the registry's storage backup, or register the model "
        "again with this prefab-mlops (records are written by tasks/register.py).")


def _body(record: Record, what: str) -> bytes:
    """``record`` as stored, checked to parse back (a record nobody can read is never
    written).

    Raises:
        RegistryError: a field holds a value its record type cannot hold.
    """
    try:
        body = json.dumps(record.to_json(), indent=2, sort_keys=True).encode()
        type(record).from_json(json.loads(body))
    except (TypeError, ContractError) as exc:
        raise RegistryError(f"Not writing {what}: it would not read back "
                            f"({getattr(exc, 'message', exc)}).",
                            fix="Record that field with the type the record declares "
                            "(prefab_mlops.core.manifest).") from None
    return body


def _alias_moved(model_name: str, alias: str, version: int, current: int | None,
                 expected: int | None) -> AliasMovedError:
    def name(v: int | None) -> str:
        return "unset" if v is None else f"v{v}"

    return AliasMovedError(
        f"'{alias}' of '{model_name}' is {name(current)}, not {name(expected)} as expected: "
        f"another writer moved it since. Not pointing it at v{version}, which was not "
        f"compared with {name(current)}.",
        current=current, expected=expected,
        fix=f"Decide again against {name(current)} (score it on the same test split) and "
        f"retry with expected={current}; the training flow's promote task does this by "
        "itself. To move the alias regardless, use `prefab promote`.")
