"""`pip install 'prefab-mlops[serve]'` alone serves a registered model: no Prefect, Hydra,
OmegaConf, Evidently or W&B in the environment at all."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from prefab_mlops.testing.local_prefect import free_port
from prefab_mlops.testing.records import to_records
from tests.serve.conftest import MODEL, ServedProject, ServerProcess

REPO = Path(__file__).resolve().parents[2]
TRAINING_STACK = ("prefect", "prefect_aws", "hydra", "omegaconf", "evidently", "wandb",
                  "pandera", "matplotlib")


def _uv() -> str:
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(uv).exists() and not shutil.which(uv):
        pytest.fail("uv is part of the [dev] extra; reinstall with `make setup`")
    return uv


@pytest.mark.slow
def test_serve_extra_alone_serves_a_registered_model(served_project: ServedProject,
                                                     tmp_path: Path) -> None:
    venv = tmp_path / "serve-venv"
    python = str(venv / "bin" / "python")
    subprocess.run([_uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run([_uv(), "pip", "install", "-q", "--python", python, f"{REPO}[serve]"],
                   check=True, timeout=600)
    probe = ("import importlib.util as u, json; "
             f"print(json.dumps([m for m in {TRAINING_STACK!r} if u.find_spec(m)]))")
    present = subprocess.run([python, "-c", probe], check=True, capture_output=True,
                             text=True, cwd=tmp_path).stdout.strip()
    assert present == "[]"

    server = ServerProcess(served_project.registry_copy(tmp_path / "registry"), free_port(),
                           tmp_path / "server.log", workers=1, python=python)
    server.start()
    try:
        rows = served_project.test_X.head(50)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            r = client.post("/predict", json=to_records(rows))
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["model"] == MODEL and body["version"] == 1
            np.testing.assert_allclose(np.asarray(body["probabilities"]),
                                       served_project.expected_proba(1, rows),
                                       rtol=1e-6, atol=1e-7)
            bad = client.post("/predict", json=[{"month": "not a month"}])
            assert bad.status_code == 422
    finally:
        server.stop()
