"""Write and verify the hash chain that makes the audit log tamper-evident."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.models import ArchiveRecord, AuditEvent, ChainHead
from mft import metrics

GENESIS = "0" * 64
# Arbitrary constant naming the chain's PostgreSQL advisory lock.
_CHAIN_LOCK_ID = 0x504F5254
_FIELDS = ("id", "created_at", "actor", "actor_id", "source_ip", "protocol", "action",
           "object_type", "object_id", "object_repr", "outcome", "details", "prev_hash", "hash")


def _digest(values: dict[str, Any], prev_hash: str) -> str:
    """Return the SHA-256 of an event's content joined to the previous event's hash."""
    content = {**values, "prev": prev_hash}
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


def _content(created_at: Any, actor: str, actor_id: int | None, source_ip: str | None,
             protocol: str, action: str, object_type: str, object_id: str, object_repr: str,
             outcome: str, details: Any) -> dict[str, Any]:
    """Return the hashed fields of an event."""
    return {"created_at": created_at.isoformat(), "actor": actor, "actor_id": actor_id,
            "source_ip": source_ip, "protocol": protocol, "action": action,
            "object_type": object_type, "object_id": object_id, "object_repr": object_repr,
            "outcome": outcome, "details": details}


def content_hash(event: AuditEvent, prev_hash: str) -> str:
    """Return the hash an event must carry, given the previous event's hash."""
    return _digest(_content(event.created_at, event.actor, event.actor_id, event.source_ip,
                            event.protocol, event.action, event.object_type, event.object_id,
                            event.object_repr, event.outcome, event.details), prev_hash)


def _lock_head() -> ChainHead:
    """Serialise chain writers and return the head row."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_ID])
    # On SQLite the IMMEDIATE transaction already holds the database write lock.
    head = ChainHead.objects.filter(pk=1).first()
    if head is None:
        last = AuditEvent.objects.order_by("-id").values_list("id", "hash").first()
        head = ChainHead(pk=1, last_id=last[0] if last else 0,
                         last_hash=last[1] if last else _archived_head()[1],
                         count=AuditEvent.objects.count())
        head.save()
    return head


def append(*, created_at: datetime | None = None, **fields: Any) -> AuditEvent:
    """Insert one event at the head of the chain, serialised against concurrent writers.

    created_at is when it happened, when that was before now (an event from a spool); it is
    hashed like any other field.
    """
    with transaction.atomic():
        head = _lock_head()
        event = AuditEvent(created_at=created_at or timezone.now(), **fields)
        event.prev_hash = head.last_hash
        event.hash = content_hash(event, event.prev_hash)
        event.save()
        ChainHead.objects.filter(pk=1).update(last_id=event.pk, last_hash=event.hash,
                                              count=head.count + 1)
        metrics.count_audit_event(event)
    return event


@dataclass(frozen=True)
class ChainBreak:
    """The first place where the chain does not hold, and why."""

    event_id: int
    reason: str


def _archived_head() -> tuple[int, str]:
    """Return the id and hash the chain continues from after the latest retention archive."""
    record = ArchiveRecord.objects.order_by("-through_id").first()
    return (record.through_id, record.last_hash) if record else (0, GENESIS)


def _rows(batch: int) -> Iterator[tuple[Any, ...]]:
    """Yield every event as a tuple, in chain order, in keyset-paginated batches."""
    last_id = 0
    while True:
        rows = list(AuditEvent.objects.filter(id__gt=last_id).order_by("id")
                    .values_list(*_FIELDS)[:batch])
        if not rows:
            return
        yield from rows
        last_id = rows[-1][0]


def verify(batch: int = 10000) -> tuple[int, ChainBreak | None]:
    """Walk the chain; return how many events were checked and the first break, if any."""
    _, expected_prev = _archived_head()
    count = 0
    last_id = 0
    for row in _rows(batch):
        count += 1
        event_id, prev_hash, stored_hash = row[0], row[12], row[13]
        if prev_hash != expected_prev:
            return count, ChainBreak(event_id, "previous-hash link broken: an event before it "
                                     "was deleted or inserted")
        if _digest(_content(*row[1:12]), prev_hash) != stored_hash:
            return count, ChainBreak(event_id, "content does not match its hash: changed")
        expected_prev, last_id = stored_hash, event_id
    head = ChainHead.objects.filter(pk=1).first()
    if head is not None and (head.last_id, head.last_hash) != (last_id, expected_prev):
        return count, ChainBreak(last_id, f"the newest events after {last_id} were deleted "
                                 f"(the chain head records event {head.last_id})")
    return count, None
