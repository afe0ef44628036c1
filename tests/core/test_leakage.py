"""prefab_mlops/core/leakage.py: the one-feature scan names the columns that alone nearly
determine the target (numbers, strings, every problem type), raises no false alarm on clean
real tables, and keeps to its row and time bounds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prefab_mlops.core.leakage import (
    LEAK_SCORE,
    MAX_ROWS,
    perfect_metric,
    scan,
    scan_if_perfect,
)

SKLEARN = {"breast_cancer": "binary", "wine": "multiclass", "diabetes": "regression"}
#: What the flights model may use (conf/data/flights.yaml `columns`, the target aside).
FLIGHTS_INPUTS = ["time_hour", "month", "day", "sched_dep_time", "sched_arr_time", "carrier",
                  "flight", "origin", "dest", "distance", "hour"]


def table(name: str) -> pd.DataFrame:
    from sklearn import datasets

    frame: pd.DataFrame = getattr(datasets, f"load_{name}")(as_frame=True).frame
    return frame


def with_leak(frame: pd.DataFrame, problem_type: str) -> pd.DataFrame:
    """``frame`` plus ``leak``: the target with a little noise (5% of its spread)."""
    y = frame["target"].astype(float)
    scale = 0.1 if problem_type != "regression" else 0.05 * y.std()
    return frame.assign(leak=y + np.random.default_rng(0).normal(0, scale, len(frame)))


@pytest.fixture(scope="module")
def flights(flights_frame: pd.DataFrame) -> pd.DataFrame:
    return flights_frame.dropna(subset=["arr_delay"]).assign(delayed=lambda f: f.arr_delay > 15)


class TestNoFalseAlarm:
    @pytest.mark.parametrize("name", list(SKLEARN))
    def test_clean_sklearn_tables(self, name: str) -> None:
        frame = table(name)
        found = scan(frame.drop(columns="target"), frame["target"], SKLEARN[name], seed=0)
        assert found.suspects == [] and found.unchecked == []
        assert found.columns == frame.shape[1] - 1
        best = found.scores[0].score
        assert 0 < best < LEAK_SCORE  # informative columns, none decisive alone

    def test_flights_inputs_before_departure(self, flights: pd.DataFrame) -> None:
        found = scan(flights[FLIGHTS_INPUTS], flights["delayed"], "binary", seed=0)
        assert found.suspects == [] and found.columns == len(FLIGHTS_INPUTS)
        assert found.scores[0].score < 0.75

    def test_an_id_with_one_value_per_row_is_no_leak(self) -> None:
        frame = table("breast_cancer")
        ids = [f"P{i:06d}" for i in np.random.default_rng(1).permutation(len(frame))]
        found = scan(frame[["mean radius"]].assign(patient=ids), frame["target"], "binary", 0)
        assert found.score_of("patient") == pytest.approx(0.5, abs=0.05)


class TestLeaksAreFound:
    @pytest.mark.parametrize("name", list(SKLEARN))
    def test_the_target_plus_noise(self, name: str) -> None:
        frame = with_leak(table(name), SKLEARN[name])
        found = scan(frame.drop(columns="target"), frame["target"], SKLEARN[name], seed=0)
        assert [s.column for s in found.suspects] == ["leak"]
        assert found.suspects[0].metric == ("r2" if name == "diabetes" else "roc_auc")
        assert found.suspects[0].score >= LEAK_SCORE

    def test_a_label_in_words(self) -> None:
        frame = table("breast_cancer")
        words = frame["target"].map({0: "malignant", 1: "benign"}).astype("str")
        found = scan(frame.drop(columns="target").assign(diagnosis=words), frame["target"],
                     "binary", 0)
        assert [s.column for s in found.suspects] == ["diagnosis"]
        assert found.suspects[0].score == 1.0

    def test_the_column_a_flights_target_is_derived_from(self, flights: pd.DataFrame) -> None:
        cols = [*FLIGHTS_INPUTS, "dep_delay", "arr_delay"]
        found = scan(flights[cols], flights["delayed"], "binary", seed=0)
        assert [s.column for s in found.suspects] == ["arr_delay"]
        # the departure delay predicts it well, but does not determine it
        assert 0.8 < found.score_of("dep_delay") < LEAK_SCORE


class TestBoundedCost:
    def test_rows_are_sampled_to_the_bound(self, flights_full: pd.DataFrame) -> None:
        frame = flights_full.dropna(subset=["arr_delay"])
        found = scan(frame[FLIGHTS_INPUTS], frame["arr_delay"] > 15, "binary", seed=0)
        assert (found.rows, found.rows_given) == (MAX_ROWS, len(frame))
        assert found.suspects == []

    def test_columns_beyond_the_time_bound_are_reported_unchecked(self) -> None:
        frame = table("wine")
        found = scan(frame.drop(columns="target"), frame["target"], "multiclass", 0,
                     max_seconds=0)
        assert found.scores == [] and found.unchecked == list(frame.columns[:-1])

    def test_the_same_seed_gives_the_same_scores(self) -> None:
        frame = table("diabetes")
        a = scan(frame.drop(columns="target"), frame["target"], "regression", 4)
        b = scan(frame.drop(columns="target"), frame["target"], "regression", 4)
        assert a.scores == b.scores


class TestSuspiciouslyPerfect:
    def test_which_scores_are_suspicious(self) -> None:
        assert perfect_metric({"roc_auc": 0.9995}, "binary") == ("roc_auc", 0.9995)
        assert perfect_metric({"roc_auc": 0.998}, "multiclass") is None
        assert perfect_metric({"r2": 0.9991, "rmse": 1.0}, "regression") == ("r2", 0.9991)
        assert perfect_metric({"roc_auc": float("nan")}, "binary") is None

    def test_scan_only_when_perfect(self) -> None:
        frame = with_leak(table("breast_cancer"), "binary")
        X, y = frame.drop(columns="target"), frame["target"]
        assert scan_if_perfect({"roc_auc": 0.97}, X, y, "binary", 0) is None
        found = scan_if_perfect({"roc_auc": 1.0}, X, y, "binary", 0)
        assert found is not None and [s.column for s in found.suspects] == ["leak"]
