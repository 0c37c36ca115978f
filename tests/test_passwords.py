"""Password policy: common and short passwords refused, no reuse, expiry per role."""

from __future__ import annotations

import secrets
import string
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.password_validation import CommonPasswordValidator
from django.test import Client
from django.utils import timezone

from accounts import passwords, services, users
from accounts.models import User
from audit.events import Origin
from mft.errors import InvalidInput, LoginRefused

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = Origin(actor="test")


def _random(length: int) -> str:
    """Return a random password of the given length that passes every other rule."""
    alphabet = string.ascii_letters + string.digits + "-_!"
    return "".join(secrets.choice(alphabet) for _ in range(length - 2)) + "Q7"


def test_a_password_below_the_minimum_length_is_refused(cast, settings):
    assert _min_length() == 12
    with pytest.raises(InvalidInput, match="too short"):
        passwords.change_password(cast.partner.user, _random(11), origin=ORIGIN)
    passwords.change_password(cast.partner.user, _random(12), origin=ORIGIN)


def _min_length() -> int:
    from django.conf import settings

    validators: list[dict[str, Any]] = list(settings.AUTH_PASSWORD_VALIDATORS)  # type: ignore[arg-type]
    return next(int(v["OPTIONS"]["min_length"]) for v in validators
                if v["NAME"].endswith("MinimumLengthValidator"))


def test_a_password_from_the_common_password_list_is_refused(cast):
    common = next(p for p in CommonPasswordValidator().passwords
                  if len(p) >= 12 and not p.isdigit())
    with pytest.raises(InvalidInput, match="too common"):
        passwords.change_password(cast.partner.user, common, origin=ORIGIN)


def test_an_all_numeric_password_is_refused(cast):
    digits = "".join(secrets.choice(string.digits) for _ in range(16))
    with pytest.raises(InvalidInput, match="entirely numeric"):
        passwords.change_password(cast.partner.user, digits, origin=ORIGIN)


def test_a_password_like_the_account_s_own_names_is_refused(cast):
    User.objects.filter(pk=cast.partner.user.pk).update(first_name="Bartholomew")
    user = User.objects.get(pk=cast.partner.user.pk)
    with pytest.raises(InvalidInput, match="too similar"):
        passwords.change_password(user, "Bartholomew12", origin=ORIGIN)


def test_a_password_older_than_the_history_may_be_used_again(cast, settings):
    settings.PASSWORD_HISTORY = 2
    user = cast.partner.user
    first = services.generate_password()
    passwords.change_password(user, first, origin=ORIGIN)
    for _ in range(2):
        passwords.change_password(user, services.generate_password(), origin=ORIGIN)
    passwords.change_password(user, first, origin=ORIGIN)  # three changes ago: allowed


def test_one_of_the_last_passwords_cannot_be_reused(cast, settings):
    settings.PASSWORD_HISTORY = 2
    user = cast.partner.user
    first, second = services.generate_password(), services.generate_password()
    passwords.change_password(user, first, origin=ORIGIN)
    passwords.change_password(user, second, origin=ORIGIN)
    with pytest.raises(InvalidInput, match="used recently"):
        passwords.change_password(user, first, origin=ORIGIN)


def test_passwords_hash_with_argon2(cast):
    assert cast.partner.user.password.startswith("argon2")


def test_staff_passwords_expire_and_partner_passwords_do_not_by_default(cast):
    old = timezone.now() - timedelta(days=120)
    User.objects.filter(pk__in=[cast.admin.user.pk, cast.partner.user.pk]).update(
        password_changed_at=old)
    admin = User.objects.get(pk=cast.admin.user.pk)
    partner = User.objects.get(pk=cast.partner.user.pk)
    assert passwords.is_expired(admin) and not passwords.is_expired(partner)


def test_expiring_soon_lists_accounts_within_the_warning_window(cast):
    User.objects.filter(pk=cast.admin.user.pk).update(
        password_changed_at=timezone.now() - timedelta(days=80))
    assert [u.username for u in passwords.expiring_within(14)] == [cast.admin.username]


def test_a_generated_password_must_be_changed_by_a_dashboard_user(cast):
    passwords.change_password(cast.admin.user, services.generate_password(), origin=ORIGIN,
                              generated=True)
    assert User.objects.get(pk=cast.admin.user.pk).must_change_password


def test_api_client_passwords_do_not_expire_by_default(cast):
    client = users.create_user("nightly", role=User.Role.API,
                               password=services.generate_password(), origin=ORIGIN).user
    User.objects.filter(pk=client.pk).update(
        password_changed_at=timezone.now() - timedelta(days=4000))
    assert passwords.expires_at(User.objects.get(pk=client.pk)) is None


def test_partner_expiry_when_configured_refuses_ftps_logins_with_the_old_password(cast,
                                                                                  settings):
    settings.PASSWORD_MAX_AGE_DAYS_PARTNER = 30
    attempt = services.LoginAttempt(cast.partner.username, cast.partner.password, "ftps",
                                    "127.0.0.1")
    services.login(attempt)
    User.objects.filter(pk=cast.partner.user.pk).update(
        password_changed_at=timezone.now() - timedelta(days=31))
    with pytest.raises(LoginRefused) as refused:
        services.login(attempt)
    assert refused.value.reason == "password expired"


def test_a_user_created_with_a_generated_password_changes_it_at_first_dashboard_login(cast):
    made = users.create_user("auditor-new", role=User.Role.AUDITOR, generate_password=True,
                             origin=ORIGIN)
    assert made.user.must_change_password
    client = Client()
    response = client.post("/login/", {"username": "auditor-new", "password": made.password})
    assert response["Location"] == "/"
    assert client.get("/")["Location"] == "/account/password/"
    new = services.generate_password()
    client.post("/account/password/", {"current": made.password, "new": new, "again": new})
    assert client.get("/").status_code == 200


def test_a_partner_user_with_a_generated_password_is_not_forced(cast):
    made = users.create_user("partner-new", role=User.Role.PARTNER, generate_password=True,
                             partner=cast.partner.user.partner, origin=ORIGIN)
    assert not made.user.must_change_password  # unattended jobs have no change page


def test_the_first_admin_with_a_generated_password_must_change_it(settings, transactional_db):
    from mft import bootstrap

    settings.ADMIN_PASSWORD = None
    created, printed = bootstrap.ensure_admin()
    assert created and printed
    assert User.objects.get(username=settings.ADMIN_USER).must_change_password
