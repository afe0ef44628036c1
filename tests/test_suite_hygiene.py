"""The test suite's own isolation: what one test leaves running must not fail another.

Regression: after any flow had run, Prefect's events worker kept a websocket open whose
keepalive ping draws from the global ``random`` in a background thread; a ping landing
inside a hypothesis draw failed a fuzz test (``HypothesisDeprecationWarning``: "Do not
use the random module inside strategies"), at random.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def an_event_was_emitted(prefect_harness: None) -> None:
    from prefect import flow
    from prefect.events.worker import EventsWorker

    @flow
    def tiny() -> int:
        return 1

    assert tiny() == 1
    assert EventsWorker._instances  # the precondition: a worker with its stream is running


@pytest.mark.usefixtures("an_event_was_emitted")
@given(st.integers())
def test_no_events_worker_runs_during_a_hypothesis_test(value: int) -> None:
    from prefect.events.worker import EventsWorker

    assert not EventsWorker._instances
