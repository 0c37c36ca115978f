"""Users over the API: create, change, enable/disable, reset password; scopes and partners."""

from __future__ import annotations

import secrets

import pytest
from django.contrib.auth import authenticate

from accounts.models import User
from audit.models import AuditEvent
from tests.api_client import client_for, fresh_throttles, make_user  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)
CHOSEN_PASSWORD = "Chosen-" + secrets.token_urlsafe(16)


def _create(cast, **body):
    return client_for(cast.admin.user, "admin").post("/api/v1/users/", body, format="json")


def test_admin_creates_a_partner_user_with_a_given_password(cast):
    partner = cast.partner.user.partner
    response = _create(cast, username="bob", partner=partner.pk,
                       password=CHOSEN_PASSWORD)
    assert response.status_code == 201, response.content
    assert response.json()["password"] is None
    assert authenticate(None, username="bob", password=CHOSEN_PASSWORD) is not None


def test_a_generated_password_is_shown_once_in_the_create_response(cast):
    response = _create(cast, username="bob", partner=cast.partner.user.partner.pk,
                       generate_password=True)
    secret = response.json()["password"]
    assert authenticate(None, username="bob", password=secret) is not None
    shown = client_for(cast.admin.user, "read").get(f"/api/v1/users/{response.json()['id']}/")
    assert "password" not in shown.json() and secret not in shown.content.decode()


def test_a_new_partner_user_gets_a_home_folder(cast):
    response = _create(cast, username="bob", partner=cast.partner.user.partner.pk)
    user = User.objects.get(pk=response.json()["id"])
    assert user.home_dir.endswith("/bob") and user.role == "partner"


def test_user_creation_is_audited_without_the_password(cast):
    _create(cast, username="bob", partner=cast.partner.user.partner.pk,
            password=CHOSEN_PASSWORD)
    event = AuditEvent.objects.get(action="user.create", object_repr="bob")
    assert event.details["after"]["username"] == "bob"
    assert CHOSEN_PASSWORD not in str(event.details)


def test_a_weak_password_is_a_400(cast):
    response = _create(cast, username="bob", partner=cast.partner.user.partner.pk,
                       password="123")
    assert response.status_code == 400
    assert not User.objects.filter(username="bob").exists()


def test_a_partner_user_needs_a_partner(cast):
    response = _create(cast, username="bob", role="partner")
    assert response.status_code == 400
    assert "partner" in response.json()["detail"]


def test_the_api_cannot_create_an_admin(cast):
    response = _create(cast, username="boss", role="admin")
    assert response.status_code == 400
    assert "role" in response.json()["errors"]


def test_a_duplicate_username_is_a_409(cast):
    response = _create(cast, username="alice", partner=cast.partner.user.partner.pk)
    assert response.status_code == 409


def test_an_unknown_protocol_is_a_400_naming_the_field(cast):
    response = _create(cast, username="bob", partner=cast.partner.user.partner.pk,
                       allowed_protocols=["gopher"])
    assert response.status_code == 400
    assert "allowed_protocols" in response.json()["errors"]


def test_admin_changes_quota_protocols_login_method_and_permissions(cast):
    user = cast.partner.user
    response = client_for(cast.admin.user, "admin").patch(
        f"/api/v1/users/{user.pk}/",
        {"quota_bytes": 10_000, "allowed_protocols": ["ftps", "https"],
         "login_method": "password+certificate", "permissions": ["list", "download"]},
        format="json")
    assert response.status_code == 200, response.content
    user.refresh_from_db()
    assert (user.quota_bytes, user.allowed_protocols, user.login_method, user.permissions) == (
        10_000, ["ftps", "https"], "password+certificate", ["list", "download"])


def test_a_user_change_is_audited_with_before_and_after(cast):
    user = cast.partner.user
    client_for(cast.admin.user, "admin").patch(f"/api/v1/users/{user.pk}/",
                                               {"quota_files": 7}, format="json")
    event = AuditEvent.objects.get(action="user.update", object_id=str(user.pk))
    assert (event.details["before"]["quota_files"], event.details["after"]["quota_files"]) == (
        None, 7)


def test_a_bad_allow_list_entry_is_a_400(cast):
    response = client_for(cast.admin.user, "admin").patch(
        f"/api/v1/users/{cast.partner.user.pk}/", {"allowed_ips": ["10.0.0.0/8", "nope"]},
        format="json")
    assert response.status_code == 400
    assert "allowed_ips" in response.json()["errors"]


def test_disabling_a_user_refuses_its_tokens(cast):
    victim = client_for(cast.partner.user, "read")
    response = client_for(cast.admin.user, "admin").post(
        f"/api/v1/users/{cast.partner.user.pk}/disable/")
    assert response.status_code == 200 and response.json()["is_active"] is False
    assert victim.get("/api/v1/files/").status_code == 401


def test_enabling_a_disabled_user_is_audited(cast):
    admin = client_for(cast.admin.user, "admin")
    admin.post(f"/api/v1/users/{cast.partner.user.pk}/disable/")
    response = admin.post(f"/api/v1/users/{cast.partner.user.pk}/enable/")
    assert response.json()["is_active"] is True
    event = AuditEvent.objects.get(action="user.enable")
    assert (event.details["before"]["is_active"], event.details["after"]["is_active"]) == (
        False, True)


def test_enabling_an_enabled_user_is_a_409(cast):
    response = client_for(cast.admin.user, "admin").post(
        f"/api/v1/users/{cast.partner.user.pk}/enable/")
    assert response.status_code == 409


def test_reset_password_returns_a_new_working_password_once(cast):
    response = client_for(cast.admin.user, "admin").post(
        f"/api/v1/users/{cast.partner.user.pk}/reset-password/")
    assert response.status_code == 200
    secret = response.json()["password"]
    assert authenticate(None, username="alice", password=secret) is not None
    assert authenticate(None, username="alice", password=cast.partner.password) is None


def test_a_partner_token_lists_only_its_partners_users(cast):
    response = client_for(cast.partner.user, "read").get("/api/v1/users/")
    assert {row["username"] for row in response.json()["results"]} == {"alice"}


def test_a_partner_token_gets_404_for_another_partners_user(cast):
    response = client_for(cast.partner.user, "read").get(
        f"/api/v1/users/{cast.outsider.user.pk}/")
    assert response.status_code == 404


@pytest.mark.parametrize("scope", ["read", "transfer"])
def test_only_the_admin_scope_changes_users(cast, scope):
    response = client_for(cast.admin.user, scope).patch(
        f"/api/v1/users/{cast.partner.user.pk}/", {"quota_files": 1}, format="json")
    assert response.status_code == 403


def test_a_partner_limited_admin_token_cannot_create_users_of_another_partner(cast):
    robot = make_user("acme-robot", "api", partner=cast.partner.user.partner)
    response = client_for(robot, "admin").post(
        "/api/v1/users/", {"username": "eve", "partner": cast.outsider.user.partner.pk},
        format="json")
    assert response.status_code == 403


def test_a_partner_limited_admin_token_creates_users_of_its_partner(cast):
    robot = make_user("acme-robot", "api", partner=cast.partner.user.partner)
    response = client_for(robot, "admin").post(
        "/api/v1/users/", {"username": "bob", "partner": cast.partner.user.partner.pk},
        format="json")
    assert response.status_code == 201, response.content


def test_an_unknown_user_id_is_a_404_problem(cast):
    response = client_for(cast.admin.user, "read").get("/api/v1/users/999999/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 404 and response.json()["title"] == "Not Found"


def test_users_filter_by_partner_and_role(cast):
    make_user("audrey", "auditor")
    response = client_for(cast.admin.user, "read").get(
        f"/api/v1/users/?partner={cast.outsider.user.partner.pk}&role=partner")
    assert [row["username"] for row in response.json()["results"]] == ["mallory"]


def test_an_api_client_cannot_disable_an_administrator(cast):
    robot = make_user("erp", "api")
    response = client_for(robot, "admin").post(f"/api/v1/users/{cast.admin.user.pk}/disable/")
    assert response.status_code == 403
    cast.admin.user.refresh_from_db()
    assert cast.admin.user.is_active


def test_an_api_client_cannot_mint_a_token_for_an_administrator(cast):
    robot = make_user("erp", "api")
    response = client_for(robot, "admin").post(
        "/api/v1/tokens/", {"scopes": ["admin"], "user": cast.admin.user.pk}, format="json")
    assert response.status_code == 403
