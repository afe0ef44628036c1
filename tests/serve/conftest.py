"""Fixtures of the serving tests: a real registry with two real versions, real servers.

* ``served_project`` (session): the real pipeline steps (task ``.fn``: ingest,
  validate, featurize, train, evaluate, register) on 20,000 real flights rows.
  v1 (50 trees) is promoted to ``production``; v2 (10 trees, so its predictions
  differ) is registered only. Tests may import prefab_mlops.tasks to BUILD this; the server
  under test never does.
* ``server``: ``python -m prefab_mlops.serve`` with 2 workers as a subprocess on a free
  loopback port (module scope), on its own copy of the registry; stopped at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prefab_mlops.testing.local_prefect import free_port, stop_group

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
MODEL = "flights-binary"


@dataclass
class ServedProject:
    root: Path
    registry: Path
    data: pd.DataFrame  # every column of the ingested rows (ids and target included)
    test_X: pd.DataFrame
    pipelines: dict[int, Any]
    input_columns: list[str]

    def registry_copy(self, dest: Path) -> Path:
        shutil.copytree(self.registry, dest)
        return dest

    def expected_proba(self, version: int, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.pipelines[version].predict_proba(frame[self.input_columns]))


@pytest.fixture(scope="session")
def served_project(tmp_path_factory: pytest.TempPathFactory) -> ServedProject:
    from prefab_mlops.config import ModelSpec, TargetSpec, load_config
    from prefab_mlops.core.registry import ModelRegistry
    from prefab_mlops.core.storage import LocalObjectStore
    from prefab_mlops.tasks.evaluate import evaluate
    from prefab_mlops.tasks.featurize import featurize
    from prefab_mlops.tasks.ingest import ingest
    from prefab_mlops.tasks.register import RunInfo, register
    from prefab_mlops.tasks.train import train
    from prefab_mlops.tasks.validate import validate

    root = tmp_path_factory.mktemp("serve-project")
    loaded = load_config([f"paths.root={root}", "data.sample_rows=20000",
                          "model.n_estimators=50", "tracking=disabled", "evaluate.plots=false"],
                         config_dir=CONF)
    cfg = loaded.typed
    target = TargetSpec.from_data(cfg.data)
    data = ingest.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
    assert validate.fn(data, cfg.validate, target).passed
    features = featurize.fn(data, cfg.features, target, cfg.seed)
    run = RunInfo(config=loaded.resolved, project_root=str(REPO))
    pipelines = {}
    for trees in (50, 10):
        spec = ModelSpec.from_config({**cfg.model, "n_estimators": trees})
        trained = train.fn(features, spec, cfg.seed)
        evaluation = evaluate.fn(trained, features, cfg.evaluate)
        reg_cfg = dataclasses.replace(cfg.register, reference_sample_rows=2000)
        mv = register.fn(trained, evaluation, data, features, None, reg_cfg, cfg.storage, run,
                         cfg.seed)
        pipelines[mv.version] = trained.pipeline
    registry = Path(cfg.register.root)
    ModelRegistry(LocalObjectStore(registry)).set_alias(MODEL, "production", 1,
                                                        reason="serving tests")
    assert sorted(pipelines) == [1, 2]
    return ServedProject(root, registry, data.frame, features.test.X.reset_index(drop=True),
                         pipelines,
                         list(features.input_schema.names))


# ------------------------------------------------------------------- servers
class ServerProcess:
    """``python -m prefab_mlops.serve`` as a subprocess in its own process group.

    With ``api_key``, the server gets it in ``$PREFAB_SERVE_API_KEY`` and the helpers
    here (``get``, ``metrics_text``, ``metric``, the readiness wait) send it.
    """

    def __init__(self, registry: Path, port: int, logfile: Path, *args: str,
                 workers: int = 2, python: str = sys.executable,
                 api_key: str | None = None) -> None:
        self.registry_dir = registry
        self.port = port
        self.workers = workers
        self.logfile = logfile
        self.api_key = api_key
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.cmd = [python, "-m", "prefab_mlops.serve", "--registry", str(registry),
                    "--model", MODEL, "--port", str(port), "--workers", str(workers), *args]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.pop("PREFAB_SERVE_API_KEY", None)
        if self.api_key:
            env["PREFAB_SERVE_API_KEY"] = self.api_key
        with open(self.logfile, "wb") as fh:
            self.proc = subprocess.Popen(self.cmd, stdout=fh, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=REPO, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.metric("prefab_serve_model_reloads_total",
                               'result="loaded"') >= self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        stop_group(self.proc, ((signal.SIGTERM, 20), (signal.SIGKILL, 5)))

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")[-6000:]

    def _open(self, path: str) -> Any:
        request = urllib.request.Request(self.url + path, headers=self.headers)
        return urllib.request.urlopen(request, timeout=10)

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with self._open(path) as r:
                body = r.read()
                status = r.status
        except urllib.error.HTTPError as err:
            body, status = err.read(), err.code
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode()

    def metrics_text(self) -> str:
        with self._open("/metrics") as r:
            return r.read().decode()

    def metric(self, name: str, labels: str = "") -> float:
        total = 0.0
        for line in self.metrics_text().splitlines():
            if line.startswith(name) and line[len(name)] in " {" and labels in line:
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture(scope="module")
def server(served_project: ServedProject,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real 2-worker server on its own registry copy (tests may move its alias)."""
    base = tmp_path_factory.mktemp("server")
    registry = served_project.registry_copy(base / "registry")
    proc = ServerProcess(registry, free_port(), base / "server.log", "--poll-seconds", "0.2",
                         "--max-rows", "500", "--max-body-bytes", "1000000")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
