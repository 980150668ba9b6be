"""The operator panel's browser tests: Debian's Chromium, driven by Playwright."""

import os
from pathlib import Path

import pytest
from django.conf import settings

CHROMIUM = Path("/usr/bin/chromium")
# Under var/ by default, so a test run does not rewrite the committed images;
# `make screenshots` points it at docs/screenshots/.
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR") or settings.VAR_DIR / "screenshots")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "manager-pass-123"
LAPTOP = {"width": 1366, "height": 768}


@pytest.fixture(scope="module")
def browser():
    """One Chromium for a module's tests (a launch takes a second or two); each test
    opens its own context, so no cookie or page is shared."""
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        # Playwright's sync API keeps an event loop running in this thread; the test's
        # own ORM calls are plain synchronous code all the same.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def laptop(browser, live_server):
    """A page at a manager's laptop size (1366x768), on the live server."""
    context = browser.new_context(viewport=LAPTOP, base_url=live_server.url)
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()
