"""templates/task and templates/flow: scaffolds rendered into a generated project.

A task scaffold adds a module, its step (``conf/steps``) and a test, and plugs the
step into the stock training flow (one line of conf/pipeline.yaml); a flow scaffold
adds a module, a test and a deployment in prefect.yaml (inserted as text: Prefect's own
templates and the anchors survive). The rendered Python passes ruff, the new tests
pass (the task runs inside the stock training flow), and neither scaffold touches the
project's answers file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.templates.conftest import REPO, project_env, render


@pytest.fixture()
def project(rendered: Callable[[str], Path], tmp_path: Path) -> Path:
    """A writable copy of the generated regression project (its data reads fast)."""
    return Path(shutil.copytree(rendered("regression_csv"), tmp_path / "project"))


def scaffold(template_repo: Path, kind: str, project: Path, **answers: str) -> None:
    render(template_repo / "templates" / kind, project, vcs_ref=None, **answers)


def ruff(project: Path, *paths: str) -> None:
    res = subprocess.run([str(Path(sys.executable).parent / "ruff"), "check", "--no-cache",
                          *paths], cwd=project, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


class TestTaskScaffold:
    def test_adds_module_step_and_test_and_plugs_the_step_in(self, project: Path,
                                                             template_repo: Path) -> None:
        before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
        pipeline = project / "conf" / "pipeline.yaml"
        scaffold(template_repo, "task", project, task_name="clip_outliers")
        added = {str(p.relative_to(project)) for p in project.rglob("*")
                 if p.is_file() and p not in before}
        assert added == {"tasks/clip_outliers.py", "conf/steps/clip_outliers.yaml",
                         "tests/tasks/test_clip_outliers.py"}
        assert all(p.read_bytes() == data for p, data in before.items() if p != pipeline)
        # one line of conf/pipeline.yaml plugs it in; its comments stay
        assert pipeline.read_text() == before[pipeline].decode().replace(
            "  - steps: []\n", "  - steps: [clip_outliers]\n")
        ruff(project, "tasks/clip_outliers.py", "tests/tasks/test_clip_outliers.py")
        text = (project / "tasks" / "clip_outliers.py").read_text()
        assert '@task(name="clip-outliers")' in text and "def clip_outliers(" in text
        step = yaml.safe_load((project / "conf" / "steps" / "clip_outliers.yaml").read_text())
        assert step["clip_outliers"]["_target_"] == "tasks.clip_outliers.clip_outliers"
        assert step["clip_outliers"]["hook"] == "after_ingest"

    def test_a_second_task_runs_after_the_first(self, project: Path,
                                                template_repo: Path) -> None:
        scaffold(template_repo, "task", project, task_name="clip_outliers")
        scaffold(template_repo, "task", project, task_name="clip_more")
        assert "  - steps: [clip_outliers, clip_more]\n" in (
            project / "conf" / "pipeline.yaml").read_text()

    @pytest.mark.parametrize(("name", "why"), [("ingest", "is taken"), ("Clip-It", "identifier"),
                                               ("class", "is taken")])
    def test_bad_names_are_refused(self, name: str, why: str, project: Path,
                                   template_repo: Path) -> None:
        with pytest.raises(ValueError, match=f"{why}.*Change the task_name answer"):
            scaffold(template_repo, "task", project, task_name=name)


class TestFlowScaffold:
    def test_adds_module_test_and_deployment(self, project: Path, template_repo: Path) -> None:
        original = (project / "prefect.yaml").read_text()
        answers = (project / ".copier-answers.yml").read_text()
        scaffold(template_repo, "flow", project, flow_name="data_check", cron="0 5 * * *")
        assert (project / "flows" / "data_check.py").is_file()
        assert (project / "tests" / "flows" / "test_data_check.py").is_file()
        assert not (project / ".copier-snippets").exists()
        assert (project / ".copier-answers.yml").read_text() == answers
        text = (project / "prefect.yaml").read_text()
        assert text.startswith(original.rstrip("\n"))
        assert re.findall(r"\{\{[^}]*\}\}", text) == re.findall(r"\{\{[^}]*\}\}", original)
        new = yaml.safe_load(text)["deployments"][-1]
        assert new["name"] == "data-check"
        assert new["entrypoint"] == "flows/data_check.py:data_check"
        assert new["schedules"][0]["cron"] == "0 5 * * *"
        assert new["work_pool"]["name"] == "diamond-prices-process"
        ruff(project, "flows/data_check.py", "tests/flows/test_data_check.py")

    def test_unscheduled_flow(self, project: Path, template_repo: Path) -> None:
        scaffold(template_repo, "flow", project, flow_name="backfill")
        new = yaml.safe_load((project / "prefect.yaml").read_text())["deployments"][-1]
        assert new["name"] == "backfill" and "schedules" not in new

    def test_bad_cron_is_refused(self, project: Path, template_repo: Path) -> None:
        with pytest.raises(ValueError, match="Change the cron answer"):
            scaffold(template_repo, "flow", project, flow_name="nightly", cron="at night")

    def test_deployment_name_taken_by_another_flow(self, project: Path, template_repo: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
        from copier.errors import TaskError

        with pytest.raises(TaskError):
            scaffold(template_repo, "flow", project, flow_name="nightly",
                     deployment_name="train")
        assert "deployment_name answer" in capfd.readouterr().err


@pytest.mark.slow
def test_scaffolded_tests_pass(project: Path, template_repo: Path) -> None:
    scaffold(template_repo, "task", project, task_name="clip_outliers")
    scaffold(template_repo, "flow", project, flow_name="data_check")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/tasks", "tests/flows", "tests/test_configs.py",
                          "-k", "clip or data_check or plugged"], cwd=project,
                         env=project_env(project), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    # the task's 8 (one runs the stock training flow with it), the flow's 2, and the
    # configs: steps=clip_outliers and the plugged-in steps
    assert re.search(r"\b12 passed\b", res.stdout), res.stdout[-500:]


def test_cron_pattern_is_the_same_in_every_template() -> None:
    patterns = {str(path): yaml.safe_load(path.read_text())["cron_pattern"]["default"]
                for path in (REPO / "copier.yml", REPO / "templates" / "flow" / "copier.yml")}
    assert len(set(patterns.values())) == 1, patterns


@pytest.mark.parametrize("cron", ["0 3 * * 1", "*/15 8-18 * * mon-fri", "0 0 1,15 * *",
                                  "5 4 * jan-mar sun", "0 22 * * 1-5", "59 23 31 12 7"])
def test_cron_pattern_accepts_what_prefect_accepts(cron: str) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    pattern = yaml.safe_load((REPO / "copier.yml").read_text())["cron_pattern"]["default"]
    assert re.search(pattern, cron, re.IGNORECASE)
    CronSchedule(cron=cron)


@pytest.mark.parametrize("cron", ["0 24 * * *", "60 0 * * *", "0 0 0 * *", "0 0 * 13 *",
                                  "0 0 * * 8", "0 3 * *", "0 3 * * 1 2", "@daily", "daily",
                                  "*/0 * * * *", ""])
def test_cron_pattern_refuses(cron: str) -> None:
    pattern = yaml.safe_load((REPO / "copier.yml").read_text())["cron_pattern"]["default"]
    assert not re.search(pattern, cron, re.IGNORECASE)
