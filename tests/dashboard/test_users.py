"""Users and roles in the dashboard: list, create (password once), settings, enable,
disable and password reset, each through the user service and audited."""

from __future__ import annotations

import pytest

from accounts import services
from accounts.models import User
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)

NEW = {"username": "globex-api", "role": "api", "partner": "", "generate_password": "on",
       "login_method": "password", "permissions": ["list", "download"],
       "allowed_protocols": ["https"]}


def _settings(user: User, **changes: object) -> dict[str, object]:
    """Return the settings form as the page shows it for a user, with some changes."""
    form: dict[str, object] = {
        "email": user.email, "quota_mb": "", "quota_files": "",
        "allowed_protocols": list(user.allowed_protocols), "login_method": user.login_method,
        "permissions": list(user.permissions), "allowed_ips": "", "max_sessions": "",
        "expires_on": ""}
    form.update(changes)
    return form


def test_list_filters_by_role_and_partner(admin_client, cast):
    by_role = admin_client.get("/users/?role=partner").content.decode()
    assert ">alice<" in by_role and ">mallory<" in by_role and ">root-admin<" not in by_role
    partner = cast.partner.user.partner_id
    by_partner = admin_client.get(f"/users/?partner={partner}").content.decode()
    assert ">alice<" in by_partner and ">mallory<" not in by_partner


def test_list_filters_by_enabled(admin_client, cast):
    User.objects.filter(pk=cast.outsider.user.pk).update(is_active=False)
    page = admin_client.get("/users/?enabled=false").content.decode()
    assert ">mallory<" in page and ">alice<" not in page


def test_create_shows_a_working_password_once(admin_client, cast):
    page = admin_client.post("/users/new/", NEW)
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    password = page.context["password"]
    assert f'id="user-password">{password}<' in page.content.decode()
    made = User.objects.get(username="globex-api")
    assert made.permissions == ["list", "download"] and made.allowed_protocols == ["https"]
    user = services.login(services.LoginAttempt("globex-api", password, "https", "127.0.0.1"))
    assert user.pk == made.pk
    later = admin_client.get(f"/users/{made.pk}/").content.decode()
    assert password not in later


def test_create_is_audited_with_the_actor(admin_client, cast):
    admin_client.post("/users/new/", NEW)
    event = AuditEvent.objects.get(action="user.create", object_repr="globex-api")
    assert event.actor == "root-admin" and event.details["after"]["role"] == "api"


def test_create_with_a_taken_name_shows_the_refusal(admin_client, cast):
    page = admin_client.post("/users/new/", {**NEW, "username": "alice"})
    assert page.status_code == 200 and b"already exists" in page.content
    assert not AuditEvent.objects.filter(action="user.create", actor="root-admin").exists()


def test_a_partner_user_without_a_partner_is_refused_on_the_form(admin_client, cast):
    page = admin_client.post("/users/new/", {**NEW, "role": "partner"})
    assert b"needs a partner" in page.content
    assert not User.objects.filter(username="globex-api").exists()


def test_settings_change_is_audited_with_before_and_after(admin_client, cast):
    alice = cast.partner.user
    response = admin_client.post(f"/users/{alice.pk}/settings/",
                                 _settings(alice, quota_mb="5",
                                           allowed_protocols=["ftps", "https"]))
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.quota_bytes == 5 * 1024 * 1024 and alice.allowed_protocols == ["ftps", "https"]
    event = AuditEvent.objects.get(action="user.update")
    assert event.actor == "root-admin"
    assert (event.details["before"]["quota_bytes"], event.details["after"]["quota_bytes"]) == \
        (None, 5 * 1024 * 1024)


def test_settings_left_alone_are_not_sent(admin_client, cast):
    alice = cast.partner.user
    User.objects.filter(pk=alice.pk).update(quota_bytes=1_500_000)  # not a whole MB
    alice.refresh_from_db()
    form = _settings(alice, quota_mb="1", permissions=["list"])
    admin_client.post(f"/users/{alice.pk}/settings/", form)
    alice.refresh_from_db()
    assert alice.quota_bytes == 1_500_000 and alice.permissions == ["list"]


def test_an_invalid_network_shows_a_form_error(admin_client, cast):
    alice = cast.partner.user
    page = admin_client.post(f"/users/{alice.pk}/settings/",
                             _settings(alice, allowed_ips="not-an-address"))
    assert page.status_code == 200 and b'class="form-error"' in page.content
    assert not AuditEvent.objects.filter(action="user.update").exists()


def test_disable_then_enable_are_audited(admin_client, cast):
    alice = cast.partner.user
    admin_client.post(f"/users/{alice.pk}/active/", {"active": "off"})
    alice.refresh_from_db()
    assert not alice.is_active
    admin_client.post(f"/users/{alice.pk}/active/", {"active": "on"})
    alice.refresh_from_db()
    assert alice.is_active
    actions = list(AuditEvent.objects.filter(object_type="user", object_id=str(alice.pk))
                   .values_list("action", flat=True))
    assert actions[-2:] == ["user.disable", "user.enable"]


def test_an_admin_cannot_disable_themself(admin_client, cast):
    admin = cast.admin.user
    page = admin_client.post(f"/users/{admin.pk}/active/", {"active": "off"}, follow=True)
    assert b"cannot disable your own account" in page.content
    admin.refresh_from_db()
    assert admin.is_active


def test_reset_password_shows_a_new_working_password_once(admin_client, cast):
    alice = cast.partner.user
    page = admin_client.post(f"/users/{alice.pk}/reset-password/")
    assert "no-store" in page["Cache-Control"]
    secret = page.context["password"]
    assert secret and secret != cast.partner.password
    assert services.login(services.LoginAttempt("alice", secret, "ftps", "127.0.0.1"))
    assert AuditEvent.objects.filter(object_type="user", object_id=str(alice.pk),
                                     actor="root-admin").exists()


def test_detail_shows_settings_form_to_admins_only(admin_client, signed_in, cast):
    alice = cast.partner.user
    assert b'id="user-reset-password"' in admin_client.get(f"/users/{alice.pk}/").content
    page = signed_in(User.Role.OPERATOR).get(f"/users/{alice.pk}/")
    assert page.status_code == 200 and b'id="user-reset-password"' not in page.content


def test_filtering_with_htmx_returns_the_table_alone(admin_client, cast):
    fragment = admin_client.get("/users/?username=ali", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in fragment and ">alice<" in fragment and ">mallory<" not in fragment


def test_ftps_second_factor_and_bandwidth_limits_are_set_from_the_form(admin_client, cast):
    alice = cast.partner.user
    response = admin_client.post(f"/users/{alice.pk}/settings/",
                                 _settings(alice, ftps_mfa_required="on", upload_kib="512",
                                           download_kib="2048"))
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.ftps_mfa_required is True
    assert (alice.upload_bytes_per_second, alice.download_bytes_per_second) == \
        (512 * 1024, 2048 * 1024)
    event = AuditEvent.objects.get(action="user.update")
    assert event.details["after"]["ftps_mfa_required"] is True
    page = admin_client.get(f"/users/{alice.pk}/").content.decode()
    assert 'name="upload_kib" value="512"' in page
