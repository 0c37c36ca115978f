"""Account hygiene: expiring passwords are announced to the account's contact 14 days
ahead (once), accounts unused for N days are disabled, and an expired account is refused."""

from __future__ import annotations

import email
from datetime import datetime, timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts import inactivity, passwords, services, tokens, users
from accounts.models import ApiToken, Partner, User
from audit.events import SYSTEM
from audit.models import AuditEvent
from mft.errors import LoginRefused
from tests.smtp_receiver import smtp_receiver

pytestmark = pytest.mark.django_db(transaction=True)


def _age(user, **fields_days: int) -> None:  # type: ignore[no-untyped-def]
    """Move the user's timestamps into the past by the given numbers of days."""
    now = timezone.now()
    User.objects.filter(pk=user.pk).update(
        **{name: now - timedelta(days=days) for name, days in fields_days.items()})


def _smtp(port: int):  # type: ignore[no-untyped-def]
    return override_settings(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                             EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, EMAIL_TIMEOUT=5,
                             EMAIL_USE_TLS=False, EMAIL_USE_SSL=False,
                             DEFAULT_FROM_EMAIL="portside@example.com")


# --- password expiry warning ------------------------------------------------------------------

def test_staff_password_expiring_within_14_days_is_mailed_to_the_account_once(cast):
    User.objects.filter(pk=cast.admin.user.pk).update(email="root@example.com")
    _age(cast.admin.user, password_changed_at=80)  # 90-day expiry: 10 days left
    with smtp_receiver() as server, _smtp(server.port):
        assert [u.username for u in passwords.warn_expiring()] == [cast.admin.username]
        assert passwords.warn_expiring() == []  # the next hourly run stays quiet
        assert server.arrived.wait(10)
    [received] = server.messages
    assert received.recipients == ["root@example.com"]
    assert "expires on" in email.message_from_bytes(received.data)["Subject"]
    assert AuditEvent.objects.filter(action="password.expiry_warning",
                                     object_id=str(cast.admin.user.pk)).count() == 1


def test_a_password_further_from_expiry_than_14_days_is_not_announced(cast):
    User.objects.filter(pk=cast.admin.user.pk).update(email="root@example.com")
    _age(cast.admin.user, password_changed_at=70)  # 20 days left
    assert passwords.warn_expiring() == []


def test_partner_password_expiry_warning_goes_to_the_partner_contact(cast, settings):
    settings.PASSWORD_MAX_AGE_DAYS_PARTNER = 30
    Partner.objects.filter(users=cast.partner.user).update(contact_email="ops@acme.example")
    _age(cast.partner.user, password_changed_at=20)
    with smtp_receiver() as server, _smtp(server.port):
        warned = passwords.warn_expiring()
        assert server.arrived.wait(10)
    assert [u.username for u in warned] == [cast.partner.username]
    assert server.messages[0].recipients == ["ops@acme.example"]


def test_a_new_password_starts_a_new_warning_period(cast):
    User.objects.filter(pk=cast.admin.user.pk).update(email="root@example.com")
    _age(cast.admin.user, password_changed_at=80)
    with smtp_receiver() as server, _smtp(server.port):
        assert len(passwords.warn_expiring()) == 1
    passwords.change_password(User.objects.get(pk=cast.admin.user.pk),
                              services.generate_password(), origin=SYSTEM)
    _age(cast.admin.user, password_changed_at=85)
    with smtp_receiver() as server, _smtp(server.port):
        assert len(passwords.warn_expiring()) == 1  # another expiry date: told again


# --- inactivity -------------------------------------------------------------------------------
# Accounts are created (and audited) now; the checks run as if 100 days had passed, so
# with a 90-day limit the cut-off lies 10 days from now.

def _later() -> datetime:
    return timezone.now() + timedelta(days=100)


def _logged_in(user, days_from_now: int) -> None:  # type: ignore[no-untyped-def]
    User.objects.filter(pk=user.pk).update(
        last_login=timezone.now() + timedelta(days=days_from_now))


def test_an_account_unused_for_the_configured_days_is_disabled_and_audited(cast, settings):
    settings.ACCOUNT_INACTIVE_DAYS = 90
    disabled = inactivity.disable_inactive(now=_later())
    assert cast.partner.username in [u.username for u in disabled]
    assert not User.objects.get(pk=cast.partner.user.pk).is_active
    event = AuditEvent.objects.get(action="user.disable", object_id=str(cast.partner.user.pk))
    assert event.actor == "system" and "no activity for 90 days" in event.details["reason"]


def test_a_login_within_the_period_keeps_the_account(cast, settings):
    settings.ACCOUNT_INACTIVE_DAYS = 90
    _logged_in(cast.partner.user, 11)  # 89 days before the check
    assert cast.partner.username not in [
        u.username for u in inactivity.disable_inactive(now=_later())]
    assert User.objects.get(pk=cast.partner.user.pk).is_active


def test_an_account_used_only_through_api_tokens_is_kept(cast, settings):
    settings.ACCOUNT_INACTIVE_DAYS = 90
    client = users.create_user("nightly-job", role=User.Role.API,
                               password=services.generate_password(), origin=SYSTEM).user
    made = tokens.create_api_token(client, scopes=["read"])
    tokens.authenticate_token(made.secret, source_ip="127.0.0.1")
    ApiToken.objects.filter(pk=made.token.pk).update(
        last_used_at=timezone.now() + timedelta(days=11))
    assert "nightly-job" not in [u.username for u in inactivity.disable_inactive(now=_later())]
    assert User.objects.get(pk=client.pk).is_active


def test_an_account_re_enabled_by_an_admin_gets_a_fresh_period(cast, settings):
    settings.ACCOUNT_INACTIVE_DAYS = 90
    later = _later()
    assert cast.partner.username in [
        u.username for u in inactivity.disable_inactive(now=later)]
    users.set_active(User.objects.get(pk=cast.partner.user.pk), True, origin=SYSTEM)
    # The admin's re-enabling (audited now) counts as the start of a new period.
    assert inactivity.disable_inactive(now=timezone.now() + timedelta(days=89)) == []
    assert cast.partner.username in [u.username for u in inactivity.disable_inactive(
        now=timezone.now() + timedelta(days=91))]


def test_the_last_active_admin_is_never_disabled(cast, settings):
    settings.ACCOUNT_INACTIVE_DAYS = 90
    inactivity.disable_inactive(now=_later())
    assert User.objects.get(pk=cast.admin.user.pk).is_active


def test_inactivity_disabling_can_be_switched_off(cast, settings):
    settings.ACCOUNT_INACTIVE_DAYS = 0
    assert inactivity.disable_inactive(now=timezone.now() + timedelta(days=400)) == []


# --- account expiry ---------------------------------------------------------------------------

def test_an_account_past_its_expiry_date_is_refused(cast):
    User.objects.filter(pk=cast.partner.user.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1))
    with pytest.raises(LoginRefused) as refused:
        services.login(services.LoginAttempt(cast.partner.username, cast.partner.password,
                                             "ftps", "127.0.0.1"))
    assert refused.value.reason == "account expired"
