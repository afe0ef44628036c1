"""Server settings: one frozen dataclass, filled from CLI flags or ``PREFAB_SERVE_*``.

The settings travel to worker processes as JSON in ``PREFAB_SERVE_SETTINGS`` (see
:mod:`prefab_mlops.serve.server`), so every worker serves with exactly what the command
line said. Ranges are checked here, before any model is loaded or port is bound.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from prefab_mlops.core.registry import PRODUCTION_ALIAS
from prefab_mlops.core.storage import S3Config, StorageConfig
from prefab_mlops.serve.auth import key_problem
from prefab_mlops.serve.errors import ServeConfigError
from prefab_mlops.serve.schema import MAX_ROWS

SETTINGS_ENV = "PREFAB_SERVE_SETTINGS"

UNKNOWN_CATEGORY = ("reject", "accept")
EXTRA_FIELDS = ("reject", "ignore")
LOG_FORMATS = ("parquet", "csv")


@dataclass(frozen=True)
class ServeSettings:
    """Everything the server needs to know.

    Attributes:
        registry: Registry root: a local directory (``conf/register`` ``root``), or
            the local-root placeholder when ``storage`` is S3.
        model: Registered model name (``conf/register`` ``model_name``).
        alias: Alias to serve and watch (``conf/promote`` ``alias``).
        storage: ``conf/storage`` as a plain dict; ``None`` means a local directory.
        host: Interface to listen on.
        port: TCP port (1-65535; a fixed port, every worker binds it with SO_REUSEPORT).
        workers: Worker processes, each with its own event loop, batcher and model.
        poll_seconds: How often each worker reads the alias to pick up a new version.
        max_rows: Most records accepted in one request (larger batches get 422).
        max_body_bytes: Largest request body accepted (larger bodies get 413).
        unknown_category: ``reject`` (422 naming the field and the allowed values) or
            ``accept`` (predict with the model's unseen-value handling and flag the
            row in the response's ``warnings``).
        extra_fields: Fields that are neither model inputs nor columns of the
            training data: ``reject`` (422) or ``ignore``.
        batch_max_rows: Most rows scored in one model call by the micro-batcher.
        batch_wait_ms: Longest the batcher waits for requests that are already being
            read when it starts a batch (0 disables waiting; an idle server never waits).
        fast_path: Use the numpy fast path when the pipeline supports it (verified
            against the scikit-learn pipeline at every load).
        request_log_dir: Directory for the request log; ``None`` disables it.
        request_log_format: ``parquet`` or ``csv``.
        request_log_rows_per_file: Rows per log file before it is closed.
        request_log_max_files: Most log files kept (oldest deleted first).
        request_log_flush_seconds: How often the open log file is written out.
        log_level: Python log level of the server.
        api_key_env: Name of the environment variable that holds the API key
            (``PREFAB_SERVE_API_KEY`` or ``--api-key-env``); ``None`` serves without a
            key. Only the name is a setting: the key itself never travels in the
            settings, and every worker reads it from its own environment.
    """

    registry: str
    model: str
    alias: str = PRODUCTION_ALIAS
    storage: dict[str, Any] | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    poll_seconds: float = 2.0
    max_rows: int = MAX_ROWS
    max_body_bytes: int = 8 * 1024 * 1024
    unknown_category: str = "reject"
    extra_fields: str = "reject"
    batch_max_rows: int = 1024
    batch_wait_ms: float = 1.0
    fast_path: bool = True
    request_log_dir: str | None = None
    request_log_format: str = "parquet"
    request_log_rows_per_file: int = 10_000
    request_log_max_files: int = 50
    request_log_flush_seconds: float = 10.0
    log_level: str = "info"
    api_key_env: str | None = None

    def __post_init__(self) -> None:
        problems = []

        def need(ok: bool, text: str) -> None:
            if not ok:
                problems.append(text)

        need(bool(self.model), "--model is empty")
        need(bool(self.registry), "--registry is empty")
        need(bool(self.alias), "--alias is empty")
        need(0 < self.port < 65536, f"--port is {self.port}; expected 1-65535")
        need(1 <= self.workers <= 64, f"--workers is {self.workers}; expected 1-64")
        need(0.05 <= self.poll_seconds <= 3600,
             f"--poll-seconds is {self.poll_seconds}; expected 0.05-3600")
        need(1 <= self.max_rows <= 1_000_000, f"--max-rows is {self.max_rows}; expected "
             "1-1000000")
        need(1024 <= self.max_body_bytes <= 1 << 30,
             f"--max-body-bytes is {self.max_body_bytes}; expected 1024-{1 << 30}")
        need(self.unknown_category in UNKNOWN_CATEGORY,
             f"--unknown-category is {self.unknown_category!r}; expected one of "
             f"{list(UNKNOWN_CATEGORY)}")
        need(self.extra_fields in EXTRA_FIELDS,
             f"--extra-fields is {self.extra_fields!r}; expected one of {list(EXTRA_FIELDS)}")
        need(1 <= self.batch_max_rows <= 1_000_000,
             f"--batch-max-rows is {self.batch_max_rows}; expected 1-1000000")
        need(0 <= self.batch_wait_ms <= 100,
             f"--batch-wait-ms is {self.batch_wait_ms}; expected 0-100")
        need(self.request_log_format in LOG_FORMATS,
             f"--request-log-format is {self.request_log_format!r}; expected one of "
             f"{list(LOG_FORMATS)}")
        need(10 <= self.request_log_rows_per_file <= 10_000_000,
             f"--request-log-rows-per-file is {self.request_log_rows_per_file}; expected "
             "10-10000000")
        need(1 <= self.request_log_max_files <= 100_000,
             f"--request-log-max-files is {self.request_log_max_files}; expected 1-100000")
        need(0.05 <= self.request_log_flush_seconds <= 3600,
             f"--request-log-flush-seconds is {self.request_log_flush_seconds}; expected "
             "0.05-3600")
        need(self.log_level.lower() in ("debug", "info", "warning", "error", "critical"),
             f"--log-level is {self.log_level!r}")
        if self.api_key_env is not None:
            problem = key_problem(self.api_key_env) if self.api_key_env else (
                "--api-key-env is empty")
            if problem:
                problems.append(problem)
        if self.storage is not None:
            try:
                cfg = self.storage_config()
            except TypeError as exc:
                problems.append(f"storage settings are invalid: {exc}")
            else:
                need(cfg.kind in ("local", "s3"), f"storage kind is {cfg.kind!r}")
                need(cfg.kind != "s3" or bool(cfg.bucket), "storage kind is s3 but no bucket")
        if problems:
            raise ServeConfigError("Invalid server settings: " + "; ".join(problems),
                                   fix="Fix the named flags (or environment variables); see "
                                   "`python -m prefab_mlops.serve --help` for ranges and "
                                   "examples.")

    # ---------------------------------------------------------------- helpers
    def storage_config(self) -> StorageConfig:
        """``storage`` as the typed :class:`~prefab_mlops.config.StorageConfig`."""
        if self.storage is None:
            return StorageConfig()
        raw = dict(self.storage)
        s3 = S3Config(**(raw.pop("s3", None) or {}))
        return StorageConfig(**raw, s3=s3)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ServeConfigError(f"Unknown server settings {unknown}.",
                                   fix=f"Known settings: {sorted(known)}.")
        return cls(**raw)

    @classmethod
    def from_env(cls) -> ServeSettings:
        """The settings a worker process was started with (``PREFAB_SERVE_SETTINGS``)."""
        text = os.environ.get(SETTINGS_ENV)
        if not text:
            raise ServeConfigError(f"${SETTINGS_ENV} is not set in this worker process.",
                                   fix="Start the server with `python -m prefab_mlops.serve`.")
        return cls.from_json(text)
