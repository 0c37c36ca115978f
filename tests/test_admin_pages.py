"""The interim admin pages render and never let an audit event be changed."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Ban
from audit.models import AuditEvent
from tests.dashboard.conftest import verified_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(cast) -> Client:
    client = Client()
    verified_session(client, cast.admin.user)
    return client


def test_admin_login_goes_through_the_dashboard_login():
    response = Client().get("/admin/login/?next=/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_admin_without_the_second_factor_is_not_let_in(cast):
    client = Client()
    client.force_login(cast.admin.user)  # password only: no verified TOTP device
    response = client.get("/admin/accounts/partner/")
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("page", ["accounts/partner/", "accounts/user/", "transfers/storedfile/",
                                  "audit/auditevent/", "accounts/ban/"])
def test_admin_list_pages_render(admin_client, page):
    assert admin_client.get(f"/admin/{page}").status_code == 200


def test_audit_events_offer_no_delete_or_change(admin_client):
    event = AuditEvent.objects.first()
    assert event is not None
    page = admin_client.get(f"/admin/audit/auditevent/{event.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client.post(f"/admin/audit/auditevent/{event.pk}/delete/").status_code == 403


def test_admin_lifts_a_ban_through_the_service(admin_client):
    from datetime import timedelta

    from django.utils import timezone

    ban = Ban.objects.create(address="192.0.2.7", reason="test",
                             expires_at=timezone.now() + timedelta(hours=1))
    admin_client.post("/admin/accounts/ban/", {"action": "lift", "_selected_action": [ban.pk]})
    ban.refresh_from_db()
    assert ban.lifted_at is not None and ban.lifted_by == "root-admin"
    assert AuditEvent.objects.filter(action="ban.lift").exists()
