"""Registry writers SIGKILLed at every write of their write paths, on a local
directory and on S3 (a real moto server on loopback), and eight registrations in
eight processes at once.

After each kill (see ``prefab_mlops.testing.registry_crash``): ``registry check``
finds nothing but orphans, which ``--repair`` removes; production points at a
complete version; no earlier manifest changed; the audit log shows every version
and every alias move.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest

from prefab_mlops.core.registry import PRODUCTION_ALIAS, ModelRegistry
from prefab_mlops.core.registry_check import check_registry
from prefab_mlops.testing.registry_crash import (
    MODEL,
    STEPS,
    StoreSpec,
    die_at_step,
    inspect_after_kill,
    kill_at_random,
    manifests,
    promote,
    register_concurrently,
    spawn_writer,
    training_like,
)
from tests.conftest import make_bucket

# The steps that leave an orphaned blob folder behind, on either store.
ORPHANING = {"blob-written", "files-written", "manifest-before"}
# On S3 a write lands whole or not at all: these leave nothing there.
PARTIAL = {"blob-partial", "checkpoint-partial", "promote-event-partial",
           "rollback-event-partial"}
# One step of each write path (register, lineage lookup, promote, rollback) on S3;
# every step runs on the local store.
S3_STEPS = ["files-written", "manifest-written", "lookup-indexed", "promote-committed",
            "rollback-committed"]


def local_spec(tmp_path: Path) -> StoreSpec:
    return StoreSpec("local", root=str(tmp_path / "registry"))


def s3_spec(endpoint: str) -> StoreSpec:
    bucket = f"crash-{uuid.uuid4().hex[:12]}"
    make_bucket(endpoint, bucket)
    return StoreSpec("s3", bucket=bucket, prefix="prefab/registry", endpoint=endpoint)


@pytest.fixture(params=["local", "s3"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    if request.param == "local":
        return local_spec(tmp_path)
    return s3_spec(request.getfixturevalue("s3_env"))


def seeded(spec: StoreSpec) -> ModelRegistry:
    """Two versions, production promoted to v1 then v2."""
    registry = ModelRegistry(spec.open())
    rng = random.Random(7)
    for i in range(2):
        mv = registry.register(*training_like(MODEL, f"seed-{i}", rng))
        assert promote(registry, MODEL, mv.version, reason="seed")
    return registry


def kill_at(spec: StoreSpec, step: str) -> tuple[ModelRegistry, dict[str, bytes]]:
    """Seed a registry, run a writer that dies at ``step``; returns the registry and
    its manifests from before the writer."""
    registry = seeded(spec)
    before = manifests(registry.store)
    die_at_step(spawn_writer(spec, die_at=step, seed=1))
    return registry, before


def assert_consistent_after_kill(registry: ModelRegistry, before: dict[str, bytes],
                                 step: str, on_s3: bool) -> None:
    outcome = inspect_after_kill(registry, before)

    assert outcome.inconsistent == []
    assert outcome.unrecorded == []
    kinds = {p.kind.value for p in outcome.leftovers}
    if step in ORPHANING:
        assert kinds == {"orphan-blobs"}
    elif step in PARTIAL and not on_s3:
        assert kinds == {"partial-write"}
    else:
        assert kinds == set()
    assert check_registry(registry, grace_s=0) == []


class TestKillAtEveryStep:
    @pytest.mark.parametrize("step", list(STEPS))
    def test_local(self, tmp_path: Path, step: str) -> None:
        registry, before = kill_at(local_spec(tmp_path), step)
        assert_consistent_after_kill(registry, before, step, on_s3=False)

    @pytest.mark.parametrize("step", S3_STEPS)
    def test_s3(self, s3_env: str, step: str) -> None:
        registry, before = kill_at(s3_spec(s3_env), step)
        assert_consistent_after_kill(registry, before, step, on_s3=True)


class TestWhatTheNextWriterSees:
    def test_a_promotion_killed_before_its_event_file_is_in_the_log(self, spec: StoreSpec
                                                                    ) -> None:
        registry, _ = kill_at(spec, "promote-committed")
        state = registry.alias(MODEL, PRODUCTION_ALIAS)
        assert state is not None and state.version == 3
        assert not registry.store.exists(f"{MODEL}/events/{state.event_id}.json")

        last = registry.events(MODEL)[-1]
        assert (last["event"], last["version"], last["previous"], last["seq"]) == (
            "promote", 3, 2, 3)
        die_at_step(spawn_writer(spec, die_at="promote-committed", seed=2))
        # the next promotion wrote the event file of the one before, then moved
        assert registry.store.exists(f"{MODEL}/events/{state.event_id}.json")
        assert [e["seq"] for e in registry.events(MODEL) if e.get("alias")] == [1, 2, 3, 4]

    def test_a_registration_killed_before_its_index_entry_is_not_registered_again(
            self, spec: StoreSpec) -> None:
        registry, _ = kill_at(spec, "manifest-written")
        assert [v.fingerprint for v in registry.versions(MODEL)] == [
            "seed-0", "seed-1", "lineage-1-0"]
        assert not registry.store.exists(f"{MODEL}/lineage/lineage-1-0.json")

        writer = spawn_writer(spec, iterations=1, seed=1)  # the same run, retried
        _, err = writer.communicate(timeout=120)

        assert writer.returncode == 0, err
        assert [v.fingerprint for v in registry.versions(MODEL)] == [
            "seed-0", "seed-1", "lineage-1-0"]
        assert registry.alias(MODEL, PRODUCTION_ALIAS).version == 3


class TestRandomKills:
    def test_three_kills_at_random_times(self, spec: StoreSpec) -> None:
        registry = seeded(spec)
        rng = random.Random(12)
        for trial in range(3):
            before = manifests(registry.store)
            kill_at_random(spawn_writer(spec, seed=100 + trial), rng, window=1.5)
            outcome = inspect_after_kill(registry, before)
            assert (outcome.inconsistent, outcome.unrecorded) == ([], []), trial


class TestConcurrentRegistrations:
    def test_eight_processes_get_distinct_versions_and_lose_none(self, spec: StoreSpec
                                                                 ) -> None:
        outcome = register_concurrently(spec, processes=8)

        assert outcome.lost == []
        assert sorted(outcome.versions) == list(range(1, 9))
        assert outcome.problems == []
        registry = ModelRegistry(spec.open())
        events = registry.events(MODEL)
        assert sorted(e["version"] for e in events if e["event"] == "register") == list(
            range(1, 9))
        state = registry.alias(MODEL, PRODUCTION_ALIAS)
        promotions = [e for e in events if e["event"] == "promote"]
        assert state is not None and [e["seq"] for e in promotions] == list(
            range(1, state.seq + 1))
        assert promotions[-1]["version"] == state.version
