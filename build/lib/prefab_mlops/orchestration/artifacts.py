"""Prefect UI artifacts (markdown and tables), published only inside a run.

Outside a flow or task run the calls are no-ops, so task logic stays testable
through ``.fn()`` without a Prefect API.
"""

from __future__ import annotations

import re
from typing import Any


def _in_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return bool(FlowRunContext.get() or TaskRunContext.get())


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lowercase letters, digits and dashes)."""
    key = "-".join(p for p in parts if p).lower()
    return re.sub(r"[^a-z0-9-]+", "-", key).strip("-")[:100] or "artifact"


def publish_markdown(key: str, markdown: str, description: str | None = None) -> bool:
    """Create a markdown artifact; returns False when not inside a run."""
    if not _in_run():
        return False
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=markdown, key=artifact_key(key), description=description)
    return True


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
