"""Property tests of ``POST /predict``: any body is a 200 or a 4xx naming the field.

Bodies are built from a real record of the served flights model: fields dropped,
retyped (any JSON, huge numbers, unicode, nesting), renamed or added; records in
lists or ``{"records": ...}``; and raw hostile JSON text (NaN, duplicate keys,
invalid UTF-8, truncation, random bytes). The answer is never a 5xx and never
shows a traceback, the registry is never changed, and the server keeps serving.

In-process (the app with its lifespan, ``AppClient`` of test_serve_app, with the
default settings and with the permissive ones and the pipeline path) for the
``prefab`` profile; against the real 2-worker server over HTTP for the ``fuzz``
profile (slow), where a hang would be a client timeout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import event, given, settings

from prefab_mlops.serve.app import create_app
from prefab_mlops.serve.settings import ServeSettings
from prefab_mlops.testing.fuzzing import assert_client_error, predict_bodies
from prefab_mlops.testing.records import to_records
from tests.serve.conftest import MODEL, ServedProject, ServerProcess
from tests.serve.test_serve_app import AppClient

JSON = {"content-type": "application/json"}


def registry_state(root: Path) -> dict[str, str]:
    """Every file of a registry with its sha256: a change shows as a different dict."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def record(served_project: ServedProject) -> dict[str, Any]:
    return to_records(served_project.test_X.head(1))[0]


@pytest.fixture(scope="module", params=["strict", "permissive"])
def app_client(request: pytest.FixtureRequest, served_project: ServedProject,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppClient, Path]]:
    """The app in-process on its own registry copy: the default settings, or unknown
    categories accepted, extra fields ignored, the pipeline path and a request log."""
    base = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    registry = served_project.registry_copy(base / "registry")
    extra = {} if request.param == "strict" else {
        "unknown_category": "accept", "extra_fields": "ignore", "fast_path": False,
        "request_log_dir": str(base / "log"), "request_log_format": "csv",
        "request_log_flush_seconds": 0.05}
    app = create_app(ServeSettings(registry=str(registry), model=MODEL, poll_seconds=0.2,
                                   max_rows=50, max_body_bytes=200_000, **extra))
    with AppClient(app) as client:
        yield client, registry


@pytest.fixture(scope="module")
def registry_before(app_client: tuple[AppClient, Path]) -> dict[str, str]:
    return registry_state(app_client[1])


def check_answer(status: int, content: bytes) -> None:
    assert_client_error(status, content)
    event(f"HTTP {status}")


class TestPredictFuzzInProcess:
    def test_any_body_is_a_200_or_a_named_4xx(
            self, app_client: tuple[AppClient, Path], record: dict[str, Any],
            registry_before: dict[str, str]) -> None:
        client, registry = app_client

        @given(body=predict_bodies(record))
        def prop(body: bytes) -> None:
            r = client.post("/predict", content=body, headers=JSON)
            check_answer(r.status_code, r.content)

        prop()
        assert client.post("/predict", json=record).status_code == 200
        assert registry_state(registry) == registry_before
        metrics = client.get("/metrics").text
        assert 'status="500"' not in metrics, [line for line in metrics.splitlines()
                                              if 'status="5' in line]


@pytest.mark.slow
class TestPredictFuzzRealServer:
    def test_any_body_over_http(self, server: ServerProcess, record: dict[str, Any]) -> None:
        before = registry_state(server.registry_dir)
        errors_before = server.metric("prefab_serve_requests_total", 'status="500"')
        with httpx.Client(base_url=server.url, timeout=10) as client:

            @settings(settings.get_profile("fuzz"))
            @given(body=predict_bodies(record))
            def prop(body: bytes) -> None:
                r = client.post("/predict", content=body, headers=JSON)
                check_answer(r.status_code, r.content)

            prop()
            assert client.post("/predict", json=record).status_code == 200
        assert server.metric("prefab_serve_requests_total", 'status="500"') == errors_before
        assert registry_state(server.registry_dir) == before
