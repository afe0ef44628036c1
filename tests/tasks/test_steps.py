"""tasks/steps.py: a project's own steps are checked against their hooks before any work,
and their tasks keep to the contract (through ``.fn``, on real flights rows).

The steps live in a throw-away project's ``tasks`` package (``project_tasks``).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from prefab_mlops.config import ModelSpec, StepConfig, TargetSpec, load_config
from prefab_mlops.core.errors import ConfigError, StepError
from prefab_mlops.core.manifest import StepRecord
from prefab_mlops.tasks.evaluate import evaluate
from prefab_mlops.tasks.featurize import featurize
from prefab_mlops.tasks.ingest import Dataset, prepare
from prefab_mlops.tasks.steps import (
    Candidate,
    apply_check_step,
    apply_data_step,
    resolve_steps,
    with_checks,
)
from prefab_mlops.tasks.train import train

CONF = Path(__file__).resolve().parents[2] / "conf"
FAMILIES = ("ingest", "step")

STEPS = '''
from __future__ import annotations

import pandas as pd
from prefect import flow, task

from prefab_mlops.tasks.steps import Candidate, Check


@task(name="keep-carriers")
def keep_carriers(frame: pd.DataFrame, carriers: list[str]) -> pd.DataFrame:
    return frame[frame["carrier"].isin(carriers)].reset_index(drop=True)


def add_route(frame: pd.DataFrame, *, sep: str = "-") -> pd.DataFrame:
    frame["route"] = frame["origin"] + sep + frame["dest"]  # in place, on purpose
    return frame


def forgot_return(frame: pd.DataFrame) -> pd.DataFrame:
    frame.assign(x=1)


def says_none(frame: pd.DataFrame) -> None:
    return None


def untyped(frame, threshold):
    return frame


def origin_recall(candidate: Candidate, *, origin: str, min_recall: float = 0.0) -> Check:
    rows = (candidate.test.X["origin"] == origin).to_numpy()
    pred = candidate.pipeline.predict(candidate.test.X[rows])
    y = candidate.test.y[rows]
    recall = float(((pred == 1) & (y == 1)).sum() / max((y == 1).sum(), 1))
    failures = [] if recall >= min_recall else [f"recall at {origin} {recall:.3f} < {min_recall}"]
    return Check(metrics={f"{origin.lower()}_recall": recall}, failures=failures)


def clashing(candidate: Candidate) -> Check:
    return Check(metrics={"roc_auc": 1.0})


def not_a_number(candidate: Candidate) -> Check:
    return Check(metrics={"ok": "high"})


class NotAFunction:
    pass


@flow
def a_flow(frame: pd.DataFrame) -> pd.DataFrame:
    return frame


async def an_async(frame: pd.DataFrame) -> pd.DataFrame:
    return frame
'''


def step(target: str, hook: str = "after_ingest", **params: object) -> StepConfig:
    return StepConfig(hook=hook, _target_=target, params=dict(params))


@pytest.fixture()
def steps_module(project_tasks: Callable[[str, str], Path]) -> str:
    project_tasks("mine", STEPS)
    return "tasks.mine"


@pytest.fixture(scope="module")
def flights(config, flights_frame: pd.DataFrame) -> Dataset:
    cfg = config()
    rows = prepare(flights_frame, dataclasses.replace(cfg.data, sample_rows=4000), cfg.seed,
                   "flights.csv")
    return Dataset.of(rows, name="flights", fingerprint="fp-ingested", source="flights.csv",
                      source_fingerprint="src", snapshot_uri=None, target=cfg.data.target,
                      time_column=cfg.data.time_column)


class TestResolveSteps:
    def test_steps_by_hook_in_their_order(self, steps_module: str) -> None:
        steps = resolve_steps({
            "route": step(f"{steps_module}.add_route", sep="/"),
            "recall": step(f"{steps_module}.origin_recall", "after_evaluate", origin="JFK"),
            "carriers": step(f"{steps_module}.keep_carriers", carriers=["AA"]),
        }, FAMILIES)
        assert [s.name for s in steps.after_ingest] == ["route", "carriers"]
        assert [s.name for s in steps.after_evaluate] == ["recall"]
        carriers = steps.after_ingest[1]
        # a Prefect task: its function runs inside the step's own task
        import tasks.mine as mine

        assert carriers.fn is mine.keep_carriers.fn
        assert carriers.record() == StepRecord(name="carriers", hook="after_ingest",
                                               target="tasks.mine.keep_carriers",
                                               code=carriers.code, params={"carriers": ["AA"]})
        assert steps.names() == {"after_ingest": ["route", "carriers"],
                                 "after_evaluate": ["recall"]}

    def test_every_problem_of_every_step_is_named_at_once(self, steps_module: str) -> None:
        with pytest.raises(ConfigError) as err:
            resolve_steps({
                "nomodule": step("tasks.nowhere.enrich"),
                "noattr": step(f"{steps_module}.enrich"),
                "cls": step(f"{steps_module}.NotAFunction"),
                "flw": step(f"{steps_module}.a_flow"),
                "asyn": step(f"{steps_module}.an_async"),
                "params": step(f"{steps_module}.keep_carriers", carrier=["AA"]),
                "types": step(f"{steps_module}.add_route", sep=3),
                "required": step(f"{steps_module}.untyped"),
                "returns": step(f"{steps_module}.says_none"),
                "wronghook": step(f"{steps_module}.origin_recall", origin="JFK"),
                "hook": step(f"{steps_module}.add_route", "before_train"),
                "family": dataclasses.replace(step(f"{steps_module}.add_route"), family="io"),
                "fine": step(f"{steps_module}.add_route"),
            }, FAMILIES)
        msg = err.value.message
        for expected in [
            "steps.nomodule: _target_ 'tasks.nowhere.enrich': there is no module 'tasks.nowhere'",
            "steps.noattr: _target_ 'tasks.mine.enrich': 'tasks.mine' has no attribute 'enrich'",
            "steps.cls: _target_ 'tasks.mine.NotAFunction': it is a type, not a function",
            "steps.flw: _target_ 'tasks.mine.a_flow': it is a Prefect flow",
            "steps.asyn: _target_ 'tasks.mine.an_async': it is an async function",
            "steps.params: params: unknown key 'carrier'",
            "missing required key 'carriers'",
            "steps.types: params: 'sep' is 3, expected <class 'str'>",
            "steps.required: params: missing required key 'threshold'",
            "steps.returns: its return annotation is NoneType; an after_ingest step returns "
            "a pandas DataFrame",
            "steps.wronghook: its return annotation is Check; an after_ingest step returns",
            "steps.hook: hook is 'before_train'; expected one of ['after_ingest', "
            "'after_evaluate']",
            "steps.family: family 'io' is not in orchestration.tasks (['ingest', 'step'])",
        ]:
            assert expected in msg
        assert "steps.fine" not in msg
        assert "conf/steps/<name>.yaml" in err.value.fix

    def test_a_module_that_fails_to_import_is_named_with_its_error(
            self, project_tasks: Callable[[str, str], Path]) -> None:
        project_tasks("broken", "import pandas as pd\nraise RuntimeError('no weather file')\n")
        with pytest.raises(ConfigError, match=r"steps\.w: _target_ 'tasks\.broken\.join': "
                           r"importing tasks\.broken failed: RuntimeError: no weather file"):
            resolve_steps({"w": step("tasks.broken.join")}, FAMILIES)

    def test_the_fingerprint_follows_code_and_params(
            self, project_tasks: Callable[[str, str], Path]) -> None:
        source = "def s(frame, n: int = 1):\n    return frame.head(n)\n"
        project_tasks("fp", source)
        a = resolve_steps({"s": step("tasks.fp.s", n=1)}, FAMILIES).after_ingest[0]
        b = resolve_steps({"s": step("tasks.fp.s", n=2)}, FAMILIES).after_ingest[0]
        project_tasks("fp", source.replace("head(n)", "tail(n)"))
        c = resolve_steps({"s": step("tasks.fp.s", n=1)}, FAMILIES).after_ingest[0]
        assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3
        assert a.code == b.code != c.code


class TestTheProjectPackage:
    def test_imports_from_the_project_directory_however_the_flow_started(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import sys

        package = "stepsproject"  # stands for a project's `tasks`, on no sys.path entry
        project = tmp_path / "my-project"
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text("")
        (project / package / "trim.py").write_text(
            "def trim(frame, n: int = 10):\n    return frame.head(n)\n")
        monkeypatch.setattr(sys, "dont_write_bytecode", True)
        path_before = list(sys.path)
        cfg = {"trim": step(f"{package}.trim.trim")}
        # e.g. the `prefab` console script: the project directory is not on sys.path
        with pytest.raises(ConfigError, match=rf"there is no module '{package}' on sys\.path"):
            resolve_steps(cfg, FAMILIES)
        try:
            (trim,) = resolve_steps(cfg, FAMILIES, (project,)).after_ingest
            assert trim.fn.__module__ == f"{package}.trim"
            assert sys.path == path_before
        finally:
            for name in [n for n in sys.modules if n.split(".")[0] == package]:
                del sys.modules[name]


class TestTargetsOutsideTheAllowList:
    def test_refused_when_the_config_loads(self, tmp_path: Path) -> None:
        conf = Path(shutil.copytree(CONF, tmp_path / "conf", ignore=shutil.ignore_patterns(
            "local")))
        (conf / "steps").mkdir()
        (conf / "steps" / "shell.yaml").write_text(
            "shell:\n  hook: after_ingest\n  _target_: os.system\n  params: {command: ls}\n")
        with pytest.raises(ConfigError, match=r"'steps\.shell\._target_' is 'os\.system'"):
            load_config([f"paths.root={tmp_path}", "steps=[shell]"], config_dir=conf)


class TestDataStep:
    def test_returns_the_new_rows_with_their_content_fingerprint(
            self, steps_module: str, flights: Dataset) -> None:
        steps = resolve_steps({"carriers": step(f"{steps_module}.keep_carriers",
                                                carriers=["AA", "DL"])}, FAMILIES)
        out = apply_data_step.fn(flights, steps.after_ingest[0])
        assert set(out.frame["carrier"]) == {"AA", "DL"}
        assert out.rows == len(out.frame) < flights.rows
        assert out.fingerprint != flights.fingerprint
        assert out.steps == [steps.after_ingest[0].record()]
        assert out.lineage_record().steps[0].target == "tasks.mine.keep_carriers"
        assert out.snapshot_uri == flights.snapshot_uri  # the snapshot holds the ingested rows
        # the same rows, however they were made, have the same fingerprint
        same = flights.with_frame(flights.frame[flights.frame["carrier"].isin(["AA", "DL"])]
                                  .reset_index(drop=True))
        again = resolve_steps({"other": step("pandas.DataFrame.copy")}, FAMILIES)
        assert apply_data_step.fn(same, again.after_ingest[0]).fingerprint == out.fingerprint

    def test_the_input_rows_are_never_changed(self, steps_module: str, flights: Dataset) -> None:
        before = flights.frame.copy()
        route = resolve_steps({"route": step(f"{steps_module}.add_route")}, FAMILIES)
        out = apply_data_step.fn(flights, route.after_ingest[0])
        assert "route" in out.frame.columns and "route" in out.columns
        assert "route" not in flights.frame.columns
        pd.testing.assert_frame_equal(flights.frame, before)

    def test_a_step_that_returns_no_frame_is_named(self, steps_module: str,
                                                    flights: Dataset) -> None:
        bad = resolve_steps({"oops": step(f"{steps_module}.forgot_return")}, FAMILIES)
        with pytest.raises(StepError, match=r"Step 'oops' \(tasks\.mine\.forgot_return\) "
                           r"returned a NoneType; an after_ingest step must return a pandas "
                           r"DataFrame") as err:
            apply_data_step.fn(flights, bad.after_ingest[0])
        assert "Return the new frame from tasks.mine.forgot_return" in err.value.fix


@pytest.fixture(scope="module")
def candidate(config, flights: Dataset) -> Candidate:
    """An XGBoost classifier trained on 4,000 real flights, with its evaluation."""
    cfg = config("model.n_estimators=30", "model.n_jobs=1")
    fs = featurize.fn(flights, cfg.features, TargetSpec.from_data(cfg.data), cfg.seed)
    trained = train.fn(fs, ModelSpec.from_config(cfg.model), cfg.seed)
    return Candidate(trained, fs, evaluate.fn(trained, fs, cfg.evaluate))


class TestCheckStep:
    def run(self, module: str, candidate: Candidate, **params: object):
        cfg = {name: step(f"{module}.{name}", "after_evaluate", **p)
               for name, p in params.items()}
        steps = resolve_steps(cfg, FAMILIES).after_evaluate
        return [(s, apply_check_step.fn(candidate, s)) for s in steps]

    def test_metrics_join_and_failures_fail_the_gate(self, steps_module: str,
                                                     candidate: Candidate) -> None:
        assert candidate.evaluation.gate.passed
        checks = self.run(steps_module, candidate,
                          origin_recall={"origin": "JFK", "min_recall": 0.99})
        merged = with_checks(candidate.evaluation, checks)
        recall = checks[0][1].metrics["jfk_recall"]
        assert 0 < recall < 0.99
        assert merged.metrics == {**candidate.evaluation.metrics, "jfk_recall": recall}
        assert not merged.gate.passed
        assert merged.gate.failures == [f"origin_recall: recall at JFK {recall:.3f} < 0.99"]
        assert merged.fingerprint != candidate.evaluation.fingerprint
        passing = self.run(steps_module, candidate, origin_recall={"origin": "JFK"})
        assert with_checks(candidate.evaluation, passing).gate.passed

    def test_a_stock_metric_name_is_refused(self, steps_module: str,
                                            candidate: Candidate) -> None:
        checks = self.run(steps_module, candidate, clashing={})
        with pytest.raises(StepError, match=r"Step 'clashing' .* reports metric\(s\) "
                           r"\['roc_auc'\]"):
            with_checks(candidate.evaluation, checks)

    def test_a_metric_that_is_not_a_number_is_named(self, steps_module: str,
                                                    candidate: Candidate) -> None:
        with pytest.raises(StepError, match=r"Step 'not_a_number' .* not numbers: "
                           r"\{'ok': 'high'\}"):
            self.run(steps_module, candidate, not_a_number={})
