"""tasks/validate.py through ``validate.fn``: the data contract on real flights and
diamonds rows, every violation reported at once, and the warn/fail switch."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefab_mlops.config import ColumnRule, PipelineConfig, TargetSpec
from prefab_mlops.core.errors import DataValidationError
from prefab_mlops.tasks.ingest import Dataset, ingest, prepare
from prefab_mlops.tasks.validate import ValidationReport, validate

CONF = Path(__file__).resolve().parents[2] / "conf"


def flights_dataset(cfg: PipelineConfig, frame: pd.DataFrame, **data: object) -> Dataset:
    """``frame`` prepared by the flights ``data`` config (pure, no file)."""
    dcfg = dataclasses.replace(cfg.data, **data)
    rows = prepare(frame, dcfg, cfg.seed, "flights.csv")
    return Dataset.of(rows, name="flights", fingerprint="fp-" + str(len(rows)),
                      source="flights.csv", source_fingerprint="src", snapshot_uri=None,
                      target=dcfg.target, time_column=dcfg.time_column)


def check(cfg: PipelineConfig, data: Dataset, **rules: object) -> ValidationReport:
    return validate.fn(data, dataclasses.replace(cfg.validate, **rules),
                       TargetSpec.from_data(cfg.data))


def by_column(violations: list[dict]) -> dict[str, dict]:
    return {v["column"]: v for v in violations}


def ingest_file(cfg: PipelineConfig, path: Path, **data: object) -> Dataset:
    dcfg = dataclasses.replace(cfg.data, uri=str(path), snapshot=False, **data)
    return ingest.fn(dcfg, cfg.paths, cfg.storage, cfg.seed)


class TestValidatePasses:
    def test_real_flights_rows_meet_the_flights_contract(self, config,
                                                         flights_frame: pd.DataFrame) -> None:
        cfg = config()
        data = flights_dataset(cfg, flights_frame)
        report = check(cfg, data)
        assert report.passed is True
        assert report.violations == []
        assert (report.rows, report.columns) == (len(data.frame), 12)
        assert report.dataset == "flights (flights.csv)"
        assert len(report.fingerprint) == 32

    def test_real_diamonds_meet_the_diamonds_contract(self, config) -> None:
        cfg = config("experiment=diamonds", "data.sample_rows=5000", "data.snapshot=false")
        data = ingest.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
        report = validate.fn(data, cfg.validate, TargetSpec.from_data(cfg.data))
        assert report.passed and report.rows == 5000 and report.columns == 10

    def test_fingerprint_follows_data_and_rules(self, config, flights_frame: pd.DataFrame
                                                ) -> None:
        cfg = config()
        data = flights_dataset(cfg, flights_frame)
        a = check(cfg, data)
        assert check(cfg, data).fingerprint == a.fingerprint
        assert check(cfg, data, min_rows=10).fingerprint != a.fingerprint
        other = dataclasses.replace(data, fingerprint="another")
        assert check(cfg, other).fingerprint != a.fingerprint


class TestValidateReportsEverything:
    def test_three_problems_give_three_records_in_one_error(
            self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        data = flights_dataset(cfg, flights_frame)
        frame = data.frame.copy()
        frame.loc[0:9, "carrier"] = "ZZ"                      # 10 unknown categories
        frame.loc[100:106, "month"] = 13                      # 7 out of range
        frame["distance"] = frame["distance"].astype("float64")
        frame.loc[200:203, "distance"] = np.nan               # 4 nulls
        with pytest.raises(DataValidationError) as err:
            check(cfg, data.with_frame(frame))
        found = by_column(err.value.violations)
        assert sorted(found) == ["carrier", "distance", "month"]
        assert found["carrier"]["rule"].startswith("isin(")
        assert (found["carrier"]["count"], found["carrier"]["examples"]) == (10, ["ZZ"])
        assert found["month"]["rule"].startswith("less_than_or_equal_to(12")
        assert (found["month"]["count"], found["month"]["examples"]) == (7, ["13"])
        assert (found["distance"]["rule"], found["distance"]["count"]) == ("not null", 4)
        text = str(err.value)
        assert "in 3 way(s)" in text
        for col in ("'carrier'", "'month'", "'distance'"):
            assert f"column {col}" in text
        assert "validate.on_failure=warn" in err.value.fix

    def test_examples_are_capped_but_counts_are_not(self, config,
                                                    flights_frame: pd.DataFrame) -> None:
        cfg = config()
        data = flights_dataset(cfg, flights_frame)
        frame = data.frame.copy()
        codes = ["Z1", "Z2", "Z3", "Z4", "Z5", "Z6", "Z7", "Z8"]
        frame.loc[0:39, "carrier"] = codes * 5
        report = check(cfg, data.with_frame(frame), on_failure="warn",
                       max_examples=3)
        (v,) = report.violations
        assert (v["column"], v["count"], v["examples"]) == ("carrier", 40, ["Z1", "Z2", "Z3"])

    def test_wrong_dtype_skips_value_checks_on_that_column(
            self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        data = flights_dataset(cfg, flights_frame)
        frame = data.frame.assign(hour=data.frame["hour"].astype(str) + "h")
        report = check(cfg, data.with_frame(frame), on_failure="warn")
        (v,) = report.violations
        assert (v["column"], v["rule"], v["count"]) == ("hour", "dtype int", len(frame))
        assert "found dtype str" in v["examples"]


class TestValidateOnFailureWarn:
    def test_warn_returns_the_failed_report_without_raising(
            self, config, flights_frame: pd.DataFrame, caplog: pytest.LogCaptureFixture) -> None:
        cfg = config()
        data = flights_dataset(cfg, flights_frame)
        frame = data.frame.copy()
        frame.loc[0:4, "origin"] = "XYZ"
        bad = data.with_frame(frame)
        with pytest.raises(DataValidationError) as err:
            check(cfg, bad)
        with caplog.at_level(logging.WARNING, logger="prefab"):
            report = check(cfg, bad, on_failure="warn")
        assert report.passed is False and report.on_failure == "warn"
        assert report.violations == err.value.violations
        assert by_column(report.violations)["origin"]["count"] == 5
        assert "on_failure=warn: continuing" in caplog.text
        assert "column 'origin'" in caplog.text


class TestValidateMinRows:
    def test_too_few_rows_is_one_table_violation(self, config,
                                                 flights_frame: pd.DataFrame) -> None:
        cfg = config()
        data = flights_dataset(cfg, flights_frame.head(600))
        with pytest.raises(DataValidationError) as err:
            check(cfg, data)
        (v,) = err.value.violations
        assert v == {"column": "<table>", "rule": "min_rows(1000)", "count": 1,
                     "examples": [f"found {len(data.frame)} row(s)"]}

    def test_exactly_min_rows_passes(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        data = flights_dataset(cfg, flights_frame)
        data = data.with_frame(data.frame.head(1000))
        assert check(cfg, data).passed
        assert not check(cfg, data, min_rows=1001, on_failure="warn").passed


class TestValidateStrict:
    EXTRA = ["year", "dep_time", "dep_delay", "arr_time", "arr_delay", "tailnum",
             "air_time", "minute"]

    def test_strict_names_every_undeclared_column(self, config,
                                                  flights_frame: pd.DataFrame) -> None:
        cfg = config()
        data = flights_dataset(cfg, flights_frame, columns=None)  # all 20 columns
        assert check(cfg, data).passed  # not strict: extra columns are fine
        with pytest.raises(DataValidationError) as err:
            check(cfg, data, strict=True)
        (v,) = err.value.violations
        assert v["rule"] == "column declared (strict schema)"
        assert sorted(v["column"].split(", ")) == sorted(self.EXTRA)
        assert v["count"] == len(self.EXTRA)

    def test_optional_column_may_be_absent(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        data = flights_dataset(cfg, flights_frame)
        data = data.with_frame(data.frame.drop(columns=["dest"]))
        with pytest.raises(DataValidationError) as err:
            check(cfg, data)
        assert by_column(err.value.violations)["dest"]["rule"] == "column present"
        rules = dict(cfg.validate.columns)
        rules["dest"] = dataclasses.replace(rules["dest"], required=False)
        assert check(cfg, data, columns=rules).passed


class TestValidateCompoundUnique:
    KEY = ["carrier", "flight", "time_hour"]

    def test_duplicated_keys_are_one_record(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        data = flights_dataset(cfg, flights_frame)
        assert check(cfg, data, unique=[self.KEY]).passed  # the real slice has no duplicates
        frame = pd.concat([data.frame, data.frame.iloc[[5, 6]]], ignore_index=True)
        with pytest.raises(DataValidationError) as err:
            check(cfg, data.with_frame(frame), unique=[self.KEY])
        (v,) = err.value.violations
        assert (v["column"], v["rule"], v["count"]) == ("carrier, flight, time_hour",
                                                        "unique together", 4)
        row5 = data.frame.loc[5, self.KEY].astype(str).tolist()
        assert row5 in v["examples"]

    def test_every_key_is_checked(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        data = flights_dataset(cfg, flights_frame)
        frame = pd.concat([data.frame, data.frame.iloc[[5]]], ignore_index=True)
        report = check(cfg, data.with_frame(frame), on_failure="warn",
                       unique=[self.KEY, ["origin", "flight", "time_hour"], ["month", "day"]])
        found = by_column(report.violations)
        assert found["carrier, flight, time_hour"]["count"] == 2
        # Two carriers can share a flight number at one airport and hour: the real slice
        # has such pairs, and every row of them is counted.
        for key in (["origin", "flight", "time_hour"], ["month", "day"]):
            dup = frame.duplicated(key, keep=False)
            v = found[", ".join(key)]
            assert v["count"] == int(dup.sum()) > 2
            keys = frame.loc[dup, key].astype(str).drop_duplicates().values.tolist()
            assert v["examples"] == keys[:5]  # distinct keys, capped at max_examples


class TestValidateMarkdown:
    def test_markdown_lists_every_violation(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        data = flights_dataset(cfg, flights_frame)
        frame = data.frame.copy()
        frame.loc[0:2, "carrier"] = "ZZ"
        frame.loc[3:4, "hour"] = 25
        report = check(cfg, data.with_frame(frame), on_failure="warn")
        md = report.to_markdown()
        assert md.startswith("# Validation of `flights (flights.csv)`")
        assert "**2 violation(s)**" in md and "`warn`" in md
        assert "| column | rule | count | examples |" in md
        assert "| carrier | isin(" in md
        assert "| hour | less_than_or_equal_to(23" in md
        assert f"{len(frame):,} rows × 12 columns" in md

    def test_passing_report_says_so(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        md = check(cfg, flights_dataset(cfg, flights_frame)).to_markdown()
        assert ": passed (on_failure: `fail`)" in md and "| column |" not in md


class TestValidateBadInput:
    """Bad files that parse end at validation, naming the file, column and rule."""

    def test_text_in_a_numeric_column(self, config, tmp_path: Path,
                                      flights_frame: pd.DataFrame) -> None:
        cfg = config()
        frame = flights_frame.head(3000).assign(distance="far")
        frame.to_csv(tmp_path / "text_distance.csv", index=False)
        data = ingest_file(cfg, tmp_path / "text_distance.csv")
        with pytest.raises(DataValidationError) as err:
            validate.fn(data, cfg.validate, TargetSpec.from_data(cfg.data))
        (v,) = err.value.violations
        assert (v["column"], v["rule"], v["count"]) == ("distance", "dtype number", data.rows)
        assert "['far']" in v["examples"]
        assert "text_distance.csv" in str(err.value) and "Fix: " in str(err.value)

    def test_unknown_category(self, config, tmp_path: Path, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        frame = flights_frame.head(3000).copy()
        frame.loc[frame.index[::100], "carrier"] = "ZZ"
        frame.to_csv(tmp_path / "zz.csv", index=False)
        data = ingest_file(cfg, tmp_path / "zz.csv")
        with pytest.raises(DataValidationError) as err:
            validate.fn(data, cfg.validate, TargetSpec.from_data(cfg.data))
        (v,) = err.value.violations
        expected = int((data.frame["carrier"] == "ZZ").sum())
        assert (v["column"], v["count"], v["examples"]) == ("carrier", expected, ["ZZ"])
        assert expected > 0 and "zz.csv" in str(err.value)

    def test_nan_target(self, config, tmp_path: Path, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        frame = flights_frame.head(3000).dropna(subset=["arr_delay"]).copy()
        frame["delayed"] = (frame["arr_delay"] > 15).astype(object)
        frame.loc[frame.index[:7], "delayed"] = None
        frame.to_csv(tmp_path / "nan_target.csv", index=False)
        data = ingest_file(cfg, tmp_path / "nan_target.csv", derive={})
        with pytest.raises(DataValidationError) as err:
            validate.fn(data, cfg.validate, TargetSpec.from_data(cfg.data))
        rules = {(v["column"], v["rule"]): v["count"] for v in err.value.violations}
        assert rules[("delayed", "not null")] == 7
        assert "nan_target.csv" in str(err.value)

    def test_binary_target_with_a_third_value(self, config, tmp_path: Path,
                                              flights_frame: pd.DataFrame) -> None:
        cfg = config()
        frame = flights_frame.head(3000).dropna(subset=["arr_delay"]).copy()
        frame["delayed"] = (frame["arr_delay"] > 15).astype(int)
        frame.loc[frame.index[:6], "delayed"] = 2
        frame.to_csv(tmp_path / "three_classes.csv", index=False)
        data = ingest_file(cfg, tmp_path / "three_classes.csv", derive={})
        target = TargetSpec.from_data(cfg.data)
        # The flights contract declares a bool target: the int column is refused outright.
        with pytest.raises(DataValidationError) as err:
            validate.fn(data, cfg.validate, target)
        (v,) = err.value.violations
        assert (v["column"], v["rule"]) == ("delayed", "dtype bool")
        assert "'2'" in v["examples"]
        # With an int contract, the binary rule itself catches the rows with 2.
        rules = dict(cfg.validate.columns, delayed=ColumnRule(dtype="int", nullable=False))
        with pytest.raises(DataValidationError) as err:
            validate.fn(data, dataclasses.replace(cfg.validate, columns=rules), target)
        (v,) = err.value.violations
        assert v["column"] == "delayed" and v["rule"].startswith("isin(")
        assert (v["count"], v["examples"]) == (6, ["2"])

    def test_single_class_target(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        data = flights_dataset(cfg, flights_frame, derive={"delayed": "arr_delay > 100000"})
        with pytest.raises(DataValidationError) as err:
            check(cfg, data)
        (v,) = err.value.violations
        assert (v["column"], v["rule"]) == ("delayed", "target must have at least two classes")
        # The classes found, not pandera's bare False for the whole-column check.
        assert (v["count"], v["examples"]) == (1, ["found 1 class(es): ['False']"])

    def test_duplicate_column_names_are_a_violation(self, config,
                                                    flights_frame: pd.DataFrame) -> None:
        """Found by fuzzing: two columns of one name raised AttributeError."""
        cfg = config()
        data = flights_dataset(cfg, flights_frame)
        frame = pd.concat([data.frame, data.frame[["carrier"]].assign(carrier="ZZ")], axis=1)
        with pytest.raises(DataValidationError) as err:
            check(cfg, data.with_frame(frame))
        (v,) = err.value.violations  # the first 'carrier' is checked, and is valid
        assert (v["column"], v["rule"], v["count"]) == ("carrier", "unique column name", 2)
        assert "only the first was checked" in v["examples"][0]
        frame.iloc[0, list(frame.columns).index("month")] = 13
        report = check(cfg, data.with_frame(frame), on_failure="warn")
        assert sorted((v["column"], v["rule"].split("(")[0]) for v in report.violations) == [
            ("carrier", "unique column name"), ("month", "less_than_or_equal_to")]

    def test_bounds_on_a_text_column_name_the_dtype(self, config,
                                                    flights_frame: pd.DataFrame) -> None:
        """Found by fuzzing: min/max on text reported pandas' TypeError as the example."""
        cfg = config()
        data = flights_dataset(cfg, flights_frame)
        rules = dict(cfg.validate.columns, carrier=ColumnRule(dtype=None, min=0, max=10),
                     time_hour=ColumnRule(dtype="datetime", max=5))
        report = check(cfg, data, columns=rules, on_failure="warn")
        found = by_column(report.violations)
        assert sorted(found) == ["carrier", "time_hour"]
        assert (found["carrier"]["rule"], found["carrier"]["count"]) == ("min 0 and max 10",
                                                                         len(data.frame))
        assert "found dtype str: the bounds need a number column" in found["carrier"][
            "examples"]
        assert found["time_hour"]["rule"] == "max 5"
        assert "Error" not in str(report.violations)
        # Numbers stored as objects still compare.
        frame = data.frame.assign(distance=data.frame["distance"].astype(object))
        rules = dict(cfg.validate.columns, distance=ColumnRule(min=0, max=10))
        (v,) = check(cfg, data.with_frame(frame), columns=rules, on_failure="warn").violations
        assert v["column"] == "distance" and v["rule"].startswith("less_than_or_equal_to(10")

    def test_regression_target_inf_and_nan(self, config, tmp_path: Path) -> None:
        cfg = config("experiment=diamonds", "data.sample_rows=3000", "data.snapshot=false")
        frame = ingest.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed).frame
        frame["price"] = frame["price"].astype("float64")
        frame.loc[0:2, "price"] = np.inf
        frame.loc[10:11, "price"] = np.nan
        frame.to_csv(tmp_path / "inf_price.csv", index=False)
        data = ingest_file(cfg, tmp_path / "inf_price.csv")
        with pytest.raises(DataValidationError) as err:
            validate.fn(data, cfg.validate, TargetSpec.from_data(cfg.data))
        rules = {(v["column"], v["rule"]): (v["count"], v["examples"])
                 for v in err.value.violations}
        assert rules == {("price", "target must be a finite number"): (3, ["inf"]),
                         ("price", "not null"): (2, ["nan"])}
        assert "inf_price.csv" in str(err.value)

    def test_missing_target_column(self, config, tmp_path: Path) -> None:
        cfg = config("experiment=diamonds", "data.sample_rows=2000", "data.snapshot=false")
        frame = ingest.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed).frame
        frame.drop(columns=["price"]).to_csv(tmp_path / "no_price.csv", index=False)
        data = ingest_file(cfg, tmp_path / "no_price.csv", columns=None)
        with pytest.raises(DataValidationError) as err:
            validate.fn(data, cfg.validate, TargetSpec.from_data(cfg.data))
        (v,) = err.value.violations
        assert (v["column"], v["rule"]) == ("price", "column present")
        assert "'carat'" in v["examples"][0]
        assert "no_price.csv" in str(err.value)

    def test_unknown_dtype_in_the_contract(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        rules = dict(cfg.validate.columns, month=ColumnRule(dtype="integer"))
        with pytest.raises(DataValidationError) as err:
            check(cfg, flights_dataset(cfg, flights_frame), columns=rules)
        assert "'integer'" in str(err.value) and "int" in err.value.fix



class TestSoftRules:
    """``expected_*`` (what inference saw) warn; only ``min``/``max``/``allowed`` fail."""

    def soft(self, cfg: PipelineConfig) -> dict[str, ColumnRule]:
        rules = dict(cfg.validate.columns)
        rules["month"] = ColumnRule(dtype="int", nullable=False, expected_min=1,
                                    expected_max=6)
        rules["carrier"] = ColumnRule(dtype="str", nullable=False,
                                      expected_values=["AA", "B6", "DL", "UA"])
        rules["distance"] = ColumnRule(dtype="number", expected_min=100.5)
        return rules

    def test_values_beyond_them_pass_with_warnings(self, config, flights_frame: pd.DataFrame,
                                                   caplog: pytest.LogCaptureFixture) -> None:
        cfg = config()
        data = flights_dataset(cfg, flights_frame)
        frame = data.frame
        with caplog.at_level(logging.WARNING, logger="prefab"):
            report = check(cfg, data, columns=self.soft(cfg))  # on_failure: fail
        assert report.passed and report.violations == []
        found = by_column(report.warnings)
        assert sorted(found) == ["carrier", "distance", "month"]
        late = frame["month"] > 6
        assert found["month"] == {"column": "month", "rule": "expected range [1, 6]",
                                  "count": int(late.sum()), "examples": ["12"] * 5}
        others = ~frame["carrier"].isin(["AA", "B6", "DL", "UA"])
        assert found["carrier"]["count"] == int(others.sum())
        assert found["carrier"]["examples"] == frame.loc[others, "carrier"].value_counts(
            ).index[:5].tolist()
        short = frame["distance"] < 100.5
        assert found["distance"]["rule"] == "expected range [100.5, inf]"
        assert found["distance"]["count"] == int(short.sum()) > 0
        assert found["distance"]["examples"][0] == str(frame["distance"].min())
        assert "goes beyond its expected values" in caplog.text
        md = report.to_markdown()
        assert "passed, 3 warning(s)" in md and "## Beyond the expected values" in md

    def test_a_hard_bound_still_fails(self, config, flights_frame: pd.DataFrame) -> None:
        cfg = config()
        rules = self.soft(cfg)
        rules["month"] = dataclasses.replace(rules["month"], max=6)
        with pytest.raises(DataValidationError) as err:
            check(cfg, flights_dataset(cfg, flights_frame), columns=rules)
        (v,) = err.value.violations
        assert v["column"] == "month" and v["rule"].startswith("less_than_or_equal_to(6")
