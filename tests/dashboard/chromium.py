"""Debian's Chromium under Playwright for the browser tests, and what those tests share.

Not a test module: `test_browser` and `test_csp` import from here. Playwright's own browser
builds are never downloaded (`playwright install` is not run): the tests drive the system's
`chromium`, and fail with the reason when it is missing — they never skip.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright

from accounts.models import User
from tests.dashboard.conftest import verified_session

FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-quic"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}


@contextmanager
def chromium() -> Iterator[Browser]:
    """Start Debian's Chromium, headless and unsandboxed, driven by Playwright."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("Chromium is not installed: apt-get install chromium "
                    "(the browser tests need it and never skip)")
    # Playwright's sync API keeps an event loop marked as running in this thread between
    # calls, so Django would refuse the test's own ORM queries as "async" without this.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=binary, args=FLAGS,
                                             timeout=30_000)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def fresh_page(browser: Browser) -> Iterator[Page]:
    """Open a page in a new context: no cookies, light colours, timeouts of seconds."""
    context = browser.new_context(viewport=VIEWPORT, color_scheme="light")
    context.set_default_timeout(10_000)
    context.set_default_navigation_timeout(20_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(context: BrowserContext, base_url: str, user: User) -> None:
    """Give the browser a session as the login flow leaves it (the flow has its own test)."""
    client = Client()
    verified_session(client, user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie,
                          "url": base_url}])


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as artifacts/screenshots/<name>.png and return the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
