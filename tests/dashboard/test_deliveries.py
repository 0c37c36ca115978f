"""Deliveries in the dashboard, after a real push to a stock FTPS server: the list with
filters, the receipt with its attempts, an audited re-send, and the receipts as CSV."""

from __future__ import annotations

import pytest

from accounts.models import User
from audit.models import AuditEvent
from deliveries import routing
from deliveries.models import Delivery
from tests.deliveries_support import arrival_route, partner_named, stock_endpoint, store

pytestmark = pytest.mark.django_db(transaction=True)
pytest_plugins = ["tests.deliveries_support"]  # its fixtures: broker, stock


@pytest.fixture
def delivered(cast, stock, broker) -> Delivery:  # type: ignore[no-untyped-def]
    """Return a push delivered to a stock pyftpdlib TLS server by the delivery task."""
    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"), name="bank-in")
    arrival_route(endpoint, cast.partner.user)
    stored = store(cast.partner.user, "/report.csv", b"a;b\n" * 500)
    routing.route_file(stored.pk)
    broker.drain()
    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.DELIVERED, delivery.last_error
    return delivery


def test_list_shows_the_delivery_and_filters_by_status(admin_client, delivered):
    page = admin_client.get("/deliveries/").content.decode()
    assert f'href="/deliveries/{delivered.pk}/"' in page and "bank-in" in page
    failed = admin_client.get("/deliveries/?status=failed").content.decode()
    assert f'href="/deliveries/{delivered.pk}/"' not in failed and "No delivery matches" in failed


def test_list_filters_by_partner_and_endpoint(admin_client, delivered, cast):
    other = cast.outsider.user.partner_id
    assert "No delivery matches" in admin_client.get(
        f"/deliveries/?partner={other}").content.decode()
    page = admin_client.get(f"/deliveries/?endpoint={delivered.endpoint_id}").content.decode()
    assert f'href="/deliveries/{delivered.pk}/"' in page


def test_detail_shows_the_receipt_and_each_attempt(admin_client, delivered):
    page = admin_client.get(f"/deliveries/{delivered.pk}/").content.decode()
    attempt = delivered.attempts_log.get()
    assert delivered.source_sha256 in page and delivered.remote_path in page
    attempts = page.split('id="attempts"')[1]
    assert f'<td class="num">{attempt.bytes_transferred}' in attempts
    assert attempt.remote_reply and attempt.remote_reply in attempts
    assert '<span class="badge good">Success</span>' in attempts


def test_resend_makes_a_new_audited_delivery(signed_in, delivered):
    response = signed_in(User.Role.OPERATOR).post(f"/deliveries/{delivered.pk}/resend/")
    again = Delivery.objects.exclude(pk=delivered.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/deliveries/{again.pk}/"
    assert again.resend_of_id == delivered.pk and again.requested_by == "operator-one"
    event = AuditEvent.objects.get(action="delivery.resend")
    assert event.actor == "operator-one" and event.details["original"] == delivered.pk


def test_resend_of_a_delivery_in_progress_is_refused_with_the_reason(admin_client, delivered):
    Delivery.objects.filter(pk=delivered.pk).update(status=Delivery.Status.WAITING)
    page = admin_client.post(f"/deliveries/{delivered.pk}/resend/", follow=True)
    assert b"still in progress" in page.content
    assert Delivery.objects.count() == 1 and not AuditEvent.objects.filter(
        action="delivery.resend").exists()


def test_auditor_reads_the_detail_without_a_resend_button(signed_in, delivered):
    auditor = signed_in(User.Role.AUDITOR)
    page = auditor.get(f"/deliveries/{delivered.pk}/")
    assert page.status_code == 200 and b'id="delivery-resend"' not in page.content
    assert auditor.post(f"/deliveries/{delivered.pk}/resend/").status_code == 403


def test_receipts_export_as_csv(admin_client, delivered):
    response = admin_client.get("/deliveries/export.csv?status=delivered")
    assert response.status_code == 200 and response.streaming
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("id,direction,status") and len(lines) == 2
    assert delivered.source_sha256 in lines[1] and ",delivered," in lines[1]


def test_filtering_with_htmx_swaps_the_table_and_its_export_link(admin_client, delivered):
    fragment = admin_client.get("/deliveries/?status=delivered", HTTP_HX_REQUEST="true")
    body = fragment.content.decode()
    assert "<html" not in body and f'href="/deliveries/{delivered.pk}/"' in body
    assert 'href="/deliveries/export.csv?status=delivered"' in body
