"""Adaptive micro-batching: concurrent requests share one model call.

Each worker process has one :class:`MicroBatcher`. A request's validated rows are
queued; one asyncio task takes everything queued (up to ``max_rows`` rows),
concatenates it column-wise and scores it with ONE model call in a dedicated
thread, then hands every request its slice.

The batching adapts to load without a fixed delay:

* An idle server scores a lone request at once (no waiting at concurrency 1).
* While a model call runs, new requests queue up and form the next batch.
* When the batcher starts a batch while other requests are still being read and
  validated (``inflight`` > queued), it waits for them at most ``max_wait_s``.

Requests validated against different model versions (a hot reload happened in
between) are never mixed: each group is scored by the model it was validated
for, so in-flight requests finish on the old model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prefab_mlops.serve.model import Prediction, ServedModel

log = logging.getLogger("prefab_mlops.serve")


@dataclass
class _Job:
    model: ServedModel
    columns: dict[str, list[Any]]
    rows: int
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Collect concurrent requests and score them together.

    Args:
        max_rows: Most rows in one model call (settings ``batch_max_rows``).
        max_wait_s: Longest wait for requests still being read (``batch_wait_ms``).
        on_batch: Called in the event loop after each model call with
            ``(rows, requests, seconds)`` (metrics).
        in_thread: Score in a dedicated thread (default), so the event loop keeps
            reading requests while XGBoost runs without the GIL. Scoring inline in
            the loop was slower at concurrency 8-32 in ``make bench-serving``.
    """

    def __init__(self, max_rows: int = 1024, max_wait_s: float = 0.001,
                 on_batch: Callable[[int, int, float], None] | None = None,
                 in_thread: bool = True) -> None:
        self.max_rows = max_rows
        self.in_thread = in_thread
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self.inflight = 0  # requests admitted but not yet queued (maintained by the app)
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefab-predict")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if not job.future.done():
                    job.future.set_exception(RuntimeError("server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -------------------------------------------------------------- submit
    async def submit(self, model: ServedModel, columns: dict[str, list[Any]],
                     rows: int) -> Prediction:
        """Queue validated rows and wait for their predictions."""
        assert self._queue is not None, "MicroBatcher.start() was not called"
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(model, columns, rows, fut))
        return await fut

    # ---------------------------------------------------------------- loop
    async def _collect(self) -> list[_Job]:
        assert self._queue is not None
        queue = self._queue
        jobs = [await queue.get()]
        rows = jobs[0].rows
        while rows < self.max_rows and not queue.empty():
            job = queue.get_nowait()
            jobs.append(job)
            rows += job.rows
        if self.max_wait_s > 0 and rows < self.max_rows and self.inflight > 0:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.max_wait_s
            while rows < self.max_rows and self.inflight > 0:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                jobs.append(job)
                rows += job.rows
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            groups: dict[int, list[_Job]] = {}
            for job in jobs:
                if not job.future.cancelled():
                    groups.setdefault(id(job.model), []).append(job)
            for group in groups.values():
                start = loop.time()
                try:
                    if self.in_thread:
                        pred = await loop.run_in_executor(self._executor, _score, group)
                    else:
                        pred = _score(group)
                except Exception as exc:  # noqa: BLE001 - isolate the failing request(s)
                    await self._score_one_by_one(group, exc)
                    continue
                offset = 0
                for job in group:
                    if not job.future.done():
                        job.future.set_result(pred.slice(offset, offset + job.rows))
                    offset += job.rows
                if self.on_batch is not None:
                    self.on_batch(offset, len(group), loop.time() - start)

    async def _score_one_by_one(self, group: list[_Job], exc: Exception) -> None:
        loop = asyncio.get_running_loop()
        if len(group) == 1:
            if not group[0].future.done():
                group[0].future.set_exception(exc)
            return
        for job in group:
            try:
                pred = (await loop.run_in_executor(self._executor, _score, [job])
                        if self.in_thread else _score([job]))
            except Exception as one:  # noqa: BLE001
                if not job.future.done():
                    job.future.set_exception(one)
            else:
                if not job.future.done():
                    job.future.set_result(pred)


def _score(group: list[_Job]) -> Prediction:
    """Concatenate the group's columns and score them with one model call (worker thread)."""
    model = group[0].model
    if len(group) == 1:
        return model.predict(group[0].columns, group[0].rows)
    columns: dict[str, list[Any]] = {}
    for name in group[0].columns:
        merged: list[Any] = []
        for job in group:
            merged.extend(job.columns[name])
        columns[name] = merged
    return model.predict(columns, sum(job.rows for job in group))
