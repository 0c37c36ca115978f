"""The one notification service every alert calls, and the event feed's cursor.

`notify()` records the event in the append-only `OutboundEvent` table (the feed internal
systems read with `events_after()`), then creates one `Notification` row per matching
enabled subscription — collected for the daily digest, or sent by a worker after commit
and retried from the database (see `notifications.outbox`).

Called inside a caller's transaction, the event and its notifications commit (or vanish)
with the caller's change: nothing is announced that did not happen. Such a transaction
audits too, so the feed's lock is always taken after the audit chain's (`_lock_feed`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit import chain
from mft.errors import InvalidInput
from notifications import queue
from notifications.models import Notification, OutboundEvent, Subscription

EVENT_NAME = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)+$")
# Arbitrary constant naming the feed's PostgreSQL advisory lock (the audit chain uses ...54).
_FEED_LOCK_ID = 0x504F5255
MAX_PAGE = 1000


def notify(event: str, *, subject: str, body: str, data: dict[str, Any],
           partner: Any = None, listeners: list[Subscription] | None = None) -> OutboundEvent:
    """Record an event and notify every enabled subscription whose filter matches it.

    `partner` (an accounts.Partner, or None for platform events) limits partner
    subscriptions to their own partner's events; admin subscriptions hear every event.
    `listeners`: those subscriptions as the caller read them already (see listeners()).
    """
    if not EVENT_NAME.match(event):
        raise InvalidInput(f"{event!r} is not an event name like file.ready")
    clean = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    with transaction.atomic():
        _lock_feed()
        record = OutboundEvent.objects.create(
            event=event, partner_id=partner.pk if partner is not None else None,
            partner_name=partner.name if partner is not None else "",
            subject=subject[:300], body=body, data=clean)
        ids = _fan_out(record, listeners)
    queue.enqueue_on_commit(ids)
    return record


def _lock_feed() -> None:
    """Serialise feed writers until commit, so ids become visible in order (no cursor skips).

    Without it, a row with a lower id could commit after a reader has moved its cursor past
    a higher one. The audit chain's lock comes first: every caller audits in the same
    transaction, some before notifying (a ban), some after (a missing-file alert), and two
    transactions taking the two locks in opposite orders deadlocked (PostgreSQL aborted one,
    losing a ban or an alert). Taking a lock already held returns at once. SQLite's
    IMMEDIATE transaction already holds the database's write lock.
    """
    if connection.vendor == "postgresql":
        chain.lock_writers()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_FEED_LOCK_ID])


def matches(patterns: list[str], event: str) -> bool:
    """Return True when an event name matches one of a subscription's patterns."""
    return any(fnmatchcase(event, pattern) for pattern in patterns)


def listeners(event: str, partner_id: int | None = None) -> list[Subscription]:
    """Return the enabled subscriptions that hear an event of this partner (or of none)."""
    audience = Q(scope=Subscription.Scope.ADMIN)
    if partner_id is not None:
        audience |= Q(scope=Subscription.Scope.PARTNER, partner_id=partner_id)
    return [subscription for subscription in Subscription.objects.filter(audience, enabled=True)
            if matches(subscription.events, event)]


def _fan_out(record: OutboundEvent, heard_by: list[Subscription] | None) -> list[int]:
    """Create the event's notifications; return the ids to send now (not the digest's)."""
    if heard_by is None:
        heard_by = listeners(record.event, record.partner_id)
    elif heard_by:  # read before this transaction: not those deleted or disabled since
        still = set(Subscription.objects.filter(pk__in=[s.pk for s in heard_by], enabled=True)
                    .values_list("pk", flat=True))
        heard_by = [subscription for subscription in heard_by if subscription.pk in still]
    now = timezone.now()
    send_now = []
    for subscription in heard_by:
        row = Notification.objects.create(
            subscription=subscription, channel=subscription.channel, event=record,
            status=(Notification.Status.COLLECTED if subscription.digest
                    else Notification.Status.PENDING),
            enqueued_at=None if subscription.digest else now)
        if not subscription.digest:
            send_now.append(row.pk)
    return send_now


def payload(record: OutboundEvent) -> dict[str, Any]:
    """Return an event as webhooks send it and the feed returns it."""
    partner = ({"id": record.partner_id, "name": record.partner_name}
               if record.partner_id is not None else None)
    return {"id": str(record.pk), "event": record.event,
            "created_at": record.created_at.isoformat(), "partner": partner,
            "subject": record.subject, "data": record.data}


@dataclass(frozen=True)
class EventPage:
    """Events after a cursor, the cursor to ask with next, and whether more are waiting."""

    events: list[OutboundEvent]
    next_cursor: int
    has_more: bool


def events_after(cursor: int | str | None, limit: int = 100, *,
                 partner_id: int | None = None) -> EventPage:
    """Return up to `limit` events after the cursor (None or 0: from the oldest), in order.

    The cursor is the last event id the reader has seen; ids become visible in order, so a
    reader that keeps `next_cursor` misses nothing. `partner_id` limits the page to one
    partner's events (for partner-limited callers).
    """
    try:
        after = int(cursor or 0)
    except (TypeError, ValueError):
        raise InvalidInput("cursor must be an event id") from None
    if after < 0:
        raise InvalidInput("cursor must not be negative")
    size = max(1, min(int(limit), MAX_PAGE))
    rows = OutboundEvent.objects.filter(pk__gt=after).order_by("pk")
    if partner_id is not None:
        rows = rows.filter(partner_id=partner_id)
    page = list(rows[:size + 1])
    events = page[:size]
    return EventPage(events=events, next_cursor=events[-1].pk if events else after,
                     has_more=len(page) > size)
