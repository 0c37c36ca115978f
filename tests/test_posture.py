"""Each compliance finding appears when its condition is set and disappears when fixed."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from accounts import credentials
from accounts.models import User
from audit import chain
from audit.events import Origin
from audit.models import AuditEvent
from mft import posture
from mft import server_certificate as certificate
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
    ("TLS_MIN_VERSION", "TLSv1.1", "tls.old-version"),
    ("PASSWORD_MAX_AGE_DAYS_PARTNER", 0, "password.partner-no-expiry"),
    ("PRODUCTION", False, "web.development-mode"),
])
def test_configuration_findings_follow_the_settings(cast, settings, setting, value, finding):
    settings.CLAMD_ADDRESS = "tcp://127.0.0.1:3310"
    settings.PASSWORD_MAX_AGE_DAYS_PARTNER, settings.PRODUCTION = 365, True
    assert finding not in _ids()
    fixed = getattr(settings, setting)
    setattr(settings, setting, value)
    assert finding in _ids()
    setattr(settings, setting, fixed)
    assert finding not in _ids()


def test_a_broken_audit_chain_is_a_critical_finding_until_repaired(cast):
    event = AuditEvent.objects.order_by("id").first()
    assert "audit.chain-broken" not in _ids()
    tamper("UPDATE audit_auditevent SET actor='x' WHERE id=%s", [event.pk])
    assert posture.findings()[0].id == "audit.chain-broken"
    assert chain.verify()[1] is not None
    tamper("UPDATE audit_auditevent SET actor=%s WHERE id=%s", [event.actor, event.pk])
    assert "audit.chain-broken" not in _ids()


def test_a_short_minimum_password_length_is_a_weak_policy(cast, settings):
    assert "password.weak-policy" not in _ids()
    settings.AUTH_PASSWORD_VALIDATORS = [
        {**v, "OPTIONS": {"min_length": 8}} if v["NAME"].endswith("MinimumLengthValidator")
        else v for v in settings.AUTH_PASSWORD_VALIDATORS]
    assert "password.weak-policy" in _ids()


def _certificate(days: int) -> tuple[bytes, bytes]:
    """Return a PEM certificate valid for `days` more days, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expiring.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days)).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def test_a_server_certificate_expiring_soon_is_a_finding_until_replaced(cast):
    certificate.install_pem(*_certificate(10))
    assert "cert.server-expiring" in _ids()
    certificate.install_pem(*_certificate(400))
    assert "cert.server-expiring" not in _ids()


def test_a_client_certificate_expiring_soon_is_a_finding_until_removed(cast):
    pem, _ = _certificate(10)
    partner = cast.partner.user.partner
    assert "cert.expiring" not in _ids()
    made = credentials.add_certificate(partner, pem.decode(), origin=Origin(actor="test"))
    assert "cert.expiring" in _ids()
    credentials.remove_certificate(made, origin=Origin(actor="test"))
    assert "cert.expiring" not in _ids()


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
