"""Reusable Prefect tasks, one module per pipeline stage.

Each task is a typed function (data in, data out) decorated with ``@task``; its
logic is testable through ``task.fn(...)`` without a Prefect server. Retries,
caching and timeouts are applied by flows with ``Task.with_options`` from
``conf/orchestration`` (see :func:`prefab_mlops.orchestration.runtime.configure`).
"""
