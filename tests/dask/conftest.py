"""A real two-process Dask cluster on loopback for the ``data.engine: dask`` tests.

The workers get the moto S3 server's dummy credentials in their environment (they are
started before any test sets its own), so they can read the loopback S3 server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

MOTO_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    """``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` and its client
    (the default client, which the partitioned steps compute on); closed afterwards."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0", memory_limit="2GB",
                      env=MOTO_ENV) as cluster, Client(cluster) as client:
        yield client
