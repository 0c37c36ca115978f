"""Single sign-on with OpenID Connect, end to end against a real provider on loopback.

The provider is django-oauth-toolkit in OIDC mode (tests/oidc_provider), run as its own
process with an RSA key made here; Portside runs in the live server. A requests session
plays the browser: it follows redirects and posts the provider's sign-in and consent
forms, then Portside's TOTP forms.
"""

from __future__ import annotations

import re
import secrets
import shutil
from base64 import b32decode
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from accounts import users
from accounts.models import User
from accounts.services import generate_password
from audit.events import SYSTEM
from audit.models import AuditEvent
from mft import oidc
from sso.models import IdentityProviderDevice, SsoIdentity
from tests.dashboard.chromium import FLAGS
from tests.dashboard.conftest import verified_session
from tests.oidc_provider.running import RunningProvider

pytestmark = pytest.mark.django_db(transaction=True)

CLIENT_ID = "portside-" + secrets.token_hex(4)
CLIENT_SECRET = secrets.token_urlsafe(32)
ROLE_MAP = {"portside-admins": "admin", "portside-ops": "operator",
            "portside-auditors": "auditor"}


class _Forms(HTMLParser):
    """Collect each form's action and its hidden inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form":
            self.forms.append({"action": found.get("action") or "", "fields": {}})
        elif tag == "input" and self.forms and found.get("type") == "hidden" and found.get("name"):
            self.forms[-1]["fields"][found["name"]] = found.get("value") or ""


def _submit(session: requests.Session, page: requests.Response, **fields: str
            ) -> requests.Response:
    """Post the page's first form with its hidden fields and the given ones."""
    parser = _Forms()
    parser.feed(page.text)
    assert parser.forms, f"no form on {page.url}: {page.text[:300]}"
    form = parser.forms[0]
    return session.post(urljoin(page.url, form["action"]), data={**form["fields"], **fields},
                        timeout=30)


@pytest.fixture(scope="module")
def provider(live_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProvider]:
    """Run the identity provider for this module, with Portside's callback registered."""
    running = RunningProvider(tmp_path_factory.mktemp("idp"), client_id=CLIENT_ID,
                              client_secret=CLIENT_SECRET,
                              redirect_uri=f"{live_server.url}/oidc/callback/")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def idp(provider: RunningProvider, settings) -> RunningProvider:
    """Turn single sign-on on in Portside, pointed at the provider's issuer (discovery)."""
    settings.OIDC_ENABLED = True
    settings.OIDC_ISSUER = provider.issuer
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_ROLE_MAP = ROLE_MAP
    return provider


def _person(idp: RunningProvider, username: str, groups: list[str],
            amr: list[str] | None = None) -> str:
    """Give the provider a person; return their password there."""
    password = secrets.token_urlsafe(12)
    entry: dict[str, Any] = {"password": password, "email": f"{username}@example.com",
                             "given_name": username.title(), "family_name": "Tester",
                             "groups": groups}
    if amr is not None:
        entry["amr"] = amr
    idp.add(username, **entry)
    return password


def _sso(idp: RunningProvider, username: str,
         password: str) -> tuple[requests.Session, requests.Response]:
    """Sign in through the provider from Portside's login page, in a new browser session;
    return the session and the last page."""
    session = requests.Session()
    login_page = session.get(f"{idp.client_base}/login/", timeout=30)
    match = re.search(r'id="sso-sign-in"[^>]*href="([^"]+)"', login_page.text)
    assert match, "the login page offers no SSO button"
    at_provider = session.get(urljoin(login_page.url, match.group(1).replace("&amp;", "&")),
                              timeout=30)
    assert at_provider.url.startswith(idp.issuer.rsplit("/o", 1)[0]), at_provider.url
    consent = _submit(session, at_provider, username=username, password=password)
    assert "authorizationForm" in consent.text, consent.text[:500]
    return session, _submit(session, consent, allow="Authorize")


def _code_for(page: requests.Response) -> str:
    """Return the current code of the authenticator whose secret the enrol page shows."""
    match = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page.text)
    assert match, "no secret on the enrolment page"
    secret = match.group(1).replace(" ", "")
    key = b32decode(secret + "=" * (-len(secret) % 8))
    return f"{totp(key, step=30, t0=0, digits=6, drift=0):06d}"


def _on_overview(response: requests.Response) -> bool:
    return response.status_code == 200 and "<h1>Overview</h1>" in response.text


def _logins(username: str, outcome: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="login", actor=username, outcome=outcome))


def test_admin_with_mfa_at_the_provider_lands_on_the_overview(idp):
    password = _person(idp, "ada", ["portside-admins", "staff"], amr=["pwd", "mfa"])
    _, page = _sso(idp, "ada", password)
    assert _on_overview(page), page.url
    user = User.objects.get(username="ada")
    assert user.role == User.Role.ADMIN and user.is_staff
    assert not user.has_usable_password()
    assert user.allowed_protocols == ["web"]
    assert SsoIdentity.objects.get(user=user).issuer == idp.issuer
    assert IdentityProviderDevice.objects.filter(user=user, confirmed=True).exists()
    [event] = _logins("ada", AuditEvent.Outcome.SUCCESS)
    assert event.details["method"] == "oidc+provider-mfa"
    first = AuditEvent.objects.get(action="login.oidc", actor="ada")
    assert first.details["method"] == "oidc" and first.details["amr"] == ["pwd", "mfa"]
    assert first.pk < event.pk


def test_admin_without_mfa_at_the_provider_must_pass_local_totp(idp):
    password = _person(idp, "bob", ["portside-admins"], amr=["pwd"])
    session, enrol = _sso(idp, "bob", password)
    assert enrol.url.endswith("/login/enrol/"), enrol.url
    assert not _on_overview(session.get(f"{idp.client_base}/", timeout=30))
    assert _logins("bob", AuditEvent.Outcome.SUCCESS) == []  # not signed in yet
    codes = _submit(session, enrol, code=_code_for(enrol))
    assert 'id="recovery-codes"' in codes.text
    assert _on_overview(session.get(f"{idp.client_base}/", timeout=30))
    [signed_in] = _logins("bob", AuditEvent.Outcome.SUCCESS)
    assert signed_in.details["method"] == "oidc+totp"
    assert not IdentityProviderDevice.objects.filter(user__username="bob").exists()
    # Signing in again asks for the enrolled authenticator's code, and a wrong one fails.
    second, verify = _sso(idp, "bob", password)
    assert verify.url.endswith("/login/verify/"), verify.url
    device = TOTPDevice.objects.get(user__username="bob")
    right = totp(device.bin_key, device.step, device.t0, device.digits, device.drift)
    refused = _submit(second, verify, code=f"{(right + 500000) % 1000000:06d}")
    assert refused.url.endswith("/login/verify/") and "not valid" in refused.text
    assert not _on_overview(second.get(f"{idp.client_base}/", timeout=30))


def test_operator_and_auditor_roles_come_from_the_claims(idp):
    for username, group, role in (("olga", "portside-ops", User.Role.OPERATOR),
                                  ("audrey", "portside-auditors", User.Role.AUDITOR)):
        _, page = _sso(idp, username, _person(idp, username, [group], amr=["mfa"]))
        assert _on_overview(page), page.url
        assert User.objects.get(username=username).role == role


def test_claims_mapping_to_no_role_are_refused_and_audited(idp):
    password = _person(idp, "eve", ["staff", "portside-partners"], amr=["mfa"])
    _, page = _sso(idp, "eve", password)
    assert page.status_code == 403
    assert "holds no Portside role" in page.text
    assert not User.objects.filter(username="eve").exists()
    [event] = _logins("eve", AuditEvent.Outcome.FAILURE)
    assert "no dashboard role" in event.details["reason"]
    assert event.details["method"] == "oidc"


def test_a_role_changed_at_the_provider_moves_on_the_next_sign_in(idp):
    password = _person(idp, "frank", ["portside-ops"], amr=["mfa"])
    _sso(idp, "frank", password)
    assert User.objects.get(username="frank").role == User.Role.OPERATOR
    idp.add("frank", groups=["portside-auditors"])
    _, page = _sso(idp, "frank", password)
    assert _on_overview(page)
    assert User.objects.get(username="frank").role == User.Role.AUDITOR
    change = AuditEvent.objects.get(action="user.update", object_repr="frank")
    assert change.details["before"]["role"] == "operator"
    assert change.details["after"]["role"] == "auditor"


def test_a_disabled_local_account_is_refused(idp):
    password = _person(idp, "grace", ["portside-auditors"], amr=["mfa"])
    _sso(idp, "grace", password)
    users.set_active(User.objects.get(username="grace"), False, origin=SYSTEM)
    _, page = _sso(idp, "grace", password)
    assert page.status_code == 403
    assert not _on_overview(page)
    [event] = _logins("grace", AuditEvent.Outcome.FAILURE)
    assert event.details["reason"] == "account disabled"


def test_a_local_account_with_the_same_username_is_not_taken_over(idp):
    users.create_user("heidi", role=User.Role.OPERATOR, password=generate_password(),
                      origin=SYSTEM)
    _, page = _sso(idp, "heidi", _person(idp, "heidi", ["portside-admins"], amr=["mfa"]))
    assert page.status_code == 403
    assert User.objects.get(username="heidi").role == User.Role.OPERATOR
    assert not SsoIdentity.objects.filter(user__username="heidi").exists()


def test_a_partner_account_never_signs_in_through_sso(idp):
    password = _person(idp, "ivan", ["portside-ops"], amr=["mfa"])
    _sso(idp, "ivan", password)
    User.objects.filter(username="ivan").update(role=User.Role.PARTNER)
    _, page = _sso(idp, "ivan", password)
    assert page.status_code == 403 and "Partner and API accounts" in page.text
    assert User.objects.get(username="ivan").role == User.Role.PARTNER
    [event] = _logins("ivan", AuditEvent.Outcome.FAILURE)
    assert event.details["reason"] == "partner or API account"


def _rejections() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="login", outcome=AuditEvent.Outcome.FAILURE,
                                          actor="(single sign-on)"))


def _started(idp: RunningProvider) -> tuple[requests.Session, str]:
    """Start a sign-in at Portside; return the browser session and the state it was given."""
    session = requests.Session()
    redirect = session.get(f"{idp.client_base}/oidc/authenticate/", allow_redirects=False,
                           timeout=30)
    match = re.search(r"[?&]state=([^&]+)", redirect.headers.get("Location", ""))
    assert redirect.status_code == 302 and match, redirect.headers
    return session, match.group(1)


def test_a_forged_code_is_refused_by_the_provider_and_audited(idp):
    session, state = _started(idp)
    page = session.get(f"{idp.client_base}/oidc/callback/",
                       params={"code": secrets.token_urlsafe(20), "state": state}, timeout=30)
    assert page.status_code == 400 and "was not accepted" in page.text
    [event] = _rejections()
    assert "answered HTTP 400" in event.details["reason"]
    assert event.details["method"] == "oidc"


def test_a_forged_state_is_refused_and_audited(idp):
    session, _ = _started(idp)
    page = session.get(f"{idp.client_base}/oidc/callback/",
                       params={"code": "x", "state": secrets.token_urlsafe(20)}, timeout=30)
    assert page.status_code == 400
    [event] = _rejections()
    assert "state not found" in event.details["reason"]


def test_an_id_token_from_another_issuer_is_refused_and_audited(idp, settings):
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{idp.issuer}/authorize/"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{idp.issuer}/token/"
    settings.OIDC_OP_USER_ENDPOINT = f"{idp.issuer}/userinfo/"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{idp.issuer}/.well-known/jwks.json"
    settings.OIDC_ISSUER = "https://idp.elsewhere.example"
    _, page = _sso(idp, "kim", _person(idp, "kim", ["portside-admins"], amr=["mfa"]))
    assert page.status_code == 400 and not _on_overview(page)
    assert not User.objects.filter(username="kim").exists()
    [event] = _rejections()
    assert "another issuer" in event.details["reason"]


def test_an_admin_cannot_reset_the_password_of_a_single_sign_on_user(idp, cast):
    _sso(idp, "lena", _person(idp, "lena", ["portside-ops"], amr=["mfa"]))
    lena = User.objects.get(username="lena")
    admin_client = Client()
    verified_session(admin_client, cast.admin.user)
    assert b'id="user-reset-password"' not in admin_client.get(f"/users/{lena.pk}/").content
    page = admin_client.post(f"/users/{lena.pk}/reset-password/", follow=True)
    assert "single sign-on provider" in page.content.decode()
    assert not User.objects.get(pk=lena.pk).has_usable_password()


def test_explicit_endpoints_work_without_discovery(idp, settings):
    settings.OIDC_ISSUER = ""
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{idp.issuer}/authorize/"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{idp.issuer}/token/"
    settings.OIDC_OP_USER_ENDPOINT = f"{idp.issuer}/userinfo/"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{idp.issuer}/.well-known/jwks.json"
    _, page = _sso(idp, "judy", _person(idp, "judy", ["portside-auditors"]))
    assert _on_overview(page)
    assert User.objects.get(username="judy").role == User.Role.AUDITOR


def test_sign_in_is_off_until_configured(client: Client):
    assert "Sign in with SSO" not in client.get("/login/").content.decode()
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404


def test_an_unreachable_provider_gives_a_clear_page(idp, settings, client: Client):
    settings.OIDC_ISSUER = "http://127.0.0.1:9/o"
    response = client.get("/oidc/authenticate/")
    assert response.status_code == 503
    assert "cannot be reached" in response.content.decode()


# --- In a real browser ----------------------------------------------------------------------

@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[WebDriver]:
    """Start a headless Chromium (Debian's chromium and chromium-driver; never skipped)."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail("Chromium is not installed: apt-get install chromium chromium-driver")
    options = Options()
    options.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    chrome.set_page_load_timeout(20)
    try:
        yield chrome
    finally:
        chrome.quit()


def test_sign_in_with_sso_in_chromium(idp, chromium: WebDriver, tmp_path: Path):
    password = _person(idp, "ines", ["portside-admins"], amr=["hwk"])
    chromium.get(f"{idp.client_base}/login/")
    chromium.find_element(By.LINK_TEXT, "Sign in with SSO").click()
    wait = WebDriverWait(chromium, 15)
    wait.until(ec.presence_of_element_located((By.ID, "idp-login")))
    chromium.find_element(By.NAME, "username").send_keys("ines")
    chromium.find_element(By.NAME, "password").send_keys(password + Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.NAME, "allow"))).click()
    heading = wait.until(ec.presence_of_element_located((By.TAG_NAME, "h1")))
    chromium.save_screenshot(str(tmp_path / "sso-overview.png"))
    assert heading.text == "Overview"
    assert chromium.current_url.rstrip("/") == idp.client_base.rstrip("/")


# --- Configuration -------------------------------------------------------------------------

def _configure(monkeypatch: pytest.MonkeyPatch, **values: str) -> oidc.OidcConfig:
    for name in ("MFT_OIDC_ISSUER", "MFT_OIDC_CLIENT_SECRET_FILE", "MFT_OIDC_ROLE_MAP",
                 *oidc._ENDPOINTS.values()):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return oidc.oidc_from_env()


def test_configuration_is_off_without_a_client_id(monkeypatch):
    monkeypatch.delenv("MFT_OIDC_CLIENT_ID", raising=False)
    assert not _configure(monkeypatch).enabled


def test_configuration_reads_the_role_map_and_amr_set(monkeypatch, tmp_path: Path):
    secret = tmp_path / "secret"
    secret.write_text(CLIENT_SECRET + "\n")
    config = _configure(monkeypatch, MFT_OIDC_CLIENT_ID="portside",
                        MFT_OIDC_CLIENT_SECRET_FILE=str(secret),
                        MFT_OIDC_ISSUER="https://idp.example.com/realms/corp/",
                        MFT_OIDC_ROLE_MAP="portside-admins=admin; cn=ops,o=corp=operator",
                        MFT_OIDC_MFA_AMR="mfa,hwk")
    assert config.enabled and config.client_secret == CLIENT_SECRET
    assert config.issuer == "https://idp.example.com/realms/corp"
    assert config.role_map == {"portside-admins": "admin", "cn=ops,o=corp": "operator"}
    assert config.mfa_amr == {"mfa", "hwk"}


@pytest.mark.parametrize(("values", "complaint"), [
    ({"MFT_OIDC_ROLE_MAP": "x=admin"}, "MFT_OIDC_CLIENT_SECRET"),
    ({"MFT_OIDC_CLIENT_SECRET": "s", "MFT_OIDC_ROLE_MAP": "x=partner"}, "not a dashboard role"),
    ({"MFT_OIDC_CLIENT_SECRET": "s"}, "names no claim value"),
    ({"MFT_OIDC_CLIENT_SECRET": "s", "MFT_OIDC_ROLE_MAP": "x=admin"}, "MFT_OIDC_ISSUER"),
    ({"MFT_OIDC_CLIENT_SECRET": "s", "MFT_OIDC_ROLE_MAP": "x=admin",
      "MFT_OIDC_ISSUER": "https://idp", "MFT_OIDC_SIGN_ALGO": "none"}, "MFT_OIDC_SIGN_ALGO"),
])
def test_configuration_refuses_what_cannot_work(monkeypatch, values, complaint):
    with pytest.raises(ImproperlyConfigured, match=complaint):
        _configure(monkeypatch, MFT_OIDC_CLIENT_ID="portside", **values)


def test_explicit_endpoints_need_no_issuer(monkeypatch):
    endpoints = {variable: f"https://idp.example.com/{name}"
                 for name, variable in oidc._ENDPOINTS.items()}
    config = _configure(monkeypatch, MFT_OIDC_CLIENT_ID="portside", MFT_OIDC_CLIENT_SECRET="s",
                        MFT_OIDC_ROLE_MAP="x=auditor", **endpoints)
    assert config.endpoints["jwks"] == "https://idp.example.com/jwks"
