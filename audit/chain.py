"""Write and verify the hash chain that makes the audit log tamper-evident."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditEvent

GENESIS = "0" * 64
# Arbitrary constant naming the chain's PostgreSQL advisory lock.
_CHAIN_LOCK_ID = 0x504F5254


def content_hash(event: AuditEvent, prev_hash: str) -> str:
    """Return the SHA-256 of the event's content joined to the previous event's hash."""
    content = {
        "created_at": event.created_at.isoformat(),
        "actor": event.actor,
        "actor_id": event.actor_id,
        "source_ip": event.source_ip,
        "protocol": event.protocol,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "outcome": event.outcome,
        "details": event.details,
        "prev": prev_hash,
    }
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


def append(**fields: Any) -> AuditEvent:
    """Insert one event at the head of the chain, serialised against concurrent writers."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_ID])
        # On SQLite the IMMEDIATE transaction already holds the database write lock.
        head = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        event = AuditEvent(created_at=timezone.now(), **fields)
        event.prev_hash = head or GENESIS
        event.hash = content_hash(event, event.prev_hash)
        event.save()
    return event


@dataclass(frozen=True)
class ChainBreak:
    """The first place where the chain does not hold, and why."""

    event_id: int
    reason: str


def iter_events(batch: int = 5000) -> Iterator[AuditEvent]:
    """Yield every event in chain order, in keyset-paginated batches."""
    last_id = 0
    while True:
        rows = list(AuditEvent.objects.filter(id__gt=last_id).order_by("id")[:batch])
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id


def verify(events: Iterator[AuditEvent] | None = None) -> tuple[int, ChainBreak | None]:
    """Walk the chain; return how many events were checked and the first break, if any."""
    expected_prev: str | None = None
    count = 0
    for event in events if events is not None else iter_events():
        count += 1
        if expected_prev is not None and event.prev_hash != expected_prev:
            return count, ChainBreak(event.id, "previous-hash link broken: an event before "
                                     "it was deleted or inserted")
        if content_hash(event, event.prev_hash) != event.hash:
            return count, ChainBreak(event.id, "content does not match its hash: changed")
        expected_prev = event.hash
    return count, None
