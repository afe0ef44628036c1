"""The optional API key: every endpoint without, with a wrong and with the right key.

In-process (the app and its lifespan over ASGI) for the behaviour of each endpoint,
the settings and ``--print-settings``; one real 2-worker server for what only a
real server shows: every worker enforces the key, and the key is in no log line,
no answer and no command line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefab_mlops.serve.app import create_app
from prefab_mlops.serve.errors import ServeConfigError
from prefab_mlops.serve.settings import ServeSettings
from prefab_mlops.testing.local_prefect import free_port
from prefab_mlops.testing.records import to_records
from prefab_mlops.testing.soak import worker_pids
from tests.serve.conftest import MODEL, ServedProject, ServerProcess
from tests.serve.test_serve_app import AppClient, settings

KEY = "k3y-Of-The-T3st-Server_0123456789"
KEY_ENV = "PREFAB_TEST_SERVE_KEY"
WRONG = "not-the-key-but-as-long-as-it-0123"

NO_KEY: dict[str, str] = {}
CREDENTIALS = {
    "none": (NO_KEY, "missing"),
    "wrong bearer": ({"Authorization": f"Bearer {WRONG}"}, "invalid"),
    "wrong x-api-key": ({"X-API-Key": WRONG}, "invalid"),
    "empty bearer": ({"Authorization": "Bearer "}, "invalid"),
    "key under another scheme": ({"Authorization": f"Basic {KEY}"}, "missing"),
    "key as a prefix": ({"Authorization": f"Bearer {KEY}x"}, "invalid"),
    "right bearer": ({"Authorization": f"Bearer {KEY}"}, None),
    "right bearer, scheme in lower case": ({"Authorization": f"bearer {KEY}"}, None),
    "right x-api-key": ({"X-API-Key": KEY}, None),
    "wrong bearer, right x-api-key": ({"Authorization": f"Bearer {WRONG}", "X-API-Key": KEY},
                                      None),
}
ENDPOINTS = ["POST /predict", "GET /model", "GET /metrics"]


def call(c: AppClient, endpoint: str, headers: dict[str, str], body: Any) -> httpx.Response:
    method, path = endpoint.split()
    if method == "POST":
        return c.post(path, json=body, headers=headers)
    return c.get(path, headers=headers)


@pytest.fixture(scope="module")
def keyed(served_project: ServedProject) -> Iterator[AppClient]:
    """The app with an API key (from ``$PREFAB_TEST_SERVE_KEY``), lifespan running."""
    with pytest.MonkeyPatch.context() as mp:  # read once, when the app is built
        mp.setenv(KEY_ENV, KEY)
        app = create_app(settings(served_project.registry, api_key_env=KEY_ENV))
    with AppClient(app) as c:
        yield c


@pytest.fixture()
def record(served_project: ServedProject) -> dict[str, Any]:
    return to_records(served_project.test_X.head(1))[0]


class TestEveryEndpoint:
    @pytest.mark.parametrize("case", list(CREDENTIALS))
    @pytest.mark.parametrize("endpoint", ENDPOINTS)
    def test_needs_the_key(self, keyed: AppClient, record: dict[str, Any], endpoint: str,
                           case: str) -> None:
        headers, refused = CREDENTIALS[case]
        r = call(keyed, endpoint, headers, [record])
        if refused is None:
            assert r.status_code == 200, r.text
            if endpoint == "POST /predict":
                assert r.json()["model"] == MODEL and len(r.json()["predictions"]) == 1
            return
        assert r.status_code == 401, r.text
        err = r.json()["detail"][0]
        assert err["type"] == f"{refused}_api_key" and err["loc"] == ["header", "authorization"]
        assert "'Authorization: Bearer <key>' or 'X-API-Key: <key>'" in err["msg"]
        assert r.headers["www-authenticate"].startswith('Bearer realm="prefab-serve"')
        assert ('error="invalid_token"' in r.headers["www-authenticate"]) == (
            refused == "invalid")
        assert KEY not in r.text and WRONG not in r.text

    @pytest.mark.parametrize("path", ["/health", "/ready"])
    @pytest.mark.parametrize("case", ["none", "wrong bearer", "right bearer"])
    def test_probes_stay_open(self, keyed: AppClient, path: str, case: str) -> None:
        r = keyed.get(path, headers=CREDENTIALS[case][0])
        assert r.status_code == 200, r.text

    def test_other_paths_are_closed_too(self, keyed: AppClient) -> None:
        for path in ("/docs", "/openapi.json", "/no-such-path"):
            assert keyed.get(path).status_code == 401, path
        assert keyed.get("/no-such-path", headers=CREDENTIALS["right x-api-key"][0]
                         ).status_code == 404
        assert keyed.get("/openapi.json", headers=CREDENTIALS["right bearer"][0]
                         ).status_code == 200

    def test_refusals_are_counted_by_status_and_reason(self, keyed: AppClient,
                                                       record: dict[str, Any]) -> None:
        ok = CREDENTIALS["right bearer"][0]

        def count(name: str, labels: str) -> float:
            text = keyed.get("/metrics", headers=ok).text
            return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                       if ln.startswith(name + "{") and labels in ln)

        requests = 'endpoint="/predict",method="POST",status="401"'
        before = (count("prefab_serve_requests_total", requests),
                  count("prefab_serve_auth_failures_total", 'reason="missing"'),
                  count("prefab_serve_auth_failures_total", 'reason="invalid"'))
        keyed.post("/predict", json=record)
        keyed.post("/predict", json=record, headers=CREDENTIALS["wrong x-api-key"][0])
        keyed.post("/predict", json=record, headers=CREDENTIALS["wrong bearer"][0])
        after = (count("prefab_serve_requests_total", requests),
                 count("prefab_serve_auth_failures_total", 'reason="missing"'),
                 count("prefab_serve_auth_failures_total", 'reason="invalid"'))
        assert [a - b for a, b in zip(after, before, strict=True)] == [3, 1, 2]

    def test_model_says_a_key_is_required_and_never_shows_it(self, keyed: AppClient) -> None:
        r = keyed.get("/model", headers=CREDENTIALS["right bearer"][0])
        assert r.json()["auth"] == {"api_key": True}
        assert KEY not in r.text

    def test_without_a_key_everything_is_open(self, served_project: ServedProject,
                                              record: dict[str, Any]) -> None:
        with AppClient(create_app(settings(served_project.registry))) as c:
            assert c.post("/predict", json=record).status_code == 200
            assert c.get("/model").json()["auth"] == {"api_key": False}
            assert c.get("/metrics").status_code == 200


class TestKeySettings:
    def test_the_key_is_no_setting_only_its_variable_is(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(KEY_ENV, KEY)
        s = ServeSettings(registry="r", model="m", api_key_env=KEY_ENV)
        assert KEY not in s.to_json() and KEY not in repr(s)
        assert ServeSettings.from_json(s.to_json()) == s

    @pytest.mark.parametrize("value, problem", [
        (None, "which is not set"),
        ("", "is set but empty"),
        ("short-key", "shorter than 16 characters"),
        ("a key with spaces in it, long enough", "whitespace or characters outside"),
        ("ключ-не-ascii-но-достаточно-длинный", "outside printable ASCII"),
    ])
    def test_an_unusable_key_stops_the_server_before_it_starts(
            self, monkeypatch: pytest.MonkeyPatch, value: str | None, problem: str) -> None:
        if value is None:
            monkeypatch.delenv(KEY_ENV, raising=False)
        else:
            monkeypatch.setenv(KEY_ENV, value)
        with pytest.raises(ServeConfigError) as err:
            ServeSettings(registry="r", model="m", api_key_env=KEY_ENV)
        assert problem in str(err.value) and f"${KEY_ENV}" in str(err.value)
        assert not value or value not in str(err.value)

    def test_default_variable_is_optional_but_fails_closed_once_set(
            self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        from prefab_mlops.serve.__main__ import main

        base = ["--registry", "r", "--model", "m", "--print-settings"]
        monkeypatch.delenv("PREFAB_SERVE_API_KEY", raising=False)
        monkeypatch.delenv("PREFAB_SERVE_API_KEY_ENV", raising=False)
        assert main(base) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["api_key"] is None and out["api_key_env"] is None
        monkeypatch.setenv("PREFAB_SERVE_API_KEY", "")  # a secret that did not arrive
        assert main(base) == 2
        assert "$PREFAB_SERVE_API_KEY is set but empty" in capsys.readouterr().err
        monkeypatch.delenv("PREFAB_SERVE_API_KEY")
        assert main([*base, "--api-key-env", KEY_ENV]) == 2  # named, so required
        assert f"names ${KEY_ENV}, which is not set" in capsys.readouterr().err

    @pytest.mark.parametrize("how", ["default variable", "--api-key-env",
                                     "PREFAB_SERVE_API_KEY_ENV"])
    def test_print_settings_masks_the_key(self, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], how: str) -> None:
        from prefab_mlops.serve.__main__ import main

        args = ["--registry", "r", "--model", "m", "--print-settings"]
        monkeypatch.delenv("PREFAB_SERVE_API_KEY_ENV", raising=False)
        if how == "default variable":
            monkeypatch.setenv("PREFAB_SERVE_API_KEY", KEY)
            name = "PREFAB_SERVE_API_KEY"
        else:
            monkeypatch.delenv("PREFAB_SERVE_API_KEY", raising=False)
            monkeypatch.setenv(KEY_ENV, KEY)
            name = KEY_ENV
            if how == "--api-key-env":
                args += ["--api-key-env", KEY_ENV]
            else:
                monkeypatch.setenv("PREFAB_SERVE_API_KEY_ENV", KEY_ENV)
        assert main(args) == 0
        text = capsys.readouterr().out
        out = json.loads(text)
        assert out["api_key"] == "********" and out["api_key_env"] == name
        assert KEY not in text


@pytest.mark.slow  # a real server
class TestRealServer:
    def test_both_workers_enforce_the_key_which_shows_nowhere(
            self, served_project: ServedProject, tmp_path: Path,
            record: dict[str, Any]) -> None:
        registry = served_project.registry_copy(tmp_path / "registry")
        server = ServerProcess(registry, free_port(), tmp_path / "server.log",
                               "--log-level", "debug", workers=2, api_key=KEY)
        server.start()
        try:
            ok = {"Authorization": f"Bearer {KEY}"}
            refused: dict[int, list[int]] = {}  # worker pid -> statuses of keyless requests
            # Keep-alive pins a connection to one worker (SO_REUSEPORT), so the keyed
            # GET /model on the same connection names the worker that refused the others.
            for _ in range(40):
                with httpx.Client(base_url=server.url, timeout=30) as c:
                    statuses = [c.post("/predict", json=record).status_code,
                                c.post("/predict", json=record,
                                       headers={"X-API-Key": WRONG}).status_code,
                                c.get("/metrics").status_code,
                                c.get("/model", headers={"Authorization": "Bearer"}
                                      ).status_code]
                    info = c.get("/model", headers=ok)
                    assert info.status_code == 200, info.text
                    assert c.post("/predict", json=record,
                                  headers={"X-API-Key": KEY}).status_code == 200
                    assert c.get("/ready").status_code == c.get("/health").status_code == 200
                refused.setdefault(info.json()["worker"]["pid"], []).extend(statuses)
                if len(refused) == 2 and min(len(v) for v in refused.values()) >= 8:
                    break
            assert sorted(refused) == worker_pids(server.proc.pid), refused
            assert all(set(v) == {401} for v in refused.values()), refused
            # a refused request with a large body leaves the connection usable
            with httpx.Client(base_url=server.url, timeout=30) as c:
                big = [record] * 400
                assert c.post("/predict", json=big).status_code == 401
                r = c.post("/predict", json=big, headers=ok)
                assert r.status_code == 200 and len(r.json()["predictions"]) == 400
            # every refusal is counted, whichever worker answered (/metrics sums them)
            assert server.metric("prefab_serve_requests_total", 'status="401"') == sum(
                len(v) for v in refused.values()) + 1
            model_text = json.dumps(server.get("/model")[1])
            cmdlines = [Path(f"/proc/{pid}/cmdline").read_bytes()
                        for pid in [server.proc.pid, *worker_pids(server.proc.pid)]]
        finally:
            server.stop()
        log = server.logfile.read_text(errors="replace")
        assert "API key required on every path but /health and /ready" in log
        assert KEY not in log and KEY not in model_text
        assert all(KEY.encode() not in cmd for cmd in cmdlines)
