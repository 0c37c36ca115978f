"""Partners over the API: CRUD, suspend instead of delete, audit, partner-limited tokens."""

from __future__ import annotations

import os

import pytest

from accounts.models import Partner
from audit.models import AuditEvent
from tests.api_client import client_for, fresh_throttles, make_user  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def test_admin_creates_a_partner(cast):
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/partners/", {"name": "Globex", "contact_email": "ops@globex.example"},
        format="json")
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "Globex"
    assert Partner.objects.filter(name="Globex", status="active").exists()


def test_partner_creation_is_audited_with_the_values_after(cast):
    client_for(cast.admin.user, "admin").post("/api/v1/partners/", {"name": "Globex"},
                                              format="json")
    event = AuditEvent.objects.get(action="partner.create")
    assert event.actor == cast.admin.username
    assert event.details["after"]["name"] == "Globex"
    assert event.details["before"] == {}


def test_partner_change_is_audited_with_before_and_after(cast):
    partner = cast.partner.user.partner
    response = client_for(cast.admin.user, "admin").patch(
        f"/api/v1/partners/{partner.pk}/", {"contact_name": "Wile E."}, format="json")
    assert response.status_code == 200, response.content
    event = AuditEvent.objects.get(action="partner.update")
    assert event.details["before"]["contact_name"] == ""
    assert event.details["after"]["contact_name"] == "Wile E."


def test_a_duplicate_partner_name_is_a_409(cast):
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/partners/", {"name": "acme corp"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"


def test_deleting_a_partner_with_users_suspends_it(cast):
    partner = cast.partner.user.partner
    response = client_for(cast.admin.user, "admin").delete(f"/api/v1/partners/{partner.pk}/")
    assert response.status_code == 200
    assert response.json()["status"] == "suspended"
    partner.refresh_from_db()
    assert partner.status == Partner.Status.SUSPENDED
    event = AuditEvent.objects.get(action="partner.suspend")
    assert (event.details["before"]["status"], event.details["after"]["status"]) == (
        "active", "suspended")


def test_deleting_an_unused_partner_removes_it(cast):
    empty = Partner.objects.create(name="Empty Co")
    response = client_for(cast.admin.user, "admin").delete(f"/api/v1/partners/{empty.pk}/")
    assert response.status_code == 204
    assert not Partner.objects.filter(pk=empty.pk).exists()
    assert AuditEvent.objects.get(action="partner.delete").details["before"]["name"] == "Empty Co"


def test_a_partner_token_lists_only_its_own_partner(cast):
    response = client_for(cast.partner.user, "read").get("/api/v1/partners/")
    assert [row["name"] for row in response.json()["results"]] == ["Acme Corp"]


def test_a_partner_token_gets_404_for_another_partner(cast):
    other = cast.outsider.user.partner
    response = client_for(cast.partner.user, "read").get(f"/api/v1/partners/{other.pk}/")
    assert response.status_code == 404


def test_a_partner_token_cannot_change_its_partner(cast):
    partner = cast.partner.user.partner
    response = client_for(cast.partner.user, "transfer").patch(
        f"/api/v1/partners/{partner.pk}/", {"status": "active"}, format="json")
    assert response.status_code == 403


def test_a_read_token_cannot_create_a_partner(cast):
    response = client_for(cast.admin.user, "read").post(
        "/api/v1/partners/", {"name": "Globex"}, format="json")
    assert response.status_code == 403
    assert "admin" in response.json()["detail"]


def test_an_auditor_reads_partners_but_cannot_change_them(cast):
    auditor = make_user("audrey", "auditor")
    client = client_for(auditor, "read")
    assert client.get("/api/v1/partners/").status_code == 200
    assert client.post("/api/v1/partners/", {"name": "X"}, format="json").status_code == 403


def test_an_invalid_status_is_a_400_naming_the_field(cast):
    partner = cast.partner.user.partner
    response = client_for(cast.admin.user, "admin").patch(
        f"/api/v1/partners/{partner.pk}/", {"status": "paused"}, format="json")
    assert response.status_code == 400
    assert "status" in response.json()["errors"]


def test_partners_filter_by_status(cast):
    Partner.objects.filter(name="Other Ltd").update(status="suspended")
    response = client_for(cast.admin.user, "read").get("/api/v1/partners/?status=suspended")
    assert [row["name"] for row in response.json()["results"]] == ["Other Ltd"]


def test_a_partner_with_a_delivery_endpoint_is_suspended_not_deleted(cast):
    from accounts import partners
    from accounts.models import Partner
    from audit.events import Origin
    from deliveries import services as deliveries

    partner = Partner.objects.create(name="Endpoint Owner")
    deliveries.create_endpoint(partner=partner, name="sftp-out", host="127.0.0.1", port=2121,
                               username="u", password="P-" + os.urandom(6).hex(),
                               pinned_sha256="ab" * 32, origin=Origin(actor="t"))
    assert partners.remove_partner(partner, origin=Origin(actor="t")) is not None
    assert Partner.objects.get(pk=partner.pk).status == Partner.Status.SUSPENDED
