"""Look at a page as a person would: Debian's headless Chromium, driven by Playwright.

Used by the tests that open the Prefect UI (never by library code). Playwright's own
browser builds are never downloaded: it drives the system's ``chromium``
(``apt-get install chromium``), which ``.ci/run`` installs.

    with headless_page(find_chromium()) as page:
        page.goto(f"{server.ui_url}/artifacts/artifact/{art.id}", wait_until="networkidle")
        sizes = image_sizes(page, ["roc", "pr"])
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Chromium's switches on a closed network: no sandbox (root in a container), no GPU, no
#: QUIC, and none of its background calls home.
FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def find_chromium() -> str | None:
    """``$PREFAB_CHROMIUM``, else ``chromium`` (or ``chromium-browser``) on PATH."""
    explicit = os.environ.get("PREFAB_CHROMIUM", "").strip()
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def headless_page(executable: str, width: int = 1400, height: int = 1000,
                  timeout_s: float = 60) -> Iterator[Any]:
    """A page of headless Chromium, in a fresh profile that is removed afterwards.

    Open one and visit several URLs with it (``page.goto(url, wait_until="networkidle")``):
    the second visit of a single-page app such as the Prefect UI reuses the compiled
    scripts and costs a fraction of the first.

    Args:
        executable: The Chromium binary (see :func:`find_chromium`).
        width: Viewport width in CSS pixels.
        height: Viewport height.
        timeout_s: For page loads and for every wait on the page.

    Yields:
        A Playwright ``Page``.
    """
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="prefab-chromium-") as profile, \
            sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=list(FLAGS),
            viewport={"width": width, "height": height})
        try:
            context.set_default_timeout(timeout_s * 1000)
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def image_sizes(page: Any, alts: list[str]) -> dict[str, list[int]]:
    """Wait until an image with each alt text has loaded; their natural sizes.

    Args:
        page: From :func:`headless_page`, at the page to look at.
        alts: The alt texts to wait for (markdown ``![alt](...)``).

    Returns:
        ``{alt: [naturalWidth, naturalHeight]}`` for every image on the page whose alt
        text is one of ``alts``; a broken image has width 0.
    """
    page.wait_for_function(
        """alts => alts.every(a => [...document.images].some(
               i => i.alt === a && i.complete))""", arg=alts)
    sizes: dict[str, list[int]] = page.evaluate(
        """alts => Object.fromEntries([...document.images]
               .filter(i => alts.includes(i.alt))
               .map(i => [i.alt, [i.naturalWidth, i.naturalHeight]]))""", alts)
    return sizes
