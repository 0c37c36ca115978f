"""Dashboard sign-in: password through the login policy, TOTP for admins and operators,
recovery codes, forced password changes, and bans shared with the other protocols."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import mfa
from accounts.models import Ban, LoginFailure, User
from audit.events import Origin
from audit.models import AuditEvent
from dashboard.views.login import PENDING
from tests.dashboard.conftest import STAFF_PASSWORD, staff_user, verified_session

pytestmark = pytest.mark.django_db(transaction=True)
WEB = Origin(source_ip="127.0.0.1", protocol="web")


def _code(device: TOTPDevice) -> str:
    """Return the device's current TOTP code, as the person's app would show it."""
    device.refresh_from_db()
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def _enrolled(user: User) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def _password_step(client: Client, username: str, password: str, **extra: str):  # type: ignore[no-untyped-def]
    return client.post("/login/", {"username": username, "password": password, **extra})


def _signed_in(client: Client) -> bool:
    return client.get("/").status_code == 200


def test_login_page_renders_a_password_form():
    page = Client().get("/login/")
    assert page.status_code == 200 and b'name="password"' in page.content


def test_pages_send_an_anonymous_visitor_to_login_and_back():
    response = Client().get("/files/?state=held")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=%2Ffiles%2F%3Fstate%3Dheld"


def test_wrong_password_is_refused_and_counted_toward_a_ban(cast):
    response = _password_step(Client(), cast.admin.username, "not-the-password")
    assert response.status_code == 200 and b"Login incorrect." in response.content
    failure = LoginFailure.objects.get()
    assert (failure.address, failure.protocol) == ("127.0.0.1", "web")


def test_banned_address_is_refused_even_with_the_right_password(cast):
    Ban.objects.create(address="127.0.0.1", reason="test",
                       expires_at=timezone.now() + timedelta(hours=1))
    response = _password_step(Client(), cast.admin.username, cast.admin.password)
    assert b"Login incorrect." in response.content
    assert AuditEvent.objects.filter(action="login", outcome="failure",
                                     details__reason="address banned").exists()


def test_admin_without_authenticator_is_sent_to_enrol_and_not_yet_signed_in(cast):
    client = Client()
    response = _password_step(client, cast.admin.username, cast.admin.password)
    assert response["Location"] == "/login/enrol/"
    assert not _signed_in(client)


def test_enrolment_page_shows_a_qr_code_and_the_key(cast):
    client = Client()
    _password_step(client, cast.admin.username, cast.admin.password)
    page = client.get("/login/enrol/")
    assert page.status_code == 200
    assert b"<svg" in page.content and b'id="totp-secret"' in page.content
    assert TOTPDevice.objects.get(user=cast.admin.user).confirmed is False


def test_enrolment_with_a_code_from_the_app_signs_in_and_shows_recovery_codes(cast):
    client = Client()
    _password_step(client, cast.admin.username, cast.admin.password)
    client.get("/login/enrol/")
    device = TOTPDevice.objects.get(user=cast.admin.user)
    page = client.post("/login/enrol/", {"code": _code(device)})
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    codes = StaticToken.objects.filter(device__user=cast.admin.user)
    assert codes.count() == mfa.RECOVERY_CODES
    assert all(c.token.encode() in page.content for c in codes)
    assert _signed_in(client)
    assert AuditEvent.objects.filter(action="mfa.enrol", actor=cast.admin.username).exists()


def test_enrolment_with_a_wrong_code_keeps_the_person_on_the_enrol_page(cast):
    client = Client()
    _password_step(client, cast.admin.username, cast.admin.password)
    client.get("/login/enrol/")
    page = client.post("/login/enrol/", {"code": "000000"})
    assert b"does not match" in page.content
    assert not TOTPDevice.objects.get(user=cast.admin.user).confirmed
    assert not _signed_in(client)


def test_enrolled_admin_is_asked_for_a_code_after_the_password(cast):
    _enrolled(cast.admin.user)
    client = Client()
    response = _password_step(client, cast.admin.username, cast.admin.password)
    assert response["Location"] == "/login/verify/"
    assert not _signed_in(client)


def test_a_current_totp_code_signs_in_and_follows_next(cast):
    device = _enrolled(cast.admin.user)
    client = Client()
    _password_step(client, cast.admin.username, cast.admin.password, next="/bans/")
    response = client.post("/login/verify/", {"code": _code(device)})
    assert response["Location"] == "/bans/"
    assert _signed_in(client)


def test_next_pointing_to_another_site_is_ignored(cast):
    device = _enrolled(cast.admin.user)
    client = Client()
    _password_step(client, cast.admin.username, cast.admin.password,
                   next="https://evil.example/")
    response = client.post("/login/verify/", {"code": _code(device)})
    assert response["Location"] == "/"


def test_a_wrong_totp_code_is_refused_audited_and_counted_toward_a_ban(cast):
    _enrolled(cast.admin.user)
    client = Client()
    _password_step(client, cast.admin.username, cast.admin.password)
    page = client.post("/login/verify/", {"code": "123456"})
    assert b"That code is not valid." in page.content
    assert AuditEvent.objects.filter(action="login", outcome="failure",
                                     details__reason="wrong one-time code").exists()
    assert LoginFailure.objects.filter(address="127.0.0.1", protocol="web").count() == 1
    assert not _signed_in(client)


def test_repeated_wrong_codes_ban_the_address_for_every_protocol(cast, settings):
    settings.BAN_FAILURES = 2
    _enrolled(cast.admin.user)
    client = Client()
    _password_step(client, cast.admin.username, cast.admin.password)
    client.post("/login/verify/", {"code": "111111"})
    client.post("/login/verify/", {"code": "222222"})
    assert Ban.objects.filter(address="127.0.0.1", lifted_at__isnull=True).exists()


def test_a_recovery_code_signs_in_once(cast):
    _enrolled(cast.admin.user)
    code = mfa.new_recovery_codes(cast.admin.user, origin=WEB)[0]
    first = Client()
    _password_step(first, cast.admin.username, cast.admin.password)
    assert first.post("/login/verify/", {"code": code.upper()})["Location"] == "/"
    second = Client()
    _password_step(second, cast.admin.username, cast.admin.password)
    assert b"That code is not valid." in second.post("/login/verify/", {"code": code}).content


def test_a_pending_login_expires(cast):
    device = _enrolled(cast.admin.user)
    client = Client()
    _password_step(client, cast.admin.username, cast.admin.password)
    session = client.session
    session[PENDING] = {**session[PENDING], "at": time.time() - 3600}
    session.save()
    response = client.post("/login/verify/", {"code": _code(device)})
    assert response["Location"] == "/login/"
    assert not _signed_in(client)


def test_auditor_without_authenticator_signs_in_with_the_password_alone(cast):
    auditor = staff_user(cast, User.Role.AUDITOR)
    client = Client()
    response = _password_step(client, auditor.username, STAFF_PASSWORD)
    assert response["Location"] == "/"
    assert _signed_in(client)


def test_operator_must_enrol_an_authenticator(cast):
    operator = staff_user(cast, User.Role.OPERATOR)
    response = _password_step(Client(), operator.username, STAFF_PASSWORD)
    assert response["Location"] == "/login/enrol/"


def test_partner_user_without_the_web_protocol_is_refused_by_the_login_policy(cast):
    response = _password_step(Client(), cast.partner.username, cast.partner.password)
    assert b"Login incorrect." in response.content
    assert AuditEvent.objects.filter(
        action="login", outcome="failure", actor=cast.partner.username,
        details__reason="protocol web not allowed for this user").exists()


def test_partner_user_allowed_web_still_gets_no_dashboard(cast):
    User.objects.filter(pk=cast.partner.user.pk).update(allowed_protocols=["ftps", "web"])
    client = Client()
    response = _password_step(client, cast.partner.username, cast.partner.password)
    assert response.status_code == 403 and b"No dashboard access" in response.content
    assert client.get("/")["Location"].startswith("/login/")


def test_signed_in_partner_session_is_refused_and_ended(cast):
    client = Client()
    client.force_login(cast.partner.user)
    assert client.get("/").status_code == 403
    assert client.get("/")["Location"].startswith("/login/")


def test_admin_session_without_a_second_factor_is_sent_back_to_login(cast):
    client = Client()
    client.force_login(cast.admin.user)
    assert client.get("/")["Location"].startswith("/login/")


def test_htmx_request_without_a_session_is_told_where_to_sign_in():
    response = Client().get("/files/", HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response["HX-Redirect"].startswith("/login/")


def test_generated_password_must_be_changed_before_anything_else(cast):
    User.objects.filter(pk=cast.admin.user.pk).update(must_change_password=True)
    client = Client()
    verified_session(client, User.objects.get(pk=cast.admin.user.pk))
    assert client.get("/files/")["Location"] == "/account/password/"


def test_expired_password_must_be_changed(cast, settings):
    settings.PASSWORD_MAX_AGE_DAYS_STAFF = 90
    User.objects.filter(pk=cast.admin.user.pk).update(
        password_changed_at=timezone.now() - timedelta(days=91))
    client = Client()
    verified_session(client, User.objects.get(pk=cast.admin.user.pk))
    assert client.get("/")["Location"] == "/account/password/"


def test_changing_the_password_lifts_the_force_and_keeps_the_session(cast):
    User.objects.filter(pk=cast.admin.user.pk).update(must_change_password=True)
    client = Client()
    verified_session(client, User.objects.get(pk=cast.admin.user.pk))
    new = "Fresh-Tide-Lighthouse-77"
    response = client.post("/account/password/", {"current": cast.admin.password,
                                                  "new": new, "again": new})
    assert response["Location"] == "/"
    assert _signed_in(client)
    user = User.objects.get(pk=cast.admin.user.pk)
    assert user.check_password(new) and not user.must_change_password


def test_password_change_needs_the_current_password(cast):
    client = Client()
    verified_session(client, cast.admin.user)
    new = "Fresh-Tide-Lighthouse-77"
    page = client.post("/account/password/", {"current": "wrong", "new": new, "again": new})
    assert b"not your current password" in page.content
    assert not User.objects.get(pk=cast.admin.user.pk).check_password(new)


def test_password_change_applies_the_password_policy(cast):
    client = Client()
    verified_session(client, cast.admin.user)
    page = client.post("/account/password/", {"current": cast.admin.password,
                                              "new": "short", "again": "short"})
    assert b"too short" in page.content


def test_session_cookie_lasts_the_configured_timeout(cast, settings):
    device = _enrolled(cast.admin.user)
    client = Client()
    _password_step(client, cast.admin.username, cast.admin.password)
    response = client.post("/login/verify/", {"code": _code(device)})
    assert response.cookies["sessionid"]["max-age"] == settings.SESSION_COOKIE_AGE


def test_sign_out_ends_the_session(admin_client):
    assert admin_client.post("/logout/")["Location"] == "/login/"
    assert admin_client.get("/").status_code == 302


def test_new_recovery_codes_replace_the_old_ones(cast, admin_client):
    old = mfa.new_recovery_codes(cast.admin.user, origin=WEB)
    page = admin_client.post("/account/recovery-codes/")
    assert page.status_code == 200
    assert not StaticToken.objects.filter(token__in=old).exists()
    assert mfa.recovery_codes_left(cast.admin.user) == mfa.RECOVERY_CODES
