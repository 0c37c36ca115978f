"""The dashboard session times out: an idle session past its age is signed out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)


def _age_session(client, by: timedelta) -> None:  # type: ignore[no-untyped-def]
    """Move the client's session expiry back, as if it had been idle that long."""
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - by)


def test_an_idle_session_past_the_timeout_is_sent_to_login(admin_client):
    assert admin_client.get("/").status_code == 200
    _age_session(admin_client, timedelta(seconds=1))
    response = admin_client.get("/files/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_each_request_renews_the_timeout(admin_client):
    admin_client.get("/")
    key = admin_client.cookies[settings.SESSION_COOKIE_NAME].value
    Session.objects.filter(session_key=key).update(
        expire_date=timezone.now() + timedelta(seconds=30))
    admin_client.get("/files/")
    renewed = Session.objects.get(session_key=key).expire_date - timezone.now()
    assert renewed > timedelta(seconds=settings.SESSION_COOKIE_AGE - 60)
