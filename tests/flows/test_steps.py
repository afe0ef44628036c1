"""A project's own steps inside the stock training flow (real Prefect, real flights data).

The steps are modules of a throw-away project's ``tasks`` package, plugged in by
``conf/steps/<name>.yaml`` and ``steps=[...]`` as a generated project does. Covers: a
step runs as its own task run and its effect reaches the registered model; the stock
tasks after an uncached step are keyed on what it returned (a changed input file of
the step reruns them, an unchanged one is a cache hit); a cached step is keyed on its
code; a check adds a registered metric and vetoes promotion; a version trained with a
step reproduces byte-identical (its snapshot holds the ingested rows, its recorded
config the step); a bad step fails before Prefect starts; a step that returns the wrong
type fails naming the step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from prefab_mlops.core.errors import StepError
from prefab_mlops.flows.reproduce import reproduce
from prefab_mlops.flows.training import training
from tests.flows.test_training import FAST, HEAVY, registry, states, task_runs

pytestmark = pytest.mark.usefixtures("prefect_harness")

REPO = Path(__file__).resolve().parents[2]
WITH_STEP = (*HEAVY, "drop_carriers")

CARRIERS = '''
from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task


@task(name="drop-listed-carriers")
def drop_listed(frame: pd.DataFrame, *, listing: str) -> pd.DataFrame:
    """Drop the flights of the carriers listed (one per line) in the file ``listing``."""
    listed = Path(listing).read_text().split()
    return frame[~frame["carrier"].isin(listed)].reset_index(drop=True)
'''

CHECKS = '''
from __future__ import annotations

from prefab_mlops.tasks.steps import Candidate, Check


def origin_recall(candidate: Candidate, *, origin: str, min_recall: float = 0.0) -> Check:
    """Recall of the delayed class on the test flights from ``origin``."""
    rows = (candidate.test.X["origin"] == origin).to_numpy()
    pred = candidate.pipeline.predict(candidate.test.X[rows])
    late = candidate.test.y[rows] == candidate.classes.index(True)
    recall = float((pred[late] == candidate.classes.index(True)).mean())
    name = f"{origin.lower()}_recall"
    failures = [] if recall >= min_recall else [f"{name} {recall:.3f} < {min_recall}"]
    return Check(metrics={name: recall}, failures=failures)
'''


@pytest.fixture()
def conf(tmp_path: Path) -> Path:
    """A copy of the reference project's conf/ that steps can be added to."""
    return Path(shutil.copytree(REPO / "conf", tmp_path / "conf",
                                ignore=shutil.ignore_patterns("local")))


def plug(conf: Path, name: str, hook: str, target: str, **extra: Any) -> None:
    """Write conf/steps/<name>.yaml as a generated project has it."""
    (conf / "steps").mkdir(exist_ok=True)
    (conf / "steps" / f"{name}.yaml").write_text(
        yaml.safe_dump({name: {"hook": hook, "_target_": target, **extra}}, sort_keys=False))


def plug_drop_carriers(conf: Path, root: Path, project_tasks: Callable[[str, str], Path],
                       listed: str, **extra: object) -> Path:
    """The project task ``tasks.carriers.drop_listed`` plugged in as step ``drop_carriers``,
    dropping the carriers listed (one per line) in a file under ``root``; returns it."""
    project_tasks("carriers", CARRIERS)
    listing = root / "listed.txt"
    listing.write_text(listed)
    plug(conf, "drop_carriers", "after_ingest", "tasks.carriers.drop_listed",
         params={"listing": str(listing)}, **extra)
    return listing


def run(conf: Path, root: Path, *overrides: str) -> dict:
    return training(overrides=[f"paths.root={root}", *FAST, *overrides], config_dir=str(conf))


class TestDataStepInTheTrainingFlow:
    def test_runs_as_its_own_task_and_shapes_the_registered_model(
            self, tmp_path: Path, conf: Path,
            project_tasks: Callable[[str, str], Path]) -> None:
        listing = plug_drop_carriers(conf, tmp_path, project_tasks, "EV\nB6\n")
        s = run(conf, tmp_path, "steps=[drop_carriers]")

        runs = task_runs(s["flow_run_id"], WITH_STEP)
        assert runs["drop_carriers"].state.name == "Completed"
        assert s["steps"] == {"after_ingest": ["drop_carriers"]}
        mv = registry(tmp_path).get_version("flights-binary", s["version"])
        carriers = mv.features.input_schema["carrier"].categories
        assert "EV" not in carriers and "B6" not in carriers and "AA" in carriers
        assert [st.target for st in mv.data.steps] == ["tasks.carriers.drop_listed"]
        assert mv.data.steps[0].params == {"listing": str(listing)}
        assert mv.config["steps"]["drop_carriers"]["hook"] == "after_ingest"
        assert s["data"]["rows"] < 20_000  # the sample, less the listed carriers


class TestStepCaching:
    def test_tasks_after_an_uncached_step_are_keyed_on_what_it_returned(
            self, tmp_path: Path, conf: Path,
            project_tasks: Callable[[str, str], Path]) -> None:
        listing = plug_drop_carriers(conf, tmp_path, project_tasks, "EV\n")
        first = run(conf, tmp_path, "steps=[drop_carriers]")

        again = run(conf, tmp_path, "steps=[drop_carriers]")
        st = states(again["flow_run_id"], WITH_STEP)
        assert st["drop_carriers"] == "Completed"  # uncached: it runs every time
        assert {t: st[t] for t in HEAVY} == {t: "Cached" for t in HEAVY}
        assert again["version"] == first["version"] == 1

        # same code, same params, but the file the step reads changed
        listing.write_text("EV\nUA\n")
        changed = run(conf, tmp_path, "steps=[drop_carriers]")
        st = states(changed["flow_run_id"], WITH_STEP)
        assert st["ingest"] == "Cached"
        assert [st[t] for t in ("drop_carriers", "validate", "featurize", "train",
                                "evaluate")] == ["Completed"] * 5
        assert changed["version"] == 2
        assert changed["data"]["fingerprint"] != first["data"]["fingerprint"]

    def test_a_cached_step_is_keyed_on_its_code(
            self, tmp_path: Path, conf: Path,
            project_tasks: Callable[[str, str], Path]) -> None:
        plug_drop_carriers(conf, tmp_path, project_tasks, "EV\n", cache=True)
        run(conf, tmp_path, "steps=[drop_carriers]")
        again = run(conf, tmp_path, "steps=[drop_carriers]")
        st = states(again["flow_run_id"], WITH_STEP)
        assert st["drop_carriers"] == "Cached"
        assert {t: st[t] for t in HEAVY} == {t: "Cached" for t in HEAVY}

        project_tasks("carriers", CARRIERS.replace(
            '.reset_index(drop=True)', '.query("distance > 200").reset_index(drop=True)'))
        changed = run(conf, tmp_path, "steps=[drop_carriers]")
        st = states(changed["flow_run_id"], WITH_STEP)
        assert [st[t] for t in ("drop_carriers", "validate", "featurize", "train",
                                "evaluate")] == ["Completed"] * 5
        assert changed["version"] == 2


class TestCheckStep:
    def test_its_metric_is_registered_and_its_failure_vetoes_promotion(
            self, tmp_path: Path, conf: Path,
            project_tasks: Callable[[str, str], Path]) -> None:
        project_tasks("checks", CHECKS)
        plug(conf, "jfk", "after_evaluate", "tasks.checks.origin_recall",
             params={"origin": "JFK", "min_recall": 0.0})
        first = run(conf, tmp_path, "steps=[jfk]")
        assert task_runs(first["flow_run_id"], (*HEAVY, "jfk"))["jfk"].state.name == "Completed"
        recall = first["metrics"]["jfk_recall"]
        assert 0 < recall < 1
        assert first["gate"]["passed"] and first["decision"]["promote"]
        reg = registry(tmp_path)
        assert reg.get_version("flights-binary", 1).metrics["jfk_recall"] == recall

        vetoed = run(conf, tmp_path, "steps=[jfk]", "steps.jfk.params.min_recall=0.99",
                     "model.n_estimators=41")
        assert vetoed["version"] == 2
        assert vetoed["gate"]["passed"] is False
        failed = [c for c in vetoed["gate"]["checks"] if not c["passed"]]
        assert [(c["rule"], c["text"]) for c in failed] == [
            ("step jfk", f"jfk: jfk_recall {vetoed['metrics']['jfk_recall']:.3f} < 0.99")]
        assert vetoed["gate"]["decided_by"] == ["step jfk"]
        assert vetoed["decision"]["promote"] is False
        assert reg.alias("flights-binary", "production").version == 1
        assert reg.get_version("flights-binary", 2).gate.passed is False


class TestReproduceWithAStep:
    def test_a_version_trained_with_a_step_reproduces_byte_identical(
            self, tmp_path: Path, project_tasks: Callable[[str, str], Path]) -> None:
        # conf/ next to tasks/, as in a generated project: the reproduction trains in a
        # process of its own, working in the directory that holds conf/
        project = project_tasks("carriers", CARRIERS).parents[1]
        conf = Path(shutil.copytree(REPO / "conf", project / "conf",
                                    ignore=shutil.ignore_patterns("local")))
        plug_drop_carriers(conf, tmp_path, project_tasks, "EV\nB6\n")
        overrides = [f"paths.root={tmp_path}", *FAST, "steps=[drop_carriers]"]
        s = training(overrides=overrides, config_dir=str(conf))
        result = reproduce(s["model_name"], s["version"], overrides, str(conf))
        assert result.identical, result.render()


class TestBadSteps:
    def test_a_bad_step_fails_before_prefect_starts(
            self, tmp_path: Path, project_tasks: Callable[[str, str], Path]) -> None:
        # a project as generated: conf/ next to tasks/
        project = project_tasks("carriers", CARRIERS).parents[1]
        conf = Path(shutil.copytree(REPO / "conf", project / "conf",
                                    ignore=shutil.ignore_patterns("local")))
        plug(conf, "good", "after_ingest", "tasks.carriers.drop_listed", params={"listing": "x"})
        plug(conf, "typo", "after_ingest", "tasks.carriers.drop_listd", params={"listing": "x"})
        plug(conf, "params", "after_ingest", "tasks.carriers.drop_listed",
             params={"listings": "x"})
        home = tmp_path / "prefect-home"
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PYTHONPATH")}
        env["PREFECT_HOME"] = str(home)
        # the `prefab` console script (as `make train` runs it), from another directory:
        # the project's tasks import from the directory holding conf/
        res = subprocess.run(
            [str(Path(sys.executable).parent / "prefab"), "train", "--config-dir", str(conf),
             f"paths.root={tmp_path}", "steps=[good,typo,params]"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 2, res.stdout + res.stderr
        assert ("steps.typo: _target_ 'tasks.carriers.drop_listd': 'tasks.carriers' has no "
                "attribute 'drop_listd'") in res.stderr
        assert "steps.params: params: unknown key 'listings'" in res.stderr
        assert "steps.good" not in res.stderr
        assert "\nfix: Fix the named entries in conf/steps/<name>.yaml" in res.stderr
        assert "Traceback" not in res.stderr
        assert not (home / "prefect.db").exists()  # no flow run, no temporary server

    def test_a_step_that_returns_the_wrong_type_is_named(
            self, tmp_path: Path, conf: Path,
            project_tasks: Callable[[str, str], Path]) -> None:
        project_tasks("carriers", CARRIERS.replace("return frame[", "frame = frame["))
        plug(conf, "drop_carriers", "after_ingest", "tasks.carriers.drop_listed",
             params={"listing": str(tmp_path / "listed.txt")})
        (tmp_path / "listed.txt").write_text("EV\n")
        with pytest.raises(StepError, match=r"Step 'drop_carriers' "
                           r"\(tasks\.carriers\.drop_listed\) returned a NoneType"):
            run(conf, tmp_path, "steps=[drop_carriers]")
        assert not (tmp_path / "registry").exists() or not registry(tmp_path).models()
