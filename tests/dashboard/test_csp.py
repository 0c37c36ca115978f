"""The Content-Security-Policy holds in a real browser: no page breaks it, nothing inline.

Chromium reports every CSP violation on its console, so the dashboard's pages and the API
docs are loaded while Playwright collects the console, and it must carry no violation —
while the pages still work (htmx loaded, Swagger UI rendered from the app's own static files).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.dashboard.chromium import chromium, fresh_page, sign_in

pytestmark = pytest.mark.django_db(transaction=True)
PAGES = ("/", "/files/", "/partners/", "/partners/new/", "/audit/", "/bans/", "/account/")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Start one headless Chromium for the module's tests."""
    with chromium() as started:
        yield started


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """Return a fresh page whose console messages are kept in `page.console`."""
    with fresh_page(browser) as fresh:
        console: list[str] = []
        fresh.on("console", lambda message: console.append(_text(message)))
        fresh.console = console  # type: ignore[attr-defined]
        yield fresh


def _text(message: ConsoleMessage) -> str:
    return message.text


def _wait_for_console(page: Page, needle: str, checks: int = 20) -> None:
    """Wait (at most `checks` tenths of a second) for a console message holding the needle."""
    console: list[str] = page.console  # type: ignore[attr-defined]
    for _ in range(checks):
        if any(needle in text for text in console):
            return
        page.wait_for_timeout(100)


def _violations(page: Page) -> list[str]:
    """Return (and drain) the console messages that report a CSP violation."""
    console: list[str] = page.console  # type: ignore[attr-defined]
    found = [text for text in console if "Content Security Policy" in text]
    console.clear()
    return found


def test_dashboard_pages_load_without_a_policy_violation(page, live_server, cast):
    page.goto(f"{live_server.url}/login/")
    assert _violations(page) == []
    sign_in(page.context, live_server.url, cast.admin.user)
    for path in PAGES:
        page.goto(live_server.url + path)
        assert page.locator("h1").first.inner_text(), path
        assert page.evaluate("typeof htmx") == "object", path
        assert _violations(page) == [], path


def test_api_docs_render_from_own_files_under_the_policy(page, live_server):
    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Portside API",
                                                                      timeout=15_000)
    assert _violations(page) == []


def test_an_inline_script_is_blocked(page, live_server):
    page.goto(f"{live_server.url}/login/")
    page.evaluate("const s = document.createElement('script'); s.textContent = 'window.pwned = 1';"
                  "document.body.appendChild(s);")
    assert page.evaluate("window.pwned === undefined")
    _wait_for_console(page, "Content Security Policy")
    assert _violations(page), "the browser did not report the blocked inline script"
