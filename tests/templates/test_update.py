"""``copier update`` brings a template change into a generated project and keeps the
user's edits (Copier's 3-way merge), including edits to the files inferred from the data.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.templates.conftest import git, render

pytestmark = pytest.mark.slow


def test_update_brings_template_changes_and_keeps_user_edits(template_repo: Path,
                                                             data_dir: Path,
                                                             tmp_path: Path) -> None:
    from copier import run_update

    # A template repository of our own, at the current state (version 1).
    template = tmp_path / "prefab-mlops"
    subprocess.run(["git", "clone", "-q", str(template_repo), str(template)], check=True)
    v1 = git(template, "rev-parse", "--short", "HEAD")

    project = render(template, tmp_path / "project", project_name="Diamond prices",
                     problem_type="regression", data_uri=str(data_dir / "diamonds.csv"),
                     target="price", tracking_mode="disabled")
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == v1
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "generated")

    # The user's edits: a config value, the inferred contract, their own README note.
    train_yaml = project / "conf" / "pipeline.yaml"
    train_yaml.write_text(train_yaml.read_text().replace("seed: 42", "seed: 7"))
    contract = project / "conf" / "validate" / "diamonds.yaml"
    contract.write_text(contract.read_text().replace("min_rows: 1000", "min_rows: 5000"))
    readme = project / "README.md"
    readme.write_text(readme.read_text().replace("# Diamond prices\n",
                                                 "# Diamond prices\n\nPrices are in USD.\n"))
    git(project, "commit", "-q", "-am", "our edits")

    # Version 2 of the template: a rendered file, a shared config group and framework code.
    section = "\n## Support\n\nAsk in #mlops.\n"
    rt = template / "templates" / "project" / "README.md.jinja"
    rt.write_text(rt.read_text() + section)
    monitor = template / "src" / "prefab_mlops" / "conf" / "monitor" / "default.yaml"
    monitor.write_text(monitor.read_text().replace("drift_share: 0.5", "drift_share: 0.4"))
    ingest = template / "tasks" / "ingest.py"
    ingest.write_text(ingest.read_text() + "\n# template v2\n")
    git(template, "commit", "-q", "-am", "template v2")
    v2 = git(template, "rev-parse", "--short", "HEAD")

    run_update(str(project), defaults=True, unsafe=True, overwrite=True, quiet=True)

    text = readme.read_text()
    assert "## Support" in text and "Prices are in USD." in text
    # the framework's stock config groups and code are a dependency, never files in it
    assert not (project / "conf" / "monitor").exists()
    assert not (project / "tasks").exists() and not (project / "src").exists()
    assert "seed: 7" in train_yaml.read_text()
    assert "min_rows: 5000" in contract.read_text()
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == v2
    status = git(project, "status", "--porcelain")
    assert not [line for line in status.splitlines() if line.endswith(".rej")]
    assert "<<<<<<<" not in text
