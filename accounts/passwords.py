"""Password policy: validators, history (no reuse of the last N), expiry per role."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import PasswordHistory, User
from audit import events
from audit.events import Origin
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


def expiring_within(days: int) -> list[User]:
    """Return active users whose password expires within the given number of days."""
    horizon = timezone.now() + timedelta(days=days)
    return [u for u in User.objects.filter(is_active=True)
            if (when := expires_at(u)) is not None and timezone.now() < when <= horizon]


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
