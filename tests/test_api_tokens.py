"""API tokens over the API: secret shown once, never listed, revoked at once; who sees what."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import tokens
from accounts.models import ApiToken
from audit.models import AuditEvent
from tests.api_client import (  # noqa: F401
    allow_https,
    bearer_client,
    client_for,
    fresh_throttles,
    token_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_creating_a_token_shows_its_secret_once(cast):
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/tokens/", {"scopes": ["read"], "name": "erp"}, format="json")
    assert response.status_code == 201, response.content
    secret = response.json()["secret"]
    assert secret.startswith("pst_")
    assert bearer_client(secret).get("/api/v1/files/").status_code == 200


def test_listing_tokens_never_shows_a_secret(cast):
    admin = client_for(cast.admin.user, "admin")
    secret = admin.post("/api/v1/tokens/", {"scopes": ["read"]}, format="json").json()["secret"]
    listing = admin.get("/api/v1/tokens/")
    assert listing.status_code == 200
    assert secret not in listing.content.decode()
    assert all("secret" not in row for row in listing.json()["results"])


def test_showing_a_token_never_shows_its_secret(cast):
    admin = client_for(cast.admin.user, "admin")
    made = admin.post("/api/v1/tokens/", {"scopes": ["read"]}, format="json").json()
    shown = admin.get(f"/api/v1/tokens/{made['id']}/")
    assert "secret" not in shown.json() and made["secret"] not in shown.content.decode()


def test_the_secret_is_stored_only_as_a_digest(cast):
    admin = client_for(cast.admin.user, "admin")
    made = admin.post("/api/v1/tokens/", {"scopes": ["read"]}, format="json").json()
    row = ApiToken.objects.get(pk=made["id"])
    assert made["secret"] not in (row.digest, row.prefix)


def test_a_revoked_token_stops_working_at_once(cast):
    secret = token_for(cast.partner.user, "read")
    token = ApiToken.objects.get(user=cast.partner.user)
    response = client_for(cast.admin.user, "admin").post(f"/api/v1/tokens/{token.pk}/revoke/")
    assert response.status_code == 200 and response.json()["revoked_at"]
    assert bearer_client(secret).get("/api/v1/files/").status_code == 401


def test_revocation_is_audited(cast):
    secret = token_for(cast.partner.user, "read")
    token = ApiToken.objects.get(user=cast.partner.user)
    bearer_client(secret).post(f"/api/v1/tokens/{token.pk}/revoke/")
    event = AuditEvent.objects.get(action="token.revoke")
    assert event.actor == "alice" and event.object_id == str(token.pk)


def test_a_token_may_revoke_itself_with_the_read_scope(cast):
    secret = token_for(cast.partner.user, "read")
    token = ApiToken.objects.get(user=cast.partner.user)
    assert bearer_client(secret).post(f"/api/v1/tokens/{token.pk}/revoke/").status_code == 200


def test_revoking_twice_is_a_409(cast):
    admin = client_for(cast.admin.user, "admin")
    token = ApiToken.objects.get(user=cast.admin.user)
    token_for(cast.partner.user, "read")
    other = ApiToken.objects.get(user=cast.partner.user)
    assert admin.post(f"/api/v1/tokens/{other.pk}/revoke/").status_code == 200
    assert admin.post(f"/api/v1/tokens/{other.pk}/revoke/").status_code == 409
    assert token.revoked_at is None


def test_a_partner_token_sees_only_its_own_tokens(cast):
    token_for(cast.outsider.user, "read")
    response = client_for(cast.partner.user, "read").get("/api/v1/tokens/")
    assert {row["username"] for row in response.json()["results"]} == {"alice"}


def test_a_non_admin_cannot_revoke_another_users_token(cast):
    token_for(cast.outsider.user, "read")
    other = ApiToken.objects.get(user=cast.outsider.user)
    response = client_for(cast.partner.user, "read").post(f"/api/v1/tokens/{other.pk}/revoke/")
    assert response.status_code == 404
    other.refresh_from_db()
    assert other.revoked_at is None


def test_creating_a_token_needs_the_admin_scope(cast):
    response = client_for(cast.partner.user, "read").post(
        "/api/v1/tokens/", {"scopes": ["read"]}, format="json")
    assert response.status_code == 403


def test_admin_creates_a_token_for_another_user(cast):
    allow_https(cast.partner.user)
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/tokens/", {"scopes": ["transfer"], "user": cast.partner.user.pk},
        format="json")
    assert response.status_code == 201
    assert response.json()["username"] == "alice"


def test_a_partner_user_cannot_be_given_the_admin_scope(cast):
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/tokens/", {"scopes": ["admin"], "user": cast.partner.user.pk}, format="json")
    assert response.status_code == 400


def test_an_unknown_scope_is_a_400_naming_the_field(cast):
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/tokens/", {"scopes": ["root"]}, format="json")
    assert response.status_code == 400
    assert "scopes" in response.json()["errors"]


def test_an_expiry_in_the_past_is_a_400(cast):
    response = client_for(cast.admin.user, "admin").post(
        "/api/v1/tokens/", {"scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"},
        format="json")
    assert response.status_code == 400
    assert "expires_at" in response.json()["errors"]


def test_an_expired_token_is_a_401(cast):
    secret = token_for(cast.admin.user, "read",
                       expires_at=timezone.now() + timedelta(seconds=1))
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert bearer_client(secret).get("/api/v1/files/").status_code == 401


def test_a_token_from_outside_its_allow_list_is_a_401(cast):
    secret = token_for(cast.admin.user, "read", allowed_ips=["192.0.2.0/24"])
    assert bearer_client(secret).get("/api/v1/files/").status_code == 401


def test_no_token_is_a_401_asking_for_a_bearer_token(cast):
    response = APIClient().get("/api/v1/files/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["code"] == "not_authenticated"


def test_a_blank_authorization_header_is_a_401_not_a_500(cast):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="   ")
    assert client.get("/api/v1/files/").status_code == 401


def test_token_use_records_the_last_used_time(cast):
    secret = token_for(cast.admin.user, "read")
    bearer_client(secret).get("/api/v1/files/")
    assert tokens.authenticate_token(secret, source_ip="127.0.0.1").last_used_at is not None


def test_token_last_used_time_is_written_at_most_once_a_minute(cast):
    from datetime import timedelta

    from accounts.models import ApiToken

    secret = token_for(cast.admin.user, "read")
    first = tokens.authenticate_token(secret, source_ip="127.0.0.1").last_used_at
    again = tokens.authenticate_token(secret, source_ip="127.0.0.1")
    assert again.last_used_at == first  # no write for a use seconds later
    stale = first - timedelta(minutes=2)
    ApiToken.objects.filter(pk=again.pk).update(last_used_at=stale)
    later = tokens.authenticate_token(secret, source_ip="127.0.0.1").last_used_at
    assert later is not None and later > first
    assert ApiToken.objects.get(pk=again.pk).last_used_at == later
