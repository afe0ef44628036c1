"""Prefect UI artifacts (markdown and tables), published only inside a run.

Outside a flow or task run the calls are no-ops, so task logic stays testable
through ``.fn()`` without a Prefect API.

Plots go into a markdown artifact as data-URL images (``![roc](data:image/png;base64,...)``),
which the Prefect UI shows inline; :func:`publish_markdown` keeps the whole
artifact within :data:`ARTIFACT_BUDGET_BYTES`, so it stays small in the API's database
and quick to open in the UI.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import PurePath
from typing import Any

# Most bytes one markdown artifact with images may take (text and data URLs together):
# images over it are downscaled, then left out with a note.
ARTIFACT_BUDGET_BYTES = 300_000
# Narrowest an image is downscaled to before it is dropped instead.
_MIN_IMAGE_WIDTH = 240


def _in_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return bool(FlowRunContext.get() or TaskRunContext.get())


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lowercase letters, digits and dashes)."""
    key = "-".join(p for p in parts if p).lower()
    return re.sub(r"[^a-z0-9-]+", "-", key).strip("-")[:100] or "artifact"


def publish_markdown(key: str, markdown: str, description: str | None = None,
                     images: dict[str, bytes] | None = None) -> bool:
    """Create a markdown artifact; returns False when not inside a run.

    Args:
        key: Artifact key (made valid by :func:`artifact_key`).
        markdown: The body.
        description: Shown under the artifact's title in the UI.
        images: PNG plots by file name (e.g. ``{"roc.png": ...}``), appended under a
            "Plots" heading by :func:`embed_images`, which shrinks them so that the
            artifact stays within :data:`ARTIFACT_BUDGET_BYTES`.
    """
    if not _in_run():
        return False
    from prefect.artifacts import create_markdown_artifact

    if images:
        markdown += "\n\n## Plots\n\n"
        markdown += embed_images(images, ARTIFACT_BUDGET_BYTES - len(markdown.encode()))
    create_markdown_artifact(markdown=markdown, key=artifact_key(key), description=description)
    return True


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _image_line(name: str, png: bytes) -> str:
    return f"![{PurePath(name).stem}]({_data_url(png)})"


def _downscale(png: bytes, scale: float) -> bytes:
    """``png`` resized by ``scale`` (never up), with a palette when that is smaller."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        img.load()
        width = max(1, round(img.width * min(scale, 1.0)))
        height = max(1, round(img.height * width / img.width))
        small = img.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    best = b""
    # plots have few colours: a 64-colour palette keeps them crisp at a third of the bytes
    for candidate in (small, small.quantize(64)):
        buf = io.BytesIO()
        candidate.save(buf, format="PNG", optimize=True)
        if not best or buf.tell() < len(best):
            best = buf.getvalue()
    return best


def _width(png: bytes) -> int:
    return int.from_bytes(png[16:20], "big") if png[12:16] == b"IHDR" else 0


def embed_images(images: dict[str, bytes], budget: int = ARTIFACT_BUDGET_BYTES) -> str:
    """PNG images as markdown data-URL images, within ``budget`` bytes in all.

    Images that fit are embedded as they are. Otherwise they are stored with a
    palette (when that is smaller), then, while they still do not fit, downscaled
    by one factor for all, but none below 240 px wide. If they still do not fit,
    each image in turn is kept if it fits beside the ones kept before it, and a note
    names those left out.

    Args:
        images: PNG bytes by file name, in the order to show them; the name's stem
            becomes the alt text.
        budget: Most bytes the returned markdown may take.

    Returns:
        The images as markdown, one paragraph each, plus the note if any was left out.
    """
    lines = {n: _image_line(n, png) for n, png in images.items()}
    total = sum(map(len, lines.values()))
    floor = {n: _MIN_IMAGE_WIDTH / max(_width(png), 1) for n, png in images.items()}
    scale = 1.0  # the first pass only stores them with a palette
    for _ in range(6):  # a plot's PNG shrinks less than its area: aim, measure, aim again
        if total <= budget:
            break
        lines = {n: _image_line(n, _downscale(png, max(scale, floor[n])))
                 for n, png in images.items()}
        total = sum(map(len, lines.values()))
        if all(scale <= f for f in floor.values()):
            break  # all at their narrowest
        scale *= min(1.0, budget / total * 0.95)

    def render(kept: list[str]) -> str:
        left_out = [PurePath(n).stem for n in lines if n not in kept]
        note = [f"_Left out to keep this artifact under {budget // 1000} KB: "
                f"{', '.join(left_out)}._"] if left_out else []
        return "\n\n".join([*(lines[n] for n in kept), *note])

    kept: list[str] = []
    for name in lines:  # in order, each image that still fits (the note only gets shorter)
        if len(render([*kept, name]).encode()) <= budget:
            kept.append(name)
    return render(kept)


def publish_table(key: str, rows: list[dict[str, Any]], description: str | None = None) -> bool:
    """Create a table artifact; returns False when not inside a run."""
    if not _in_run():
        return False
    from prefect.artifacts import create_table_artifact

    create_table_artifact(table=rows, key=artifact_key(key), description=description)
    return True


def md_table(rows: list[dict[str, Any]]) -> str:
    """Render rows as a GitHub markdown table."""
    if not rows:
        return "_none_"
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(c, "")).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(out)


def publish_link(key: str, link: str, link_text: str | None = None,
                 description: str | None = None) -> bool:
    """Create a link artifact; returns False when not inside a run."""
    if not _in_run():
        return False
    from prefect.artifacts import create_link_artifact

    create_link_artifact(link=link, link_text=link_text, key=artifact_key(key),
                         description=description)
    return True
