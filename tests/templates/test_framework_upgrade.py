"""A framework fix reaches a generated project by upgrading the package, with no merge.

The project is generated from a framework checkout (the default ``framework`` answer),
set up in its own virtual environment as a user would (``make setup``), then the
framework changes upstream (a stock config default, as a fix would) and the project
runs ``make upgrade-framework``: its behaviour changes while none of its files do.
(``copier update`` for template changes is tests/templates/test_update.py.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.templates.conftest import git, render

pytestmark = pytest.mark.slow

PROBE = ("from prefab_mlops.config import load_config; "
         "print(load_config(['paths.root=.']).typed.monitor.drift_share)")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "PREFAB_CONFIG_DIR", "PREFAB_PROJECT_ROOT",
                        "VIRTUAL_ENV", "PYTHONPATH")}
    # uv for `make setup` (the Makefile bootstraps it with pip when it is not on PATH)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _make(project: Path, target: str) -> str:
    res = subprocess.run(["make", "-s", target, f"PYTHON={sys.executable}"], cwd=project,
                         env=_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"make {target}:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def _drift_share(project: Path) -> str:
    res = subprocess.run([str(project / ".venv" / "bin" / "python"), "-c", PROBE],
                         cwd=project, env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def test_library_upgrade_changes_behaviour_with_no_project_file_changed(
        template_repo: Path, data_dir: Path, tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.fail("make is needed (the project's own quick start)")
    framework = tmp_path / "prefab-mlops"
    subprocess.run(["git", "clone", "-q", str(template_repo), str(framework)], check=True)
    project = render(framework, tmp_path / "project", project_name="Diamond prices",
                     problem_type="regression", data_uri=str(data_dir / "diamonds.csv"),
                     target="price", tracking_mode="disabled")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "generated")

    _make(project, "setup")
    assert _drift_share(project) == "0.5"

    # upstream fix: a stock default of the framework changes (no template change)
    stock = framework / "src" / "prefab_mlops" / "conf" / "monitor" / "default.yaml"
    stock.write_text(stock.read_text().replace("drift_share: 0.5", "drift_share: 0.4"))
    git(framework, "commit", "-q", "-am", "framework fix: drift_share 0.4")

    assert _drift_share(project) == "0.5"  # installed, not linked: nothing moves by itself
    out = _make(project, "upgrade-framework")
    assert "prefab-mlops" in out
    assert _drift_share(project) == "0.4"
    # ... and not one file of the project changed
    assert git(project, "status", "--porcelain", "--untracked-files=no") == ""
