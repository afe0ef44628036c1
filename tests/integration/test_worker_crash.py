"""A process worker killed mid-run, on real components: a real ``prefect server`` on
loopback, the deployments of ``prefect.yaml`` (their heartbeat setting included), the
crash-detection automation ``make deploy`` installs, real process workers, real flights.

The train deployment's run is paused in a project step (after ingest), stays Running past
the automation's window (its heartbeats keep it alive), and then the worker and its
flow-run process are SIGKILLed there. Prefect marks the run Crashed once its
heartbeats stop; a new worker then runs the deployment's next run to completion, and the
registry holds exactly that version with ``registry check`` finding nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.registry_check import check_registry
from prefab_mlops.core.storage import LocalObjectStore
from prefab_mlops.orchestration.crash_detection import AUTOMATION_NAME, WITHIN_S
from prefab_mlops.testing.flights_batches import flights, train_batch
from prefab_mlops.testing.local_prefect import PrefectServer, ProcessWorker, prefect_cli, wait_final
from prefab_mlops.testing.projects import make_project

REPO = Path(__file__).resolve().parents[2]
MODEL = "flights-binary"
# ~5 min: server start, two training runs, a live run held past WITHIN_S, WITHIN_S of
# silence after the kill
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PAUSE_STEP = '''\
import os
import time
from pathlib import Path

import pandas as pd


def pause(frame: pd.DataFrame, seconds: float = 0.0, marker: str = "") -> pd.DataFrame:
    """Writes this process's pid to ``marker``, then sleeps ``seconds``."""
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return frame
'''


def _project(root: Path, marker: Path) -> Path:
    conf = make_project(root)
    train_batch(flights(), 20_000).to_csv(root / "data" / "flights.csv", index=False)
    (root / "crashsteps").mkdir()
    (root / "crashsteps" / "__init__.py").write_text("")
    (root / "crashsteps" / "pause.py").write_text(PAUSE_STEP)
    local = conf / "local" / "default.yaml"
    settings = yaml.safe_load(local.read_text().split("\n", 1)[1])
    settings["allowed_targets"] = ["crashsteps"]
    settings["steps"] = {"pause": {"hook": "after_ingest", "_target_": "crashsteps.pause.pause",
                                   "params": {"seconds": 0, "marker": str(marker)}}}
    local.write_text("# @package _global_\n" + yaml.safe_dump(settings, sort_keys=False))
    return conf


def _wait_for(path: Path, proc_alive: ProcessWorker, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc_alive.proc is not None and proc_alive.proc.poll() is None, \
            log.read_text()[-4000:]
        assert time.monotonic() < deadline, f"the run never reached its step:\n" \
            f"{log.read_text()[-4000:]}"
        time.sleep(0.2)


def test_a_killed_worker_run_is_crashed_and_the_next_run_completes(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    marker = tmp_path / "paused.pid"
    conf = _project(tmp_path / "proj", marker)
    registry = ModelRegistry(LocalObjectStore(tmp_path / "proj" / "registry"))

    with PrefectServer(tmp_path / "server") as server:
        env = server.client_env(tmp_path / "client", PREFAB_CONFIG_DIR=str(conf))
        prefect_cli(["work-pool", "create", "prefab-process", "--type", "process"], env, REPO)
        prefect_cli(["--no-prompt", "deploy", "--all"], env, REPO)
        # what `make deploy` runs after the deploy, twice: one automation, not two
        for _ in range(2):
            subprocess.run([sys.executable, "-m", "prefab_mlops.orchestration.crash_detection"],
                           env=env, cwd=REPO, check=True, capture_output=True, timeout=120)
        with temporary_settings({PREFECT_API_URL: server.url}), \
                get_client(sync_client=True) as client:
            assert len(client.read_automations_by_name(AUTOMATION_NAME)) == 1

            first_log = tmp_path / "worker-1.log"
            worker = ProcessWorker("prefab-process", env, REPO, first_log)
            with worker:
                killed = run_deployment(
                    "training/train", timeout=0,
                    parameters={"overrides": ["steps.pause.params.seconds=900"]})
                _wait_for(marker, worker, 240, first_log)
                flow_pid = int(marker.read_text())
                # A live run outlasting the automation's window is not crashed: its
                # heartbeats (every 30 s, from prefect.yaml's work pool env; Prefect's
                # default of 180 s would let the automation crash it here) keep it Running.
                time.sleep(WITHIN_S + 20)
                assert client.read_flow_run(killed.id).state.is_running()
                assert worker.proc is not None
                os.killpg(worker.proc.pid, signal.SIGKILL)
                try:
                    os.kill(flow_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # it was in the worker's process group
                worker.proc.wait(10)
            killed_at = time.monotonic()

            deadline = killed_at + WITHIN_S + 120
            while (state := client.read_flow_run(killed.id).state).type != StateType.CRASHED:
                assert state.is_running(), f"{state.type}: {state.message}"
                assert time.monotonic() < deadline, \
                    f"still {state.type} {time.monotonic() - killed_at:.0f} s after the kill"
                time.sleep(2)
            assert "heartbeat" in (state.message or "")
            assert registry.versions(MODEL) == []

            second_log = tmp_path / "worker-2.log"
            with ProcessWorker("prefab-process", env, REPO, second_log):
                fr = run_deployment("training/train", timeout=0,
                                    parameters={"overrides": ["steps.pause.params.seconds=0"]})
                fr = wait_final(client, fr.id)
            assert fr.state.is_completed(), second_log.read_text()[-4000:]

    assert [v.version for v in registry.versions(MODEL)] == [1]
    assert registry.alias(MODEL, "production").version == 1
    assert check_registry(registry, grace_s=0) == []
