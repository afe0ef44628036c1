"""Generated projects on real tables: the first ``make train``, with no edits, as a user runs it.

scikit-learn's bundled tables, written to CSV with their integer index as the first
column (``DataFrame.to_csv(index_label="id")``): breast cancer (binary), wine
(multiclass, a column named ``od280/od315_of_diluted_wines``) and diabetes (regression),
plus a copy of breast cancer with a leaking column: ``biopsy_score``, ten times the
label plus unit noise, which alone separates the classes.

Each table gets a project rendered with its answers only, all four side by side in one
folder. The first project's ``make setup`` makes one virtual environment for the four
(the Makefile's ``VENV`` variable; uv, from the warm package cache): a venv per project
would cost each its install and the first imports' bytecode, about 15 s of CPU, for no
difference in what runs. Then each project runs ``make train`` through its own Makefile,
two at a time (two cores). The first (cancer) runs exactly as on a user's machine, with
a temporary Prefect server of its own; the other three share one real Prefect server
on loopback (``PREFECT_API_URL``, as after ``make server``), started while the projects
are rendered: a temporary server costs each run about 25 s of CPU (measured: 41 s of
CPU for a ``make train`` with one, 15 s against a running server). Then the project's
``prefab registry list --json`` is read: each clean table ends with a promoted
production model whose score is sane, measured first with the default (baseline) gate
(2026-11-30, 120 / 36 / 89 test rows):

============  ===========  ===========================  ==========
table         problem      measured                     asserted
============  ===========  ===========================  ==========
cancer        binary       roc_auc 0.977                > 0.9
wine          multiclass   accuracy 0.972, f1 0.973     > 0.85
diabetes      regression   r2 0.407                     > 0.3
============  ===========  ===========================  ==========

The leaking copy raises the leakage alarm (``validate.leakage: warn``, the inferred
default): its training log and run summary name ``biopsy_score`` and the fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prefab_mlops.core.registry import PROMOTE_EVENT
from tests.templates.conftest import render

pytestmark = pytest.mark.slow

INDEX = "id"
LEAK = "biopsy_score"
#: Projects trained at once (the machines the tests run on have two cores).
PARALLEL = 2
#: The project whose first `make train` starts its own temporary Prefect server.
AS_A_USER = "cancer"


def _cancer() -> pd.DataFrame:
    from sklearn import datasets

    frame: pd.DataFrame = datasets.load_breast_cancer(as_frame=True).frame
    return frame


def _leaking_cancer() -> pd.DataFrame:
    """Breast cancer with a column that is the label in another form."""
    frame = _cancer()
    noise = np.random.default_rng(0).normal(0.0, 1.0, len(frame))
    frame.insert(5, LEAK, frame["target"] * 10.0 + noise)
    return frame


def _sklearn(loader: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from sklearn import datasets

        frame: pd.DataFrame = getattr(datasets, loader)(as_frame=True).frame
        return frame

    return load


@dataclass(frozen=True)
class Table:
    name: str
    problem_type: str
    load: Callable[[], pd.DataFrame]


TABLES = {t.name: t for t in [
    Table("cancer", "binary", _cancer),
    Table("wine", "multiclass", _sklearn("load_wine")),
    Table("diabetes", "regression", _sklearn("load_diabetes")),
    Table("cancer_leak", "binary", _leaking_cancer),
]}

#: Clean table -> metric -> the lowest value taken as sane (see the module docstring).
SANE = {"cancer": {"roc_auc": 0.9},
        "wine": {"accuracy": 0.85, "f1": 0.85},
        "diabetes": {"r2": 0.3}}


@dataclass(frozen=True)
class Trained:
    """A project after its first ``make train``."""

    project: Path
    output: str  # stdout and stderr of `make train`
    registry: list[dict[str, Any]]  # `prefab registry list --json`


def user_env(api_url: str | None = None) -> dict[str, str]:
    """A user's shell: none of this session's Prefect, prefab or venv settings.

    This venv's bin directory goes on PATH for ``uv`` (the Makefile bootstraps it with
    pip where it is not on PATH). ``api_url``: a running Prefect server's API.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "PREFAB_"))
           and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    return env


def make(project: Path, target: str, venv: Path, api_url: str | None = None) -> str:
    res = subprocess.run(["make", target, f"VENV={venv}", f"PYTHON={sys.executable}"],
                         cwd=project, env=user_env(api_url), capture_output=True, text=True,
                         timeout=540)
    output = res.stdout + res.stderr
    assert res.returncode == 0, f"make {target} in {project.name}:\n{output[-6000:]}"
    return output


def first_train(project: Path, venv: Path, api_url: str | None) -> Trained:
    output = make(project, "train", venv, api_url)
    listed = subprocess.run([str(venv / "bin" / "prefab"), "registry", "list", "--json"],
                            cwd=project, env=user_env(), capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr
    return Trained(project, output, json.loads(listed.stdout))


@pytest.fixture(scope="module")
def trained(template_repo: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Trained]:
    """Every table's project, rendered, then trained by its own ``make train``."""
    from prefab_mlops.testing.local_prefect import PrefectServer

    data = tmp_path_factory.mktemp("tables")
    parent = tmp_path_factory.mktemp("projects")
    server = PrefectServer(tmp_path_factory.mktemp("prefect-server"), startup_timeout=180)
    try:
        # leaving the pool waits for the server's start, so it is stopped after that
        with ThreadPoolExecutor(PARALLEL) as pool:
            started = pool.submit(server.start)
            projects = {}
            for table in TABLES.values():
                csv = data / f"{table.name}.csv"
                table.load().to_csv(csv, index_label=INDEX)
                projects[table.name] = render(
                    template_repo, parent / table.name, data_uri=str(csv),
                    problem_type=table.problem_type, target="target", tracking_mode="disabled")
            venv = parent / ".venv"
            make(projects[AS_A_USER], "setup", venv)
            api_url = started.result().url
            done = pool.map(first_train, projects.values(), [venv] * len(projects),
                            [None if name == AS_A_USER else api_url for name in projects])
            return dict(zip(projects, done, strict=True))
    finally:
        server.stop()


@pytest.mark.parametrize("name", list(SANE))
def test_first_train_promotes_a_sane_model(name: str, trained: dict[str, Trained]) -> None:
    run = trained[name]
    (entry,) = run.registry
    assert entry["model"] == f"{name}-{TABLES[name].problem_type}"
    assert entry["version"] == 1 and "production" in entry["aliases"]
    assert entry["gate_passed"] is True, entry["gate"]
    assert entry["gate"].startswith("passed: baseline rule:")
    assert entry["decision"]["event"] == PROMOTE_EVENT, entry["decision"]
    for metric, low in SANE[name].items():
        assert entry["metrics"][metric] > low, (metric, entry["metrics"])
    assert "production is now v1" in run.output
    # the index column is no feature, and nothing is taken for a leak
    features = (run.project / "conf" / "features" / f"{name}.yaml").read_text()
    assert f"#   - {INDEX}: its name '{INDEX}' marks a row index or id" in features
    assert "leakage check: no single input of" in run.output
    assert "Leakage alarm" not in run.output


def test_the_leaking_copy_raises_the_alarm(trained: dict[str, Trained]) -> None:
    run = trained["cancer_leak"]
    # before training, on the training split (the inferred contract warns, not fails)
    (alarm,) = [line for line in run.output.splitlines() if "Leakage alarm:" in line]
    assert "| WARNING | Task run 'check-leakage-" in alarm
    assert ("Leakage alarm: 1 model input(s) alone nearly determine the target on the "
            f"training split: '{LEAK}' (roc_auc 1.0000 alone)") in alarm
    # ... and in the run summary, with the fix
    summary = next(line for line in run.output.splitlines()
                   if line.startswith("  leakage check: "))
    assert summary.startswith(f"  leakage check: SUSPECTED: '{LEAK}' (roc_auc 1.0000 alone)")
    assert f"remove '{LEAK}' from features.numeric.columns" in summary
    (entry,) = run.registry
    assert entry["metrics"]["roc_auc"] == 1.0  # what the leak buys on the test split
