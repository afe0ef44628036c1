"""The test suite's own isolation: what runs in the background must not fail a test.

Regression: Prefect's events websocket pings (``random.getrandbits`` in Prefect's
event-loop thread, every 20 s once a flow has run) and distributed's loop thread change
the global ``random`` state. Hypothesis checks that state around each draw and failed
fuzz tests at random when another thread moved it (``HypothesisDeprecationWarning``: "Do
not use the random module inside strategies", then ``FlakyFailure``). pyproject's
filterwarnings ignores that one warning; our own strategies are kept off the global
``random`` here instead.
"""

from __future__ import annotations

import ast
import random
import sys
import threading
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
STRATEGY_FILES = [REPO / "src" / "prefab_mlops" / "testing" / "fuzzing.py",
                  REPO / "bench" / "fuzz.py", *sorted(REPO.glob("tests/**/test_*fuzz*.py"))]


def test_our_strategies_do_not_use_the_global_random() -> None:
    assert len(STRATEGY_FILES) >= 5
    users = []
    for path in STRATEGY_FILES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import) and any(a.name == "random" for a in node.names) \
                    or isinstance(node, ast.ImportFrom) and node.module == "random":
                users.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert users == [], "draw randomness from hypothesis (st.randoms()) instead"


class _Churn:
    """A thread that keeps changing the global random state, as a websocket ping does."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            random.getrandbits(32)


CHURN = _Churn()


def test_a_background_thread_drawing_from_random_does_not_fail_a_hypothesis_test() -> None:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so the churn lands inside draws
    CHURN.thread.start()
    try:
        _draws()
    finally:
        CHURN.stop.set()
        CHURN.thread.join()
        sys.setswitchinterval(interval)


@given(st.lists(st.text(min_size=20, max_size=200), min_size=20, max_size=100))
def _draws(values: list[str]) -> None:
    assert 20 <= len(values) <= 100
