"""Bans over the API: list, lift (audited), install-wide only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import bans
from accounts.models import Ban
from audit.models import AuditEvent
from tests.api_client import client_for, fresh_throttles  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def _ban(address: str = "192.0.2.7") -> Ban:
    return Ban.objects.create(address=address, reason="5 failed logins",
                              expires_at=timezone.now() + timedelta(hours=1))


def test_admin_lists_active_bans(cast):
    live = _ban()
    Ban.objects.create(address="192.0.2.8", reason="old",
                       expires_at=timezone.now() - timedelta(hours=1))
    response = client_for(cast.admin.user, "read").get("/api/v1/bans/?active=true")
    assert [row["id"] for row in response.json()["results"]] == [live.pk]


def test_lifting_a_ban_lets_the_address_in_and_is_audited(cast):
    ban = _ban()
    response = client_for(cast.admin.user, "admin").post(f"/api/v1/bans/{ban.pk}/lift/")
    assert response.status_code == 200 and response.json()["active"] is False
    assert bans.active_ban("192.0.2.7") is None
    event = AuditEvent.objects.get(action="ban.lift")
    assert event.actor == cast.admin.username
    assert event.details["before"]["lifted_at"] is None
    assert event.details["after"]["lifted_by"] == cast.admin.username


def test_lifting_a_lifted_ban_is_a_409(cast):
    ban = _ban()
    admin = client_for(cast.admin.user, "admin")
    admin.post(f"/api/v1/bans/{ban.pk}/lift/")
    assert admin.post(f"/api/v1/bans/{ban.pk}/lift/").status_code == 409


def test_lifting_needs_the_admin_scope(cast):
    ban = _ban()
    response = client_for(cast.admin.user, "read").post(f"/api/v1/bans/{ban.pk}/lift/")
    assert response.status_code == 403


def test_a_partner_token_cannot_see_bans(cast):
    _ban()
    assert client_for(cast.partner.user, "read").get("/api/v1/bans/").status_code == 403


def test_bans_filter_by_address(cast):
    _ban("192.0.2.7")
    mine = _ban("198.51.100.1")
    response = client_for(cast.admin.user, "read").get("/api/v1/bans/?address=198.51.100.1")
    assert [row["id"] for row in response.json()["results"]] == [mine.pk]
