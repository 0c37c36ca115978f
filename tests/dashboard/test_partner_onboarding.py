"""The new-partner flow's optional parts: a PGP key, and routes for the first user's uploads."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from accounts.models import Partner, PgpKey
from audit.models import AuditEvent
from deliveries.models import Route
from mft import bootstrap
from tests.deliveries_support import partner_named, stock_endpoint
from transfers import pgp

pytestmark = pytest.mark.django_db(transaction=True)
pytest_plugins = ["tests.deliveries_support"]  # its fixtures: stock

NEW = {"name": "Globex", "contact_name": "", "contact_email": "", "contact_phone": "",
       "username": "globex-ftp", "login_method": "password", "quota_mb": "",
       "quota_files": "", "certificate_pem": "", "pgp_key": ""}


@pytest.fixture(autouse=True)
def certificate_file() -> None:
    bootstrap.ensure_certificate()


@pytest.fixture
def endpoint(cast, stock):  # type: ignore[no-untyped-def]
    """Return an endpoint of another partner (a bank) on a real stock FTPS server."""
    return stock_endpoint(stock(), partner_named("Bank Ltd"), name="bank-in")


@pytest.fixture
def armored_key() -> Iterator[str]:
    """Return a throwaway partner PGP public key (short keyring path for gpg-agent)."""
    with tempfile.TemporaryDirectory(prefix="dk", dir="/tmp") as home:
        ring = pgp.Keyring(Path(home) / "g", s2k_count=65536)
        fingerprint = ring.generate_platform_key("Globex", "ops@globex.example", None,
                                                 valid_days=200)
        yield ring.export_public(fingerprint)
        ring.stop_agent()


def test_new_partner_offers_the_enabled_endpoints_as_routes(admin_client, endpoint):
    page = admin_client.get("/partners/new/").content.decode()
    assert f'name="routes" value="{endpoint.pk}"' in page and "Bank Ltd / bank-in" in page


def test_new_partner_routes_its_users_uploads_to_the_chosen_endpoint(admin_client, endpoint):
    admin_client.post("/partners/new/", {**NEW, "routes": [endpoint.pk]})
    route = Route.objects.get()
    assert (route.endpoint, route.source_user.username) == (endpoint, "globex-ftp")
    event = AuditEvent.objects.get(action="route.create")
    assert event.actor == "root-admin" and event.details["after"]["name"] == route.name


def test_new_partner_detail_lists_the_routes_of_its_users(admin_client, endpoint):
    admin_client.post("/partners/new/", {**NEW, "routes": [endpoint.pk]})
    partner = Partner.objects.get(name="Globex")
    page = admin_client.get(f"/partners/{partner.pk}/").content.decode()
    outgoing = page.split('id="outgoing-routes"')[1].split("</section>")[0]
    assert "globex-ftp to bank-in" in outgoing and "Bank Ltd / bank-in" in outgoing


def test_a_refused_route_leaves_no_partner_behind(admin_client, endpoint, cast):
    Route.objects.create(name="globex-ftp to bank-in", endpoint=endpoint,
                         source_user=cast.partner.user)
    page = admin_client.post("/partners/new/", {**NEW, "routes": [endpoint.pk]}).content
    assert not Partner.objects.filter(name="Globex").exists(), page.decode()[:2000]


def test_new_partner_registers_its_pgp_key(admin_client, armored_key):
    admin_client.post("/partners/new/", {**NEW, "pgp_key": armored_key})
    key = PgpKey.objects.get()
    assert key.partner.name == "Globex"
    assert AuditEvent.objects.filter(action="pgp_key.add").exists()


def test_partner_detail_lists_its_own_endpoints_and_their_routes(admin_client, endpoint, cast):
    Route.objects.create(name="acme to bank", endpoint=endpoint, source_user=cast.partner.user)
    page = admin_client.get(f"/partners/{endpoint.partner_id}/").content.decode()
    section = page.split('id="endpoints-title"')[1].split("</section>")[0]
    assert "bank-in" in section and f"127.0.0.1:{endpoint.port}" in section
    assert "acme to bank" in section
