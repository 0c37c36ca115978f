"""The compliance posture and the server certificate over the REST API."""

from __future__ import annotations

import base64
import datetime
import secrets

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.conf import settings as live_settings

from accounts.models import User
from audit.models import AuditEvent
from mft import server_certificate as certificate
from tests.api_client import client_for, fresh_throttles, make_user  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def _pair(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=60))
            .sign(key, hashes.SHA256()))
    return cert, key


def _pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


# --- posture ----------------------------------------------------------------------------------

def test_findings_list_severity_and_controls(cast, settings):
    settings.SCAN_MODE = "off"
    response = client_for(cast.admin.user, "read").get("/api/v1/posture/")
    assert response.status_code == 200
    found = {f["id"]: f for f in response.json()}
    assert found["scan.off"]["severity"] == "high"
    assert "PCI DSS 5.2.1" in found["scan.off"]["controls"]
    assert found["scan.off"]["accepted"] is None


def test_an_admin_accepts_a_finding_with_a_justification_audited(cast, settings):
    settings.SCAN_MODE = "off"
    client = client_for(cast.admin.user, "admin")
    short = client.post("/api/v1/posture/scan.off/accept/", {"justification": "ok"},
                        format="json")
    assert short.status_code == 400
    response = client.post("/api/v1/posture/scan.off/accept/",
                           {"justification": "isolated lab, no partner data"}, format="json")
    assert response.status_code == 200
    assert response.json()["accepted"]["by"] == cast.admin.username
    event = AuditEvent.objects.get(action="posture.accept")
    assert event.protocol == "https" and event.actor == cast.admin.username


def test_accepting_a_finding_that_is_not_present_is_404(cast):
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/posture/scan.off/accept/", {"justification": "nothing to accept here"},
        format="json")
    assert response.status_code == 404


def test_an_auditor_reads_the_posture_but_cannot_accept(cast, settings):
    settings.SCAN_MODE = "off"
    auditor = make_user("aaron-auditor", User.Role.AUDITOR)
    client = client_for(auditor, "read")
    assert client.get("/api/v1/posture/").status_code == 200
    assert client.post("/api/v1/posture/scan.off/accept/",
                       {"justification": "auditors may not accept"},
                       format="json").status_code == 403


def test_a_partner_token_cannot_read_the_posture(cast):
    response = client_for(cast.partner.user, "read").get("/api/v1/posture/")
    assert response.status_code == 403


# --- server certificate -----------------------------------------------------------------------

def test_the_installed_certificate_is_shown(cast):
    certificate.generate(["shown.example"], origin=certificate.events.SYSTEM)
    body = client_for(cast.admin.user, "read").get("/api/v1/server-certificate/").json()
    assert "CN=shown.example" in body["subject"]
    assert body["sha256"] == certificate.sha256_fingerprint(live_settings.TLS_CERT_FILE)


def test_a_pem_pair_replaces_the_certificate_and_is_audited(cast):
    cert_pem, key_pem = _pem(*_pair("pem.example"))
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/server-certificate/", {"certificate": cert_pem, "key": key_pem},
        format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["subject"] == "CN=pem.example"
    assert live_settings.TLS_CERT_FILE.read_text() == cert_pem
    event = AuditEvent.objects.filter(action="certificate.replace").latest("id")
    assert event.actor == cast.admin.username and event.details["after"]["how"] == "pem"


def test_a_pkcs12_bundle_with_its_password_replaces_the_certificate(cast):
    cert, key = _pair("p12.example")
    password = secrets.token_urlsafe(12)
    bundle = pkcs12.serialize_key_and_certificates(
        b"portside", key, cert, None,
        serialization.BestAvailableEncryption(password.encode()))
    client = client_for(cast.admin.user, "admin")
    wrong = client.post("/api/v1/server-certificate/",
                        {"pkcs12": base64.b64encode(bundle).decode(), "password": "wrong"},
                        format="json")
    assert wrong.status_code == 400
    response = client.post("/api/v1/server-certificate/",
                           {"pkcs12": base64.b64encode(bundle).decode(),
                            "password": password}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["subject"] == "CN=p12.example"


def test_a_generated_certificate_carries_the_names_asked_for(cast):
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/server-certificate/", {"generate": ["ftps.example.com", "192.0.2.7"]},
        format="json")
    assert response.status_code == 200
    cert = x509.load_pem_x509_certificate(live_settings.TLS_CERT_FILE.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "ftps.example.com" in names.get_values_for_type(x509.DNSName)


def test_a_key_that_does_not_match_is_refused_and_nothing_changes(cast):
    certificate.generate(["before.example"], origin=certificate.events.SYSTEM)
    before = live_settings.TLS_CERT_FILE.read_bytes()
    cert_pem, _ = _pem(*_pair("one.example"))
    _, other_key = _pem(*_pair("two.example"))
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/server-certificate/", {"certificate": cert_pem, "key": other_key},
        format="json")
    assert response.status_code == 400 and "does not match" in response.json()["detail"]
    assert live_settings.TLS_CERT_FILE.read_bytes() == before


def test_only_admins_replace_the_certificate(cast):
    operator = make_user("olivia-operator", User.Role.OPERATOR)
    response = client_for(operator, "read", "transfer").post(
        "/api/v1/server-certificate/", {"generate": ["x.example"]}, format="json")
    assert response.status_code == 403
    partner = client_for(cast.partner.user, "read").get("/api/v1/server-certificate/")
    assert partner.status_code == 403
