"""The Content-Security-Policy holds in a real browser: no page breaks it, nothing inline.

Chromium reports every CSP violation on its console, so the dashboard's pages and the API
docs are loaded with console logging on and the log must carry no violation — while the
pages still work (htmx loaded, Swagger UI rendered from the app's own static files).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import Client
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.dashboard.conftest import verified_session

pytestmark = pytest.mark.django_db(transaction=True)
PAGES = ("/", "/files/", "/partners/", "/partners/new/", "/audit/", "/bans/", "/account/")


@pytest.fixture
def chromium(tmp_path) -> Iterator[webdriver.Chrome]:
    """Start a headless Chromium that keeps its console log."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail("Chromium is not installed: apt-get install chromium chromium-driver")
    options = Options()
    options.binary_location = binary
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    chrome.set_page_load_timeout(20)
    try:
        yield chrome
    finally:
        chrome.quit()


def _violations(browser: webdriver.Chrome) -> list[str]:
    """Return (and drain) the console messages that report a CSP violation."""
    return [entry["message"] for entry in browser.get_log("browser")
            if "Content Security Policy" in entry["message"]]


def _sign_in(browser: WebDriver, base: str, user) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    verified_session(client, user)
    browser.get(f"{base}/login/")
    browser.add_cookie({"name": settings.SESSION_COOKIE_NAME, "path": "/",
                        "value": client.cookies[settings.SESSION_COOKIE_NAME].value})


def test_dashboard_pages_load_without_a_policy_violation(chromium, live_server, cast):
    chromium.get(f"{live_server.url}/login/")
    assert _violations(chromium) == []
    _sign_in(chromium, live_server.url, cast.admin.user)
    for path in PAGES:
        chromium.get(live_server.url + path)
        assert chromium.find_element(By.TAG_NAME, "h1").text, path
        assert chromium.execute_script("return typeof htmx") == "object", path
        assert _violations(chromium) == [], path


def test_api_docs_render_from_own_files_under_the_policy(chromium, live_server):
    chromium.get(f"{live_server.url}/api/docs/")
    WebDriverWait(chromium, 15).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, ".swagger-ui .info .title")))
    assert "Portside API" in chromium.find_element(By.CSS_SELECTOR, ".info .title").text
    assert _violations(chromium) == []


def test_an_inline_script_is_blocked(chromium, live_server):
    chromium.get(f"{live_server.url}/login/")
    chromium.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.pwned = 1';"
        "document.body.appendChild(s);")
    assert chromium.execute_script("return window.pwned === undefined")
    assert _violations(chromium), "the browser did not report the blocked inline script"
