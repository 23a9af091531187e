"""Headless Chromium for the browser tests: Debian's `chromium` driven by Playwright.

Playwright's own browser download (`playwright install`) is never used: the machine has no
network for it, and Debian's package is what .ci/run installs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tests.tools import missing, require

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def chromium() -> Iterator[Browser]:
    executable = require("chromium", "apt-get install chromium (.ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright package is missing: pip install -e '.[dev]'")
        raise
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
