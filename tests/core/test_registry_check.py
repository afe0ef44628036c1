"""``registry check`` and ``--repair`` on real registries damaged on purpose.

Each test breaks one thing the way a crash, a bad copy or a hand edit would, and
checks that the checker names it (kind and key), that the repair fixes exactly the
repairable kinds, and that a complete version is never touched.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

import pytest

from prefab_mlops.core.manifest import ModelVersion
from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.registry_check import (
    ProblemKind,
    check_registry,
    models_in,
    repair_registry,
)
from prefab_mlops.core.storage import LocalObjectStore

MODEL = "flights-binary"
HOUR = 3600.0


def manifest(fingerprint: str, name: str = MODEL) -> ModelVersion:
    return ModelVersion(model_name=name, version=0, created_at="", fingerprint=fingerprint,
                        model_key="", model_sha256="", problem_type="binary")


@pytest.fixture()
def registry(store) -> ModelRegistry:
    return populated(store)


def populated(store) -> ModelRegistry:
    """Three versions (with files), production moved 1 -> 2 -> 3 and rolled back to 2."""
    reg = ModelRegistry(store)
    for i in (1, 2, 3):
        reg.register(manifest(f"fp{i}"), pickle.dumps({"model": i}),
                     {"plots/roc.png": b"png%d" % i, "reference.parquet": b"PAR1%d" % i})
        reg.set_alias(MODEL, "production", i, event="promote")
    reg.rollback(MODEL)
    reg.find_by_fingerprint(MODEL, "never")  # checkpoint at v3
    return reg


def kinds(problems) -> list[tuple[ProblemKind, str]]:
    return [(p.kind, p.key) for p in problems]


def age(store: LocalObjectStore, key: str, seconds: float) -> None:
    """Make a local file look ``seconds`` old."""
    then = time.time() - seconds
    os.utime(store.uri(key), (then, then))


def snapshot(registry: ModelRegistry) -> dict[str, bytes]:
    """Every manifest and every file a manifest references, by key."""
    out = {}
    for mv in registry.versions(MODEL):
        for key in (f"{MODEL}/versions/{mv.version:06d}.json", mv.model_key,
                    *mv.files.values()):
            out[key] = registry.store.get(key)
    return out


class TestHealthyRegistry:
    def test_a_registry_in_use_has_no_problem(self, registry: ModelRegistry) -> None:
        assert check_registry(registry) == []
        assert check_registry(registry, MODEL) == []
        assert check_registry(registry, "other-model") == []

    def test_repair_of_a_healthy_registry_changes_no_version(self, registry: ModelRegistry
                                                             ) -> None:
        before = snapshot(registry)
        report = repair_registry(registry, grace_s=0)

        assert report.remaining == []
        assert [r.kind for r in report.repairs if r.kind is not None] == []
        assert snapshot(registry) == before


class TestVersions:
    def test_unparsable_manifest(self, registry: ModelRegistry) -> None:
        key = f"{MODEL}/versions/000002.json"
        registry.store.put(key, b'{"model_name": "flights-binary", "vers')

        problems = check_registry(registry)

        assert kinds(problems) == [(ProblemKind.MANIFEST_UNREADABLE, key)]
        assert not problems[0].repairable
        assert problems[0].line().startswith(f"{MODEL}: manifest-unreadable: {key}: ")

    def test_manifest_under_another_number(self, registry: ModelRegistry) -> None:
        registry.store.put(f"{MODEL}/versions/000007.json",
                           registry.store.get(f"{MODEL}/versions/000001.json"))

        problems = check_registry(registry)

        assert kinds(problems) == [(ProblemKind.MANIFEST_MISMATCH,
                                    f"{MODEL}/versions/000007.json")]
        assert "names flights-binary:v1, not flights-binary:v7" in problems[0].detail

    def test_missing_model_file_and_missing_plot(self, registry: ModelRegistry) -> None:
        v1, v3 = registry.get_version(MODEL, 1), registry.get_version(MODEL, 3)
        registry.store.delete(v1.model_key)
        registry.store.delete(v3.files["plots/roc.png"])

        problems = check_registry(registry)

        assert kinds(problems) == [(ProblemKind.FILE_MISSING, v1.model_key),
                                   (ProblemKind.FILE_MISSING, v3.files["plots/roc.png"])]
        assert "v3's file 'plots/roc.png'" in problems[1].detail

    def test_tampered_model_file(self, registry: ModelRegistry) -> None:
        mv = registry.get_version(MODEL, 2)
        registry.store.put(mv.model_key, pickle.dumps({"model": "evil"}))

        problems = check_registry(registry)

        assert kinds(problems) == [(ProblemKind.SHA256_MISMATCH, mv.model_key)]
        assert f"registered {mv.model_sha256[:12]}" in problems[0].detail

    def test_repair_leaves_what_it_cannot_fix(self, registry: ModelRegistry) -> None:
        mv = registry.get_version(MODEL, 2)
        registry.store.put(mv.model_key, b"tampered")

        report = repair_registry(registry, grace_s=0)

        assert kinds(report.remaining) == [(ProblemKind.SHA256_MISMATCH, mv.model_key)]
        assert registry.store.get(mv.model_key) == b"tampered"  # evidence kept as found


class TestAliases:
    def test_alias_to_a_missing_version(self, registry: ModelRegistry) -> None:
        key = f"{MODEL}/aliases/production.json"
        state = json.loads(registry.store.get(key))
        registry.store.put(key, json.dumps({**state, "version": 9}).encode())

        problems = [p for p in check_registry(registry) if p.kind is ProblemKind.ALIAS_DANGLING]

        assert kinds(problems) == [(ProblemKind.ALIAS_DANGLING, key)]
        assert "points at v9, which does not exist" in problems[0].detail

    def test_history_naming_a_missing_version(self, registry: ModelRegistry) -> None:
        key = f"{MODEL}/aliases/production.json"
        state = json.loads(registry.store.get(key))
        registry.store.put(key, json.dumps({**state, "history": [5, 1]}).encode())

        problems = check_registry(registry)

        assert kinds(problems) == [(ProblemKind.ALIAS_DANGLING, key)]
        assert "history names v5" in problems[0].detail

    def test_alias_file_that_does_not_carry_its_move(self, registry: ModelRegistry) -> None:
        key = f"{MODEL}/aliases/candidate.json"
        registry.store.put(key, json.dumps({"alias": "candidate", "version": 1}).encode())

        assert kinds(check_registry(registry)) == [(ProblemKind.ALIAS_UNREADABLE, key)]

    def test_an_earlier_move_without_its_event_is_unrecorded(self, registry: ModelRegistry
                                                              ) -> None:
        """Moves 1-4 of production: deleting the event of move 2 loses it for good."""
        second = [k for k in registry.store.list(f"{MODEL}/events/")
                  if json.loads(registry.store.get(k)).get("seq") == 2]
        registry.store.delete(second[0])

        problems = check_registry(registry)

        assert kinds(problems) == [(ProblemKind.MOVE_UNRECORDED,
                                    f"{MODEL}/aliases/production.json")]
        assert "move(s) #2 of 'production' (of 4)" in problems[0].detail
        assert not problems[0].repairable

    def test_the_last_move_is_recorded_by_its_alias_file(self, registry: ModelRegistry
                                                         ) -> None:
        """A mover killed before its event file: no problem, events() shows the move,
        and the repair writes the file."""
        state = registry.alias(MODEL, "production")
        key = f"{MODEL}/events/{state.event_id}.json"
        written = registry.store.get(key)
        registry.store.delete(key)
        before = registry.events(MODEL)

        assert check_registry(registry) == []
        assert before[-1] == state.event
        assert (before[-1]["event"], before[-1]["version"], before[-1]["seq"]) == (
            "rollback", 2, 4)
        report = repair_registry(registry, grace_s=0)
        assert [r.key for r in report.repairs] == [key]
        assert registry.store.get(key) == written
        assert registry.events(MODEL) == before


class TestLineage:
    def test_entry_naming_another_lineage_is_rebuilt(self, registry: ModelRegistry) -> None:
        key = f"{MODEL}/lineage/fp2.json"
        registry.store.put(key, json.dumps({"version": 3}).encode())

        problems = check_registry(registry)

        assert kinds(problems) == [(ProblemKind.LINEAGE_STALE, key)]
        assert "names v3, of another lineage; the manifests say v2" in problems[0].detail
        assert repair_registry(registry, grace_s=0).remaining == []
        assert registry.find_by_fingerprint(MODEL, "fp2").version == 2

    def test_entry_lost_below_the_checkpoint_is_rebuilt(self, registry: ModelRegistry
                                                        ) -> None:
        """Below the checkpoint a lookup trusts the index: fp1 would never be found."""
        registry.store.delete(f"{MODEL}/lineage/fp1.json")
        assert registry.find_by_fingerprint(MODEL, "fp1") is None

        problems = check_registry(registry)

        assert kinds(problems) == [(ProblemKind.LINEAGE_STALE, f"{MODEL}/lineage/fp1.json")]
        assert repair_registry(registry, grace_s=0).remaining == []
        assert registry.find_by_fingerprint(MODEL, "fp1").version == 1

    def test_unindexed_version_above_the_checkpoint_is_no_problem(
            self, registry: ModelRegistry) -> None:
        """Its writer died before its entry: the next lookup indexes it."""
        mv = registry.register(manifest("fp4"), b"four")
        registry.store.delete(f"{MODEL}/lineage/fp4.json")

        assert check_registry(registry) == []
        report = repair_registry(registry, grace_s=0)
        assert registry.store.exists(f"{MODEL}/lineage/fp4.json")
        assert json.loads(registry.store.get(f"{MODEL}/lineage/_checkpoint.json")) == {
            "through": mv.version}
        assert all(r.kind is None for r in report.repairs)

    def test_checkpoint_past_the_last_version_is_lowered(self, registry: ModelRegistry
                                                         ) -> None:
        key = f"{MODEL}/lineage/_checkpoint.json"
        registry.store.put(key, json.dumps({"through": 40}).encode())

        assert kinds(check_registry(registry)) == [(ProblemKind.LINEAGE_STALE, key)]
        repair_registry(registry, grace_s=0)
        assert json.loads(registry.store.get(key)) == {"through": 3}
        registry.register(manifest("fp4"), b"four")
        registry.store.delete(f"{MODEL}/lineage/fp4.json")
        assert registry.find_by_fingerprint(MODEL, "fp4").version == 4


    def test_sha256_entry_lost_below_the_checkpoint_is_rebuilt(
            self, registry: ModelRegistry) -> None:
        """The sha256 index is what keeps a byte-identical model from being
        registered twice; below the checkpoint a lookup trusts it too."""
        sha = registry.get_version(MODEL, 1).model_sha256
        key = f"{MODEL}/sha256/{sha}.json"
        registry.store.delete(key)
        assert registry.find_by_sha256(MODEL, sha) is None

        problems = check_registry(registry)

        assert kinds(problems) == [(ProblemKind.LINEAGE_STALE, key)]
        assert "its model file is not indexed" in problems[0].detail
        assert repair_registry(registry, grace_s=0).remaining == []
        assert registry.find_by_sha256(MODEL, sha).version == 1

    def test_sha256_entry_naming_other_bytes_is_rebuilt(self, registry: ModelRegistry
                                                        ) -> None:
        sha = registry.get_version(MODEL, 2).model_sha256
        key = f"{MODEL}/sha256/{sha}.json"
        registry.store.put(key, json.dumps({"version": 3}).encode())

        problems = check_registry(registry)

        assert kinds(problems) == [(ProblemKind.LINEAGE_STALE, key)]
        assert "names v3, of another model file; the manifests say v2" in problems[0].detail
        assert repair_registry(registry, grace_s=0).remaining == []
        assert registry.find_by_sha256(MODEL, sha).version == 2


class TestOrphans:
    def test_old_orphaned_blobs_are_removed_and_young_ones_kept(self, store,
                                                                registry: ModelRegistry
                                                                ) -> None:
        """Two registrations died before their manifests: one an hour ago, one now
        (perhaps still uploading)."""
        before = snapshot(registry)
        old, young = f"{MODEL}/blobs/{'a' * 32}/", f"{MODEL}/blobs/{'b' * 32}/"
        for prefix in (old, young):
            store.put(f"{prefix}model.pkl", b"half a model")
            store.put(f"{prefix}plots/roc.png", b"png")
        if isinstance(store, LocalObjectStore):
            for rel in ("model.pkl", "plots/roc.png"):
                age(store, f"{old}{rel}", 2 * HOUR)
            grace = HOUR
        else:  # S3 cannot backdate an object: a grace of 0 makes both old
            grace = 0.0

        problems = check_registry(registry, grace_s=grace)

        expected = [old] if grace else [old, young]
        assert kinds(problems) == [(ProblemKind.ORPHAN_BLOBS, k) for k in expected]
        assert "2 file(s) no manifest references" in problems[0].detail
        report = repair_registry(registry, grace_s=grace)
        assert report.remaining == []
        assert [r.key for r in report.repairs if r.kind] == expected
        assert not store.list(old)
        assert bool(store.list(young)) == bool(grace)
        assert snapshot(registry) == before
        if isinstance(store, LocalObjectStore):
            assert not Path(store.uri(old)).exists()  # the folder goes too

    def test_blobs_are_kept_while_a_manifest_is_unreadable(self, store,
                                                           registry: ModelRegistry) -> None:
        mv = registry.get_version(MODEL, 3)
        store.put(f"{MODEL}/versions/000003.json", b"{garbage")

        report = repair_registry(registry, grace_s=0)

        assert kinds(report.remaining) == [(ProblemKind.MANIFEST_UNREADABLE,
                                            f"{MODEL}/versions/000003.json")]
        assert store.get(mv.model_key) == pickle.dumps({"model": 3})

    def test_partial_writes_of_the_local_store(self, tmp_path: Path) -> None:
        local = LocalObjectStore(tmp_path / "registry")
        registry = populated(local)
        folder = Path(local.uri(f"{MODEL}/events"))
        stale, fresh = folder / ".x.json.aaaa.tmp", folder / ".y.json.bbbb.tmp"
        stale.write_bytes(b"{")
        fresh.write_bytes(b"{")
        age(local, f"{MODEL}/events/{stale.name}", 2 * HOUR)

        problems = check_registry(registry, grace_s=HOUR)

        assert kinds(problems) == [(ProblemKind.PARTIAL_WRITE, f"{MODEL}/events/{stale.name}")]
        assert repair_registry(registry, grace_s=HOUR).remaining == []
        assert not stale.exists() and fresh.exists()
        assert (folder.parent / "aliases" / ".production.json.lock").exists()  # not a leftover

    def test_a_model_whose_only_registration_died_is_checked(self, store,
                                                             registry: ModelRegistry) -> None:
        store.put(f"new-model/blobs/{'c' * 32}/model.pkl", b"x")

        assert models_in(registry) == [MODEL, "new-model"]
        assert kinds(check_registry(registry, grace_s=0)) == [
            (ProblemKind.ORPHAN_BLOBS, f"new-model/blobs/{'c' * 32}/")]
        assert repair_registry(registry, grace_s=0).remaining == []
        assert models_in(registry) == [MODEL]
