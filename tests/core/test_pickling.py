"""The model file's bytes depend on the model alone, not on the process that wrote it.

Regression: ``prefab reproduce`` trains in a fresh process; after other work in the
parent process (the container tests, in CI) the parent's pickle of the same fitted
pipeline shared one ``'remainder'`` string where the fresh process had two equal ones,
so the sha256 differed and the report blamed the estimator.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from prefab_mlops.core.pickling import dumps_model


def _fresh(text: str) -> str:
    """An equal string that is a distinct object (not interned, not cached)."""
    return "".join(list(text))


def test_shared_and_distinct_equal_strings_give_the_same_bytes() -> None:
    shared = _fresh("remainder")
    one_object = {"a": shared, "b": [shared, ("drop", shared)]}
    two_objects = {"a": _fresh("remainder"), "b": [_fresh("remainder"),
                                                   ("drop", _fresh("remainder"))]}
    assert one_object == two_objects
    # what pickle itself does: the bytes tell the two apart
    assert pickle.dumps(one_object, 5) != pickle.dumps(two_objects, 5)
    assert dumps_model(one_object) == dumps_model(two_objects)
    assert pickle.loads(dumps_model(two_objects)) == two_objects


def test_equal_bytes_values_are_written_once() -> None:
    blob = bytes(range(200))
    assert dumps_model([blob, blob]) == dumps_model([blob, bytes(bytearray(blob))])


SET_SCRIPT = """
import sys
from prefab_mlops.core.pickling import dumps_model
import pickle
value = {"cols": {f"column_{i}" for i in range(40)},
         "frozen": frozenset(f"level_{i}" for i in range(40)), "mixed": {1, "a", (2, "b")}}
sys.stdout.write((dumps_model(value).hex() + " " + pickle.dumps(value, 5).hex()))
"""


def test_set_members_are_written_in_an_order_independent_of_the_hash_seed() -> None:
    outs = []
    for seed in ("1", "2"):
        res = subprocess.run([sys.executable, "-c", SET_SCRIPT], capture_output=True,
                             text=True, check=True, env={"PYTHONHASHSEED": seed,
                                                        "PATH": "/usr/bin:/bin"})
        outs.append(res.stdout.split())
    (canonical_1, plain_1), (canonical_2, plain_2) = outs
    assert plain_1 != plain_2  # pickle's own bytes follow the hash seed
    assert canonical_1 == canonical_2
    value = pickle.loads(bytes.fromhex(canonical_1))
    assert value["cols"] == {f"column_{i}" for i in range(40)}
    assert value["mixed"] == {1, "a", (2, "b")}


def test_a_fitted_pipeline_round_trips_to_the_same_bytes_and_predictions() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "c": rng.choice(["a", "b", "c"], 200)})
    y = (frame["x"] + (frame["c"] == "a") > 0.5).astype(int)
    pipe = Pipeline([("prep", ColumnTransformer([("num", StandardScaler(), ["x"]),
                                                 ("cat", OneHotEncoder(), ["c"])])),
                     ("model", LogisticRegression())]).fit(frame, y)
    blob = dumps_model(pipe)
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again.predict_proba(frame), pipe.predict_proba(frame))
    assert dumps_model(again) == blob
