"""The dashboard in a real headless Chromium, driven by Selenium against a live server.

Debian's `chromium` and `chromium-driver` must be installed: without them these tests
fail with the reason (CI installs both), they never skip.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from accounts import services
from accounts.models import User
from audit import chain
from audit.models import AuditEvent
from ftps_gateway.certificate import sha256_fingerprint
from mft import bootstrap
from tests.dashboard.conftest import staff_user, verified_session

pytestmark = pytest.mark.django_db(transaction=True)

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900")
MAIN_MENU = ["Overview", "Files", "Deliveries", "Partners", "Users", "Certificates", "Endpoints",
             "API tokens", "Audit log", "Bans", "Settings", "Sessions"]
SCREENSHOTS = ("", "files/", "deliveries/", "partners/", "users/", "credentials/", "endpoints/",
               "tokens/", "audit/", "bans/", "settings/")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Start one headless Chromium for the module's tests."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail("Chromium is not installed: apt-get install chromium chromium-driver "
                    "(the browser tests need it and never skip)")
    options = Options()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    chrome.set_page_load_timeout(20)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
def page(browser: WebDriver, live_server) -> Iterator[WebDriver]:  # type: ignore[no-untyped-def]
    """Return the browser with no cookies, its base URL at hand, light colours by default."""
    browser.base = live_server.url  # type: ignore[attr-defined]
    browser.get(f"{live_server.url}/login/")
    browser.delete_all_cookies()
    yield browser
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def _go(browser: WebDriver, path: str) -> None:
    browser.get(browser.base + path)  # type: ignore[attr-defined]


def _wait(browser: WebDriver, condition):  # type: ignore[no-untyped-def]
    return WebDriverWait(browser, 10).until(condition)


def _sign_in_as(browser: WebDriver, user) -> None:  # type: ignore[no-untyped-def]
    """Give the browser a session as the login flow leaves it (the flow has its own test)."""
    client = Client()
    verified_session(client, user)
    _go(browser, "/login/")
    browser.add_cookie({"name": settings.SESSION_COOKIE_NAME, "path": "/",
                        "value": client.cookies[settings.SESSION_COOKIE_NAME].value})


def _type(browser: WebDriver, name: str, text: str) -> None:
    field = browser.find_element(By.NAME, name)
    field.clear()
    field.send_keys(text)


def test_admin_signs_in_and_enrols_an_authenticator(page, cast):
    _go(page, "/")
    _type(page, "username", cast.admin.username)
    _type(page, "password", cast.admin.password + Keys.ENTER)
    _wait(page, ec.url_contains("/login/enrol/"))
    assert page.find_element(By.CSS_SELECTOR, ".qr svg").is_displayed()
    device = TOTPDevice.objects.get(user=cast.admin.user)
    code = totp(device.bin_key, device.step, device.t0, device.digits, device.drift)
    _type(page, "code", f"{code:06d}" + Keys.ENTER)
    codes = _wait(page, ec.presence_of_all_elements_located((By.CSS_SELECTOR,
                                                              "#recovery-codes li")))
    assert len(codes) == 10
    page.find_element(By.LINK_TEXT, "I have saved them — continue").click()
    heading = _wait(page, ec.presence_of_element_located((By.TAG_NAME, "h1")))
    assert heading.text == "Overview"


def test_new_partner_flow_ends_on_the_connection_sheet_with_the_password_once(page, cast):
    bootstrap.ensure_certificate()
    _sign_in_as(page, cast.admin.user)
    _go(page, "/partners/")
    page.find_element(By.LINK_TEXT, "New partner").click()
    _type(page, "name", "Globex")
    _type(page, "contact_email", "ops@globex.test")
    _type(page, "username", "globex-ftp")
    page.find_element(By.CSS_SELECTOR, "form.stacked button[type=submit]").click()
    secret = _wait(page, ec.presence_of_element_located((By.ID, "sheet-password"))).text
    assert page.find_element(By.ID, "sheet-fingerprint").text == \
        sha256_fingerprint(settings.TLS_CERT_FILE)
    assert services.login(services.LoginAttempt("globex-ftp", secret, "ftps", "127.0.0.1"))
    page.find_element(By.LINK_TEXT, "Go to Globex").click()
    page.find_element(By.LINK_TEXT, "Connection sheet").click()
    _wait(page, ec.presence_of_element_located((By.ID, "sheet-password-hidden")))
    assert secret not in page.page_source


def test_operator_releases_a_held_file_with_a_reason(page, cast, held_file):
    _sign_in_as(page, staff_user(cast, User.Role.OPERATOR))
    _go(page, "/files/?state=held")
    page.find_element(By.LINK_TEXT, "/held.csv").click()
    _type(page, "reason", "partner batch, ticket 4711")
    page.find_element(By.CSS_SELECTOR, "button[value=release]").click()
    message = _wait(page, ec.presence_of_element_located((By.CSS_SELECTOR, ".message.success")))
    assert "released" in message.text
    event = AuditEvent.objects.get(action="review.release")
    assert (event.actor, event.details["reason"]) == ("operator-one", "partner batch, ticket 4711")


def _press(browser: WebDriver, key: str, *, shift: bool = False) -> str:
    """Press a key (with Shift held, if asked); return the text of what has focus then."""
    chain = ActionChains(browser)
    if shift:
        chain.key_down(Keys.SHIFT).send_keys(key).key_up(Keys.SHIFT)
    else:
        chain.send_keys(key)
    chain.perform()
    return str(browser.switch_to.active_element.text.strip())


def test_main_menu_is_usable_with_the_keyboard(page, cast):
    _sign_in_as(page, cast.admin.user)
    _go(page, "/")
    seen = [_press(page, Keys.TAB) for _ in range(2 + len(MAIN_MENU))]
    assert seen[0] == "Skip to content" and seen[2:] == MAIN_MENU
    outline = page.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused link shows no focus ring"
    assert [_press(page, Keys.TAB, shift=True) for _ in range(3)] == \
        ["Settings", "Bans", "Audit log"]
    _press(page, Keys.ENTER)
    _wait(page, ec.url_contains("/audit/"))
    current = page.find_element(By.CSS_SELECTOR, "#main-menu a[aria-current=page]")
    assert current.text == "Audit log"


def test_audit_log_filters_and_verifies_the_chain_in_place(page, cast):
    chain.append(actor="carol", action="partner.update", outcome="success")
    _sign_in_as(page, cast.admin.user)
    _go(page, "/audit/")
    page.find_element(By.ID, "verify-chain").click()
    outcome = _wait(page, ec.presence_of_element_located((By.ID, "verify-outcome")))
    assert "Chain intact" in outcome.text and page.current_url.endswith("/audit/")
    _type(page, "actor", "carol")
    _wait(page, ec.url_contains("actor=carol"))
    _wait(page, lambda b: "user.create" not in b.find_element(By.ID, "audit-table").text)
    assert "partner.update" in page.find_element(By.ID, "audit-table").text


def _luminance(css_colour: str) -> float:
    """Return the relative brightness (0-1) of a CSS rgb()/rgba() colour."""
    red, green, blue = (int(part) for part in re.findall(r"\d+", css_colour)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


def test_dark_mode_renders_dark_and_screenshots_are_kept(page, cast, tmp_path: Path):
    _sign_in_as(page, cast.admin.user)
    _go(page, "/")
    light = page.execute_script("return getComputedStyle(document.body).backgroundColor")
    page.save_screenshot(str(tmp_path / "overview-light.png"))
    page.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    for name in SCREENSHOTS:
        _go(page, f"/{name}")
        assert page.find_element(By.TAG_NAME, "h1").text, f"/{name} rendered no heading"
        page.save_screenshot(str(tmp_path / f"{name.strip('/') or 'overview'}-dark.png"))
    _go(page, "/")
    dark = page.execute_script("return getComputedStyle(document.body).backgroundColor")
    text = page.execute_script("return getComputedStyle(document.body).color")
    assert _luminance(light) > 0.8 and _luminance(dark) < 0.2 and _luminance(text) > 0.7
    shot = tmp_path / "overview-dark.png"
    assert shot.stat().st_size > 10_000, "the dark screenshot is empty"
