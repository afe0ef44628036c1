"""The model registry on a local directory and on S3 (a real moto server on loopback).

Covers: version numbering, manifest round trip (typed records, the input schema among
them) and the refusal of a manifest of the wrong shape, sha256 checks on load, atomicity of
a registration that crashes before its manifest, concurrent registration, aliases
and their history, compare-and-set alias moves, rollbacks and the audit log.
"""

from __future__ import annotations

import json
import multiprocessing
import pickle
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import pytest

from prefab_mlops.core.errors import AliasMovedError, IntegrityError, RegistryError
from prefab_mlops.core.fingerprint import bytes_sha256
from prefab_mlops.core.manifest import (
    BaselineCheck,
    ChampionRecord,
    DataRecord,
    EvaluatedData,
    EvaluationRecord,
    FeatureRecord,
    FitRecord,
    GateRecord,
    ModelVersion,
    RuleCheck,
    RunFacts,
    SplitRecord,
    TrainedRowsRecord,
)
from prefab_mlops.core.provenance import GitInfo
from prefab_mlops.core.registry import DECLINE_EVENT, PROMOTE_EVENT, ModelRegistry
from prefab_mlops.core.schema import CATEGORY_CAP, ColumnKind, ColumnSpec, InputSchema
from prefab_mlops.core.storage import LocalObjectStore, S3Config, S3ObjectStore
from tests.conftest import make_bucket

MODEL = "flights-binary"


def manifest(fingerprint: str = "fp", name: str = MODEL, **extra) -> ModelVersion:
    return ModelVersion(model_name=name, version=0, created_at="", fingerprint=fingerprint,
                        model_key="", model_sha256="", problem_type="binary", **extra)


#: One column of every kind, in an order that is not alphabetical.
SCHEMA = InputSchema((
    ColumnSpec("distance", ColumnKind.NUMERIC, "int64"),
    ColumnSpec.categorical("origin", ["JFK", "EWR", "LGA", "JFK"]),
    ColumnSpec.categorical("tailnum", [f"N{i:05d}" for i in range(CATEGORY_CAP + 5)]),
    ColumnSpec("time_hour", ColumnKind.DATETIME, "datetime64[us, America/New_York]"),
    ColumnSpec("air_time", ColumnKind.NUMERIC, "float64"),
))


GATE = GateRecord(
    passed=False, decided_by=["absolute"],
    summary="FAILED: absolute rule: roc_auc 0.7100 < min 0.8",
    checks=[RuleCheck("baseline", "roc_auc", True, "baseline rule: roc_auc 0.7100 >= 0.5250"),
            RuleCheck("absolute", "roc_auc", False, "absolute rule: roc_auc 0.7100 < min 0.8")],
    rules={"roc_auc": {"min": 0.8, "max": None}},
    baseline=BaselineCheck("roc_auc", "prior", 0.5, 0.525, 0.05, {"roc_auc": 0.5,
                                                                  "log_loss": 0.69}))


def full_manifest() -> ModelVersion:
    """A manifest with every record filled in."""
    return manifest(
        "fp-x", estimator="xgboost.XGBClassifier", params={"n_estimators": 20, "missing": "nan"},
        fit=FitRecord(seconds=1.25, train_rows=3000, best_iteration=17),
        metrics={"roc_auc": 0.71, "f1": 0.42, "n_test": 1000.0},
        confusion_matrix=[[500, 100], [150, 250]],
        gate=GATE,
        champion=ChampionRecord(version=3, status="compared", test_rows=1000, compared_rows=900,
                                excluded_rows=100, checked=True, metrics={"roc_auc": 0.69},
                                challenger_metrics={"roc_auc": 0.71}),
        config={"seed": 42, "model": {"x": 1}},
        data=DataRecord(name="flights", source="pkg://flights.csv", fingerprint="d1",
                        source_fingerprint="s1", snapshot_uri=None, rows=5000,
                        columns=["distance", "origin", "delayed"], time_min="2013-01-01",
                        time_max="2013-12-31",
                        split=SplitRecord(strategy="hash", seed=42, test_size=0.2,
                                          valid_size=0.1, train_rows=3500, valid_rows=500,
                                          test_rows=1000, key=["flight"]),
                        trained_rows=TrainedRowsRecord(columns=["distance"], distinct=3990)),
        features=FeatureRecord(input_schema=SCHEMA, feature_names=["distance", "origin"],
                               classes=[False, True], target="delayed"),
        git=GitInfo(commit="abc", branch="main", dirty=True), packages={"python": "3.11.9"},
        run=RunFacts(flow_run_id="run-1", triggered_by="prefab.model.drift-detected"))


def payload(i: int) -> bytes:
    return pickle.dumps({"weights": [i, i + 1, i + 2], "kind": "stub"})


@pytest.fixture()
def registry(store) -> ModelRegistry:
    return ModelRegistry(store)


def register_n(registry: ModelRegistry, n: int) -> list[ModelVersion]:
    return [registry.register(manifest(f"fp{i}"), payload(i)) for i in range(1, n + 1)]


class TestRegisterNumbering:
    def test_versions_are_numbered_1_2_3(self, registry: ModelRegistry) -> None:
        got = register_n(registry, 3)

        assert [v.version for v in got] == [1, 2, 3]
        assert [v.version for v in registry.versions(MODEL)] == [1, 2, 3]
        assert registry.models() == [MODEL]

    def test_models_are_numbered_independently(self, registry: ModelRegistry) -> None:
        registry.register(manifest("a"), payload(1))
        other = registry.register(manifest("b", name="diamonds-regression"), payload(2))

        assert other.version == 1
        assert registry.models() == ["diamonds-regression", MODEL]

    def test_unknown_version_names_the_existing_ones(self, registry: ModelRegistry) -> None:
        register_n(registry, 2)

        with pytest.raises(RegistryError, match=r"no version 7 \(versions: \[1, 2\]\)"):
            registry.get_version(MODEL, 7)


class TestManifestRoundTrip:
    def test_get_version_returns_what_register_stored(self, registry: ModelRegistry) -> None:
        body = payload(1)
        mv = registry.register(full_manifest(), body,
                               {"plots/roc.png": b"\x89PNG fake", "reference.parquet": b"PAR1"})

        back = registry.get_version(MODEL, mv.version)

        assert back == mv
        assert back.model_sha256 == bytes_sha256(body)
        assert back.created_at
        assert back.metrics == {"roc_auc": 0.71, "f1": 0.42, "n_test": 1000.0}
        assert back.gate == GATE and back.gate.checks[1].passed is False
        assert back.gate.baseline is not None and back.gate.baseline.required == 0.525
        assert back.champion is not None and back.champion.version == 3
        assert back.data.split is not None and back.data.split.key == ["flight"]
        assert back.git == GitInfo(commit="abc", branch="main", dirty=True)
        assert registry.read_file(back, "plots/roc.png") == b"\x89PNG fake"
        assert registry.read_file(back, "reference.parquet") == b"PAR1"
        assert registry.load(MODEL, mv.version).model == pickle.loads(body)

    def test_input_schema_round_trips_in_order_with_every_kind(self, registry: ModelRegistry
                                                                ) -> None:
        mv = registry.register(full_manifest(), payload(1))
        stored = json.loads(registry.store.get(f"{MODEL}/versions/000001.json"))

        schema = registry.get_version(MODEL, mv.version).features.input_schema

        assert schema == SCHEMA
        assert [c["name"] for c in stored["features"]["input_schema"]["columns"]] == [
            "distance", "origin", "tailnum", "time_hour", "air_time"]
        assert schema.names_of(ColumnKind.NUMERIC) == ["distance", "air_time"]
        assert schema["origin"].categories == ("EWR", "JFK", "LGA")
        assert schema["origin"].known_categories == {"EWR", "JFK", "LGA"}
        tail = schema["tailnum"]
        assert len(tail.categories) == CATEGORY_CAP and tail.capped
        assert tail.known_categories is None  # a capped list cannot tell an unknown value
        assert str(schema["time_hour"].tz) == "America/New_York"

    def test_a_manifest_that_would_not_read_back_is_not_written(
            self, registry: ModelRegistry) -> None:
        bad = manifest(metrics={"roc_auc": "0.7"})  # type: ignore[dict-item]

        with pytest.raises(RegistryError, match=r"field 'metrics\.roc_auc': expected a number"):
            registry.register(bad, payload(1))
        assert registry.versions(MODEL) == []

    def test_unknown_file_is_a_registry_error(self, registry: ModelRegistry) -> None:
        mv = registry.register(manifest(), payload(1), {"plots/roc.png": b"png"})

        with pytest.raises(RegistryError, match="has no file 'nope.csv'"):
            registry.read_file(mv, "nope.csv")

    def test_find_by_fingerprint_matches_the_lineage_alone(self, registry: ModelRegistry
                                                           ) -> None:
        registry.register(manifest("fp-a"), payload(1))
        registry.register(manifest("fp-b"), payload(2))
        # same lineage, different pickle bytes (a refit need not be byte-identical)
        registry.register(manifest("fp-a"), payload(3))

        found = registry.find_by_fingerprint(MODEL, "fp-a")
        assert found is not None and found.version == 1  # the earliest one
        assert found.model_sha256 == bytes_sha256(payload(1))
        assert registry.find_by_fingerprint(MODEL, "fp-b").version == 2
        assert registry.find_by_fingerprint(MODEL, "fp-c") is None
        assert registry.find_by_fingerprint("other-model", "fp-a") is None


class TestManifestOfTheWrongShape:
    """A reader never gets a half-parsed manifest: it gets a RegistryError naming the
    version and the field, from every way of reading one."""

    KEY = f"{MODEL}/versions/000001.json"

    def corrupt(self, registry: ModelRegistry, change) -> None:
        registry.register(full_manifest(), payload(1))
        raw = json.loads(registry.store.get(self.KEY))
        change(raw)
        registry.store.put(self.KEY, json.dumps(raw).encode())

    @pytest.mark.parametrize("change, field, found", [
        (lambda m: m["features"]["input_schema"]["columns"][1].update(kind="text"),
         "features.input_schema.columns[1].kind", "found 'text'"),
        (lambda m: m["features"]["input_schema"]["columns"][0].pop("dtype"),
         "features.input_schema.columns[0].dtype", "is missing"),
        (lambda m: m["features"]["input_schema"].update(columns={"distance": {}}),
         "features.input_schema.columns", "expected an array"),
        (lambda m: m["features"]["input_schema"]["columns"][0].update(categories=["a"]),
         "features.input_schema.columns[0]", "numeric, so it has no categories"),
        (lambda m: m["features"]["input_schema"]["columns"].append({
            "name": "origin", "kind": "numeric", "dtype": "int64"}),
         "features.input_schema", "'origin' is listed twice"),
        (lambda m: m["gate"].update(passed="yes"), "gate.passed", "expected a boolean"),
        (lambda m: m["data"].update(rows_total=3), "data.rows_total", "not a field"),
    ])
    def test_every_reader_names_the_version_and_the_field(
            self, registry: ModelRegistry, change, field: str, found: str) -> None:
        self.corrupt(registry, change)

        for read in (lambda: registry.get_version(MODEL, 1), lambda: registry.versions(MODEL),
                     lambda: registry.load(MODEL, 1)):
            with pytest.raises(RegistryError) as exc:
                read()
            text = str(exc.value)
            assert f"{MODEL}:v1" in text and f"field '{field}'" in text and found in text, text
            assert exc.value.fix

    def test_a_manifest_that_is_not_json_is_named(self, registry: ModelRegistry) -> None:
        registry.register(full_manifest(), payload(1))
        registry.store.put(self.KEY, b"{not json")

        with pytest.raises(RegistryError, match=rf"{MODEL}:v1 .* is not JSON"):
            registry.get_version(MODEL, 1)


class TestLoadIntegrity:
    def test_tampered_model_file_is_refused_and_named(self, registry: ModelRegistry) -> None:
        register_n(registry, 2)
        mv = registry.get_version(MODEL, 2)
        data = bytearray(registry.store.get(mv.model_key))
        data[-2] ^= 0xFF  # one flipped byte
        registry.store.put(mv.model_key, bytes(data))

        with pytest.raises(IntegrityError, match=f"{MODEL}:v2") as err:
            registry.load(MODEL, 2)
        assert "tampered" in str(err.value) and err.value.fix
        assert registry.load(MODEL, 1).model == pickle.loads(payload(1))  # v1 untouched

    def test_tampered_production_model_is_refused(self, registry: ModelRegistry) -> None:
        mv = registry.register(manifest(), payload(1))
        registry.set_alias(MODEL, "production", 1)
        registry.store.put(mv.model_key, pickle.dumps({"weights": "evil"}))

        with pytest.raises(IntegrityError, match=f"{MODEL}:v1"):
            registry.load(MODEL, alias="production")

    def test_missing_model_file_is_an_integrity_error(self, store, registry: ModelRegistry
                                                      ) -> None:
        mv = registry.register(manifest(), payload(1))
        if isinstance(store, LocalObjectStore):
            Path(store.uri(mv.model_key)).unlink()
        else:
            store._client.delete_object(Bucket=store.bucket, Key=store._key(mv.model_key))

        with pytest.raises(IntegrityError, match="is missing"):
            registry.load(MODEL, 1)

    def test_load_without_production_alias_says_how_to_fix(self, registry: ModelRegistry
                                                           ) -> None:
        register_n(registry, 1)

        with pytest.raises(RegistryError, match="no 'production' alias") as err:
            registry.load(MODEL)
        assert err.value.fix


class TestRegisterAtomicity:
    def test_crash_before_manifest_leaves_registry_untouched(
            self, registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
        register_n(registry, 2)
        registry.set_alias(MODEL, "production", 1)
        registry.set_alias(MODEL, "production", 2)
        before_versions = [asdict(v) for v in registry.versions(MODEL)]
        before_aliases = {k: asdict(v) for k, v in registry.aliases(MODEL).items()}
        before_events = registry.events(MODEL)
        before_keys = set(registry.store.list(""))

        def crash(key: str, data: bytes) -> bool:
            raise OSError("simulated crash: power lost before the manifest was written")

        monkeypatch.setattr(registry.store, "put_if_absent", crash)
        with pytest.raises(OSError, match="simulated crash"):
            registry.register(manifest("fp-crash"), payload(9), {"plots/roc.png": b"png"})

        new_keys = set(registry.store.list("")) - before_keys
        assert new_keys, "the payload should have been written before the crash"
        assert all(k.startswith(f"{MODEL}/blobs/") for k in new_keys), new_keys
        assert [asdict(v) for v in registry.versions(MODEL)] == before_versions
        assert {k: asdict(v) for k, v in registry.aliases(MODEL).items()} == before_aliases
        assert registry.events(MODEL) == before_events
        assert registry.load(MODEL, alias="production").version.version == 2

        monkeypatch.undo()
        later = registry.register(manifest("fp-later"), payload(10))
        assert later.version == 3
        assert registry.load(MODEL, 3).model == pickle.loads(payload(10))


class TestPutIfAbsent:
    def test_second_create_is_refused_and_first_content_kept(self, store) -> None:
        assert store.put_if_absent("m/versions/000001.json", b"first") is True
        assert store.put_if_absent("m/versions/000001.json", b"second") is False
        assert store.get("m/versions/000001.json") == b"first"
        assert store.list("m/") == ["m/versions/000001.json"]  # no temp files left

    def test_s3_sends_if_none_match(self, s3_env: str) -> None:
        """The raw conditional write against the moto server (no registry code)."""
        import boto3
        from botocore.exceptions import ClientError

        bucket = f"cond-{uuid.uuid4().hex[:12]}"
        make_bucket(s3_env, bucket)
        client = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
        client.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
        with pytest.raises(ClientError) as err:
            client.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*")
        assert err.value.response["Error"]["Code"] == "PreconditionFailed"


def _register_in_process(root: str, n: int) -> list[int]:
    reg = ModelRegistry(LocalObjectStore(root))
    return [reg.register(manifest(f"proc-{uuid.uuid4().hex}"), payload(i)).version
            for i in range(n)]


class TestConcurrentRegistration:
    def test_threads_never_share_a_version_number(self, tmp_path: Path) -> None:
        reg = ModelRegistry(LocalObjectStore(tmp_path / "registry"))
        start = threading.Barrier(6)

        def worker(i: int) -> list[int]:
            start.wait()
            return [reg.register(manifest(f"t{i}-{j}"), payload(j)).version for j in range(4)]

        with ThreadPoolExecutor(6) as pool:
            got = [v for vs in pool.map(worker, range(6)) for v in vs]

        assert sorted(got) == list(range(1, 25))
        on_disk = [json.loads(p.read_text())["version"]
                   for p in sorted((tmp_path / "registry" / MODEL / "versions").iterdir())]
        assert on_disk == list(range(1, 25))
        assert len({v.fingerprint for v in reg.versions(MODEL)}) == 24

    def test_processes_never_share_a_version_number(self, tmp_path: Path) -> None:
        root = str(tmp_path / "registry")
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(3) as pool:
            got = [v for vs in pool.starmap(_register_in_process, [(root, 4)] * 3) for v in vs]

        assert sorted(got) == list(range(1, 13))
        assert [v.version for v in ModelRegistry(LocalObjectStore(root)).versions(MODEL)] == \
            list(range(1, 13))


def count_reads(registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    real_get = registry.store.get

    def get(key: str) -> bytes:
        reads.append(key)
        return real_get(key)

    monkeypatch.setattr(registry.store, "get", get)
    return reads


class TestLineageIndex:
    def test_lookup_reads_one_entry_and_one_manifest(
            self, registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
        register_n(registry, 6)
        reads = count_reads(registry, monkeypatch)
        assert registry.find_by_fingerprint(MODEL, "fp4").version == 4
        assert len(reads) == 2
        assert registry.find_by_fingerprint(MODEL, "never-trained") is None  # checkpoints
        reads.clear()
        assert registry.find_by_fingerprint(MODEL, "never-trained") is None
        assert not [k for k in reads if "/versions/" in k]
        registry.register(manifest("fp-new"), payload(7))
        reads.clear()
        assert registry.find_by_fingerprint(MODEL, "still-never-trained") is None
        assert len([k for k in reads if "/versions/" in k]) == 1  # only the new version

    def test_registering_reads_no_manifest(self, registry: ModelRegistry,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
        register_n(registry, 5)
        reads = count_reads(registry, monkeypatch)
        assert registry.register(manifest("fp-new"), payload(9)).version == 6
        assert not [k for k in reads if "/versions/" in k]

    def test_the_first_version_of_a_lineage_stays_indexed(self, registry: ModelRegistry
                                                          ) -> None:
        first = registry.register(manifest("same"), payload(1))
        registry.register(manifest("same"), payload(2))
        assert registry.find_by_fingerprint(MODEL, "same").version == first.version

    def test_a_version_whose_writer_died_before_its_index_entry_is_found(
            self, tmp_path: Path) -> None:
        root = tmp_path / "registry"
        registry = ModelRegistry(LocalObjectStore(root))
        register_n(registry, 3)
        assert registry.find_by_fingerprint(MODEL, "nothing-yet") is None  # checkpoint: 3
        mv = registry.register(manifest("killed"), payload(4))
        # the writer was killed after the manifest, before the index entry
        (root / MODEL / "lineage" / "killed.json").unlink()
        assert registry.find_by_fingerprint(MODEL, "killed").version == mv.version == 4
        assert (root / MODEL / "lineage" / "killed.json").is_file()  # indexed again


class TestConcurrentAliasUpdates:
    def test_concurrent_promotions_lose_no_update(self, registry: ModelRegistry) -> None:
        """Each promotion appends the alias's previous version to its history, so a
        lost update (last writer wins) would drop a version from current + history."""
        versions = [v.version for v in register_n(registry, 8)]
        start = threading.Barrier(8)

        def promote(v: int) -> None:
            start.wait()
            registry.set_alias(MODEL, "production", v, reason="race")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(promote, versions))

        state = registry.alias(MODEL, "production")
        assert state is not None
        assert sorted([*state.history, state.version]) == versions
        assert len([e for e in registry.events(MODEL) if e.get("reason") == "race"]) == 8

    def test_an_update_that_lost_a_race_is_redone_on_the_new_value(
            self, registry: ModelRegistry) -> None:
        """Another writer changes the alias between our read and our write."""
        register_n(registry, 3)
        registry.set_alias(MODEL, "production", 1)
        key = f"{MODEL}/aliases/production.json"
        real_update = registry.store.update
        calls: list[int | None] = []

        def racing_update(k: str, change):  # type: ignore[no-untyped-def]
            def interfering(raw: bytes | None) -> bytes:
                calls.append(json.loads(raw)["version"] if raw else None)
                if len(calls) == 1:  # a competing promotion to v2 lands right now
                    other = json.loads(raw)
                    other.update(version=2, history=[1])
                    registry.store.put(key, json.dumps(other).encode())
                return change(raw)
            return real_update(k, interfering)

        registry.store.update = racing_update  # type: ignore[method-assign]
        state = registry.set_alias(MODEL, "production", 3)
        if isinstance(registry.store, LocalObjectStore):
            # flock keeps others out; the "competing" write came from inside the lock
            # and is overwritten, as a reader holding the lock would expect
            assert calls == [1]
        else:
            assert calls == [1, 2]  # S3: If-Match failed, the change was redone on v2
            assert (state.version, state.history) == (3, [1, 2])

    def test_s3_update_sends_if_match(self, s3_env: str) -> None:
        import boto3

        bucket = f"cas-{uuid.uuid4().hex[:12]}"
        make_bucket(s3_env, bucket)
        store = S3ObjectStore(bucket, "p", S3Config(endpoint_url=s3_env))
        store.update("k.json", lambda raw: b"1")  # absent: If-None-Match
        client = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
        stale = client.head_object(Bucket=bucket, Key="p/k.json")["ETag"]
        store.update("k.json", lambda raw: raw + b"2")
        with pytest.raises(Exception, match="PreconditionFailed|412"):
            client.put_object(Bucket=bucket, Key="p/k.json", Body=b"x", IfMatch=stale)
        assert store.get("k.json") == b"12"


class TestCompareAndSet:
    """``set_alias(expected=...)`` moves the alias only if it still points at ``expected``."""

    def test_matching_expectation_moves_the_alias(self, registry: ModelRegistry) -> None:
        register_n(registry, 3)
        registry.set_alias(MODEL, "production", 1, expected=None)  # None: no alias yet
        state = registry.set_alias(MODEL, "production", 2, expected=1, event="promote")

        assert (state.version, state.history) == (2, [1])
        last = registry.events(MODEL)[-1]
        assert (last["event"], last["version"], last["previous"]) == ("promote", 2, 1)

    def test_stale_expectation_is_refused_and_nothing_is_written(
            self, registry: ModelRegistry) -> None:
        register_n(registry, 3)
        registry.set_alias(MODEL, "production", 1)
        registry.set_alias(MODEL, "production", 2)  # someone else promoted v2
        before_alias = registry.alias(MODEL, "production")
        before_events = registry.events(MODEL)

        with pytest.raises(AliasMovedError) as err:
            registry.set_alias(MODEL, "production", 3, expected=1, event="promote")

        assert isinstance(err.value, RegistryError)
        assert (err.value.current, err.value.expected) == (2, 1)
        assert "is v2, not v1 as expected" in str(err.value) and "v3" in str(err.value)
        assert "expected=2" in err.value.fix
        assert registry.alias(MODEL, "production") == before_alias
        assert registry.events(MODEL) == before_events

    def test_expecting_no_alias_is_refused_once_one_exists(self, registry: ModelRegistry
                                                           ) -> None:
        register_n(registry, 2)
        registry.set_alias(MODEL, "production", 1)

        with pytest.raises(AliasMovedError, match="is v1, not unset") as err:
            registry.set_alias(MODEL, "production", 2, expected=None)
        assert (err.value.current, err.value.expected) == (1, None)
        assert registry.alias(MODEL, "production").version == 1

    def test_expecting_a_version_of_a_missing_alias_is_refused(self, registry: ModelRegistry
                                                               ) -> None:
        register_n(registry, 2)

        with pytest.raises(AliasMovedError, match="is unset, not v1") as err:
            registry.set_alias(MODEL, "production", 2, expected=1)
        assert err.value.current is None
        assert registry.alias(MODEL, "production") is None

    def test_without_expectation_the_alias_moves_as_before(self, registry: ModelRegistry
                                                           ) -> None:
        register_n(registry, 3)
        registry.set_alias(MODEL, "production", 2)

        assert registry.set_alias(MODEL, "production", 3).version == 3

    def test_of_many_writers_expecting_the_same_champion_exactly_one_wins(
            self, registry: ModelRegistry) -> None:
        """Eight writers all decided against v1 at once: one moves production, every
        other one is told where it went, and no history entry is lost."""
        versions = [v.version for v in register_n(registry, 9)]
        registry.set_alias(MODEL, "production", 1)
        start = threading.Barrier(8)

        def promote(v: int) -> int | None:
            start.wait()
            try:
                registry.set_alias(MODEL, "production", v, expected=1, event="promote")
                return None
            except AliasMovedError as exc:
                return exc.current

        with ThreadPoolExecutor(8) as pool:
            refused = list(pool.map(promote, versions[1:]))

        state = registry.alias(MODEL, "production")
        assert state is not None and state.history == [1]
        assert refused.count(None) == 1
        assert sorted(c for c in refused if c is not None) == [state.version] * 7
        promotions = [e for e in registry.events(MODEL) if e["event"] == "promote"]
        assert [(e["version"], e["previous"]) for e in promotions] == [(state.version, 1)]

    def test_s3_write_that_lands_after_the_read_makes_the_check_fail(self, s3_env: str
                                                                      ) -> None:
        """On S3 the check runs on the content the conditional write replaces: a
        promotion landing between our read and our write fails our ``If-Match``, and
        the check, redone on the new content, refuses. (Locally, ``flock`` keeps other
        writers out between read and write; see the test with eight writers.)"""
        bucket = f"cas-{uuid.uuid4().hex[:12]}"
        make_bucket(s3_env, bucket)
        registry = ModelRegistry(S3ObjectStore(bucket, "p", S3Config(endpoint_url=s3_env)))
        register_n(registry, 3)
        registry.set_alias(MODEL, "production", 1)
        key = f"{MODEL}/aliases/production.json"
        real_update = registry.store.update
        seen: list[int] = []

        def racing_update(k: str, change):  # type: ignore[no-untyped-def]
            def interfering(raw: bytes | None) -> bytes:
                seen.append(json.loads(raw)["version"])
                if len(seen) == 1:  # a competing promotion to v2 lands after our read
                    registry.store.put(key, json.dumps(
                        {**json.loads(raw), "version": 2, "history": [1]}).encode())
                return change(raw)
            return real_update(k, interfering)

        registry.store.update = racing_update  # type: ignore[method-assign]
        with pytest.raises(AliasMovedError) as err:
            registry.set_alias(MODEL, "production", 3, expected=1)

        assert seen == [1, 2]
        assert err.value.current == 2
        assert registry.alias(MODEL, "production").version == 2

    def test_the_error_survives_pickling(self) -> None:
        err = AliasMovedError("moved", current=7, expected=6, fix="decide again")
        back = pickle.loads(pickle.dumps(err))

        assert isinstance(back, AliasMovedError)
        assert (back.current, back.expected, back.fix, str(back)) == (7, 6, "decide again",
                                                                       str(err))


class TestAliases:
    def test_alias_remembers_previous_versions(self, registry: ModelRegistry) -> None:
        register_n(registry, 3)
        for v in (1, 2, 3):
            state = registry.set_alias(MODEL, "production", v)

        assert (state.version, state.history) == (3, [1, 2])
        assert registry.alias(MODEL, "production").history == [1, 2]

    def test_repointing_to_the_same_version_adds_no_history(self, registry: ModelRegistry
                                                            ) -> None:
        register_n(registry, 2)
        registry.set_alias(MODEL, "production", 1)
        registry.set_alias(MODEL, "production", 2)
        state = registry.set_alias(MODEL, "production", 2)

        assert (state.version, state.history) == (2, [1])

    def test_aliases_are_independent(self, registry: ModelRegistry) -> None:
        register_n(registry, 2)
        registry.set_alias(MODEL, "candidate", 2)
        registry.set_alias(MODEL, "production", 1)

        got = {k: v.version for k, v in registry.aliases(MODEL).items()}
        assert got == {"candidate": 2, "production": 1}
        assert registry.alias(MODEL, "staging") is None

    def test_alias_to_unknown_version_is_refused(self, registry: ModelRegistry) -> None:
        register_n(registry, 1)

        with pytest.raises(RegistryError, match="no version 5"):
            registry.set_alias(MODEL, "production", 5)
        assert registry.alias(MODEL, "production") is None


class TestRollback:
    def test_rollback_walks_back_through_history(self, registry: ModelRegistry) -> None:
        register_n(registry, 3)
        for v in (1, 2, 3):
            registry.set_alias(MODEL, "production", v)

        first = registry.rollback(MODEL)
        assert (first.version, first.history) == (2, [1])
        assert registry.load(MODEL).version.version == 2

        second = registry.rollback(MODEL)
        assert (second.version, second.history) == (1, [])
        assert registry.alias(MODEL, "production").version == 1

    def test_rollback_without_history_is_refused_with_a_fix(self, registry: ModelRegistry
                                                            ) -> None:
        register_n(registry, 1)
        registry.set_alias(MODEL, "production", 1)

        with pytest.raises(RegistryError, match="no earlier version") as err:
            registry.rollback(MODEL)
        assert f"prefab promote {MODEL}" in err.value.fix
        assert registry.alias(MODEL, "production").version == 1

    def test_rollback_without_alias_is_refused_with_a_fix(self, registry: ModelRegistry
                                                          ) -> None:
        register_n(registry, 1)

        with pytest.raises(RegistryError, match="has no 'production' alias") as err:
            registry.rollback(MODEL)
        assert err.value.fix


class TestEvents:
    def test_every_change_is_logged_in_order(self, registry: ModelRegistry) -> None:
        register_n(registry, 3)
        for v in (1, 2, 3):
            registry.set_alias(MODEL, "production", v, event="promote", reason=f"to {v}")
        registry.rollback(MODEL, reason="bad v3")
        registry.rollback(MODEL, reason="bad v2")

        got = [(e["event"], e["version"], e.get("previous")) for e in registry.events(MODEL)]
        assert got == [("register", 1, None), ("register", 2, None), ("register", 3, None),
                       ("promote", 1, None), ("promote", 2, 1), ("promote", 3, 2),
                       ("rollback", 2, 3), ("rollback", 1, 2)]
        reasons = [e.get("reason") for e in registry.events(MODEL)][3:]
        assert reasons == ["to 1", "to 2", "to 3", "bad v3", "bad v2"]
        assert all(e["model_name"] == MODEL and e["at"] for e in registry.events(MODEL))

    def test_many_quick_events_keep_their_order(self, registry: ModelRegistry) -> None:
        register_n(registry, 2)
        for i in range(30):
            registry.set_alias(MODEL, "production", 1 + i % 2, event="promote", reason=str(i))

        reasons = [e["reason"] for e in registry.events(MODEL) if e["event"] == "promote"]
        assert reasons == [str(i) for i in range(30)]

    def test_events_within_one_millisecond_keep_their_order(self, registry: ModelRegistry
                                                            ) -> None:
        """Declined promotions are logged back to back, often in the same millisecond."""
        for i in range(100):
            registry.record_event(MODEL, "promotion_declined", version=1, seq=i)

        assert [e["seq"] for e in registry.events(MODEL)] == list(range(100))


class TestSha256Index:
    def test_the_earliest_version_of_these_bytes_is_found(self, registry: ModelRegistry
                                                          ) -> None:
        registry.register(manifest("fp-a"), payload(1))
        registry.register(manifest("fp-b"), payload(2))
        # the low-level write does not deduplicate; the earliest version stays indexed
        registry.register(manifest("fp-c"), payload(1))

        found = registry.find_by_sha256(MODEL, bytes_sha256(payload(1)))
        assert found is not None and (found.version, found.fingerprint) == (1, "fp-a")
        assert registry.find_by_sha256(MODEL, bytes_sha256(payload(2))).version == 2
        assert registry.find_by_sha256(MODEL, bytes_sha256(payload(3))) is None
        assert registry.find_by_sha256("other-model", bytes_sha256(payload(1))) is None

    def test_lookup_reads_one_entry_and_one_manifest(
            self, registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
        register_n(registry, 6)
        reads = count_reads(registry, monkeypatch)
        assert registry.find_by_sha256(MODEL, bytes_sha256(payload(4))).version == 4
        assert len(reads) == 2


def evaluation_of(version: int, passed: bool, auc: float) -> EvaluationRecord:
    return EvaluationRecord(version=version, at="", metrics={"roc_auc": auc},
                            gate=GateRecord(passed=passed, decided_by=["baseline"],
                                            summary="passed" if passed else "FAILED"),
                            run=RunFacts(flow_run_id=f"run-{auc}"))


class TestEvaluations:
    def test_the_registration_is_the_first_evaluation(self, registry: ModelRegistry) -> None:
        gate = GateRecord(passed=False, summary="FAILED")
        mv = registry.register(manifest(metrics={"roc_auc": 0.7}, gate=gate,
                                        data=DataRecord(fingerprint="d1", source="s", rows=10)),
                               payload(1))

        (only,) = registry.evaluations(mv)
        assert (only.version, only.registered, only.at) == (1, True, mv.created_at)
        assert (only.metrics, only.gate, only.data) == (
            {"roc_auc": 0.7}, gate, EvaluatedData(fingerprint="d1", source="s", rows=10))
        assert registry.latest_evaluation(mv) == only

    def test_later_evaluations_are_appended_and_the_latest_wins(
            self, registry: ModelRegistry) -> None:
        v1, v2 = register_n(registry, 2)
        registry.record_evaluation(MODEL, evaluation_of(1, True, 0.71))
        registry.record_evaluation(MODEL, evaluation_of(1, False, 0.69))
        registry.record_evaluation(MODEL, evaluation_of(1, True, 0.72))

        history = registry.evaluations(v1)
        assert [(e.registered, e.metrics.get("roc_auc")) for e in history] == [
            (True, None), (False, 0.71), (False, 0.69), (False, 0.72)]
        assert all(e.at for e in history[1:])
        latest = registry.latest_evaluation(v1)
        assert latest.gate is not None
        assert (latest.gate.passed, latest.run.flow_run_id) == (True, "run-0.72")
        # the manifest is never rewritten; v2 has only its own
        assert registry.get_version(MODEL, 1) == v1
        assert len(registry.evaluations(v2)) == 1
        assert registry.latest_evaluations(MODEL, [v1, v2]) == {
            1: latest, 2: registry.latest_evaluation(v2)}
        audit = [(e["event"], e["version"], e.get("gate_passed"))
                 for e in registry.events(MODEL) if e["event"] == "evaluate"]
        assert audit == [("evaluate", 1, True), ("evaluate", 1, False), ("evaluate", 1, True)]

    def test_an_unknown_version_cannot_be_evaluated(self, registry: ModelRegistry) -> None:
        register_n(registry, 1)
        with pytest.raises(RegistryError, match="no version 5"):
            registry.record_evaluation(MODEL, evaluation_of(5, True, 0.7))

    def test_latest_evaluations_list_once(self, registry: ModelRegistry,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        versions = register_n(registry, 5)
        registry.record_evaluation(MODEL, evaluation_of(2, True, 0.7))
        registry.record_evaluation(MODEL, evaluation_of(4, True, 0.7))
        lists: list[str] = []
        real_list = registry.store.list

        def listing(prefix: str) -> list[str]:
            lists.append(prefix)
            return real_list(prefix)

        monkeypatch.setattr(registry.store, "list", listing)
        reads = count_reads(registry, monkeypatch)
        latest = registry.latest_evaluations(MODEL, versions)
        assert [latest[v].registered for v in range(1, 6)] == [True, False, True, False, True]
        assert len(lists) == 1 and len(reads) == 2


class TestDecisions:
    def test_the_latest_decision_on_each_version(self, registry: ModelRegistry) -> None:
        register_n(registry, 3)
        registry.record_event(MODEL, DECLINE_EVENT, version=2, reason="gate failed")
        registry.set_alias(MODEL, "production", 2, event=PROMOTE_EVENT, reason="better")
        registry.record_event(MODEL, DECLINE_EVENT, version=3, reason="worse")
        registry.set_alias(MODEL, "production", 3, event=PROMOTE_EVENT, reason="by hand")
        registry.rollback(MODEL, reason="oops")  # a rollback is no decision on a version

        decisions = registry.decisions(MODEL)
        assert sorted(decisions) == [2, 3]
        assert (decisions[2]["event"], decisions[2]["reason"]) == (PROMOTE_EVENT, "better")
        assert (decisions[3]["event"], decisions[3]["reason"]) == (PROMOTE_EVENT, "by hand")


class TestRecordsSurviveACrash:
    """A writer that dies right after its commit leaves nothing unrecorded: the
    register event is the manifest, a move's event travels in its alias file."""

    def test_registration_that_died_before_its_index_entry_is_logged(
            self, registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
        register_n(registry, 1)

        def crash(key: str, data: bytes) -> bool:
            if "/versions/" in key:
                return real(key, data)
            raise OSError("simulated crash after the manifest")

        real = registry.store.put_if_absent
        monkeypatch.setattr(registry.store, "put_if_absent", crash)
        with pytest.raises(OSError, match="simulated crash"):
            registry.register(manifest("fp-killed"), payload(2))
        monkeypatch.undo()

        got = [(e["event"], e["version"], e.get("fingerprint")) for e in registry.events(MODEL)]
        assert got == [("register", 1, "fp1"), ("register", 2, "fp-killed")]
        assert registry.find_by_fingerprint(MODEL, "fp-killed").version == 2

    @pytest.mark.parametrize("move", ["promote", "rollback"])
    def test_move_that_died_before_its_event_file_is_logged(
            self, registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch, move: str) -> None:
        register_n(registry, 3)
        registry.set_alias(MODEL, "production", 1, event="promote")
        registry.set_alias(MODEL, "production", 2, event="promote")
        real = registry.store.put

        def crash(key: str, data: bytes) -> None:
            if "/events/" in key:
                raise OSError("simulated crash after the alias moved")
            real(key, data)

        monkeypatch.setattr(registry.store, "put", crash)
        with pytest.raises(OSError, match="simulated crash"):
            if move == "promote":
                registry.set_alias(MODEL, "production", 3, event="promote", reason="better")
            else:
                registry.rollback(MODEL, reason="bad v2")
        monkeypatch.undo()
        state = registry.alias(MODEL, "production")
        assert state is not None and state.version == (3 if move == "promote" else 1)

        last = registry.events(MODEL)[-1]
        assert (last["event"], last["version"], last["previous"], last["seq"]) == (
            move, state.version, 2, 3)
        assert last["reason"] == ("better" if move == "promote" else "bad v2")
        event_file = f"{MODEL}/events/{state.event_id}.json"
        assert not registry.store.exists(event_file)
        registry.set_alias(MODEL, "production", 2, event="promote")  # the next move
        assert json.loads(registry.store.get(event_file)) == last
        seqs = [e["seq"] for e in registry.events(MODEL) if e.get("alias") == "production"]
        assert seqs == [1, 2, 3, 4]
