"""Debian's Chromium driven by Playwright, as the browser tests use it: a page in a context that
presents a user's client certificate (or none), the Dagster UI's first-visit dialog dismissed,
and screenshots kept where the person running the tests asked for them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
# No background traffic and no browser download: this machine has no network beyond loopback.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by scripts/run-tests")
VIEWPORT = {"width": 1400, "height": 1000}


@contextmanager
def browser_page(origin: str | None = None, certificate: tuple[Path, Path] | None = None, **context_options: Any) -> Iterator[Page]:
    """A page of a fresh Chromium; with ``certificate`` (cert, key) it is presented to ``origin``.

    The test hosts' certificates are not in the browser's store: the server certificate is
    accepted as it is, since the client certificate is what the tests are about.
    """
    from playwright.sync_api import sync_playwright

    options: dict[str, Any] = {"ignore_https_errors": True, **context_options}
    if certificate is not None:
        cert, key = certificate
        options["client_certificates"] = [{"origin": origin, "certPath": str(cert), "keyPath": str(key)}]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(**options)
            try:
                yield context.new_page()
            finally:
                context.close()
        finally:
            browser.close()


def dismiss_welcome(page: Page, timeout_ms: int = 8_000) -> None:
    """Skip the Dagster UI's first-visit dialog ("Join the Dagster community"), if it is shown."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    try:
        page.get_by_role("button", name="Skip").click(timeout=timeout_ms)
    except PlaywrightTimeoutError:
        pass  # not shown once dismissed


def keep_artefact(shot: Path) -> None:
    """Copy a screenshot to $B2CAL_ARTEFACTS_DIR (or the older $B2CAL_KEEP_SCREENSHOTS) when set."""
    for variable in ("B2CAL_ARTEFACTS_DIR", "B2CAL_KEEP_SCREENSHOTS"):
        keep = os.environ.get(variable)
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / shot.name)
