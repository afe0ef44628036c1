"""The data contract a generated project infers from its table survives the next batch.

The table is scikit-learn's breast cancer data written to CSV with its integer index as the
first column (``id``), as ``DataFrame.to_csv(index_label="id")`` writes it. Generation
leaves the index out of the features and says why; the ``keep_columns`` answer brings it
back, and an unknown one stops generation by name. Then (slow) the generated project trains,
100 rows are appended to its CSV (the index going on, one column beyond its observed
range) and it trains again with no file edited: validation passes with a warning.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.templates.conftest import project_env, render

INDEX = "id"
ANSWERS = {"project_name": "Tumours", "problem_type": "binary", "target": "target",
           "tracking_mode": "disabled"}


def cancer_table() -> pd.DataFrame:
    from sklearn import datasets

    frame: pd.DataFrame = datasets.load_breast_cancer(as_frame=True).frame
    return frame


@pytest.fixture(scope="module")
def cancer_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "cancer.csv"
    cancer_table().to_csv(path, index_label=INDEX)
    return path


def conf_texts(project: Path) -> dict[str, str]:
    return {str(p.relative_to(project)): p.read_text()
            for p in sorted((project / "conf").rglob("*.yaml"))}


class TestGeneration:
    def test_the_index_is_not_a_feature_and_the_reason_is_printed(
            self, template_repo: Path, cancer_csv: Path, tmp_path: Path,
            capfd: pytest.CaptureFixture[str]) -> None:
        project = render(template_repo, tmp_path / "p", data_uri=str(cancer_csv), **ANSWERS)
        err = capfd.readouterr().err
        assert (f"not a feature: '{INDEX}': its name '{INDEX}' marks a row index or id (e.g. a "
                "pandas index written to CSV) (keep it with the 'keep_columns' answer)") in err
        text = (project / "conf" / "features" / "cancer.yaml").read_text()
        assert f"#   - {INDEX}: its name '{INDEX}' marks a row index or id" in text
        numeric = yaml.safe_load(text)["numeric"]["columns"]
        assert INDEX not in numeric and len(numeric) == 30
        contract = yaml.safe_load((project / "conf" / "validate" / "cancer.yaml").read_text())
        assert contract["leakage"] == "warn"
        assert contract["columns"][INDEX] == {"dtype": "int", "nullable": False}
        area = contract["columns"]["worst area"]
        assert (area["expected_min"], area["expected_max"]) == (185.2, 4254.0)
        assert not {"min", "max"} & set(area)

    def test_the_keep_columns_answer_brings_it_back(self, template_repo: Path,
                                                     cancer_csv: Path, tmp_path: Path) -> None:
        project = render(template_repo, tmp_path / "p", data_uri=str(cancer_csv),
                         keep_columns=INDEX, **ANSWERS)
        features = yaml.safe_load((project / "conf" / "features" / "cancer.yaml").read_text())
        assert features["numeric"]["columns"][0] == INDEX
        makefile = (project / "Makefile").read_text()
        assert f'--keep "{INDEX}"' in makefile  # `make schema` keeps it too

    def test_an_unknown_keep_column_stops_generation_by_name(
            self, template_repo: Path, cancer_csv: Path, tmp_path: Path,
            capfd: pytest.CaptureFixture[str]) -> None:
        from copier.errors import TaskError

        with pytest.raises(TaskError):
            render(template_repo, tmp_path / "p", data_uri=str(cancer_csv),
                   keep_columns="colour", **ANSWERS)
        err = capfd.readouterr().err
        assert "Project generation stopped" in err
        assert "Change the 'keep_columns' answer" in err
        assert not (tmp_path / "p").exists()


# ------------------------------------------------------- the next batch, trained on
@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from prefab_mlops.testing.local_prefect import PrefectServer

    with PrefectServer(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


def train(project: Path, env: dict[str, str]) -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-m", "prefab_mlops.flows.training",
                          "model.n_estimators=50", "--json"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    summary: dict[str, Any] = json.loads(res.stdout[res.stdout.rindex('{\n  "model_name"'):])
    return summary


@pytest.mark.slow
def test_appending_rows_and_retraining_needs_no_edit(
        template_repo: Path, cancer_csv: Path, tmp_path: Path, prefect_server: Any) -> None:
    data = Path(shutil.copy(cancer_csv, tmp_path / "cancer.csv"))
    project = render(template_repo, tmp_path / "project", data_uri=str(data), **ANSWERS)
    env = project_env(project, **{k: v for k, v in prefect_server.client_env(
        tmp_path / "client").items() if k.startswith("PREFECT_")})
    first = train(project, env)
    assert first["version"] == 1
    assert first["validation"] == {"passed": True, "violations": 0, "warnings": []}
    assert first["leakage"]["before_training"]["suspects"] == []
    conf_before = conf_texts(project)

    table = cancer_table()
    top = table["worst area"].max()
    new = table.sample(n=100, random_state=11)
    new.index = range(len(table), len(table) + 100)  # the index goes on: 569..668
    new["worst area"] = new["worst area"] + top      # every one beyond the observed range
    new.to_csv(data, mode="a", header=False)

    second = train(project, env)
    assert conf_texts(project) == conf_before          # nothing was edited
    assert second["data"]["rows"] == len(table) + 100
    assert second["version"] == 2
    validation = second["validation"]
    assert validation["passed"] is True and validation["violations"] == 0
    (warning,) = validation["warnings"]
    assert (warning["column"], warning["count"]) == ("worst area", 100)
    assert warning["rule"] == f"expected range [185.2, {top:g}]"
    assert second["leakage"]["before_training"]["suspects"] == []
