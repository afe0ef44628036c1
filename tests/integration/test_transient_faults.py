"""Transient and permanent S3 faults, on a real S3 server (moto) behind a proxy that is
down on cue (prefab_mlops.testing.faults): the endpoint disappears for a few seconds
while ingest reads the data, while register writes a version and while batch scoring
writes its predictions, and each run still succeeds; a permanent fault (a bucket that
does not exist) fails at once with a named error and no retry storm."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlparse

import boto3
import pytest

from prefab_mlops.core.errors import PrefabError
from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.storage import S3Config, S3ObjectStore
from prefab_mlops.flows.batch_inference import batch_inference
from prefab_mlops.flows.training import training
from prefab_mlops.testing.faults import FaultyProxy, pipeline_outages

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

CONF = str(Path(__file__).resolve().parents[2] / "conf")
DOWN_SECONDS = 3.0


@pytest.fixture()
def proxy(s3_server: str, monkeypatch: pytest.MonkeyPatch):
    target = urlparse(s3_server)
    with FaultyProxy((target.hostname or "127.0.0.1", target.port or 80)) as p:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("PREFAB_S3_ENDPOINT_URL", p.url)
        yield p


def test_runs_survive_an_endpoint_that_is_down_for_seconds(
        proxy: FaultyProxy, s3_server: str, tmp_path: Path, flights_frame) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    bucket = f"faults-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/flights.csv",
                  Body=flights_frame.head(12000).to_csv(index=False).encode())
    s3.put_object(Bucket=bucket, Key="in/batch.csv",
                  Body=flights_frame.iloc[12000:14000].to_csv(index=False).encode())
    proxy.outages += pipeline_outages(bucket, DOWN_SECONDS)  # ingest, register, scoring
    common = [f"paths.root={tmp_path}", "storage=s3", f"storage.bucket={bucket}",
              "tracking=disabled"]

    trained = training(overrides=[*common, f"data.uri=s3://{bucket}/in/flights.csv",
                                  "model.n_estimators=30"], config_dir=CONF)
    scored = batch_inference(overrides=common, batch_uri=f"s3://{bucket}/in/batch.csv",
                             config_dir=CONF)

    assert len(proxy.fired()) == 3 and proxy.cut >= 3, (proxy.fired(), proxy.cut)
    assert trained["version"] == 1 and trained["decision"]["promote"]
    registry = ModelRegistry(S3ObjectStore(bucket, "prefab/registry",
                                           S3Config(endpoint_url=s3_server)))
    assert [v.version for v in registry.versions("flights-binary")] == [1]
    assert registry.alias("flights-binary", "production").version == 1
    registry.load("flights-binary", alias="production")  # sha256-checked
    assert scored["rows"] == 2000
    key = scored["output_uri"].split(f"s3://{bucket}/", 1)[1]
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0


def test_a_missing_bucket_fails_at_once_without_a_retry_storm(
        proxy: FaultyProxy, tmp_path: Path) -> None:
    with pytest.raises(PrefabError) as err:
        training(overrides=[f"paths.root={tmp_path}", "storage=s3",
                            "storage.bucket=no-such-bucket-here", "tracking=disabled",
                            "data.uri=s3://no-such-bucket-here/in/flights.csv"],
                 config_dir=CONF)
    assert "no-such-bucket-here" in str(err.value) and err.value.fix
    assert proxy.requests <= 4, proxy.requests  # a request or two, not a retry storm


@pytest.mark.timeout(600)
def test_a_wandb_server_that_hangs_costs_its_timeout_and_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    # accepts TCP connections (the kernel's backlog) and never answers a byte
    with socket.create_server(("127.0.0.1", 0), backlog=64) as blackhole:
        monkeypatch.delenv("WANDB_MODE", raising=False)
        monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{blackhole.getsockname()[1]}")
        s = training(overrides=[f"paths.root={tmp_path}", "data.sample_rows=8000",
                                "model.n_estimators=20", "tracking=wandb",
                                "tracking.mode=online", "tracking.init_timeout_s=5",
                                "orchestration.tasks.track.retries=0"], config_dir=CONF)
    assert s["version"] == 1 and s["decision"]["promote"]  # the model is not held hostage
    assert s["tracking"]["mode"] == "online" and "error" in s["tracking"]
    assert "W&B tracking failed and was skipped" in caplog.text
