"""API tokens in the dashboard: the secret shown once and working, never listed; revoked
at once; both audited with the actor."""

from __future__ import annotations

import pytest

from accounts import tokens, users
from accounts.models import ApiToken
from audit.events import SYSTEM
from audit.models import AuditEvent
from mft.errors import LoginRefused

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_shows_a_working_secret_once(admin_client, cast):
    client = users.create_user("erp-client", role="api", origin=SYSTEM).user
    page = admin_client.post("/tokens/new/", {
        "user": client.pk, "name": "erp export", "scopes": ["read"],
        "expires_on": "", "allowed_ips": "127.0.0.1\n10.0.0.0/8"})
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    secret = page.context["secret"]
    assert f'id="token-secret">{secret}<' in page.content.decode()
    token = tokens.authenticate_token(secret, source_ip="127.0.0.1")
    assert token.scopes == ["read"] and token.allowed_ips == ["127.0.0.1/32", "10.0.0.0/8"]
    assert secret not in admin_client.get("/tokens/").content.decode()
    event = AuditEvent.objects.get(action="token.create", actor="root-admin")
    assert event.details["after"]["name"] == "erp export"


def test_a_scope_beyond_the_role_is_a_form_error(admin_client, cast):
    page = admin_client.post("/tokens/new/", {"user": cast.partner.user.pk,
                                              "scopes": ["admin"]})
    assert page.status_code == 200 and b"admin scope" in page.content
    assert not ApiToken.objects.filter(user=cast.partner.user).exists()


def test_revoke_stops_the_token_and_is_audited_with_before_and_after(admin_client, cast):
    made = tokens.create_api_token(cast.partner.user, scopes=["read"], origin=SYSTEM)
    response = admin_client.post(f"/tokens/{made.token.pk}/revoke/")
    assert response.status_code == 302
    with pytest.raises(LoginRefused) as refused:
        tokens.authenticate_token(made.secret, source_ip="127.0.0.1")
    assert refused.value.reason == "API token revoked"
    event = AuditEvent.objects.get(action="token.revoke")
    assert event.actor == "root-admin"
    assert event.details["before"]["revoked_at"] is None and event.details["after"]["revoked_at"]


def test_revoking_twice_says_so(admin_client, cast):
    made = tokens.create_api_token(cast.partner.user, scopes=["read"], origin=SYSTEM)
    admin_client.post(f"/tokens/{made.token.pk}/revoke/")
    page = admin_client.post(f"/tokens/{made.token.pk}/revoke/", follow=True)
    assert b"already revoked" in page.content


def test_auditor_lists_tokens_without_secrets_or_buttons(signed_in, cast):
    made = tokens.create_api_token(cast.partner.user, scopes=["read"], origin=SYSTEM)
    page = signed_in("auditor").get("/tokens/").content.decode()
    assert f"pst_{made.token.prefix}" in page and made.secret not in page
    assert "Revoke" not in page and 'id="new-token-title"' not in page
