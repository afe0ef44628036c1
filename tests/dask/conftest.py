"""A real Prefect server and a real Dask ``LocalCluster`` for the scaling-out tests.

* ``prefect_api`` starts ``prefect server start`` on loopback (a Dask runner's flows
  against the ephemeral server log "database is locked") and points this process and
  every Dask worker spawned afterwards at it.
* ``dask_cluster`` is ``distributed.LocalCluster(n_workers=2, threads_per_worker=1,
  processes=True)`` on 127.0.0.1 for the session, closed afterwards; a flow reaches it
  through ``orchestration.dask.address``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prefab_mlops.core.environ import temporary_environ
from prefab_mlops.testing.local_prefect import PrefectServer


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server; this process and later Dask workers use its API."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefab_mlops.orchestration.runtime import in_process_run

    with PrefectServer(tmp_path_factory.mktemp("prefect-server"), startup_timeout=180) as server:
        # environment for the worker processes the cluster spawns, settings for this one
        with temporary_environ({"PREFECT_API_URL": server.url}), \
                temporary_settings({PREFECT_API_URL: server.url}), in_process_run():
            yield server.url


@pytest.fixture(scope="session")
def dask_cluster(prefect_api: str) -> Iterator[Any]:
    """Two worker processes with one thread each, on loopback."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=":0", memory_limit="2GB")
    try:
        yield cluster
    finally:
        cluster.close()


REPO = Path(__file__).resolve().parents[2]
CONF = str(REPO / "conf")
