"""The FastAPI application: ``/predict``, ``/health``, ``/ready``, ``/model``, ``/metrics``.

:func:`create_app` builds one app for one worker process. Its lifespan loads the
version the alias names, starts the micro-batcher, the alias watcher (hot
reload) and, if configured, the request log. With an API key
(:mod:`prefab_mlops.serve.auth`), every path but ``/health`` and ``/ready`` answers
401 to a request without it.

Hot reload: every ``poll_seconds`` the watcher reads ``aliases/<alias>.json`` (one
small object; nothing else is listed or read). When it names another version, that
version is loaded in a thread (sha256-checked by the registry, fast path compiled
and verified) and swapped in with one reference assignment. Requests already
validated against the old model are scored by it; new requests get the new one.
A version that cannot be loaded is refused (logged, counted in
``prefab_serve_model_reloads_total{result="refused"}``, shown in ``GET /model``) and
the current model keeps serving; it is retried only when the alias is set again
or after :data:`RETRY_REFUSED_S`. A worker that starts while the alias names a
version it refuses (for example one restarted after a crash) serves the alias's
previous version instead, like the workers that were already running, and says so
in ``GET /model`` (``fallback``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from prefab_mlops.core.registry import AliasState, ModelRegistry
from prefab_mlops.core.storage import object_store
from prefab_mlops.serve.auth import OPEN_PATHS, ApiKey, unauthorized_body, www_authenticate
from prefab_mlops.serve.batcher import MicroBatcher
from prefab_mlops.serve.errors import ModelRefused, RequestInvalid
from prefab_mlops.serve.metrics import ENDPOINTS, ServeMetrics
from prefab_mlops.serve.model import ServedModel, load_served
from prefab_mlops.serve.reqlog import RequestLog
from prefab_mlops.serve.settings import ServeSettings

log = logging.getLogger("prefab_mlops.serve")

RETRY_REFUSED_S = 60.0
_FALLBACK_DEPTH = 5  # previous alias versions a starting worker tries
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY
_PREDICT_BODY = {
    "required": True,
    "content": {"application/json": {
        "schema": {"oneOf": [
            {"type": "object", "description": "one record: {field: value} for every input "
             "field of GET /model -> input_schema"},
            {"type": "array", "items": {"type": "object"}, "description": "many records"},
            {"type": "object", "properties": {"records": {"type": "array",
                                                          "items": {"type": "object"}}},
             "required": ["records"]}]}}},
}


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj, option=_JSON_OPTS), status_code=status,
                    media_type="application/json", headers=headers)


def _invalid(exc: RequestInvalid) -> Response:
    body: dict[str, Any] = {"detail": exc.errors}
    if exc.total > len(exc.errors):
        body["error_count"] = exc.total
        body["truncated"] = True
    return _json(body, exc.status)


class ServerState:
    """What one worker process serves and how (shared by the routes).

    Args:
        settings: The server settings.
        worker: A tag for this worker (logs, request-log file names).
        registry: The registry to serve from (default: from ``settings``).
    """

    def __init__(self, settings: ServeSettings, worker: str = "w0",
                 registry: ModelRegistry | None = None) -> None:
        self.settings = settings
        self.worker = worker
        self.registry = registry or ModelRegistry(
            object_store(settings.storage_config(), settings.registry, "registry"))
        self.api_key = ApiKey(settings.api_key_env) if settings.api_key_env else None
        self.metrics = ServeMetrics()
        self.batcher = MicroBatcher(settings.batch_max_rows, settings.batch_wait_ms / 1000.0,
                                    on_batch=self._on_batch)
        self.current: ServedModel | None = None
        self.alias_state: AliasState | None = None
        self.not_ready_reason = "starting: no model loaded yet"
        self.last_refused: dict[str, Any] | None = None
        self.fallback: dict[str, Any] | None = None
        self._refused_key: tuple[int, str] | None = None
        self._refused_at = 0.0
        self._poll_error: str | None = None
        self.reqlog: RequestLog | None = None
        self._ids = itertools.count(1)
        self._id_prefix = f"{worker}-{os.getpid():x}"  # unique across worker restarts
        self._watcher: asyncio.Task | None = None

    # ------------------------------------------------------------- metrics
    def _on_batch(self, rows: int, requests: int, seconds: float) -> None:
        m = self.metrics
        m.batch_rows.observe(rows)
        m.batch_requests.observe(requests)
        m.batch_seconds.observe(seconds)

    # ------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        s = self.settings
        if s.request_log_dir:
            self.reqlog = RequestLog(
                s.request_log_dir, s.model, s.request_log_format, s.request_log_rows_per_file,
                s.request_log_max_files, s.request_log_flush_seconds, self.worker,
                on_written=self.metrics.log_rows.inc, on_dropped=self.metrics.log_dropped.inc)
            self.reqlog.start()
        if self.api_key is not None:
            log.info("%s: API key required on every path but %s (key from $%s)", self.worker,
                     " and ".join(sorted(OPEN_PATHS)), self.api_key.env_name)
        self.batcher.start()
        await self.check_alias()
        if self.current is None:
            log.error("%s: not ready: %s", self.worker, self.not_ready_reason)
        self._watcher = asyncio.get_running_loop().create_task(self._watch(),
                                                               name="alias-watcher")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass
        await self.batcher.stop()
        if self.reqlog is not None:
            await asyncio.to_thread(self.reqlog.close)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            try:
                await self.check_alias()
            except Exception:  # noqa: BLE001 - the watcher must survive anything
                log.exception("%s: alias check failed", self.worker)

    # --------------------------------------------------------------- reload
    async def check_alias(self) -> None:
        """Read the alias once; load and swap in the version it names if it is new."""
        s = self.settings
        try:
            state = await asyncio.to_thread(self.registry.alias, s.model, s.alias)
        except Exception as exc:  # noqa: BLE001 - storage hiccup: keep serving, retry
            msg = f"cannot read alias '{s.alias}' of '{s.model}': {exc}"
            if msg != self._poll_error:
                log.warning("%s: %s", self.worker, msg)
            self._poll_error = msg
            if self.current is None:
                self.not_ready_reason = msg
            return
        self._poll_error = None
        self.alias_state = state
        if state is None:
            if self.current is None:
                self.not_ready_reason = (f"model '{s.model}' has no '{s.alias}' alias in the "
                                         f"registry at {s.registry}; train and promote a "
                                         "model first (make train)")
            return
        if self.current is not None and self.current.version == state.version:
            return
        key = (state.version, state.updated_at)
        if key == self._refused_key and time.monotonic() - self._refused_at < RETRY_REFUSED_S:
            return
        try:
            served = await asyncio.to_thread(self._load, state.version)
        except Exception as exc:  # noqa: BLE001 - refuse whatever cannot be served
            self._refuse(state, exc)
            if self.current is None:
                await self._fall_back(state)
            return
        self._swap(served)
        self.fallback = None
        self._refused_key = None

    def _load(self, version: int) -> ServedModel:
        s = self.settings
        return load_served(self.registry, s.model, version,
                           unknown_category=s.unknown_category, extra_fields=s.extra_fields,
                           max_rows=s.max_rows, fast_path=s.fast_path)

    def _swap(self, served: ServedModel) -> None:
        old = self.current
        self.current = served  # the swap: requests from here on see the new model
        self.metrics.model_loaded(served.name, served.version, served.compiled is not None)
        self.metrics.reloads.labels("loaded").inc()
        log.info("%s: serving %s:v%s%s", self.worker, served.name, served.version,
                 f" (was v{old.version})" if old else "")

    async def _fall_back(self, state: AliasState) -> None:
        """With nothing loaded yet (a worker that just started), serve the alias's
        previous version rather than nothing: what a running worker keeps serving."""
        tried = {state.version}
        for version in reversed(state.history[-_FALLBACK_DEPTH:]):
            if version in tried:
                continue
            tried.add(version)
            try:
                served = await asyncio.to_thread(self._load, version)
            except Exception as exc:  # noqa: BLE001 - try the one before
                log.warning("%s: previous version v%s cannot be served either: %s",
                            self.worker, version, exc)
                continue
            self._swap(served)
            self.fallback = {"alias_version": state.version, "serving": version,
                             "reason": f"v{state.version} was refused; serving the previous "
                                       f"'{self.settings.alias}' version until the alias "
                                       "moves"}
            log.warning("%s: %s", self.worker, self.fallback["reason"])
            return

    def _refuse(self, state: AliasState, exc: Exception) -> None:
        msg = exc.message if isinstance(exc, ModelRefused) else (
            f"Refused {self.settings.model}:v{state.version}: unexpected "
            f"{type(exc).__name__}: {exc}")
        self._refused_key = (state.version, state.updated_at)
        self._refused_at = time.monotonic()
        self.last_refused = {"version": state.version, "alias_updated_at": state.updated_at,
                             "error": msg, "at": time.time()}
        self.metrics.reloads.labels("refused").inc()
        keeps = f"; still serving v{self.current.version}" if self.current else ""
        log.error("%s: %s%s", self.worker, msg, keeps)
        if self.current is None:
            self.not_ready_reason = msg

    # --------------------------------------------------------------- predict
    async def predict(self, request: Request) -> Response:
        served = self.current
        if served is None:
            return _json({"detail": f"not ready: {self.not_ready_reason}"}, 503)
        batcher = self.batcher
        batcher.inflight += 1
        queued = False
        try:
            body = await self._body(request)
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise RequestInvalid([{"loc": ["body"], "type": "json_invalid",
                                       "msg": f"the body is not valid JSON: {exc}"}]) from None
            data = served.validator.validate(payload)
            batcher.inflight -= 1
            queued = True
            pred = await batcher.submit(served, data.columns, data.rows)
        except RequestInvalid as exc:
            self.metrics.invalid.labels(exc.errors[0]["type"] if exc.errors else "invalid").inc()
            return _invalid(exc)
        except (ValueError, TypeError) as exc:
            self.metrics.invalid.labels("model_rejected").inc()
            return _json({"detail": [{"loc": ["body"], "type": "model_rejected",
                                      "msg": f"the model could not score these records: "
                                             f"{exc}"}]}, 422)
        except Exception as exc:  # noqa: BLE001 - answer JSON, log the traceback
            log.exception("%s: prediction failed", self.worker)
            return _json({"detail": f"prediction failed: {type(exc).__name__}: {exc}"}, 500)
        finally:
            if not queued:
                batcher.inflight -= 1
        out: dict[str, Any] = {"model": served.name, "version": served.version}
        if served.is_classifier:
            out["predictions"] = pred.labels.tolist()
            out["classes"] = served.classes
            out["probabilities"] = pred.proba
        else:
            out["predictions"] = pred.labels
        if data.warnings:
            out["warnings"] = data.warnings
            for w in data.warnings:
                self.metrics.unknown.labels(w["field"]).inc()
        if self.reqlog is not None:
            rid = request.headers.get("x-request-id") or f"{self._id_prefix}-{next(self._ids)}"
            out["request_id"] = rid
            self.reqlog.add(served, data, pred, rid)
        self.metrics.predictions(pred.labels, pred.proba, served.classes)
        return _json(out)

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        too_big = RequestInvalid([{
            "loc": ["body"], "type": "too_large",
            "msg": f"the body is larger than {limit} bytes; send fewer records per request "
                   "(or start the server with a larger --max-body-bytes)",
            "ctx": {"max_body_bytes": limit}}], status=413)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_big
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    # ----------------------------------------------------------------- info
    def ready(self) -> Response:
        if self.current is None:
            return _json({"ready": False, "reason": self.not_ready_reason}, 503)
        return _json({"ready": True, "model": self.current.name,
                      "version": self.current.version, "worker": self.worker})

    def describe(self) -> Response:
        if self.current is None:
            return _json({"detail": f"not ready: {self.not_ready_reason}"}, 503)
        info = self.current.describe()
        info["alias"] = asdict(self.alias_state) if self.alias_state else None
        info["alias_name"] = self.settings.alias
        info["worker"] = {"tag": self.worker, "pid": os.getpid()}
        info["last_refused"] = self.last_refused
        info["fallback"] = self.fallback
        info["auth"] = {"api_key": self.api_key is not None}
        info["request_log"] = ({"dir": self.settings.request_log_dir,
                                "format": self.settings.request_log_format}
                               if self.reqlog else None)
        return _json(info)


class _MetricsMiddleware:
    """Pure ASGI middleware: count every request and time it until the response ends."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def _send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            path = scope.get("path", "")
            self.state.metrics.request(path if path in ENDPOINTS else "other",
                                       scope.get("method", ""), status,
                                       time.perf_counter() - start)


class _ApiKeyMiddleware:
    """Pure ASGI middleware: 401 for a request without the API key, but on the probes.

    It sits inside :class:`_MetricsMiddleware`, so each 401 is counted in
    ``prefab_serve_requests_total{status="401"}`` like any other answer.
    """

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        key = self.state.api_key
        if key is None or scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        reason = key.check(scope["headers"])
        if reason is None:
            await self.app(scope, receive, send)
            return
        self.state.metrics.auth_failures.labels(reason).inc()
        response = _json(unauthorized_body(reason), 401,
                         headers={"WWW-Authenticate": www_authenticate(reason)})
        await response(scope, receive, send)


def create_app(settings: ServeSettings, worker: str = "w0",
               registry: ModelRegistry | None = None) -> FastAPI:
    """Build the app for one worker process.

    Args:
        settings: Server settings (CLI flags / ``PREFAB_SERVE_*``).
        worker: Tag of this worker (logs, request-log file names).
        registry: Registry to serve from (default: ``settings.registry`` + ``storage``).

    Returns:
        A FastAPI app; ``app.state.serve`` is its :class:`ServerState`.
    """
    state = ServerState(settings, worker, registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(title="prefab-mlops model server",
                  description=f"Serves the '{settings.alias}' version of registered model "
                              f"'{settings.model}'.", version="0.1.0", lifespan=lifespan,
                  redoc_url=None)
    app.state.serve = state

    def openapi() -> dict[str, Any]:
        """The OpenAPI document, with a /predict example made from the served model's
        input schema (built on each request: the model can change)."""
        doc = get_openapi(title=app.title, version=app.version,
                          description=app.description, routes=app.routes)
        if state.current is not None:
            content = doc["paths"]["/predict"]["post"]["requestBody"]["content"]
            content["application/json"] = {**content["application/json"],
                                           "example": [state.current.example]}
        return doc

    app.openapi = openapi  # type: ignore[method-assign]

    @app.post("/predict", openapi_extra={"requestBody": _PREDICT_BODY},
              summary="Score one or many records with the served model")
    async def predict(request: Request) -> Response:
        """Answer ``{"model", "version", "predictions", "classes", "probabilities"}``.

        422 lists every field-level problem (``detail[].loc/msg/type``); 413 for a body
        over ``--max-body-bytes``; 503 while no model is loaded.
        """
        return await state.predict(request)

    @app.get("/health", summary="Liveness: the process answers")
    async def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/ready", summary="Readiness: a model is loaded (503 otherwise)")
    async def ready() -> Response:
        return state.ready()

    @app.get("/model", summary="The served version: metrics, input schema, lineage")
    async def model() -> Response:
        return state.describe()

    @app.get("/metrics", summary="Prometheus metrics (text format)")
    async def metrics() -> Response:
        body, ctype = await asyncio.to_thread(state.metrics.exposition)
        return Response(body, media_type=ctype)

    app.add_middleware(_ApiKeyMiddleware, state=state)
    app.add_middleware(_MetricsMiddleware, state=state)  # added last: the outermost
    return app


def app_from_env() -> FastAPI:
    """App factory for ASGI servers: ``uvicorn --factory prefab_mlops.serve.app:app_from_env``.

    Reads the settings from ``PREFAB_SERVE_SETTINGS`` (JSON of :class:`ServeSettings`).
    """
    return create_app(ServeSettings.from_env(), worker=f"pid{os.getpid()}")
