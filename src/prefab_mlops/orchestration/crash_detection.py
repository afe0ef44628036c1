"""Crash detection for flow runs a worker started: the "zombie" automation.

A flow run whose process dies (SIGKILL, OOM kill, the machine going away) cannot report
its own end, so Prefect leaves it ``Running`` forever. Prefect 3.9 solves this with
flow-run heartbeats and an automation, which Prefect Cloud manages for you and a
self-hosted server does not have until you create it
(https://docs.prefect.io/v3/advanced/detect-zombie-flows):

* the flow run's process emits ``prefect.flow-run.heartbeat`` every
  ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (Prefect's default is 180, its minimum
  30); the deployments of ``prefect.yaml`` set 30 in their work pool's ``env``
  (:data:`HEARTBEAT_S`);
* the automation made here marks a run ``Crashed`` when, after a heartbeat, neither
  another heartbeat nor a final state arrives within :data:`WITHIN_S` seconds (three
  heartbeats, as Prefect's documentation does).

The automation watches every flow run on the server that sends heartbeats, not only
this project's: a flow run whose heartbeats come less often than every
:data:`WITHIN_S` seconds (Prefect's default of 180 s, in a deployment that does not set
30) and that runs longer than that would be marked Crashed while alive. Give every work
pool on the server the same ``env`` setting, or install with a larger ``--within``.

The next run of the deployment then runs normally on any worker. Install or update the
automation once per server (idempotent; ``make deploy`` does it)::

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m prefab_mlops.orchestration.crash_detection

Runs started in this process (``prefab train``, tests) send no heartbeats (see
:func:`prefab_mlops.orchestration.runtime.in_process_run`), so the automation never
touches them.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import Any

#: Name of the automation on the server (one per server; recreated on install).
AUTOMATION_NAME = "prefab-crash-unresponsive-flow-runs"
#: Seconds between flow-run heartbeats set for worker runs (the ``env`` of the work pool
#: in prefect.yaml must say the same).
HEARTBEAT_S = 30
#: Seconds of silence after a heartbeat before a run is marked Crashed.
WITHIN_S = 3 * HEARTBEAT_S

_FINAL_EVENTS = ("prefect.flow-run.Completed", "prefect.flow-run.Failed",
                 "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed")


def crash_automation(within_s: int = WITHIN_S) -> Any:
    """The automation that marks a flow run Crashed after ``within_s`` s without a heartbeat.

    Args:
        within_s: Seconds of silence after a heartbeat (at least the heartbeat interval;
            :data:`WITHIN_S` by default).

    Returns:
        A ``prefect.events.schemas.automations.AutomationCore`` (not yet on a server).
    """
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    if within_s < HEARTBEAT_S:
        raise ValueError(f"within_s must be at least the heartbeat interval ({HEARTBEAT_S} s), "
                         f"got {within_s}")
    heartbeat = "prefect.flow-run.heartbeat"
    return AutomationCore(
        name=AUTOMATION_NAME,
        description="Marks a flow run Crashed when its process stops sending heartbeats "
                    "(installed by prefab_mlops.orchestration.crash_detection).",
        trigger=EventTrigger(
            after={heartbeat}, expect={heartbeat, *_FINAL_EVENTS},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
            within=timedelta(seconds=within_s)),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"No heartbeat for {within_s} s: the flow run's process died "
                    "(worker or machine killed).")])


def install(within_s: int = WITHIN_S) -> str:
    """Create the automation on the server of ``PREFECT_API_URL``, replacing any earlier one.

    Returns:
        The new automation's id.
    """
    from prefect.client.orchestration import get_client

    automation = crash_automation(within_s)
    with get_client(sync_client=True) as client:
        for old in client.read_automations_by_name(AUTOMATION_NAME):
            client.delete_automation(old.id)
        return str(client.create_automation(automation))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m prefab_mlops.orchestration.crash_detection",
        description="Install (or update) the automation that marks worker flow runs "
                    "Crashed when their process dies, on the server of PREFECT_API_URL.")
    parser.add_argument("--within", type=int, default=WITHIN_S, metavar="SECONDS",
                        help=f"silence after a heartbeat before Crashed (default {WITHIN_S}; "
                             f"at least {HEARTBEAT_S})")
    args = parser.parse_args(argv)
    if args.within < HEARTBEAT_S:
        parser.error(f"--within must be at least {HEARTBEAT_S}")
    print(f"automation {AUTOMATION_NAME}: {install(args.within)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
