"""``prefab reproduce``: a registered version retrained from its record (data snapshot,
resolved config) is byte-identical for seeded XGBoost and random forest, and the
project's registry is left alone; when it differs, the report names the input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from prefab_mlops.core.manifest import ModelVersion
from prefab_mlops.core.provenance import GitInfo
from prefab_mlops.core.registry import ModelRegistry
from prefab_mlops.core.storage import LocalObjectStore
from prefab_mlops.flows.reproduce import differences, reproduce
from prefab_mlops.flows.training import training

pytestmark = pytest.mark.usefixtures("prefect_harness")

CONF = str(Path(__file__).resolve().parents[2] / "conf")
FAST = ["data.sample_rows=8000", "tracking=disabled"]


@pytest.mark.parametrize("model", ["xgboost", "random_forest"])
def test_seeded_models_reproduce_byte_identical(model: str, tmp_path: Path) -> None:
    overrides = [f"paths.root={tmp_path}", f"model={model}", "model.n_estimators=30", *FAST]
    s = training(overrides=overrides, config_dir=CONF)
    registry_dir = tmp_path / "registry"
    before = sorted((p.relative_to(registry_dir), p.read_bytes())
                    for p in registry_dir.rglob("*") if p.is_file())

    result = reproduce(s["model_name"], s["version"], overrides, CONF)

    assert result.identical, result.render()
    assert result.reproduced_sha256 == result.recorded_sha256
    assert "reproduced byte-identical" in result.render()
    after = sorted((p.relative_to(registry_dir), p.read_bytes())
                   for p in registry_dir.rglob("*") if p.is_file())
    assert after == before  # nothing written to the project's registry


def test_the_report_names_the_inputs_that_differ(tmp_path: Path) -> None:
    overrides = [f"paths.root={tmp_path}", "model=random_forest", "model.n_estimators=5",
                 *FAST]
    s = training(overrides=overrides, config_dir=CONF)
    mv = ModelRegistry(LocalObjectStore(tmp_path / "registry")).get_version(
        s["model_name"], s["version"])
    assert differences(mv, mv, str(tmp_path)) == {}
    old = dataclasses.replace(
        mv, packages={**mv.packages, "scikit-learn": "0.0.1"},
        git=GitInfo(commit="0" * 40, branch="main", dirty=True),
        params={**mv.params, "n_estimators": 7})
    found = differences(old, mv, str(tmp_path))
    assert set(found) == {"packages", "code", "config"}
    assert any("scikit-learn: recorded 0.0.1" in d for d in found["packages"])
    assert any("uncommitted changes" in d for d in found["code"])
    assert any("n_estimators" in d for d in found["config"])


STEP_V1 = '''\
import pandas as pd


def shape(frame: pd.DataFrame) -> pd.DataFrame:
    return frame
'''
STEP_V2 = '''\
import pandas as pd


def shape(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["distance"] > 400].reset_index(drop=True)
'''


def _git(root: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c",
                           "user.email=t@example.com", *args], check=True,
                          capture_output=True, text=True).stdout


class TestReproduceTheRecordedCommit:
    def test_a_later_commit_of_the_training_code_is_bypassed_by_a_worktree(
            self, tmp_path: Path, flights_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A project in its own git repository: v1 trained at commit A, then commit B
        changes the project's step. Reproducing v1 checks A out in a temporary worktree
        and gets the same bytes, which the code of B does not."""
        import sys

        import yaml

        from prefab_mlops.testing.projects import make_project

        project = tmp_path / "proj"
        conf = make_project(project, data_uri=flights_csv, overrides={
            "model": {"n_estimators": 20}})
        local = conf / "local" / "default.yaml"
        settings = yaml.safe_load(local.read_text().split("\n", 1)[1])
        settings["allowed_targets"] = ["reprosteps"]
        settings["steps"] = {"shape": {"hook": "after_ingest",
                                       "_target_": "reprosteps.shape.shape"}}
        local.write_text("# @package _global_\n" + yaml.safe_dump(settings, sort_keys=False))
        (project / "reprosteps").mkdir()
        (project / "reprosteps" / "__init__.py").write_text("")
        (project / "reprosteps" / "shape.py").write_text(STEP_V1)
        (project / ".gitignore").write_text("registry/\n.cache/\noutputs/\n__pycache__/\n")
        _git(project, "init", "-q", "-b", "main")
        _git(project, "add", "-A")
        _git(project, "commit", "-q", "-m", "A")
        commit_a = _git(project, "rev-parse", "HEAD").strip()
        monkeypatch.setattr(sys, "dont_write_bytecode", True)
        overrides = [f"paths.root={project}", "model=random_forest", *FAST]

        def train() -> ModelVersion:
            try:
                s = training(overrides=overrides, config_dir=str(conf))
            finally:
                sys.modules.pop("reprosteps.shape", None)
                sys.modules.pop("reprosteps", None)
            return ModelRegistry(LocalObjectStore(project / "registry")).get_version(
                s["model_name"], s["version"])

        v1 = train()
        assert v1.git is not None and v1.git.commit == commit_a and not v1.git.dirty

        (project / "reprosteps" / "shape.py").write_text(STEP_V2)
        _git(project, "commit", "-q", "-am", "B: train on long flights only")
        assert train().model_sha256 != v1.model_sha256  # the code of B trains another model

        result = reproduce(v1.model_name, v1.version, overrides, str(conf))

        assert result.identical, result.render()
        assert "worktree" in result.code and commit_a[:12] in result.code
        assert "code" not in result.differences, result.render()
        assert _git(project, "worktree", "list").count("\n") == 1  # removed again
        assert (project / "reprosteps" / "shape.py").read_text() == STEP_V2

        # back at commit A: the working tree runs, its step imported from the project
        # directory although this process works elsewhere
        _git(project, "checkout", "-q", commit_a)
        again = reproduce(v1.model_name, v1.version, overrides, str(conf))
        assert again.identical and again.code == "the working tree", again.render()
