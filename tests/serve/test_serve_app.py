"""The app in-process (lifespan included), the batcher, the request log, settings and CLI.

The behaviour users see over the network is in ``test_serve_http.py``; this file
covers what is easier to set up in-process: startup without a usable model,
other settings, the request log's files, and the pieces on their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.storage import LocalObjectStore
from prefab_mlops.serve.app import create_app
from prefab_mlops.serve.batcher import MicroBatcher
from prefab_mlops.serve.errors import ServeConfigError
from prefab_mlops.serve.model import Prediction
from prefab_mlops.serve.settings import ServeSettings
from prefab_mlops.testing.records import to_records
from tests.serve.conftest import MODEL, REPO, ServedProject


def settings(registry: Path, **kw: Any) -> ServeSettings:
    return ServeSettings(registry=str(registry), model=MODEL, poll_seconds=0.05, **kw)


class AppClient:
    """The app in-process: its lifespan and an httpx client on an event loop in a thread.

    The loop keeps running between calls, so the alias watcher and the request-log
    writer work as in a real server while the test thread waits.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._lifespan: Any = None
        self.client: httpx.AsyncClient | None = None

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def __enter__(self) -> AppClient:
        self.thread.start()
        self._lifespan = self.app.router.lifespan_context(self.app)
        self._run(self._lifespan.__aenter__())
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                        base_url="http://app")
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.client is not None
        self._run(self.client.aclose())
        self._run(self._lifespan.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def get(self, path: str, **kw: Any) -> httpx.Response:
        assert self.client is not None
        return self._run(self.client.get(path, **kw))

    def post(self, path: str, **kw: Any) -> httpx.Response:
        assert self.client is not None
        return self._run(self.client.post(path, **kw))


def wait_until(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


class TestStartup:
    def test_not_ready_until_a_version_is_promoted(self, served_project: ServedProject,
                                                   tmp_path: Path) -> None:
        registry = served_project.registry_copy(tmp_path / "registry")
        (registry / MODEL / "aliases" / "production.json").unlink()
        with AppClient(create_app(settings(registry))) as c:
            ready = c.get("/ready")
            assert ready.status_code == 503
            assert "has no 'production' alias" in ready.json()["reason"]
            assert c.get("/health").status_code == 200
            r = c.post("/predict", json=to_records(served_project.test_X.head(1)))
            assert r.status_code == 503 and "not ready" in r.json()["detail"]
            ModelRegistry(LocalObjectStore(registry)).set_alias(MODEL, "production", 2)
            wait_until(lambda: c.get("/ready").status_code == 200)
            assert c.get("/model").json()["version"] == 2

    def test_tampered_production_model_never_serves(self, served_project: ServedProject,
                                                    tmp_path: Path) -> None:
        registry = served_project.registry_copy(tmp_path / "registry")
        reg = ModelRegistry(LocalObjectStore(registry))
        blob = registry / reg.get_version(MODEL, 1).model_key
        blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
        app = create_app(settings(registry))
        with AppClient(app) as c:
            ready = c.get("/ready")
            assert ready.status_code == 503 and "sha256" in ready.json()["reason"]
            assert 'prefab_serve_model_reloads_total{result="refused"} 1.0' in c.get(
                "/metrics").text


    def test_starting_worker_serves_the_previous_version_if_the_current_is_refused(
            self, served_project: ServedProject, tmp_path: Path) -> None:
        registry = served_project.registry_copy(tmp_path / "registry")
        reg = ModelRegistry(LocalObjectStore(registry))
        reg.set_alias(MODEL, "production", 2)  # history: [1]
        blob = registry / reg.get_version(MODEL, 2).model_key
        blob.write_bytes(b"tampered" + blob.read_bytes()[8:])
        with AppClient(create_app(settings(registry))) as c:
            info = c.get("/model").json()
            assert c.get("/ready").status_code == 200
            body = c.post("/predict", json=to_records(served_project.test_X.head(2))).json()
        assert info["version"] == body["version"] == 1
        assert info["fallback"]["alias_version"] == 2 and info["last_refused"]["version"] == 2
        assert "sha256" in info["last_refused"]["error"]


class TestSettingsInUse:
    def test_unknown_category_accepted_and_flagged(self, served_project: ServedProject,
                                                   tmp_path: Path) -> None:
        rows = served_project.test_X.head(3).copy()
        rows["carrier"] = rows["carrier"].astype(object)
        rows.loc[1, "carrier"] = "ZZ"
        app = create_app(settings(served_project.registry, unknown_category="accept"))
        with AppClient(app) as c:
            body = c.post("/predict", json=to_records(rows)).json()
            metrics = c.get("/metrics").text
        assert body["warnings"] == [{"row": 1, "field": "carrier", "value": "ZZ",
                                     "type": "unknown_category"}]
        np.testing.assert_allclose(body["probabilities"],
                                   served_project.expected_proba(body["version"], rows),
                                   rtol=1e-6, atol=1e-7)
        assert 'prefab_serve_unknown_categories_total{field="carrier"} 1.0' in metrics

    def test_without_fast_path_same_answers(self, served_project: ServedProject) -> None:
        rows = served_project.test_X.head(50)
        with AppClient(create_app(settings(served_project.registry, fast_path=False))) as c:
            body = c.post("/predict", json=to_records(rows)).json()
            serving = c.get("/model").json()["serving"]
        assert serving["fast_path"] is False
        assert serving["fast_path_reason"] == "disabled by --no-fast-path"
        np.testing.assert_allclose(body["probabilities"],
                                   served_project.expected_proba(body["version"], rows),
                                   rtol=1e-6, atol=1e-7)


    def test_docs_example_is_a_record_of_the_served_model(
            self, served_project: ServedProject) -> None:
        """The /predict example in the OpenAPI document is the served model's first
        reference row with exactly its input fields, and it scores."""
        from prefab_mlops.core.registry import REFERENCE_FILE

        registry = ModelRegistry(LocalObjectStore(served_project.registry))
        with AppClient(create_app(settings(served_project.registry))) as c:
            served = c.get("/model").json()
            doc = c.get("/openapi.json").json()
            example = doc["paths"]["/predict"]["post"]["requestBody"]["content"][
                "application/json"]["example"]
            scored = c.post("/predict", json=example)
        reference = pd.read_parquet(io.BytesIO(registry.read_file(
            registry.get_version(MODEL, served["version"]), REFERENCE_FILE)))
        assert len(example) == 1
        assert list(example[0]) == [c["name"] for c in served["input_schema"]["columns"]]
        assert example[0]["distance"] == reference["distance"].iloc[0]
        assert example[0]["carrier"] == reference["carrier"].iloc[0]
        assert scored.status_code == 200, scored.text

class TestDatetimeRange:
    @pytest.mark.parametrize("fast_path", [True, False])
    def test_both_scoring_paths_and_the_log_take_the_accepted_range(
            self, served_project: ServedProject, tmp_path: Path, fast_path: bool) -> None:
        rows = served_project.test_X.head(2).copy()
        rows["time_hour"] = pd.to_datetime(["1677-09-22T00:00:00Z",  # the accepted bounds
                                            "2262-04-10T23:59:59.999999Z"],
                                           format="ISO8601").as_unit("us")
        records = to_records(rows)
        app = create_app(settings(served_project.registry, fast_path=fast_path,
                                  request_log_dir=str(tmp_path)))
        with AppClient(app) as c:
            body = c.post("/predict", json=records).json()
            # year 1 parses, but pandas' nanosecond timestamps cannot hold it
            r = c.post("/predict", json=[records[0], {**records[1],
                                                      "time_hour": "0001-01-01T00:00:00Z"}])
        np.testing.assert_allclose(body["probabilities"],
                                   served_project.expected_proba(body["version"], rows),
                                   rtol=1e-6, atol=1e-7)
        assert r.status_code == 422, r.text
        err = r.json()["detail"][0]
        assert err["type"] == "datetime_range" and err["loc"] == ["body", 1, "time_hour"]
        assert "expected a date-time from 1677-09-22 to 2262-04-10 UTC" in err["msg"]
        inputs, _ = logged_files(tmp_path, "parquet")
        logged = pd.read_parquet(inputs[0])["time_hour"]
        assert logged.tolist() == rows["time_hour"].tolist()


class TestOtherProblemTypes:
    """Regression and multiclass models, registered directly with ModelRegistry."""

    @pytest.mark.parametrize("problem", ["regression", "multiclass"])
    def test_served_like_the_pipeline(self, served_project: ServedProject, tmp_path: Path,
                                      problem: str) -> None:
        import pickle

        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LinearRegression, LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        from prefab_mlops.core.manifest import DataRecord, FeatureRecord, ModelVersion
        from prefab_mlops.core.schema import ColumnKind, ColumnSpec, InputSchema

        numeric = ["month", "day", "sched_dep_time", "distance"]
        data = served_project.data
        target = data["hour"] if problem == "regression" else data["origin"].astype(str)
        estimator = LinearRegression() if problem == "regression" else LogisticRegression(
            max_iter=300)
        pipe = Pipeline([
            ("preprocess", ColumnTransformer([("num", Pipeline([
                ("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
                numeric)])),
            ("model", estimator)]).fit(data[numeric].head(5000), target.head(5000))
        schema = InputSchema(tuple(ColumnSpec(c, ColumnKind.NUMERIC, "int64") for c in numeric))
        classes = None if problem == "regression" else sorted(target.unique().tolist())
        reg = ModelRegistry(LocalObjectStore(tmp_path / "registry"))
        mv = reg.register(ModelVersion(
            "other", 0, "", "fp", "", "", problem, metrics={"r2": 0.5},
            data=DataRecord(columns=[*numeric, "hour", "origin"]),
            features=FeatureRecord(input_schema=schema, classes=classes)), pickle.dumps(pipe))
        reg.set_alias("other", "production", mv.version)
        rows = data[numeric].iloc[6000:6040].reset_index(drop=True)
        s = ServeSettings(registry=str(tmp_path / "registry"), model="other",
                          request_log_dir=str(tmp_path / "log"))
        with AppClient(create_app(s)) as c:
            body = c.post("/predict", json=to_records(rows)).json()
            info = c.get("/model").json()
            metrics = c.get("/metrics").text
        assert info["serving"]["fast_path"] is True
        if problem == "regression":
            assert "probabilities" not in body
            np.testing.assert_allclose(body["predictions"], pipe.predict(rows), rtol=1e-9)
            assert "prefab_serve_prediction_value_count 40.0" in metrics
        else:
            assert body["classes"] == classes == ["EWR", "JFK", "LGA"]
            np.testing.assert_allclose(body["probabilities"], pipe.predict_proba(rows),
                                       rtol=1e-9)
            assert body["predictions"] == pipe.predict(rows).tolist()
            assert "prefab_serve_prediction_score_count 40.0" in metrics
        logged = pd.read_parquet(next((tmp_path / "log").glob("other-*.predictions.parquet")))
        assert len(logged) == 40
        if problem == "multiclass":
            assert {"probability_EWR", "probability_JFK", "probability_LGA"} <= set(logged)


# ---------------------------------------------------------------- request log
def logged_files(directory: Path, ext: str) -> tuple[list[Path], list[Path]]:
    files = sorted(directory.glob(f"{MODEL}-*.{ext}"))
    preds = [p for p in files if p.name.endswith(f".predictions.{ext}")]
    return [p for p in files if p not in preds], preds


class TestRequestLog:
    def test_log_is_a_batch_the_monitoring_flow_accepts(
            self, served_project: ServedProject, tmp_path: Path) -> None:
        from prefab_mlops.config import TargetSpec, load_config
        from prefab_mlops.flows.common import unlabelled
        from prefab_mlops.tasks.ingest import ingest
        from prefab_mlops.tasks.validate import check_batch_schema, validate

        cols = [*served_project.input_columns, "hour"]
        rows = served_project.data[cols].iloc[:1200].reset_index(drop=True)
        records = to_records(rows)
        app = create_app(settings(served_project.registry, request_log_dir=str(tmp_path / "log"),
                                  request_log_rows_per_file=1000,
                                  request_log_flush_seconds=3600))
        with AppClient(app) as c:
            answers = [c.post("/predict", json=records[k:k + 100]).json()
                       for k in range(0, 1200, 100)]
            ids = [a["request_id"] for a in answers]
        assert len(set(ids)) == 12  # the app closed: the log is flushed
        inputs, preds = logged_files(tmp_path / "log", "parquet")
        assert len(inputs) == len(preds) == 2
        first = pd.read_parquet(inputs[0])
        assert len(first) == 1000 and len(pd.read_parquet(inputs[1])) == 200
        assert sorted(first.columns) == sorted(cols)
        out = pd.read_parquet(preds[0])
        assert out["request_id"].tolist()[:100] == [ids[0]] * 100
        version = answers[0]["version"]
        np.testing.assert_allclose(out["probability"],
                                   served_project.expected_proba(version, rows.head(1000))[:, 1],
                                   rtol=1e-6)
        pd.testing.assert_frame_equal(first[served_project.input_columns].assign(
            time_hour=first["time_hour"].dt.as_unit("us")),
            rows.head(1000)[served_project.input_columns], check_dtype=False)

        # exactly what flows/monitoring.py does with a batch before any drift work
        cfg = load_config([f"paths.root={tmp_path / 'monitor'}", f"data.uri={inputs[0]}",
                           "data.format=auto", "monitor.labels=false", "tracking=disabled"],
                          config_dir=REPO / "conf").typed
        batch = ingest.fn(unlabelled(cfg.data), cfg.paths, cfg.storage, cfg.seed)
        report = validate.fn(batch, dataclasses.replace(cfg.validate, on_failure="fail"),
                             TargetSpec.from_data(cfg.data), False)
        assert report.passed and report.rows == 1000
        manifest = ModelRegistry(LocalObjectStore(served_project.registry)).get_version(
            MODEL, version)
        check_batch_schema(batch.frame, manifest.features.input_schema,
                           [*manifest.data.columns, "delayed"], batch.source)

    def test_rotation_and_cap_in_csv(self, served_project: ServedProject,
                                     tmp_path: Path) -> None:
        records = to_records(served_project.test_X.head(50))
        app = create_app(settings(served_project.registry, request_log_dir=str(tmp_path),
                                  request_log_format="csv", request_log_rows_per_file=10,
                                  request_log_max_files=3, request_log_flush_seconds=0.05))
        with AppClient(app) as c:
            for k in range(0, 50, 5):
                assert c.post("/predict", json=records[k:k + 5]).status_code == 200
            wait_until(lambda: 'prefab_serve_request_log_rows_total 50.0' in c.get(
                "/metrics").text)
        inputs, preds = logged_files(tmp_path, "csv")
        assert len(inputs) == len(preds) == 3  # 5 files written, the 2 oldest deleted
        kept = pd.concat([pd.read_csv(p) for p in inputs], ignore_index=True)
        assert len(kept) == 30
        assert kept["time_hour"].tolist() == [r["time_hour"] for r in records[20:]]


    def test_deeply_nested_extra_field_does_not_lose_the_log(
            self, served_project: ServedProject, tmp_path: Path) -> None:
        record = to_records(served_project.data[[*served_project.input_columns, "hour"]]
                            .head(2))
        nested = b"[" * 1000 + b"1" + b"]" * 1000  # 'hour' is an accepted extra field
        deep = json.dumps({**record[0], "hour": "__raw__"}).encode().replace(
            b'"__raw__"', nested)
        app = create_app(settings(served_project.registry, request_log_dir=str(tmp_path),
                                  request_log_flush_seconds=3600))
        with AppClient(app) as c:
            assert c.post("/predict", content=deep,
                          headers={"content-type": "application/json"}).status_code == 200
            assert c.post("/predict", json=[record[1]]).status_code == 200
        inputs, preds = logged_files(tmp_path, "parquet")  # closing flushed both requests
        logged = pd.read_parquet(inputs[0])["hour"].tolist()
        assert logged == ["[[[...]]]", str(record[1]["hour"])], logged
        assert len(pd.read_parquet(preds[0])) == 2

    def test_model_shows_the_latest_evaluation_of_its_version(
            self, served_project: ServedProject, tmp_path: Path) -> None:
        """A later run evaluated v1 again (the same model, registered once): /model
        shows that evaluation's metrics and gate, not the ones of its registration."""
        from prefab_mlops.core.manifest import EvaluationRecord, GateRecord
        from prefab_mlops.serve.model import load_served

        registry = ModelRegistry(LocalObjectStore(served_project.registry_copy(
            tmp_path / "registry")))
        registered = load_served(registry, MODEL, 1).describe()
        assert registered["evaluated"]["at_registration"] is True
        later = registry.record_evaluation(MODEL, EvaluationRecord(
            version=1, at="", metrics={"roc_auc": 0.5123, "n_test": 10.0},
            gate=GateRecord(passed=False, decided_by=["baseline"], summary="failed: later")))

        shown = load_served(registry, MODEL, 1).describe()

        assert shown["metrics"] == {"roc_auc": 0.5123, "n_test": 10.0}
        assert shown["gate"]["summary"] == "failed: later"
        assert shown["evaluated"] == {"at": later.at, "at_registration": False}
        assert registered["metrics"] != shown["metrics"]

    def test_rows_beyond_the_memory_bound_are_dropped_and_counted(
            self, served_project: ServedProject, tmp_path: Path) -> None:
        from prefab_mlops.serve.model import load_served
        from prefab_mlops.serve.reqlog import RequestLog

        model = load_served(ModelRegistry(LocalObjectStore(served_project.registry)), MODEL, 1)
        dropped: list[int] = []
        log = RequestLog(tmp_path, MODEL, rows_per_file=10, max_pending_rows=12,
                         on_dropped=dropped.append)  # writer not started: nothing drains
        data = model.validator.validate(to_records(served_project.test_X.head(5)))
        pred = model.predict(data.columns, data.rows)
        for k in range(4):
            log.add(model, data, pred, f"r{k}")
        assert dropped == [5, 5]
        log.close()  # without a writer thread, close() writes what was kept
        inputs, _ = logged_files(tmp_path, "parquet")
        assert sum(len(pd.read_parquet(p)) for p in inputs) == 10


# -------------------------------------------------------------------- batcher
class _Stub:
    """A stand-in model: the prediction of a row is its ``x`` value; ``boom`` fails."""

    def __init__(self, first_call_s: float = 0.05) -> None:
        self.calls: list[list[Any]] = []
        self.first_call_s = first_call_s

    def predict(self, cols: dict[str, list[Any]], n: int) -> Prediction:
        self.calls.append(list(cols["x"]))
        if len(self.calls) == 1:
            time.sleep(self.first_call_s)
        if "boom" in cols["x"]:
            raise ValueError("boom")
        return Prediction(np.asarray(cols["x"], dtype=object), None)


async def _submit(b: MicroBatcher, model: _Stub, values: list[Any]) -> Any:
    try:
        return (await b.submit(model, {"x": values}, len(values))).labels.tolist()  # type: ignore[arg-type]
    except ValueError as exc:
        return f"error: {exc}"


class TestMicroBatcher:
    def test_requests_arriving_during_a_call_share_the_next_one(self) -> None:
        async def main() -> tuple[list[Any], _Stub]:
            b, m = MicroBatcher(max_rows=100, max_wait_s=0), _Stub()
            b.start()
            first = asyncio.ensure_future(_submit(b, m, [0]))
            await asyncio.sleep(0.01)  # the first call is running
            rest = [_submit(b, m, [k, k + 100]) for k in range(1, 20)]
            out = await asyncio.gather(first, *rest)
            await b.stop()
            return out, m

        out, model = asyncio.run(main())
        assert out == [[0], *([k, k + 100] for k in range(1, 20))]
        assert [len(c) for c in model.calls] == [1, 38]

    def test_batches_respect_max_rows_and_models_are_not_mixed(self) -> None:
        async def main() -> tuple[_Stub, _Stub]:
            b, a, other = MicroBatcher(max_rows=4, max_wait_s=0), _Stub(), _Stub(0)
            b.start()
            first = asyncio.ensure_future(_submit(b, a, ["a0"]))
            await asyncio.sleep(0.01)
            jobs = [_submit(b, a if k % 2 else other, [f"r{k}"]) for k in range(8)]
            await asyncio.gather(first, *jobs)
            await b.stop()
            return a, other

        a, other = asyncio.run(main())
        assert all(len(c) <= 4 for c in a.calls + other.calls)
        assert all(v.startswith(("a", "r1", "r3", "r5", "r7")) for c in a.calls for v in c)
        assert all(v in ("r0", "r2", "r4", "r6") for c in other.calls for v in c)

    def test_a_failing_request_does_not_fail_its_batch(self) -> None:
        async def main() -> list[Any]:
            b, m = MicroBatcher(max_wait_s=0), _Stub()
            b.start()
            first = asyncio.ensure_future(_submit(b, m, ["ok0"]))
            await asyncio.sleep(0.01)
            out = await asyncio.gather(first, _submit(b, m, ["ok1"]), _submit(b, m, ["boom"]),
                                       _submit(b, m, ["ok2"]))
            await b.stop()
            return out

        assert asyncio.run(main()) == [["ok0"], ["ok1"], "error: boom", ["ok2"]]

    def test_waits_briefly_only_for_requests_being_read(self) -> None:
        async def run(inflight: int) -> list[list[Any]]:
            b, m = MicroBatcher(max_wait_s=0.2), _Stub(first_call_s=0)
            b.start()
            b.inflight = inflight
            first = asyncio.ensure_future(_submit(b, m, ["a"]))
            await asyncio.sleep(0.05)
            b.inflight = 0
            await asyncio.gather(first, _submit(b, m, ["b"]))
            await b.stop()
            return m.calls

        assert asyncio.run(run(inflight=1)) == [["a", "b"]]  # waited for the second
        assert asyncio.run(run(inflight=0)) == [["a"], ["b"]]  # idle: scored at once


# --------------------------------------------------------- settings and CLI
class TestSettings:
    def test_every_bad_value_named_at_once(self) -> None:
        with pytest.raises(ServeConfigError) as err:
            ServeSettings(registry="r", model="m", port=0, workers=0, max_rows=0,
                          unknown_category="maybe", batch_wait_ms=500)
        msg = str(err.value)
        for flag in ("--port is 0", "--workers is 0", "--max-rows is 0",
                     "--unknown-category is 'maybe'", "--batch-wait-ms is 500"):
            assert flag in msg
        assert "Fix:" in msg

    def test_json_round_trip_and_unknown_keys(self) -> None:
        s = ServeSettings(registry="r", model="m", workers=2, storage={
            "kind": "s3", "bucket": "b", "prefix": "p", "s3": {"endpoint_url": "http://x"}})
        assert ServeSettings.from_json(s.to_json()) == s
        assert s.storage_config().s3.endpoint_url == "http://x"
        with pytest.raises(ServeConfigError, match="Unknown server settings"):
            ServeSettings.from_json(json.dumps({"registry": "r", "model": "m", "prot": 1}))

    def test_cli_takes_registry_and_model_from_the_project_config(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        from prefab_mlops.serve.__main__ import main

        assert main(["--print-settings", "--port", "8123", "--workers", "2",
                     "--config-dir", str(REPO / "conf"), "--", f"paths.root={tmp_path}"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["registry"] == str(tmp_path / "registry") and out["model"] == MODEL
        assert (out["port"], out["workers"], out["alias"]) == (8123, 2, "production")

    def test_cli_rejects_bad_flags_with_a_fix(self, capsys: pytest.CaptureFixture[str]) -> None:
        from prefab_mlops.serve.__main__ import main

        assert main(["--registry", "r", "--model", "m", "--workers", "100"]) == 2
        assert "--workers is 100; expected 1-64" in capsys.readouterr().err

    def test_port_in_use_fails_before_any_work(self) -> None:
        import socket

        from prefab_mlops.serve.errors import ServeError
        from prefab_mlops.serve.server import run

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            with pytest.raises(ServeError, match=f"Cannot listen on 127.0.0.1:{port}"):
                run(ServeSettings(registry="r", model="m", port=port, workers=2))


# ------------------------------------------------------------- boundaries
class TestBoundaries:
    # The import boundaries of the server are enforced in tests/test_architecture.py.

    def test_dockerfile(self) -> None:
        text = (REPO / "docker" / "serve.Dockerfile").read_text()
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and
                 not ln.lstrip().startswith("#")]
        assert lines[0] == "ARG BASE_IMAGE=python:3.11-slim"
        assert any(ln.startswith("FROM ${BASE_IMAGE") for ln in lines)
        # The runtime dependency stages are the flow image's, instruction for instruction,
        # so the engine's build cache shares that layer; each adds its own extra on top.
        flow = (REPO / "docker" / "flow.Dockerfile").read_text()

        def deps_stages(dockerfile: str) -> list[str]:
            body = [ln.strip() for ln in dockerfile.splitlines() if ln.strip()
                    and not ln.lstrip().startswith("#")]
            start = next(i for i, ln in enumerate(body) if ln.endswith("AS requirements"))
            end = next(i for i, ln in enumerate(body) if ln.startswith("FROM deps AS"))
            return body[start:end]

        assert deps_stages(text) == deps_stages(flow) and len(deps_stages(text)) > 8
        users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
        assert users and users[-1] not in ("root", "0")
        health = text[text.index("HEALTHCHECK"):].split("\n\n")[0]
        assert "/ready" in health and "--start-period" in health
        assert any("prefab_mlops.serve" in ln for ln in lines
                   if ln.startswith(("CMD", "ENTRYPOINT")))
        ignore = (REPO / ".dockerignore").read_text()
        assert ".venv" in ignore and "registry" in ignore
