"""prefab_mlops.orchestration.runtime: cached task results on disk, and in-process run settings."""

from __future__ import annotations

import json
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prefect import flow, task
from prefect.cache_policies import TASK_SOURCE, CachePolicy
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from prefab_mlops.config import CacheConfig, OrchestrationConfig
from prefab_mlops.core.errors import CacheError
from prefab_mlops.orchestration.caching import LineagePolicy, RawPickleSerializer
from prefab_mlops.orchestration.payloads import Payload
from prefab_mlops.orchestration.runtime import configure, in_process_run

pytestmark = pytest.mark.usefixtures("prefect_harness")

CALLS: list[int] = []


@task
def make_frame(n: int) -> pd.DataFrame:
    CALLS.append(n)
    rng = np.random.default_rng(n)
    return pd.DataFrame({"x": rng.normal(size=n), "cat": rng.choice(["a", "b"], size=n)})


def orchestration(storage: Path) -> OrchestrationConfig:
    return OrchestrationConfig(cache=CacheConfig(result_storage=str(storage)))


def run_cached(storage: Path, n: int, **task_options: Any) -> tuple[pd.DataFrame, str]:
    @flow
    def f() -> tuple[pd.DataFrame, str]:
        t = configure(make_frame, "featurize", orchestration(storage), cache=True)
        if task_options:
            t = t.with_options(**task_options)
        state = t(n, return_state=True)
        return state.result(), state.name

    return f()


class TestResultFiles:
    def test_results_are_raw_pickle_and_hit_across_runs(self, tmp_path: Path) -> None:
        CALLS.clear()
        first, state1 = run_cached(tmp_path, 5000)
        second, state2 = run_cached(tmp_path, 5000)
        assert (state1, state2) == ("Completed", "Cached")
        assert CALLS == [5000]
        pd.testing.assert_frame_equal(first, second)

        results = [p for p in tmp_path.iterdir() if p.is_file()]
        records = list((tmp_path / "_records").iterdir())
        assert len(results) == 1 and len(records) == 1
        blob = results[0].read_bytes()
        assert blob[:2] == b"\x80\x05"  # a pickle (protocol 5), not base64 text
        pd.testing.assert_frame_equal(pickle.loads(blob), first)
        meta = json.loads(records[0].read_bytes())
        assert meta["serializer"]["type"] == "prefab-raw-pickle"

    def test_reads_results_cached_by_prefect_pickle_serializer(self, tmp_path: Path) -> None:
        """A cache written before the raw serializer (base64 pickle) still hits."""
        CALLS.clear()
        old_policy: CachePolicy = LineagePolicy().configure(key_storage=tmp_path / "_records")
        (tmp_path / "_records").mkdir()
        _, state1 = run_cached(tmp_path, 300, result_serializer="pickle",
                               cache_policy=old_policy)
        blob = next(p for p in tmp_path.iterdir() if p.is_file()).read_bytes()
        assert blob[:2] != b"\x80\x05"
        frame, state2 = run_cached(tmp_path, 300)
        assert (state1, state2) == ("Completed", "Cached")
        assert CALLS == [300] and len(frame) == 300

    def test_serializer_round_trip(self) -> None:
        value = {"a": np.arange(10), "b": [1, "x"]}
        s = RawPickleSerializer()
        back = s.loads(s.dumps(value))
        assert back["b"] == [1, "x"] and np.array_equal(back["a"], value["a"])

    def test_block_storage_keeps_prefect_default_serializer(self) -> None:
        """Raw bytes cannot go into a JSON record, so only local storage gets them."""
        t = configure(make_frame, "featurize",
                      OrchestrationConfig(cache=CacheConfig(
                          result_storage="block:s3-bucket/cache")), cache=True)
        assert not isinstance(t.result_serializer, RawPickleSerializer)
        assert t.cache_policy is not TASK_SOURCE


@dataclass
class Holder:
    """Shaped like Dataset/FeatureSet: facts as fields, big values in a payload."""

    payload: Payload
    rows: int
    fingerprint: str


@task
def produce(n: int) -> Holder:
    CALLS.append(n)
    return Holder(Payload(big=np.arange(n, dtype="float64"), other=list(range(5))), n,
                  f"fp-{n}")


@task
def consume(holder: Holder) -> int:
    CALLS.append(-1)
    return int(holder.payload["big"].sum())


def run_pipeline(storage: Path, n: int) -> tuple[Holder, int, list[str]]:
    @flow
    def f() -> tuple[Holder, int, list[str]]:
        orch = orchestration(storage)
        s1 = configure(produce, "featurize", orch, cache=True)(n, return_state=True)
        holder = s1.result()
        s2 = configure(consume, "train", orch, cache=True)(holder, return_state=True)
        return holder, s2.result(), [s1.name, s2.name]

    return f()


class TestPayloads:
    def test_cached_rerun_leaves_payloads_on_disk(self, tmp_path: Path) -> None:
        CALLS.clear()
        holder, total, states = run_pipeline(tmp_path, 1000)
        assert states == ["Completed", "Completed"] and holder.payload.loaded("big")
        files = list((tmp_path / "_payloads").iterdir())
        assert len(files) == 2  # big and other, each in a file of its own

        holder, total2, states = run_pipeline(tmp_path, 1000)
        assert states == ["Cached", "Cached"] and CALLS == [1000, -1]
        assert total2 == total == sum(range(1000))
        # neither the cache hit, nor Prefect passing it on to `consume`, nor the
        # cache key of `consume` read the big values
        assert not holder.payload.loaded("big") and not holder.payload.loaded("other")
        assert holder.rows == 1000
        np.testing.assert_array_equal(holder.payload["big"], np.arange(1000))
        assert holder.payload.loaded("big") and not holder.payload.loaded("other")

    def test_ordinary_pickle_carries_the_values(self, tmp_path: Path) -> None:
        run_pipeline(tmp_path, 50)
        holder, _, _ = run_pipeline(tmp_path, 50)
        assert not holder.payload.loaded("big")
        copy = pickle.loads(pickle.dumps(holder))
        for f in (tmp_path / "_payloads").iterdir():
            f.unlink()
        np.testing.assert_array_equal(copy.payload["big"], np.arange(50))

    def test_missing_payload_file_names_it_and_the_fix(self, tmp_path: Path) -> None:
        run_pipeline(tmp_path, 60)
        holder, _, _ = run_pipeline(tmp_path, 60)
        for f in (tmp_path / "_payloads").iterdir():
            f.unlink()
        with pytest.raises(CacheError, match="no longer exists") as err:
            holder.payload["big"]
        assert "_payloads" in str(err.value) and "--refresh-cache" in str(err.value)

    def test_truncated_payload_file_is_refused(self, tmp_path: Path) -> None:
        run_pipeline(tmp_path, 70)
        holder, _, _ = run_pipeline(tmp_path, 70)
        for f in (tmp_path / "_payloads").iterdir():
            f.write_bytes(f.read_bytes()[:-3])
        with pytest.raises(CacheError, match="bytes; .* were written"):
            holder.payload["big"]


def _runs_heartbeat_loop(thread: threading.Thread) -> bool:
    # Prefect starts it as Thread(target=context.run, args=(heartbeat_loop,))
    args = getattr(thread, "_args", ())
    return any(getattr(a, "__name__", "") == "heartbeat_loop" for a in args)


def heartbeat_threads_during_a_run() -> list[str]:
    @flow
    def probe() -> list[str]:
        return [t.name for t in threading.enumerate() if _runs_heartbeat_loop(t)]

    return probe()


class TestInProcessRun:
    """The session's harness runs inside in_process_run (tests/conftest.py), so
    each test first restores Prefect's default heartbeat setting."""

    def test_prefect_default_starts_a_heartbeat_thread(self) -> None:
        with temporary_settings(restore_defaults={PREFECT_FLOWS_HEARTBEAT_FREQUENCY}):
            assert heartbeat_threads_during_a_run()

    def test_no_heartbeat_thread_in_process(self) -> None:
        with temporary_settings(restore_defaults={PREFECT_FLOWS_HEARTBEAT_FREQUENCY}):
            with in_process_run():
                assert heartbeat_threads_during_a_run() == []
            assert heartbeat_threads_during_a_run()  # restored afterwards

    def test_heartbeats_configured_in_the_environment_are_kept(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "60")
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 60}), in_process_run():
            assert heartbeat_threads_during_a_run()
