"""prefect-dask's ``DaskTaskRunner``, connecting where ``orchestration.dask.address`` says.

prefect-dask's runner first looks for a Dask client this process already has and, if
it finds one, runs the tasks on that client's cluster, whatever address it was given.
A flow started in a process that holds a client for another cluster (a notebook's, a
test's, the Dask data engine's) then ran its trials there: a search configured for
``tcp://scheduler-a`` ran on cluster B, and nothing said so. This runner connects to a
configured ``address`` as configured. Imported only with the ``[dask]`` extra.
"""

from __future__ import annotations

from typing import Any

from prefect_dask import DaskTaskRunner
from prefect_dask.client import PrefectDaskClient


class AddressedDaskTaskRunner(DaskTaskRunner):
    """A ``DaskTaskRunner`` whose ``address``, when set, wins over a client already
    running in this process (without an address it behaves as prefect-dask's)."""

    @property
    def client(self) -> Any:
        if self._client is None and self.address:
            self.logger.info(f"Connecting to the Dask scheduler at {self.address}")
            self._connect_to = self.address
            self._client = self._exit_stack.enter_context(
                PrefectDaskClient(self.address, **self.client_kwargs))
        return super().client
