"""Fixtures shared by the registry tests (registry, check, CLI)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from prefab_mlops.core.storage import LocalObjectStore, S3Config, S3ObjectStore
from tests.conftest import make_bucket


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    """An empty object store: a local directory, or a fresh bucket on the moto server."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "registry")
    endpoint = request.getfixturevalue("s3_env")
    bucket = f"registry-{uuid.uuid4().hex[:12]}"
    make_bucket(endpoint, bucket)
    return S3ObjectStore(bucket, "prefab/registry", S3Config(endpoint_url=endpoint))
