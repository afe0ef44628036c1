"""The model server as users meet it: a real 2-worker uvicorn server on loopback.

Every test here talks HTTP to ``python -m prefab_mlops.serve`` started as a subprocess
(see ``conftest.py``). Tests that move the registry alias set it explicitly
first, so they do not depend on their order.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import statistics
import threading
import time
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from prefab_mlops.core.manifest import ModelVersion
from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.storage import LocalObjectStore
from prefab_mlops.testing.records import to_records
from tests.serve.conftest import MODEL, ServedProject, ServerProcess

pytestmark = pytest.mark.slow  # a real server (the project's marker for real servers)


def registry_of(server: ServerProcess) -> ModelRegistry:
    return ModelRegistry(LocalObjectStore(server.registry_dir))


def serve_version(server: ServerProcess, client: httpx.Client, version: int,
                  record: dict[str, Any], timeout: float = 30.0) -> None:
    """Point production at ``version`` and wait until 20 answers in a row come from it."""
    registry_of(server).set_alias(MODEL, "production", version, reason="test")
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        r = client.post("/predict", json=record)
        streak = streak + 1 if r.status_code == 200 and r.json()["version"] == version else 0
        if streak >= 20:
            return
        time.sleep(0.02)
    raise TimeoutError(f"server did not switch to v{version}:\n{server.log()}")


@pytest.fixture()
def client(server: ServerProcess):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture()
def record(served_project: ServedProject) -> dict[str, Any]:
    return to_records(served_project.test_X.head(1))[0]


class TestPredictions:
    def test_match_the_registry_models_own_predict_proba(
            self, client: httpx.Client, served_project: ServedProject) -> None:
        rows = served_project.test_X.head(300)
        records = to_records(rows)
        answers = [client.post("/predict", json=records[k:k + 100]) for k in (0, 100)]
        answers.append(client.post("/predict", json={"records": records[200:280]}))
        answers += [client.post("/predict", json=rec) for rec in records[280:300]]
        got_p, got_label, offset = [], [], 0
        for r in answers:
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["model"] == MODEL and body["classes"] == [False, True]
            n = len(body["predictions"])
            expected = served_project.expected_proba(body["version"],
                                                     rows.iloc[offset:offset + n])
            got_p.append(np.asarray(body["probabilities"]))
            got_label += body["predictions"]
            np.testing.assert_allclose(got_p[-1], expected, rtol=1e-6, atol=1e-7)
            offset += n
        assert offset == 300
        proba = np.vstack(got_p)
        assert got_label == [bool(v) for v in proba.argmax(axis=1)]

    def test_missing_values_are_imputed_like_the_pipeline(
            self, client: httpx.Client, served_project: ServedProject) -> None:
        rows = served_project.test_X.head(6).copy()
        rows["month"] = rows["month"].astype("float64")
        rows.loc[0, "month"] = np.nan
        rows["carrier"] = rows["carrier"].astype(object)
        rows.loc[1, "carrier"] = None
        rows.loc[2, "time_hour"] = pd.NaT
        rows.loc[3, ["distance", "dest"]] = [np.nan, None]
        r = client.post("/predict", json=to_records(rows))
        assert r.status_code == 200, r.text
        body = r.json()
        np.testing.assert_allclose(body["probabilities"],
                                   served_project.expected_proba(body["version"], rows),
                                   rtol=1e-6, atol=1e-7)


BAD = {
    "missing field": (lambda rec: [{k: v for k, v in rec.items() if k != "dest"}],
                      422, "missing", ["body", 0, "dest"], "'dest' is required"),
    "wrong type": (lambda rec: [{**rec, "month": "one"}], 422, "number_type",
                   ["body", 0, "month"], "must be a number"),
    "boolean for a number": (lambda rec: {**rec, "distance": True}, 422, "number_type",
                             ["body", "distance"], "not a boolean"),
    "number for a category": (lambda rec: [{**rec, "origin": 3}], 422, "string_type",
                              ["body", 0, "origin"], "must be a string"),
    "unknown category": (lambda rec: [rec, {**rec, "carrier": "ZZ"}], 422, "unknown_category",
                         ["body", 1, "carrier"], "'carrier' = 'ZZ' is not a category"),
    "bad datetime": (lambda rec: [{**rec, "time_hour": "yesterday"}], 422, "datetime_parsing",
                     ["body", 0, "time_hour"], "ISO 8601"),
    "unknown field": (lambda rec: [{**rec, "dep_delay": 4}], 422, "extra_forbidden",
                      ["body", 0, "dep_delay"], "unexpected field 'dep_delay'"),
    "empty list": (lambda rec: [], 422, "too_short", ["body"], "at least one record"),
    "empty records": (lambda rec: {"records": []}, 422, "too_short", ["body", "records"],
                      "at least one record"),
    "oversized batch": (lambda rec: [rec] * 501, 422, "too_long", ["body"],
                        "at most 500 are accepted"),
    "not an object": (lambda rec: [rec, "text"], 422, "model_type", ["body", 1],
                      "expected a JSON object"),
    "scalar body": (lambda rec: 42, 422, "model_type", ["body"], "got a number"),
}


def with_raw(field: str, raw: bytes) -> Any:
    """A body builder: the record as JSON with ``field`` set to the JSON text ``raw``
    (httpx's own encoder cannot write values nested 1000 deep)."""
    return lambda rec: json.dumps({**rec, field: "__raw__"}).encode().replace(b'"__raw__"',
                                                                                raw)


def deep(depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * depth + b"1" + close * depth


# Inputs that used to answer 500: (body builder, status, type, loc, text in msg).
FUZZED = {
    "offset before year 1": (with_raw("time_hour", b'"0001-01-01T00:00:00+01:00"'), 422,
                             "datetime_range", ["body", "time_hour"],
                             "expected a date-time from 1677-09-22 to 2262-04-10 UTC"),
    "offset after year 9999": (with_raw("time_hour", b'"9999-12-31T23:59:59-01:00"'), 422,
                               "datetime_range", ["body", "time_hour"],
                               "'time_hour' = '9999-12-31T23:59:59-01:00' is out of range"),
    "array 1000 deep": (with_raw("month", deep(1000)), 422, "number_type",
                        ["body", "month"], "must be a number, not an array ([[[...]]])"),
    "object 1000 deep": (with_raw("origin", deep(1000, b'{"a":', b"}")), 422, "string_type",
                         ["body", "origin"], "must be a string, not an object ({'a': {"),
    "array 1000 deep as a date-time": (with_raw("time_hour", deep(1000)), 422,
                                       "datetime_parsing", ["body", "time_hour"], "ISO 8601"),
}
# Hostile JSON that was already a 4xx; kept so that it stays one.
HOSTILE = {
    "nested past the parser's depth limit": (with_raw("month", deep(5000)), 422,
                                             "json_invalid", ["body"], "depth limit"),
    "400-digit integer": (with_raw("distance", b"1" * 400), 422, "json_invalid", ["body"],
                          "not valid JSON"),
    "NaN": (with_raw("distance", b"NaN"), 422, "json_invalid", ["body"], "not valid JSON"),
    "Infinity": (with_raw("distance", b"-Infinity"), 422, "json_invalid", ["body"],
                 "not valid JSON"),
    "non-string key": (lambda rec: b"{1: 2}", 422, "json_invalid", ["body"],
                       "not valid JSON"),
    "string body": (lambda rec: b'"text"', 422, "model_type", ["body"], "got a string"),
    "null body": (lambda rec: b"null", 422, "model_type", ["body"], "got null"),
    "NUL in a category": (with_raw("carrier", b'"U\\u0000A"'), 422, "unknown_category",
                          ["body", "carrier"], "'carrier' = 'U\\x00A' is not a category"),
    "100,000-character category": (with_raw("carrier", b'"' + b"Z" * 100_000 + b'"'), 422,
                                   "unknown_category", ["body", "carrier"], "ZZZ...ZZZ"),
}


class TestBadPayloads:
    @pytest.mark.parametrize("case", [*FUZZED, *HOSTILE])
    def test_fuzzed_input_is_a_4xx_and_the_server_keeps_serving(
            self, client: httpx.Client, server: ServerProcess, record: dict[str, Any],
            case: str) -> None:
        make, status, kind, loc, text = {**FUZZED, **HOSTILE}[case]
        errors_before = server.metric("prefab_serve_requests_total", 'status="500"')
        r = client.post("/predict", content=make(record),
                        headers={"content-type": "application/json"})
        assert r.status_code == status, r.text[:2000]
        detail = r.json()["detail"]
        assert detail[0]["type"] == kind and detail[0]["loc"] == loc, detail
        assert text in detail[0]["msg"] and len(detail[0]["msg"]) < 500, detail[0]["msg"]
        assert client.post("/predict", json=record).status_code == 200
        assert server.metric("prefab_serve_requests_total", 'status="500"') == errors_before

    @pytest.mark.parametrize("case", sorted(BAD))
    def test_rejected_with_a_field_level_message(self, client: httpx.Client,
                                                 record: dict[str, Any], case: str) -> None:
        make, status, kind, loc, text = BAD[case]
        r = client.post("/predict", json=make(record))
        assert r.status_code == status, r.text
        detail = r.json()["detail"]
        assert detail[0]["type"] == kind and detail[0]["loc"] == loc, detail
        assert text in detail[0]["msg"], detail[0]["msg"]

    def test_unknown_category_lists_allowed_values(self, client: httpx.Client,
                                                   record: dict[str, Any]) -> None:
        r = client.post("/predict", json={**record, "origin": "XYZ"})
        err = r.json()["detail"][0]
        assert r.status_code == 422 and err["ctx"]["allowed"] == ["EWR", "JFK", "LGA"]
        assert "allowed: ['EWR', 'JFK', 'LGA']" in err["msg"]

    def test_every_problem_reported_at_once(self, client: httpx.Client,
                                            record: dict[str, Any]) -> None:
        bad = {**record, "month": "x", "origin": "XYZ"}
        del bad["dest"]
        r = client.post("/predict", json=[record, bad, {**record, "time_hour": 5}])
        locs = {tuple(e["loc"]) for e in r.json()["detail"]}
        assert r.status_code == 422
        assert locs == {("body", 1, "month"), ("body", 1, "origin"), ("body", 1, "dest"),
                        ("body", 2, "time_hour")}

    def test_non_json_body(self, client: httpx.Client) -> None:
        r = client.post("/predict", content=b"month=1&day=2",
                        headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 422
        assert r.json()["detail"][0]["type"] == "json_invalid"
        assert "not valid JSON" in r.json()["detail"][0]["msg"]

    def test_body_over_the_limit_is_413(self, client: httpx.Client,
                                        record: dict[str, Any]) -> None:
        r = client.post("/predict", json=[{**record, "dest": "X" * 1_100_000}])
        assert r.status_code == 413
        assert "larger than 1000000 bytes" in r.json()["detail"][0]["msg"]

    def test_server_keeps_serving_and_counts_rejections(self, client: httpx.Client,
                                                        server: ServerProcess,
                                                        record: dict[str, Any]) -> None:
        before = server.metric("prefab_serve_invalid_requests_total", 'type="missing"')
        client.post("/predict", json=[{"month": 1}])
        assert server.metric("prefab_serve_invalid_requests_total",
                             'type="missing"') == before + 1
        assert client.post("/predict", json=record).status_code == 200


class TestEndpoints:
    def test_health_ready_model(self, client: httpx.Client,
                                served_project: ServedProject) -> None:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        info = client.get("/model").json()
        v = info["version"]
        assert info["model"] == MODEL and info["alias_name"] == "production"
        assert [c["name"] for c in info["input_schema"]["columns"]] == \
            served_project.input_columns
        assert info["metrics"]["roc_auc"] > 0.6 and info["sha256"]
        assert info["lineage"]["data"]["rows"] == 20_000
        assert info["serving"]["fast_path"] is True
        assert info["extra_fields"] == ["hour"]
        assert ready.json()["version"] == v or ready.json()["version"] in (1, 2)

    def test_metrics_count_across_both_workers(self, client: httpx.Client,
                                               server: ServerProcess,
                                               served_project: ServedProject) -> None:
        rows_before = server.metric("prefab_serve_predicted_rows_total")
        ok_before = server.metric("prefab_serve_requests_total",
                                  'endpoint="/predict",method="POST",status="200"')
        records = to_records(served_project.test_X.head(40))
        for k in range(0, 40, 4):  # new connections: both workers take some
            with httpx.Client(base_url=server.url) as c:
                assert c.post("/predict", json=records[k:k + 4]).status_code == 200
        text = server.metrics_text()
        assert server.metric("prefab_serve_predicted_rows_total") == rows_before + 40
        assert server.metric("prefab_serve_requests_total",
                             'endpoint="/predict",method="POST",status="200"') == ok_before + 10
        for name in ("prefab_serve_request_duration_seconds_bucket",
                     "prefab_serve_prediction_score_bucket", "prefab_serve_predictions_total",
                     "prefab_serve_model_version", "prefab_serve_batch_rows_bucket",
                     "prefab_serve_model_reloads_total"):
            assert name in text, name
        version = client.get("/model").json()["version"]
        assert f'prefab_serve_model_version{{model="{MODEL}"}} {float(version)}' in text

    def test_keep_alive_requests_do_not_stall(self, client: httpx.Client,
                                              record: dict[str, Any]) -> None:
        """TCP_NODELAY: without it each keep-alive request can wait ~40 ms for an ACK."""
        times = []
        for _ in range(40):
            t0 = time.perf_counter()
            assert client.post("/predict", json=record).status_code == 200
            times.append(time.perf_counter() - t0)
        assert statistics.median(times) < 0.025, times


class _Load:
    """Client threads that keep sending real rows until stopped, recording every answer."""

    def __init__(self, url: str, project: ServedProject, threads: int = 2) -> None:
        self.url = url
        self.rows = project.test_X.head(64)
        self.records = to_records(self.rows)
        self.answers: list[tuple[int, int, dict[str, Any] | str]] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(k,)) for k in range(threads)]

    def _run(self, k: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            i = k
            while not self.stop.is_set():
                start = (i * 3) % 60
                n = 1 + i % 4
                try:
                    r = c.post("/predict", json=self.records[start:start + n])
                    self.answers.append((start, r.status_code, r.json()
                                         if r.status_code == 200 else r.text))
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                i += 1

    def __enter__(self) -> _Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def versions(self) -> list[int]:
        return [a[2]["version"] for a in self.answers if isinstance(a[2], dict)]


class TestHotReload:
    def test_promotion_under_load_loses_no_request(self, server: ServerProcess,
                                                   client: httpx.Client,
                                                   served_project: ServedProject,
                                                   record: dict[str, Any]) -> None:
        serve_version(server, client, 1, record)
        loaded_before = server.metric("prefab_serve_model_reloads_total", 'result="loaded"')
        with _Load(server.url, served_project) as load:
            time.sleep(0.5)
            registry_of(server).set_alias(MODEL, "production", 2, reason="promote under load")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                tail = load.versions()[-40:]
                if len(tail) == 40 and set(tail) == {2}:
                    break
                time.sleep(0.05)
            time.sleep(0.3)
        assert not load.failures, load.failures[:3]
        assert all(status == 200 for _, status, _ in load.answers), [
            a for a in load.answers if a[1] != 200][:3]
        versions = load.versions()
        assert versions[0] == 1 and versions[-1] == 2 and len(versions) > 50
        # every answer came from the version it names, in flight or not
        expected = {v: served_project.expected_proba(v, load.rows) for v in (1, 2)}
        for start, _, body in load.answers:
            n = len(body["predictions"])
            np.testing.assert_allclose(body["probabilities"],
                                       expected[body["version"]][start:start + n],
                                       rtol=1e-6, atol=1e-7)
        assert server.metric("prefab_serve_model_reloads_total",
                             'result="loaded"') == loaded_before + 2  # both workers
        # and back (a rollback is just another alias move)
        registry_of(server).rollback(MODEL, reason="test rollback")
        serve_version(server, client, 1, record)

    def _register_copy_of_v1(self, server: ServerProcess, model_bytes: bytes | None = None
                             ) -> ModelVersion:
        reg = registry_of(server)
        v1 = reg.get_version(MODEL, 1)
        data = model_bytes if model_bytes is not None else reg.store.get(v1.model_key)
        manifest = dataclasses.replace(v1, version=0, files={})
        return reg.register(manifest, data)

    def _refused(self, server: ServerProcess, client: httpx.Client, version: int,
                 record: dict[str, Any]) -> dict[str, Any]:
        refused_before = server.metric("prefab_serve_model_reloads_total", 'result="refused"')
        registry_of(server).set_alias(MODEL, "production", version, reason="bad model")
        deadline = time.monotonic() + 30
        while server.metric("prefab_serve_model_reloads_total",
                            'result="refused"') < refused_before + 2:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        for _ in range(20):  # the old model keeps answering on every worker
            r = client.post("/predict", json=record)
            assert r.status_code == 200 and r.json()["version"] == 1, r.text
        info = client.get("/model").json()
        assert info["version"] == 1 and info["last_refused"]["version"] == version
        return info["last_refused"]

    def test_tampered_model_file_is_refused(self, server: ServerProcess, client: httpx.Client,
                                            record: dict[str, Any]) -> None:
        serve_version(server, client, 1, record)
        mv = self._register_copy_of_v1(server)
        blob = server.registry_dir / mv.model_key
        raw = bytearray(blob.read_bytes())
        for k in range(len(raw) // 2, len(raw) // 2 + 16):
            raw[k] ^= 0xFF
        blob.write_bytes(bytes(raw))
        refused = self._refused(server, client, mv.version, record)
        assert "sha256" in refused["error"] and "tampered" in refused["error"]
        assert "refusing to load a tampered model" in server.log()

    def test_unloadable_model_is_refused(self, server: ServerProcess, client: httpx.Client,
                                         record: dict[str, Any]) -> None:
        serve_version(server, client, 1, record)
        mv = self._register_copy_of_v1(server, b"this is not a pickled pipeline")
        refused = self._refused(server, client, mv.version, record)
        assert "cannot be unpickled" in refused["error"]


class TestWorkers:
    def test_a_killed_worker_is_replaced_and_the_other_keeps_serving(
            self, server: ServerProcess, record: dict[str, Any]) -> None:
        loaded = server.metric("prefab_serve_model_reloads_total", 'result="loaded"')
        with httpx.Client(base_url=server.url, timeout=30) as c:
            victim = c.get("/model").json()["worker"]["pid"]
        os.kill(victim, signal.SIGKILL)
        # Connections already queued on the killed worker's socket die with it (a crash
        # resets them); once it is gone, every new connection reaches the survivor.
        time.sleep(0.5)
        deadline = time.monotonic() + 60
        answered = 0
        while server.metric("prefab_serve_model_reloads_total",
                            'result="loaded"') < loaded + 1:
            assert time.monotonic() < deadline, server.log()
            with httpx.Client(base_url=server.url, timeout=30) as c:  # a new connection
                assert c.post("/predict", json=record).status_code == 200
            answered += 1
            time.sleep(0.05)
        assert answered > 0 and "exited with -9; restarting" in server.log()
        pids = set()
        for _ in range(40):
            with httpx.Client(base_url=server.url, timeout=30) as c:
                pids.add(c.get("/model").json()["worker"]["pid"])
        assert victim not in pids and len(pids) == 2
