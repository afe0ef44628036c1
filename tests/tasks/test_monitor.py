"""tasks/monitor.py's drift plots (``drift_plots``, pure), on real flights batches: the
predictions first, then the most drifted columns, whichever way each test's score points."""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd
import pytest

from prefab_mlops.tasks.monitor import PREDICTION, drift_plots
from prefab_mlops.testing.flights_batches import drifted_batch, flights, stable_batch

COLUMNS = ["distance", "sched_dep_time", "flight", "carrier", "origin"]


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = flights()
    ref = stable_batch(raw, 3000)[COLUMNS].reset_index(drop=True)
    cur = drifted_batch(raw, 3000)[COLUMNS].reset_index(drop=True)
    for frame in (ref, cur):  # a prediction-like score in [0, 1]
        frame[PREDICTION] = 1 / (1 + np.exp(-(frame["sched_dep_time"] - 1500) / 400))
    return cur, ref


def result(method: str, score: float, threshold: float, drifted: bool) -> dict:
    return {"method": method, "score": score, "threshold": threshold, "drifted": drifted}


# K-S drifts below its threshold (a p-value), the distances above theirs
DRIFT = {"distance": result("Wasserstein distance (normed)", 0.25, 0.1, True),
         "sched_dep_time": result("K-S p_value", 1e-30, 0.05, True),
         "flight": result("Wasserstein distance (normed)", 1.9, 0.1, True),
         "carrier": result("Jensen-Shannon distance", 0.3, 0.1, True),
         "origin": result("Jensen-Shannon distance", 0.02, 0.1, False)}
PRED = result("Wasserstein distance (normed)", 0.19, 0.1, True)


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


class TestDriftPlots:
    def test_predictions_then_the_most_drifted_columns(self, frames) -> None:
        cur, ref = frames
        plots = drift_plots(cur, ref, DRIFT, ["carrier", "origin"], PRED, 3)
        # severity: K-S 0.05/1e-30, flight 1.9/0.1, carrier 0.3/0.1, distance 0.25/0.1
        assert list(plots) == ["prediction-drift.png", "drift-sched_dep_time.png",
                               "drift-flight.png", "drift-carrier.png"]
        for name, png in plots.items():
            width, height = png_size(png)
            assert 300 < width < 700 and 200 < height < 400, name

    def test_only_drifted_columns_and_no_prediction_when_untested(self, frames) -> None:
        cur, ref = frames
        plots = drift_plots(cur, ref, DRIFT, ["carrier", "origin"], None, 10)
        assert set(plots) == {"drift-distance.png", "drift-sched_dep_time.png",
                              "drift-flight.png", "drift-carrier.png"}

    def test_no_column_plots_with_limit_zero(self, frames) -> None:
        cur, ref = frames
        assert list(drift_plots(cur, ref, DRIFT, [], PRED, 0)) == ["prediction-drift.png"]
