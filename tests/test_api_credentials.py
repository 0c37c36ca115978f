"""Client certificates and PGP keys over the API: parsed, validated, audited, per partner."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.models import ClientCertificate, PgpKey
from audit.models import AuditEvent
from tests import certs
from tests.api_client import client_for, fresh_throttles  # noqa: F401
from transfers import pgp

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def keyring() -> Iterator[pgp.Keyring]:
    """Return a throwaway GnuPG keyring (short path: gpg-agent's socket must fit)."""
    with tempfile.TemporaryDirectory(prefix="pk", dir="/tmp") as home:
        ring = pgp.Keyring(Path(home) / "g", s2k_count=65536)
        yield ring
        ring.stop_agent()


def _public_key(ring: pgp.Keyring, **options: Any) -> str:
    fingerprint = ring.generate_platform_key("Acme", "ops@acme.example", None, **options)
    return ring.export_public(fingerprint)


def _add_cert(cast, pem: str, **extra):
    body = {"partner": cast.partner.user.partner.pk, "pem": pem, **extra}
    return client_for(cast.admin.user, "admin").post("/api/v1/certificates/", body,
                                                     format="json")


def test_a_certificate_is_parsed_and_its_expiry_shown(cast, tmp_path):
    credential = certs.make(tmp_path, "acme-client")
    response = _add_cert(cast, credential.pem)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["fingerprint_sha256"] == certs.fingerprint(credential)
    assert body["not_after"].startswith(credential.cert.not_valid_after_utc.date().isoformat())
    assert body["expired"] is False and "CN=acme-client" in body["subject"]


def test_an_expired_certificate_is_refused_with_a_clear_400(cast, tmp_path):
    response = _add_cert(cast, certs.make(tmp_path, "old", days=(-30, -1)).pem)
    assert response.status_code == 400
    assert "expired" in response.json()["detail"]
    assert not ClientCertificate.objects.exists()


def test_text_that_is_not_a_certificate_is_a_400(cast):
    response = _add_cert(cast, "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----")
    assert response.status_code == 400


def test_a_private_key_is_refused(cast, tmp_path):
    credential = certs.make(tmp_path, "acme-client")
    response = _add_cert(cast, credential.pem + Path(credential.key_path).read_text())
    assert response.status_code == 400
    assert "private key" in response.json()["detail"]


def test_the_same_certificate_twice_is_a_409(cast, tmp_path):
    pem = certs.make(tmp_path, "acme-client").pem
    _add_cert(cast, pem)
    assert _add_cert(cast, pem).status_code == 409


def test_a_certificate_for_a_user_of_another_partner_is_a_400(cast, tmp_path):
    response = _add_cert(cast, certs.make(tmp_path, "x").pem, user=cast.outsider.user.pk)
    assert response.status_code == 400


def test_adding_and_removing_a_certificate_is_audited(cast, tmp_path):
    cert_id = _add_cert(cast, certs.make(tmp_path, "acme-client").pem).json()["id"]
    response = client_for(cast.admin.user, "admin").delete(f"/api/v1/certificates/{cert_id}/")
    assert response.status_code == 204
    added = AuditEvent.objects.get(action="certificate.add")
    removed = AuditEvent.objects.get(action="certificate.remove")
    assert added.details["after"]["fingerprint_sha256"] == (
        removed.details["before"]["fingerprint_sha256"])


def test_a_partner_token_cannot_register_a_certificate(cast, tmp_path):
    response = client_for(cast.partner.user, "transfer").post(
        "/api/v1/certificates/",
        {"partner": cast.partner.user.partner.pk, "pem": certs.make(tmp_path, "x").pem},
        format="json")
    assert response.status_code == 403


def test_a_partner_token_lists_only_its_partners_certificates(cast, tmp_path):
    _add_cert(cast, certs.make(tmp_path, "mine").pem)
    client_for(cast.admin.user, "admin").post(
        "/api/v1/certificates/",
        {"partner": cast.outsider.user.partner.pk, "pem": certs.make(tmp_path, "theirs").pem},
        format="json")
    rows = client_for(cast.partner.user, "read").get("/api/v1/certificates/").json()["results"]
    assert [("CN=mine" in row["subject"]) for row in rows] == [True]


def test_a_pgp_key_is_stored_with_fingerprint_user_ids_and_expiry(cast, keyring):
    armored = _public_key(keyring, valid_days=30)
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/pgp-keys/", {"partner": cast.partner.user.partner.pk, "armored": armored},
        format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert len(body["fingerprint"]) == 40 and body["expires_at"]
    assert body["user_ids"] == ["Acme <ops@acme.example>"]
    assert PgpKey.objects.get().fingerprint == body["fingerprint"]


def test_a_pgp_key_addition_is_audited(cast, keyring):
    client_for(cast.admin.user, "admin").post(
        "/api/v1/pgp-keys/",
        {"partner": cast.partner.user.partner.pk, "armored": _public_key(keyring)},
        format="json")
    event = AuditEvent.objects.get(action="pgp_key.add")
    assert event.details["after"]["fingerprint"] == PgpKey.objects.get().fingerprint


def test_text_that_is_not_a_pgp_key_is_a_400(cast):
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/pgp-keys/", {"partner": cast.partner.user.partner.pk, "armored": "hello"},
        format="json")
    assert response.status_code == 400
    assert "OpenPGP" in response.json()["detail"]


def test_removing_a_pgp_key_is_a_204(cast, keyring):
    admin = client_for(cast.admin.user, "admin")
    key_id = admin.post(
        "/api/v1/pgp-keys/",
        {"partner": cast.partner.user.partner.pk, "armored": _public_key(keyring)},
        format="json").json()["id"]
    assert admin.delete(f"/api/v1/pgp-keys/{key_id}/").status_code == 204
    assert not PgpKey.objects.exists()
