"""Disable accounts nobody has used for MFT_ACCOUNT_INACTIVE_DAYS (PCI DSS 8.2.6)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max, Q
from django.utils import timezone

from accounts import users
from accounts.models import User
from audit.events import SYSTEM, Origin
from audit.models import AuditEvent

# An admin enabling or creating the account counts as activity: a re-enabled account gets
# a full period to be used before it is disabled again.
_FRESH_START_ACTIONS = ("user.create", "user.enable")


def last_activity(user: User) -> datetime:
    """Return the latest sign of use: login, token use, password change, (re-)enabling."""
    token_use = user.api_tokens.aggregate(last=Max("last_used_at"))["last"]
    enabled = (AuditEvent.objects.filter(object_type="user", object_id=str(user.pk),
                                         action__in=_FRESH_START_ACTIONS)
               .aggregate(last=Max("created_at"))["last"])
    moments = [user.date_joined, user.last_login, user.password_changed_at, token_use, enabled]
    return max(m for m in moments if m is not None)


def _candidates(cutoff: datetime) -> list[User]:
    """Return active users whose own timestamps are all older than the cutoff."""
    old = Q(date_joined__lt=cutoff) & (Q(last_login__isnull=True) | Q(last_login__lt=cutoff)) & (
        Q(password_changed_at__isnull=True) | Q(password_changed_at__lt=cutoff))
    return list(User.objects.filter(old, is_active=True))


def disable_inactive(*, now: datetime | None = None) -> list[User]:
    """Disable (audited) every account unused for the configured days; return them.

    The last active admin is kept so the install is never locked out of its own console.
    """
    days = settings.ACCOUNT_INACTIVE_DAYS
    if not days:
        return []
    cutoff = (now or timezone.now()) - timedelta(days=days)
    origin = Origin(SYSTEM.actor, None, None, SYSTEM.protocol,
                    {"reason": f"no activity for {days} days"})
    disabled = []
    for user in _candidates(cutoff):
        if last_activity(user) >= cutoff or _last_admin(user):
            continue
        disabled.append(users.set_active(user, False, origin=origin))
    return disabled


def _last_admin(user: User) -> bool:
    """Return True when the user is the only active admin left."""
    return user.role == User.Role.ADMIN and not User.objects.filter(
        role=User.Role.ADMIN, is_active=True).exclude(pk=user.pk).exists()
