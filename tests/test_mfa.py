"""The second factor for web sign-in (accounts.mfa): enrolment, codes, refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import mfa
from accounts.models import Ban, LoginFailure, User
from audit.events import Origin
from mft.errors import Conflict, InvalidInput, LoginRefused

pytestmark = pytest.mark.django_db
WEB = Origin(source_ip="192.0.2.20", protocol="web")


@pytest.fixture
def admin() -> User:
    return User.objects.create(username="mfa-admin", role=User.Role.ADMIN)


def _code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def test_admins_and_operators_need_a_second_factor_auditors_do_not():
    assert mfa.required(User(role=User.Role.ADMIN)) and mfa.required(User(role=User.Role.OPERATOR))
    assert not mfa.required(User(role=User.Role.AUDITOR))


def test_enrolment_is_confirmed_by_a_code_and_makes_recovery_codes(admin):
    device = mfa.begin_enrolment(admin)
    enrolment = mfa.confirm_enrolment(admin, _code(device), origin=WEB)
    assert mfa.enrolled(admin) and len(enrolment.recovery_codes) == mfa.RECOVERY_CODES


def test_enrolment_refuses_a_wrong_code(admin):
    mfa.begin_enrolment(admin)
    with pytest.raises(InvalidInput):
        mfa.confirm_enrolment(admin, "000000", origin=WEB)
    assert not mfa.enrolled(admin)


def test_a_second_enrolment_is_refused(admin):
    TOTPDevice.objects.create(user=admin, confirmed=True)
    with pytest.raises(Conflict):
        mfa.begin_enrolment(admin)


def test_recovery_codes_alone_do_not_count_as_enrolled(admin):
    device = mfa.begin_enrolment(admin)
    mfa.confirm_enrolment(admin, _code(device), origin=WEB)
    TOTPDevice.objects.filter(user=admin).delete()
    assert not mfa.enrolled(admin) and mfa.recovery_codes_left(admin) == mfa.RECOVERY_CODES


def test_recovery_codes_need_an_authenticator_first(admin):
    with pytest.raises(Conflict):
        mfa.new_recovery_codes(admin, origin=WEB)


def test_verify_accepts_a_current_code_once(admin):
    device = TOTPDevice.objects.create(user=admin, confirmed=True)
    code = _code(device)
    assert mfa.verify(admin, code, origin=WEB) == device
    with pytest.raises(LoginRefused):
        mfa.verify(admin, code, origin=WEB)  # the same code is never accepted twice


def test_verify_from_a_banned_address_is_refused_without_counting(admin):
    device = TOTPDevice.objects.create(user=admin, confirmed=True)
    Ban.objects.create(address="192.0.2.20", reason="t",
                       expires_at=timezone.now() + timedelta(hours=1))
    with pytest.raises(LoginRefused) as refused:
        mfa.verify(admin, _code(device), origin=WEB)
    assert refused.value.reason == "address banned" and not LoginFailure.objects.exists()
