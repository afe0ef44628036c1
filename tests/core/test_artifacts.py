"""orchestration/artifacts.py: plots embedded in markdown artifacts stay within budget.

The images are drawn with the evaluate task's own plotting helpers: a confusion matrix
and dense residual scatters, the kind of plot that compresses worst.
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from prefab_mlops.orchestration.artifacts import (
    ARTIFACT_BUDGET_BYTES,
    embed_images,
    publish_markdown,
)
from prefab_mlops.tasks.evaluate import confusion_plot, new_figure, to_png

IMAGE = re.compile(r"!\[([^\]]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def scatter(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    fig, ax = new_figure(f"Residuals ({n:,} points)")
    x = rng.gamma(2.0, 2000.0, n)
    ax.scatter(x, rng.normal(0, 1 + x / 10, n), s=2, alpha=0.3)
    return to_png(fig)


@pytest.fixture(scope="module")
def plots() -> dict[str, bytes]:
    cm = [[2690, 377], [544, 419]]
    return {"residuals.png": scatter(20_000, 1), "confusion.png": confusion_plot(
        cm, [False, True], 0.35), "scatter-b.png": scatter(20_000, 2)}


def decoded(markdown: str) -> dict[str, Image.Image]:
    out = {}
    for alt, data in IMAGE.findall(markdown):
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        img.load()  # raises on a truncated or corrupt PNG
        out[alt] = img
    return out


class TestEmbedImages:
    def test_within_budget_the_bytes_are_embedded_as_they_are(self, plots) -> None:
        md = embed_images(plots)
        assert len(md) <= ARTIFACT_BUDGET_BYTES
        assert [alt for alt, _ in IMAGE.findall(md)] == ["residuals", "confusion", "scatter-b"]
        assert [base64.b64decode(d) for _, d in IMAGE.findall(md)] == list(plots.values())

    def test_over_budget_every_image_is_downscaled_to_fit(self, plots) -> None:
        full = len(embed_images(plots))
        budget = full // 4  # a 64-colour palette alone gets them to about a third
        md = embed_images(plots, budget)
        assert len(md.encode()) <= budget
        images = decoded(md)
        assert list(images) == ["residuals", "confusion", "scatter-b"]  # none left out
        for name, png in plots.items():
            before = Image.open(io.BytesIO(png))
            after = images[name.removesuffix(".png")]
            assert 240 <= after.width < before.width, name
            # same aspect ratio, to the pixel
            assert abs(after.height - before.height * after.width / before.width) <= 1, name

    def test_images_that_cannot_shrink_enough_are_left_out_and_named(self, plots) -> None:
        # at 240 px (as narrow as they go) a scatter takes about 10 KB, the matrix 5 KB
        md = embed_images(plots, 8_000)
        assert len(md.encode()) <= 8_000
        images = decoded(md)
        assert list(images) == ["confusion"] and images["confusion"].width == 240
        assert md.endswith("_Left out to keep this artifact under 8 KB: residuals, "
                           "scatter-b._")

    def test_outside_a_run_nothing_is_published(self, plots) -> None:
        assert publish_markdown("x", "# x", images=plots) is False
