"""Deliveries over the API: endpoints (secrets never shown), routes, pulls, receipts,
attempts, re-send; configuration is the admin's, receipts are readable per partner."""

from __future__ import annotations

import secrets

import pytest

from accounts.models import Partner
from audit.events import Origin
from audit.models import AuditEvent
from deliveries import routing, services
from deliveries.models import Delivery, PartnerEndpoint
from tests.api_client import client_for, fresh_throttles, make_ready, store  # noqa: F401
from tests.deliveries_support import broker  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)
ENDPOINT_PASSWORD = "Endpoint-" + secrets.token_urlsafe(12)

PIN = "ab" * 32
ADMIN = Origin(actor="root-admin", protocol="test")


def _endpoint(partner: Partner, name: str = "acme-ftps") -> PartnerEndpoint:
    return services.create_endpoint(partner=partner, name=name, host="ftp.acme.example",
                                    username="portside", password=ENDPOINT_PASSWORD,
                                    pinned_sha256=PIN)


def _delivery(cast, settings, broker) -> Delivery:  # noqa: F811
    endpoint = _endpoint(cast.partner.user.partner)
    route = services.create_route(name="to-acme", endpoint=endpoint,
                                  source_user=cast.partner.user)
    stored = make_ready(store(cast.partner.user, "/out/r.csv", b"receipt"), settings)
    delivery = routing.create_delivery(route, stored)
    assert delivery is not None
    return delivery


def test_admin_creates_an_endpoint_and_never_sees_its_password(cast):
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/endpoints/",
        {"partner": cast.partner.user.partner.pk, "name": "acme", "host": "ftp.acme.example",
         "username": "portside", "password": ENDPOINT_PASSWORD, "pinned_sha256": PIN},
        format="json")
    assert response.status_code == 201, response.content
    assert response.json()["password_set"] is True
    assert ENDPOINT_PASSWORD not in response.content.decode()
    assert "password" not in response.json()


def test_listing_endpoints_shows_no_secret(cast):
    endpoint = _endpoint(cast.partner.user.partner)
    body = client_for(cast.admin.user, "read").get("/api/v1/endpoints/").content.decode()
    assert ENDPOINT_PASSWORD not in body and endpoint.password_secret not in body


def test_an_endpoint_without_tls_verification_is_a_400(cast):
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/endpoints/",
        {"partner": cast.partner.user.partner.pk, "name": "acme", "host": "ftp.acme.example",
         "username": "portside", "password": ENDPOINT_PASSWORD}, format="json")
    assert response.status_code == 400
    assert "verification" in response.json()["detail"]


def test_a_partner_token_sees_only_its_partners_endpoints(cast):
    _endpoint(cast.partner.user.partner, "mine")
    _endpoint(cast.outsider.user.partner, "theirs")
    rows = client_for(cast.partner.user, "read").get("/api/v1/endpoints/").json()["results"]
    assert [row["name"] for row in rows] == ["mine"]


def test_a_partner_token_cannot_change_an_endpoint(cast):
    endpoint = _endpoint(cast.partner.user.partner)
    response = client_for(cast.partner.user, "transfer").patch(
        f"/api/v1/endpoints/{endpoint.pk}/", {"host": "evil.example"}, format="json")
    assert response.status_code == 403


def test_admin_creates_a_route_and_its_change_is_audited(cast):
    endpoint = _endpoint(cast.partner.user.partner)
    admin = client_for(cast.admin.user, "admin")
    made = admin.post("/api/v1/routes/", {"name": "r1", "endpoint": endpoint.pk,
                                          "source_user": cast.partner.user.pk}, format="json")
    assert made.status_code == 201, made.content
    changed = admin.patch(f"/api/v1/routes/{made.json()['id']}/",
                          {"filename_pattern": "*.csv"}, format="json")
    assert changed.status_code == 200
    event = AuditEvent.objects.get(action="route.update")
    assert (event.details["before"]["filename_pattern"],
            event.details["after"]["filename_pattern"]) == ("*", "*.csv")


def test_a_route_without_a_source_is_a_400(cast):
    endpoint = _endpoint(cast.partner.user.partner)
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/routes/", {"name": "r1", "endpoint": endpoint.pk}, format="json")
    assert response.status_code == 400


def test_a_scheduled_pull_is_created(cast):
    endpoint = _endpoint(cast.partner.user.partner)
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/pulls/", {"name": "p1", "endpoint": endpoint.pk,
                           "local_user": cast.partner.user.pk, "cron": "*/5 * * * *"},
        format="json")
    assert response.status_code == 201, response.content
    assert (response.json()["stable_seconds"], response.json()["min_age_seconds"]) == (10, 0)


def test_a_pulls_stability_check_is_set_and_bounded(cast):
    endpoint = _endpoint(cast.partner.user.partner)
    client = client_for(cast.admin.user, "admin")
    body = {"name": "p2", "endpoint": endpoint.pk, "local_user": cast.partner.user.pk,
            "cron": "0 * * * *", "stable_seconds": 30, "min_age_seconds": 300}
    response = client.post("/api/v1/pulls/", body, format="json")
    assert response.status_code == 201, response.content
    assert (response.json()["stable_seconds"], response.json()["min_age_seconds"]) == (30, 300)
    too_long = client.patch(f"/api/v1/pulls/{response.json()['id']}/",
                            {"stable_seconds": 3600}, format="json")
    assert too_long.status_code == 400


def test_a_delivery_receipt_shows_the_file_and_its_sha256(cast, settings, broker):  # noqa: F811
    delivery = _delivery(cast, settings, broker)
    body = client_for(cast.admin.user, "read").get(f"/api/v1/deliveries/{delivery.pk}/").json()
    assert body["source_sha256"] == delivery.stored_file.sha256
    assert (body["direction"], body["route"], body["partner"]) == ("push", "to-acme",
                                                                  "Acme Corp")


def test_deliveries_filter_by_status(cast, settings, broker):  # noqa: F811
    delivery = _delivery(cast, settings, broker)
    admin = client_for(cast.admin.user, "read")
    assert [r["id"] for r in admin.get("/api/v1/deliveries/?status=pending").json()[
        "results"]] == [delivery.pk]
    assert admin.get("/api/v1/deliveries/?status=failed").json()["results"] == []


def test_a_deliverys_attempts_are_listed(cast, settings, broker):  # noqa: F811
    delivery = _delivery(cast, settings, broker)
    response = client_for(cast.admin.user, "read").get(
        f"/api/v1/deliveries/{delivery.pk}/attempts/")
    assert response.status_code == 200 and response.json() == []


def test_resending_a_delivered_push_makes_a_new_delivery(cast, settings, broker):  # noqa: F811
    delivery = _delivery(cast, settings, broker)
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.DELIVERED)
    response = client_for(cast.admin.user, "admin").post(
        f"/api/v1/deliveries/{delivery.pk}/resend/")
    assert response.status_code == 201, response.content
    assert response.json()["resend_of"] == delivery.pk
    assert AuditEvent.objects.get(action="delivery.resend").actor == cast.admin.username


def test_resending_a_delivery_in_progress_is_a_409(cast, settings, broker):  # noqa: F811
    delivery = _delivery(cast, settings, broker)
    response = client_for(cast.admin.user, "admin").post(
        f"/api/v1/deliveries/{delivery.pk}/resend/")
    assert response.status_code == 409


def test_a_pending_delivery_is_cancelled(cast, settings, broker):  # noqa: F811
    delivery = _delivery(cast, settings, broker)
    response = client_for(cast.admin.user, "admin").post(
        f"/api/v1/deliveries/{delivery.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_a_partner_token_reads_its_receipts_but_cannot_resend(cast, settings, broker):  # noqa: F811
    delivery = _delivery(cast, settings, broker)
    client = client_for(cast.partner.user, "read", "transfer")
    assert client.get(f"/api/v1/deliveries/{delivery.pk}/").status_code == 200
    assert client.post(f"/api/v1/deliveries/{delivery.pk}/resend/").status_code == 403


def test_another_partners_receipts_are_hidden(cast, settings, broker):  # noqa: F811
    delivery = _delivery(cast, settings, broker)
    response = client_for(cast.outsider.user, "read").get(f"/api/v1/deliveries/{delivery.pk}/")
    assert response.status_code == 404


def test_receipts_export_as_csv_streams(cast, settings, broker):  # noqa: F811
    delivery = _delivery(cast, settings, broker)
    response = client_for(cast.admin.user, "read").get("/api/v1/deliveries/export/csv/")
    assert response.status_code == 200 and response.streaming
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("id,direction,status") and len(lines) == 2
    assert delivery.stored_file.sha256 in lines[1]
