"""Debian's Chromium driven by Playwright, for the browser tests (never a downloaded browser)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="Debian's Chromium (/usr/bin/chromium) is not installed")


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def fill_number(page: Any, elem_id: str, initial: str, text: str) -> None:
    """Type `text` into the gr.Number `elem_id` and commit it, as a person would.

    Tabs and accordions draw their widgets only as they open, so wait until the box shows its
    `initial` value before typing, then leave the box and check it kept `text`: in one CI run a
    bulk K typed straight after opening its accordion stayed at its initial value."""
    box = f"#{elem_id} input"
    page.wait_for_function(f"() => document.querySelector('{box}')?.value === '{initial}'")
    page.locator(box).fill(text)
    page.locator(box).press("Tab")
    page.wait_for_function(f"() => document.querySelector('{box}').value === '{text}'")
