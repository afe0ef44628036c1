"""Real containers on a real Docker-API engine: the images build from the repository's
Dockerfiles, the training deployment runs inside a container of the `docker` work
pool, and the serving image serves the model that run registered.

The engine is, in this order: ``$DOCKER_HOST``; a Docker daemon on
/var/run/docker.sock; or, as root, the rootful Podman that ``scripts/local-engine.sh
up`` sets up (and that this module stops again if it started it). The tests skip
only where none of these can be had: ``$PREFAB_ENGINE_SKIP_REASON`` (set by .ci/run
when the engine setup failed), or not root with no engine to talk to.

No registry is contacted: base images are local (``local/python:3.11-slim`` made by
the engine script, else ``$PREFAB_BASE_IMAGE`` or python:3.11-slim as the engine has
it), and Python packages come from a wheelhouse made on the host with ``pip
download`` (scripts/wheelhouse.sh, cached under the engine's state dir).

Timings go to ``$PREFAB_CONTAINER_TIMINGS`` (JSON; .ci/run prints it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from prefab_mlops.testing.local_prefect import (
    PrefectServer,
    ProcessWorker,
    free_port,
    prefect_cli,
    wait_final,
)
from tests.serve.test_serve_install import TRAINING_STACK

REPO = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = REPO / "scripts" / "local-engine.sh"
WHEELHOUSE_SCRIPT = REPO / "scripts" / "wheelhouse.sh"
ENGINE_DIR = Path(os.environ.get("PREFAB_ENGINE_DIR", "/var/tmp/prefab-engine"))
LOCAL_BASE = "local/python:3.11-slim"
FLOW_IMAGE = "prefab-mlops-flow"
SERVE_IMAGE = "prefab-serve"
MODEL = "flights-binary"
IMAGE_UID = 10001  # the non-root user of docker/flow.Dockerfile
# The serving image's budget: half of the 1,268 MB it was while it held the whole
# training stack (prefect, Hydra, Evidently, W&B, ...) next to the model runtime.
SERVE_IMAGE_MAX_BYTES = 635e6
# Distributions of the [pipeline] extra that must not be in the serving image.
TRAINING_DISTS = {"prefect", "prefect-aws", "hydra-core", "omegaconf", "evidently", "wandb",
                  "pandera", "matplotlib"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

TIMINGS: dict[str, Any] = {}


def _record(key: str, value: Any) -> None:
    TIMINGS[key] = round(value, 1) if isinstance(value, float) else value
    path = os.environ.get("PREFAB_CONTAINER_TIMINGS")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(TIMINGS, indent=2) + "\n")


# ------------------------------------------------------------------- engine
@dataclass
class Engine:
    docker_host: str
    base_image: str
    started_here: bool

    def client(self, timeout: int = 900):
        import docker

        return docker.DockerClient(base_url=self.docker_host, timeout=timeout)


def _answers(host: str) -> bool:
    import docker

    try:
        client = docker.DockerClient(base_url=host, timeout=10)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means: not usable
        return False


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    reason = os.environ.get("PREFAB_ENGINE_SKIP_REASON", "").strip()
    if reason:
        pytest.skip(f"no container engine: {reason}")
    host = os.environ.get("DOCKER_HOST", "").strip()
    started = False
    if not host:
        if Path("/var/run/docker.sock").exists() and _answers("unix:///var/run/docker.sock"):
            host = "unix:///var/run/docker.sock"
        elif os.geteuid() == 0:
            # The local engine: used as it is if already up (and left up), else started
            # here and stopped again at the end of the module.
            res = subprocess.run(["bash", str(ENGINE_SCRIPT), "env"], capture_output=True,
                                 text=True, timeout=60)
            if res.returncode != 0:
                t0 = time.perf_counter()
                res = subprocess.run(["bash", str(ENGINE_SCRIPT), "up"], capture_output=True,
                                     text=True, timeout=1500)
                if res.returncode != 0:
                    pytest.skip("no container engine: scripts/local-engine.sh up failed: "
                                + res.stderr.strip()[-1500:])
                started = True
                _record("engine_up_s", time.perf_counter() - t0)
            match = re.search(r"DOCKER_HOST=(\S+)", res.stdout)
            assert match, res.stdout
            host = match.group(1)
        else:
            pytest.skip("no container engine: DOCKER_HOST is unset, /var/run/docker.sock "
                        "does not answer, and scripts/local-engine.sh needs root (run "
                        "`sudo scripts/local-engine.sh up` and export the DOCKER_HOST it "
                        "prints)")
    assert _answers(host), f"DOCKER_HOST={host} is set but the engine does not answer"
    eng = Engine(host, os.environ.get("PREFAB_BASE_IMAGE", ""), started)
    if not eng.base_image:
        import docker.errors

        client = eng.client()
        try:
            client.images.get(LOCAL_BASE)
            eng.base_image = LOCAL_BASE
        except docker.errors.ImageNotFound:
            eng.base_image = "python:3.11-slim"
        finally:
            client.close()
    _record("base_image", eng.base_image)
    try:
        yield eng
    finally:
        if started:
            subprocess.run(["bash", str(ENGINE_SCRIPT), "down"], capture_output=True,
                           timeout=120)


@pytest.fixture(scope="module")
def wheelhouse(engine: Engine) -> Path:
    """docker/wheelhouse/ filled by scripts/wheelhouse.sh (cached across runs)."""
    t0 = time.perf_counter()
    res = subprocess.run(["bash", str(WHEELHOUSE_SCRIPT)], capture_output=True, text=True,
                         env={**os.environ, "PYTHON": sys.executable}, timeout=900)
    assert res.returncode == 0, f"scripts/wheelhouse.sh failed:\n{res.stderr[-3000:]}"
    _record("wheelhouse_s", time.perf_counter() - t0)
    wheels = REPO / "docker" / "wheelhouse"
    assert len(list(wheels.glob("*.whl"))) > 50
    return wheels


def build(engine: Engine, dockerfile: str, tag: str, log: Path,
          buildargs: dict[str, str], network_mode: str | None = None) -> tuple[Any, float]:
    """``docker build`` through the API (like prefect-docker), never pulling."""
    client = engine.client()
    kwargs: dict[str, Any] = dict(path=str(REPO), dockerfile=dockerfile, tag=tag,
                                  buildargs=buildargs, pull=False, rm=True, forcerm=True,
                                  decode=True)
    if network_mode:
        kwargs["network_mode"] = network_mode
    t0 = time.perf_counter()
    try:
        with open(log, "w") as fh:
            for chunk in client.api.build(**kwargs):
                if "stream" in chunk:
                    fh.write(chunk["stream"])
                if "error" in chunk:
                    fh.write(chunk["error"])
                    fh.flush()
                    raise AssertionError(f"building {dockerfile} failed: {chunk['error']}\n"
                                         f"{log.read_text()[-3000:]}")
        seconds = time.perf_counter() - t0
        return client.images.get(tag), seconds
    finally:
        client.close()


@pytest.fixture(scope="module")
def flow_image(engine: Engine, wheelhouse: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Any:
    log = tmp_path_factory.mktemp("flow-image") / "build.log"
    image, seconds = build(engine, "docker/flow.Dockerfile", f"{FLOW_IMAGE}:test", log,
                           {"BASE_IMAGE": engine.base_image})
    _record("flow_image_build_s", seconds)
    _record("flow_image_mb", image.attrs["Size"] / 1e6)
    return image


# ------------------------------------------------------------------ project
def make_docker_project(root: Path, rows: int = 20_000) -> Path:
    """A throw-away project (scripts/projects.py) with real flights data, no plots."""
    from prefab_mlops.testing.flights_batches import flights, train_batch
    from prefab_mlops.testing.projects import make_project

    make_project(root, overrides={"evaluate": {"plots": False}})
    train_batch(flights(), rows).to_csv(root / "data" / "flights.csv", index=False)
    if os.geteuid() == 0:
        # Owned by the image's non-root user, so the flow-run container (which runs as
        # the project directory's owner, see prefect.docker.yaml) is not root.
        for p in [root, *root.rglob("*")]:
            os.chown(p, IMAGE_UID, IMAGE_UID)
    return root


@dataclass
class ContainerRun:
    project: Path
    flow_run: Any
    deployment: Any
    worker_log: Path


@pytest.fixture(scope="module")
def trained_in_container(engine: Engine, flow_image: Any,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerRun]:
    """prefect.docker.yaml deployed to a real server; train run by a docker worker."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    tmp = tmp_path_factory.mktemp("docker-pool")
    project = make_docker_project(tmp / "proj")
    docker_client = engine.client()
    fr = None
    with PrefectServer(tmp / "server") as server:
        env = server.client_env(tmp / "client", DOCKER_HOST=engine.docker_host,
                                PREFAB_PROJECT_DIR=str(project),
                                PREFAB_BASE_IMAGE=engine.base_image,
                                PREFAB_IMAGE_TAG="deploy-test")
        prefect_cli(["work-pool", "create", "prefab-docker", "--type", "docker"], env, REPO)
        t0 = time.perf_counter()
        prefect_cli(["--no-prompt", "deploy", "--all", "--prefect-file", "prefect.docker.yaml"],
                    env, REPO, timeout=1200)
        _record("deploy_all_with_cached_build_s", time.perf_counter() - t0)
        worker_log = tmp / "worker.log"
        try:
            with temporary_settings({PREFECT_API_URL: server.url}), \
                    get_client(sync_client=True) as client:
                deployment = client.read_deployment_by_name("training/train")
                with ProcessWorker("prefab-docker", env, REPO, worker_log,
                                   worker_type="docker"):
                    t0 = time.perf_counter()
                    fr = run_deployment("training/train", timeout=0)
                    fr = wait_final(client, fr.id, timeout=600)
                    _record("train_run_submit_to_final_s", time.perf_counter() - t0)
            yield ContainerRun(project, fr, deployment, worker_log)
        finally:
            if fr is not None:
                for c in docker_client.containers.list(
                        all=True, filters={"label": f"io.prefect.flow-run-id={fr.id}"}):
                    c.remove(force=True)
            docker_client.close()


# -------------------------------------------------------------------- tests
def test_flow_image_builds_slim_non_root_with_xgboost_cpu(engine: Engine,
                                                         flow_image: Any) -> None:
    cfg = flow_image.attrs["Config"]
    assert cfg["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    client = engine.client()
    try:
        t0 = time.perf_counter()
        out = client.containers.run(
            flow_image.id, remove=True, command=[
                "python", "-c",
                "import os, importlib.metadata as md, prefab_mlops.flows.training, xgboost; "
                "print(os.getuid(), xgboost.__version__, "
                "sorted(d.metadata['Name'] for d in md.distributions()))"]).decode()
        _record("flow_image_import_run_s", time.perf_counter() - t0)
    finally:
        client.close()
    uid, _, dists = out.strip().partition(" ")
    assert uid == str(IMAGE_UID)
    names = {n.lower() for n in re.findall(r"'([^']+)'", dists)}
    assert "prefab-mlops" in names and "xgboost-cpu" in names
    assert not any(n.startswith("nvidia") for n in names), names  # no CUDA payload
    assert not {"pytest", "moto", "ruff"} & names  # no dev extras
    # ~1.2 GB with the whole ML stack; the CUDA xgboost wheel alone would add ~600 MB.
    assert flow_image.attrs["Size"] < 1.6e9


def test_training_deployment_runs_in_a_container_and_registers_on_the_host(
        trained_in_container: ContainerRun) -> None:
    from prefab_mlops.core.registry import ModelRegistry
    from prefab_mlops.core.storage import LocalObjectStore

    run = trained_in_container
    log = run.worker_log.read_text()
    assert run.flow_run.state.is_completed(), log[-5000:]

    jv = run.deployment.job_variables
    project = str(run.project)
    assert jv["image"] == f"docker.io/library/{FLOW_IMAGE}:deploy-test" or \
        jv["image"].endswith(f"{FLOW_IMAGE}:deploy-test"), jv
    assert jv["image_pull_policy"] == "IfNotPresent" and jv["network_mode"] == "host"
    assert jv["volumes"] == [f"{project}:{project}"]
    assert jv["env"]["PREFAB_CONFIG_DIR"] == f"{project}/conf"
    assert jv["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"  # crash detection
    assert run.deployment.entrypoint == "prefab_mlops.flows.training:training"
    assert run.deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory": {
        "directory": project}}]

    # It ran in a container: the worker created one for this run, and the flow's own
    # log lines (streamed from the container) are in the worker's log.
    assert f"Docker container '{run.flow_run.name}' created" in log
    assert "Registered flights-binary:v1" in log
    assert run.flow_run.infrastructure_pid

    # ... and registered a model the host sees, in the mounted project directory.
    registry = ModelRegistry(LocalObjectStore(run.project / "registry"))
    assert registry.alias(MODEL, "production").version == 1
    mv = registry.get_version(MODEL, 1)
    assert mv.run.flow_run_id == str(run.flow_run.id)
    assert mv.metrics["roc_auc"] > 0.65
    loaded = registry.load(MODEL, alias="production")
    assert hasattr(loaded.model, "predict_proba")
    if os.geteuid() == 0:
        # Written by the non-root user of the image, not by root.
        manifest = next((run.project / "registry" / MODEL / "versions").iterdir())
        assert manifest.stat().st_uid == IMAGE_UID


# ------------------------------------------------------------------ serving
def _get_json(url: str, timeout: float = 3) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def _post_json(url: str, body: Any, timeout: float = 30) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def serve_image(engine: Engine, flow_image: Any, wheelhouse: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Any:
    """docker/serve.Dockerfile built after the flow image (it reuses its dependency stage)."""
    if not (REPO / "docker" / "serve.Dockerfile").exists():
        pytest.skip("serving image not available yet")
    # docker/wheelhouse (the `wheelhouse` fixture) holds every dependency: no index
    log = tmp_path_factory.mktemp("serve-image") / "build.log"
    image, seconds = build(engine, "docker/serve.Dockerfile", f"{SERVE_IMAGE}:test", log,
                           {"BASE_IMAGE": engine.base_image})
    _record("serve_image_build_s", seconds)
    _record("serve_image_mb", image.attrs["Size"] / 1e6)
    return image


def _dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_serving_image_holds_the_serve_extra_only(engine: Engine, serve_image: Any) -> None:
    """prefab-mlops[serve] and nothing of the training stack; half the old size at most."""
    probe = ("import importlib.metadata as md, importlib.util as u, json, os; print(json.dumps("
             f"{{'importable': [m for m in {TRAINING_STACK!r} if u.find_spec(m)], "
             "'dists': sorted(d.metadata['Name'] for d in md.distributions()), "
             "'workdir': sorted(os.listdir('.')), 'uid': os.getuid()}))")
    client = engine.client()
    try:
        out = client.containers.run(serve_image.id, remove=True,
                                    command=["python", "-c", probe]).decode()
    finally:
        client.close()
    info = json.loads(out.strip().splitlines()[-1])
    assert info["importable"] == [], info["importable"]
    dists = {_dist_name(n) for n in info["dists"]}
    assert not TRAINING_DISTS & dists, sorted(TRAINING_DISTS & dists)
    assert {"prefab-mlops", "fastapi", "uvicorn", "prometheus-client", "orjson",
            "xgboost-cpu", "scikit-learn", "pandas", "pyarrow"} <= dists, sorted(dists)
    # No installer, no dev tools, no CUDA payload.
    assert not {"pip", "setuptools", "pytest", "moto", "ruff"} & dists, sorted(dists)
    assert not any(n.startswith("nvidia") for n in dists), sorted(dists)
    # No code or config of its own beside the one prefab-mlops wheel in the venv.
    assert info["workdir"] == [] and info["uid"] != 0, info
    size = serve_image.attrs["Size"]
    assert size <= SERVE_IMAGE_MAX_BYTES, f"serving image is {size / 1e6:.0f} MB"


def _metric(url: str, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name)] in " {" and labels in line)


def test_serving_image_serves_the_production_model_as_non_root(
        engine: Engine, trained_in_container: ContainerRun, serve_image: Any,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The model trained in a container, served from a read-only mount: predictions equal
    the host's, the numpy fast path, metrics, hot reload on an alias move, and a model
    file whose sha256 does not match refused while the old version keeps answering."""
    import numpy as np

    from prefab_mlops.core.manifest import ModelVersion
    from prefab_mlops.core.registry import ModelRegistry
    from prefab_mlops.core.storage import LocalObjectStore

    run = trained_in_container
    assert run.flow_run.state.is_completed()
    image = serve_image

    # A copy of the run's registry: this test registers versions and moves the alias.
    registry_dir = tmp_path_factory.mktemp("serve-registry") / "registry"
    shutil.copytree(run.project / "registry", registry_dir)
    registry = ModelRegistry(LocalObjectStore(registry_dir))
    production = registry.load(MODEL, alias="production")
    columns = list(production.version.features.input_schema.names)
    frame = pd.read_csv(run.project / "data" / "flights.csv",
                        parse_dates=["time_hour"]).head(40)
    expected = np.asarray(production.model.predict_proba(frame[columns]))
    records = json.loads(frame[columns].to_json(orient="records", date_format="iso"))

    port = free_port()
    client = engine.client()
    t0 = time.perf_counter()
    container = client.containers.run(
        image.id, detach=True, ports={"8000/tcp": ("127.0.0.1", port)},
        volumes={str(registry_dir): {"bind": "/registry", "mode": "ro"}},
        environment={"PREFAB_SERVE_MODEL": MODEL, "PREFAB_SERVE_WORKERS": "1",
                     "PREFAB_SERVE_POLL_SECONDS": "0.5"})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            container.reload()
            assert container.status in ("created", "running"), container.logs()[-3000:]
            status, body = (0, None)
            try:
                status, body = _get_json(f"{url}/ready")
            except OSError:
                pass
            if status == 200 and body and body.get("ready"):
                break
            assert time.monotonic() < deadline, container.logs().decode()[-3000:]
            time.sleep(0.5)
        _record("serve_container_start_to_ready_s", time.perf_counter() - t0)
        assert body["version"] == production.version.version

        t1 = time.perf_counter()
        status, answer = _post_json(f"{url}/predict", records)
        _record("serve_predict_40_rows_s", time.perf_counter() - t1)
        assert status == 200, answer
        assert answer["model"] == MODEL and answer["version"] == production.version.version
        np.testing.assert_allclose(np.asarray(answer["probabilities"]), expected,
                                   rtol=1e-5, atol=1e-6)

        # The numpy fast path, verified at load against the pipeline on the registered
        # reference sample (read with pyarrow), and the Prometheus metrics.
        status, info = _get_json(f"{url}/model")
        assert status == 200 and info["serving"]["fast_path"], info and info["serving"]
        assert _metric(url, "prefab_serve_predicted_rows_total") == len(records)
        assert _metric(url, "prefab_serve_model_reloads_total", 'result="loaded"') == 1

        # Refused: a new version whose model file no longer matches its sha256.
        v1 = registry.get_version(MODEL, production.version.version)

        def copy_of_v1() -> ModelVersion:
            manifest = dataclasses.replace(v1, version=0, files={})
            return registry.register(manifest, registry.store.get(v1.model_key),
                                     {rel: registry.read_file(v1, rel) for rel in v1.files})

        tampered = copy_of_v1()
        blob = registry_dir / tampered.model_key
        raw = bytearray(blob.read_bytes())
        for k in range(len(raw) // 2, len(raw) // 2 + 16):
            raw[k] ^= 0xFF
        blob.write_bytes(bytes(raw))
        registry.set_alias(MODEL, "production", tampered.version, reason="tampered")
        deadline = time.monotonic() + 60
        while _metric(url, "prefab_serve_model_reloads_total", 'result="refused"') < 1:
            assert time.monotonic() < deadline, container.logs().decode()[-3000:]
            time.sleep(0.2)
        status, answer = _post_json(f"{url}/predict", records)
        assert status == 200 and answer["version"] == v1.version, answer
        status, info = _get_json(f"{url}/model")
        assert info["version"] == v1.version, info
        assert info["last_refused"]["version"] == tampered.version
        assert "sha256" in info["last_refused"]["error"], info["last_refused"]

        # Hot reload: a good version behind the alias is served without a restart.
        good = copy_of_v1()
        t2 = time.perf_counter()
        registry.set_alias(MODEL, "production", good.version, reason="hot reload")
        deadline = time.monotonic() + 60
        while True:
            status, answer = _post_json(f"{url}/predict", records)
            assert status == 200, answer
            if answer["version"] == good.version:
                break
            assert time.monotonic() < deadline, container.logs().decode()[-3000:]
            time.sleep(0.2)
        _record("serve_alias_move_to_new_version_s", time.perf_counter() - t2)
        np.testing.assert_allclose(np.asarray(answer["probabilities"]), expected,
                                   rtol=1e-5, atol=1e-6)
        assert _metric(url, "prefab_serve_model_reloads_total", 'result="loaded"') == 2
        status, info = _get_json(f"{url}/model")
        assert info["serving"]["fast_path"], info["serving"]

        # Not root: neither the image's user nor the process.
        user = image.attrs["Config"].get("User") or ""
        assert user not in ("", "root", "0") and not user.startswith("0:"), user
        code, out = container.exec_run(["id", "-u"])
        assert code == 0 and out.decode().strip() != "0", out
        # The image's health check passes once ready. (Read from the container: Podman's
        # Docker API leaves it out of the image's inspect data; run here by hand, since
        # Podman has no timer for health checks without systemd.)
        health = container.attrs["Config"].get("Healthcheck") or {}
        assert health.get("Test"), "the serving image has no HEALTHCHECK"
        test = health["Test"]
        cmd = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
        code, out = container.exec_run(cmd)
        assert code == 0, out
    finally:
        t3 = time.perf_counter()
        container.stop(timeout=20)
        _record("serve_container_stop_s", time.perf_counter() - t3)
        container.remove(force=True)
        client.close()
