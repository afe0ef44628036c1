"""A real two-process Dask cluster on loopback for the ``data.engine: dask`` tests.

The workers get the moto S3 server's dummy credentials in their environment (they are
started before any test sets its own), so they can read the loopback S3 server.

The cluster lives for the tests of this folder only (``package`` scope), and this
process's environment is put back when it closes: starting a ``LocalCluster`` sets
``OMP_NUM_THREADS=1``, ``PYTHONHASHSEED`` and friends in the parent's ``os.environ``,
and a default client left running draws from the global ``random`` while later tests
run. Later tests would see both: the processes they start inherit one OpenMP thread and
a fixed hash seed, and hypothesis finds its strategies' random state disturbed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

MOTO_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="package")
def dask_cluster() -> Iterator[Any]:
    """``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` and its client
    (the default client, which the partitioned steps compute on); closed afterwards."""
    from distributed import Client, LocalCluster

    environ = dict(os.environ)
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=":0", memory_limit="2GB",
                          env=MOTO_ENV) as cluster, Client(cluster) as client:
            yield client
    finally:
        os.environ.clear()
        os.environ.update(environ)
