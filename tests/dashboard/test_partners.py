"""Partners: list, detail, the one-pass new-partner flow and its connection sheet."""

from __future__ import annotations

import pytest
from django.conf import settings

from accounts import onboarding, services
from accounts.models import Partner, User
from audit.events import SYSTEM
from audit.models import AuditEvent
from mft import bootstrap
from mft.errors import InvalidInput
from mft.server_certificate import sha256_fingerprint
from tests import certs
from tests.dashboard.conftest import store

pytestmark = pytest.mark.django_db(transaction=True)

NEW = {"name": "Globex", "contact_name": "Hank Scorpio", "contact_email": "hank@globex.test",
       "contact_phone": "", "username": "globex-ftp", "login_method": "password",
       "quota_mb": "100", "quota_files": "", "certificate_pem": "", "pgp_key": ""}


@pytest.fixture
def certificate_file() -> None:
    bootstrap.ensure_certificate()


def test_list_shows_partners_with_their_user_counts(admin_client, cast):
    page = admin_client.get("/partners/").content.decode()
    assert "Acme Corp" in page and "Other Ltd" in page
    assert '<td class="num">1</td>' in page


def test_detail_shows_users_certificates_and_recent_files(admin_client, cast, tmp_path):
    certs.register(cast.partner.user, certs.make(tmp_path, "acme-client"))
    store(cast.partner.user, "/invoice.csv")
    page = admin_client.get(f"/partners/{cast.partner.user.partner_id}/").content.decode()
    alice = cast.partner.user.pk
    assert f'<a href="/users/{alice}/">alice</a>' in page and "acme-client" in page
    assert "/invoice.csv" in page


def test_detail_shows_recent_activity_of_the_partners_users(admin_client, cast):
    store(cast.partner.user, "/invoice.csv")
    page = admin_client.get(f"/partners/{cast.partner.user.partner_id}/").content.decode()
    assert "<strong>upload</strong> alice" in page


def test_new_partner_creates_the_partner_and_its_user(admin_client, certificate_file):
    admin_client.post("/partners/new/", NEW)
    partner = Partner.objects.get(name="Globex")
    user = User.objects.get(username="globex-ftp")
    assert user.partner == partner and user.role == User.Role.PARTNER
    assert user.quota_bytes == 100 * 1024 * 1024 and user.allowed_protocols == ["ftps"]


def test_new_partner_shows_a_working_password_once(admin_client, certificate_file):
    page = admin_client.post("/partners/new/", NEW)
    assert "no-store" in page["Cache-Control"]
    password = page.context["password"]
    assert password and f'id="sheet-password">{password}<' in page.content.decode()
    user = services.login(services.LoginAttempt("globex-ftp", password, "ftps", "127.0.0.1"))
    assert user.username == "globex-ftp"


def test_new_partner_ends_on_a_connection_sheet(admin_client, certificate_file):
    page = admin_client.post("/partners/new/", NEW).content.decode()
    low, high = settings.PASSIVE_PORTS
    assert f"port {settings.FTPS_PORT}" in page and f"port {settings.FTPS_IMPLICIT_PORT}" in page
    assert f"{low}\u2013{high}" in page  # an en dash
    assert sha256_fingerprint(settings.TLS_CERT_FILE) in page
    for client_name in ("FileZilla", "WinSCP", "curl"):
        assert client_name in page


def test_connection_sheet_later_never_shows_the_password(admin_client, certificate_file):
    page = admin_client.post("/partners/new/", NEW)
    password = page.context["password"]
    partner = Partner.objects.get(name="Globex")
    later = admin_client.get(f"/partners/{partner.pk}/connection/globex-ftp/").content.decode()
    assert password not in later and 'id="sheet-password-hidden"' in later


def test_new_partner_is_audited_with_its_values(admin_client, certificate_file):
    admin_client.post("/partners/new/", NEW)
    event = AuditEvent.objects.get(action="partner.create")
    assert event.actor == "root-admin" and event.details["after"]["name"] == "Globex"
    assert AuditEvent.objects.filter(action="user.create", object_repr="globex-ftp").exists()


def test_new_partner_with_a_taken_name_creates_nothing(admin_client, cast):
    page = admin_client.post("/partners/new/", {**NEW, "name": "Acme Corp"}).content
    assert b"already exists" in page
    assert not User.objects.filter(username="globex-ftp").exists()


def test_new_partner_with_a_bad_certificate_creates_nothing(admin_client):
    page = admin_client.post("/partners/new/", {**NEW, "certificate_pem": "not a certificate"})
    assert b"PEM certificate" in page.content
    assert not Partner.objects.filter(name="Globex").exists()


def test_new_partner_with_a_certificate_registers_it_for_the_user(admin_client, tmp_path,
                                                                  certificate_file):
    credential = certs.make(tmp_path, "globex-client")
    admin_client.post("/partners/new/", {**NEW, "certificate_pem": credential.pem,
                                         "login_method": "password+certificate"})
    user = User.objects.get(username="globex-ftp")
    assert user.login_method == "password+certificate"
    assert user.certificates.get().fingerprint_sha256 == certs.fingerprint(credential)


def test_certificate_login_without_a_certificate_is_refused(db):
    with pytest.raises(InvalidInput):
        onboarding.onboard_partner(
            onboarding.PartnerDetails(name="Initech"),
            onboarding.FirstUser(username="initech", login_method="certificate"),
            origin=SYSTEM)
    assert not Partner.objects.filter(name="Initech").exists()


def test_server_certificate_download_holds_no_private_key(admin_client, certificate_file):
    response = admin_client.get("/connection/server-certificate.pem")
    assert response.status_code == 200
    assert b"BEGIN CERTIFICATE" in response.content and b"PRIVATE KEY" not in response.content
