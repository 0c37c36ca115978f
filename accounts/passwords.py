"""Password policy: validators, history (no reuse of the last N), expiry per role with a
warning ahead of it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.models import PasswordHistory, User
from audit import events
from audit.events import Origin
from audit.models import AuditEvent
from mft.errors import InvalidInput


class HistoryValidator:
    """Refuse any of the user's last N passwords (MFT_PASSWORD_HISTORY)."""

    def validate(self, password: str, user: Any = None) -> None:
        """Raise ValidationError when the password was used recently."""
        if user is None or not getattr(user, "pk", None):
            return
        count = settings.PASSWORD_HISTORY
        recent = [user.password, *PasswordHistory.objects.filter(user=user)
                  .values_list("password", flat=True)[:count]]
        if any(stored and check_password(password, stored) for stored in recent[:count]):
            raise ValidationError(f"This password was used recently; choose one not among "
                                  f"your last {count}.", code="password_reused")

    def get_help_text(self) -> str:
        return f"Your password can't be one of your last {settings.PASSWORD_HISTORY}."


def max_age(user: User) -> timedelta | None:
    """Return how long the user's password stays valid, or None when it never expires."""
    days = (settings.PASSWORD_MAX_AGE_DAYS_STAFF if user.is_dashboard_role
            else settings.PASSWORD_MAX_AGE_DAYS_PARTNER if user.role == User.Role.PARTNER
            else settings.PASSWORD_MAX_AGE_DAYS_API)
    return timedelta(days=days) if days else None


def expires_at(user: User) -> Any:
    """Return when the user's password expires, or None."""
    age = max_age(user)
    if age is None or not user.has_usable_password():
        return None
    return (user.password_changed_at or user.date_joined) + age


def is_expired(user: User) -> bool:
    """Return True when the user's password is past its maximum age."""
    when = expires_at(user)
    return when is not None and when <= timezone.now()


def expiring_within(days: int, *, now: datetime | None = None) -> list[User]:
    """Return active users whose password expires within the given number of days."""
    now = now or timezone.now()
    horizon = now + timedelta(days=days)
    return [u for u in User.objects.filter(is_active=True).select_related("partner")
            if (when := expires_at(u)) is not None and now < when <= horizon]


def warn_expiring(*, now: datetime | None = None) -> list[User]:
    """Email each account whose password expires within the warning window, once per
    expiry date, to its own address or else its partner's contact; return those warned."""
    now = now or timezone.now()
    warned = []
    for user in expiring_within(settings.PASSWORD_EXPIRY_WARNING_DAYS, now=now):
        when = expires_at(user)
        recipient = user.email or (user.partner.contact_email if user.partner else "")
        if when is None or not recipient or _already_warned(user, when):
            continue
        send_mail(f"Your Portside password expires on {when:%Y-%m-%d}",
                  f"The password of the Portside account {user.username} expires on "
                  f"{when:%Y-%m-%d %H:%M} UTC. Sign in and change it before then.",
                  None, [recipient])
        events.admin_change(origin=events.SYSTEM, action="password.expiry_warning", obj=user,
                            after={"expires_at": when.isoformat(), "sent_to": recipient})
        warned.append(user)
    return warned


def _already_warned(user: User, when: datetime) -> bool:
    """Return True when the user was warned about this very expiry (the audit log recalls)."""
    return AuditEvent.objects.filter(action="password.expiry_warning", object_type="user",
                                     object_id=str(user.pk),
                                     details__after__expires_at=when.isoformat()).exists()


def change_password(user: User, new_password: str, *, origin: Origin,
                    generated: bool = False) -> None:
    """Validate and set a new password, keep the old hash in history, and audit it."""
    try:
        validate_password(new_password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages)) from None
    with transaction.atomic():
        if user.has_usable_password():
            PasswordHistory.objects.create(user=user, password=user.password)
        user.set_password(new_password)
        user.password_changed_at = timezone.now()
        # A generated password was seen by whoever made it: a person must choose their own.
        user.must_change_password = generated and user.is_dashboard_role
        user.save(update_fields=["password", "password_changed_at", "must_change_password"])
        stale = PasswordHistory.objects.filter(user=user).order_by("-created_at")[
            settings.PASSWORD_HISTORY:]
        PasswordHistory.objects.filter(pk__in=list(stale.values_list("pk", flat=True))).delete()
        events.admin_change(origin=origin, action="password.change", obj=user,
                            after={"generated": generated})
