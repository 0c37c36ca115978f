"""The dashboard in a real headless Chromium, driven by Playwright against a live server.

Debian's `chromium` must be installed: without it these tests fail with the reason (CI
installs it), they never skip. Screenshots of every main page, light and dark, are kept in
artifacts/screenshots/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import Browser, Page, expect

from accounts import services
from accounts.models import User
from audit import chain
from audit.models import AuditEvent
from mft import bootstrap
from mft.server_certificate import sha256_fingerprint
from tests import ftps_client
from tests.dashboard.chromium import chromium, fresh_page, screenshot, sign_in
from tests.dashboard.conftest import staff_user
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)

# The admin's menu holds at least these, in this order (other pages may sit between them).
MAIN_MENU = ["Overview", "Files", "Deliveries", "Partners", "Users", "Certificates", "Endpoints",
             "API tokens", "Audit log", "Bans", "Settings", "Sessions"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Start one headless Chromium for the module's tests."""
    with chromium() as started:
        yield started


@pytest.fixture
def page(browser: Browser, live_server) -> Iterator[Page]:  # type: ignore[no-untyped-def]
    """Return a fresh page (no cookies, light colours) with the live server's URL at hand."""
    with fresh_page(browser) as fresh:
        fresh.base = live_server.url  # type: ignore[attr-defined]
        yield fresh


def _go(page: Page, path: str) -> None:
    page.goto(page.base + path)  # type: ignore[attr-defined]


def _sign_in_as(page: Page, user: User) -> None:
    sign_in(page.context, page.base, user)  # type: ignore[attr-defined]


def test_admin_signs_in_and_enrols_an_authenticator(page, cast):
    _go(page, "/")
    page.fill("[name=username]", cast.admin.username)
    page.fill("[name=password]", cast.admin.password)
    page.press("[name=password]", "Enter")
    page.wait_for_url("**/login/enrol/")
    expect(page.locator(".qr svg")).to_be_visible()
    device = TOTPDevice.objects.get(user=cast.admin.user)
    code = totp(device.bin_key, device.step, device.t0, device.digits, device.drift)
    page.fill("[name=code]", f"{code:06d}")
    page.press("[name=code]", "Enter")
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.get_by_role("link", name="I have saved them — continue").click()
    expect(page.locator("h1")).to_have_text("Overview")


def _new_partner(page: Page, name: str, username: str) -> str:
    """Run the new-partner flow as a signed-in admin; return the password the sheet shows."""
    _go(page, "/partners/")
    page.get_by_role("link", name="New partner").click()
    page.fill("[name=name]", name)
    page.fill("[name=contact_email]", f"ops@{name.lower()}.test")
    page.fill("[name=username]", username)
    page.click("form.stacked button[type=submit]")
    return page.locator("#sheet-password").inner_text().strip()


def test_new_partner_flow_ends_on_the_connection_sheet_with_the_password_once(page, cast):
    bootstrap.ensure_certificate()
    _sign_in_as(page, cast.admin.user)
    secret = _new_partner(page, "Globex", "globex-ftp")
    expect(page.locator("#sheet-fingerprint")).to_have_text(
        sha256_fingerprint(settings.TLS_CERT_FILE))
    screenshot(page, "connection-sheet")
    assert services.login(services.LoginAttempt("globex-ftp", secret, "ftps", "127.0.0.1"))
    page.get_by_role("link", name="Go to Globex").click()
    page.get_by_role("link", name="Connection sheet").click()
    expect(page.locator("#sheet-password-hidden")).to_be_attached()
    assert secret not in page.content()


def _wait_for_state(path: str, state: str, timeout: float = 90) -> StoredFile:
    """Poll the database (bounded) until the file at the path reaches the state."""
    deadline = time.monotonic() + timeout
    stored = None
    while time.monotonic() < deadline:
        stored = StoredFile.objects.filter(path=path).order_by("-id").first()
        if stored is not None and stored.state == state:
            return stored
        time.sleep(0.2)
    raise AssertionError(f"{path} is {stored and stored.state}, not {state}")


def test_file_uploaded_over_ftps_by_a_new_partner_is_ready_on_the_files_page(
        page, cast, gateway, clamd, start_worker):
    start_worker(MFT_CLAMD=clamd.address)
    _sign_in_as(page, cast.admin.user)
    secret = _new_partner(page, "Initech", "initech-ftp")
    client = ftps_client.login(gateway.explicit_port, "initech-ftp", secret)
    try:
        client.storbinary("STOR orders.csv", io.BytesIO(b"id;amount\n1;9.99\n"))
    finally:
        client.quit()
    _wait_for_state("/orders.csv", FileState.READY)
    _go(page, "/files/")
    row = page.locator("table.files tbody tr", has_text="/orders.csv")
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_text(re.compile(r"^ready$", re.IGNORECASE))
    expect(row).to_contain_text("Initech")
    screenshot(page, "files-after-ftps-upload")


def test_operator_releases_a_held_file_with_a_reason(page, cast, held_file):
    _sign_in_as(page, staff_user(cast, User.Role.OPERATOR))
    _go(page, "/files/?state=held")
    page.get_by_role("link", name="/held.csv").click()
    page.fill("[name=reason]", "partner batch, ticket 4711")
    page.click("button[value=release]")
    expect(page.locator(".message.success")).to_contain_text("released")
    event = AuditEvent.objects.get(action="review.release")
    assert (event.actor, event.details["reason"]) == ("operator-one", "partner batch, ticket 4711")


def _press(page: Page, key: str) -> str:
    """Press a key (e.g. "Tab", "Shift+Tab"); return the text of what has focus then."""
    page.keyboard.press(key)
    return str(page.evaluate("document.activeElement.innerText.trim()"))


def _menu(page: Page) -> list[str]:
    """Return the main menu's link texts, in order."""
    return [text.strip() for text in page.locator("#main-menu a").all_inner_texts()]


def _main_pages(page: Page) -> list[str]:
    """Return the main menu's paths (every main page), after checking the menu is whole."""
    menu = _menu(page)
    assert [name for name in menu if name in MAIN_MENU] == MAIN_MENU, menu
    hrefs = page.locator("#main-menu a").evaluate_all("links => links.map(a => a.pathname)")
    return [str(href) for href in hrefs]


def test_main_menu_is_usable_with_the_keyboard(page, cast):
    _sign_in_as(page, cast.admin.user)
    _go(page, "/")
    menu = _menu(page)
    assert [name for name in menu if name in MAIN_MENU] == MAIN_MENU, menu
    seen = [_press(page, "Tab") for _ in range(2 + len(menu))]
    assert seen[0] == "Skip to content" and seen[2:] == menu
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused link shows no focus ring"
    assert [_press(page, "Shift+Tab") for _ in range(3)] == menu[-2:-5:-1]
    page.keyboard.press("Enter")
    expect(page.locator("#main-menu a[aria-current=page]")).to_have_text(menu[-4])
    assert page.url.endswith(page.locator("#main-menu a[aria-current=page]")
                             .evaluate("a => a.pathname"))


def test_audit_log_filters_and_verifies_the_chain_in_place(page, cast):
    chain.append(actor="carol", action="partner.update", outcome="success")
    _sign_in_as(page, cast.admin.user)
    _go(page, "/audit/")
    page.click("#verify-chain")
    expect(page.locator("#verify-outcome")).to_contain_text("Chain intact")
    assert page.url.endswith("/audit/")
    page.locator("[name=actor]").press_sequentially("carol")
    page.wait_for_url(re.compile(r"actor=carol"))
    expect(page.locator("#audit-table")).not_to_contain_text("user.create")
    expect(page.locator("#audit-table")).to_contain_text("partner.update")
    screenshot(page, "audit-filtered")


def _luminance(css_colour: str) -> float:
    """Return the relative brightness (0-1) of a CSS rgb()/rgba() colour."""
    red, green, blue = (int(part) for part in re.findall(r"\d+", css_colour)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


def _shot_name(path: str, suffix: str) -> str:
    return f"{path.strip('/').replace('/', '-') or 'overview'}-{suffix}"


def _screenshot_main_pages(page: Page, scheme: str) -> None:
    """Visit every main page (the menu's) and save its screenshot in the colour scheme."""
    _go(page, "/")
    for path in _main_pages(page):
        _go(page, path)
        assert page.locator("h1").first.inner_text(), f"{path} rendered no heading"
        shot = screenshot(page, _shot_name(path, scheme))
        assert shot.stat().st_size > 10_000, f"the screenshot of {path} is empty"


def test_dark_mode_renders_dark_and_screenshots_every_main_page(page, cast):
    _sign_in_as(page, cast.admin.user)
    _screenshot_main_pages(page, "light")
    _go(page, "/")
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    _screenshot_main_pages(page, "dark")
    _go(page, "/")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    text = page.evaluate("getComputedStyle(document.body).color")
    assert _luminance(light) > 0.8 and _luminance(dark) < 0.2 and _luminance(text) > 0.7


# The elements reaching past the screen's right edge (the menu scrolls), named on a failure.
WIDE_ELEMENTS = """(() => {
  const edge = document.documentElement.clientWidth + 1;
  return [...document.body.querySelectorAll('*')]
    .filter(e => e.getBoundingClientRect().right > edge && !e.closest('nav'))
    .slice(-3).map(e => e.outerHTML.slice(0, 160));
})()"""


def test_main_pages_fit_a_phone_screen_without_sideways_scrolling(browser, live_server, cast):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    context.set_default_timeout(10_000)
    try:
        sign_in(context, live_server.url, cast.admin.user)
        phone = context.new_page()
        phone.goto(f"{live_server.url}/")
        for path in _main_pages(phone):
            phone.goto(f"{live_server.url}{path}")
            overflow = phone.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth")
            screenshot(phone, _shot_name(path, "phone"))
            assert overflow <= 0, (f"{path} is {overflow}px wider than a phone screen: "
                                   f"{phone.evaluate(WIDE_ELEMENTS)}")
        expect(phone.locator("#main-menu").get_by_role("link", name="Files")).to_be_attached()
    finally:
        context.close()
