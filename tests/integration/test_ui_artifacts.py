"""The plots show where people look: in the Prefect UI, on a real ``prefect server``.

A training run and a monitoring run (real flights data) publish their summaries as
markdown artifacts with the plots embedded as data-URL images. Headless Chromium opens
each artifact's page in the server's own UI and every image must have decoded
(``naturalWidth > 0``), and each artifact must stay within its size budget.

Chromium is Debian's package, which ``.ci/run`` installs; when it cannot, it sets
``PREFAB_CHROMIUM_SKIP_REASON`` and these tests skip with that reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from prefab_mlops.flows.monitoring import monitoring
from prefab_mlops.flows.training import training
from prefab_mlops.orchestration.artifacts import ARTIFACT_BUDGET_BYTES
from prefab_mlops.orchestration.runtime import in_process_run
from prefab_mlops.testing.browser import find_chromium, headless_page, image_sizes
from prefab_mlops.testing.flights_batches import drifted_batch, flights, train_batch
from prefab_mlops.testing.local_prefect import PrefectServer

CONF = str(Path(__file__).resolve().parents[2] / "conf")
MODEL = "flights-binary"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
IMAGE = re.compile(r"!\[([^\]]*)\]\(data:image/png;base64,[A-Za-z0-9+/=]+\)")


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    """One headless Chromium page for the module (the UI's scripts load once)."""
    reason = os.environ.get("PREFAB_CHROMIUM_SKIP_REASON", "").strip()
    if reason:
        pytest.skip(f"no Chromium: {reason}")
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing although .ci/run gave no skip reason "
                        "(PREFAB_CHROMIUM_SKIP_REASON)")
        pytest.skip("no Chromium: `apt-get install chromium` (or set PREFAB_CHROMIUM)")
    with headless_page(exe) as page:
        yield page


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real server; one training run and one monitoring run (a drifted batch) on it."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    tmp = tmp_path_factory.mktemp("ui-artifacts")
    raw = flights()
    train_batch(raw, 10_000).to_csv(tmp / "train.csv", index=False)
    drifted_batch(raw, 5_000).to_csv(tmp / "drifted.csv", index=False)
    common = [f"paths.root={tmp}", "tracking=disabled"]
    with PrefectServer(tmp / "server", startup_timeout=180) as server, \
            temporary_settings({PREFECT_API_URL: server.url}), in_process_run():
        trained = training(overrides=[*common, f"data.uri={tmp / 'train.csv'}",
                                      "model.n_estimators=30"], config_dir=CONF)
        monitored = monitoring(overrides=common, batch_uri=str(tmp / "drifted.csv"),
                               config_dir=CONF)
        yield {"server": server, "tmp": tmp, "training": trained, "monitoring": monitored}


def artifact(flow_run_id: str, key: str) -> Any:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    flt = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]),
                         key=ArtifactFilterKey(any_=[key]))
    with get_client(sync_client=True) as client:
        (art,) = client.read_artifacts(artifact_filter=flt)
    return art


def rendered(runs: dict[str, Any], art: Any, page: Any, name: str) -> dict[str, list[int]]:
    """Open the artifact's page in the UI; the natural size of each embedded image."""
    page.goto(f"{runs['server'].ui_url}/artifacts/artifact/{art.id}", wait_until="networkidle")
    sizes = image_sizes(page, IMAGE.findall(art.data))
    page.screenshot(path=str(runs["tmp"] / f"{name}.png"))
    return sizes


class TestTrainingSummary:
    def test_plots_render_in_the_ui(self, page: Any, runs: dict[str, Any]) -> None:
        art = artifact(runs["training"]["flow_run_id"], f"{MODEL}-training-summary")
        assert art.type == "markdown" and "# Training run" in art.data
        assert len(art.data.encode()) <= ARTIFACT_BUDGET_BYTES
        assert IMAGE.findall(art.data) == ["roc", "pr", "confusion", "importance"]
        sizes = rendered(runs, art, page, "training-summary")
        assert set(sizes) == {"roc", "pr", "confusion", "importance"}
        assert all(w > 0 and h > 0 for w, h in sizes.values()), sizes


class TestDriftSummary:
    def test_drift_summary_plots_and_report_link(self, page: Any,
                                                 runs: dict[str, Any]) -> None:
        s = runs["monitoring"]
        assert s["dataset_drift"] is True
        art = artifact(s["flow_run_id"], f"{MODEL}-drift")
        assert len(art.data.encode()) <= ARTIFACT_BUDGET_BYTES
        # the drift summary: decision, share, per-column scores, the report's location
        assert f"share {s['drift_share']:.2f}" in art.data
        for column, result in s["columns"].items():
            assert f"| {column} | {result['method']} | {result['score']:.4f} |" in art.data
        assert f"]({Path(s['report_uri']).resolve().as_uri()})" in art.data
        # plots: the predictions, then the most drifted columns (monitor.plot_columns)
        alts = IMAGE.findall(art.data)
        assert alts[0] == "prediction-drift" and len(alts) == 1 + 4
        assert {a.removeprefix("drift-") for a in alts[1:]} <= set(s["drifted_columns"])
        sizes = rendered(runs, art, page, "drift-summary")
        assert set(sizes) == set(alts)
        assert all(w > 0 and h > 0 for w, h in sizes.values()), sizes
