"""Headless Chromium for the browser tests, driven by Playwright.

The browser is Debian's ``chromium`` (``make chromium`` installs it); Playwright never
downloads one here. The local stack and its API client are the session's own
(tests/conftest.py), shared with the integration tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling out to Google's
# services, which a machine with no internet answers with a stream of refusals.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE_TIMEOUT_MS = 15_000


# Module scope, not session: while Playwright's sync API is started, its event loop counts
# as running on the main thread, and asyncio.run() in any later test of the process fails.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `make chromium` to install Debian's chromium",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page_errors() -> list[str]:
    """Script errors and Content-Security-Policy refusals the test's page reported."""
    return []


@pytest.fixture
def page(browser: Browser, page_errors: list[str]) -> Iterator[Page]:
    """A fresh page in its own browser context, recording its errors in ``page_errors``."""
    context = browser.new_context()
    opened = context.new_page()
    opened.set_default_timeout(PAGE_TIMEOUT_MS)
    opened.on("pageerror", lambda error: page_errors.append(str(error)))

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            page_errors.append(message.text)

    opened.on("console", console)
    yield opened
    context.close()
