"""Count failed logins per address in the database and ban repeat offenders.

The database is shared by every gateway, web and worker process, so they all agree.

A login checks the address twice (before the FTPS greeting, and with the password), and a
client that reconnects for every transfer does so many times a second. So `is_banned`
remembers, per process, that an address had no ban for `CLEAR_SECONDS` (1 s), and the
gateway greets an address remembered clear without a database round trip (`known_clear`).
Only the absence of a ban is remembered: a found ban is looked up again every time, so a
lifted ban lets the address in at once. A ban placed in this process (every failed-login
ban is placed by `record_failure`, and a saved `Ban` row from any code path counts) clears
the memory at once; a ban placed by another process (another gateway worker, the web
process) takes effect here within CLEAR_SECONDS.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone

from accounts.models import Ban, LoginFailure
from audit import events
from audit.events import Origin
from mft.errors import Conflict
from notifications import events as notices

CLEAR_SECONDS = 1.0  # how long an address found unbanned is taken as still unbanned
_MAX_CLEAR = 10_000  # addresses remembered at most; past that the memory starts afresh


class _ClearAddresses:
    """Addresses found without a ban lately in this process, safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}
        self._generation = 0

    def known_clear(self, address: str) -> bool:
        """Return True when the address was found unbanned under CLEAR_SECONDS ago."""
        until = self._until.get(address)
        return until is not None and time.monotonic() < until

    def generation(self) -> int:
        """Return the current generation (take it before the database is asked)."""
        return self._generation

    def note_clear(self, address: str, generation: int, started: float) -> None:
        """Remember an address found unbanned by a look-up that started at `started`,
        unless a ban was placed since that look-up began (its answer may predate it)."""
        with self._lock:
            if generation != self._generation:
                return
            if len(self._until) >= _MAX_CLEAR:
                self._until.clear()
            self._until[address] = started + CLEAR_SECONDS

    def forget(self) -> None:
        """Forget every address (a ban was just placed)."""
        with self._lock:
            self._generation += 1
            self._until.clear()


_CLEAR = _ClearAddresses()


def known_clear(address: str | None) -> bool:
    """Return True when the address is known to have no ban without asking the database
    (found so under CLEAR_SECONDS ago in this process); cheap enough for the event loop."""
    return not address or _CLEAR.known_clear(address)


def is_banned(address: str | None) -> bool:
    """Return True when a ban is in force for an address; a finding of none is reused for
    CLEAR_SECONDS (see the module docstring)."""
    if known_clear(address):
        return False
    generation, started = _CLEAR.generation(), time.monotonic()
    if active_ban(address) is not None:
        return True
    _CLEAR.note_clear(str(address), generation, started)
    return False


def forget_clear() -> None:
    """Drop every remembered unbanned address, now and once the current transaction
    commits (so a look-up racing the ban's commit cannot remember the address clear)."""
    _CLEAR.forget()
    transaction.on_commit(_CLEAR.forget)


@receiver(post_save, sender=Ban, dispatch_uid="accounts.bans.forget_clear")
def _ban_saved(sender: Any, instance: Ban, **kwargs: Any) -> None:
    forget_clear()


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
