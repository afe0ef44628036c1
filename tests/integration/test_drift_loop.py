"""The self-running loop on real components: a real ``prefect server`` on loopback,
deployments from ``prefect.yaml``, a real process worker, real flights data.

train deployment → production v1
monitor on a stable batch  → no drift, no retraining run
new (drifted) data lands, monitor on it → drift event → automation →
retrain-on-drift run completes → v2 registered; a storm of 50 events → still one run.
Deployed three times, twice at once: one of each schedule and automation.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.storage import LocalObjectStore
from prefab_mlops.testing.flights_batches import drifted_batch, flights, stable_batch, train_batch
from prefab_mlops.testing.local_prefect import PrefectServer, ProcessWorker, prefect_cli, wait_final
from prefab_mlops.testing.projects import make_project

REPO = Path(__file__).resolve().parents[2]
MODEL = "flights-binary"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def deployment_runs(client, name: str):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    dep = client.read_deployment_by_name(name)
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))


def test_drift_triggers_one_retraining_and_stable_data_none(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    conf = make_project(tmp_path / "proj")
    raw = flights()
    train_batch(raw, 40_000).to_csv(tmp_path / "proj" / "data" / "flights.csv", index=False)
    stable = tmp_path / "stable.csv"
    stable_batch(raw, 20_000).to_csv(stable, index=False)
    drifted = tmp_path / "drifted.csv"
    drifted_batch(raw, 20_000).to_csv(drifted, index=False)
    registry = ModelRegistry(LocalObjectStore(tmp_path / "proj" / "registry"))

    with PrefectServer(tmp_path / "server") as server:
        env = server.client_env(tmp_path / "client", PREFAB_CONFIG_DIR=str(conf))
        prefect_cli(["work-pool", "create", "prefab-process", "--type", "process"], env, REPO)
        prefect_cli(["--no-prompt", "deploy", "--all"], env, REPO)
        # two more deploys at once: still one of each schedule and automation
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _: prefect_cli(["--no-prompt", "deploy", "--all"], env, REPO),
                          range(2)))
        with temporary_settings({PREFECT_API_URL: server.url}), \
                get_client(sync_client=True) as client:
            autos = client.read_automations()
            assert [a.name for a in autos].count("retrain-on-drift__automation_1") == 1
            for name, n in [("training/train", 1), ("monitoring/monitor", 1),
                            ("batch-inference/batch-predict", 1),
                            ("training/retrain-on-drift", 0)]:
                assert len(client.read_deployment_by_name(name).schedules) == n, name

            with ProcessWorker("prefab-process", env, REPO, tmp_path / "worker.log"):
                fr = run_deployment("training/train", timeout=0)
                fr = wait_final(client, fr.id)
                assert fr.state.is_completed(), (tmp_path / "worker.log").read_text()[-4000:]
                assert registry.alias(MODEL, "production").version == 1

                # (b) a batch without drift: no retraining run appears
                fr = run_deployment("monitoring/monitor", parameters={"batch_uri": str(stable)},
                                    timeout=0)
                assert wait_final(client, fr.id).state.is_completed()
                assert registry.events(MODEL)[-1]["event"] == "drift_checked"
                time.sleep(12)
                assert deployment_runs(client, "training/retrain-on-drift") == []

                # (a) new, drifted data lands in the source and monitoring sees it
                landed = pd.concat([pd.read_csv(tmp_path / "proj" / "data" / "flights.csv"),
                                    pd.read_csv(drifted)])
                landed.to_csv(tmp_path / "proj" / "data" / "flights.csv", index=False)
                fr = run_deployment("monitoring/monitor", parameters={"batch_uri": str(drifted)},
                                    timeout=0)
                assert wait_final(client, fr.id).state.is_completed()
                drift = [e for e in registry.events(MODEL) if e["event"] == "drift_detected"]
                assert len(drift) == 1 and drift[0]["event_id"]
                assert {"distance", "sched_dep_time"} <= set(drift[0]["drifted_columns"])

                deadline = time.monotonic() + 60
                while not (runs := deployment_runs(client, "training/retrain-on-drift")):
                    assert time.monotonic() < deadline, "no retraining run was created"
                    time.sleep(0.5)
                assert len(runs) == 1
                assert "drift-detected" in runs[0].parameters["triggered_by"]
                done = wait_final(client, runs[0].id)
                assert done.state.is_completed(), (tmp_path / "worker.log").read_text()[-4000:]
                versions = registry.versions(MODEL)
                assert [v.version for v in versions] == [1, 2]
                assert "drift-detected" in (versions[-1].run.triggered_by or "")

                # a burst of further drift events within the cooldown: still one run
                from prefect.events import emit_event

                for _ in range(50):  # a storm
                    emit_event(event="prefab.model.drift-detected",
                               resource={"prefect.resource.id": f"prefab.model.{MODEL}"},
                               payload={"model_name": MODEL, "drift_share": 0.9})
                time.sleep(8)
                assert len(deployment_runs(client, "training/retrain-on-drift")) == 1
