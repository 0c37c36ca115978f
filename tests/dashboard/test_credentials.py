"""Certificates and keys in the dashboard: expiry colours, uploads vetted by the credential
service (refusals are form errors, never a 500), removal, all audited."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import ClientCertificate, PgpKey
from audit.models import AuditEvent
from tests import certs
from transfers import pgp

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def keyring() -> Iterator[pgp.Keyring]:
    """Return a throwaway GnuPG keyring (short path: gpg-agent's socket must fit)."""
    with tempfile.TemporaryDirectory(prefix="dk", dir="/tmp") as home:
        ring = pgp.Keyring(Path(home) / "g", s2k_count=65536)
        yield ring
        ring.stop_agent()


def _certificate_form(cast, pem: str = "", **extra: object) -> dict[str, object]:
    return {"certificate-partner": cast.partner.user.partner_id, "certificate-user": "",
            "certificate-pem": pem, **extra}


def test_upload_registers_a_pasted_certificate_and_audits_it(admin_client, cast, tmp_path):
    credential = certs.make(tmp_path, "acme-client")
    response = admin_client.post("/credentials/certificates/",
                                 _certificate_form(cast, credential.pem))
    assert response.status_code == 302
    cert = ClientCertificate.objects.get()
    assert cert.fingerprint_sha256 == certs.fingerprint(credential)
    event = AuditEvent.objects.get(action="certificate.add")
    assert event.actor == "root-admin" and event.details["after"]["subject"] == cert.subject


def test_upload_accepts_a_pem_file(admin_client, cast, tmp_path):
    credential = certs.make(tmp_path, "acme-file")
    upload = SimpleUploadedFile("acme.pem", credential.pem.encode())
    admin_client.post("/credentials/certificates/",
                      _certificate_form(cast, **{"certificate-file": upload}))
    assert ClientCertificate.objects.get().fingerprint_sha256 == certs.fingerprint(credential)


def test_an_invalid_certificate_shows_a_form_error_not_a_500(admin_client, cast):
    page = admin_client.post("/credentials/certificates/", _certificate_form(
        cast, "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----"))
    assert page.status_code == 200
    assert b"not a PEM X.509 certificate" in page.content and b'role="alert"' in page.content
    assert not ClientCertificate.objects.exists()


def test_an_expired_certificate_is_refused_with_its_date(admin_client, cast, tmp_path):
    old = certs.make(tmp_path, "old", days=(-30, -1))
    page = admin_client.post("/credentials/certificates/", _certificate_form(cast, old.pem))
    assert b"expired on" in page.content and not ClientCertificate.objects.exists()


def test_a_binary_file_is_refused_on_the_form(admin_client, cast):
    upload = SimpleUploadedFile("acme.der", b"\x30\x82\x01\xff\xfe")
    page = admin_client.post("/credentials/certificates/",
                             _certificate_form(cast, **{"certificate-file": upload}))
    assert page.status_code == 200 and b"the file is not text" in page.content


def test_expiry_is_coloured_within_30_days_and_plain_later(admin_client, cast, tmp_path):
    certs.register(cast.partner.user, certs.make(tmp_path, "soon", days=(-1, 10)))
    certs.register(cast.outsider.user, certs.make(tmp_path, "later", days=(-1, 200)))
    page = admin_client.get("/credentials/").content.decode()
    soon, later = (ClientCertificate.objects.get(subject__contains=name) for name in
                   ("soon", "later"))
    soon_row = page.split(f'id="certificate-{soon.pk}"')[1].split("</tr>")[0]
    later_row = page.split(f'id="certificate-{later.pk}"')[1].split("</tr>")[0]
    assert 'class="badge warn"' in soon_row and "left" in soon_row
    assert "badge" not in later_row


def test_removing_a_certificate_is_audited(admin_client, cast, tmp_path):
    cert = certs.register(cast.partner.user, certs.make(tmp_path, "gone"))
    admin_client.post(f"/credentials/certificates/{cert.pk}/remove/")
    assert not ClientCertificate.objects.exists()
    event = AuditEvent.objects.get(action="certificate.remove")
    assert event.details["before"]["fingerprint_sha256"] == cert.fingerprint_sha256


def test_a_pgp_key_is_added_and_removed(admin_client, cast, keyring):
    fingerprint = keyring.generate_platform_key("Acme", "ops@acme.example", None,
                                                valid_days=20)
    armored = keyring.export_public(fingerprint)
    admin_client.post("/credentials/pgp-keys/", {"pgp-partner": cast.partner.user.partner_id,
                                                 "pgp-armored": armored})
    key = PgpKey.objects.get()
    page = admin_client.get("/credentials/").content.decode()
    row = page.split(f'id="pgp-key-{key.pk}"')[1].split("</tr>")[0]
    assert 'class="badge warn"' in row  # expires within 30 days
    admin_client.post(f"/credentials/pgp-keys/{key.pk}/remove/")
    assert not PgpKey.objects.exists()
    assert list(AuditEvent.objects.filter(action__startswith="pgp_key.").values_list(
        "action", flat=True)) == ["pgp_key.add", "pgp_key.remove"]


def test_text_that_is_not_a_pgp_key_is_a_form_error(admin_client, cast):
    page = admin_client.post("/credentials/pgp-keys/", {
        "pgp-partner": cast.partner.user.partner_id, "pgp-armored": "hello"})
    assert page.status_code == 200 and b'role="alert"' in page.content
    assert not PgpKey.objects.exists()
