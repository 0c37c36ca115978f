"""The audit log tells a dashboard sign-in as it happened: the password step is
`login.password`, and `login` is written only when the session starts."""

from __future__ import annotations

import pytest
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import mfa
from accounts.models import User
from audit.events import Origin
from audit.models import AuditEvent
from tests.dashboard.conftest import STAFF_PASSWORD, staff_user

pytestmark = pytest.mark.django_db(transaction=True)


def _logins(username: str) -> list[str]:
    """Return the login events of a user, oldest first, as `action:outcome`."""
    return [f"{e.action}:{e.outcome}" for e in AuditEvent.objects.filter(
        actor=username, action__startswith="login").order_by("id")]


def _code(device: TOTPDevice) -> str:
    device.refresh_from_db()
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def test_password_step_alone_is_not_audited_as_a_login(cast):
    TOTPDevice.objects.create(user=cast.admin.user, name="phone", confirmed=True)
    Client().post("/login/", {"username": cast.admin.username,
                              "password": cast.admin.password})
    assert _logins(cast.admin.username) == ["login.password:success"]
    assert User.objects.get(pk=cast.admin.user.pk).last_login is None


def test_login_is_audited_with_both_factors_when_the_code_is_accepted(cast):
    device = TOTPDevice.objects.create(user=cast.admin.user, name="phone", confirmed=True)
    client = Client()
    client.post("/login/", {"username": cast.admin.username, "password": cast.admin.password})
    client.post("/login/verify/", {"code": _code(device)})
    assert _logins(cast.admin.username) == [
        "login.password:success", "login.mfa:success", "login:success"]
    login = AuditEvent.objects.get(action="login", actor=cast.admin.username)
    assert login.details["method"] == "password+totp" and login.protocol == "web"
    assert User.objects.get(pk=cast.admin.user.pk).last_login is not None


def test_a_wrong_code_leaves_no_successful_login(cast):
    TOTPDevice.objects.create(user=cast.admin.user, name="phone", confirmed=True)
    client = Client()
    client.post("/login/", {"username": cast.admin.username, "password": cast.admin.password})
    client.post("/login/verify/", {"code": "000000"})
    assert _logins(cast.admin.username) == ["login.password:success", "login:failure"]


def test_a_recovery_code_is_named_in_the_login_event(cast):
    TOTPDevice.objects.create(user=cast.admin.user, name="phone", confirmed=True)
    [code, *_] = mfa.new_recovery_codes(cast.admin.user, origin=Origin(actor="test"))
    client = Client()
    client.post("/login/", {"username": cast.admin.username, "password": cast.admin.password})
    client.post("/login/verify/", {"code": code})
    login = AuditEvent.objects.get(action="login", actor=cast.admin.username)
    assert login.details["method"] == "password+recovery-code"


def test_a_role_without_a_second_factor_is_audited_as_logged_in_at_once(cast):
    auditor = staff_user(cast, User.Role.AUDITOR)
    Client().post("/login/", {"username": auditor.username, "password": STAFF_PASSWORD})
    assert _logins(auditor.username) == ["login.password:success", "login:success"]
    assert AuditEvent.objects.get(action="login",
                                  actor=auditor.username).details["method"] == "password"
