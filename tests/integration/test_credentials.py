"""No credential ends up where people or machines read: after a training run that used
S3 credentials (moto on loopback) and a W&B API key, neither is in the Prefect logs,
artifacts or run parameters, the W&B offline files, the registry (manifests, events,
aliases, blobs) or any file the run wrote under the project."""

from __future__ import annotations

import re
import secrets
import string
import time
import uuid
from pathlib import Path
from uuid import UUID

import boto3
import pytest

from prefab_mlops.flows.training import training

pytestmark = pytest.mark.usefixtures("prefect_harness")

CONF = str(Path(__file__).resolve().parents[2] / "conf")
# what a leaked AWS key id looks like, whatever its value
AWS_KEY_ID = re.compile(rb"\b(AKIA|ASIA)[0-9A-Z]{16}\b")


def _random(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


@pytest.fixture()
def leaky_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Distinctive fake credentials (moto accepts any), set the usual way: environment."""
    creds = {
        "AWS_ACCESS_KEY_ID": "AKIA" + _random(string.ascii_uppercase + string.digits, 16),
        "AWS_SECRET_ACCESS_KEY": _random(string.ascii_letters + string.digits, 40),
        "WANDB_API_KEY": _random("0123456789abcdef", 40),
    }
    for key, value in creds.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("PREFAB_S3_ENDPOINT_URL", s3_server)
    return creds


def _prefect_texts(flow_run_id: str) -> list[bytes]:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    run_id = UUID(flow_run_id)
    # logs and artifacts reach the server in the background (the API log handler and
    # the events worker), so the last ones can land after the flow run has returned
    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(
                any_=[run_id])), limit=200)
            arts = client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
            run = client.read_flow_run(run_id)
        if (logs and arts) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert logs and arts, "the run left no logs or artifacts to scan"
    return ([log.message.encode() for log in logs]
            + [str(a.data).encode() + str(a.description).encode() for a in arts]
            + [repr(run.parameters).encode()])


def test_credentials_appear_nowhere_after_a_run(leaky_env: dict[str, str], s3_server: str,
                                               tmp_path: Path, flights_frame) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    bucket = f"creds-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/flights.csv",
                  Body=flights_frame.head(20000).to_csv(index=False).encode())

    summary = training(overrides=[
        f"paths.root={tmp_path}", "storage=s3", f"storage.bucket={bucket}",
        f"data.uri=s3://{bucket}/in/flights.csv", "model.n_estimators=40", "tracking=wandb"],
        config_dir=CONF)
    assert summary["version"] == 1 and summary["tracking"]["mode"] == "offline"

    blobs: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            blobs[f"s3://{bucket}/{obj['Key']}"] = s3.get_object(
                Bucket=bucket, Key=obj["Key"])["Body"].read()
    assert any("/versions/" in k for k in blobs) and any("/aliases/" in k for k in blobs)
    files = {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert any("/wandb/" in k for k in files), "no W&B offline files to scan"
    texts = {**blobs, **files,
             **{f"prefect[{i}]": t for i, t in enumerate(_prefect_texts(summary["flow_run_id"]))},
             "summary": repr(summary).encode()}

    leaks = [(where, name) for where, data in texts.items()
             for name, secret in leaky_env.items() if secret.encode() in data]
    leaks += [(where, "an AWS key id") for where, data in texts.items()
              if AWS_KEY_ID.search(data)]
    assert leaks == [], leaks
    assert len(texts) > 20  # registry, snapshot, cache, W&B run, logs, artifacts
