"""A serving soak: 20 s of real traffic while ``production`` is promoted and rolled back.

A real 2-worker server (``python -m prefab_mlops.serve``) on its own registry copy;
the load comes from a separate process (``python -m prefab_mlops.testing.soak``:
httpx over loopback, bounded in time and in requests); the test moves the alias
every 2.5 s with ``ModelRegistry.set_alias`` and ``rollback`` and samples the
workers' summed RSS from ``/proc`` every second after a warm-up that covers one
promotion and one rollback (both versions loaded once).

The figures are printed (``soak figures: {...}``; shown with ``pytest -s`` or ``-rP``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.storage import LocalObjectStore
from prefab_mlops.testing.local_prefect import free_port
from prefab_mlops.testing.records import to_records
from prefab_mlops.testing.soak import AliasMover, LoadProcess, RssSampler, worker_pids
from tests.serve.conftest import MODEL, ServedProject, ServerProcess

pytestmark = pytest.mark.slow  # a real server for 20 s

SOAK_S = 20.0
MOVE_EVERY_S = 2.5
WARMUP_S = 6.0  # one promotion and one rollback: both versions have been loaded once
MAX_REQUESTS = 40_000  # a bound on the load, far above what 20 s on 2 shared cores allow
RSS_GROWTH_BOUND_MB = 50.0


class TestSoak:
    def test_promotions_and_rollbacks_under_load_fail_nothing_and_leak_nothing(
            self, served_project: ServedProject, tmp_path: Path) -> None:
        registry_dir = served_project.registry_copy(tmp_path / "registry")
        registry = ModelRegistry(LocalObjectStore(registry_dir))
        registry.set_alias(MODEL, "production", 1, reason="soak start")
        server = ServerProcess(registry_dir, free_port(), tmp_path / "server.log",
                               "--poll-seconds", "0.5", "--log-level", "warning", workers=2)
        rows = served_project.test_X.head(64)
        records = to_records(rows)
        # 1-, 3- and 8-row requests over 64 real rows: payload k starts at row starts[k]
        sizes = [1, 3, 8]
        starts = [(k * 5) % 56 for k in range(48)]
        payloads = [records[s:s + sizes[k % 3]] for k, s in enumerate(starts)]
        server.start()
        try:
            reloads_before = server.metric("prefab_serve_model_reloads_total",
                                           'result="loaded"')
            workers_before = worker_pids(server.proc.pid)
            assert len(workers_before) == 2, workers_before
            mover = AliasMover(registry, MODEL, (1, 2), MOVE_EVERY_S)
            sampler = RssSampler(server.proc.pid, warmup=WARMUP_S)
            load = LoadProcess(server.url, payloads, tmp_path, SOAK_S, MAX_REQUESTS)
            load.start()
            mover.start()
            sampler.start()
            try:
                report = load.wait()
            finally:
                mover.stop()
                sampler.stop()
                load.stop()
            workers_after = worker_pids(server.proc.pid)
            time.sleep(1.0)  # two polls: the last move is picked up before counting
            reloads = server.metric("prefab_serve_model_reloads_total",
                                    'result="loaded"') - reloads_before
            refused = server.metric("prefab_serve_model_reloads_total", 'result="refused"')
        finally:
            server.stop()
        memory = sampler.summary()
        figures = {"requests": report.requests, "failed": report.failed,
                   "seconds": report.seconds, "versions": report.versions,
                   "statuses": report.statuses, "alias_moves": len(mover.moves),
                   "worker_reloads": reloads, "refused_reloads": refused,
                   "production_versions": sorted(mover.production),
                   "rss_growth_mb": memory["growth_mb"],
                   "rss": {k: v for k, v in memory.items() if k != "all_mb"},
                   "rss_samples_mb": memory.get("all_mb")}
        print("\nsoak figures:", json.dumps(figures))

        assert not mover.errors and not sampler.errors, (mover.errors, sampler.errors)
        assert report.failed == 0, (report.failures, server.log())
        assert report.statuses == {"200": report.requests}, report.statuses
        assert report.requests > 100, report  # the load really ran
        # every answer came from a version that was production during the soak, and both did
        served = {int(v) for v in report.versions}
        assert served <= mover.production, (served, mover.production)
        assert served == {1, 2}, report.versions
        assert len(mover.moves) >= 6, mover.moves  # 20 s / 2.5 s, minus the last one
        assert refused == 0 and reloads >= 2, (refused, reloads)
        # each version answered as the registered model does, every time
        assert report.inconsistent == 0
        for key, proba in report.first_answers.items():
            k, version = (int(x) for x in key.split(":"))
            frame = rows.iloc[starts[k]:starts[k] + sizes[k % 3]]
            np.testing.assert_allclose(proba, served_project.expected_proba(version, frame),
                                       rtol=1e-6, atol=1e-7)
        # no worker died or was replaced, and their memory did not grow
        assert workers_after == workers_before
        assert memory["worker_pid_sets"] == 1, sampler.pids
        assert memory["growth_mb"] is not None, memory
        assert memory["growth_mb"] < RSS_GROWTH_BOUND_MB, memory
