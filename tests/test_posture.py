"""Each compliance finding appears when its condition is set and disappears when fixed."""

from __future__ import annotations

import pytest

from accounts.models import User
from audit import chain
from audit.events import Origin
from audit.models import AuditEvent
from mft import posture
from mft.errors import InvalidInput
from tests.tamper import tamper

pytestmark = pytest.mark.django_db(transaction=True)


def _ids() -> set[str]:
    return {f.id for f in posture.findings()}


@pytest.mark.parametrize("flag, finding", [
    ("allow_plain_ftp", "ftp.plain-allowed"),
    ("allow_clear_data", "ftp.clear-data"),
    ("tls_reuse_exempt", "tls.reuse-not-required"),
])
def test_user_policy_exceptions_are_findings_until_removed(cast, flag, finding):
    assert finding not in _ids()
    User.objects.filter(pk=cast.partner.user.pk).update(**{flag: True})
    assert finding in _ids()
    User.objects.filter(pk=cast.partner.user.pk).update(**{flag: False})
    assert finding not in _ids()


@pytest.mark.parametrize("setting, value, finding", [
    ("SCAN_MODE", "off", "scan.off"),
    ("CLAMD_ADDRESS", "", "scan.not-configured"),
    ("DEBUG", True, "web.debug"),
    ("ENCRYPT_AT_REST", False, "storage.unencrypted"),
    ("PASSWORD_HISTORY", 1, "password.weak-policy"),
])
def test_configuration_findings_follow_the_settings(cast, settings, setting, value, finding):
    settings.CLAMD_ADDRESS = "tcp://127.0.0.1:3310"
    assert finding not in _ids()
    setattr(settings, setting, value)
    assert finding in _ids()


def test_a_broken_audit_chain_is_a_critical_finding(cast):
    event = AuditEvent.objects.order_by("id").first()
    tamper("UPDATE audit_auditevent SET actor='x' WHERE id=%s", [event.pk])
    assert posture.findings()[0].id == "audit.chain-broken"
    assert chain.verify()[1] is not None


def test_a_finding_is_accepted_with_a_justification_and_audited(cast, settings):
    settings.SCAN_MODE = "off"
    origin = Origin(actor=cast.admin.username)
    with pytest.raises(InvalidInput):
        posture.accept("scan.off", justification="ok", origin=origin)
    posture.accept("scan.off", justification="isolated test network, no partner data",
                   origin=origin)
    found = {f.id: f for f in posture.findings()}
    assert found["scan.off"].accepted["by"] == cast.admin.username
    assert AuditEvent.objects.filter(action="posture.accept").exists()


def test_staff_without_totp_is_a_finding(cast):
    assert "mfa.staff-without-totp" in _ids()


def test_staff_whose_identity_provider_asserted_mfa_is_not_a_finding(cast):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from sso.models import IdentityProviderDevice

    assert "mfa.staff-without-totp" in _ids()
    IdentityProviderDevice.objects.create(user=cast.admin.user, name="provider")
    assert "mfa.staff-without-totp" not in _ids()
    IdentityProviderDevice.objects.all().delete()
    TOTPDevice.objects.create(user=cast.admin.user, name="phone", confirmed=True)
    assert "mfa.staff-without-totp" not in _ids()
