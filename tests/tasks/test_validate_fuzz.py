"""Property tests of ``validate.fn``: any frame against any contract, never a crash.

Generated frames (mixed, null, NaN/inf, huge and unicode values, duplicate or odd
column names, categorical and string dtypes) are checked against generated
contracts (rules on present and absent columns, bounds, allowed lists of mixed
types, uniqueness, strictness) and against the flights contract with damaged real
rows. The outcome is a ValidationReport or a DataValidationError whose violations
name a column and a rule; never another exception.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from prefab_mlops.config import PipelineConfig, TargetSpec, ValidateConfig
from prefab_mlops.core.errors import DataValidationError
from prefab_mlops.tasks.ingest import Dataset
from prefab_mlops.tasks.validate import ValidationReport, validate
from prefab_mlops.testing.fuzzing import assert_clear_error, contracts, damaged_rows, frames


def dataset(frame: pd.DataFrame) -> Dataset:
    return Dataset.of(frame, name="fuzz", fingerprint="fp", source="fuzz.csv",
                      source_fingerprint="src", snapshot_uri=None, target="t")


def check(frame: pd.DataFrame, cfg: ValidateConfig, target: TargetSpec,
          labelled: bool = True) -> None:
    """validate.fn returns a report or raises a DataValidationError naming columns."""
    try:
        report = validate.fn(dataset(frame), cfg, target, labelled)
    except Exception as err:  # noqa: BLE001 - the property is about what is raised
        assert_clear_error(err, "fuzz.csv", "conf/validate")
        if isinstance(err, DataValidationError):
            assert err.violations and all(v["column"] is not None and v["rule"]
                                          for v in err.violations)
            assert cfg.on_failure == "fail"
        event(f"refused: {type(err).__name__}")
        return
    assert isinstance(report, ValidationReport)
    assert report.passed == (not report.violations)
    assert report.passed or cfg.on_failure == "warn"
    report.to_markdown()
    report.message()
    event("passed" if report.passed else "warned")


@pytest.fixture(scope="module")
def flights_rows(config, flights_frame: pd.DataFrame) -> pd.DataFrame:
    """Real rows as the flights data config prepares them (what the contract expects)."""
    from prefab_mlops.datasets import prepare

    cfg = config()
    return prepare(flights_frame.head(60), cfg.data, cfg.seed, "flights.csv")


def check_flights(cfg: PipelineConfig, frame: pd.DataFrame, on_failure: str) -> None:
    rules = dataclasses.replace(cfg.validate, min_rows=1, on_failure=on_failure)
    check(frame, rules, TargetSpec.from_data(cfg.data))


class TestValidateFuzzAnyContract:
    @given(data=st.data(), labelled=st.booleans())
    def test_report_or_named_violations(self, data: st.DataObject, labelled: bool) -> None:
        frame = data.draw(frames())
        cfg, target = data.draw(contracts(frame))
        check(frame, cfg, target, labelled)

    @pytest.mark.slow
    @settings(settings.get_profile("fuzz"))
    @given(data=st.data(), labelled=st.booleans())
    def test_report_or_named_violations_fuzz(self, data: st.DataObject, labelled: bool) -> None:
        frame = data.draw(frames())
        cfg, target = data.draw(contracts(frame))
        check(frame, cfg, target, labelled)


class TestValidateFuzzFlightsContract:
    @given(data=st.data(), on_failure=st.sampled_from(["fail", "warn"]))
    def test_damaged_real_rows(self, config, flights_rows: pd.DataFrame, data: st.DataObject,
                               on_failure: str) -> None:
        check_flights(config(), data.draw(damaged_rows(flights_rows)), on_failure)

    @pytest.mark.slow
    @settings(settings.get_profile("fuzz"))
    @given(data=st.data(), on_failure=st.sampled_from(["fail", "warn"]))
    def test_damaged_real_rows_fuzz(self, config, flights_rows: pd.DataFrame,
                                    data: st.DataObject, on_failure: str) -> None:
        check_flights(config(), data.draw(damaged_rows(flights_rows)), on_failure)
