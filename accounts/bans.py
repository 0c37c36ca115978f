"""Count failed logins per address in the database and ban repeat offenders.

The database is shared by every gateway, web and worker process, so they all agree.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Ban, LoginFailure
from audit import events
from audit.events import Origin
from mft.errors import Conflict
from notifications import events as notices


def active_ban(address: str | None) -> Ban | None:
    """Return the ban in force for an address, if any."""
    if not address:
        return None
    now = timezone.now()
    return (
        Ban.objects.filter(address=address, expires_at__gt=now, lifted_at__isnull=True)
        .order_by("-expires_at")
        .first()
    )


def record_failure(address: str | None, username: str, protocol: str) -> Ban | None:
    """Record a failed login; ban the address when it crosses the threshold, and return it."""
    if not address:
        return None
    now = timezone.now()
    window_start = now - timedelta(seconds=settings.BAN_WINDOW_SECONDS)
    with transaction.atomic():
        LoginFailure.objects.create(address=address, username=username[:150], protocol=protocol)
        recent = LoginFailure.objects.filter(address=address, at__gte=window_start).count()
        if recent < settings.BAN_FAILURES or active_ban(address):
            return None
        until = now + timedelta(seconds=settings.BAN_SECONDS)
        reason = f"{recent} failed logins in {settings.BAN_WINDOW_SECONDS} s"
        ban = Ban.objects.create(address=address, reason=reason, expires_at=until)
        events.address_banned(address=address, reason=reason, until=until.isoformat())
        notices.ban_created(ban)
    return ban


def lift_ban(ban: Ban, *, origin: Origin) -> None:
    """Lift a ban and forget the failures that led to it."""
    if ban.lifted_at is not None:
        raise Conflict(f"the ban was already lifted by {ban.lifted_by or 'someone'}")
    with transaction.atomic():
        before = _ban_snapshot(ban)
        ban.lifted_at = timezone.now()
        ban.lifted_by = origin.actor
        ban.save(update_fields=["lifted_at", "lifted_by"])
        LoginFailure.objects.filter(address=ban.address).delete()
        events.ban_lifted(origin=origin, address=ban.address, before=before,
                          after=_ban_snapshot(ban))


def _ban_snapshot(ban: Ban) -> dict[str, object]:
    """Describe a ban for an audit event's before/after."""
    return {"reason": ban.reason, "expires_at": ban.expires_at.isoformat(),
            "lifted_at": ban.lifted_at.isoformat() if ban.lifted_at else None,
            "lifted_by": ban.lifted_by}


def prune_failures(older_than: timedelta = timedelta(days=1)) -> int:
    """Delete failure records older than the given age; return how many."""
    deleted, _ = LoginFailure.objects.filter(at__lt=timezone.now() - older_than).delete()
    return deleted
